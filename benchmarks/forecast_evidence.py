"""What predicts a host's load 5 minutes ahead on the PlanetLab days: the evidence behind the policy's
forecast (placement.history.level).

    python benchmarks/forecast_evidence.py [--seed N] [DAY.csv ...]

For each trace day (default: every day in traces.TRACE_DIR), on the benchmark's reference cluster with
the VMs dealt in an order shuffled by --seed (traces.scenario and traces.reshuffled; no balancer: the
placement stays as dealt), prints:

  - carry-over: how much of a VM's departure from its mean over the last 2 hours is still there at the
    next 5-minute sample (the least-squares weight a in x[t+1] - m = a (x[t] - m)). Near 0: bursts
    do not last; near 1: a VM's use now is what it will use next.
  - for each predictor of a host's next load (its load now; the sum of its VMs' mean use over the last
    30, 60 and 120 minutes), the standard deviation of its error and the area under the ROC curve for
    "over 0.75 at the next step" among the host-steps under 0.75 now (1.0 ranks every host that
    crosses above every host that does not; 0.5 is a coin).

Every figure is computed from the trace in this run; nothing is stored.
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "plugins", "plugin_utils"))

import traces  # noqa: E402  pylint: disable=wrong-import-position

THRESHOLD = 0.75
HISTORY = 24  # 5-minute samples: 2 hours
WINDOWS = (6, 12, 24)  # samples averaged by the mean predictors: 30, 60, 120 minutes


def auc(scores, labels):
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count half)."""
    ranked = sorted(zip(scores, labels))
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end < len(ranked) and ranked[end][0] == ranked[index][0]:
            end += 1
        mean_rank = (index + 1 + end) / 2
        rank_sum += mean_rank * sum(1 for _score, label in ranked[index:end] if label)
        index = end
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def carry_over(demand):
    """The weight a of x[t+1] - m = a (x[t] - m), m each VM's mean of its last HISTORY samples."""
    numerator = denominator = 0.0
    for series in demand:
        for t in range(HISTORY - 1, len(series) - 1):
            mean = math.fsum(series[t - HISTORY + 1:t + 1]) / HISTORY
            numerator += (series[t + 1] - mean) * (series[t] - mean)
            denominator += (series[t] - mean) ** 2
    return numerator / denominator if denominator else float("nan")


def host_rows(day):
    """(predictions by name, load next) for every host-step of `day` (a Scenario, VMs where they were
    dealt) with HISTORY samples behind it."""
    members = [(host.cpus, [vm.demand for vm in day.vms if vm.host == host.name]) for host in day.hosts]
    rows = []
    for t in range(HISTORY - 1, day.steps - 1):
        for cpus, demand in members:
            predictions = {"load now": math.fsum(series[t] for series in demand) / cpus}
            for window in WINDOWS:
                predictions["mean %d min" % (window * 5)] = math.fsum(
                    math.fsum(series[t - window + 1:t + 1]) / window for series in demand) / cpus
            rows.append((predictions, math.fsum(series[t + 1] for series in demand) / cpus))
    return rows


def report(path, seed):
    day = traces.reshuffled(traces.scenario(path), seed)
    demand = [vm.demand for vm in day.vms]
    rows = host_rows(day)
    under = [(p, after) for p, after in rows if p["load now"] <= THRESHOLD]
    labels = [after > THRESHOLD for _p, after in under]
    print("%s: %d VMs, carry-over of a burst to the next 5 minutes a = %.3f; %d host-steps under %.2f, %d cross it"
          % (os.path.basename(path), len(demand), carry_over(demand), len(under), THRESHOLD, sum(labels)))
    for name in rows[0][0]:
        errors = [after - p[name] for p, after in rows]
        mean = math.fsum(errors) / len(errors)
        spread = math.sqrt(math.fsum((e - mean) ** 2 for e in errors) / len(errors))
        print("  %-13s error sd %.4f  AUC %.3f" % (name, spread, auc([p[name] for p, _a in under], labels)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--seed", type=int, default=1, help="the order the VMs are dealt to hosts in")
    parser.add_argument("days", nargs="*", help="trace CSVs (default: every day in %s)" % traces.TRACE_DIR)
    args = parser.parse_args(argv)
    for path in args.days or traces.days():
        report(path, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
