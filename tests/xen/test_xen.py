"""The collection on real Xen: emulated Xen 4.17 hosts, libvirt's libxl driver on xen:///system.

In the order an operator meets them, on two hosts booted once (tests/xen/conftest.py):
1. hypervisor_info on xen:///system: Domain-0 is not a domain, CPUs and memory match xl, a busy PV
   guest shows CPU use and an idle one does not, the state file keeps samples;
2. domain_migrate: check mode moves nothing; a live migration over xen+ssh:// with the guest's
   console ticks continuing; a repeat is a no-op; the UUID (not the domain ID, which changes) keeps
   the domain's history and record; its tags (libvirt metadata) travel with it; back again with a
   migration address; options libxl rejects fail before anything moves, and a stopped destination
   libvirtd leaves the guest on its source;
3. rebalance.yml: an overloaded Xen host sheds a busy guest; --check shows the plan and changes
   nothing; a second run moves nothing.
Migration times and downtimes are printed as figures, not asserted.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from conftest import console_log, run_playbook, running_on, task_results, tick_times, ticks, wait_for

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
STATE_FILE = "/var/lib/xen-drs/state.json"
TAGS_NAMESPACE = "https://github.com/xen-drs/xen.drs/metadata/tags"
INFO_TASK = "Measure the host"
MIGRATE_TASK = "Migrate the guest from the source"


def xl_info(xenlab, host) -> dict[str, str]:
    out = xenlab.ssh(host, "xl info").stdout
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def measure(xenlab, host, sample_seconds=5) -> dict:
    rc, output, result = run_playbook(xenlab, PLAYBOOKS / "hypervisor_info.yml",
                                      {"target": host, "sample_seconds": sample_seconds})
    assert rc == 0 and result, output[-3000:]
    return task_results(result, INFO_TASK)[host]


def migrate(xenlab, vm, source, destination, check=False, **extra) -> dict:
    rc, output, result = run_playbook(xenlab, PLAYBOOKS / "domain_migrate.yml",
                                      {"vm": vm, "source": source, "destination": destination, **extra},
                                      check=check)
    assert result, f"no JSON from ansible-playbook (rc={rc}):\n{output[-3000:]}"
    return task_results(result, MIGRATE_TASK)["localhost"]


# Run on the source dom0: the destination's clock minus the source's, over one ssh session kept
# open (the best of 5 exchanges), and the error bound (half that exchange's round trip).
CLOCK_OFFSET = """
import subprocess, sys, time
peer = subprocess.Popen(["ssh", sys.argv[1], "while read x; do date +%s.%N; done"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
best = None
for _ in range(5):
    t0 = time.time(); peer.stdin.write("x\\n"); peer.stdin.flush(); there = float(peer.stdout.readline()); t1 = time.time()
    if best is None or t1 - t0 < best[0]:
        best = (t1 - t0, there - (t0 + t1) / 2)
peer.stdin.close()
print(best[1], best[0] / 2)
"""


def console_gap(xenlab, vm, source, destination) -> str:
    """How long the guest's console was silent across a migration (its last tick logged by the
    source's xenconsoled, its first on the destination's), with the two dom0s' clock offset."""
    before = tick_times(console_log(xenlab, source, vm))
    after = tick_times(console_log(xenlab, destination, vm))
    if not before or not after:
        return "unknown (xenconsoled wrote no time stamps)"
    offset, error = xenlab.ssh(source, f"python3 - {destination}", input=CLOCK_OFFSET).stdout.split()
    return (f"{after[0][1] - before[-1][1] - float(offset):.2f} s (ticks every 1 s; the dom0 clocks' offset "
            f"{float(offset):+.3f} s +/- {float(error):.3f} s corrected)")


def state_file(xenlab, host) -> dict:
    return json.loads(xenlab.ssh(host, f"cat {STATE_FILE}").stdout)


def test_hypervisor_info_reads_xen(xenlab, pv_guest):
    pv_guest("xen1", "info-busy", "busy")
    pv_guest("xen1", "info-idle", "idle")
    time.sleep(10)  # past the guests' boot, which burns CPU whatever their kind
    first = measure(xenlab, "xen1")
    second = measure(xenlab, "xen1")
    host = second["hypervisor"]
    xl = xl_info(xenlab, "xen1")
    print(f"\nxen1: {json.dumps({k: host[k] for k in ('cpus', 'cpus_total', 'memory_mb', 'memory_free_mb', 'load')})}; "
          f"xl total_memory {xl['total_memory']} free_memory {xl['free_memory']} nr_cpus {xl['nr_cpus']}")
    domains = {d["name"]: d for d in host["domains"]}
    # Domain-0 (ID 0, all-zero UUID) is not a movable domain
    assert set(domains) == {"info-busy", "info-idle"}
    assert all(d["uuid"] != "00000000-0000-0000-0000-000000000000" for d in host["domains"])
    # CPUs: Xen's physical CPUs; reserved_cpus (default 0) is what accounts for dom0
    assert host["cpus_total"] == int(xl["nr_cpus"]) == host["cpus"]
    # libvirt's node info is the whole machine (as documented), not dom0's share of it
    assert abs(host["memory_mb"] - int(xl["total_memory"])) <= 2
    assert abs(host["memory_free_mb"] - int(xl["free_memory"])) <= 64
    busy, idle = domains["info-busy"], domains["info-idle"]
    assert busy["state"] == "running" and busy["cpu_measured"] and busy["vcpus"] == 1 and busy["memory_mb"] == 128
    assert busy["cpu"] > 0.5, busy
    assert idle["cpu"] < 0.2, idle
    assert host["load"] == pytest.approx((busy["cpu"] + idle["cpu"]) / host["cpus"], abs=0.002)
    # the state file on the Xen host keeps the samples of both runs
    assert len(host["samples"]) >= len(first["hypervisor"]["samples"]) + 1 >= 2
    assert len(busy["samples"]) >= 2
    state = state_file(xenlab, "xen1")
    assert state["samples"][-1][0] == host["samples"][-1][0]


def test_live_migration_over_xen_ssh(xenlab, pv_guest):
    vm = pv_guest("xen1", "mig-tick", "idle")
    tags = "<tags><tag>db</tag><tag>prod</tag></tags>"
    xenlab.virsh("xen1", "metadata", vm, "--uri", TAGS_NAMESPACE, "--key", "drs", "--live", "--config",
                 "--set", tags)
    before = measure(xenlab, "xen1", 2)["hypervisor"]
    uuid = next(d["uuid"] for d in before["domains"] if d["name"] == vm)
    assert next(d["tags"] for d in before["domains"] if d["name"] == vm) == ["db", "prod"]
    old_id = xenlab.virsh("xen1", "domid", vm).strip()

    # check mode: the destination is asked (read-only), nothing moves
    checked = migrate(xenlab, vm, "xen1", "xen2", check=True)
    assert checked["changed"] and "would migrate" in checked["msg"], checked
    assert running_on(xenlab, vm) == ["xen1"]

    last_tick = ticks(console_log(xenlab, "xen1", vm))[-1]
    moved = migrate(xenlab, vm, "xen1", "xen2")
    assert moved.get("changed") and moved.get("verified"), moved
    print(f"\nlive migration xen1 -> xen2 over {moved['destination_uri']}: {moved['elapsed_seconds']} s; "
          f"job statistics {moved.get('job')}")
    assert moved["destination_uri"] == "xen+ssh://xen2/system"
    assert running_on(xenlab, vm) == ["xen2"]
    assert xenlab.virsh("xen1", "list", "--all", "--name").split().count(vm) == 0  # undefined on the source
    # the guest did not reboot: its ticks go on from where they were
    after = wait_for(lambda: [n for n in ticks(console_log(xenlab, "xen2", vm)) if n > last_tick], 120,
                     f"{vm} to tick on xen2")
    assert "xdrs-guest: boot" not in console_log(xenlab, "xen2", vm), "the guest rebooted"
    print(f"ticks: {last_tick} on xen1, then {after[0]}..{after[-1]} on xen2")
    print(f"console silent for {console_gap(xenlab, vm, 'xen1', 'xen2')} across the switch-over")

    # a repeat is a no-op
    again = migrate(xenlab, vm, "xen1", "xen2")
    assert again["changed"] is False and "already running on xen2" in again["msg"], again

    # Xen gives the domain a new ID and restarts its CPU time; the UUID keeps it recognised
    new_id = xenlab.virsh("xen2", "domid", vm).strip()
    print(f"domain ID {old_id} on xen1, {new_id} on xen2")
    there = measure(xenlab, "xen2", 2)["hypervisor"]
    domain = next(d for d in there["domains"] if d["name"] == vm)
    assert domain["uuid"] == uuid
    assert domain["last_migration"]["source"] == "xen1" and domain["last_migration"]["destination"] == "xen2"
    # the tags in libvirt's <metadata> came along (libxl keeps them through define, XMLDesc and migration)
    assert domain["tags"] == ["db", "prod"]

    # and back, with the memory stream sent to a given migration address
    moved = migrate(xenlab, vm, "xen2", "xen1", migration_address=xenlab.address("xen1"))
    print(f"live migration back with migration_address: {moved.get('elapsed_seconds')} s")
    assert moved.get("changed") and moved.get("verified"), moved
    assert moved["migrate_uri"] == f"tcp://{xenlab.address('xen1')}"
    assert running_on(xenlab, vm) == ["xen1"]


def test_failed_migrations_leave_the_guest_on_its_source(xenlab, pv_guest):
    vm = pv_guest("xen1", "mig-fail", "idle")
    # options libxl rejects fail before anything moves
    for option in ({"bandwidth_mib": 100}, {"max_downtime_ms": 300}):
        failed = migrate(xenlab, vm, "xen1", "xen2", **option)
        print(f"\n{option}: {failed.get('msg')}")
        assert failed.get("failed") and failed["domain_state_after"] == "running", failed
        assert running_on(xenlab, vm) == ["xen1"]
    # a stopped destination libvirtd
    xenlab.ssh("xen2", "systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket")
    try:
        failed = migrate(xenlab, vm, "xen1", "xen2")
    finally:
        xenlab.ssh("xen2", "systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service")
    print(f"\nstopped destination: {failed.get('msg')}")
    assert failed.get("failed") and "xen2" in failed["msg"], failed
    assert failed["domain_state_after"] == "running"
    assert running_on(xenlab, vm) == ["xen1"]
    last = ticks(console_log(xenlab, "xen1", vm))[-1]
    wait_for(lambda: ticks(console_log(xenlab, "xen1", vm))[-1] > last, 60, f"{vm} to keep ticking on xen1")


def test_rebalance_sheds_an_overloaded_xen_host(xenlab, pv_guest, tmp_path):
    for name in ("rb-busy1", "rb-busy2"):
        pv_guest("xen1", name, "half")
    pv_guest("xen1", "rb-idle", "idle")
    time.sleep(10)
    load = measure(xenlab, "xen1", 10)["hypervisor"]["load"]
    print(f"\nxen1 load with two half-busy guests: {load:.2f}")
    assert load > 0.3, "two half-busy PV guests should load xen1's 2 CPUs to about 0.5"
    policy = {"load_threshold": round(0.7 * load, 3), "max_load_candidate": round(0.7 * load, 3),
              "max_over": 1, "interval": 3, "cooldown": 5, "balance": 0}
    extra = {"xen_drs_report_dir": str(tmp_path), "xen_drs_policy": policy, "xen_drs_sample_seconds": 5,
             "xen_drs_migration_timeout": 300, "xen_drs_lock_ttl": 1200}

    def rebalance(*options):
        started = time.monotonic()
        proc = xenlab.ctl(["ansible-playbook", "-i", str(xenlab.inventory_path), str(REPO / "playbooks" / "rebalance.yml"),
                           "--extra-vars", json.dumps(extra), *options], check=False)
        print(f"rebalance.yml {' '.join(options)}: rc={proc.returncode} in {time.monotonic() - started:.0f} s")
        return proc.returncode, proc.stdout + proc.stderr

    def newest_report():
        return json.loads(sorted(tmp_path.glob("xen-drs-*.json"))[-1].read_text())

    # warm-up: record xen1's load until its overload has lasted max_over (nothing may move yet)
    for _attempt in range(4):
        rc, output = rebalance("--extra-vars", json.dumps({"xen_drs_policy": dict(policy, max_migrations=0)}))
        assert rc == 0, output[-4000:]
        xen1 = next(h for h in newest_report()["hosts"] if h["name"] == "xen1")
        print(f"warm-up: xen1 load {xen1['load']:.2f} {xen1['status']}: {'; '.join(xen1['reasons'])}")
        if xen1["overloaded"]:
            break
    else:
        pytest.fail("xen1 was not judged overloaded for max_over after 4 warm-up runs")

    before = {vm: running_on(xenlab, vm) for vm in ("rb-busy1", "rb-busy2", "rb-idle")}
    rc, output = rebalance("--check", "--diff")
    assert rc == 0, output[-4000:]
    planned = set(re.findall(r"(rb-busy\d)\s+xen1 -> xen2", output))  # the plan table and the diff
    assert len(planned) == 1, output[-4000:]
    assert {vm: running_on(xenlab, vm) for vm in before} == before

    rc, output = rebalance()
    assert rc == 0, output[-4000:]
    report = newest_report()
    moved = [o["vm"] for o in report["outcomes"] if o["status"] == "migrated"]
    # one of the two equally busy guests (which one may differ from --check's: their loads are measured again)
    assert len(moved) == len(planned) == 1 and moved[0] in ("rb-busy1", "rb-busy2"), report["outcomes"]
    assert running_on(xenlab, moved[0]) == ["xen2"]
    print(f"migrated {moved[0]} in {report['figures']['migrate_seconds']:.0f} s "
          f"(run {report['figures']['wall_seconds']:.0f} s)")

    rc, output = rebalance()
    assert rc == 0, output[-4000:]
    assert [o for o in newest_report()["outcomes"] if o["status"] == "migrated"] == []
    assert re.search(r"xen1\s*:.*changed=0", output) and re.search(r"xen2\s*:.*changed=0", output), output[-2000:]
