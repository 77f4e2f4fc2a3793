"""The Xen tests run on emulated Xen 4.17 hosts (tests/xenlab): real xl, real libvirt libxl driver.

* ``xenlab`` (session): two Xen hosts, booted once per session and stopped at its end (also when a
  test fails); ``XEN_DRS_XENLAB=NAME`` uses a lab already up (``xenlab.py up --name NAME``)
  instead. Skipped, with the reason, only when not root or when QEMU is missing; a failed
  build or boot is an error, not a skip.
* ``pv_guest(host, name, kind, disk=None)``: defines and starts a PV guest (kind idle, busy or
  half; ``disk`` a block device of the host as its xvda) through libvirt on ``host``; every guest made is destroyed and undefined wherever it is at the end.
* ``run_playbook(xenlab, playbook, extra_vars, check)``: ansible-playbook as the lab's controller.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "xenlab"))
sys.path.insert(0, str(REPO / "tests"))

import ansible_run  # noqa: E402  pylint: disable=wrong-import-position
import xenlab as xenlab_lib  # noqa: E402  pylint: disable=wrong-import-position
from ansible_run import task_results  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

GUEST_XML = """<domain type='xen'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='xenpv'>linux</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=hvc0 xdrs.kind={kind}</cmdline>
  </os>
  <on_crash>preserve</on_crash>
  <devices>
    <console type='pty'><target type='xen' port='0'/></console>{disk}
  </devices>
</domain>
"""


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the Xen lab needs root (network namespace, taps, debootstrap)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (bash scripts/setup installs it)"
    return None


@pytest.fixture(scope="session")
def xenlab():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Xen lab unavailable: {reason}")
    reuse = os.environ.get("XEN_DRS_XENLAB")
    if reuse:  # a lab brought up by hand (tests/xenlab/xenlab.py up --name NAME): used, left up
        lab = xenlab_lib.XenLab(reuse, hosts=2)
        if not lab.state().get("hosts"):
            pytest.fail(f"XEN_DRS_XENLAB={reuse}: no such Xen lab is up")
        yield lab
        return
    lab = xenlab_lib.XenLab(f"x{os.getpid() % 10_000_000}", hosts=2)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        state = lab.up()
        print(f"\nxenlab {lab.name}: up in {state['boot_seconds']} s "
              f"(build: {state['manifest'].get('build_seconds', 'cached')})")
        yield lab
    finally:
        print(f"\nxenlab {lab.name}: down in {lab.down():.1f} s")
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


DISK_XML = """
    <disk type='block' device='disk'>
      <driver name='phy'/>
      <source dev='{dev}'/>
      <target dev='xvda' bus='xen'/>
    </disk>"""


def guest_xml(name: str, kind: str = "idle", memory: int = 128, disk: str | None = None) -> str:
    manifest = xenlab_lib.xen_build
    return GUEST_XML.format(name=name, kind=kind, memory=memory, disk=DISK_XML.format(dev=disk) if disk else "",
                            kernel=f"{manifest.GUEST_DIR}/vmlinuz", initrd=f"{manifest.GUEST_DIR}/guest.gz")


@pytest.fixture
def pv_guest(xenlab):  # pylint: disable=redefined-outer-name
    made: list[str] = []

    def start(host: str, name: str, kind: str = "idle", memory: int = 128, disk: str | None = None) -> str:
        made.append(name)
        path = f"/tmp/{name}.xml"
        xenlab.ssh(host, f"cat > {path}", input=guest_xml(name, kind, memory, disk))
        xenlab.virsh(host, "define", path)
        console_log(xenlab, host, name, clear=True)
        xenlab.virsh(host, "start", name)
        wait_for(lambda: ticks(console_log(xenlab, host, name)), 240, f"{name} to tick on {host}")
        return name

    yield start
    for name in made:
        for host in xenlab.hosts:
            xenlab.ssh(host, f"virsh -c xen:///system destroy {name}; virsh -c xen:///system undefine {name}; "
                             f"rm -f /var/log/xen/console/guest-{name}.log", check=False)


def console_log(xenlab, host, name, clear=False) -> str:  # pylint: disable=redefined-outer-name
    path = f"/var/log/xen/console/guest-{name}.log"
    if clear:
        xenlab.ssh(host, f": > {path}", check=False)
        return ""
    return xenlab.ssh(host, f"cat {path}", check=False).stdout


TICK_RE = re.compile(r"^(?:\[([^\]]*)\] ?)?tick (\d+)\r?$", re.MULTILINE)


def ticks(console: str) -> list[int]:
    """The guest's tick numbers, in order (xenconsoled may put a time stamp before each line)."""
    return [int(m.group(2)) for m in TICK_RE.finditer(console)]


def tick_times(console: str) -> list[tuple[int, float]]:
    """(tick number, epoch seconds) for each time-stamped tick line."""
    stamped = []
    for m in TICK_RE.finditer(console):
        if m.group(1):
            stamp = m.group(1).strip().removesuffix(" UTC")
            fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S"
            when = datetime.datetime.strptime(stamp, fmt)  # xenconsoled stamps in UTC
            stamped.append((int(m.group(2)), when.replace(tzinfo=datetime.timezone.utc).timestamp()))
    return stamped


def running_on(xenlab, name) -> list[str]:  # pylint: disable=redefined-outer-name
    return [h for h in xenlab.hosts if name in xenlab.virsh(h, "list", "--name").split()]


def wait_for(predicate, timeout, what, interval=2.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


def run_playbook(xenlab, playbook, extra_vars: dict | None = None,  # pylint: disable=redefined-outer-name
                 check: bool = False, timeout: float = 1800) -> tuple[int, str, dict | None]:
    """tests/ansible_run.py's run_playbook on the Xen lab, with its wall time printed."""
    started = time.monotonic()
    rc, output, result = ansible_run.run_playbook(xenlab, playbook, extra_vars, check, timeout)
    print(f"\n{Path(playbook).name}{' --check' if check else ''}: rc={rc} in {time.monotonic() - started:.0f} s")
    return rc, output, result
