"""Faults during migrations and after a crash, against the real lab (real libvirtd hosts, real guests).

Each test injects one fault and then checks the invariant: every guest that ran before runs exactly
once, on a host whose libvirt reports it, its console ticks going on with no reboot; no guest is
active on two hosts; every state file still reads as JSON; the run's outcome names what happened.
Each test adds a row to the fault table that the session prints at its end (faults injected, guests
checked, guests lost, guests running twice).

1. ansible-playbook (the controller) is killed with SIGKILL during a migration wave: the next run of
   the same control node takes the dead run's locks over at once, without waiting for the lock's ttl,
   and finishes the evacuation.
2. The destination's libvirtd is killed (SIGKILL) while a migration of evacuate.yml is in flight, then started
   again: the run fails naming the move, the failure is recorded as transient, and the next run moves the guest.
3. The source's libvirtd is killed (SIGKILL) likewise, then started again.
4. A guest is paused when its move comes; another was shut down and a third migrated by hand since the
   plan was made: none of them is touched, each outcome says why.
5. The hypervisors' state files are truncated, emptied, replaced by garbage and replaced by a directory
   (what root cannot read): a run goes on, warns about each, and leaves readable state files.
6. The destination's link is cut while a migration of evacuate.yml is in flight (its switch port set down), then
   restored: the job is aborted at its timeout, the run fails naming the move; the next run tries again (a transient
   failure), and when it is cut off too, the run after it holds the guest back (failure_hold), saying why.
7. Two runs start within one second: at most one acts, the other is refused and says why, no lock is left.
   A run of another control node (its own host name) is killed with its locks held: this control node
   never takes them over (it cannot see that machine's processes) and waits for their ttl.
8. A hypervisor's clock is 10 minutes ahead of the control node's (its modules' Python is given the skew):
   the run names the skew and plans with its samples shifted; then its clock is set right, and the next
   run drops the samples from its future, saying so.
8b. A hypervisor answers the lock, then its link is cut during the Gather stage: its task times out
   (xen_drs_host_timeout) instead of holding the run until TCP gives up; it is left out and named, the
   others are planned, and the next run takes over the lock it kept.
9. Both possible destinations are cut off after the plan is made, before the migration wave: the heartbeat
   before the wave times out on them, nothing is sent, the run fails naming the move; the next run (links
   back) takes the locks over and finishes the evacuation.
10. The control node's report directory cannot be made (a file in its way), or its disk is full: the run
   unlocks every host, then fails naming the directory and why.
11. libvirt reports a migration as successful, but the guest arrives paused on the destination (the source's
   module Python adds VIR_MIGRATE_PAUSED to the migration's flags): the module fails naming the destination and
   the state, records the failure and resumes nothing; the guest, resumed by hand, ticks on where it was.
12. A migration is refused for good (libvirt's VIR_ERR_CPU_INCOMPATIBLE, given by the source's module Python): the
   failure is recorded as permanent, and the next run holds the guest back at once (failure_hold), saying why.
Wall times are printed as figures, not asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import rebalance_demo as demo
from conftest import task_results
from test_make_room import booted, migrate_waves, move
from test_modules import boots, running_on, state_file, wait_for
from test_rebalance import ticks

STATE_FILE = "/var/lib/xen-drs/state.json"
LOCK_FILE = "/run/xen-drs/rebalance.lock"
MIGRATE_PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "domain_migrate.yml"
SLOW_MIB = 4  # MiB/s: a 96 MiB guest takes about half a minute to migrate, time enough to break something


@dataclass
class FaultRow:
    """One line of the fault table."""

    fault: str
    guests_checked: int
    lost: int
    twice: int
    outcome: str
    test: str = ""  # the pytest node id of the test that checked it


FAULT_TABLE: list[FaultRow] = []


def migration_in_flight(lab, host, guests):
    """The guest of ``guests`` that has an active migration job on ``host``, or None."""
    for guest in guests:
        info = lab.virsh(host, "domjobinfo", guest, check=False)
        if "Job type:" in info and "None" not in info.split("Job type:")[1].splitlines()[0]:
            return guest
    return None


def link(lab, host, state):
    """Set ``host``'s port on the lab's switch up or down (down: nothing reaches it, nothing leaves it)."""
    lab_lib_run = ["ip", "-n", lab.netns("sw"), "link", "set", f"{lab.name}-{host}", state]
    subprocess.run(lab_lib_run, check=True, capture_output=True, text=True)


def kill_libvirtd(lab, host):
    """SIGKILL ``host``'s libvirtd (its guests' QEMU processes live on)."""
    pid = lab.state()["hosts"][host]["pids"]["libvirtd"][0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, f"{host}'s libvirtd to die")


def check_invariant(lab, fault, before, outcome, not_running=()):
    """Every guest of ``before`` ({guest: last tick}) is active on exactly one host and, unless it is
    in ``not_running``, ticks on there past its tick from before, without a reboot; every state file
    reads. Records the fault table's row; returns {guest: host}."""
    where = {g: running_on(lab, g) for g in before}
    if any(len(hosts) != 1 for hosts in where.values()):  # say what every host's libvirt sees, for the failure
        for host in lab.hypervisors:
            print(f"{host}: {lab.virsh(host, 'list', '--all', check=False).strip()}")
    row = FaultRow(fault, len(before), sum(1 for hosts in where.values() if not hosts),
                   sum(1 for hosts in where.values() if len(hosts) > 1), outcome,
                   os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0])
    FAULT_TABLE.append(row)
    assert row.lost == 0 and row.twice == 0, where
    placed = {g: hosts[0] for g, hosts in where.items()}
    for guest, host in placed.items():
        if guest in not_running:
            continue
        wait_for(lambda g=guest, h=host: ticks(lab, h, g) > before[g], 60, f"{guest} to tick on {host}")
        # the tick counter goes on where it was: a reboot would start it again from 1 and print its banner
        assert boots(lab.console(host, guest)) <= 1
        assert "running" in lab.virsh(host, "domstate", guest)
    for host in lab.hypervisors:
        proc = lab.host_exec(host, ["cat", STATE_FILE], check=False)
        if proc.returncode == 0:
            json.loads(proc.stdout)  # readable after the fault
    return placed


def flat(output):
    """The output with every run of white space one space: ansible wraps long warnings."""
    return " ".join(output.split())


def popen_ctl(lab, cmd, env=None):
    """Start ``cmd`` in the controller's namespaces in its own process group (to kill it whole)."""
    full_env = lab.ctl_env()
    full_env.update(env or {})
    return subprocess.Popen(lab.enter("ctl", demo.REPO) + cmd, env=full_env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def evacuate_command(lab, reports, **extra):
    roomy = {"load_threshold": 0.95, "max_load_candidate": 0.95, "max_over": 1, "interval": 2, "cooldown": 5}
    return demo.playbook_command(lab, "evacuate.yml", reports, roomy,
                                 "--extra-vars", json.dumps({"xen_drs_evacuate": "hv1", **extra}))


def test_a_killed_controller_is_recognised_and_the_next_run_takes_over(lab, make_guests, tmp_path):
    guests = ("fk-a", "fk-b")
    make_guests({"hv1": {g: "idle" for g in guests}})
    before = booted(lab, {g: "hv1" for g in guests})
    first = popen_ctl(lab, evacuate_command(lab, tmp_path, xen_drs_bandwidth_mib=SLOW_MIB))
    try:
        flying = wait_for(lambda: first.poll() is None and migration_in_flight(lab, "hv1", guests), 240,
                          "a migration of the first run to start")
        os.killpg(first.pid, signal.SIGKILL)  # the controller dies: ansible-playbook and all it started
        first.wait(timeout=30)
        killed_at = time.monotonic()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    dead_lock = json.loads(lab.host_exec("hv1", ["cat", LOCK_FILE]).stdout)
    assert dead_lock["controller"]["pid"] == first.pid, dead_lock  # the lock names ansible-playbook itself
    # the migration under way goes on or stops on its own; the next run comes once it is over
    wait_for(lambda: migration_in_flight(lab, "hv1", guests) is None, 240, f"{flying}'s migration to end")
    started = time.monotonic()
    proc = lab.ctl(evacuate_command(lab, tmp_path), check=False, timeout=900)
    output = flat(proc.stdout + proc.stderr)
    print(f"\nkilled controller: {flying} was migrating; next run {time.monotonic() - started:.1f} s, "
          f"{started - killed_at:.1f} s after the kill (lock ttl {dead_lock['expires'] - dead_lock['time']:.0f} s)")
    assert proc.returncode == 0, output[-4000:]
    assert f"run {dead_lock['owner']}'s ansible-playbook (pid {first.pid}" in output
    assert "is no longer running: taking over its lock" in output
    placed = check_invariant(lab, "controller killed mid-migration", before,
                             "next run took over the dead run's locks and finished the evacuation")
    assert set(placed.values()) <= {"hv2", "hv3"}
    # both ends hold each migration's record, also the one the dead run never wrote on the destination
    # (the next run found it on the source only as it planned, and wrote it at its Migrate stage)
    for guest, host in placed.items():
        for end in ("hv1", host):
            records = json.loads(lab.host_exec(end, ["cat", STATE_FILE]).stdout)["migrations"]
            assert any(r["vm"] == guest and r["destination"] == host for r in records), (guest, end, records)
    for host in lab.hypervisors:  # the second run released every lock, the dead run's included
        assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0


def test_a_dead_run_of_another_control_node_keeps_its_locks_until_their_ttl(lab, make_guests, tmp_path):
    """Item 11 with two control nodes (the timer's and AWX's): a run from a control node named awx-node (its
    own UTS namespace: another host name) holds the locks; a run from this control node is refused; the
    awx-node run is killed mid-migration, and this control node, which cannot see another machine's
    processes, still never takes its locks over: it is refused until they expire (ttl 50 s; the second
    refusal ends about 22 s after the lock's last renewal), then it finishes the evacuation."""
    guests = ("fk-awx1", "fk-awx2")
    make_guests({"hv1": {g: "idle" for g in guests}})
    before = booted(lab, {g: "hv1" for g in guests})
    other_node = ["unshare", "--uts", "sh", "-c", 'hostname awx-node && exec "$@"', "sh"]
    awx_run = evacuate_command(lab, tmp_path / "awx", xen_drs_bandwidth_mib=SLOW_MIB, xen_drs_lock_ttl=50)
    first = popen_ctl(lab, other_node + awx_run)
    try:
        flying = wait_for(lambda: first.poll() is None and migration_in_flight(lab, "hv1", guests), 240,
                          "a migration of the awx-node run to start")
        lock = json.loads(lab.host_exec("hv1", ["cat", LOCK_FILE]).stdout)
        assert lock["controller"]["host"] == "awx-node", lock
        refused = lab.ctl(evacuate_command(lab, tmp_path / "timer"), check=False, timeout=900)
        os.killpg(first.pid, signal.SIGKILL)  # the awx-node controller dies with its locks held
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    said = flat(refused.stdout + refused.stderr)
    assert refused.returncode != 0 and "refusing to run" in said and f"held by run {lock['owner']}" in said, said[-3000:]
    wait_for(lambda: migration_in_flight(lab, "hv1", guests) is None, 240, f"{flying}'s migration to end")
    held = {h: json.loads(out.stdout) for h in lab.hypervisors
            if (out := lab.host_exec(h, ["cat", LOCK_FILE], check=False)).returncode == 0}
    assert held and all(entry["owner"] == lock["owner"] for entry in held.values()), held
    again = lab.ctl(evacuate_command(lab, tmp_path / "timer"), check=False, timeout=900)
    said = flat(again.stdout + again.stderr)
    assert again.returncode != 0 and "taking over" not in said and f"held by run {lock['owner']}" in said, said[-3000:]
    expires = max(entry["expires"] for entry in held.values())
    time.sleep(max(0.0, expires - time.time()) + 1)
    started = time.monotonic()
    last = lab.ctl(evacuate_command(lab, tmp_path / "timer"), check=False, timeout=900)
    print(f"\nawx-node's dead run: this control node refused twice, then ran {time.monotonic() - started:.1f} s "
          f"once its locks expired (exit code {last.returncode})")
    assert last.returncode == 0, flat(last.stdout + last.stderr)[-4000:]
    placed = check_invariant(lab, "a dead run of another control node", before,
                             "its locks kept until their ttl, never taken over; then the evacuation finished")
    assert set(placed.values()) <= {"hv2", "hv3"}
    for host in lab.hypervisors:
        assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0, f"a lock left on {host}"


def pinned_evacuation(lab, reports, guest, destination, **extra):
    """evacuate.yml emptying hv1, ``guest`` pinned to ``destination`` (so the test knows where it goes)."""
    policy = {"load_threshold": 0.95, "max_load_candidate": 0.95, "max_over": 1, "interval": 2, "cooldown": 5,
              "pin": {guest: [destination]}}
    return demo.playbook_command(lab, "evacuate.yml", reports, policy,
                                 "--extra-vars", json.dumps({"xen_drs_evacuate": "hv1", **extra}))


def failed_run(lab, proc, reports, guest, destination):
    """The run's exit status, output and report say that ``guest``'s move failed; returns its outcome."""
    output = flat(proc.communicate(timeout=900)[0])
    report = demo.newest_report(reports)
    outcome = next(o for o in report["outcomes"] if o["vm"] == guest)
    assert proc.returncode != 0 and outcome["status"] == "failed", (outcome, output[-3000:])
    assert outcome["msg"].startswith(f"migrating {guest} from hv1 to {destination}"), outcome
    # the Result stage names the move that did not happen, with the module's message
    assert "1 planned migration(s) did not happen" in output and f"{guest} hv1 -> {destination}:" in output, output[-3000:]
    return outcome


def held(report, guest):
    """Why ``report``'s plan held ``guest`` back after a failed migration, or None."""
    reasons = [s["reason"] for s in report["skipped"] if s["vm"] == guest and "held back: " in s["reason"]]
    return reasons[0] if reasons else None


@pytest.mark.parametrize("victim", ["destination", "source"])
def test_libvirtd_killed_during_a_migration(lab, make_guests, tmp_path, victim):
    """Faults 1 and 2 through evacuate.yml: the run's migration is in flight when the victim's libvirtd is
    killed (SIGKILL), then started again. The run fails naming the move; the failure is recorded on the source
    as transient (a lost connection), so the next run does not hold the domain back: it evacuates it."""
    guest, source, destination = f"fk-{victim[:3]}", "hv1", "hv2"
    make_guests({source: {guest: "idle"}})
    before = booted(lab, {guest: source})
    host = destination if victim == "destination" else source
    run = popen_ctl(lab, pinned_evacuation(lab, tmp_path / "first", guest, destination, xen_drs_bandwidth_mib=SLOW_MIB))
    down = False
    try:
        wait_for(lambda: run.poll() is None and migration_in_flight(lab, source, [guest]), 240,
                 f"{guest}'s migration to start")
        kill_libvirtd(lab, host)
        down, killed = True, time.monotonic()
        # the migration fails at once; the run goes on (record, report, unlock) with libvirtd back
        wait_for(lambda: migration_in_flight(lab, source, [guest]) is None, 120, f"{guest}'s migration to end")
        lab.start_libvirtd(host)
        down = False
        outcome = failed_run(lab, run, tmp_path / "first", guest, destination)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        if down:
            lab.start_libvirtd(host)
    print(f"\n{victim} libvirtd killed mid-migration: the run ended {time.monotonic() - killed:.1f} s later: "
          f"{outcome['msg']}")
    assert "a transient failure: the next run may try again" in outcome["msg"], outcome
    if victim == "source":  # the module could not read the domain's state any more, and says so
        assert "its state on hv1 could not be read" in outcome["msg"], outcome
    # libvirt reconnects to its guests when it starts again, and cleans up the broken migration
    wait_for(lambda: running_on(lab, guest) == [source], 120, f"{guest} to be active on {source} only")
    failure = state_file(lab, source)["failures"][-1]
    assert (failure["vm"], failure["kind"], failure["count"]) == (guest, "transient", 1), failure
    check_invariant(lab, f"{victim} libvirtd killed mid-migration (evacuate.yml)", before,
                    f"the run failed naming the move; {guest} stayed on {source}; the next run moved it")
    # one transient failure: the next run plans the domain again, and the evacuation is done
    proc = lab.ctl(pinned_evacuation(lab, tmp_path / "next", guest, destination), check=False, timeout=900)
    said = flat(proc.stdout + proc.stderr)
    report = demo.newest_report(tmp_path / "next")
    assert proc.returncode == 0 and held(report, guest) is None, (report["skipped"], said[-3000:])
    assert [o["vm"] for o in demo.moved(report)] == [guest] and running_on(lab, guest) == [destination]


def test_a_move_whose_guest_is_no_longer_running_on_its_source_is_not_run(lab, make_guests):
    make_guests({"hv1": {"fk-paused": "idle", "fk-off": "idle", "fk-moved": "idle"}})
    before = booted(lab, {g: "hv1" for g in ("fk-paused", "fk-off", "fk-moved")})
    uuids = {g: lab.virsh("hv1", "domuuid", g).strip() for g in before}
    # what happens between planning and migrating: one is paused, one shut down, one moved by hand
    lab.virsh("hv1", "suspend", "fk-paused")
    lab.virsh("hv1", "destroy", "fk-off")
    lab.host_exec("hv1", ["virsh", "-c", "qemu:///system", "migrate", "--live", "--p2p", "--persistent",
                          "--undefinesource", "fk-moved", f"qemu+tcp://{lab.address('hv3')}/system",
                          f"tcp://{lab.address('hv3')}"])
    outcomes = migrate_waves(lab, [[move(g, uuids[g], "hv1", "hv2")] for g in before])
    for guest, state in (("fk-paused", "paused"), ("fk-off", "shutoff"), ("fk-moved", "not defined")):
        assert outcomes[guest]["status"] == "not run", outcomes[guest]
        assert outcomes[guest]["msg"].startswith("not moved: ") and f"is {state} on hv1" in outcomes[guest]["msg"]
    assert "paused" in lab.virsh("hv1", "domstate", "fk-paused")  # left as it was, and still there
    lab.virsh("hv1", "resume", "fk-paused")
    alive = {g: t for g, t in before.items() if g != "fk-off"}
    placed = check_invariant(lab, "guest paused, shut down or moved by hand before its move", alive,
                             "each move not run, with where the guest is and in which state")
    assert placed == {"fk-paused": "hv1", "fk-moved": "hv3"}
    assert "shut off" in lab.virsh("hv1", "domstate", "fk-off")  # not started again: nothing is forced


def test_damaged_state_files_are_warned_about_and_the_run_goes_on(lab, make_guests, tmp_path):
    make_guests({"hv1": {"fk-state": "idle"}})
    before = booted(lab, {"fk-state": "hv1"})
    policy = {"max_migrations": 0}
    lab.ctl(demo.playbook_command(lab, "rebalance.yml", tmp_path, policy), timeout=900)  # state files exist now
    good = lab.host_exec("hv1", ["cat", STATE_FILE]).stdout
    damage = {"hv1": f"printf %s {json.dumps(good[:len(good) // 2])} > {STATE_FILE}",  # truncated
              "hv2": f": > {STATE_FILE}",  # emptied
              "hv3": f"head -c 300 /dev/urandom > {STATE_FILE}"}  # garbage
    for host, command in damage.items():
        lab.host_exec(host, command)
    proc = lab.ctl(demo.playbook_command(lab, "rebalance.yml", tmp_path, policy), check=False, timeout=900)
    output = flat(proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-4000:]
    for host in damage:  # the garbage may not even be UTF-8: then the file is unreadable
        assert f"{host}: state file {STATE_FILE} is corrupt" in output or \
            f"{host}: state file {STATE_FILE} is unreadable" in output, output[-4000:]
        json.loads(lab.host_exec(host, ["cat", STATE_FILE]).stdout)  # written afresh by this run
    # a directory where the file should be: it can be neither read nor replaced, and the run still plans
    lab.host_exec("hv2", f"rm -f {STATE_FILE} && mkdir {STATE_FILE}")
    try:
        proc = lab.ctl(demo.playbook_command(lab, "rebalance.yml", tmp_path, policy), check=False, timeout=900)
        output = flat(proc.stdout + proc.stderr)
        assert proc.returncode == 0, output[-4000:]
        assert f"hv2: state file {STATE_FILE} is unreadable" in output and "hv2: could not record the samples" in output
    finally:
        lab.host_exec("hv2", f"rmdir {STATE_FILE}")
    check_invariant(lab, "state files truncated, emptied, garbage, a directory", before,
                    "each warned about, the run planned, the files written afresh")


def shimmed_inventory(tmp_path, name, host, sitecustomize):
    """An inventory to add after the lab's: ``host``'s modules run with ``sitecustomize`` (Python source) loaded."""
    site = tmp_path / name
    site.mkdir()
    (site / "sitecustomize.py").write_text(sitecustomize)
    wrapper = site / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {demo.REPO / '.venv' / 'bin' / 'python'} \"$@\"\n")
    wrapper.chmod(0o755)
    inventory = site / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {host: {"ansible_python_interpreter": str(wrapper)}}}}))
    return inventory


def skewed_inventory(lab, tmp_path, host, offset):
    """An inventory to add after the lab's: ``host``'s modules run with its clock ``offset`` seconds off.
    The lab's hosts share the kernel's clock, so the skew is given to the module's Python (time.time)."""
    return shimmed_inventory(tmp_path, f"clock{offset:+d}", host,
                             "import time\n_real = time.time\ntime.time = lambda: _real() + %d\n" % offset)


def test_a_hypervisor_clock_minutes_off_then_set_back(lab, make_guests, tmp_path):
    """Item 8: hv2's clock is 10 minutes ahead of the control node's. The run says so and plans with hv2's
    samples shifted into the control node's time (hypervisor_info returns them so). Then its clock is set
    right again: its state file holds samples from its future, which the next run drops, saying so."""
    make_guests({"hv1": {"fk-clock": "idle"}})
    before = booted(lab, {"fk-clock": "hv1"})
    ahead = skewed_inventory(lab, tmp_path, "hv2", 600)
    cmd = demo.playbook_command(lab, "rebalance.yml", tmp_path / "reports", {"max_migrations": 0})
    proc = lab.ctl(cmd[:3] + ["-i", str(ahead)] + cmd[3:], check=False, timeout=900)
    output = flat(proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-3000:]
    assert re.search(r"hv2: its clock is 6[0-3]\d s ahead of the control node's; its samples are shifted", output), output[-3000:]
    assert "hv1: its clock" not in output and "hv3: its clock" not in output
    assert demo.newest_report(tmp_path / "reports")["left_out"] == []
    stored = json.loads(lab.host_exec("hv2", ["cat", STATE_FILE]).stdout)["samples"]
    assert stored[-1][0] > time.time() + 500  # the host keeps its own time in its state file
    # the module itself, as the Gather stage calls it: the samples come back in the control node's time
    now = time.time()
    module_args = json.dumps({"name": "hv2", "uri": "qemu:///system", "sample_seconds": 1, "record_sample": False,
                              "controller_time": now})
    answer = lab.ctl(["ansible", "-i", str(lab.inventory_path), "-i", str(ahead), "hv2", "-m", "xen.drs.hypervisor_info",
                      "-a", module_args, "-o"], check=False, timeout=300)
    result = json.loads(answer.stdout[answer.stdout.index("{"):])
    # the skew as measured includes ansible's start and the module's transfer (seconds on a busy machine)
    assert 598 <= result.get("clock_skew_seconds", 0) <= 640, (answer.stdout + answer.stderr)[-3000:]
    newest = result["hypervisor"]["samples"][-1][0]
    assert abs(newest - now) < 60, (newest, now)
    # hv2's clock is set right: the samples it took while ahead are from its future now
    proc = lab.ctl(cmd, check=False, timeout=900)
    output = flat(proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-3000:]
    assert re.search(r"hv2: the state file holds \d+ sample\(s\) and \d+ migration record\(s\) later than this "
                     r"host's clock \(did it go back\?\)", output), output[-3000:]
    stored = json.loads(lab.host_exec("hv2", ["cat", STATE_FILE]).stdout)["samples"]
    assert stored and stored[-1][0] <= time.time() + 1
    check_invariant(lab, "a hypervisor's clock 10 min ahead, then set back", before,
                    "the skew named and the samples shifted; the future samples dropped with a warning")


# The source's libvirt-python, as the module sees it: every migration asks the destination to leave the domain
# paused (what a driver or a destination hook that pauses it would do, with migrateToURI3 still reporting success).
ARRIVE_PAUSED = """\
import libvirt
for _name in ("migrateToURI3", "migrate3"):
    def _paused(self, *args, _real=getattr(libvirt.virDomain, _name)):
        args = list(args)
        args[-1] = args[-1] | libvirt.VIR_MIGRATE_PAUSED  # flags, always the last argument the module passes
        return _real(self, *args)
    setattr(libvirt.virDomain, _name, _paused)
"""


def paused_arrival_inventory(tmp_path, host):
    """An inventory to add after the lab's: ``host``'s modules run with ARRIVE_PAUSED as their sitecustomize."""
    return shimmed_inventory(tmp_path, "arrive-paused", host, ARRIVE_PAUSED)


def test_a_migration_that_arrives_paused_is_a_failure_and_nothing_is_resumed(lab, make_guests, tmp_path):
    """Item 11 (issue 13, fault 12): migrateToURI3 returns, the guest is active on the destination but paused."""
    guest, source, destination = "fk-arrpause", "hv1", "hv2"
    make_guests({source: {guest: "idle"}})
    before = booted(lab, {guest: source})
    shim = paused_arrival_inventory(tmp_path, source)
    cmd = ["ansible-playbook", "-i", str(lab.inventory_path), "-i", str(shim), str(MIGRATE_PLAYBOOK), "--extra-vars",
           json.dumps({"vm": guest, "source": source, "destination": destination})]
    proc = lab.ctl(cmd, check=False, timeout=600, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    output = proc.stdout + proc.stderr
    moved = task_results(json.loads(proc.stdout[proc.stdout.index("{"):]), "Migrate the guest from the source")
    moved = moved["localhost"]
    print(f"\nmigration arrived paused: {moved.get('msg')}")
    assert moved.get("failed") and moved.get("verified") is False, output[-3000:]
    assert f"libvirt reported success, but {guest} is not running on {source} and paused on {destination}" in moved["msg"]
    assert f"it is left paused on {destination}" in moved["msg"] and "not resumed" in moved["msg"], moved["msg"]
    assert moved["destination_state"] == "paused" and moved["domain_state_after"] == "undefined", moved
    # where libvirt put it, as it put it: active on the destination only, paused, and nothing resumed it
    assert running_on(lab, guest) == [destination]
    assert "paused" in lab.virsh(destination, "domstate", guest)
    failure = state_file(lab, source)["failures"][-1]
    assert failure["vm"] == guest and f"paused on {destination}" in failure["error"], failure
    assert not [r for r in state_file(lab, source)["migrations"] if r["vm"] == guest]
    lab.virsh(destination, "resume", guest)  # what the message asks the operator to do
    check_invariant(lab, "migration reported successful, guest arrived paused", before,
                    f"task failed naming the paused state; {guest} left paused on {destination}, resumed by hand")


def cut_during_migration(lab, reports, guest, source, destination):
    """An evacuation whose migration of ``guest`` is cut off (``destination``'s link set down) once in flight; the
    link comes back once the module aborted the job at its 20 s timeout. Returns the failed outcome."""
    run = popen_ctl(lab, pinned_evacuation(lab, reports, guest, destination, xen_drs_bandwidth_mib=SLOW_MIB,
                                           xen_drs_migration_timeout=20))
    try:
        wait_for(lambda: run.poll() is None and migration_in_flight(lab, source, [guest]), 240,
                 f"{guest}'s migration to start")
        link(lab, destination, "down")
        cut = time.monotonic()
        wait_for(lambda: migration_in_flight(lab, source, [guest]) is None, 180, f"{guest}'s migration to be aborted")
        link(lab, destination, "up")  # before the run's Unlock stage reaches the destination
        outcome = failed_run(lab, run, reports, guest, destination)
    finally:
        link(lab, destination, "up")
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    print(f"\nlink cut mid-migration: the run ended {time.monotonic() - cut:.1f} s later: {outcome['msg']}")
    assert "timed out after 20 s" in outcome["msg"], outcome
    # the destination's half-received copy goes away once the hosts talk again
    wait_for(lambda: running_on(lab, guest) == [source], 180, f"{guest} to be active on {source} only")
    return outcome


def test_the_migration_network_cut_mid_migration(lab, make_guests, tmp_path):
    """Fault 3 through evacuate.yml: the destination's link is cut while the run's migration is in flight, then
    restored. The module aborts the job at its timeout, the run fails naming the move, the guest stays on its
    source. The failure is transient: the next run tries again; when that one is cut off too, the run after it
    holds the domain back (two transient failures within failure_hold), naming both."""
    guest, source, destination = "fk-cut", "hv1", "hv3"
    make_guests({source: {guest: "idle"}})
    before = booted(lab, {guest: source})
    first = cut_during_migration(lab, tmp_path / "first", guest, source, destination)
    assert "a transient failure: the next run may try again" in first["msg"], first
    check_invariant(lab, "link cut mid-migration, then restored (evacuate.yml)", before,
                    f"migration aborted at its timeout; {guest} stayed on {source}; tried again next run, "
                    "held back after a second cut")
    second = cut_during_migration(lab, tmp_path / "second", guest, source, destination)  # planned again: not held
    assert "a transient failure, 2 in a row: the plans hold the domain back" in second["msg"], second
    failures = [f for f in state_file(lab, source)["failures"] if f["vm"] == guest]
    assert [(f["kind"], f["count"]) for f in failures] == [("transient", 1), ("transient", 2)], failures
    assert failures[1]["previous"] == failures[0]["time"]
    proc = lab.ctl(pinned_evacuation(lab, tmp_path / "third", guest, destination), check=False, timeout=900)
    said = flat(proc.stdout + proc.stderr)
    report = demo.newest_report(tmp_path / "third")
    reason = held(report, guest)
    print(f"third run: exit code {proc.returncode}; {guest}: {reason}")
    assert reason and "2 transient failures in a row" in reason and "failure_hold 240 min" in reason, report["skipped"]
    assert report["migrations"] == [] and proc.returncode != 0, said[-3000:]
    assert f"hv1 is not empty: {guest} stays (" in said and f"held back: its migration to {destination} failed" in said, \
        said[-3000:]
    check_invariant(lab, "migration link cut twice: the domain held back", before,
                    f"{guest} held back on {source} after two transient failures, named in the plan")


# The source's libvirt-python, as the module sees it: every migration is refused as libvirt refuses a guest CPU model
# the destination cannot run (the lab's hosts share one CPU, so the error is given, with libvirt's own code).
REFUSE_CPU = """\
import libvirt
MSG = "the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f"
def _refuse(self, *args, **kwargs):
    err = libvirt.libvirtError(MSG)
    err.err = (libvirt.VIR_ERR_CPU_INCOMPATIBLE, libvirt.VIR_FROM_QEMU, MSG, libvirt.VIR_ERR_ERROR, None, None, None, -1, -1)
    raise err
for _name in ("migrateToURI3", "migrate3"):
    setattr(libvirt.virDomain, _name, _refuse)
"""


def test_a_migration_refused_for_good_is_held_back_at_once(lab, make_guests, tmp_path):
    """Fault 13 through evacuate.yml: the migration fails with VIR_ERR_CPU_INCOMPATIBLE. The run fails naming the
    move, the failure is recorded on the source as permanent, and the next run (libvirt no longer refusing) holds
    the guest back at once, naming the failure, instead of trying it again."""
    guest, source, destination = "fk-cpu", "hv1", "hv2"
    make_guests({source: {guest: "idle"}})
    before = booted(lab, {guest: source})
    shim = shimmed_inventory(tmp_path, "cpu-incompatible", source, REFUSE_CPU)
    cmd = pinned_evacuation(lab, tmp_path / "first", guest, destination)
    outcome = failed_run(lab, popen_ctl(lab, cmd[:3] + ["-i", str(shim)] + cmd[3:]), tmp_path / "first", guest,
                         destination)
    print(f"\nmigration refused (CPU incompatible): {outcome['msg']}")
    assert "the destination's CPU cannot run the domain's CPU model" in outcome["msg"], outcome
    assert "a permanent failure: the plans hold the domain back for failure_hold minutes" in outcome["msg"], outcome
    failure = state_file(lab, source)["failures"][-1]
    assert (failure["vm"], failure["kind"], failure["count"]) == (guest, "permanent", 1), failure
    proc = lab.ctl(pinned_evacuation(lab, tmp_path / "next", guest, destination), check=False, timeout=900)
    said = flat(proc.stdout + proc.stderr)
    report = demo.newest_report(tmp_path / "next")
    reason = held(report, guest)
    print(f"next run: exit code {proc.returncode}; {guest}: {reason}")
    assert reason and "failure_hold 240 min" in reason and "transient" not in reason, report["skipped"]
    assert report["migrations"] == [] and proc.returncode != 0 and f"hv1 is not empty: {guest} stays (" in said, \
        said[-3000:]
    check_invariant(lab, "a migration refused for good (CPU incompatible)", before,
                    f"the run failed naming the move; the next run held {guest} back at once, saying why")


def test_two_runs_started_within_one_second(lab, make_guests, tmp_path):
    make_guests({"hv1": {"fk-twin1": "idle", "fk-twin2": "idle"}})
    before = booted(lab, {"fk-twin1": "hv1", "fk-twin2": "hv1"})
    runs = []
    for index in range(2):
        runs.append(popen_ctl(lab, evacuate_command(lab, tmp_path / f"run{index}")))
        time.sleep(0.5)
    outputs = [flat(run.communicate(timeout=900)[0]) for run in runs]
    codes = [run.returncode for run in runs]
    refused = [i for i, output in enumerate(outputs) if "refusing to run" in output]
    print(f"\ntwo runs 0.5 s apart: exit codes {codes}, refused {refused}")
    # each run either did the whole evacuation or was refused, naming the other run's lock
    for index, output in enumerate(outputs):
        assert codes[index] == 0 or (index in refused and "held by run" in output), output[-3000:]
    # no guest was moved twice: the runs' reports hold at most one migration of each
    moved = [o["vm"] for index in range(2) for report in (tmp_path / f"run{index}").glob("xen-drs-*.json")
             for o in json.loads(report.read_text())["outcomes"] if o["status"] == "migrated"]
    assert sorted(moved) == sorted(set(moved)), moved
    for host in lab.hypervisors:
        assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0, f"a lock left on {host}"
    check_invariant(lab, "two runs started 0.5 s apart", before,
                    f"exit codes {codes}; {len(refused)} refused")


def test_a_host_cut_off_after_the_lock_is_left_out_and_named(lab, make_guests, tmp_path):
    make_guests({"hv1": {"fk-far": "idle"}})
    before = booted(lab, {"fk-far": "hv1"})
    cmd = demo.playbook_command(lab, "rebalance.yml", tmp_path, {"max_migrations": 0}, "--extra-vars",
                                json.dumps({"xen_drs_sample_seconds": 8, "xen_drs_host_timeout": 15}))
    run = popen_ctl(lab, cmd)
    try:
        wait_for(lambda: run.poll() is None and all(
            lab.host_exec(h, ["test", "-e", LOCK_FILE], check=False).returncode == 0 for h in lab.hypervisors),
            120, "the run to hold every lock")
        link(lab, "hv3", "down")
        cut = time.monotonic()
        output = flat(run.communicate(timeout=300)[0])
    finally:
        link(lab, "hv3", "up")
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    print(f"\nhv3 cut off after the lock: the run ended {time.monotonic() - cut:.1f} s later, exit code {run.returncode}")
    report = demo.newest_report(tmp_path)
    assert [h["host"] for h in report["left_out"]] == ["hv3"], report["left_out"]
    assert report["left_out"][0]["reason"].startswith(("unreachable", "not measured")), report["left_out"]
    assert sorted(h["name"] for h in report["hosts"]) == ["hv1", "hv2"]
    assert "hv3" in output
    # hv3's lock stayed behind while it was cut off: the next run takes it over (same control node, run gone)
    proc = lab.ctl(demo.playbook_command(lab, "rebalance.yml", tmp_path, {"max_migrations": 0}), check=False,
                   timeout=900)
    assert proc.returncode == 0, flat(proc.stdout + proc.stderr)[-3000:]
    for host in lab.hypervisors:
        assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0, f"a lock left on {host}"
    check_invariant(lab, "a host cut off after the lock", before, "hv3 left out and named; its lock taken over next run")


def test_destinations_cut_off_between_planning_and_migrating(lab, make_guests, tmp_path):
    """Item 10, second half: the plan is made with every host answering, then both possible destinations
    go dark before the wave; the heartbeat before the wave times out on them, so nothing is sent."""
    make_guests({"hv1": {"fk-late": "idle"}})
    before = booted(lab, {"fk-late": "hv1"})
    run = popen_ctl(lab, evacuate_command(lab, tmp_path, xen_drs_host_timeout=15, xen_drs_migration_timeout=30))
    lines = []
    try:
        for line in run.stdout:  # the plan is made and printed; the Migrate stage is about to start
            lines.append(line)
            if "TASK [Migrate | write each migration record where it is missing" in line:
                break
        assert run.poll() is None, "".join(lines)[-3000:]
        link(lab, "hv2", "down")
        link(lab, "hv3", "down")
        cut = time.monotonic()
        output = flat("".join(lines) + run.communicate(timeout=600)[0])
    finally:
        link(lab, "hv2", "up")
        link(lab, "hv3", "up")
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    report = demo.newest_report(tmp_path)
    outcome = next(o for o in report["outcomes"] if o["vm"] == "fk-late")
    print(f"\nhv2 and hv3 cut off after planning: the run ended {time.monotonic() - cut:.1f} s later, exit code "
          f"{run.returncode}; fk-late: {outcome['status']}: {outcome['msg']}")
    assert [m["vm"] for m in report["migrations"]] == ["fk-late"], report["migrations"]
    assert run.returncode != 0 and outcome["status"] == "not run", outcome
    # the outcome names the dark destination whose lock could not be renewed, not a bare "skipped"
    dest = report["migrations"][0]["destination"]
    assert outcome["msg"].startswith(f"not sent: the run lock on destination {dest} could not be renewed"), outcome
    assert "did not happen" in output and "fk-late" in output
    assert running_on(lab, "fk-late") == ["hv1"]
    # the links are back: the next run takes over the locks the dark hosts kept and finishes the evacuation
    proc = lab.ctl(evacuate_command(lab, tmp_path), check=False, timeout=900)
    assert proc.returncode == 0, flat(proc.stdout + proc.stderr)[-3000:]
    assert running_on(lab, "fk-late") in (["hv2"], ["hv3"])
    for host in lab.hypervisors:
        assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0, f"a lock left on {host}"
    check_invariant(lab, "both destinations cut off between planning and migrating", before,
                    "nothing sent; fk-late stayed on hv1; the next run evacuated it")


def test_a_report_directory_that_cannot_take_the_reports(lab, make_guests, tmp_path):
    make_guests({"hv1": {"fk-report": "idle"}})
    before = booted(lab, {"fk-report": "hv1"})
    (tmp_path / "a-file").write_text("")
    full = tmp_path / "full"
    full.mkdir()
    # a small file system, full, where the controller (its own mount namespace) writes the reports
    lab.ctl(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)])
    try:
        lab.ctl(["dd", "if=/dev/zero", f"of={full / 'filler'}", "bs=4k"], check=False)
        for report_dir, cause in ((tmp_path / "a-file" / "reports", "Not a directory"), (full, "No space left")):
            proc = lab.ctl(demo.playbook_command(lab, "rebalance.yml", report_dir, {"max_migrations": 0}),
                           check=False, timeout=900)
            output = flat(proc.stdout + proc.stderr)
            print(f"\nreport directory {report_dir}: exit code {proc.returncode}")
            assert proc.returncode != 0
            said = output[output.rindex(f"the reports could not be written to {report_dir}"):]
            assert cause in said[:600], said[:600]  # the Result stage's message names the cause itself
            assert "(what the run did is printed above)" in output
            for host in lab.hypervisors:  # the run unlocked before it failed
                assert lab.host_exec(host, ["test", "-e", LOCK_FILE], check=False).returncode != 0
    finally:
        lab.ctl(["umount", str(full)], check=False)
    check_invariant(lab, "report directory not a directory, or its disk full", before,
                    "every host unlocked; the run failed naming the directory and the cause")
