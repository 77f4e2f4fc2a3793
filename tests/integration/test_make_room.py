"""Make-room chains in the Migrate stage (playbooks/tasks/migrate_wave.yml) against the real lab.

A migration that `requires` another one (the make-room move off its destination, an earlier wave)
runs only if that one succeeded:
1. the make-room move does not happen (a domain that exists nowhere): the dependent move is 'not run', with the
   reason, and its guest stays running on its source, still ticking;
2. the make-room move succeeds: both guests are live-migrated and keep ticking where the plan put them.
The waves are hand-made, shaped like the planner's migrations, and run by
tests/integration/playbooks/migrate_waves.yml; placement is checked with virsh on the hosts.
Wall times are printed as figures, not asserted.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import yaml

import rebalance_demo as demo
from conftest import run_playbook, task_results
from test_modules import wait_for
from test_rebalance import ticks

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "migrate_waves.yml"
OUTCOMES_TASK = "Outcomes | every hypervisor's outcomes"
MOVE_KEYS = {"vm", "uuid", "source", "destination", "requires"}


def move(vm, vm_uuid, source, destination, requires=None):
    return {"vm": vm, "uuid": vm_uuid, "source": source, "destination": destination, "requires": requires}


def test_a_move_carries_every_key_the_migrate_stage_reads():
    read = set(re.findall(r"\bmove\.(\w+)", (demo.PLAYBOOKS / "tasks" / "migrate_wave.yml").read_text()))
    assert read and read <= MOVE_KEYS == set(move("v", "u", "s", "d"))


def booted(lab, placed):
    """Wait for each {guest: host} to tick; returns its latest tick."""
    return {g: wait_for(lambda g=g, h=h: ticks(lab, h, g), 300, f"{g} to boot") for g, h in placed.items()}


def migrate_waves(lab, waves):
    """Run the waves; returns {vm: outcome} from every host's xen_drs_outcomes."""
    extra = dict(yaml.safe_load(demo.LAB_VARS.read_text()), waves=waves)
    started = time.monotonic()
    rc, output, result = run_playbook(lab, PLAYBOOK, extra)
    assert rc == 0 and result is not None, output[-4000:]
    by_host = task_results(result, OUTCOMES_TASK)["localhost"]["msg"]
    outcomes = {o["vm"]: o for host_outcomes in by_host.values() for o in host_outcomes}
    print(f"\nmigrate_waves: {time.monotonic() - started:.1f} s wall; outcomes "
          f"{[(o['vm'], o['wave'], o['status'], o['elapsed_seconds']) for o in outcomes.values()]}")
    return outcomes


def keeps_ticking(lab, placed, before):
    """Each {guest: host} runs there without a reboot, its tick counter past the one from before the run."""
    assert {g: h for g, h in demo.placement(lab).items() if g in placed} == placed
    for guest, host in placed.items():
        wait_for(lambda g=guest, h=host: ticks(lab, h, g) > before[g], 30, f"{guest} to tick on {host}")
        boots = sum(lab.console(h, guest).count("xdrs-guest: boot") for h in lab.hypervisors)
        assert boots == 1, f"{guest} booted {boots} times"


def test_failed_make_room_move_leaves_the_dependent_guest_where_it_is(lab, make_guests):
    make_guests({"hv1": {"mr-stay": "idle"}})
    before = booted(lab, {"mr-stay": "hv1"})
    ghost = move("mr-ghost", str(uuid.uuid4()), "hv2", "hv3")
    stay = move("mr-stay", lab.virsh("hv1", "domuuid", "mr-stay").strip(), "hv1", "hv2", requires="mr-ghost")
    outcomes = migrate_waves(lab, [[ghost], [stay]])
    assert outcomes.keys() == {"mr-ghost", "mr-stay"}
    # the module skips a domain that is no longer on its source (it vanished since the plan), saying so
    assert outcomes["mr-ghost"]["status"] == "not run" and "not moved: " in outcomes["mr-ghost"]["msg"]
    assert "is not defined on hv2" in outcomes["mr-ghost"]["msg"]
    assert {k: outcomes["mr-stay"][k] for k in ("status", "msg", "wave")} == {
        "status": "not run", "msg": "the make-room migration of mr-ghost did not succeed", "wave": 2}
    keeps_ticking(lab, {"mr-stay": "hv1"}, before)


def test_successful_make_room_move_lets_the_dependent_guest_in(lab, make_guests):
    make_guests({"hv1": {"mr-a": "idle"}, "hv2": {"mr-b": "idle"}})
    before = booted(lab, {"mr-a": "hv1", "mr-b": "hv2"})
    room = move("mr-b", lab.virsh("hv2", "domuuid", "mr-b").strip(), "hv2", "hv3")
    into = move("mr-a", lab.virsh("hv1", "domuuid", "mr-a").strip(), "hv1", "hv2", requires="mr-b")
    outcomes = migrate_waves(lab, [[room], [into]])
    assert {vm: o["status"] for vm, o in outcomes.items()} == {"mr-b": "migrated", "mr-a": "migrated"}
    assert outcomes["mr-a"]["verified"] and outcomes["mr-b"]["verified"]
    keeps_ticking(lab, {"mr-b": "hv3", "mr-a": "hv2"}, before)
