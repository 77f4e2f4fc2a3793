"""The policy's DRS behaviours on the real lab: memory, should rules, tag rules and balancing.

Each test starts its own guests (removed at the end, also when it fails), runs playbooks/rebalance.yml
with its own policy (the demo's time units: minutes, max_over 1) until the behaviour acts, checks the
move with virsh on the hosts and the run's JSON report and printed plan, and ends with a second run
right away that moves nothing (changed=0).
1. Memory, not CPU: hv1 runs two idle guests, hv2 one; memory_threshold sits between hv1's memory load
   and what one guest gives (from the host memory and guest memory hypervisor_info reports), CPU
   thresholds far above idle load. Once hv1's memory overload has lasted max_over, the run moves the
   guest with the most memory, to the only host that stays under the threshold, for memory_threshold.
2. A should anti-affinity pair on hv1: while a must pin holds both members on hv1, nothing moves and
   the printed plan lists both breaks with their reason (the report's measure counts 2); once another
   host may take one (the pin widened to hv1 and hv3), one migration repairs it, to hv3.
3. Tags in the domains' libvirt metadata (virsh metadata ... --live --config --set) drive a JMESPath
   anti-affinity rule: before the tags are written the rule selects nothing (a warning, nothing
   moves); after, one of the two tagged guests leaves hv1, the untagged third one stays, and the tags
   travel with the migrated domain.
4. balance (level 2) moves one busy guest off hv1, busier than the others but under load_threshold,
   once the imbalance has lasted balance_hold. The busy guests are capped at half a core each
   (virsh schedinfo vcpu_quota) so that hv1 stays clear of the threshold; the load one and two of them
   give is measured first, and the test is skipped, with the reason, on a machine too busy to show it.
Wall times and figures are printed, not asserted.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

import rebalance_demo as demo
from conftest import run_playbook, task_results
from test_make_room import booted, keeps_ticking
from test_rebalance import expect_nothing_to_do, host_entry, run_and_report

MAX_RUNS = 16  # runs take 7-70 s; the longest wait (max_over or balance_hold) is about a minute
TAGS_URI = "https://github.com/xen-drs/xen.drs/metadata/tags"
DB_SELECT = "[?contains(tags, 'db')].name"
# Idle guests use a few hundredths of a CPU: CPU thresholds far above that. No cooldown, so that
# "nothing to do" on a second run means nothing is wrong, not "moved too recently".
IDLE_POLICY = {"load_threshold": 0.8, "max_load_candidate": 0.75, "max_over": 1, "interval": 2, "cooldown": 0,
               "max_migrations": 5}
# playbooks/tasks/plan.yml prints the plan as a list of strings (the default callback shows them JSON-encoded)
PRINTED = re.compile(r'^\s+(".*")\s*,?$', re.MULTILINE)
BALANCE_LINE = re.compile(r"^Balance level (\d) \(target ([\d.]+)\): (.*)$")
READ_POOL = "read what hypervisor_info reports"


def rebalance(lab, report_dir, policy, options=()):
    """Run playbooks/rebalance.yml with this policy; returns (rc, output, wall seconds)."""
    started = time.monotonic()
    proc = lab.ctl(demo.playbook_command(lab, "rebalance.yml", report_dir, policy, *options), check=False, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def printed(output):
    """Every string the run printed in a list (the plan's and the result's lines), decoded."""
    lines = []
    for literal in PRINTED.findall(output):
        try:
            lines.append(json.loads(literal))
        except json.JSONDecodeError:
            continue
    return lines


def plan_lines(output, header):
    """The printed plan's indented lines under ``header`` (e.g. 'Should rules still broken:')."""
    lines, inside = [], False
    for text in printed(output):
        if text == header:
            inside = True
        elif inside:
            if not text.startswith("  "):
                break
            lines.append(text.strip())
    return lines


def warnings_of(output):
    return [line[len("WARNING: "):] for line in printed(output) if line.startswith("WARNING: ")]


def balance_of(output):
    """(level, target, reason) from the printed plan's balance line, or None."""
    found = [BALANCE_LINE.match(line) for line in printed(output)]
    return next((m.groups() for m in found if m), None)


def run_until_moved(lab, report_dir, policy, label, before_move):
    """Run until a run migrates something (at most MAX_RUNS); ``before_move(report, output)`` checks each
    run that moved nothing. Returns (report, output) of the run that moved."""
    for attempt in range(1, MAX_RUNS + 1):
        report, output = run_and_report(lambda: rebalance(lab, report_dir, policy), report_dir, f"{label} run {attempt}")
        hosts = [f"{h['name']} load {h['load']:.3f} memory {h['memory_load']:.4f} {h['status']}" for h in report["hosts"]]
        print(f"   hosts: {'; '.join(hosts)}")
        if report["migrations"]:
            return report, output
        before_move(report, output)
    pytest.fail(f"{label}: nothing moved in {MAX_RUNS} runs")
    return None  # not reached


def read_pool(lab, tmp_path):
    """{host: the hypervisor dict xen.drs.hypervisor_info returns} (a 1 s sample of every host)."""
    playbook = tmp_path / "read_pool.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "read the pool", "hosts": "hypervisors", "gather_facts": False,
        "tasks": [{"name": READ_POOL, "register": "info",
                   "xen.drs.hypervisor_info": {"name": "{{ inventory_hostname }}", "sample_seconds": 1,
                                               "uri": "{{ xen_drs_uri | default(omit) }}"}}]}]))
    rc, output, result = run_playbook(lab, playbook, yaml.safe_load(demo.LAB_VARS.read_text()))
    assert rc == 0 and result is not None, output[-4000:]
    return {host: res["hypervisor"] for host, res in task_results(result, READ_POOL).items()}


def guest_memory(pool, host):
    return {d["name"]: d["memory_mb"] for d in pool[host]["domains"] if d["state"] == "running"}


@pytest.fixture
def sized_guests(lab):
    """Like conftest's make_guests, with each guest's memory: start(host, name, memory_mib)."""
    made: list[str] = []

    def start(host, name, memory_mib):
        made.append(name)  # recorded first: if it fails to start, it is still removed
        lab.start_guest(host, name, "idle", memory_mib=memory_mib)

    yield start
    for name in made:
        lab.remove_guest(name)


def test_memory_pressure_not_cpu_moves_the_biggest_guest(lab, sized_guests, tmp_path):  # pylint: disable=redefined-outer-name
    big, small, other = "mp-big", "mp-small", "mp-other"
    placed = {big: "hv1", small: "hv1", other: "hv2"}
    for guest, host, mib in ((big, "hv1", 256), (small, "hv1", 96), (other, "hv2", 96)):
        sized_guests(host, guest, mib)
    ticks_before = booted(lab, placed)
    pool = read_pool(lab, tmp_path)
    host_mb = {h: pool[h]["memory_mb"] for h in lab.hypervisors}
    on_hv1, on_hv2 = guest_memory(pool, "hv1"), guest_memory(pool, "hv2")
    hv1_load = sum(on_hv1.values()) / host_mb["hv1"]
    # the biggest guest alone on hv3, the only host it fits on: hv2 with it would be over, like hv1 now
    big_alone = on_hv1[big] / host_mb["hv3"]
    threshold = round((hv1_load + big_alone) / 2, 6)
    print(f"\nhost memory_mb {host_mb}; guest memory_mb hv1 {on_hv1}, hv2 {on_hv2}; memory load hv1 "
          f"{hv1_load:.5f}, {big} alone {big_alone:.5f}: memory_threshold {threshold}")
    assert on_hv1[big] > on_hv1[small]
    assert on_hv1[small] / host_mb["hv1"] < threshold < hv1_load
    assert (on_hv2[other] + on_hv1[big]) / host_mb["hv2"] > threshold
    # half a minute of memory overload is enough to show the rule (a minute only makes the test wait longer)
    policy = dict(IDLE_POLICY, memory_threshold=threshold, max_over=0.5)

    def not_yet(report, _output):
        hv1 = host_entry(report, "hv1")
        assert not hv1["overloaded"] and hv1["load"] < policy["load_threshold"]
        assert demo.placement(lab) == placed

    report, _output = run_until_moved(lab, tmp_path / "reports", policy, "memory", not_yet)
    moves = report["migrations"]
    print(f"move: {[(m['vm'], m['source'], m['destination'], m['reason']) for m in moves]}")
    assert [(m["vm"], m["source"], m["destination"]) for m in moves] == [(big, "hv1", "hv3")]
    assert moves[0]["reason"].startswith("hv1 memory ") and f"> memory_threshold {threshold}" in moves[0]["reason"]
    hv1 = host_entry(report, "hv1")
    assert hv1["memory_overloaded"] and not hv1["overloaded"]  # memory, not CPU
    assert all(h["load"] < policy["load_threshold"] for h in report["hosts"])
    assert {o["vm"]: (o["status"], o["verified"]) for o in report["outcomes"]} == {big: ("migrated", True)}
    after = dict(placed, **{big: "hv3"})
    keeps_ticking(lab, after, ticks_before)
    print(f"placement after: {demo.placement(lab)}; predicted memory load "
          f"{ {h['name']: h['predicted_memory_load'] for h in report['hosts']} }")
    assert all(h["predicted_memory_load"] <= threshold for h in report["hosts"])

    second = expect_nothing_to_do(lab, lambda: rebalance(lab, tmp_path / "reports", policy), tmp_path / "reports")
    assert not any(h["memory_overloaded"] for h in second["hosts"])


def test_should_anti_affinity_is_broken_only_when_nothing_fits(lab, sized_guests, tmp_path):  # pylint: disable=redefined-outer-name
    # db1 has less memory, so it is the one to move (of two anti-affine domains, the one with less memory)
    db1, db2 = "sa-db1", "sa-db2"
    group = f"should-anti-affinity group [{db1}, {db2}]"
    for guest, mib in ((db1, 96), (db2, 128)):
        sized_guests("hv1", guest, mib)
    placed = {db1: "hv1", db2: "hv1"}
    ticks_before = booted(lab, placed)
    reports = tmp_path / "reports"
    soft = {"anti_affinity": [{"members": [db1, db2], "strength": "should"}]}

    # every other host refused: a must pin holds both on hv1. The should rule stays broken, reported.
    pinned = dict(IDLE_POLICY, **soft, pin={db1: ["hv1"], db2: ["hv1"]})
    report, output = run_and_report(lambda: rebalance(lab, reports, pinned), reports, "pinned run")
    broken = plan_lines(output, "Should rules still broken:")
    print(f"should rules still broken (printed plan): {broken}; measure after {report['measure']['after']}")
    assert report["migrations"] == [] and report["outcomes"] == []
    why = "not repaired: no destination: hv2 not in pin [hv1] (and 1 more)"  # recorded when the repair gave up
    assert broken == [f"{db1} on hv1: {db1} on hv1 with {db2}, {group}; {why}",
                      f"{db2} on hv1: {db2} on hv1 with {db1}, {group}; {why}"], output[-4000:]
    assert [b["unrepaired"] for b in report["soft_rule_breaks"]] == [why.split(": ", 1)[1]] * 2
    assert report["measure"]["before"]["soft_rule_breaks"] == report["measure"]["after"]["soft_rule_breaks"] == 2
    assert report["measure"]["after"]["rule_breaks"] == 0
    assert demo.placement(lab) == placed

    # the pin widened to hv3: one migration repairs the rule, to the one host that keeps both rules
    widened = dict(IDLE_POLICY, **soft, pin={db1: ["hv1", "hv3"], db2: ["hv1", "hv3"]})
    report, output = run_and_report(lambda: rebalance(lab, reports, widened), reports, "repair run")
    moves = [(m["vm"], m["source"], m["destination"], m["reason"]) for m in report["migrations"]]
    print(f"repair: {moves}; measure soft_rule_breaks {report['measure']['before']['soft_rule_breaks']} -> "
          f"{report['measure']['after']['soft_rule_breaks']}")
    assert moves == [(db1, "hv1", "hv3", f"should rule: {db1} on hv1 with {db2}, {group}")]
    assert report["measure"]["after"]["soft_rule_breaks"] == 0
    assert not plan_lines(output, "Should rules still broken:")
    assert {o["vm"]: (o["status"], o["verified"]) for o in report["outcomes"]} == {db1: ("migrated", True)}
    keeps_ticking(lab, {db1: "hv3", db2: "hv1"}, ticks_before)

    report = expect_nothing_to_do(lab, lambda: rebalance(lab, reports, widened), reports)
    assert report["measure"]["after"]["soft_rule_breaks"] == 0


def set_tags(lab, host, guest, *tags):
    xml = "<tags>" + "".join(f"<tag>{t}</tag>" for t in tags) + "</tags>"
    lab.virsh(host, "metadata", guest, "--uri", TAGS_URI, "--key", "drs", "--live", "--config", "--set", xml)


def tags_of(lab, host, guest, *flags):
    """The guest's tags in its libvirt metadata on ``host`` (live, or --config), read with virsh."""
    out = lab.virsh(host, "metadata", guest, "--uri", TAGS_URI, *flags, check=False)
    return sorted(re.findall(r"<(?:\w+:)?tag>([^<]*)</(?:\w+:)?tag>", out))


def test_tags_in_libvirt_metadata_drive_a_jmespath_anti_affinity(lab, make_guests, tmp_path):
    db1, db2, web = "tg-db1", "tg-db2", "tg-web"
    placed = {db1: "hv1", db2: "hv1", web: "hv1"}
    make_guests({"hv1": {db1: "idle", db2: "idle", web: "idle"}})
    ticks_before = booted(lab, placed)
    reports = tmp_path / "reports"
    policy = dict(IDLE_POLICY, anti_affinity=[{"select": DB_SELECT}])

    # no tags yet: the rule selects nothing (a warning) and nothing moves
    report, output = run_and_report(lambda: rebalance(lab, reports, policy), reports, "untagged run")
    warnings = warnings_of(output)
    print(f"warnings: {warnings}")
    assert report["migrations"] == [] and demo.placement(lab) == placed
    assert f"anti_affinity[0].select {DB_SELECT!r} selects no domain" in warnings

    set_tags(lab, "hv1", db1, "db", "prod")
    set_tags(lab, "hv1", db2, "db")
    print(f"tags: {db1} {tags_of(lab, 'hv1', db1)}, {db2} {tags_of(lab, 'hv1', db2)}, {web} {tags_of(lab, 'hv1', web)}")
    report, output = run_and_report(lambda: rebalance(lab, reports, policy), reports, "tagged run")
    moves = report["migrations"]
    print(f"moves: {[(m['vm'], m['source'], m['destination'], m['reason']) for m in moves]}")
    assert len(moves) == 1 and moves[0]["vm"] in (db1, db2) and moves[0]["source"] == "hv1"
    mover = moves[0]["vm"]
    stayer = db2 if mover == db1 else db1
    assert moves[0]["reason"] == f"{mover} on hv1 with {stayer}, anti-affinity group [{db1}, {db2}]"
    assert report["measure"]["before"]["rule_breaks"] == 2 and report["measure"]["after"]["rule_breaks"] == 0
    assert not warnings_of(output)
    after = demo.placement(lab)
    print(f"placement after: {after}")
    assert after[mover] == moves[0]["destination"] != "hv1"
    assert after[stayer] == "hv1" and after[web] == "hv1"
    keeps_ticking(lab, after, ticks_before)
    # the tags travelled with the live domain and its persistent definition on the destination
    dest = moves[0]["destination"]
    print(f"{mover} tags on {dest}: live {tags_of(lab, dest, mover)}, config {tags_of(lab, dest, mover, '--config')}")
    assert tags_of(lab, dest, mover) == tags_of(lab, dest, mover, "--config") == sorted(
        ["db", "prod"] if mover == db1 else ["db"])

    expect_nothing_to_do(lab, lambda: rebalance(lab, reports, policy), reports)


def cap(lab, host, guest, quota_us):
    """Cap the guest's vCPU at quota_us per period (libvirt's cgroup CPU quota; the period is 100 ms), live."""
    lab.virsh(host, "schedinfo", guest, "--live", "--set", f"vcpu_quota={quota_us}")


def test_balance_moves_one_guest_off_a_busier_host(lab, make_guests, tmp_path):
    busy1, busy2 = "bl-busy1", "bl-busy2"
    make_guests({"hv1": {busy1: "busy"}})
    demo.wait_booted(lab, "hv1", busy1)
    cap(lab, "hv1", busy1, 50000)
    one_busy = demo.host_load(lab, "hv1")
    make_guests({"hv1": {busy2: "busy"}})
    demo.wait_booted(lab, "hv1", busy2)
    cap(lab, "hv1", busy2, 50000)
    two_busy = demo.host_load(lab, "hv1")
    print(f"\nhv1 load with one busy guest capped at half a core {one_busy:.3f}, with two {two_busy:.3f}; "
          f"schedinfo {busy1}: {lab.virsh('hv1', 'schedinfo', busy1, '--live').split()}")
    if demo.too_busy(one_busy, two_busy):
        pytest.skip(demo.too_busy(one_busy, two_busy))
    target, min_gain = 0.15, 0.08  # level 2 (ansible-doc -t filter xen.drs.rebalance_plan)
    # hv1 against two hosts with (almost) nothing: the spread is about 0.47 x hv1's load
    if 0.47 * two_busy < target + 0.03 or one_busy < min_gain + 0.03:
        pytest.skip(f"the machine is too busy for a balance demo: hv1 load {two_busy:.2f} with two busy guests "
                    f"gives an imbalance of about {0.47 * two_busy:.2f}, not clearly above level 2's target {target}")
    # hv1 stays clear of the threshold: it is busier, not overloaded; and under max_load_candidate, so that
    # its forecast (its guests' mean use) does not make it shed for prediction: the move must be balancing's
    threshold = round(min(1.0, max(0.75, two_busy + 0.2)), 3)
    candidate = round(min(0.9 * threshold, max(0.65, one_busy + 0.2, two_busy + 0.05)), 3)
    policy = {"load_threshold": threshold, "max_load_candidate": candidate,
              "max_over": 1, "interval": 0.5, "cooldown": 0, "balance": 2, "balance_hold": 0.5,
              "max_migrations": 5}
    print(f"policy {json.dumps(policy)}")
    placed = {busy1: "hv1", busy2: "hv1"}
    reports = tmp_path / "reports"

    def not_yet(report, output):
        hv1 = host_entry(report, "hv1")
        assert not hv1["overloaded"] and hv1["load"] <= threshold, f"hv1 {hv1}"
        assert demo.placement(lab) == placed
        print(f"   balance: {balance_of(output)}")

    report, output = run_until_moved(lab, reports, policy, "balance", not_yet)
    moves = report["migrations"]
    balance = balance_of(output)
    print(f"moves: {[(m['vm'], m['source'], m['destination'], m['reason']) for m in moves]}; balance: {balance}")
    assert len(moves) == 1 and moves[0]["vm"] in (busy1, busy2) and moves[0]["source"] == "hv1"
    assert re.fullmatch(rf"imbalance [\d.]+ > target {target} for {policy['balance_hold']} min; move gains [\d.]+", moves[0]["reason"])
    assert balance and balance[:2] == ("2", str(target)) and "imbalance above target" in balance[2]
    hv1 = host_entry(report, "hv1")
    assert not hv1["overloaded"] and hv1["load"] <= threshold  # busier, not overloaded
    assert all(h["load"] <= threshold for h in report["hosts"])
    assert {o["vm"]: (o["status"], o["verified"]) for o in report["outcomes"]} == {moves[0]["vm"]: ("migrated", True)}
    after = demo.placement(lab)
    assert after[moves[0]["vm"]] == moves[0]["destination"] != "hv1"
    loads = {h: demo.host_load(lab, h, 2) for h in lab.hypervisors}
    print(f"placement after: {after}; loads measured with virsh now {loads}; load_after in the report {report['load_after']}")

    second = expect_nothing_to_do(lab, lambda: rebalance(lab, reports, policy), reports)
    print(f"second run: hosts {[(h['name'], h['load']) for h in second['hosts']]}")
