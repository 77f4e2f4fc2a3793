"""The roles on real systemd Xen hosts (the Xen lab's dom0s), after tests/xen/test_xen.py.

* xen.drs.hypervisor converges on both dom0s (driver xen, SSH transport), a second run changes
  nothing, libvirt's libxl driver answers after the role restarted libvirtd, and a PV guest then
  live-migrates with the role's SSH set-up alone (the image's "no host key checking" shortcut is
  removed first, so the peers' host keys the role wrote are what lets libvirt's ssh connect);
* xen.drs.drs_timer: the timer is enabled and fires once, running the service as the role wrote it.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import run_playbook, running_on, wait_for
from test_xen import migrate

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


def changed_per_host(result: dict) -> dict[str, int]:
    return {host: stats["changed"] for host, stats in result["stats"].items()}


def test_hypervisor_role_converges_on_xen_and_is_idempotent(xenlab, pv_guest):
    for host in xenlab.hosts:
        xenlab.ssh(host, "rm -f /root/.ssh/config /root/.ssh/known_hosts")
    rc, output, first = run_playbook(xenlab, PLAYBOOKS / "hypervisor_role.yml")
    assert rc == 0 and first, output[-4000:]
    print(f"first run changed: {changed_per_host(first)}")
    assert all(n > 0 for n in changed_per_host(first).values())
    rc, output, second = run_playbook(xenlab, PLAYBOOKS / "hypervisor_role.yml")
    assert rc == 0 and second, output[-4000:]
    assert changed_per_host(second) == {h: 0 for h in xenlab.hosts}, output[-4000:]

    uuids = set()
    for host in xenlab.hosts:
        after = xenlab.ssh(host, "systemctl show libvirtd.service -p After --value").stdout
        assert "xen.service" in after.split(), after
        assert xenlab.ssh(host, "stat -c %a /var/lib/xen-drs").stdout.strip() == "700"
        uuids.add(xenlab.ssh(host, "cat /var/lib/xen-drs/host_uuid").stdout.strip())
        # the libxl driver is active after the role's restart of libvirtd (virsh fails otherwise)
        assert "Running hypervisor: Xen" in xenlab.virsh(host, "version")
    assert len(uuids) == len(xenlab.hosts)

    vm = pv_guest("xen1", "role-mig", "idle")
    moved = migrate(xenlab, vm, "xen1", "xen2")
    print(f"migration with the role's SSH set-up: {moved.get('elapsed_seconds')} s; {moved.get('msg')}")
    assert moved.get("changed") and moved.get("verified"), moved
    assert running_on(xenlab, vm) == ["xen2"]


def test_drs_timer_fires_on_a_systemd_host(xenlab):
    xenlab.ssh("xen1", "rm -f /var/lib/xen-drs-timer-ran")
    started = time.time()
    rc, output, result = run_playbook(xenlab, PLAYBOOKS / "drs_timer_role.yml")
    assert rc == 0 and result, output[-4000:]
    assert xenlab.ssh("xen1", "systemctl is-enabled xen-drs-rebalance.timer").stdout.strip() == "enabled"
    assert xenlab.ssh("xen1", "systemctl is-active xen-drs-rebalance.timer").stdout.strip() == "active"

    def recorded():
        return xenlab.ssh("xen1", "cat /var/lib/xen-drs-timer-ran", check=False).stdout.strip()

    # OnActiveSec=1min: the first run comes a minute after the timer started
    ran = wait_for(recorded, 240, "the timer to run the service")
    when, args = ran.splitlines()[0].split(" ", 1)
    print(f"timer fired {float(when) - started:.0f} s after the role ran: ansible-playbook {args}")
    assert args.split()[:2] == ["-i", "/etc/xen-drs-inventory.yml"]
    assert "-e xen_drs_shadow_test=1" in args and args.endswith("xen.drs.rebalance")
    result = xenlab.ssh("xen1", "systemctl show xen-drs-rebalance.service -p Result --value").stdout.strip()
    assert result == "success", result
    xenlab.ssh("xen1", "systemctl disable --now xen-drs-rebalance.timer")
