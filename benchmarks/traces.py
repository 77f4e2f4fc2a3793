"""Replay real VM CPU demand (PlanetLab traces) through a planner, one day at a time.

Each trace row is one VM: 288 samples, one every 5 minutes, in percent of one CPU. A replay puts
a seeded random choice of trace VMs (1 vCPU each) on a pool of small hosts, at random like an
unmanaged pool would be, until the pool's mean load reaches ``mean_load``. Then it steps through
the day: every step sets each VM's ``cpu`` to its trace value, records every host's measured load
as a new sample, and every ``interval`` minutes calls the planner on the current cluster and
applies its migrations (they take effect at the next step, with ``last_migration`` recorded).

Counted per planner: migrations, host-steps over the threshold, host-steps sustained-overloaded
(over the threshold for at least ``max_over`` minutes), and ping-pongs: a VM moved back to a host
it left less than ``PING_PONG_STEPS`` steps (2 hours) before; that is longer than the default
60-minute cooldown, which every planner obeys, so a count here means a VM went back and forth.
"""
import csv
import glob
import os
import random
import time

import scenarios

TRACE_DIR = "/work/shared/traces/planetlab"
STEP_MINUTES = 5
PING_PONG_STEPS = 24
DAY0 = scenarios.NOW


def days(trace_dir=TRACE_DIR):
    """Paths of the available trace days, oldest first."""
    return sorted(glob.glob(os.path.join(trace_dir, "*.csv")))


def load_day(path):
    """[(vm name, [cores used per step])] from one trace CSV (percent of one CPU -> cores)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if header[0] != "vm" or len(header) < 2:
            raise ValueError("%s: expected a header 'vm,t0,t1,...', got %r" % (path, header[:3]))
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((row[0], [float(v) / 100 for v in row[1:]]))
            except ValueError as error:
                raise ValueError("%s line %d: %s" % (path, line, error)) from error
    return rows


def build_pool(rows, seed, hosts=16, cpus=8, mean_load=0.6, memory_mb=262144):
    """Hosts and their VMs (trace series kept aside in ``series``), randomly placed."""
    rng = random.Random("pool/%s/%s/%s" % (seed, hosts, mean_load))
    chosen = rng.sample(rows, len(rows))
    demand = 0.0
    target = mean_load * hosts * cpus
    pool = [{"name": "xen%02d" % i, "cpus": cpus, "memory_mb": memory_mb, "maintenance": False,
             "samples": [], "domains": []} for i in range(hosts)]
    series = {}
    for index, (trace_name, values) in enumerate(chosen):
        if demand >= target:
            break
        mean = sum(values) / len(values)
        name = "vm%04d" % index
        series[name] = values
        demand += mean
        dom = {"name": name, "uuid": "trace-%s" % trace_name, "vcpus": 1, "cpu": values[0],
               "memory_mb": rng.choice((1024, 2048, 2048, 4096)), "state": "running"}
        room = [h for h in pool if _free_mb(h) - dom["memory_mb"] >= 4096]
        if not room:
            raise ValueError("pool memory full after %d VMs: lower mean_load or raise memory_mb" % index)
        rng.choice(room)["domains"].append(dom)
    return pool, series


def _free_mb(host):
    return host["memory_mb"] - scenarios.DOM0_MB - sum(d["memory_mb"] for d in host["domains"])


def replay(planner, rows, seed=1, hosts=16, cpus=8, mean_load=0.6, policy=None):
    """Run one day of ``rows`` through ``planner(cluster, policy) -> migrations``; returns counts."""
    pool, series = build_pool(rows, seed, hosts, cpus, mean_load)
    base = scenarios.policy_for(pool, max_migrations=5)
    base.update(policy or {})
    threshold, max_over, interval = base["load_threshold"], base["max_over"], base["interval"]
    keep = int(max_over // STEP_MINUTES) + 3
    sustained_len = int(max_over // STEP_MINUTES) + 1  # samples spanning max_over minutes
    where = {d["name"]: h for h in pool for d in h["domains"]}
    left = {}  # vm -> {host: step it left}
    steps = len(next(iter(series.values())))
    counts = {"migrations": 0, "over": 0, "sustained": 0, "ping_pong": 0, "plan_seconds": 0.0, "plans": 0}
    for step in range(steps):
        now = DAY0 + step * STEP_MINUTES * 60
        for host in pool:
            for dom in host["domains"]:
                dom["cpu"] = series[dom["name"]][step]
            load = sum(d["cpu"] for d in host["domains"]) / host["cpus"]
            host["samples"] = (host["samples"] + [[now, round(load, 4)]])[-keep:]
            host["memory_free_mb"] = _free_mb(host)
            over = load > threshold
            counts["over"] += over
            recent = host["samples"][-sustained_len:]
            counts["sustained"] += over and len(recent) == sustained_len and all(s[1] > threshold for s in recent)
        if (step * STEP_MINUTES) % interval:
            continue
        # What a gather would hand the planner: its own copy, so a planner cannot change the pool.
        snapshot = [dict(h, domains=[dict(d) for d in h["domains"]], samples=list(h["samples"])) for h in pool]
        started = time.perf_counter()
        migrations = planner(snapshot, dict(base, now=now))
        counts["plan_seconds"] += time.perf_counter() - started
        counts["plans"] += 1
        for move in migrations:
            vm, dest_name = move["vm"], move["destination"]
            source = where[vm]
            dest = next(h for h in pool if h["name"] == dest_name)
            dom = next(d for d in source["domains"] if d["name"] == vm)
            source["domains"].remove(dom)
            dest["domains"].append(dom)
            dom["last_migration"] = {"time": now, "source": source["name"], "destination": dest_name}
            where[vm] = dest
            history = left.setdefault(vm, {})
            if dest_name in history and step - history[dest_name] < PING_PONG_STEPS:
                counts["ping_pong"] += 1
            history[source["name"]] = step
            counts["migrations"] += 1
    counts["vms"] = len(series)
    counts["hosts"] = hosts
    return counts
