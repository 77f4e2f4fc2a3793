# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.run_lock on the controller side: who holds the lock, and is that run still alive?

The module runs on the hypervisor and cannot see the control node's processes; this plugin runs in
ansible-playbook's worker process on the control node. It adds the identity of the ansible-playbook
process (`controller`) to the lock it takes. When the module refuses because another run holds the
lock, and that run's controller is this control node, the plugin checks its process: if it is gone
(or the control node has rebooted since), it asks the module to take the lock over from exactly that
owner (`take_over`), which the module does only if that owner still holds it. Docs: modules/run_lock.py.

Releasing the lock, as every run does on every hypervisor at its end, does not need the module's AnsiballZ
payload: the plugin sends the interpreter the lock's own code (module_utils/_files.py and _run_lock.py, their
source as it is) and runs its `run` as the module would (see release_program). The same function, the same
directory guard and the same owner check, without unpacking and compiling ansible.module_utils.basic on the
host: about 0.2 s of the host's CPU less per host and run. Anything else (taking the lock, check or diff mode,
options other than owner and path, an interpreter not yet known, an answer that is not the program's) runs
the module.
"""

from __future__ import annotations

import json
import os
import shlex
import socket

from ansible import constants as C
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


MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections.xen.drs.plugins.module_utils"
RELEASE_OPTIONS = frozenset(("owner", "state", "path"))

# Runs on the hypervisor: loads the lock's module_utils from their source and releases as the module does
# (its main(): run(), a LockError as a failure naming the holder), printing one JSON line.
_RELEASE_MAIN = """
import json, os, sys, time, types
def _load(name, source):
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, name, "exec"), module.__dict__)
    return module
_load(PACKAGE + "._files", FILES)
lock = _load(PACKAGE + "._run_lock", RUN_LOCK)
path = os.path.expanduser(os.path.expandvars(PATH or lock.DEFAULT_PATH))
params = dict(owner=OWNER, path=path, ttl=lock.DEFAULT_TTL, state="released", runner=None, controller=None,
              take_over=None)
try:
    result, warnings = lock.run(params, False, time.time())
except lock.LockError as exc:
    holder = lock.read_lock_quietly(path, params["ttl"])
    result, warnings = dict(failed=True, msg=str(exc), lock_file=path, acquired=False, released=False), []
    if holder:
        result["holder"] = holder
result.pop("diff", None)
result["warnings"] = warnings
print("XEN_DRS_RELEASE " + json.dumps(result))
"""


def _source(name):
    with open(os.path.join(MODULE_UTILS, f"{name}.py"), encoding="utf-8") as handle:
        return handle.read()


def release_program(owner, path=None):
    """The Python program that releases ``owner``'s lock at ``path`` (None: the default) on the host."""
    values = {"PACKAGE": PACKAGE, "FILES": _source("_files"), "RUN_LOCK": _source("_run_lock"), "OWNER": owner,
              "PATH": path}
    return "".join(f"{name} = {value!r}\n" for name, value in values.items()) + _RELEASE_MAIN


def released_answer(stdout):
    """The module's result from the release program's output, or None when it is not there."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("XEN_DRS_RELEASE "):
            try:
                result = json.loads(line[len("XEN_DRS_RELEASE "):])
            except ValueError:
                return None
            return result if isinstance(result, dict) else None
    return None


class ActionModule(ActionBase):
    """Take or release the lock through the module; take over the lock of a dead run of this controller."""

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)

        def execute(args):
            return self._execute_module(module_name="xen.drs.run_lock", module_args=args, task_vars=task_vars)

        def warn(text):
            display.warning(f"{task_vars.get('inventory_hostname')}: {text}")

        args = dict(self._task.args)
        released = self._release(args, task_vars)
        if released is not None:
            return released
        return run_taking_over(execute, args, warn)

    def _release(self, args, task_vars):
        """Release the lock without the module (see the docstring above), or None to run the module."""
        if (args.get("state") != "released" or not set(args) <= RELEASE_OPTIONS or self._task.check_mode
                or self._task.diff or not isinstance(args.get("owner"), str) or not args["owner"].strip()
                or not isinstance(args.get("path"), (str, type(None)))
                or getattr(self._connection._shell, "SHELL_FAMILY", None) != "sh"):
            return None
        interpreter = self._interpreter(task_vars)
        if not interpreter:
            return None
        command = " ".join(part for part in (self._compute_environment_string(), interpreter, "-c",
                                             shlex.quote(release_program(args["owner"], args.get("path")))) if part)
        answer = self._low_level_execute_command(command, sudoable=True)
        result = released_answer(answer.get("stdout", "")) if answer.get("rc") == 0 else None
        if result is None:
            display.vvv(f"run_lock: the release program did not answer (rc {answer.get('rc')}): "
                        f"{answer.get('stderr', '')[-500:]}; running the module")
        return result

    def _interpreter(self, task_vars):
        """The host's Python as a module run would use it: the interpreter_python setting (ansible.cfg, or the
        host's ansible_python_interpreter), or, when that asks for discovery (auto, auto_silent, ...), the one
        discovered for the host; None when discovery has not run on the host yet (the module then runs, and
        discovers)."""
        try:
            value = self._templar.template(C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars))
        except Exception:  # pylint: disable=broad-exception-caught  # any trouble: the module runs instead
            return None
        value = value.strip() if isinstance(value, str) else ""
        if value and not value.startswith("auto"):
            return value
        discovered = (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python")
        return discovered if isinstance(discovered, str) and discovered else None
