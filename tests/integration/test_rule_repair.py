"""playbooks/rebalance.yml repairs the rule breaks a pool starts with, on the real lab, with idle guests.

The pool starts broken: mr-db1 and mr-db2, one anti-affinity group, both run on hv2; mr-lic, pinned to
hv3, runs on hv1. Every host is far under the load threshold, so only the rules can cause a move, and
nothing here depends on how busy the machine is.
1. --check --diff prints the two repairs (mr-lic to hv3; of mr-db1/mr-db2 the one with less memory,
   ties by name) as 'would migrate', with the rule each breaks as the reason; no domain moves and no
   report is written;
2. the real run live-migrates those two, and nothing else: virsh shows mr-db1 and mr-db2 on different
   hosts and mr-lic on hv3; the plan's measure in the report counts 3 rule breaks before and 0 after;
   both outcomes in the report are
   'migrated' and verified; every guest keeps ticking where it runs, never rebooted;
3. a second run right away plans no migration, names no rule break and reports changed=0.
Placement is checked with virsh on the hosts, the rest with the run's JSON report and output.
Wall times are printed as figures, not asserted.
"""

from __future__ import annotations

import re
import time

import pytest

import rebalance_demo as demo
from test_make_room import booted, keeps_ticking
from test_rebalance import expect_nothing_to_do, run_and_report

DB = ("mr-db1", "mr-db2")
LIC = "mr-lic"
GUESTS = {"hv2": {DB[0]: "idle", DB[1]: "idle"}, "hv1": {LIC: "idle"}}
GROUP = f"anti-affinity group [{', '.join(DB)}]"
# Idle guests use a few hundredths of a CPU: the thresholds only have to stay far above that. The
# demo's time units (minutes) and max_over/interval; no cooldown, so that "nothing to do" on the
# second run means "nothing broken", not "moved too recently". `now` is left to the planner (the clock).
POLICY = {
    "load_threshold": 0.8,
    "max_load_candidate": 0.75,
    "max_over": 1,
    "interval": 2,
    "cooldown": 0,
    "anti_affinity": [list(DB)],
    "pin": {LIC: ["hv3"]},
    "max_migrations": 5,
}
# a plan line: '#  WAVE  VM  FROM -> TO  LOAD FROM / TO  REASON', one string of the debug task's list
PLANNED = re.compile(r'^\s+"\s+\d+\s+\d+\s+(\S+)\s+(hv\d) -> (hv\d)\s+\S+ / \S+\s+(.*?)",?$', re.MULTILINE)
OUTCOME = re.compile(r"wave \d+\s+(\S+)\s+(hv\d) -> (hv\d)\s+(would migrate|migrated|failed|not run|unreachable)")


def used_memory_kib(lab, host, guest):
    """The domain's current memory, as hypervisor_info reads it (libvirt's domain info)."""
    return int(re.search(r"^Used memory:\s+(\d+) KiB", lab.virsh(host, "dominfo", guest), re.MULTILINE)[1])


@pytest.fixture(scope="module")
def pool(lab, tmp_path_factory):
    """The broken pool: the guests booted and ticking, the mover the rule names, a report directory."""
    try:
        lab.start_guests(GUESTS)
        placed = {g: h for h, guests in GUESTS.items() for g in guests}
        ticks_before = booted(lab, placed)
        memory = {g: used_memory_kib(lab, "hv2", g) for g in DB}
        # of two anti-affine domains on one host, the one with less memory moves; ties: the name
        mover = min(DB, key=lambda g: (memory[g], g))
        print(f"\nguest memory {memory} KiB: {mover} should move off hv2")
        yield {"placed": placed, "ticks": ticks_before, "mover": mover,
               "stayer": DB[1] if mover == DB[0] else DB[0], "reports": tmp_path_factory.mktemp("reports")}
    finally:
        for name in (*DB, LIC):
            if name in lab.state()["guests"]:
                lab.remove_guest(name)


def rebalance(lab, pool, options=()):  # pylint: disable=redefined-outer-name
    """Run playbooks/rebalance.yml; returns (rc, output, wall seconds)."""
    cmd = demo.playbook_command(lab, "rebalance.yml", pool["reports"], POLICY, *options)
    started = time.monotonic()
    proc = lab.ctl(cmd, check=False, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def expected_reasons(pool):  # pylint: disable=redefined-outer-name
    """{vm: (source, reason)} of the two repairs the rules call for."""
    return {LIC: ("hv1", f"{LIC} on hv1, outside its pin [hv3]"),
            pool["mover"]: ("hv2", f"{pool['mover']} on hv2 with {pool['stayer']}, {GROUP}")}


def test_check_mode_prints_the_repairs_and_moves_nothing(lab, pool):
    before = demo.placement(lab)
    assert before == pool["placed"]
    rc, output, wall = rebalance(lab, pool, options=("--check", "--diff"))
    print(f"check-mode run: {wall:.1f} s wall")
    assert rc == 0, output[-4000:]
    assert "check mode: nothing will be changed" in output
    planned = {vm: (source, reason) for vm, source, _dest, reason in PLANNED.findall(output)}
    print(f"planned: {PLANNED.findall(output)}")
    assert planned == expected_reasons(pool), output[-4000:]
    outcomes = {vm: status for vm, _source, _dest, status in OUTCOME.findall(output)}
    assert outcomes == {LIC: "would migrate", pool["mover"]: "would migrate"}, output[-4000:]
    assert re.search(rf"{LIC}\s+hv1 -> hv3\s", output)
    assert demo.placement(lab) == before
    assert not list(pool["reports"].iterdir())


def test_rebalance_repairs_the_breaks_and_the_guests_keep_running(lab, pool):
    report, _output = run_and_report(lambda: rebalance(lab, pool), pool["reports"], "repair run")
    moves = demo.moved(report)
    print(f"measure {report['measure']}")
    # the plan: exactly the two repairs, for the reasons the rules give
    assert {m["vm"]: (m["source"], m["reason"]) for m in report["migrations"]} == expected_reasons(pool)
    assert report["measure"]["before"]["rule_breaks"] == 3  # mr-db1, mr-db2 (with each other), mr-lic
    assert report["measure"]["after"]["rule_breaks"] == 0
    assert report["skipped"] == []
    reasons = {h["name"]: "; ".join(h["reasons"]) for h in report["hosts"]}
    assert f"rule break, {expected_reasons(pool)[LIC][1]}: plan moves {LIC}" in reasons["hv1"]
    assert f"plan moves {pool['mover']}" in reasons["hv2"]
    # what happened: both migrated and verified, nothing else
    assert {o["vm"]: (o["status"], o["verified"]) for o in report["outcomes"]} == {
        LIC: ("migrated", True), pool["mover"]: ("migrated", True)}
    # virsh on the hosts: the rules hold now
    placement = demo.placement(lab)
    print(f"placement after: {placement}")
    assert placement[LIC] == "hv3"
    assert placement[pool["stayer"]] == "hv2"
    assert placement[DB[0]] != placement[DB[1]]
    assert placement[pool["mover"]] == next(m["destination"] for m in moves if m["vm"] == pool["mover"])
    # the guests' memory moved with them: their tick counters go on, and none booted again
    keeps_ticking(lab, placement, pool["ticks"])


def test_second_run_moves_nothing(lab, pool):
    report = expect_nothing_to_do(lab, lambda: rebalance(lab, pool), pool["reports"])
    assert report["skipped"] == [] and not [r for h in report["hosts"] for r in h["reasons"] if "rule break" in r]
