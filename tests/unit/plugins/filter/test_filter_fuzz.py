# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzzing the two planning filters with random and malformed input (hypothesis).

Each call either returns a well-formed result or raises AnsibleFilterError: never another
exception, and never a hang (an alarm fails the example after HANG_SECONDS).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ansible_collections.xen.drs.plugins.filter.migration_waves import migration_waves
from ansible_collections.xen.drs.plugins.filter.rebalance_plan import rebalance_plan
from ansible_collections.xen.drs.plugins.plugin_utils.placement.model import DEFAULTS
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import held_by_failure

NOW = 1_700_000_000
HANG_SECONDS = 30
# Sized to keep this file to some CPU seconds; set XDRS_FUZZ_EXAMPLES=5000 to hunt.
SETTINGS = settings(max_examples=int(os.environ.get("XDRS_FUZZ_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(Exception):
    pass


def result_or_filter_error(name, function, *args):
    """``function(*args)``, or None when it raised the AnsibleFilterError of filter ``name``; any other
    exception, or no answer within HANG_SECONDS, fails the example."""
    try:
        with no_hang():
            return function(*args)
    except AnsibleFilterError as error:
        assert str(error).startswith(f"{name}: ")
        event("a filter error")
        return None


@contextlib.contextmanager
def no_hang():
    def alarm(_signum, _frame):
        raise Hang(f"no answer within {HANG_SECONDS} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


ODD_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, -1, -0.5, 10 ** 30, -10 ** 30, 2 ** 63, 1e308, 0])
ODD_TEXT = st.sampled_from(["", " ", "hv\u00e9", "\u0000", "\U0001f525", "a" * 300, "1", "null", "hv1"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | ODD_NUMBERS | ODD_TEXT
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)


def deep(depth):
    """A value nested `depth` lists deep."""
    value = 1
    for _level in range(depth):
        value = [value]
    return value


def corrupt(draw, value):
    """The value with one random place in it replaced, deleted or added to."""
    roll = draw(st.integers(0, 9))
    if isinstance(value, dict) and value and roll < 7:
        key = draw(st.sampled_from(sorted(value, key=repr)))
        if roll == 0:
            return {k: v for k, v in value.items() if k != key}
        if roll == 1:
            return {**value, draw(st.text(max_size=6)): draw(JUNK)}
        return {**value, key: corrupt(draw, value[key])}
    if isinstance(value, list) and value and roll < 7:
        index = draw(st.integers(0, len(value) - 1))
        if roll == 0:
            return value[:index] + value[index + 1:]
        if roll == 1:
            return value + [copy.deepcopy(value[index])]  # a duplicate
        return value[:index] + [corrupt(draw, value[index])] + value[index + 1:]
    return draw(JUNK)


def corrupted(draw, value, most=2):
    """Half the time the value as it is, else with up to `most` corruptions."""
    for _round in range(draw(st.integers(0, most)) if draw(st.booleans()) else 0):
        value = corrupt(draw, value)
    return value


def series(load):
    return st.lists(st.integers(-10, 10).map(lambda d: max(0.0, load + d / 100)), min_size=3, max_size=9).map(
        lambda loads: [[NOW - (len(loads) - 1 - i) * 300, x] for i, x in enumerate(loads)])


@st.composite
def domains(draw, name):
    vcpus = draw(st.integers(1, 4))
    domain = {"name": name, "uuid": f"uuid-{name}", "vcpus": vcpus,
              "memory_mb": draw(st.integers(0, 16384)), "cpu": draw(st.integers(0, 10 * vcpus)) / 10,
              "state": draw(st.sampled_from(["running", "running", "paused", "shutoff"]))}
    if draw(st.booleans()):
        domain["last_migration"] = {"time": draw(st.integers(NOW - 7200, NOW + 60)),
                                    "source": draw(st.sampled_from(["hv1", "hv2"]))}
    if draw(st.booleans()):
        failed = draw(st.integers(NOW - 20000, NOW + 60))
        domain["last_failure"] = {"time": failed, "destination": draw(st.sampled_from(["hv1", "hv2"])), "error": "refused"}
        if draw(st.booleans()):
            domain["last_failure"]["kind"] = draw(st.sampled_from(["permanent", "transient"]))
            if draw(st.booleans()):
                domain["last_failure"].update(count=2, previous=failed - draw(st.integers(0, 20000)))
    if draw(st.booleans()):
        domain["tags"] = draw(st.lists(st.sampled_from(["db", "web", "gold"]), max_size=2))
    if draw(st.booleans()):
        domain["samples"] = draw(series(domain["cpu"]))
    return domain


@st.composite
def hosts(draw, index, names):
    vms = [draw(domains(name)) for name in names]
    demand = sum(d["cpu"] for d in vms if d["state"] == "running")
    cpus = max(1, math.ceil(demand / draw(st.sampled_from([1.3, 0.9, 0.5, 0.2]))))  # loads from idle to far over any threshold
    load = demand / cpus
    host = {"name": f"hv{index + 1}", "cpus": cpus, "memory_mb": 65536, "memory_free_mb": draw(st.integers(0, 65536)),
            "samples": draw(series(load)), "domains": vms}
    if draw(st.booleans()):
        host["maintenance"] = draw(st.booleans())
    return host


# JMESPath selections, good and broken, and ones that select other things than names
SELECTS = st.sampled_from(["[?contains(tags, 'db')].name", "[].name", "[?cpu > `1`].name", "[", "[].cpu", "`[1, 2]`",
                           "[?state == 'running']", "@", "length(@)", "[].tags[]"]) | st.text(max_size=8)
STRENGTHS = st.sampled_from(["must", "should", "may"])
KNOB_VALUES = {
    "load_threshold": st.floats(0.05, 1), "max_over": st.integers(0, 30), "max_load_candidate": st.floats(0.05, 1.5),
    "max_vm_per_host": st.none() | st.integers(1, 5), "max_migrations": st.integers(0, 6),
    "cooldown": st.integers(0, 120), "failure_hold": st.integers(0, 300), "memory_reserve_mb": st.integers(0, 2048),
    "anti_affinity": st.lists(st.lists(st.sampled_from(["vm0", "vm1", "vm2"]), min_size=2, max_size=3)
                              | st.fixed_dictionaries({"select": SELECTS}, optional={"strength": STRENGTHS}),
                              max_size=2),
    "affinity_hosts": st.lists(st.fixed_dictionaries({"hosts": st.lists(st.sampled_from(["hv1", "hv2"]), max_size=2)},
                                                     optional={"members": st.lists(st.sampled_from(["vm0", "vm1"])),
                                                               "select": SELECTS, "strength": STRENGTHS}),
                               max_size=2),
    "pin": st.dictionaries(st.sampled_from(["vm0", "vm3"]), st.lists(st.sampled_from(["hv1", "hv2"]), max_size=2),
                           max_size=2),
    "exclude": st.lists(st.sampled_from(["vm0", "vm4"]), max_size=2),
    "maintenance": st.lists(st.sampled_from(["hv1", "hv2", "hv9"]), max_size=2),
    "interval": st.sampled_from([1, 5]), "engine": st.sampled_from(["auto", "exact", "greedy"]),
    "solver_seconds": st.sampled_from([1, 5]),
    "memory_threshold": st.none() | st.floats(0.1, 1), "max_memory_candidate": st.none() | st.floats(0.1, 1),
    "predictive": st.booleans(), "headroom": st.booleans(), "balance": st.integers(0, 5),
    "balance_hold": st.integers(0, 30),
    "tags": st.dictionaries(st.sampled_from(["db", "web"]), st.lists(st.sampled_from(["vm0", "vm1"]), max_size=2),
                            max_size=1),
    "now": st.just(NOW),
}


def test_every_policy_key_is_fuzzed():
    assert set(KNOB_VALUES) == set(DEFAULTS)


@st.composite
def policies(draw):
    keys = draw(st.lists(st.sampled_from(sorted(KNOB_VALUES)), unique=True, max_size=6))
    return corrupted(draw, {"now": NOW, **{key: draw(KNOB_VALUES[key]) for key in keys}}, most=1)


@st.composite
def clusters(draw):
    odd_names = draw(st.lists(st.sampled_from(["\u00e9t\u00e9", "db 1"]), unique=True))
    names = [f"vm{i}" for i in range(draw(st.integers(1, 9)))] + odd_names
    split = sorted(draw(st.lists(st.integers(0, len(names)), min_size=3, max_size=3)))
    groups = [names[:split[0]], names[split[0]:split[1]], names[split[1]:split[2]], names[split[2]:]]
    cluster = [draw(hosts(i, group)) for i, group in enumerate(groups[:draw(st.sampled_from([3, 4, 2, 1]))])]
    return corrupted(draw, cluster)


def running_domains(cluster):
    return {(h["name"], d["name"]) for h in cluster for d in h["domains"] if d["state"] == "running"}


def assert_plan(cluster, policy, result):
    assert set(result) >= {"migrations", "hosts", "policy"}
    hosts = {h["name"] for h in cluster}
    running = running_domains(cluster)
    max_migrations = result["policy"]["max_migrations"]
    assert len(result["migrations"]) <= max_migrations
    moved = set()
    for move in result["migrations"]:
        assert move["source"] in hosts and move["destination"] in hosts and move["source"] != move["destination"]
        assert (move["source"], move["vm"]) in running, move
        # the plan's own policy holds: no move inside a cooldown or a failure hold
        moving = next(d for h in cluster if h["name"] == move["source"] for d in h["domains"]
                      if d["name"] == move["vm"] and d["state"] == "running")
        policy_now = result["policy"]["now"]
        last = moving.get("last_migration")
        if last and result["policy"]["cooldown"]:
            assert (policy_now - last["time"]) / 60 >= result["policy"]["cooldown"], move
        assert not held_by_failure(moving.get("last_failure"), policy_now, result["policy"]["failure_hold"]), move
        assert move["vm"] not in moved
        moved.add(move["vm"])
        assert isinstance(move["reason"], str) and move["reason"]
    assert {h["name"] for h in result["hosts"]} == hosts


@pytest.mark.parametrize("cluster", [deep(500), {"hv1": []}, "hv1", b"hv1", None, 3, math.nan, [deep(500)],
                                     [{"name": "hv1", "cpus": 1, "memory_mb": 1, "memory_free_mb": 1,
                                       "samples": deep(500), "domains": [deep(500)]}]])
def test_odd_shapes_are_filter_errors(cluster):
    with pytest.raises(AnsibleFilterError, match="^rebalance_plan: "):
        rebalance_plan(cluster, {"now": NOW})


@SETTINGS
@given(clusters(), policies())
def test_rebalance_plan_returns_a_plan_or_a_filter_error(cluster, policy):
    result = result_or_filter_error("rebalance_plan", rebalance_plan, cluster, policy)
    if result is None:
        return
    event(f"a plan with {min(len(result['migrations']), 2)}{'+' if len(result['migrations']) >= 2 else ''} migrations")
    assert_plan(cluster, policy, result)


HOST_NAMES = st.sampled_from(["hv1", "hv2", "hv3"])
MIGRATION = st.fixed_dictionaries(
    {"vm": st.sampled_from(["a", "b", "c", "d"]), "source": HOST_NAMES, "destination": HOST_NAMES},
    optional={"requires": st.lists(st.sampled_from(["a", "b", "c", "z"]), max_size=2)})


@st.composite
def migrations(draw):
    return corrupted(draw, draw(st.lists(MIGRATION, max_size=8)))


@SETTINGS
@given(migrations(), st.integers(1, 4) | JUNK)
def test_migration_waves_returns_waves_or_a_filter_error(moves, parallel):
    waves = result_or_filter_error("migration_waves", migration_waves, moves, parallel)
    if waves is None:
        return
    event("waves")
    assert sorted(id(m) for wave in waves for m in wave) == sorted(id(m) for m in moves)
    for wave in waves:
        assert 1 <= len(wave) <= parallel
        for index, move in enumerate(wave):
            others = {h for m in wave[index + 1:] for h in (m["source"], m["destination"])}
            assert not others & {move["source"], move["destination"]}, wave
