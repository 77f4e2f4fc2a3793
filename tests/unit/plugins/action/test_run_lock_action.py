# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run_lock action plugin: who is this controller, and is the run that holds a lock still alive?

Real processes, not mocks: the live run is this test's own process; the dead one a child that has exited.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.xen.drs.plugins.action import hypervisor_info as hypervisor_info_action
from ansible_collections.xen.drs.plugins.action import run_lock

BOOT_ID = open(run_lock.BOOT_ID, encoding="utf-8").read().strip()
MACHINE_ID = open(run_lock.MACHINE_ID, encoding="utf-8").read().strip()
PID_NS = os.stat("/proc/self/ns/pid").st_ino
MINE = {"host": socket.gethostname(), "machine_id": MACHINE_ID, "boot_id": BOOT_ID, "pid_ns": PID_NS,
        "pid": os.getpid(), "start": run_lock.process_start(os.getpid())}


def dead_process():
    """(pid, start) of a process that ran and has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = run_lock.process_start(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


def holder(**controller):
    return {"owner": "run-1", "controller": dict(MINE, **controller)}


def test_this_controller_is_the_parent_process():
    me = run_lock.this_controller()
    assert me == dict(MINE, pid=os.getppid(), start=run_lock.process_start(os.getppid()))
    assert isinstance(me["start"], int) and me["start"] > 0


def test_process_start_reads_field_22_even_with_spaces_in_the_command_name(tmp_path):
    (tmp_path / "77").mkdir()
    fields = ["S", "1"] + ["0"] * 17 + ["424242"] + ["0"] * 10  # state, ppid, ..., field 22 = start time
    (tmp_path / "77" / "stat").write_text(f"77 (a (odd) name) {' '.join(fields)}\n")
    assert run_lock.process_start(77, proc=str(tmp_path)) == 424242
    assert run_lock.process_start(78, proc=str(tmp_path)) is None


def test_a_live_run_is_never_judged_gone():
    assert run_lock.gone(holder(), MINE) is None


def test_a_dead_run_of_this_controller_is_gone():
    pid, start = dead_process()
    reason = run_lock.gone(holder(pid=pid, start=start), MINE)
    assert reason == f"run run-1's ansible-playbook (pid {pid} on {MINE['host']}) is no longer running"


def test_a_reused_pid_is_not_the_run():
    # this process is alive, but it is not the process that took the lock if its start time differs
    assert "no longer running" in run_lock.gone(holder(start=MINE["start"] - 1), MINE)


def test_without_proc_the_controller_is_unknown_and_only_the_ttl_applies(monkeypatch):
    monkeypatch.setattr(run_lock, "BOOT_ID", "/nonexistent/boot_id")
    assert run_lock.this_controller() is None


def test_a_run_from_before_the_last_reboot_is_gone():
    assert "before its last reboot" in run_lock.gone(holder(boot_id="another-boot"), MINE)


@pytest.mark.parametrize("lock", [
    holder(host="ctl2"),                       # another control node: its processes cannot be seen
    holder(pid=1, start=0, machine_id="a-clone-with-the-same-name"),  # same host name, another machine
    holder(pid=1, start=0, pid_ns=PID_NS + 1),  # another container on this machine: its own PID namespace
    {"owner": "run-1", "controller": {k: v for k, v in MINE.items() if k != "machine_id"}},  # no machine id
    {"owner": "run-1"},                        # a lock of the previous release, without a controller
    {"owner": None, "controller": None},       # an unreadable lock
    {"owner": "run-1", "controller": "ctl1"},  # a damaged one
])
def test_what_cannot_be_checked_is_not_gone(lock):
    assert run_lock.gone(lock, MINE) is None


# ------------------------------------------------------------------ ActionModule.run, with the module stubbed


def stubbed(action_module, monkeypatch):
    """Run `action_module`'s plugin with the module's answers given in advance: (result, its module calls,
    the warnings it displayed)."""

    class Plugin(action_module.ActionModule):
        def __init__(self, args, answers):  # pylint: disable=super-init-not-called
            self._task = type("Task", (), {"args": args})()
            self.answers, self.calls = list(answers), []

        def _execute_module(self, module_name=None, module_args=None, task_vars=None, **_kwargs):
            self.calls.append((module_name, dict(module_args)))
            return dict(self.answers.pop(0))

    monkeypatch.setattr(action_module.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(run_lock, "this_controller", lambda: dict(MINE))
    warnings = []
    monkeypatch.setattr(action_module.display, "warning", warnings.append)

    def run(args, *answers):
        plugin = Plugin(args, answers)
        result = plugin.run(task_vars={"inventory_hostname": "hv1"})
        return result, plugin.calls, warnings
    return run


@pytest.fixture
def action(monkeypatch):
    return stubbed(run_lock, monkeypatch)


def refused(**controller):
    return {"failed": True, "msg": "held by run-1", "holder": holder(**controller)}


def test_taking_the_lock_names_this_controller(action):
    result, calls, warnings = action({"owner": "run-2"}, {"changed": True})
    assert result == {"changed": True} and warnings == []
    assert calls == [("xen.drs.run_lock", {"owner": "run-2", "controller": MINE})]


def test_the_lock_of_a_dead_run_of_this_controller_is_taken_over_from_exactly_that_owner(action):
    pid, start = dead_process()
    result, calls, warnings = action({"owner": "run-2"}, refused(pid=pid, start=start), {"changed": True})
    assert [args.get("take_over") for _name, args in calls] == [None, "run-1"]
    assert calls[1][1]["controller"] == MINE and calls[1][1]["owner"] == "run-2"
    assert result["changed"] and result["taken_over"]["owner"] == "run-1"
    assert "no longer running" in result["taken_over"]["reason"]
    assert len(warnings) == 1 and warnings[0].startswith("hv1: run run-1's ansible-playbook") and "taking over" in warnings[0]


def test_a_live_runs_lock_is_never_taken(action):
    result, calls, warnings = action({"owner": "run-2"}, refused())  # the holder is this very process
    assert result["failed"] and len(calls) == 1 and warnings == []


def test_a_take_over_that_fails_is_not_tried_again(action):
    pid, start = dead_process()
    result, calls, _warnings = action({"owner": "run-2", "take_over": "run-1"}, refused(pid=pid, start=start))
    assert result["failed"] and len(calls) == 1


def test_releasing_sends_no_controller(action):
    result, calls, _warnings = action({"owner": "run-2", "state": "released"}, {"changed": True})
    assert result["changed"] and calls == [("xen.drs.run_lock", {"owner": "run-2", "state": "released"})]


# ------------------------------------------------------- hypervisor_info's action plugin: the same, in ``lock``


@pytest.fixture
def measure(monkeypatch):
    return stubbed(hypervisor_info_action, monkeypatch)


MEASURED = {"hypervisor": {"name": "hv1"}, "run_lock": {"acquired": True}}


def test_measuring_with_the_lock_names_this_controller_in_the_lock_only(measure):
    result, calls, warnings = measure({"name": "hv1", "lock": {"owner": "run-2"}}, MEASURED)
    assert result == MEASURED and warnings == []
    assert calls == [("xen.drs.hypervisor_info", {"name": "hv1", "lock": {"owner": "run-2", "controller": MINE}})]


def test_measuring_without_the_lock_sends_no_controller(measure):
    _result, calls, _warnings = measure({"name": "hv1"}, {"hypervisor": {}})
    assert calls == [("xen.drs.hypervisor_info", {"name": "hv1"})]


def test_measuring_takes_over_the_lock_of_a_dead_run_of_this_controller_only(measure):
    pid, start = dead_process()
    refusal = {"failed": True, "msg": "held by run-1", "run_lock": {"acquired": False, "holder": holder(pid=pid, start=start)}}
    result, calls, warnings = measure({"name": "hv1", "lock": {"owner": "run-2"}}, refusal, MEASURED)
    assert [args["lock"].get("take_over") for _name, args in calls] == [None, "run-1"]
    assert calls[1][1]["lock"]["controller"] == MINE and calls[1][1]["name"] == "hv1"
    assert result["hypervisor"] and result["run_lock"]["taken_over"]["owner"] == "run-1"
    assert len(warnings) == 1 and "no longer running" in warnings[0] and warnings[0].startswith("hv1: ")


def test_measuring_never_takes_a_live_runs_lock(measure):
    refusal = {"failed": True, "msg": "held by run-1", "run_lock": {"acquired": False, "holder": holder()}}
    result, calls, warnings = measure({"name": "hv1", "lock": {"owner": "run-2"}}, refusal)
    assert result["failed"] and len(calls) == 1 and warnings == []
