"""playbooks/whatif.yml timed for real on a full PlanetLab day (issue 11's target), for the full benchmark run.

Runs ``ansible-playbook playbooks/whatif.yml`` on the day with the most VMs, reference preset, the
three variants of VARIANTS, and reads back its whatif.json. Two verdicts:
  - the playbook (Ansible's start-up, the four replays, the JSON and HTML) takes under SECONDS;
  - its reference run's figures equal the benchmark's own replay of that day (``xen.drs default``
    row of run.py's trace replay): one replay engine, whichever way it is called.
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = 180.0
VARIANTS = [{"name": "balance %d" % level, "policy": {"balance": level}} for level in (0, 3, 5)]
TIMINGS = ("plan_seconds_mean", "plan_seconds_max", "wall_seconds")
TARGET_TIME = "whatif.yml: a full day with three variants in < %g s" % SECONDS
TARGET_SAME = "whatif.yml: reference figures = the benchmark replay's"
TARGETS = (TARGET_TIME, TARGET_SAME)


def largest_day(day_paths):
    """The day with the most VMs (rows)."""
    def rows(path):
        with open(path, encoding="utf-8") as handle:
            return sum(1 for _line in handle)
    return max(day_paths, key=rows)


def run_playbook(day_path, variants=None, timeout=1800):
    """{day, seconds, rc, output tail, document} of whatif.yml on ``day_path`` (reference preset)."""
    variants = VARIANTS if variants is None else variants
    with tempfile.TemporaryDirectory(prefix="xen-drs-whatif-") as report:
        binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".venv", "collections"),
                   ANSIBLE_NOCOLOR="1")
        started = time.perf_counter()
        done = subprocess.run(
            [binary if os.path.exists(binary) else "ansible-playbook", "playbooks/whatif.yml",
             "-e", "xen_drs_whatif_trace=%s" % day_path, "-e", "xen_drs_whatif_report_dir=%s" % report,
             "-e", "xen_drs_whatif_preset=reference", "-e", json.dumps({"xen_drs_whatif_variants": variants})],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        seconds = time.perf_counter() - started
        document = None
        if done.returncode == 0:
            with open(os.path.join(report, "whatif.json"), encoding="utf-8") as handle:
                document = json.load(handle)
    day = os.path.splitext(os.path.basename(day_path))[0]
    return {"day": day, "seconds": seconds, "rc": done.returncode, "variants": len(variants),
            "output": (done.stdout + done.stderr)[-2000:], "document": document}


def print_run(result):
    print("\n== whatif.yml on %s (reference preset, %d variants besides the base): rc %d in %.1f s"
          % (result["day"], result["variants"], result["rc"], result["seconds"]))
    if result["document"] is None:
        print(result["output"])
        return
    for variant in result["document"]["variants"]:
        m = variant["metrics"]
        print("   %-12s %6d migrations, %7.3f %% over, replayed in %5.1f s" % (
            variant["name"], m["migrations"], 100 * m["over_share"], m["wall_seconds"]))


def verdicts(result, replayed, default_row):
    """[(target, ok, detail)]; ``replayed``: run.py's trace replay result, ``default_row`` its default row name."""
    if result is None:
        return []
    checks = [(TARGET_TIME, result["rc"] == 0 and result["seconds"] < SECONDS,
               "%s: rc %d, %.1f s for the base run and %d variants; load average %.1f on %d cores"
               % (result["day"], result["rc"], result["seconds"], result["variants"], os.getloadavg()[0],
                  os.cpu_count()))]
    day = next((d for d in (replayed or {}).get("days", ()) if d["day"] == result["day"]), None)
    row = day and day["rows"].get(default_row)
    if result["document"] is not None and row is not None:
        mine = result["document"]["variants"][0]
        same = (figures(mine["metrics"]) == figures(row["metrics"]) and mine["migrations"] == row["migrations"])
        checks.append((TARGET_SAME, same, "%s: whatif.yml %d migrations, %d host-steps over; benchmark %d, %d"
                       % (result["day"], mine["metrics"]["migrations"], mine["metrics"]["over_host_steps"],
                          row["metrics"]["migrations"], row["metrics"]["over_host_steps"])))
    return checks


def figures(metrics):
    """The deterministic figures of a metrics mapping (or Metrics)."""
    if dataclasses.is_dataclass(metrics):
        metrics = dataclasses.asdict(metrics)
    return {k: v for k, v in metrics.items() if k not in TIMINGS}
