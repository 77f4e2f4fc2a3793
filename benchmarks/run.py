"""xen.drs placement benchmark: generated scenarios, baselines, exact minimum, trace replay.

    python benchmarks/run.py [--quick] [--check] [--seeds N] [--hard-seeds N] [--no-traces] [--no-whatif]

Prints one table per scenario (migrations planned, hosts still overloaded, peak load, load
standard deviation, memory moved, planning time, rule breaks) for xen.drs, the Xen Orchestra
performance plan and ProxLB, plus the exact minimum (HiGHS) on small scenarios; then one
PlanetLab trace-replay table per day (the collection's replay engine, reference preset: xen.drs
with each policy variant of REPLAY_VARIANTS against the XO greedy); in a full run, playbooks/whatif.yml
timed on the largest day (whatif_playbook.py); then a summary per scenario
kind and the target verdicts. Exit code 0 even when a target is missed (the misses are printed as
MISSED lines) unless --check is given, then 1.
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "plugins", "plugin_utils"))

import baselines  # noqa: E402  pylint: disable=wrong-import-position
import exact  # noqa: E402  pylint: disable=wrong-import-position
import metrics  # noqa: E402  pylint: disable=wrong-import-position
import placement  # noqa: E402  pylint: disable=wrong-import-position
import rules  # noqa: E402  pylint: disable=wrong-import-position
import scenarios  # noqa: E402  pylint: disable=wrong-import-position
import traces  # noqa: E402  pylint: disable=wrong-import-position
import whatif_playbook  # noqa: E402  pylint: disable=wrong-import-position

EXACT_SLACK_PERCENT = 10  # xen.drs may use at most the exact minimum + 10 % migrations
EXACT_TIME_LIMIT_S = 10.0  # per HiGHS solve; a solve that hits it is reported as not proven optimal
SMALL = ((4, 40), (8, 120), (16, 240))
MEDIUM = (100, 2000)
LARGE = (1000, 20000)
PLAN_TIME_TARGETS_S = {MEDIUM[0]: 2.0, LARGE[0]: 1.0}  # hosts -> xen.drs planning time target
QUICK_HARD_SEEDS = 5
SMALL_REPEAT_ENOUGH_S = 0.2
TRACE_MEMORY_UP_TO_S = 5.0  # peak memory is measured (tracemalloc, one more plan) when a plan takes at most this
ENGINE_KEYS = ("engine", "optimal", "gap")  # what xen.drs's plan says about how it was found, when it says it

_last_plan = {}  # ENGINE_KEYS of xen.drs's last plan


def xen_drs(cluster, policy):
    result = placement.plan(cluster, policy)
    _last_plan.clear()
    _last_plan.update((key, result.get(key)) for key in ENGINE_KEYS if key in result)
    return result["migrations"]


PLANNERS = {"xen.drs": xen_drs}
PLANNERS.update(baselines.PLANNERS)


def best_time(function, repeat, enough=None):
    """(result of the last call, best wall time, best CPU time) over ``repeat`` calls, or fewer:
    no more calls once one took longer than ``enough`` seconds (a plan that slow misses its
    target whatever the best of several, and repeating it would only make the run long).

    CPU time is reported too because other work on the machine inflates wall time."""
    wall = cpu = result = None
    for _run in range(repeat):
        if enough is not None and wall is not None and wall > enough:
            break
        started, started_cpu = time.perf_counter(), time.process_time()
        result = function()
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        wall = elapsed if wall is None else min(wall, elapsed)
        cpu = elapsed_cpu if cpu is None else min(cpu, elapsed_cpu)
    return result, wall, cpu


def scenario_list(quick, seeds, hard_seeds):
    """(kind, hosts, domains, seed, solve_exactly) for the run.

    Quick (what CI runs): one seed of each original kind at 8 hosts, ``QUICK_HARD_SEEDS`` seeds of
    each hard kind at its own size, and skewed at 100 and 1,000 hosts. Full: ``seeds`` seeds of each
    original kind at 4, 8 and 16 hosts, ``hard_seeds`` of each hard kind, every kind at 100 and
    1,000 hosts. Hard kinds at their own size have their own domain density (domains None)."""
    runs = []
    for kind in scenarios.KINDS:
        if kind in scenarios.HARD_KINDS:
            for seed in range(1, (min(hard_seeds, QUICK_HARD_SEEDS) if quick else hard_seeds) + 1):
                runs.append((kind, scenarios.SIZES[kind], None, seed, True))
        else:
            for hosts, domains in SMALL[1:2] if quick else SMALL:
                for seed in range(1, (1 if quick else seeds) + 1):
                    runs.append((kind, hosts, domains, seed, True))
        if not quick or kind == "skewed":
            runs.append((kind, MEDIUM[0], MEDIUM[1], 1, False))
            runs.append((kind, LARGE[0], LARGE[1], 1, False))
    return runs


def repeat_enough(hosts):
    """Seconds after which one plan is not repeated: twice the time target where there is one; on
    the small scenarios (no time target) 0.2 s, where best-of-several no longer matters."""
    return 2 * PLAN_TIME_TARGETS_S[hosts] if hosts in PLAN_TIME_TARGETS_S else SMALL_REPEAT_ENOUGH_S


def run_scenario(kind, hosts, domains, seed, solve_exactly, time_limit=EXACT_TIME_LIMIT_S):
    scenario_started = time.perf_counter()
    cluster = scenarios.generate(kind, hosts, domains, seed)
    policy = scenarios.policy_for(cluster, kind)
    domains = sum(len(h["domains"]) for h in cluster)
    # The speed targets are xen.drs's: the baselines' times on large scenarios are one run each.
    repeat = {name: 5 for name in PLANNERS}
    if hosts >= MEDIUM[0]:
        repeat = {name: 3 if name == "xen.drs" else 1 for name in PLANNERS}
    rows = {}
    engine = {}
    for name, planner in PLANNERS.items():
        migrations, seconds, cpu_seconds = best_time(lambda planner=planner: planner(cluster, policy), repeat[name],
                                                     enough=repeat_enough(hosts))
        if name == "xen.drs":
            engine = dict(_last_plan)
        row = metrics.evaluate(cluster, migrations, policy)
        row["seconds"], row["cpu_seconds"] = seconds, cpu_seconds
        rows[name] = row
    result = {"kind": kind, "hosts": hosts, "domains": domains, "seed": seed, "rows": rows, "exact": None,
              "engine": engine}
    if solve_exactly:
        drs = rows["xen.drs"]
        started = time.perf_counter()
        solved = exact.minimum_migrations(cluster, policy, time_limit=time_limit)
        result["exact"] = exact_row(cluster, policy, solved, started)
        if result["exact"] and result["exact"]["overloaded"] and drs["overloaded"] <= result["exact"]["overloaded"]:
            # Some host cannot be cleared: also ask for the fewest migrations to do as well as xen.drs did.
            started = time.perf_counter()
            solved = exact.minimum_migrations(cluster, policy, time_limit=time_limit, reach=drs)
            result["exact_reach"] = exact_row(cluster, policy, solved, started)
        left = cleared_by_exact_only(result)
        if left and drs["overloaded"] <= result["exact"]["overloaded"]:
            # As many hosts left over as the exact plan, but others: the exact plan may just have
            # chosen differently. Ask for a plan that also clears every host xen.drs cleared.
            started = time.perf_counter()
            cleared = sorted(set(drs["overloaded_before_hosts"]) - set(drs["overloaded_hosts"]))
            solved = exact.minimum_migrations(cluster, policy, time_limit=time_limit, must_clear=cleared)
            result["exact_keep"] = exact_row(cluster, policy, solved, started)
            if result["exact_keep"] is None:  # then the first exact plan is compared (see the verdict detail)
                result["exact_keep_failed"] = solved["status"]
        best = yardstick(result)
        if best and best["status"] == "optimal" and best["chain_moves"] and drs["migrations"] > best["migrations"]:
            # Tell apart "xen.drs wastes moves" from "only a make-room chain does better".
            reach = drs if result.get("exact_reach") else None
            direct = exact.minimum_migrations(cluster, policy, time_limit=time_limit, reach=reach, direct_only=True)
            result["exact_direct"] = (None if direct["migrations"] is None else
                                      "%d migrations leaving %d overloaded" % (len(direct["migrations"]),
                                                                               direct["overloaded"]))
    result["load_average"] = os.getloadavg()[0]
    if hosts >= MEDIUM[0]:
        if rows["xen.drs"]["seconds"] <= TRACE_MEMORY_UP_TO_S:
            tracemalloc.start()
            xen_drs(cluster, policy)
            result["peak_memory_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        else:  # tracing slows Python down several times: not worth it for a plan that already misses
            result["peak_memory_mib"] = None
    result["wall_seconds"] = time.perf_counter() - scenario_started
    return result


def cleared_by_exact_only(result):
    """Hosts xen.drs leaves overloaded that the exact plan clears (sorted names).

    When the exact plan leaves as many hosts over as xen.drs but other ones, run_scenario asks for
    a second exact plan that also clears every host xen.drs cleared (``exact_keep``); that plan is
    then the one compared, so a host only counts when clearing it costs none of xen.drs's results."""
    exact_plan = result.get("exact_keep") or result.get("exact")
    if not exact_plan:
        return []
    return sorted(set(result["rows"]["xen.drs"]["overloaded_hosts"]) - set(exact_plan["overloaded_hosts"]))


def exact_row(cluster, policy, solved, started):
    if solved["migrations"] is None:
        return None
    row = metrics.evaluate(cluster, solved["migrations"], policy)
    row["seconds"] = time.perf_counter() - started
    row["status"] = solved["status"]
    row["bound"] = solved["bound"]
    threshold = policy["load_threshold"]
    loads = {h["name"]: rules.host_load(h) for h in cluster}
    row["chain_moves"] = ["%s %s->%s" % (m["vm"], m["source"], m["destination"]) for m in solved["migrations"]
                          if loads[m["source"]] <= threshold]
    return row


def ratio(drs, ex):
    """xen.drs migrations over the yardstick's (None when the yardstick moves nothing)."""
    return drs["migrations"] / ex["migrations"] if ex["migrations"] else None


def yardstick(result):
    """The exact plan xen.drs's migration count is compared with (None on large scenarios)."""
    return result.get("exact_reach") or result["exact"]


def print_scenario(result):
    rows = result["rows"]
    before = rows["xen.drs"]["overloaded_before"]
    print("\n== %s  hosts=%d domains=%d seed=%d  overloaded before: %d  (scenario run: %.1f s)"
          % (result["kind"], result["hosts"], result["domains"], result["seed"], before,
             result.get("wall_seconds", 0.0)))
    print("   %-16s %6s %6s %6s %6s %8s %9s %6s"
          % ("planner", "migr", "over", "peak", "stdev", "mem GiB", "time ms", "breaks"))
    table = dict(rows)
    if result["exact"]:
        table["exact (HiGHS)"] = result["exact"]
    if result.get("exact_reach"):
        table["exact, as good"] = result["exact_reach"]
    if result.get("exact_keep"):
        table["exact, keeping"] = result["exact_keep"]
    for name, row in table.items():
        print("   %-16s %6d %6d %6.3f %6.3f %8.1f %9.1f %6d" % (
            name, row["migrations"], row["overloaded"], row["peak"], row["stdev"], row["memory_moved_gib"],
            row["seconds"] * 1000, len(row["violations"])))
    for name, row in rows.items():
        for violation in row["violations"][:3]:
            print("   ! %s breaks a rule: %s" % (name, violation))
    engine = result.get("engine") or {}
    if engine:
        shown = ["%s=%s" % (key, "%.4g" % engine[key] if isinstance(engine[key], float) else engine[key])
                 for key in ENGINE_KEYS if key in engine]
        print("   xen.drs plan: %s" % " ".join(shown))
    ex = yardstick(result)
    if ex:
        value = ratio(rows["xen.drs"], ex)
        print("   xen.drs / exact minimum migrations: %s  (exact: %s)"
              % ("%.2f" % value if value is not None else "- (exact moves nothing)", ex["status"]))
        if result.get("exact_reach"):
            print("   exact leaves %d host(s) overloaded; 'exact, as good' = fewest migrations to leave no more"
                  " overloaded hosts and no more load above threshold than xen.drs" % result["exact"]["overloaded"])
        if result.get("exact_keep"):
            print("   'exact, keeping' = exact plan that also clears every host xen.drs cleared")
        if ex["chain_moves"]:
            print("   exact plan moves %d domain(s) off hosts that were not overloaded, to make room: %s"
                  % (len(ex["chain_moves"]), ", ".join(ex["chain_moves"])))
        left = cleared_by_exact_only(result)
        if left:
            print("   ! xen.drs leaves overloaded what the exact plan clears: %s" % ", ".join(left))
    elif result["exact"] is None and result["hosts"] <= SMALL[-1][0]:
        print("   exact: no plan found")
    if "peak_memory_mib" in result:
        print("   xen.drs: best CPU time %.1f ms; peak memory while planning (tracemalloc) %s;"
              " load average %.1f on %d cores" % (rows["xen.drs"]["cpu_seconds"] * 1000, peak(result),
                                                  result["load_average"], os.cpu_count()))


def peak(result):
    if result.get("peak_memory_mib") is None:
        return "not measured (plan > %g s)" % TRACE_MEMORY_UP_TO_S
    return "%.1f MiB" % result["peak_memory_mib"]


def label_of(result):
    return "%s hosts=%d domains=%d seed=%d" % (result["kind"], result["hosts"], result["domains"], result["seed"])


TARGET_RULES = "xen.drs obeys the shared rules"
TARGET_MIGRATIONS = "migrations <= exact minimum + %d%%" % EXACT_SLACK_PERCENT
TARGET_CLEARS = "every overload the exact plan clears is cleared"
# Reported, not a target: an exact solve that hit its time limit proves no minimum, so xen.drs is
# compared with the best plan it found, and a shortfall is printed (NOT MET) without failing --check.
# A host that such a plan clears is still proof that it can be cleared (TARGET_CLEARS holds for it).
REPORT_UNPROVEN = "migrations <= best unproven exact plan + %d%% (report only)" % EXACT_SLACK_PERCENT
REPORT_ONLY = (REPORT_UNPROVEN,)
TARGET_BASELINES = "no baseline clears more overload with no more migrations"


def time_target(hosts):
    return "plan %s hosts / %s domains <= %g s" % (
        "{:,}".format(hosts), "{:,}".format(hosts * 20), PLAN_TIME_TARGETS_S[hosts])


def verdicts(results):
    """[(target, ok, detail)] for every target check.

    On every scenario solved exactly (at most 16 hosts):
      - migrations: xen.drs plans at most the exact minimum + 10 % (compared with the exact plan,
        or with 'exact, as good' when some host cannot be cleared at all);
      - clears: no host that xen.drs leaves overloaded is cleared by the exact plan, whatever the
        migration counts (see cleared_by_exact_only for how a tie in the count is judged).
    When a solve hit its time limit it proves no minimum: the migrations are then compared with the
    best plan found under REPORT_UNPROVEN (printed, not a target); its cleared hosts still count.
    """
    checks = []
    for result in results:
        label = label_of(result)
        drs = result["rows"]["xen.drs"]
        checks.append((TARGET_RULES, not drs["violations"], "%s: %s" % (label, "; ".join(drs["violations"][:3]))))
        if result["hosts"] in PLAN_TIME_TARGETS_S:
            limit = PLAN_TIME_TARGETS_S[result["hosts"]]
            checks.append((time_target(result["hosts"]), drs["seconds"] <= limit,
                           "%s: %.3f s wall, %.3f s CPU, peak memory %s, load average %.1f on %d cores"
                           % (label, drs["seconds"], drs["cpu_seconds"], peak(result), result["load_average"],
                              os.cpu_count())))
        ex = yardstick(result) if result["exact"] else None
        if ex:
            unproven = "" if ex["status"] == "optimal" else " (exact not proven optimal: %s)" % ex["status"]
            ok = drs["overloaded"] < ex["overloaded"] or (
                drs["migrations"] * 100 <= ex["migrations"] * (100 + EXACT_SLACK_PERCENT))
            checks.append((TARGET_MIGRATIONS if not unproven else REPORT_UNPROVEN, ok,
                           "%s: xen.drs %d migrations leaving %d overloaded (excess %.3f), exact %d leaving %d"
                           " (excess %.3f)%s%s" % (label, drs["migrations"], drs["overloaded"], drs["excess"],
                                                   ex["migrations"], ex["overloaded"], ex["excess"], unproven,
                                                   "; exact uses chain moves: %s; without them the best is %s"
                                                   % (", ".join(ex["chain_moves"]), result.get("exact_direct"))
                                                   if ex["chain_moves"] else "")))
            left = cleared_by_exact_only(result)
            plan = result.get("exact_keep") or result["exact"]
            checks.append((TARGET_CLEARS, not left,
                           "%s: xen.drs (%d migrations) leaves %s overloaded, the exact plan (%d migrations%s) clears"
                           " %s" % (label, drs["migrations"], ", ".join(drs["overloaded_hosts"]) or "nothing",
                                    plan["migrations"], ", keeping what xen.drs cleared" if result.get("exact_keep")
                                    else "", ", ".join(left) or "nothing more")
                           + ("; no exact plan clears every host xen.drs cleared (%s)" % result["exact_keep_failed"]
                              if result.get("exact_keep_failed") else "")))
        for name in baselines.PLANNERS:
            base = result["rows"][name]
            beaten = base["overloaded"] < drs["overloaded"] and base["migrations"] <= drs["migrations"]
            checks.append((TARGET_BASELINES, not beaten,
                           "%s: %s %d migrations leaving %d overloaded, xen.drs %d leaving %d"
                           % (label, name, base["migrations"], base["overloaded"], drs["migrations"],
                              drs["overloaded"])))
    return checks


def kind_summary(results):
    """{kind: figures} over the scenarios solved exactly: how xen.drs compares with the exact plan."""
    summary = {}
    for result in results:
        if not result["exact"]:
            continue
        drs, ex = result["rows"]["xen.drs"], yardstick(result)
        entry = summary.setdefault(result["kind"], {
            "scenarios": 0, "optimal": 0, "ratios": [], "moves_where_exact_none": 0, "migration_misses": 0,
            "clear_misses": 0, "hosts_left": 0, "overloaded_before": 0, "drs_overloaded": 0,
            "exact_overloaded": 0, "engines": {}})
        entry["scenarios"] += 1
        entry["optimal"] += ex["status"] == "optimal"
        value = ratio(drs, ex)
        if value is None:
            entry["moves_where_exact_none"] += drs["migrations"] > 0
        else:
            entry["ratios"].append(value)
        entry["migration_misses"] += not (drs["overloaded"] < ex["overloaded"] or (
            drs["migrations"] * 100 <= ex["migrations"] * (100 + EXACT_SLACK_PERCENT)))
        left = cleared_by_exact_only(result)
        entry["clear_misses"] += bool(left)
        entry["hosts_left"] += len(left)
        entry["overloaded_before"] += drs["overloaded_before"]
        entry["drs_overloaded"] += drs["overloaded"]
        entry["exact_overloaded"] += result["exact"]["overloaded"]
        engine = str((result.get("engine") or {}).get("engine", "-"))
        entry["engines"][engine] = entry["engines"].get(engine, 0) + 1
    return summary


def print_kind_summary(summary):
    print("\n== xen.drs against the exact plan, per kind (scenarios of at most 16 hosts)")
    print("   %-16s %5s %7s %10s %9s %9s %12s %12s %14s  %s" % (
        "kind", "runs", "optimal", "ratio mean", "ratio max", "migr miss", "clear misses", "hosts left*",
        "over: before/drs/exact", "engine"))
    for kind, entry in summary.items():
        ratios = entry["ratios"]
        print("   %-16s %5d %7d %10s %9s %9d %12d %12d %8d/%d/%d  %s" % (
            kind, entry["scenarios"], entry["optimal"],
            "%.3f" % statistics.mean(ratios) if ratios else "-", "%.3f" % max(ratios) if ratios else "-",
            entry["migration_misses"], entry["clear_misses"], entry["hosts_left"], entry["overloaded_before"],
            entry["drs_overloaded"], entry["exact_overloaded"],
            ", ".join("%s %d" % item for item in sorted(entry["engines"].items()))))
    print("   ratio: xen.drs / exact migrations where the exact plan moves something; optimal: solves proven"
          " optimal within %g s; *hosts xen.drs leaves overloaded that the exact plan clears" % EXACT_TIME_LIMIT_S)
    extra = sum(e["moves_where_exact_none"] for e in summary.values())
    if extra:
        print("   xen.drs moves domains in %d scenario(s) where the exact plan moves none" % extra)


def print_time_split(results):
    """Where the run's time went on the exactly solved scenarios: xen.drs's planning, the exact solves."""
    small = [r for r in results if r["exact"]]
    if not small:
        return
    slowest = max(small, key=lambda r: r["rows"]["xen.drs"]["seconds"])
    solves = [r[key]["seconds"] for r in small for key in ("exact", "exact_reach", "exact_keep") if r.get(key)]
    print("   on these %d scenarios xen.drs planned for %.1f s in all (slowest %.1f s: %s); the exact solves"
          " took %.1f s" % (len(small), sum(r["rows"]["xen.drs"]["seconds"] for r in small),
                            slowest["rows"]["xen.drs"]["seconds"], label_of(slowest), sum(solves)))


# Trace replay (the collection's engine, reference preset; see traces.py). The policy owner adds
# named variants here: each a name and policy overrides over the reference policy.
REPLAY_VARIANTS = [
    {"name": "default", "overrides": {}},
    {"name": "engine greedy", "overrides": {"engine": "greedy"}},
    {"name": "predictive off", "overrides": {"predictive": False}},
    {"name": "headroom off", "overrides": {"headroom": False}},
    {"name": "react only", "overrides": {"predictive": False, "headroom": False, "balance": 0}},
] + [{"name": "balance %d" % level, "overrides": {"balance": level}} for level in range(6)]
REPLAY_DEFAULT = "default"  # the variant the targets judge, and the only one a quick run replays
REPLAY_GREEDY = "XO greedy"  # the yardstick: baselines.xo_performance_plan
REPLAY_SHARE_FACTOR = 0.8  # xen.drs's share of host-steps over the threshold <= this x the greedy's
REPLAY_MIGRATION_FACTOR, REPLAY_MIGRATION_SLACK = 1.5, 1  # migrations <= factor x greedy's + slack
REPLAY_DAY_SECONDS = 60.0  # a day replayed by xen.drs (default policy) in under this, wall clock
_THRESHOLD = traces.replay.REFERENCE_POLICY["load_threshold"]
TARGET_REPLAY_SHARE = "replay: xen.drs host-steps over %g <= %g x XO greedy's" % (_THRESHOLD, REPLAY_SHARE_FACTOR)
TARGET_REPLAY_MIGRATIONS = "replay: xen.drs migrations <= %g x XO greedy's + %d" % (
    REPLAY_MIGRATION_FACTOR, REPLAY_MIGRATION_SLACK)
TARGET_REPLAY_PING_PONG = "replay: xen.drs makes no ping-pong"
TARGET_REPLAY_TIME = "replay: a day replayed by xen.drs in < %g s" % REPLAY_DAY_SECONDS
REPLAY_PLACEMENTS = 3  # full runs: each day also replayed from this many other starting placements (traces.reshuffled)
TARGET_PLACEMENT_SHARE = ("replay, %d other placements a day: host-steps over, summed, <= %g x XO's"
                          % (REPLAY_PLACEMENTS, REPLAY_SHARE_FACTOR))
TARGET_PLACEMENT_MIGRATIONS = ("replay, %d other placements a day: migrations, summed, <= %g x XO's + %d each"
                               % (REPLAY_PLACEMENTS, REPLAY_MIGRATION_FACTOR, REPLAY_MIGRATION_SLACK))
REPLAY_TARGETS = (TARGET_REPLAY_SHARE, TARGET_REPLAY_MIGRATIONS, TARGET_REPLAY_PING_PONG, TARGET_REPLAY_TIME,
                  TARGET_PLACEMENT_SHARE, TARGET_PLACEMENT_MIGRATIONS)


def replay_rows(quick):
    """[(row name, planner, policy overrides)] replayed on each day.

    Quick: xen.drs with the default variant and the XO greedy. Full: every variant of
    REPLAY_VARIANTS, the XO greedy, ProxLB and no balancing at all."""
    variants = [v for v in REPLAY_VARIANTS if v["name"] == REPLAY_DEFAULT] if quick else REPLAY_VARIANTS
    rows = [("xen.drs %s" % v["name"], traces.xen_drs, v["overrides"]) for v in variants]
    rows.append((REPLAY_GREEDY, traces.XO_GREEDY, {}))
    if not quick:
        rows += [("ProxLB", traces.PROXLB, {}), ("no balancing", traces.no_balancing, {})]
    return rows


def run_traces(quick):
    """Replay each trace day (the first only when ``quick``) through every row of replay_rows."""
    day_paths = traces.days()
    if not day_paths:
        print("\n== trace replay: no traces in %s, skipped" % traces.TRACE_DIR)
        return None
    result = {"preset": traces.PRESET, "policy": None, "days": []}
    for path in day_paths[:1] if quick else day_paths:
        scenario = traces.scenario(path)
        day = {"day": scenario.name.split(":", 1)[-1], "hosts": len(scenario.hosts), "vms": len(scenario.vms),
               "steps": scenario.steps, "rows": {}}
        print_replay_header(scenario)
        for name, planner, overrides in replay_rows(quick):
            replayed = traces.replay_day(scenario, planner, overrides)
            result["policy"] = result["policy"] or {k: v for k, v in replayed.policy.items() if k != "now"}
            day["rows"][name] = {"overrides": overrides, "metrics": dataclasses.asdict(replayed.metrics),
                                 "migrations": [dataclasses.asdict(m) for m in replayed.migrations]}
            print_replay_row(name, replayed.metrics)
            sys.stdout.flush()
        day["load_average"] = os.getloadavg()[0]  # other work on the machine inflates the wall times
        result["days"].append(day)
    return result


def run_placements(placements):
    """Each trace day from ``placements`` other starting placements (traces.reshuffled, seeds 1..n):
    xen.drs's default variant and the XO greedy. One placement's figures swing by several host-steps
    with any change; their sum says whether the policy is better, not luckier."""
    if not placements or not traces.days():
        return None
    rows = []
    print("\n== trace replay from %d other starting placements a day (the reference recipe, rows shuffled by seed)"
          % placements)
    print("   %-22s %4s %10s %10s %9s %9s %6s %9s" % ("day", "seed", "migr", "XO migr", "over", "XO over", "ratio",
                                                      "ping-pong"))
    for path in traces.days():
        day = traces.scenario(path)
        for seed in range(1, placements + 1):
            shuffled = traces.reshuffled(day, seed)
            drs = traces.replay_day(shuffled, traces.xen_drs).metrics
            greedy = traces.replay_day(shuffled, traces.XO_GREEDY).metrics
            row = {"day": day.name.split(":", 1)[-1], "seed": seed, "xen.drs": dataclasses.asdict(drs),
                   REPLAY_GREEDY: dataclasses.asdict(greedy)}
            rows.append(row)
            print("   %-22s %4d %10d %10d %9d %9d %6.2f %9d" % (
                row["day"], seed, drs.migrations, greedy.migrations, drs.over_host_steps, greedy.over_host_steps,
                drs.over_host_steps / max(greedy.over_host_steps, 1), drs.ping_pongs))
            sys.stdout.flush()
    return {"placements": placements, "rows": rows}


def placement_verdicts(placed):
    """[(target, ok, detail)]: xen.drs against the XO greedy, summed over every day and placement."""
    if not placed or not placed["rows"]:
        return []

    def total(planner, key):
        return sum(row[planner][key] for row in placed["rows"])
    over, greedy_over = total("xen.drs", "over_host_steps"), total(REPLAY_GREEDY, "over_host_steps")
    moved, greedy_moved = total("xen.drs", "migrations"), total(REPLAY_GREEDY, "migrations")
    migration_limit = REPLAY_MIGRATION_FACTOR * greedy_moved + REPLAY_MIGRATION_SLACK * len(placed["rows"])
    worse = sum(row["xen.drs"]["over_host_steps"] > REPLAY_SHARE_FACTOR * row[REPLAY_GREEDY]["over_host_steps"]
                for row in placed["rows"])
    return [(TARGET_PLACEMENT_SHARE, over <= REPLAY_SHARE_FACTOR * greedy_over,
             "xen.drs %d host-steps over, %s %d (ratio %.3f, limit %g); %d of %d replays above %g on their own"
             % (over, REPLAY_GREEDY, greedy_over, over / max(greedy_over, 1), REPLAY_SHARE_FACTOR, worse,
                len(placed["rows"]), REPLAY_SHARE_FACTOR)),
            (TARGET_PLACEMENT_MIGRATIONS, moved <= migration_limit,
             "xen.drs %d migrations, %s %d; limit %g" % (moved, REPLAY_GREEDY, greedy_moved, migration_limit))]


def print_replay_header(scenario):
    host = scenario.hosts[0]
    print("\n== trace replay %s: %d VMs on %d hosts x %g CPUs / %g GiB, %d steps of %g min (preset %s)"
          % (scenario.name.split(":", 1)[-1], len(scenario.vms), len(scenario.hosts), host.cpus,
             host.memory_mb / 1024, scenario.steps, scenario.step_seconds / 60, traces.PRESET))
    print("   reference policy (%s), product defaults otherwise; ping-pong = back on a host left < 2 h before"
          % ", ".join("%s %s" % item for item in traces.replay.REFERENCE_POLICY.items()))
    print("   %-24s %6s %7s %7s %9s %9s %6s %9s %8s %9s %8s %7s" % (
        "planner", "migr", "migr/h", "over %", "over min", "sustained", "peak", "ping-pong", "mem GiB",
        "plan ms", "max ms", "wall s"))


def print_replay_row(name, m):
    print("   %-24s %6d %7.2f %7.3f %9g %9d %6.3f %9d %8.1f %9.2f %8.1f %7.1f" % (
        name, m.migrations, m.migrations_per_hour, 100 * m.over_share, m.overload_minutes,
        m.sustained_host_steps, m.peak_load, m.ping_pongs, m.memory_moved_mb / 1024, 1000 * m.plan_seconds_mean,
        1000 * m.plan_seconds_max, m.wall_seconds))


def replay_verdicts(replayed):
    """[(target, ok, detail)] per replayed day: xen.drs (REPLAY_DEFAULT) against the XO greedy."""
    checks = []
    for day in (replayed or {}).get("days", ()):
        drs = day["rows"].get("xen.drs %s" % REPLAY_DEFAULT)
        greedy = day["rows"].get(REPLAY_GREEDY)
        if drs is None or greedy is None:
            continue
        drs, greedy, label = drs["metrics"], greedy["metrics"], day["day"]
        share_limit = REPLAY_SHARE_FACTOR * greedy["over_share"]
        checks.append((TARGET_REPLAY_SHARE, drs["over_share"] <= share_limit,
                       "%s: xen.drs %.4f (%d host-steps), %s %.4f (%d); limit %.4f"
                       % (label, drs["over_share"], drs["over_host_steps"], REPLAY_GREEDY, greedy["over_share"],
                          greedy["over_host_steps"], share_limit)))
        migration_limit = REPLAY_MIGRATION_FACTOR * greedy["migrations"] + REPLAY_MIGRATION_SLACK
        checks.append((TARGET_REPLAY_MIGRATIONS, drs["migrations"] <= migration_limit,
                       "%s: xen.drs %d migrations, %s %d; limit %g"
                       % (label, drs["migrations"], REPLAY_GREEDY, greedy["migrations"], migration_limit)))
        checks.append((TARGET_REPLAY_PING_PONG, drs["ping_pongs"] == 0,
                       "%s: xen.drs %d ping-pong(s)" % (label, drs["ping_pongs"])))
        checks.append((TARGET_REPLAY_TIME, drs["wall_seconds"] < REPLAY_DAY_SECONDS,
                       "%s: xen.drs %.1f s (planning %.1f ms a step on average, %.1f ms at most); load average"
                       " %.1f on %d cores after the day" % (label, drs["wall_seconds"], 1000 * drs["plan_seconds_mean"],
                                                            1000 * drs["plan_seconds_max"],
                                                            day.get("load_average", os.getloadavg()[0]),
                                                            os.cpu_count())))
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="what CI runs: one seed of each original kind at 8 hosts, %d of each hard kind,"
                             " skewed at 100 and 1,000 hosts, one trace day (default policy and XO greedy only)"
                             % QUICK_HARD_SEEDS)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds per original kind and small size in a full run (default 3)")
    parser.add_argument("--hard-seeds", type=int, default=20,
                        help="seeds per hard kind in a full run (default 20; a quick run takes at most %d)"
                             % QUICK_HARD_SEEDS)
    parser.add_argument("--exact-time-limit", type=float, default=EXACT_TIME_LIMIT_S,
                        help="seconds per exact (HiGHS) solve (default %g)" % EXACT_TIME_LIMIT_S)
    parser.add_argument("--no-traces", action="store_true", help="skip the PlanetLab trace replay")
    parser.add_argument("--placements", type=int, default=REPLAY_PLACEMENTS,
                        help="full runs: other starting placements replayed per trace day (default %d, 0 skips)"
                             % REPLAY_PLACEMENTS)
    parser.add_argument("--no-whatif", action="store_true",
                        help="skip timing playbooks/whatif.yml on the largest trace day (full runs only)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure and verdict to FILE")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    print("xen.drs placement benchmark (%s run); load average %.1f on %d cores; times are best of 3-5 runs"
          " (1 when a run takes over %g s, or twice the time target);"
          " exact solves limited to %g s each"
          % ("quick" if args.quick else "full", os.getloadavg()[0], os.cpu_count(), SMALL_REPEAT_ENOUGH_S,
             args.exact_time_limit))
    results = []
    for kind, hosts, domains, seed, solve in scenario_list(args.quick, args.seeds, args.hard_seeds):
        result = run_scenario(kind, hosts, domains, seed, solve, time_limit=args.exact_time_limit)
        print_scenario(result)
        results.append(result)
        sys.stdout.flush()
    replay_started = time.perf_counter()
    replay = None if args.no_traces else run_traces(args.quick)
    placed = None if args.quick or args.no_traces else run_placements(args.placements)
    if replay:
        print("   (trace replay: %.1f s)" % (time.perf_counter() - replay_started))
    whatif = None
    if not (args.quick or args.no_whatif or args.no_traces) and traces.days():
        whatif = whatif_playbook.run_playbook(whatif_playbook.largest_day(traces.days()))
        whatif_playbook.print_run(whatif)

    summary = kind_summary(results)
    print_kind_summary(summary)
    print_time_split(results)
    checks = (verdicts(results) + replay_verdicts(replay) + placement_verdicts(placed)
              + whatif_playbook.verdicts(whatif, replay, "xen.drs %s" % REPLAY_DEFAULT))
    print("\n== targets")
    missed = [c for c in checks if not c[1] and c[0] not in REPORT_ONLY]
    for target in dict.fromkeys(c[0] for c in checks):
        mine = [c for c in checks if c[0] == target]
        bad = [c for c in mine if not c[1]]
        verdict = ("NOT MET" if target in REPORT_ONLY else "MISSED") if bad else "met"
        unit = "sum" if target in (TARGET_PLACEMENT_SHARE, TARGET_PLACEMENT_MIGRATIONS) else \
            "days" if target in REPLAY_TARGETS else "runs" if target in whatif_playbook.TARGETS else "scenarios"
        print("   %-58s %s (%d/%d %s)" % (target, verdict, len(mine) - len(bad), len(mine), unit))
    for result in results:
        if result["hosts"] in PLAN_TIME_TARGETS_S:
            drs = result["rows"]["xen.drs"]
            print("   xen.drs on %s: %.3f s wall, %.3f s CPU, peak memory %s (tracemalloc)"
                  % (label_of(result), drs["seconds"], drs["cpu_seconds"], peak(result)))
    ratios = [r for entry in summary.values() for r in entry["ratios"]]
    if ratios:
        print("   xen.drs / exact migrations over %d small scenarios: mean %.3f, max %.3f"
              % (len(ratios), statistics.mean(ratios), max(ratios)))
    unproven = [label_of(r) for r in results if r["exact"] and yardstick(r)["status"] != "optimal"]
    if unproven:
        print("   exact not proven optimal within %g s (best plan found used): %s"
              % (args.exact_time_limit, "; ".join(unproven)))
    for target, _ok, detail in missed:
        print("MISSED: %s -- %s" % (target, detail))
    for target, ok, detail in checks:
        if target in REPORT_ONLY and not ok:
            print("NOT MET (report only, the exact solve proved no minimum): %s -- %s" % (target, detail))
    print("   benchmark wall time: %.1f s" % (time.perf_counter() - started))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"scenarios": results, "replay": replay, "placements": placed, "per_kind": summary,
                       "whatif": whatif and {k: v for k, v in whatif.items() if k != "document"},
                       "targets": [{"target": t, "met": ok, "detail": d} for t, ok, d in checks]}, handle, indent=1)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
