#!/usr/bin/env python
"""A pool of libvirt hypervisors on shared iSCSI storage, on one machine (stdlib only, run as root).

A lab called NAME is made of network namespaces on a private bridge:

* ``NAME-hv1`` .. ``NAME-hvN``: hypervisors. Each has its own mount, UTS and cgroup namespaces with
  per-host copies of the libvirt directories (and of /var/lib/xen-drs, /run/xen-drs), its own
  libvirtd (unix socket and qemu+tcp) and an sshd (key-only, root) on its lab address.
* ``NAME-san``: the storage host, a userspace iSCSI target (tgtd) with one file-backed LUN per guest.
* ``NAME-ctl``: the controller, from which Ansible reaches every host over ssh, as in production.
* ``NAME-sw``: the switch, holding the bridge ``NAME-br`` and one veth per node.

Everything the lab creates is named after NAME, so labs with different names run side by side, and
``down()`` can find and remove all of it from the recorded state or, failing that, from the names.

    python tests/lab/lab.py up [--name N] [--hosts 3] [--default-guests]
    python tests/lab/lab.py guest [--lab N] --host hv1 --name g1 --kind busy|idle
    python tests/lab/lab.py status [--name N]
    python tests/lab/lab.py list
    python tests/lab/lab.py down [--name N]
    tests/lab/ctl N ansible-playbook -i tests/lab/run/N/inventory.yml playbook.yml
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import guest_image  # the sibling module: this directory is on sys.path for the CLI and for pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_ROOT = HERE / "run"
NODE_SH = HERE / "node.sh"

NAME_RE = re.compile(r"[a-z][a-z0-9]{0,9}")  # netns/veth names must stay within 15 characters
GUEST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
GUEST_KINDS = ("busy", "idle")
LUN_SIZE = 16 * 1024 * 1024
BOOT_TIMEOUT = 60.0
CGROUP_CONTROLLERS = {"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
                      "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}
# Per-hypervisor copies mounted over these directories (the name of the copy in the node dir).
HV_DIRS = {
    "/etc/libvirt": "etc-libvirt",
    "/var/lib/libvirt": "var-lib-libvirt",
    "/run/libvirt": "run-libvirt",
    "/var/log/libvirt": "var-log-libvirt",
    "/var/cache/libvirt": "var-cache-libvirt",
    "/var/lib/xen-drs": "var-lib-xen-drs",
    "/run/xen-drs": "run-xen-drs",
}
# A clean environment for the lab's daemons and for commands run on its hosts.
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
PR_SET_CHILD_SUBREAPER = 36


class LabError(RuntimeError):
    """The lab could not be brought up, used or torn down."""


# --------------------------------------------------------------------------------------------------
# Small helpers


def _run(cmd: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed (rc={proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def _start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _pid_record(pid: int) -> list[int]:
    """A PID with its start time, so a recycled PID is never mistaken for ours."""
    return [pid, _start_time(pid) or 0]


def _alive(record: Sequence[int]) -> bool:
    return _start_time(record[0]) == record[1]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _cgroup_hierarchies() -> list[tuple[Path, str, str]]:
    """(mount point, mount options, this process's cgroup) for each cgroup v1 hierarchy."""
    ours = {}
    for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
        _hierarchy_id, controllers, path = line.split(":", 2)
        if controllers:
            ours[frozenset(controllers.split(","))] = path
    found = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        before, after = line.split(" - ", 1)
        fstype, _source, options = after.split(" ", 2)
        if fstype != "cgroup":
            continue
        controllers = frozenset(o for o in options.split(",")
                                if o in CGROUP_CONTROLLERS or o.startswith("name="))
        if controllers in ours:
            mount_opts = ",".join(sorted(controllers))
            if not controllers & CGROUP_CONTROLLERS:
                mount_opts = "none," + mount_opts  # a named hierarchy without controllers
            found.append((Path(before.split(" ")[4]), mount_opts, ours[controllers]))
    return found


def _rmdir_tree(top: Path) -> None:
    """Remove an (empty of processes) cgroup directory and its children, deepest first."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def _anchor(node_dir: str, boot_cmd: list[str]) -> None:
    """Body of a node's anchor process (``lab.py _anchor``).

    It holds the node's namespaces open, runs the node's boot script and then reaps every
    daemon that ends up its child at once (it is a child subreaper; the machine's PID 1 may be slow).
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    rc = subprocess.call(boot_cmd)
    part = Path(node_dir, "boot.rc.part")  # lab.py polls for boot.rc: it must appear complete
    part.write_text(f"{rc}\n", encoding="utf-8")
    os.replace(part, Path(node_dir, "boot.rc"))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)


def _yaml(value, indent: int = 0) -> str:
    """Minimal YAML for nested dicts of scalars (strings are JSON-quoted, which YAML reads)."""
    pad = "  " * indent
    out = []
    for key, item in value.items():
        if isinstance(item, dict):
            out.append(f"{pad}{key}:" + (" {}\n" if not item else "\n" + _yaml(item, indent + 1)))
        else:
            out.append(f"{pad}{key}: {json.dumps(item)}\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------------


class Lab:
    """One lab, named ``name``, with ``hosts`` hypervisors. See the module docstring."""

    def __init__(self, name: str = "xdrs", hosts: int = 3):
        if not NAME_RE.fullmatch(name):
            raise LabError(f"lab name {name!r} is invalid: use 1-10 lowercase letters/digits, "
                           "starting with a letter")
        if not 1 <= hosts <= 50:
            raise LabError(f"hosts={hosts!r} is out of range: a lab has 1 to 50 hypervisors")
        self.name = name
        self.hosts = hosts
        self.run_dir = RUN_ROOT / name
        self.state_path = self.run_dir / "lab.json"
        self.inventory_path = self.run_dir / "inventory.yml"
        self.ssh_key = self.run_dir / "ssh" / "id_ed25519"
        self.iqn = f"iqn.2026-11.lab.xen-drs:{name}"
        digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        # The subnet exists only inside this lab's namespaces; the name picks it for readability.
        self.subnet_prefix = f"10.77.{1 + digest % 254}"
        self._children: list[subprocess.Popen] = []

    # -- names and addresses ------------------------------------------------------------------

    @property
    def hypervisors(self) -> list[str]:
        state = self._load_state()
        count = len([n for n in state["hosts"] if n.startswith("hv")]) if state else self.hosts
        return [f"hv{i}" for i in range(1, count + 1)]

    @property
    def nodes(self) -> list[str]:
        return ["ctl", "san", *self.hypervisors]

    def netns(self, node: str) -> str:
        return f"{self.name}-{node}"

    def address(self, node: str) -> str:
        if node == "ctl":
            return f"{self.subnet_prefix}.2"
        if node == "san":
            return f"{self.subnet_prefix}.3"
        if re.fullmatch(r"hv[1-9][0-9]?", node):
            return f"{self.subnet_prefix}.{10 + int(node[2:])}"
        raise LabError(f"unknown lab host {node!r}: expected ctl, san or hv1..hv{self.hosts}")

    def uri(self, host: str) -> str:
        """The libvirt URI other hosts use to reach ``host`` (qemu+tcp, lab only)."""
        return f"qemu+tcp://{self.address(host)}/system"

    def node_dir(self, node: str) -> Path:
        return self.run_dir / node

    # -- state --------------------------------------------------------------------------------

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def state(self) -> dict:
        state = self._load_state()
        if state is None:
            raise LabError(f"lab {self.name!r} is not up (no {self.state_path})")
        return state

    def _update_state(self, change: Callable[[dict], None]) -> dict:
        """Apply change() to lab.json under a lock (the CLI and tests may update it at once)."""
        with open(self.run_dir / ".lock", "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load_state() or {}
            change(state)
            part = self.state_path.with_suffix(".part")
            part.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            os.replace(part, self.state_path)
        return state

    # -- up -----------------------------------------------------------------------------------

    def __enter__(self) -> "Lab":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self, guests: dict[str, dict[str, str]] | None = None) -> "Lab":
        """Bring the lab up, then start ``guests`` ({host: {guest: kind}}); undo all on failure."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, bridges, mounts)")
        leftovers = self._existing_netns()
        if leftovers or self.run_dir.exists():
            raise LabError(f"lab {self.name!r} already exists ({', '.join(leftovers) or self.run_dir}); "
                           f"run `python {HERE / 'lab.py'} down --name {self.name}` or pick another name")
        if guests:
            self._check_guest_spec(guests)
        started = time.monotonic()
        kernel, initrd = guest_image.ensure()
        try:
            self._write_files(kernel, initrd)
            self._create_network()
            self._start_nodes()
            self._wait_booted()
            self._record_pids()
            self.start_guests(guests or {})
        except BaseException:
            with contextlib.suppress(LabError):
                self.down()
            raise
        self._update_state(lambda s: s.update(status="up", up_seconds=round(time.monotonic() - started, 2)))
        return self

    def _check_guest_spec(self, guests: dict) -> None:
        for host, spec in guests.items():
            if host not in self.hypervisors:
                raise LabError(f"guests: host {host!r} is not a hypervisor of this lab "
                               f"({', '.join(self.hypervisors)})")
            for guest, kind in spec.items():
                self._check_guest(guest, kind)

    @staticmethod
    def _check_guest(guest: str, kind: str) -> None:
        if not GUEST_RE.fullmatch(str(guest)):
            raise LabError(f"guest name {guest!r} is invalid: letters, digits, '_', '.', '-'")
        if kind not in GUEST_KINDS:
            raise LabError(f"guest {guest!r}: kind {kind!r} is invalid, expected one of {GUEST_KINDS}")

    def _write_files(self, kernel: Path, initrd: Path) -> None:
        """Keys, configs and the recorded state, before anything is started."""
        self.run_dir.mkdir(parents=True)
        ssh_dir = self.run_dir / "ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "cp").mkdir()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"xen-drs-lab-{self.name}",
              "-f", str(self.ssh_key)])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "host_ed25519")])
        authorized = ssh_dir / "authorized_keys"
        shutil.copyfile(self.ssh_key.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)

        hosts_file = self.run_dir / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"{self.address(n)} {n} {n}.{self.name}.lab\n" for n in self.nodes), encoding="utf-8")

        hierarchies = _cgroup_hierarchies()
        hosts: dict[str, dict] = {}
        for node in self.nodes:
            node_dir = self.node_dir(node)
            node_dir.mkdir()
            mounts = {"/etc/hosts": hosts_file}
            entry = {"name": node, "role": node.rstrip("0123456789"), "address": self.address(node),
                     "netns": self.netns(node), "dir": str(node_dir), "pids": {}}
            if entry["role"] == "hv":
                for target, copy in HV_DIRS.items():
                    (node_dir / copy).mkdir()
                    mounts[target] = node_dir / copy
                (node_dir / HV_DIRS["/var/log/libvirt"] / "qemu").mkdir()  # guests' consoles
                entry["host_uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"xen-drs-lab:{self.name}:{node}"))
                entry["uri_local"] = "qemu:///system"
                entry["uri_remote"] = self.uri(node)
                self._write_libvirt_conf(node, entry["host_uuid"])
                entry["cgroups"] = [str(mp / path.lstrip("/") / self.netns(node))
                                    for mp, _opts, path in hierarchies]
                (node_dir / "cgroups").write_text(
                    "".join(f"{mp.name} {opts}\n" for mp, opts, _path in hierarchies), encoding="utf-8")
            if node == "san":
                (node_dir / "tgtd").mkdir()
                (node_dir / "luns").mkdir()
                mounts["/run/tgtd"] = node_dir / "tgtd"  # tgtd's control socket, one per lab
            if node == "ctl":
                ssh_config = node_dir / "ssh_config"
                ssh_config.write_text(self._ssh_client_config(), encoding="utf-8")
                mounts["/etc/ssh/ssh_config"] = ssh_config
            else:
                (node_dir / "sshd_config").write_text(self._sshd_config(node), encoding="utf-8")
                # bash runs root's ~/.bashrc for every ssh command; this machine's (pyenv's set-up, say)
                # cost a lab host about 0.12 s of CPU per command, which a hypervisor does not pay.
                bashrc = Path(pwd.getpwnam("root").pw_dir) / ".bashrc"
                if bashrc.is_file():
                    (node_dir / "bashrc").write_text(
                        "# xen.drs lab: root's shell start-up on this lab host (not the machine's).\n",
                        encoding="utf-8")
                    mounts[str(bashrc)] = node_dir / "bashrc"
            (node_dir / "mounts").write_text(
                "".join(f"{src} {target}\n" for target, src in mounts.items()), encoding="utf-8")
            hosts[node] = entry

        def record(state: dict) -> None:
            state.update(name=self.name, status="starting", run_dir=str(self.run_dir),
                         subnet=f"{self.subnet_prefix}.0/24", bridge=f"{self.name}-br",
                         iqn=self.iqn, portal=f"{self.address('san')}:3260",
                         ssh_key=str(self.ssh_key), inventory=str(self.inventory_path),
                         kernel=str(kernel), initrd=str(initrd), hosts=hosts, guests={})
        self._update_state(record)
        self.inventory_path.write_text(self._inventory(), encoding="utf-8")

    def _write_libvirt_conf(self, node: str, host_uuid: str) -> None:
        etc = self.node_dir(node) / "etc-libvirt"
        (etc / "libvirtd.conf").write_text(
            "# xen.drs lab: qemu+tcp without auth is for this private lab network only.\n"
            "listen_tls = 0\nlisten_tcp = 1\nlisten_addr = \"0.0.0.0\"\nauth_tcp = \"none\"\n"
            "# No polkit daemon here; the unix socket stays root-only (mode 0700).\n"
            "auth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\n"
            "unix_sock_ro_perms = \"0700\"\nunix_sock_rw_perms = \"0700\"\n"
            f"host_uuid = \"{host_uuid}\"\n"
            "log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n", encoding="utf-8")
        (etc / "qemu.conf").write_text(
            "# xen.drs lab: guests run as root from a shared kernel, no relabelling.\n"
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nremember_owner = 0\n"
            "security_driver = \"none\"\nmigration_address = \"0.0.0.0\"\n", encoding="utf-8")
        (etc / "virtlogd.conf").write_text(
            "log_outputs = \"3:file:/var/log/libvirt/virtlogd.log\"\n", encoding="utf-8")
        for sub in ("qemu", "qemu/networks", "nwfilter", "storage", "secrets"):
            (etc / sub).mkdir(exist_ok=True)

    def _sshd_config(self, node: str) -> str:
        ssh_dir = self.run_dir / "ssh"
        # StrictModes off: the keys live in the checkout's run dir, and sshd refuses them when any
        # directory above is group- or world-writable (a checkout under /tmp, as CI may use).
        return (f"StrictModes no\nListenAddress {self.address(node)}\nPort 22\n"
                f"HostKey {ssh_dir / 'host_ed25519'}\n"
                f"PidFile {self.node_dir(node) / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "AcceptEnv LANG LC_*\nSubsystem sftp /usr/lib/openssh/sftp-server\n")

    def _ssh_client_config(self) -> str:
        return ("# The controller's ssh: key-only into the lab's hosts.\nHost *\n"
                f"    User root\n    IdentityFile {self.ssh_key}\n    IdentitiesOnly yes\n"
                "    PasswordAuthentication no\n    StrictHostKeyChecking no\n"
                "    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n")

    def _inventory(self) -> str:
        ssh_args = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                    "-o IdentitiesOnly=yes -o LogLevel=ERROR")
        hypervisors = {h: {"ansible_host": self.address(h), "xen_drs_uri": "qemu:///system",
                           "xen_drs_migration_address": self.address(h)} for h in self.hypervisors}
        inventory = {"all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.ssh_key),
                "ansible_ssh_common_args": ssh_args,
                # Labs may share addresses: keep ssh multiplexing sockets per lab.
                "ansible_control_path_dir": str(self.run_dir / "ssh" / "cp"),
                "ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"),
                "xen_drs_lab_name": self.name,
            },
            "children": {
                "hypervisors": {"hosts": hypervisors},
                "storage": {"hosts": {"san": {"ansible_host": self.address("san")}},
                            "vars": {"xen_drs_lab_iscsi_iqn": self.iqn,
                                     "xen_drs_lab_iscsi_portal": f"{self.address('san')}:3260"}},
            },
        }}
        return f"# xen.drs lab {self.name!r}: generated by tests/lab/lab.py\n" + _yaml(inventory)

    def _create_network(self) -> None:
        switch, bridge = self.netns("sw"), f"{self.name}-br"
        _run(["ip", "netns", "add", switch])
        _run(["ip", "-n", switch, "link", "set", "lo", "up"])
        _run(["ip", "-n", switch, "link", "add", bridge, "type", "bridge"])
        _run(["ip", "-n", switch, "link", "set", bridge, "up"])
        for node in self.nodes:
            ns, port = self.netns(node), f"{self.name}-{node}"
            _run(["ip", "netns", "add", ns])
            # Both ends are created inside the lab's namespaces: nothing appears on the machine.
            _run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                  "netns", switch])
            _run(["ip", "-n", switch, "link", "set", port, "master", bridge, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _start_nodes(self) -> None:
        for node in self.nodes:
            node_dir = self.node_dir(node)
            cgroup_dirs = [Path(p) for p in self.state()["hosts"][node].get("cgroups", [])]
            for cgroup in cgroup_dirs:
                cgroup.mkdir(exist_ok=True)
                for knob in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset has no CPUs until given some
                    if (cgroup / knob).exists():
                        (cgroup / knob).write_text((cgroup.parent / knob).read_text())
            unshare = ["unshare", "--mount", "--propagation", "slave", "--uts"]
            if cgroup_dirs:
                unshare.append("--cgroup")
            cmd = ["ip", "netns", "exec", self.netns(node), *unshare, "--",
                   sys.executable, str(HERE / "lab.py"), "_anchor", str(node_dir), "--",
                   "bash", str(NODE_SH)]
            env = dict(HOST_ENV, NODE=node, NODE_ROLE=self.state()["hosts"][node]["role"],
                       NODE_DIR=str(node_dir), NODE_ADDR=self.address(node), LAB_IQN=self.iqn)

            def join_cgroups(dirs=tuple(cgroup_dirs)) -> None:
                for cgroup in dirs:
                    (cgroup / "cgroup.procs").write_text("0")  # "0" is the writing process

            with open(node_dir / "boot.log", "ab") as log:
                child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=join_cgroups)
            self._children.append(child)
            record = _pid_record(child.pid)
            self._update_state(lambda s, n=node, r=record: s["hosts"][n]["pids"].update(anchor=r))

    def _wait_booted(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        pending = set(self.nodes)
        while pending:
            for node in sorted(pending):
                rc_file = self.node_dir(node) / "boot.rc"
                if rc_file.exists():
                    rc = rc_file.read_text(encoding="utf-8").strip()
                    if rc != "0":
                        raise LabError(f"lab {self.name}: {node} failed to boot (rc={rc}):\n"
                                       + _tail(self.node_dir(node) / "boot.log"))
                    pending.discard(node)
                elif not _alive(self.state()["hosts"][node]["pids"]["anchor"]):
                    raise LabError(f"lab {self.name}: {node}'s anchor died:\n"
                                   + _tail(self.node_dir(node) / "boot.log"))
            if pending and time.monotonic() > deadline:
                raise LabError(f"lab {self.name}: {', '.join(sorted(pending))} not up after "
                               f"{BOOT_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def _record_pids(self) -> None:
        pidfiles = {"hv": {"libvirtd": "run-libvirt/libvirtd.pid", "virtlogd": "run-libvirt/virtlogd.pid",
                           "sshd": "sshd.pid"},
                    "san": {"tgtd": "tgtd.pid", "sshd": "sshd.pid"}}

        def record(state: dict) -> None:
            for node, entry in state["hosts"].items():
                for daemon, rel in pidfiles.get(entry["role"], {}).items():
                    pid = _read_pid(self.node_dir(node) / rel)
                    if pid:
                        entry["pids"][daemon] = _pid_record(pid)
        self._update_state(record)

    # -- down ---------------------------------------------------------------------------------

    def _existing_netns(self) -> list[str]:
        """The lab's network namespaces that exist, found by name (works without any state)."""
        pattern = re.compile(rf"{re.escape(self.name)}-(hv[0-9]+|san|ctl|sw)")
        listing = _run(["ip", "netns", "list"]).stdout
        return [line.split()[0] for line in listing.splitlines()
                if line.split() and pattern.fullmatch(line.split()[0])]

    def _cgroup_dirs(self) -> list[Path]:
        """The lab's cgroup subtrees: recorded ones and any found by name."""
        found = {Path(p) for entry in (self._load_state() or {}).get("hosts", {}).values()
                 for p in entry.get("cgroups", [])}
        pattern = re.compile(rf"{re.escape(self.name)}-hv[0-9]+")
        for mountpoint, _opts, path in _cgroup_hierarchies():
            parent = mountpoint / path.lstrip("/")
            with contextlib.suppress(FileNotFoundError):
                found.update(d for d in parent.iterdir() if d.is_dir() and pattern.fullmatch(d.name))
        return sorted(d for d in found if d.is_dir())

    def _lab_processes(self, netns: Iterable[str], cgroups: Iterable[Path]) -> set[int]:
        """Every live process of the lab: in its netns, in its cgroups, or recorded (PID + start)."""
        keys = set()
        for ns in netns:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(f"/run/netns/{ns}")
                keys.add((st.st_dev, st.st_ino))
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
                    st = os.stat(f"/proc/{entry}/ns/net")
                    if (st.st_dev, st.st_ino) in keys:
                        pids.add(int(entry))
        for cgroup in cgroups:
            for procs in cgroup.rglob("cgroup.procs"):
                with contextlib.suppress(FileNotFoundError, OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        for entry in (self._load_state() or {}).get("hosts", {}).values():
            pids.update(rec[0] for rec in entry.get("pids", {}).values() if _alive(rec))
        pids.discard(os.getpid())
        return {p for p in pids if _start_time(p) is not None}

    def _anchor_pids(self) -> set[int]:
        return {entry["pids"]["anchor"][0] for entry in (self._load_state() or {}).get("hosts", {}).values()
                if "anchor" in entry.get("pids", {})}

    def down(self) -> float:
        """Stop and remove everything of this lab; safe to call again or after a failed up().

        Returns the seconds it took.
        """
        started = time.monotonic()
        netns, cgroups = self._existing_netns(), self._cgroup_dirs()
        anchors = self._anchor_pids()
        # Daemons and guests first, so their anchors (child subreapers) reap them; then the anchors.
        deadline = time.monotonic() + 20
        while True:
            left = self._lab_processes(netns, cgroups)
            targets = (left - anchors) or left
            if not left:
                break
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.name}: processes {sorted(left)} survive SIGKILL")
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for child in self._children:
                child.poll()
            time.sleep(0.05)
        for child in self._children:
            child.wait()
        self._children.clear()
        for ns in netns:
            _run(["ip", "netns", "delete", ns], check=False)
        for cgroup in cgroups:
            _rmdir_tree(cgroup)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        problems = self._existing_netns() + [str(c) for c in self._cgroup_dirs()]
        if problems:
            raise LabError(f"lab {self.name}: could not remove {', '.join(problems)}")
        return time.monotonic() - started

    # -- running things in the lab ------------------------------------------------------------

    def enter(self, node: str, cwd: str | Path | None = None, cgroup_ns: bool = False) -> list[str]:
        """nsenter prefix for ``node``'s network, mount and UTS namespaces (e.g. for Popen).

        The command starts in ``cwd``, by default the caller's current directory.
        """
        hosts = self.state()["hosts"]
        if node not in hosts:
            raise LabError(f"unknown lab host {node!r}: this lab has {', '.join(hosts)}")
        anchor = hosts[node]["pids"].get("anchor")
        if not anchor or not _alive(anchor):
            raise LabError(f"lab {self.name}: {node} is not running")
        # Entering a mount namespace moves to its root: --wd sets the directory to start in.
        return ["nsenter", "-t", str(anchor[0]), "-n", "-m", "-u", *(["-C"] if cgroup_ns else []),
                f"--wd={cwd or os.getcwd()}", "--"]

    _enter = enter  # the name tests used first

    def host_exec(self, host: str, cmd: str | Sequence[str], check: bool = True,
                  input: str | None = None, timeout: float | None = 120) -> subprocess.CompletedProcess:
        """Run cmd (a list, or a string for bash -c) on a lab host, as root in its namespaces."""
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return _run(self.enter(host, "/") + argv, check=check, input=input, env=HOST_ENV, timeout=timeout)

    def ctl_env(self) -> dict[str, str]:
        """Environment for the controller: the repo's venv and the collection on Ansible's path."""
        env = dict(os.environ)
        env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', HOST_ENV['PATH'])}"
        env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".venv" / "collections"))
        env.setdefault("ANSIBLE_INVENTORY", str(self.inventory_path))
        env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
        env.setdefault("ANSIBLE_NOCOLOR", "1")
        return env

    def ctl(self, cmd: str | Sequence[str], check: bool = True, input: str | None = None,
            timeout: float | None = 600, env: dict[str, str] | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run cmd in the controller namespace (where ssh and ansible-playbook reach the hosts).

        It starts in ``cwd`` (default: the repository root) with ``ctl_env()`` plus ``env``.
        """
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        full_env = self.ctl_env()
        full_env.update(env or {})
        return _run(self.enter("ctl", cwd or REPO) + argv, check=check, input=input, env=full_env,
                    timeout=timeout)

    def virsh(self, host: str, *args: str, check: bool = True) -> str:
        """Run virsh against ``host``'s own libvirtd; return its output."""
        return self.host_exec(host, ["virsh", "-c", "qemu:///system", *args], check=check).stdout

    def stop_libvirtd(self, host: str) -> None:
        """Stop ``host``'s libvirtd (SIGTERM, by its recorded PID). Its guests keep running."""
        record = self.state()["hosts"][host]["pids"].get("libvirtd")
        if not record or not _alive(record):
            return
        os.kill(record[0], signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(record):
            if time.monotonic() > deadline:
                os.kill(record[0], signal.SIGKILL)
            time.sleep(0.1)

    def start_libvirtd(self, host: str) -> None:
        """Start ``host``'s libvirtd again after stop_libvirtd(); it reconnects to running guests."""
        if host not in self.hypervisors:
            raise LabError(f"host {host!r} is not a hypervisor of lab {self.name}")
        env = dict(HOST_ENV, NODE=host, NODE_DIR=str(self.node_dir(host)))
        _run(self.enter(host, "/", cgroup_ns=True) + ["bash", str(NODE_SH), "start-libvirtd"], env=env)
        pid = _read_pid(self.node_dir(host) / HV_DIRS["/run/libvirt"] / "libvirtd.pid")
        self._update_state(lambda s: s["hosts"][host]["pids"].update(libvirtd=_pid_record(pid)))

    # -- guests -------------------------------------------------------------------------------

    def start_guest(self, host: str, name: str, kind: str = "idle", memory_mib: int = 96) -> None:
        """Define and start a tiny guest on ``host`` whose disk is its own iSCSI LUN on san."""
        self.state()  # the lab must be up
        self._check_guest(name, kind)
        if host not in self.hypervisors:
            raise LabError(f"host {host!r} is not a hypervisor of lab {self.name} "
                           f"({', '.join(self.hypervisors)})")
        lun = {}

        def allocate(state: dict) -> None:
            if name in state["guests"]:
                raise LabError(f"guest {name!r} already exists in lab {self.name}")
            lun["id"] = 1 + max((g["lun"] for g in state["guests"].values()), default=0)
            state["guests"][name] = {"lun": lun["id"], "kind": kind, "started_on": host}
        state = self._update_state(allocate)
        backing = self.node_dir("san") / "luns" / f"{name}.img"
        tgtadm_lun = ["tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--tid", "1",
                      "--lun", str(lun["id"])]
        try:
            with open(backing, "wb") as disk:
                disk.truncate(LUN_SIZE)  # sparse
            self.host_exec("san", [*tgtadm_lun, "--op", "new", "--backing-store", str(backing)])
            xml = self.domain_xml(name, kind, lun["id"], state["kernel"], state["initrd"], memory_mib)
            self.host_exec(host, ["virsh", "-c", "qemu:///system", "define", "/dev/stdin"], input=xml)
            self.virsh(host, "start", name)
        except LabError:
            # Leave no half-made guest behind, so the same name can be tried again.
            self.virsh(host, "undefine", name, check=False)
            self.host_exec("san", [*tgtadm_lun, "--op", "delete"], check=False)
            backing.unlink(missing_ok=True)
            self._update_state(lambda s: s["guests"].pop(name, None))
            raise

    def start_guests(self, guests: dict[str, dict[str, str]]) -> None:
        """start_guest() for each of {host: {guest: kind}}, in parallel (each mostly waits on virsh)."""
        self._check_guest_spec(guests)
        wanted = [(host, guest, kind) for host, spec in guests.items() for guest, kind in spec.items()]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(self.start_guest, *args) for args in wanted]:
                future.result()

    def where(self, guest: str) -> list[str]:
        """The hypervisors on which ``guest`` is defined (one, unless something went wrong)."""
        return [h for h in self.hypervisors
                if self.host_exec(h, ["virsh", "-c", "qemu:///system", "domstate", guest],
                                  check=False).returncode == 0]

    def remove_guest(self, name: str) -> None:
        """Destroy and undefine a guest wherever it is, and delete its LUN and backing file."""
        for host in self.where(name):
            self.virsh(host, "destroy", name, check=False)  # fails if it is not running: fine
            # a transient domain is gone once destroyed (a libvirtd killed mid-migration can leave one)
            if self.host_exec(host, ["virsh", "-c", "qemu:///system", "domstate", name], check=False).returncode == 0:
                self.virsh(host, "undefine", name)
        guest = self.state()["guests"].get(name)
        if guest:
            self.host_exec("san", ["tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "delete",
                                   "--tid", "1", "--lun", str(guest["lun"])])
            (self.node_dir("san") / "luns" / f"{name}.img").unlink(missing_ok=True)
            self._update_state(lambda s: s["guests"].pop(name, None))

    def domstats(self, host: str, guest: str, *groups: str) -> dict[str, str]:
        """``virsh domstats`` of one guest as {key: value}; groups like "--cpu-total", "--vcpu"."""
        stats = {}
        for line in self.virsh(host, "domstats", *groups, guest).splitlines()[1:]:
            key, _sep, value = line.strip().partition("=")
            if key:
                stats[key] = value
        return stats

    def cpu_seconds(self, host: str, guest: str) -> float:
        """CPU time the guest has used so far, in seconds (libvirt's cpu.time)."""
        stats = self.domstats(host, guest, "--cpu-total")
        if "cpu.time" not in stats:
            raise LabError(f"virsh domstats on {host} reports no cpu.time for {guest!r}")
        return int(stats["cpu.time"]) / 1e9

    def domain_xml(self, name: str, kind: str, lun: int, kernel: str, initrd: str,
                   memory_mib: int = 96) -> str:
        return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=1 xdrs.kind={kind}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='iscsi' name='{self.iqn}/{lun}'>
        <host name='{self.address("san")}' port='3260'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/var/log/libvirt/qemu/{name}.console' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""

    def console(self, host: str, guest: str) -> str:
        """The guest's serial console output on ``host`` so far (each host keeps its own file)."""
        path = self.node_dir(host) / HV_DIRS["/var/log/libvirt"] / "qemu" / f"{guest}.console"
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def status(self) -> dict:
        """The recorded state plus what is running now."""
        state = self.state()
        for node, entry in state["hosts"].items():
            entry["running"] = {d: _alive(r) for d, r in entry["pids"].items()}
            if entry["role"] == "hv" and entry["running"].get("libvirtd"):
                entry["domains"] = self.virsh(node, "list", "--all", "--name").split()
        return state


def existing_labs() -> dict[str, list[str]]:
    """Labs on this machine, by name: their namespaces (empty for a run dir without any)."""
    labs: dict[str, list[str]] = {}
    if RUN_ROOT.is_dir():
        labs.update((d.name, []) for d in RUN_ROOT.iterdir() if NAME_RE.fullmatch(d.name))
    for line in _run(["ip", "netns", "list"]).stdout.splitlines():
        found = re.fullmatch(r"([a-z][a-z0-9]{0,9})-(hv[0-9]+|san|ctl|sw)", line.split()[0]) if line else None
        if found:
            labs.setdefault(found.group(1), []).append(found.group(0))
    return labs


def default_guests() -> dict[str, dict[str, str]]:
    """An unbalanced pool: hv1 carries the load, hv2 one idle guest, hv3 nothing."""
    return {"hv1": {"busy1": "busy", "idle1": "idle"}, "hv2": {"idle2": "idle"}}


# --------------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_anchor":  # internal: python lab.py _anchor NODE_DIR -- CMD...
        _anchor(argv[1], list(argv[3:]))
        return 0
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring a lab up")
    p_up.add_argument("--hosts", type=int, default=3)
    p_up.add_argument("--default-guests", action="store_true", help=default_guests.__doc__)
    p_down = sub.add_parser("down", help="tear a lab down (idempotent)")
    p_status = sub.add_parser("status", help="print the lab's state as JSON")
    sub.add_parser("list", help="list the labs on this machine (run dirs and namespaces)")
    p_exec = sub.add_parser("exec", help="run a command on a lab host (ctl, san, hvN)")
    p_exec.add_argument("node")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    for p in (p_up, p_down, p_status, p_exec):
        p.add_argument("--name", "--lab", dest="lab", default="xdrs", help="lab name (default xdrs)")
    # Here --name is the guest's name, as in "guest --host hv1 --name g1"; the lab is --lab.
    p_guest = sub.add_parser("guest", help="define and start a guest on a hypervisor")
    p_guest.add_argument("--lab", default="xdrs", help="lab name (default xdrs)")
    p_guest.add_argument("--host", required=True)
    p_guest.add_argument("--name", dest="guest", required=True, help="guest (domain) name")
    p_guest.add_argument("--kind", choices=GUEST_KINDS, default="idle")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, netns in sorted(existing_labs().items()):
            print(f"{name}: {' '.join(sorted(netns)) or '(no namespaces)'}")
        return 0
    try:
        lab = Lab(args.lab, getattr(args, "hosts", 3))
        if args.command == "up":
            started = time.monotonic()
            lab.up(default_guests() if args.default_guests else None)
            print(f"lab {lab.name} up in {time.monotonic() - started:.1f} s; "
                  f"inventory {lab.inventory_path}")
        elif args.command == "down":
            print(f"lab {lab.name} down in {lab.down():.1f} s")
        elif args.command == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.command == "guest":
            lab.start_guest(args.host, args.guest, args.kind)
            print(f"guest {args.guest} ({args.kind}) started on {args.host}")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            enter = lab.enter(args.node)
            env = lab.ctl_env() if args.node == "ctl" else HOST_ENV
            os.execvpe(enter[0], enter + (cmd or ["bash"]), env)
    except LabError as exc:
        print(f"lab.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
