# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""placement.execution: the status vocabulary, which moves may run, the loads after a run, the evacuation policy."""

from __future__ import annotations

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import execution as ex
from ansible_collections.xen.drs.plugins.plugin_utils.placement.model import DEFAULTS


def done(vm, status, uuid=None):
    return {"vm": vm, "uuid": uuid or f"uuid-{vm}", "status": status}


# --- the vocabulary ---------------------------------------------------------------------------------

def test_every_status_is_either_succeeded_or_failed_and_moved_ones_succeeded():
    assert set(ex.STATUSES) == ex.SUCCEEDED_STATUSES | ex.FAILED_STATUSES
    assert not ex.SUCCEEDED_STATUSES & ex.FAILED_STATUSES
    assert ex.MOVED < ex.SUCCEEDED_STATUSES


@pytest.mark.parametrize("status, kind, moved", [
    ("migrated", "succeeded", True),
    ("would migrate", "succeeded", True),
    ("already there", "succeeded", False),
    ("failed", "failed", False),
    ("unreachable", "failed", False),
    ("not run", "failed", False),
])
def test_classify(status, kind, moved):
    outcome = done("a", status)
    assert ex.classify(outcome) == kind
    assert ex.succeeded(outcome) is (kind == "succeeded")
    assert ex.failed(outcome) is (kind == "failed")
    assert ex.moved(outcome) is moved


@pytest.mark.parametrize("outcome, message", [
    ({"vm": "a", "status": "done"}, "outcome: status must be one of 'migrated', "),
    ({"vm": "a"}, "got None"),
    ("migrated", "outcome must be a mapping, got str"),
])
def test_an_unknown_status_is_an_error(outcome, message):
    with pytest.raises(ex.ExecutionError, match=message):
        ex.classify(outcome)


OUTCOMES = [done("a", "migrated"), done("b", "failed"), done("c", "already there"), done("d", "not run"),
            done("e", "would migrate"), done("f", "unreachable")]


@pytest.mark.parametrize("select, vms", [
    (ex.succeeded_outcomes, ["a", "c", "e"]),
    (ex.failed_outcomes, ["b", "d", "f"]),
    (ex.moved_outcomes, ["a", "e"]),
])
def test_selections_keep_order_and_entries(select, vms):
    selected = select(OUTCOMES)
    assert [o["vm"] for o in selected] == vms
    assert all(any(o is given for given in OUTCOMES) for o in selected)


def test_a_selection_names_the_bad_entry():
    with pytest.raises(ex.ExecutionError, match=r"outcomes\[1\]: status must be one of"):
        ex.failed_outcomes([done("a", "migrated"), done("b", "FAILED")])


# --- the status of one migration, from its registered result ---------------------------------------

@pytest.mark.parametrize("result, check_mode, status", [
    ({"changed": True}, False, "migrated"),
    ({"changed": False}, False, "already there"),
    ({}, False, "already there"),
    ({"changed": True}, True, "would migrate"),
    ({"changed": False}, True, "would migrate"),
    ({"failed": True, "msg": "boom"}, False, "failed"),
    ({"failed": True, "changed": True}, True, "failed"),
    ({"skipped": True, "changed": False}, False, "not run"),
    ({"skipped": True}, True, "not run"),
    ({"unreachable": True, "failed": True, "skipped": True}, False, "unreachable"),
    ({"unreachable": False, "changed": True}, False, "migrated"),
])
def test_outcome_status(result, check_mode, status):
    assert ex.outcome_status(result, check_mode) == status


@pytest.mark.parametrize("result, check_mode, message", [
    ([], False, "result must be a mapping, got list"),
    ({}, "yes", "check_mode must be a boolean, got str"),
])
def test_outcome_status_bad_input(result, check_mode, message):
    with pytest.raises(ex.ExecutionError, match=message):
        ex.outcome_status(result, check_mode)


# --- which moves may run ------------------------------------------------------------------------------

@pytest.mark.parametrize("move, required", [
    ({"vm": "a"}, []),
    ({"vm": "a", "requires": None}, []),
    ({"vm": "a", "requires": []}, []),
    ({"vm": "a", "requires": "b"}, ["b"]),
    ({"vm": "a", "requires": ["b"]}, ["b"]),
    ({"vm": "a", "requires": ["b", "c", "b"]}, ["b", "c"]),
    ({"vm": "a", "requires": ("c", "b")}, ["c", "b"]),
])
def test_requirements_are_normalised_to_a_list(move, required):
    assert ex.requirements(move) == required


@pytest.mark.parametrize("requires", ["", [""], [None], ["b", 3], 3, {"b": True}])
def test_bad_requirements_are_named(requires):
    with pytest.raises(ex.ExecutionError, match=r"move 'a': requires must be null, a VM name or a list of VM names"):
        ex.requirements({"vm": "a", "requires": requires})


@pytest.mark.parametrize("requires, outcomes, runnable", [
    # nothing required: always runs, whatever else happened
    (None, [], True),
    ([], [done("b", "failed")], True),
    # one requirement, the planner's old shape (a string) and the new one (a list)
    ("b", [done("b", "migrated")], True),
    (["b"], [done("b", "migrated")], True),
    ("b", [done("b", "would migrate")], True),
    ("b", [done("b", "already there")], True),
    ("b", [done("b", "failed")], False),
    (["b"], [done("b", "unreachable")], False),
    ("b", [done("b", "not run")], False),
    ("b", [], False),
    ("b", [done("c", "migrated")], False),
    # several requirements: every one must have succeeded
    (["b", "c"], [done("b", "migrated"), done("c", "migrated")], True),
    (["b", "c"], [done("b", "migrated"), done("c", "failed")], False),
    (["b", "c"], [done("b", "failed"), done("c", "migrated")], False),
    (["b", "c"], [done("b", "migrated")], False),
    (["b", "c"], [done("c", "already there"), done("b", "would migrate"), done("d", "failed")], True),
])
def test_runnable(requires, outcomes, runnable):
    assert ex.runnable({"vm": "a", "requires": requires}, outcomes) is runnable


@pytest.mark.parametrize("result, requires, outcomes, msg", [
    ({"skipped": True}, "mr-ghost", [done("mr-ghost", "failed")],
     "the make-room migration of mr-ghost did not succeed"),
    ({"skipped": True}, ["b", "c"], [done("b", "migrated"), done("c", "not run")],
     "the make-room migration of c did not succeed"),
    ({"skipped": True}, ["b", "c"], [],
     "the make-room migrations of b, c did not succeed"),
    ({"failed": True, "msg": "domain 'a' is not defined on hv2"}, None, [], "domain 'a' is not defined on hv2"),
    ({"changed": True}, "b", [done("b", "migrated")], ""),
    ({"skipped": True, "skip_reason": "Conditional result was False"}, None, [], "Conditional result was False"),
    # the module skipped it: the domain no longer runs on its source
    ({"skipped": True, "changed": False, "msg": "not moved: domain 'a' is paused on hv1 (qemu:///system) and is not "
      "running on hv2"}, None, [], "not moved: domain 'a' is paused on hv1 (qemu:///system) and is not running on hv2"),
])
def test_outcome_msg(result, requires, outcomes, msg):
    assert ex.outcome_msg(result, {"vm": "a", "requires": requires}, outcomes) == msg


DARK = {"unreachable": True, "msg": "Failed to connect to the host via ssh: timed out"}


@pytest.mark.parametrize("result, requires, outcomes, heartbeats, msg", [
    ({"skipped": True, "skip_reason": "Conditional result was False"}, None, [], {"hv3": DARK},
     "not sent: the run lock on destination hv3 could not be renewed before the wave (Failed to connect to the host "
     "via ssh: timed out)"),
    ({"skipped": True}, None, [], {"hv1": {"failed": True, "msg": "held by run-9"}, "hv3": {"failed": True}},
     "not sent: the run lock on source hv1 could not be renewed before the wave (held by run-9); the run lock on "
     "destination hv3 could not be renewed before the wave (no message)"),
    # a renewed lock, a heartbeat skipped (check mode) or none at all: the other reasons stand
    ({"skipped": True, "skip_reason": "Conditional result was False"}, None, [],
     {"hv1": {"changed": False}, "hv3": {"skipped": True}}, "Conditional result was False"),
    ({"skipped": True}, "b", [done("b", "failed")], {"hv3": DARK}, "the make-room migration of b did not succeed"),
    ({"failed": True, "msg": "no route to host"}, None, [], {"hv3": DARK}, "no route to host"),
])
def test_outcome_msg_names_a_heartbeat_that_failed(result, requires, outcomes, heartbeats, msg):
    move = {"vm": "a", "source": "hv1", "destination": "hv3", "requires": requires}
    assert ex.outcome_msg(result, move, outcomes, heartbeats) == msg


@pytest.mark.parametrize("heartbeats, runnable", [
    (None, True),
    ({}, True),
    ({"hv1": {"changed": False}, "hv3": {"skipped": True}}, True),  # renewed; skipped in check mode
    ({"hv3": DARK}, False),
    ({"hv1": {"failed": True, "msg": "held by run-9"}}, False),
])
def test_a_move_does_not_run_when_the_heartbeat_of_its_source_or_destination_failed(heartbeats, runnable):
    move = {"vm": "a", "source": "hv1", "destination": "hv3"}
    assert ex.runnable(move, [], heartbeats) is runnable
    # the outcome's message says why exactly when the move could not run for that reason
    said = ex.outcome_msg({"skipped": True}, move, [], heartbeats)
    assert said.startswith("not sent: ") is (not runnable)


# --- the loads after the moves that really happened ----------------------------------------------------

def host(name, load):
    return {"name": name, "load": load, "predicted_load": None}


def migration(vm, source, destination, source_loads, destination_loads):
    return {"vm": vm, "uuid": f"uuid-{vm}", "source": source, "destination": destination,
            "source_load_before": source_loads[0], "source_load_after": source_loads[1],
            "destination_load_before": destination_loads[0], "destination_load_after": destination_loads[1]}


# hv1 (0.875) sends web1 to hv2 (0.125), then hv1 sends app1 to hv3 (0.25)
PLAN = {
    "hosts": [host("hv1", 0.875), host("hv2", 0.125), host("hv3", 0.25)],
    "migrations": [migration("web1", "hv1", "hv2", (0.875, 0.625), (0.125, 0.375)),
                   migration("app1", "hv1", "hv3", (0.625, 0.5), (0.25, 0.375))],
}
BEFORE = {"hv1": 0.875, "hv2": 0.125, "hv3": 0.25}
PREDICTED = {"hv1": 0.5, "hv2": 0.375, "hv3": 0.375}


@pytest.mark.parametrize("outcomes, after", [
    ([], BEFORE),
    ([done("web1", "migrated"), done("app1", "migrated")], PREDICTED),
    ([done("web1", "would migrate"), done("app1", "would migrate")], PREDICTED),
    # a failed migration leaves both its hosts at their load before
    ([done("web1", "failed"), done("app1", "failed")], BEFORE),
    ([done("web1", "failed"), done("app1", "migrated")], {"hv1": 0.75, "hv2": 0.125, "hv3": 0.375}),
    ([done("web1", "migrated"), done("app1", "not run")], {"hv1": 0.625, "hv2": 0.375, "hv3": 0.25}),
    ([done("web1", "unreachable"), done("app1", "already there")], BEFORE),
    # matched by uuid, not by name
    ([done("web1", "migrated", uuid="other")], BEFORE),
])
def test_loads_after(outcomes, after):
    assert ex.loads_after(PLAN, outcomes) == pytest.approx(after)


def test_loads_after_an_empty_plan_is_empty():
    assert ex.loads_after({"migrations": [], "hosts": [], "skipped": []}, []) == {}


@pytest.mark.parametrize("plan, message", [
    ([], "plan must be a mapping, got list"),
    ({"hosts": [{"name": "hv1"}]}, r"plan.hosts\[0\] needs 'name' and 'load'"),
    ({"hosts": [], "migrations": [{"vm": "a", "uuid": "uuid-a"}]}, r"plan.migrations\[0\] 'a' needs 'source', "),
    ({"hosts": [host("hv1", 0.5)], "migrations": [migration("a", "hv1", "hv9", (0.5, 0.25), (0, 0.25))]},
     r"plan.migrations\[0\] 'a': destination 'hv9' is not in plan.hosts"),
])
def test_loads_after_bad_plan(plan, message):
    with pytest.raises(ex.ExecutionError, match=message):
        ex.loads_after(plan, [done("a", "migrated")])


# --- the policy of an evacuation -----------------------------------------------------------------------

def pool(running, stopped=0, name="hv1"):
    domains = [{"name": f"r{n}", "state": "running"} for n in range(running)]
    domains += [{"name": f"s{n}", "state": "shut off"} for n in range(stopped)]
    return [{"name": name, "domains": domains}, {"name": "hv2", "domains": [{"name": "x", "state": "running"}] * 9}]


@pytest.mark.parametrize("policy, cluster, expected", [
    # the planner's default budget, unless twice the evacuee's running domains is more
    ({}, pool(1), {"maintenance": ["hv1"], "max_migrations": DEFAULTS["max_migrations"]}),
    (None, pool(2, stopped=7), {"maintenance": ["hv1"], "max_migrations": DEFAULTS["max_migrations"]}),
    ({}, pool(4), {"maintenance": ["hv1"], "max_migrations": 8}),
    ({"max_migrations": None}, pool(4), {"maintenance": ["hv1"], "max_migrations": 8}),
    ({"max_migrations": 20}, pool(4), {"maintenance": ["hv1"], "max_migrations": 20}),
    ({"max_migrations": 1}, pool(0), {"maintenance": ["hv1"], "max_migrations": 1}),
    # other keys and maintenance hosts are kept
    ({"maintenance": ["hv7"], "load_threshold": 0.8}, pool(3),
     {"maintenance": ["hv7", "hv1"], "load_threshold": 0.8, "max_migrations": 6}),
    ({"maintenance": ["hv1"]}, pool(3), {"maintenance": ["hv1"], "max_migrations": 6}),
    ({"maintenance": None}, pool(0), {"maintenance": ["hv1"], "max_migrations": DEFAULTS["max_migrations"]}),
    # the evacuee could not be measured: it is still emptied, with the default budget
    ({}, pool(9, name="hv5"), {"maintenance": ["hv1"], "max_migrations": DEFAULTS["max_migrations"]}),
])
def test_evacuation_policy(policy, cluster, expected):
    given = None if policy is None else dict(policy)
    assert ex.evacuation_policy(policy, cluster, "hv1") == expected
    assert policy == given  # the user's policy is not changed in place


def test_a_rebalance_keeps_the_policy():
    policy = {"maintenance": ["hv7"], "max_migrations": 3}
    assert ex.evacuation_policy(policy, pool(9), None) == policy
    assert ex.evacuation_policy(None, [], None) == {}


@pytest.mark.parametrize("policy, cluster, evacuee, message", [
    ([], [], "hv1", "policy must be a mapping, got list"),
    ({}, {}, "hv1", "cluster must be a list, got dict"),
    ({}, ["hv1"], "hv1", r"cluster\[0\] must be a mapping"),
    ({}, [{"name": "hv1", "domains": "r1"}], "hv1", "host 'hv1': domains must be a list"),
    ({"maintenance": "hv7"}, [], "hv1", "policy.maintenance must be a list, got str"),
    ({"max_migrations": "5"}, [], "hv1", "policy.max_migrations must be a whole number or null, got '5'"),
    ({"max_migrations": True}, [], "hv1", "policy.max_migrations must be a whole number or null, got True"),
    ({}, [], "", "host must be a host name, got ''"),
    ({}, [], ["hv1"], r"host must be a host name, got \['hv1'\]"),
])
def test_evacuation_policy_bad_input(policy, cluster, evacuee, message):
    with pytest.raises(ex.ExecutionError, match=message):
        ex.evacuation_policy(policy, cluster, evacuee)


def record(time, vm="web1", source="hv1", destination="hv2"):
    return {"time": time, "vm": vm, "uuid": f"uuid-{vm}", "source": source, "destination": destination}


def info(host, domains=(), migrations=()):
    return {"hypervisor": {"name": host, "domains": [dict(d) for d in domains]}, "migrations": list(migrations)}


def test_reconcile_finds_the_record_a_dead_run_left_out_and_gives_the_domain_its_cooldown():
    moved = record(1000.0)  # on the source (domain_migrate wrote it), not on the destination (the run died)
    web1 = {"name": "web1", "uuid": "uuid-web1"}
    infos = {"hv1": info("hv1", migrations=[moved]), "hv2": info("hv2", [web1]), "hv3": info("hv3")}
    result = ex.reconcile_records(infos)
    assert result["missing"] == [{"host": "hv2", "record": moved}]
    assert result["hypervisors"]["hv2"]["domains"] == [
        dict(web1, last_migration={"time": 1000.0, "source": "hv1", "destination": "hv2"})]
    assert result["hypervisors"]["hv1"] == infos["hv1"]["hypervisor"]


def test_reconcile_keeps_whole_records_and_newer_local_knowledge():
    old, new = record(1000.0), record(2000.0, source="hv2", destination="hv1")
    local = {"time": 3000.0, "source": "hv3", "destination": "hv1"}  # newer than any record it was given
    web1 = {"name": "web1", "uuid": "uuid-web1", "last_migration": local}
    infos = {"hv1": info("hv1", [web1], [old, new]), "hv2": info("hv2", migrations=[old, new])}
    result = ex.reconcile_records(infos)
    assert result["missing"] == []
    assert result["hypervisors"]["hv1"]["domains"][0]["last_migration"] == local


def test_reconcile_writes_nothing_to_a_host_that_did_not_answer():
    moved = record(1000.0, destination="hv9")
    assert ex.reconcile_records({"hv1": info("hv1", migrations=[moved])})["missing"] == []


def test_reconcile_newest_record_wins_across_hosts():
    first, back = record(1000.0), record(1500.0, source="hv2", destination="hv1")
    web1 = {"name": "web1", "uuid": "uuid-web1", "last_migration": {"time": 1000.0, "source": "hv1", "destination": "hv2"}}
    infos = {"hv1": info("hv1", [web1], [first]), "hv2": info("hv2", migrations=[first, back])}
    result = ex.reconcile_records(infos)
    assert result["missing"] == [{"host": "hv1", "record": back}]
    assert result["hypervisors"]["hv1"]["domains"][0]["last_migration"] == {
        "time": 1500.0, "source": "hv2", "destination": "hv1"}


@pytest.mark.parametrize("infos, message", [
    ([], "infos must be a mapping"),
    ({"hv1": {"migrations": []}}, "infos['hv1'].hypervisor must be a mapping"),
    ({"hv1": {"hypervisor": {}, "migrations": {}}}, "infos['hv1'].migrations must be a list"),
    ({"hv1": {"hypervisor": {}, "migrations": [{"time": 1}]}},
     "infos['hv1'].migrations[0] needs vm, uuid, source, destination"),
    ({"hv1": {"hypervisor": {}, "migrations": [dict(record(1.0), time="soon")]}},
     "infos['hv1'].migrations[0].time must be a number, got 'soon'"),
    ({"hv1": {"hypervisor": {}, "migrations": [dict(record(1.0), vm=["a"])]}},
     "infos['hv1'].migrations[0].vm must be a string, got ['a']"),
])
def test_reconcile_bad_input(infos, message):
    with pytest.raises(ex.ExecutionError) as error:
        ex.reconcile_records(infos)
    assert message in str(error.value)
