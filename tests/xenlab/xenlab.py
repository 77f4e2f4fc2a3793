#!/usr/bin/env python
"""Emulated Xen hosts for the tests: Xen 4.17 with a Debian 12 PV dom0, each a QEMU (TCG) process.

A Xen lab called NAME lives in one network namespace, ``NAME-xen`` (so its addresses exist nowhere
else), holding a bridge with the controller's address (10.213.0.254) and one tap per host. Each host
is ``qemu-system-x86_64 -cpu Nehalem`` booting ``xen-shadow`` (see build.py) and the dom0 from a
copy-on-write overlay of the built image; its identity (address, libvirt host UUID) comes from its
kernel command line. Ansible and ssh run from the namespace, as the controller, with the lab's key.

    python tests/xenlab/xenlab.py up [--name xl] [--hosts 2]   # builds the artifacts first if needed
    python tests/xenlab/xenlab.py ssh [--name xl] xen1 -- xl list
    python tests/xenlab/xenlab.py ctl [--name xl] -- ansible-playbook -i INVENTORY playbooks/rebalance.yml
    python tests/xenlab/xenlab.py down [--name xl]

Why these settings (measured, see tests/xenlab/README.md): ``-cpu qemu64`` boots Xen but libvirt's
libxl driver then fails to start ("Cannot find suitable CPU model"); ``Nehalem`` works. Each host
takes about 2.7 GiB of RAM. Two hosts boot in about 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_ROOT = HERE / "run"
sys.path.insert(0, str(HERE))

import build as xen_build  # noqa: E402  pylint: disable=wrong-import-position

NAME_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
SUBNET = "10.213.0"
CTL_ADDRESS = f"{SUBNET}.254"
HOST_MEMORY_MIB = 2048
DOM0_MEMORY = "1024M"
# dom0 gets one vCPU: with two (Xen's default, one per host CPU) the two
# hosts' four vCPU threads (QEMU's multi-threaded TCG) contend for this machine's two cores and
# lose time to it. Measured on 2 cores (two hosts, 3 x a module on both): boot 191 -> 93 s; ping
# 31.0 -> 21.8 s; command 23.0 -> 17.3 s; setup 32.5 -> 26.7 s. Guests still run on both host CPUs.
DOM0_VCPUS = 1
HOST_CPUS = 2
BOOT_TIMEOUT = 900.0
# Console lines that mark a host's boot stages, in order (Xen's, then dom0's through hvc0).
BOOT_STAGES = [("xen", "Xen version"), ("dom0 kernel", "Linux version"),
               ("dom0 systemd", "xdrs-lab: boot"), ("libvirt libxl", "xdrs-lab: ready")]
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8"}


class XenLabError(RuntimeError):
    """The Xen lab could not be brought up, used or torn down."""


def _run(cmd: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), text=True, capture_output=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise XenLabError(f"{shlex.join(cmd)} exited {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    return proc


def _alive(pid: int, marker: str) -> bool:
    """pid runs and its command line holds marker (so a recycled PID is never taken for ours)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class XenLab:
    def __init__(self, name: str = "xl", hosts: int = 2):
        if not NAME_RE.fullmatch(name):
            raise XenLabError(f"lab name {name!r}: use 1-8 lowercase letters and digits, starting with a letter")
        if not 1 <= hosts <= 3:
            raise XenLabError(f"hosts={hosts}: the Xen lab has 1 to 3 hosts")
        self.name = name
        self.hosts = [f"xen{i}" for i in range(1, hosts + 1)]
        self.netns = f"{name}-xen"
        self.run_dir = RUN_ROOT / name
        self.state_path = self.run_dir / "state.json"
        self.inventory_path = self.run_dir / "inventory.yml"

    # -- addresses and paths -------------------------------------------------------------------

    @staticmethod
    def address(host: str) -> str:
        return xen_build.LAB_HOSTS[host]

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def artifacts(self) -> Path:
        return Path(self.state()["artifacts"])

    @property
    def key(self) -> Path:
        return self.artifacts / "lab_key"

    # -- up / down -----------------------------------------------------------------------------

    def up(self, progress=print) -> dict:
        """Build (or reuse) the artifacts, start the hosts, wait until each answers over ssh."""
        started = time.monotonic()
        manifest = xen_build.Build().build()
        self.down(quiet=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        artifacts = Path(manifest["dir"])
        state = {"name": self.name, "artifacts": str(artifacts), "netns": self.netns, "hosts": {},
                 "manifest": manifest}
        self.state_path.write_text(json.dumps(state, indent=2))
        try:
            self._network()
            for index, host in enumerate(self.hosts, start=1):
                state["hosts"][host] = self._start(host, index, artifacts)
                self.state_path.write_text(json.dumps(state, indent=2))
            self.inventory_path.write_text(self._inventory())
            self._wait_ready(progress)
        except BaseException:
            self.down(quiet=True)  # nothing is left running when the boot fails
            raise
        state["boot_seconds"] = round(time.monotonic() - started)
        self.state_path.write_text(json.dumps(state, indent=2))
        return state

    def _network(self) -> None:
        ns = ["ip", "-n", self.netns]
        _run(["ip", "netns", "add", self.netns])
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "link", "add", "br0", "type", "bridge"])
        _run([*ns, "addr", "add", f"{CTL_ADDRESS}/24", "dev", "br0"])
        _run([*ns, "link", "set", "br0", "up"])
        for index, _host in enumerate(self.hosts, start=1):
            tap = f"tap{index}"
            _run([*ns, "tuntap", "add", "dev", tap, "mode", "tap"])
            _run([*ns, "link", "set", tap, "master", "br0"])
            _run([*ns, "link", "set", tap, "up"])

    def _start(self, host: str, index: int, artifacts: Path) -> dict:
        overlay = self.run_dir / f"{host}.qcow2"
        overlay.unlink(missing_ok=True)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(artifacts / "dom0.img"),
              str(overlay)])
        console = self.run_dir / f"{host}.console.log"
        console.unlink(missing_ok=True)
        host_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.{host}.xen-drs-lab"))
        dom0_cmdline = (f"root=/dev/vda rw console=hvc0 net.ifnames=0 systemd.hostname={host} "
                        f"xdrs.addr={self.address(host)}/24 xdrs.uuid={host_uuid}")
        # -initrd lists the multiboot modules, comma-separated: the dom0 kernel with its command
        # line, then its initramfs (so the command line must hold no comma).
        cmd = ["ip", "netns", "exec", self.netns, "qemu-system-x86_64",
               "-name", f"xen-drs-xenlab-{self.name}-{host}",
               "-machine", "q35", "-cpu", "Nehalem", "-smp", str(HOST_CPUS), "-m", str(HOST_MEMORY_MIB),
               "-display", "none", "-monitor", "none", "-no-reboot", "-serial", f"file:{console}",
               "-kernel", str(artifacts / "xen-shadow"),
               "-append", (f"console=com1 com1=115200 dom0_mem={DOM0_MEMORY},max:{DOM0_MEMORY} "
                           f"dom0_max_vcpus={DOM0_VCPUS} loglvl=all"),
               "-initrd", f"{artifacts / 'vmlinuz'} {dom0_cmdline},{artifacts / 'dom0-initrd.img'}",
               "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
               "-netdev", f"tap,id=n0,ifname=tap{index},script=no,downscript=no",
               "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:21:30:{index:02x}"]
        out = open(self.run_dir / f"{host}.qemu.log", "w")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return {"pid": proc.pid, "address": self.address(host), "uuid": host_uuid, "console": str(console),
                "marker": f"xen-drs-xenlab-{self.name}-{host}", "started": time.time()}

    def _wait_ready(self, progress) -> None:
        start = time.monotonic()
        hosts = self.state()["hosts"]
        stage = {h: -1 for h in hosts}
        ready: set[str] = set()
        while len(ready) < len(hosts):
            elapsed = time.monotonic() - start
            for host, info in hosts.items():
                if host in ready:
                    continue
                if not _alive(info["pid"], info["marker"]):
                    raise XenLabError(f"{host}'s QEMU exited during boot; console:\n{self.console(host)[-3000:]}")
                text = self.console(host)
                while stage[host] + 1 < len(BOOT_STAGES) and BOOT_STAGES[stage[host] + 1][1] in text:
                    stage[host] += 1
                    progress(f"xenlab {self.name}: {host} {BOOT_STAGES[stage[host]][0]} at {elapsed:.0f} s")
                if "xdrs-lab: libvirt libxl driver not answering" in text:
                    raise XenLabError(f"{host}: libvirt's libxl driver did not start; console:\n{text[-3000:]}")
                booted = stage[host] == len(BOOT_STAGES) - 1
                if booted and self.ssh(host, "true", check=False, timeout=30).returncode == 0:
                    ready.add(host)
                    progress(f"xenlab {self.name}: {host} ready over ssh at {elapsed:.0f} s")
            if elapsed > BOOT_TIMEOUT:
                late = sorted(set(hosts) - ready)
                stages = ", ".join(BOOT_STAGES[stage[h]][0] if stage[h] >= 0 else "none" for h in late)
                raise XenLabError(f"not ready after {BOOT_TIMEOUT:.0f} s: {', '.join(late)} (stages: {stages})")
            if len(ready) < len(hosts):
                time.sleep(5)

    def down(self, quiet: bool = False) -> float:
        """Stop every host by its recorded PID, remove the namespace. Safe to call twice."""
        started = time.monotonic()
        state = self.state()
        for host, info in state.get("hosts", {}).items():
            pid, marker = info["pid"], info["marker"]
            if _alive(pid, marker):
                os.kill(pid, signal.SIGTERM)
                for _attempt in range(50):
                    if not _alive(pid, marker):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pid, signal.SIGKILL)
                if not quiet:
                    print(f"xenlab {self.name}: stopped {host} (pid {pid})")
        if self.netns in _run(["ip", "netns", "list"]).stdout.split():
            # QEMU processes of a lab whose state was lost: found by the namespace, not by a name.
            for pid in _run(["ip", "netns", "pids", self.netns], check=False).stdout.split():
                os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "delete", self.netns], check=False)
        for overlay in self.run_dir.glob("*.qcow2"):
            overlay.unlink()
        return time.monotonic() - started

    # -- using it ------------------------------------------------------------------------------

    def console(self, host: str) -> str:
        try:
            return Path(self.state()["hosts"][host]["console"]).read_text(errors="replace")
        except (OSError, KeyError):
            return ""

    def ssh_command(self, host: str, command: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "ssh", "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=60", "-o", "BatchMode=yes", f"root@{self.address(host)}", command]

    def ssh(self, host: str, command: str, check: bool = True, timeout: float | None = 300,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a shell command in host's dom0 as root."""
        return _run(self.ssh_command(host, command), check=check, timeout=timeout, input=input)

    def virsh(self, host: str, *args: str, check: bool = True) -> str:
        return self.ssh(host, shlex.join(["virsh", "-c", "xen:///system", *args]), check=check).stdout

    def ctl_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', HOST_ENV['PATH'])}"
        env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".venv" / "collections"))
        env["ANSIBLE_INVENTORY"] = str(self.inventory_path)
        env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
        env.setdefault("ANSIBLE_NOCOLOR", "1")
        # Every round trip to an emulated dom0 costs seconds: one ssh connection per host, reused.
        env.setdefault("ANSIBLE_PIPELINING", "True")
        # An emulated dom0 under load can take longer than ssh's default 10 s to answer.
        env.setdefault("ANSIBLE_TIMEOUT", "60")
        return env

    def ctl(self, cmd: Sequence[str], check: bool = True, timeout: float | None = 1800,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run cmd as the controller (in the lab's namespace), from the repository root."""
        full_env = self.ctl_env()
        full_env.update(env or {})
        return _run(["ip", "netns", "exec", self.netns, *cmd], check=check, timeout=timeout, env=full_env,
                    cwd=REPO)

    def _inventory(self) -> str:
        ssh_args = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
                    "-o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=600s")
        lines = [f"# xen.drs Xen lab {self.name!r}: generated by tests/xenlab/xenlab.py", "all:", "  vars:",
                 "    ansible_user: root",
                 f"    ansible_ssh_private_key_file: {self.key}",
                 f"    ansible_ssh_common_args: {json.dumps(ssh_args)}",
                 f"    ansible_control_path_dir: {self.run_dir / 'cp'}",
                 "    ansible_python_interpreter: /usr/bin/python3",
                 "    xen_drs_uri: xen:///system",
                 "  children:", "    hypervisors:", "      hosts:"]
        for host in self.hosts:
            lines += [f"        {host}:", f"          ansible_host: {self.address(host)}"]
        return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="build if needed, boot the hosts, wait until they answer")
    p_up.add_argument("--hosts", type=int, default=2)
    p_down = sub.add_parser("down", help="stop the hosts, remove the namespace")
    p_ssh = sub.add_parser("ssh", help="run a command in a host's dom0")
    p_ssh.add_argument("host")
    p_ssh.add_argument("argv", nargs=argparse.REMAINDER)
    p_ctl = sub.add_parser("ctl", help="run a command as the controller (ansible-playbook, ssh)")
    p_ctl.add_argument("argv", nargs=argparse.REMAINDER)
    for p in (p_up, p_down, p_ssh, p_ctl):
        p.add_argument("--name", default="xl")
    args = parser.parse_args(argv)
    lab = XenLab(args.name, getattr(args, "hosts", 2))
    try:
        if args.command == "up":
            state = lab.up()
            print(f"xenlab {lab.name}: up in {state['boot_seconds']} s; inventory {lab.inventory_path}")
        elif args.command == "down":
            print(f"xenlab {lab.name}: down in {lab.down():.1f} s")
        elif args.command == "ssh":
            argv = [a for a in args.argv if a != "--"]
            # one argument is a shell command line; several are one command's words
            return subprocess.call(lab.ssh_command(args.host, argv[0] if len(argv) == 1 else shlex.join(argv)))
        else:
            argv = [a for a in args.argv if a != "--"]
            return subprocess.call(["ip", "netns", "exec", lab.netns, *argv], env=lab.ctl_env(), cwd=REPO)
    except (XenLabError, xen_build.BuildError) as exc:
        print(f"xenlab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
