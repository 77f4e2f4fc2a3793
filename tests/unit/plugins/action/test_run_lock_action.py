# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run_lock action plugin: who is this controller, and is the run that holds a lock still alive?

Real processes, not mocks: the live run is this test's own process; the dead one a child that has exited.
"""

from __future__ import annotations

import json
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
        interpreter = None  # the host's Python not known: releasing runs the module too

        def __init__(self, args, answers):  # pylint: disable=super-init-not-called
            self._task = type("Task", (), {"args": args, "check_mode": False, "diff": False})()
            self._connection = type("Connection", (), {"_shell": type("Shell", (), {"SHELL_FAMILY": "sh"})()})()
            self.answers, self.calls = list(answers), []

        def _interpreter(self, task_vars):
            return self.interpreter

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
    run.plugin = Plugin
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


# ------------------------------------------------------------ releasing without the module: the lock's own code


@pytest.fixture
def release(action, monkeypatch):
    """Run the plugin with the host's Python known (this one) and its commands run here, as the host would."""
    commands = []

    def execute(_self, cmd, sudoable=True, **_kwargs):
        commands.append(cmd)
        proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=False)
        return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}

    monkeypatch.setattr(action.plugin, "interpreter", sys.executable)
    monkeypatch.setattr(action.plugin, "_low_level_execute_command", execute, raising=False)
    monkeypatch.setattr(action.plugin, "_compute_environment_string", lambda _self: "", raising=False)
    action.commands = commands
    return action


def lock_file(tmp_path, owner):
    path = tmp_path / "lock" / "rebalance.lock"
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"owner": owner, "time": 1.0, "renewed": 1.0, "expires": 4e9}) + "\n")
    return path


def test_releasing_runs_the_locks_own_code_on_the_host_without_the_module(release, tmp_path):
    path = lock_file(tmp_path, "run-2")
    result, calls, warnings = release({"owner": "run-2", "state": "released", "path": str(path)})
    assert calls == [] and warnings == [] and len(release.commands) == 1
    assert release.commands[0].startswith(f"{sys.executable} -c ")
    assert result["released"] is True and result["changed"] is True and result["warnings"] == []
    assert result["holder"]["owner"] == "run-2" and result["lock_file"] == str(path) and "diff" not in result
    assert not path.exists()
    # again: nothing to release
    result, _calls, _warnings = release({"owner": "run-2", "state": "released", "path": str(path)})
    assert (result["released"], result["changed"], "holder" in result) == (False, False, False)


def test_releasing_leaves_another_runs_lock_and_says_so(release, tmp_path):
    path = lock_file(tmp_path, "run-1")
    result, calls, _warnings = release({"owner": "run-2", "state": "released", "path": str(path)})
    assert calls == [] and result["released"] is False and path.exists()
    assert result["warnings"] == [f"lock {path} is held by run run-1, taken 1970-01-01T00:00:01Z, expires "
                                  f"2096-10-02T07:06:40Z, not by run-2: left in place"]


def test_a_lock_that_cannot_be_used_is_a_failure_naming_it(release, tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "rebalance.lock"
    result, calls, _warnings = release({"owner": "run-2", "state": "released", "path": str(path)})
    assert calls == [] and result["failed"] is True and result["msg"].startswith(f"cannot use lock file {path}: ")


@pytest.mark.parametrize("args, why", [
    ({"owner": "run-2"}, "taking the lock"),
    ({"owner": "run-2", "state": "released", "ttl": 60}, "an option the program does not take"),
    ({"owner": " ", "state": "released"}, "an empty owner: the module says why"),
])
def test_anything_but_a_plain_release_runs_the_module(release, args, why):
    _result, calls, _warnings = release(args, {"changed": True})
    assert [name for name, _args in calls] == ["xen.drs.run_lock"] and release.commands == [], why


def test_a_release_program_that_does_not_answer_runs_the_module(release, monkeypatch):
    monkeypatch.setattr(release.plugin, "interpreter", "/nonexistent/python")
    result, calls, _warnings = release({"owner": "run-2", "state": "released"}, {"changed": False, "released": False})
    assert len(release.commands) == 1 and calls == [("xen.drs.run_lock", {"owner": "run-2", "state": "released"})]
    assert result == {"changed": False, "released": False}


def test_check_and_diff_mode_run_the_module(release, monkeypatch):
    for mode in ("check_mode", "diff"):
        plugin = release.plugin({"owner": "run-2", "state": "released"}, [{"changed": False}])
        setattr(plugin._task, mode, True)
        plugin.run(task_vars={"inventory_hostname": "hv1"})
        assert [name for name, _args in plugin.calls] == ["xen.drs.run_lock"], mode
    assert release.commands == []


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


def host_python(task_vars):
    """The action plugin's choice of the host's Python for these host variables."""
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel

    plugin = run_lock.ActionModule.__new__(run_lock.ActionModule)
    plugin._templar = Templar(loader=DataLoader(), variables=task_vars)  # pylint: disable=protected-access
    return plugin._interpreter(task_vars)  # pylint: disable=protected-access


@pytest.mark.parametrize("task_vars, expected", [
    ({"ansible_python_interpreter": "/opt/py/bin/python3"}, "/opt/py/bin/python3"),
    ({"ansible_python_interpreter": "auto", "ansible_facts": {"discovered_interpreter_python": "/usr/bin/python3.11"}},
     "/usr/bin/python3.11"),
    ({"ansible_python_interpreter": "auto_silent", "ansible_facts": {"discovered_interpreter_python": "/usr/bin/python3"}},
     "/usr/bin/python3"),
    ({"ansible_python_interpreter": "auto"}, None),  # not discovered on this host yet: the module runs (and discovers)
])
def test_the_hosts_python_is_the_one_a_module_run_would_use(task_vars, expected):
    assert host_python(task_vars) == expected


def test_the_hosts_python_follows_the_interpreter_python_setting(monkeypatch):
    """interpreter_python from ansible.cfg or ANSIBLE_PYTHON_INTERPRETER applies when the host sets none."""
    monkeypatch.setenv("ANSIBLE_PYTHON_INTERPRETER", "/srv/python/bin/python3")
    assert host_python({}) == "/srv/python/bin/python3"
