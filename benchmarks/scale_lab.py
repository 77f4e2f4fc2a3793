"""How a rebalance run's cost grows with the pool: the real lab with 3, 12 and 24 hypervisors.

    sudo .venv/bin/python benchmarks/scale_lab.py [--sizes 3,12,24] [--sample-seconds 3] [--runs 3] [--check]

For each size, a tests/lab lab of that many namespaced libvirtd hypervisors (a few idle guests on the
first three) is brought up; then real no-op `rebalance.yml` runs (the median of --runs, with their
spread) and a `--check` run are timed (after one warm-up run, which writes the state files). Per run it
prints the wall time and where it goes:
the part outside the run's own clock (ansible-playbook's start, the Prepare stage, the Unlock and Result
stages), the Gather stage and its sampling window (from the run's JSON report), the controller's CPU
seconds (ansible-playbook, its workers and ssh clients) and the hypervisors' CPU seconds (their cgroups:
sshd, the modules' Python, libvirtd), and the five slowest tasks (ansible.posix.profile_tasks).
All lab hosts share this machine's cores with the controller, so a lab run pays for every host's work
one after the other; on a real pool each host works on its own CPUs. The table's last column estimates
that: the wall time less the hosts' CPU spread over this machine's cores, plus one host's share.
The targets (issue "Reliability and scale"): a no-op run over 3 hosts in at most TARGET_3_HOSTS_S wall
with the default sampling window, and 24 hosts in at most TARGET_GROWTH x the 3-host time. A miss is
printed as a MISSED line; --check then exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import lab as lab_lib  # noqa: E402  pylint: disable=wrong-import-position
import rebalance_demo as demo  # noqa: E402  pylint: disable=wrong-import-position

TARGET_3_HOSTS_S = 8.0
TARGET_GROWTH = 2.0
GUESTS = {"hv1": {"sc-idle1": "idle"}, "hv2": {"sc-idle2": "idle"}, "hv3": {"sc-idle3": "idle"}}


def hosts_cpu_seconds(lab) -> float | None:
    """CPU seconds used so far by the lab's hypervisors (their cpuacct cgroups), or None without them."""
    total, found = 0, False
    for entry in lab.state()["hosts"].values():
        for cgroup in entry.get("cgroups", []):
            usage = Path(cgroup) / "cpuacct.usage"
            if entry.get("role") == "hv" and usage.exists():
                total += int(usage.read_text())
                found = True
    return total / 1e9 if found else None


def slowest_tasks(output: str, count: int = 5) -> list[str]:
    """The profile_tasks recap's first lines: 'task name --- 1.23s'."""
    lines = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", output, re.MULTILINE)
    return [f"{seconds}s {name.strip()[:60]}" for name, seconds in lines[:count]]


def timed_run(lab, reports: Path, sample_seconds: float, *options: str) -> dict:
    cmd = demo.playbook_command(lab, "rebalance.yml", reports, {}, "--extra-vars",
                                json.dumps({"xen_drs_sample_seconds": sample_seconds}), *options)
    env = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "ANSIBLE_FORKS": "50"}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts_before = hosts_cpu_seconds(lab)
    started = time.monotonic()
    proc = lab.ctl(cmd, check=False, timeout=900, env=env)
    wall = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts_after = hosts_cpu_seconds(lab)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"rebalance.yml {' '.join(options)} failed (rc {proc.returncode}):\n{output[-3000:]}")
    figures = {}
    if "--check" not in options:
        figures = demo.newest_report(reports)["figures"]
    return {
        "wall": wall,
        "outside": wall - figures["wall_seconds"] if figures else None,
        "gather": figures.get("gather_seconds"),
        "sampling": figures.get("sample_seconds"),
        "controller_cpu": (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime),
        "hosts_cpu": None if hosts_before is None else hosts_after - hosts_before,
        "slowest": slowest_tasks(output),
    }


def real_pool_estimate(row):
    """The no-op wall time with each host's work on its own CPUs: the lab's wall, less the hosts' CPU
    spread over this machine's cores, plus one host's share of it."""
    hosts_cpu = row["real"]["hosts_cpu"]
    if hosts_cpu is None:
        return None
    return row["real"]["wall"] - hosts_cpu / (os.cpu_count() or 1) + hosts_cpu / row["size"]


def fmt(value, unit="s"):
    return "-" if value is None else f"{value:.1f}{unit}"


def measure(size: int, sample_seconds: float, runs: int) -> dict:
    lab = lab_lib.Lab(f"xs{os.getpid() % 10000}", hosts=size)
    lab.down()
    try:
        started = time.monotonic()
        lab.up()
        lab.start_guests({h: g for h, g in GUESTS.items() if h in lab.hypervisors})
        for host, guests in GUESTS.items():
            for guest in guests:
                if host in lab.hypervisors:
                    demo.wait_booted(lab, host, guest)
        up = time.monotonic() - started
        with tempfile.TemporaryDirectory() as reports:
            timed_run(lab, Path(reports), sample_seconds)  # warm-up: state files, ssh host keys, caches
            # the median of several no-op runs: one run's wall time moves with whatever else this machine does
            reals = sorted((timed_run(lab, Path(reports), sample_seconds) for attempt in range(runs)),
                           key=lambda run: run["wall"])
            real = dict(reals[len(reals) // 2], spread=(reals[0]["wall"], reals[-1]["wall"]))
            check = timed_run(lab, Path(reports), sample_seconds, "--check")
        return {"size": size, "up": up, "real": real, "check": check}
    finally:
        lab.down()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3,12,24")
    parser.add_argument("--sample-seconds", type=float, default=3.0, help="hypervisor_info's window (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="timed no-op runs per size, the median counts (default 3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}")
    if os.geteuid() != 0:
        print("scale_lab: needs root (the lab's network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.sample_seconds, args.runs)
        rows.append(row)
        print(f"\n{size} hypervisors (lab up in {row['up']:.0f} s):")
        for kind in ("real", "check"):
            run = row[kind]
            spread = f" (median of {args.runs}: {run['spread'][0]:.1f}-{run['spread'][1]:.1f} s)" if "spread" in run else ""
            print(f"  {kind:5} wall {fmt(run['wall'])}{spread}: outside the run's clock {fmt(run['outside'])}, gather {fmt(run['gather'])} "
                  f"(sampling {fmt(run['sampling'])}); CPU: controller {fmt(run['controller_cpu'])}, "
                  f"hypervisors {fmt(run['hosts_cpu'])}")
            print("        slowest tasks: " + "; ".join(run["slowest"]))
    print("\nHOSTS  NO-OP WALL  CHECK WALL  CONTROLLER CPU  HOSTS CPU  x 3-HOST WALL  REAL-POOL ESTIMATE")
    base = next((r["real"]["wall"] for r in rows if r["size"] == 3), None)
    for row in rows:
        growth = row["real"]["wall"] / base if base else None
        print(f"{row['size']:5}  {fmt(row['real']['wall']):>10}  {fmt(row['check']['wall']):>10}  "
              f"{fmt(row['real']['controller_cpu']):>14}  {fmt(row['real']['hosts_cpu']):>9}  {fmt(growth, 'x'):>13}  "
              f"{fmt(real_pool_estimate(row)):>18}")
    # (met, figure): each target this run could judge
    judged = []
    if base is not None:
        judged.append((base <= TARGET_3_HOSTS_S, f"no-op run over 3 hosts {base:.1f} s (target {TARGET_3_HOSTS_S} s)"))
    for row in rows:
        if base and row["size"] == 24:
            wall = row["real"]["wall"]
            judged.append((wall <= TARGET_GROWTH * base, f"24 hosts {wall:.1f} s = {wall / base:.2f} x the 3-host "
                                                         f"{base:.1f} s (target {TARGET_GROWTH} x)"))
    for met, line in judged:
        print(f"{'met' if met else 'MISSED'}: {line}")
    missed = [line for met, line in judged if not met]
    # the same growth target on the estimate, where each host works on its own CPUs (report only: an estimate)
    estimates = {row["size"]: real_pool_estimate(row) for row in rows}
    if estimates.get(3) and estimates.get(24):
        growth = estimates[24] / estimates[3]
        print(f"{'met' if growth <= TARGET_GROWTH else 'NOT MET'} (report only, real-pool estimate): 24 hosts "
              f"{estimates[24]:.1f} s = {growth:.1f} x the 3-host {estimates[3]:.1f} s (target {TARGET_GROWTH} x)")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
