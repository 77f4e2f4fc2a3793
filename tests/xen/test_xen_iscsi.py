"""Shared iSCSI storage on real Xen hosts, with the kernel's iSCSI initiator (the dom0s have one;
the machine the libvirt lab runs on has none).

xen.drs.iscsi_target serves a LUN from xen1 (tgt) and xen.drs.iscsi_initiator logs both dom0s in
(open-iscsi through community.general.open_iscsi). A PV guest whose
disk is that LUN, writing each console tick to it, live-migrates from xen1 to xen2 and keeps
writing: the destination attached the LUN through its own session.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import console_log, run_playbook, running_on, ticks, wait_for
from test_xen import migrate

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
IQN = "iqn.2026-12.org.xen-drs.xenlab"


def lun_path(xenlab) -> str:
    return f"/dev/disk/by-path/ip-{xenlab.address('xen1')}:3260-iscsi-{IQN}:pool-lun-1"


def last_tick_on_lun(xenlab, host) -> int:
    """The tick number the guest last wrote to the LUN's first sector, read on ``host`` (O_DIRECT)."""
    out = xenlab.ssh(host, f"dd if={lun_path(xenlab)} bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\\000'").stdout
    found = re.search(r"tick (\d+)", out)
    return int(found.group(1)) if found else 0


def test_iscsi_roles_log_the_dom0s_in_and_a_guest_on_the_lun_migrates(xenlab, pv_guest):
    extra = {"xenlab_iqn": IQN}
    # (the roles' idempotence is molecule's check; one run here, each costs 2 minutes on these hosts)
    rc, output, result = run_playbook(xenlab, PLAYBOOKS / "iscsi.yml", extra)
    assert rc == 0 and result, output[-4000:]
    for host in xenlab.hosts:
        sessions = xenlab.ssh(host, "iscsiadm -m session").stdout
        assert f"{xenlab.address('xen1')}:3260" in sessions and f"{IQN}:pool" in sessions, sessions
        wait_for(lambda h=host: xenlab.ssh(h, f"test -b {lun_path(xenlab)}", check=False).returncode == 0, 60,
                 f"the LUN's block device on {host}")

    vm = pv_guest("xen1", "lun-tick", "idle", disk=lun_path(xenlab))
    assert "disk=/dev/xvda" in console_log(xenlab, "xen1", vm)
    wait_for(lambda: last_tick_on_lun(xenlab, "xen1") > 0, 60, f"{vm} to write a tick to the LUN")
    moved = migrate(xenlab, vm, "xen1", "xen2")
    print(f"\nlive migration of a guest on an iSCSI LUN: {moved.get('elapsed_seconds')} s; {moved.get('msg')}")
    assert moved.get("changed") and moved.get("verified"), moved
    assert running_on(xenlab, vm) == ["xen2"]
    assert "xdrs-guest: boot" not in console_log(xenlab, "xen2", vm), "the guest rebooted"
    assert lun_path(xenlab) in xenlab.virsh("xen2", "domblklist", vm)
    # xen2's block back-end serves the guest's disk: state 4 is XenbusStateConnected
    rows = xenlab.ssh("xen2", f"xl block-list {vm}").stdout.splitlines()[1:]
    assert [row.split()[3] for row in rows] == ["4"], rows
    written = last_tick_on_lun(xenlab, "xen2")
    later = wait_for(lambda: (n := last_tick_on_lun(xenlab, "xen2")) > written and n, 60,
                     f"{vm} to keep writing to the LUN from xen2")
    assert ticks(console_log(xenlab, "xen2", vm))[-1] >= later - 1
