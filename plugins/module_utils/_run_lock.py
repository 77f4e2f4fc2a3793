# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock of xen.drs, shared by the modules that take it.

M(xen.drs.run_lock) takes or releases it on its own; M(xen.drs.hypervisor_info) takes it (option ``lock``)
and measures only once it holds it, so a run locks and measures a host in one module run. The docs of the
lock file, its owner, the controller that holds it and the take-over of a dead run are in
plugins/modules/run_lock.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager

from ansible_collections.xen.drs.plugins.module_utils._files import make_directories

DEFAULT_PATH = "/run/xen-drs/rebalance.lock"
DEFAULT_TTL = 3600

# The options of a lock, as run_lock takes them (hypervisor_info takes the same ones, but state, in ``lock``).
CONTROLLER_SPEC = {
    "host": {"type": "str", "required": True},
    "machine_id": {"type": "str"},
    "boot_id": {"type": "str", "required": True},
    "pid_ns": {"type": "int"},
    "pid": {"type": "int", "required": True},
    "start": {"type": "int", "required": True},
}
LOCK_SPEC = {
    "owner": {"type": "str", "required": True},
    "path": {"type": "path", "default": DEFAULT_PATH},
    "ttl": {"type": "int", "default": DEFAULT_TTL},
    "runner": {"type": "str"},
    "controller": {"type": "dict", "options": CONTROLLER_SPEC},
    "take_over": {"type": "str"},
}


class LockError(Exception):
    """The lock file or its directory cannot be used (the message says which and why)."""


@contextmanager
def directory_guard(directory):
    """Serialise every run_lock call on this directory (flock is released when the fd closes)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_lock(path, ttl):
    """The lock in ``path`` as a dict, or None when there is none.

    A file that is not a lock (truncated, edited by hand) counts as held by an unknown owner
    until ``ttl`` seconds after it was last written, so that a damaged lock never lets two runs in.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError(f"cannot read lock file {path}: {exc.strerror}") from exc
    try:
        lock = json.loads(text)
        if isinstance(lock, dict) and isinstance(lock.get("expires"), (int, float)):
            return lock
    except ValueError:
        pass
    return {"owner": None, "runner": None, "host": None, "pid": None, "time": mtime, "expires": mtime + ttl}


def write_lock(path, lock):
    """Create ``path`` holding ``lock``; it must not exist (O_EXCL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(lock, handle, sort_keys=True)
        handle.write("\n")


def describe(lock):
    """One line about a lock for messages: who holds it and until when."""
    owner = lock.get("owner") or "an unreadable lock"
    runner = f" ({lock['runner']})" if lock.get("runner") else ""
    host = f" on {lock['host']}" if lock.get("host") else ""
    controller = lock.get("controller")
    if isinstance(controller, dict) and controller.get("host"):
        host += f" by ansible-playbook pid {controller.get('pid')} on {controller['host']}"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lock["time"]))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lock["expires"]))
    return f"{owner}{runner}{host}, taken {since}, expires {until}"


def acquire(path, params, check_mode, now):
    """Take the lock, or renew it. Returns (result, warnings); raises LockError when another owner holds it."""
    owner, ttl = params["owner"], params["ttl"]
    holder = read_lock(path, ttl)
    warnings = []
    result = {"lock_file": path, "acquired": True, "released": False, "changed": False}
    lock = {
        "owner": owner,
        "runner": params["runner"],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "controller": params["controller"],
        "time": now,
        "renewed": now,
        "expires": now + ttl,
    }
    if holder is not None:
        result["holder"] = holder
        if holder.get("owner") == owner:  # a heartbeat: the same run, still alive, renews its lock
            lock = dict(holder, renewed=now, expires=now + ttl)
        elif params["take_over"] is not None and holder.get("owner") == params["take_over"]:
            warnings.append(f"lock {path} was held by run {describe(holder)}, whose controller process is gone: "
                            "taking it over")
        elif holder["expires"] > now:
            raise LockError(f"lock {path} is held by run {describe(holder)}; refusing to start a second run")
        else:
            warnings.append(f"lock {path} was stale (run {describe(holder)}): taking it over")
    if not check_mode:
        if holder is not None:
            os.unlink(path)
        write_lock(path, lock)
    result.update(changed=True, lock=lock, diff={"before": holder or {}, "after": lock})
    return result, warnings


def release(path, owner, ttl, check_mode):
    """Remove the lock if ``owner`` holds it. Returns (result, warnings)."""
    holder = read_lock(path, ttl)
    result = {"lock_file": path, "acquired": False, "released": False, "changed": False}
    if holder is None:
        return result, []
    result["holder"] = holder
    if holder.get("owner") != owner:
        result["diff"] = {"before": holder, "after": holder}
        return result, [f"lock {path} is held by run {describe(holder)}, not by {owner}: left in place"]
    if not check_mode:
        os.unlink(path)
    result.update(changed=True, released=True, diff={"before": holder, "after": {}})
    return result, []


def run(params, check_mode, now):
    """Apply ``params`` to the lock file. Returns (result, warnings); raises LockError."""
    path, owner, ttl = params["path"], params["owner"], params["ttl"]
    if not owner.strip():
        raise LockError("owner must not be empty")
    if ttl <= 0:
        raise LockError(f"ttl must be a positive number of seconds, got {ttl}")
    directory = os.path.dirname(path) or "."
    try:
        if not os.path.isdir(directory):
            if check_mode:
                # Nothing can hold a lock in a directory that does not exist yet.
                return run_without_directory(params)
            make_directories(directory, 0o700)  # and its missing parents, 0700 too
        with directory_guard(directory):
            if params["state"] == "acquired":
                return acquire(path, params, check_mode, now)
            return release(path, owner, ttl, check_mode)
    except OSError as exc:
        raise LockError(f"cannot use lock file {path}: {exc.strerror or exc}") from exc


def run_without_directory(params):
    """Check mode only: what taking or releasing would do where no lock directory exists."""
    if params["state"] == "released":
        return {"lock_file": params["path"], "acquired": False, "released": False, "changed": False}, []
    return {"lock_file": params["path"], "acquired": True, "released": False, "changed": True}, []


def read_lock_quietly(path, ttl):
    """The current lock for a failure message, or None if it cannot be read either."""
    try:
        return read_lock(path, ttl)
    except LockError:
        return None
