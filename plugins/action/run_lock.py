# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.run_lock on the controller side: who holds the lock, and is that run still alive?

The module runs on the hypervisor and cannot see the control node's processes; this plugin runs in
ansible-playbook's worker process on the control node. It adds the identity of the ansible-playbook
process (`controller`) to the lock it takes. When the module refuses because another run holds the
lock, and that run's controller is this control node, the plugin checks its process: if it is gone
(or the control node has rebooted since), it asks the module to take the lock over from exactly that
owner (`take_over`), which the module does only if that owner still holds it. Docs: modules/run_lock.py.
"""

from __future__ import annotations

import os
import socket

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

BOOT_ID = "/proc/sys/kernel/random/boot_id"
MACHINE_ID = "/etc/machine-id"


def process_start(pid, proc="/proc"):  # proc: another /proc, for tests
    """The start time of process ``pid`` (clock ticks after boot), or None if there is no such process."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces; field 22 is the start time
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def this_controller():
    """The ansible-playbook process (the parent of this worker process: ansible forks one per task), and
    the machine and PID namespace it runs in; None where /proc cannot tell (then only the ttl applies)."""
    pid = os.getppid()
    try:
        return {"host": socket.gethostname(), "machine_id": _read(MACHINE_ID), "boot_id": _read(BOOT_ID),
                "pid_ns": os.stat("/proc/self/ns/pid").st_ino, "pid": pid, "start": process_start(pid)}
    except OSError:
        return None


def gone(holder, mine):
    """Why the run that holds ``holder`` is certainly dead, or None when it is alive or cannot be checked.

    Only a run of this control node can be checked: the same machine (host name and machine id, so a
    clone with the same name is not mistaken for it) and, in the same boot, the same PID namespace (so a
    container's processes are not judged from another's); then either another boot (every process of the
    earlier boot is gone) or no process with its pid and start time.
    """
    theirs = holder.get("controller") if isinstance(holder, dict) else None
    if (not isinstance(theirs, dict) or not holder.get("owner") or theirs.get("host") != mine["host"]
            or theirs.get("machine_id") != mine["machine_id"]):
        return None
    if theirs.get("boot_id") != mine["boot_id"]:
        return f"run {holder['owner']} was started on {mine['host']} before its last reboot"
    if theirs.get("pid_ns") != mine["pid_ns"]:
        return None
    if process_start(theirs.get("pid")) != theirs.get("start"):
        return f"run {holder['owner']}'s ansible-playbook (pid {theirs.get('pid')} on {mine['host']}) is no longer running"
    return None


def run_taking_over(execute, args, warn, lock_key=None):
    """Run a module that takes the run lock; take over the lock of a dead run of this control node.

    ``execute(args)`` runs the module and returns its result; ``warn(text)`` shows a warning. The lock's
    options are ``args`` itself (run_lock) or ``args[lock_key]`` (hypervisor_info's ``lock``), and what
    taking it did is the result itself or its ``run_lock``. The controller is
    filled in when the lock is to be taken; when the module refuses because the holder's run is certainly
    dead, it runs once more with ``take_over`` set to exactly that owner (the module takes the lock only if
    that owner still holds it). Returns the result, with ``taken_over`` where it took over.
    """
    lock = args if lock_key is None else args.get(lock_key)
    if not lock or (lock_key is None and lock.get("state", "acquired") != "acquired"):
        return execute(args)

    def with_lock(options):
        return options if lock_key is None else dict(args, **{lock_key: options})

    if not lock.get("controller"):
        controller = this_controller()
        if controller is not None:
            lock = dict(lock, controller=controller)
    result = execute(with_lock(lock))
    taking = result if lock_key is None else result.get("run_lock") or {}
    holder = taking.get("holder")
    if result.get("failed") and holder and lock.get("controller") and not lock.get("take_over"):
        reason = gone(holder, lock["controller"])
        if reason:
            warn(f"{reason}: taking over its lock")
            result = execute(with_lock(dict(lock, take_over=holder["owner"])))
            taken = {"owner": holder["owner"], "reason": reason}
            if lock_key is None:
                result["taken_over"] = taken
            else:
                result.setdefault("run_lock", {})["taken_over"] = taken
    return result


class ActionModule(ActionBase):
    """Take or release the lock through the module; take over the lock of a dead run of this controller."""

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)

        def execute(args):
            return self._execute_module(module_name="xen.drs.run_lock", module_args=args, task_vars=task_vars)

        def warn(text):
            display.warning(f"{task_vars.get('inventory_hostname')}: {text}")

        return run_taking_over(execute, dict(self._task.args), warn)
