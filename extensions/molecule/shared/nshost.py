"""Throw-away "hosts" for the molecule scenarios: one mount + network + UTS namespace each.

A host is a holder process (``sleep infinity``) started by ``unshare`` in new mount, network and
UTS namespaces, with per-host directories bind-mounted over the paths the role under test writes
(``/etc/tgt``, ``/etc/libvirt``, ...).  Ansible reaches it with ``ansible_connection: local`` and an
interpreter wrapper that ``nsenter``s the holder's namespaces, so the role runs unchanged and
everything it writes lands in the host's own directories.  Its network namespace has only
``lo``: daemons started inside (tgtd, libvirtd) are invisible to the rest of the machine.

Usage (STATE is the directory that keeps every host's files, pids and logs):
  python3 nshost.py up    STATE NAME [--bind PATH[=copy]]...   start a host (copy: seed from the real PATH)
  python3 nshost.py spawn STATE NAME LABEL -- CMD...           start a daemon inside, pid in STATE/NAME/pids
  python3 nshost.py stop  STATE NAME LABEL                     SIGKILL that daemon (tgtd ignores SIGTERM)
  python3 nshost.py down  STATE NAME                           kill its daemons and holder, remove its files

Every process is stopped by the pid recorded when it was started, and only if it still lives in
this host's network namespace (a recycled pid is left alone).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT = 10.0


def host_dir(state: str, name: str) -> Path:
    return Path(state).resolve() / name


def holder_pid(hdir: Path) -> int:
    return int((hdir / "holder.pid").read_text())


def net_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def kill_in_ns(pid: int, ns: str | None) -> None:
    """SIGKILL pid if it still runs in namespace ns, then wait until it is gone."""
    if ns is None or net_ns(pid) != ns:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while net_ns(pid) is not None and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)


def cmd_up(args: argparse.Namespace) -> None:
    hdir = host_dir(args.state, args.name)
    if (hdir / "holder.pid").exists() and net_ns(holder_pid(hdir)):
        return  # already up
    shutil.rmtree(hdir, ignore_errors=True)
    (hdir / "pids").mkdir(parents=True)
    mounts = []
    for spec in args.bind:
        path, mode = (spec.split("=", 1) + [""])[:2]
        src = hdir / "root" / path.lstrip("/")
        if mode == "copy" and Path(path).is_dir():
            shutil.copytree(path, src, symlinks=True)
        else:
            src.mkdir(parents=True, exist_ok=True)
        # The mount point must exist on the real system; it stays an empty root-only directory.
        Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(path)}")
    ready = hdir / "ready"
    script = " && ".join(
        [*mounts, "ip link set lo up", f"hostname {shlex.quote(args.name)}",
         f"touch {shlex.quote(str(ready))}", "exec sleep infinity"])
    with open(hdir / "holder.log", "wb") as log:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["unshare", "--mount", "--net", "--uts", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (hdir / "holder.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"nshost: {args.name} did not come up: {(hdir / 'holder.log').read_text()}")
        time.sleep(0.05)
    wrapper = hdir / "python"
    wrapper.write_text(
        "#!/bin/sh\n# Run Ansible's modules inside this host's namespaces.\n"
        f"exec nsenter -t {proc.pid} -m -n -u /usr/bin/python3 \"$@\"\n")
    wrapper.chmod(0o755)


def cmd_spawn(args: argparse.Namespace) -> None:
    hdir = host_dir(args.state, args.name)
    pidfile = hdir / "pids" / f"{args.label}.pid"
    if pidfile.exists() and net_ns(int(pidfile.read_text())) == net_ns(holder_pid(hdir)):
        return  # already running
    with open(hdir / f"{args.label}.log", "ab") as log:
        # nsenter joins mount/net/uts namespaces without forking, so proc.pid is the daemon's pid.
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["nsenter", "-t", str(holder_pid(hdir)), "-m", "-n", "-u", *args.command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    pidfile.write_text(str(proc.pid))


def cmd_stop(args: argparse.Namespace) -> None:
    hdir = host_dir(args.state, args.name)
    pidfile = hdir / "pids" / f"{args.label}.pid"
    if pidfile.exists():
        kill_in_ns(int(pidfile.read_text()), net_ns(holder_pid(hdir)))
        pidfile.unlink()


def cmd_down(args: argparse.Namespace) -> None:
    hdir = host_dir(args.state, args.name)
    if (hdir / "holder.pid").exists():
        ns = net_ns(holder_pid(hdir))
        for pidfile in (hdir / "pids").glob("*.pid"):
            kill_in_ns(int(pidfile.read_text()), ns)
        kill_in_ns(holder_pid(hdir), ns)
    shutil.rmtree(hdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("up", "spawn", "stop", "down"):
        p = sub.add_parser(action)
        p.add_argument("state")
        p.add_argument("name")
        if action in ("spawn", "stop"):
            p.add_argument("label")
        if action == "up":
            p.add_argument("--bind", action="append", default=[])
        if action == "spawn":
            p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "spawn":
        args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    {"up": cmd_up, "spawn": cmd_spawn, "stop": cmd_stop, "down": cmd_down}[args.action](args)


if __name__ == "__main__":
    main()
