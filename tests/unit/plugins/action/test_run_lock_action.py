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
