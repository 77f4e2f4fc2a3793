# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replay.engine and replay.metrics: the stepping loop on hand-made scenarios with stub planners."""

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils import placement
from ansible_collections.xen.drs.plugins.plugin_utils.replay import (
    HostSpec, ReplayError, Scenario, ScenarioError, VmSpec, replay)
from ansible_collections.xen.drs.plugins.plugin_utils.replay.metrics import is_ping_pong, sustained_steps

T0 = 1_000_000_000
STEP = 300
POLICY = {"load_threshold": 0.75, "max_over": 10, "cooldown": 60}


def scenario(vms, hosts=(("h1", 1, 4096), ("h2", 1, 4096)), window=24):
    """``vms``: [(name, first host, memory_mb, [cores per step])]; hosts: (name, cpus, memory_mb)."""
    return Scenario("hand", tuple(HostSpec(n, c, m) for n, c, m in hosts),
                    tuple(VmSpec(n, h, mem, tuple(d)) for n, h, mem, d in vms), T0, STEP, window)


def at(step):
    return T0 + step * STEP


def no_moves(_cluster, _policy):
    return {"migrations": []}


class Recorder:
    """A planner that remembers what it saw and moves ``vm`` to ``destination`` at the given steps."""

    def __init__(self, vm=None, destination=None, steps=()):
        self.vm, self.destination, self.steps = vm, destination, set(steps)
        self.seen = []  # (policy now, {host: host dict}, {vm: (host, domain dict)})

    def __call__(self, cluster, policy):
        hosts = {h["name"]: h for h in cluster}
        domains = {d["name"]: (h["name"], d) for h in cluster for d in h["domains"]}
        self.seen.append((policy["now"], hosts, domains))
        step = (policy["now"] - T0) // STEP
        if step in self.steps:
            return {"migrations": [{"vm": self.vm, "source": domains[self.vm][0], "destination": self.destination,
                                    "reason": "stub at step %d" % step}]}
        return {"migrations": []}


# hot starts on h1 and is moved to h2 by the stub at step 2; calm stays on h2. Both hosts have 1 CPU.
HOT = [0.8, 0.9, 0.95, 0.7, 0.6, 0.9]
CALM = [0.1] * 6


def test_host_steps_over_threshold_sustained_peak_and_overload_minutes_on_a_hand_made_trace():
    planner = Recorder("hot", "h2", steps=[2])
    result = replay(scenario([("hot", "h1", 1024, HOT), ("calm", "h2", 512, CALM)]), planner, POLICY)
    m = result.metrics
    # h1: 0.8 0.9 0.95 (hot moves at step 2, gone from step 3) 0 0 0 -> over at steps 0-2 (3);
    #     sustained only at step 2, where the streak (steps 0-2) spans 10 min = max_over.
    # h2: 0.1 0.1 0.1, then hot + calm: 0.8 0.7 1.0 -> over at steps 3 and 5 (2); the dip to 0.7 at
    #     step 4 breaks the streak, so h2 is never sustained.
    assert result.host_loads == {"h1": (0.8, 0.9, 0.95, 0.0, 0.0, 0.0), "h2": (0.1, 0.1, 0.1, 0.8, 0.7, 1.0)}
    assert (m.host_steps, m.over_host_steps, m.sustained_host_steps) == (12, 5, 1)
    assert m.over_share == pytest.approx(5 / 12)
    assert m.overload_minutes == 25  # 5 host-steps x 5 minutes
    assert m.peak_load == 1.0
    # one migration in 6 steps = half an hour: 2 an hour; 1024 MiB moved
    assert (m.migrations, m.migrations_per_hour, m.memory_moved_mb, m.ping_pongs) == (1, 2.0, 1024, 0)
    assert (m.steps, m.hosts, m.vms, m.hours) == (6, 2, 2, 0.5)
    [move] = result.migrations
    assert (move.step, move.time, move.vm, move.source, move.destination, move.reason, move.memory_mb) == (
        2, at(2), "hot", "h1", "h2", "stub at step 2", 1024)


def test_moves_apply_from_the_next_step_with_last_migration_and_a_fresh_domain_history():
    planner = Recorder("hot", "h2", steps=[2])
    replay(scenario([("hot", "h1", 1024, HOT), ("calm", "h2", 512, CALM)]), planner, POLICY)
    assert [now for now, _hosts, _domains in planner.seen] == [at(s) for s in range(6)]
    _now, hosts, domains = planner.seen[2]  # the step that plans the move still sees hot on h1
    assert domains["hot"][0] == "h1" and "last_migration" not in domains["hot"][1]
    assert hosts["h1"]["samples"][-1] == (at(2), 0.95, 0.25)  # load, memory_load = 1024 / 4096
    assert domains["hot"][1]["samples"] == [(at(0), 0.8), (at(1), 0.9), (at(2), 0.95)]
    _now, hosts, domains = planner.seen[3]
    host, hot = domains["hot"]
    assert host == "h2" and hot["cpu"] == 0.7
    assert hot["last_migration"] == {"time": at(2), "source": "h1", "destination": "h2"}
    assert hot["samples"] == [(at(3), 0.7)]  # history starts again on the destination
    assert domains["calm"][1]["samples"][0] == (at(0), 0.1)  # a domain that stayed keeps its own
    assert hosts["h1"]["samples"][-1] == (at(3), 0.0, 0.0)
    assert hosts["h2"]["memory_free_mb"] == 4096 - 1024 - 512
    assert hosts["h1"]["memory_free_mb"] == 4096


def test_the_planner_cannot_change_the_engine_state():
    def vandal(cluster, policy):
        for host in cluster:
            for domain in host["domains"]:
                domain["samples"].clear()
                domain["cpu"] = 99.0
            host["domains"].clear()
            host["samples"].clear()
        policy["load_threshold"] = 0.0
        return {"migrations": []}

    result = replay(scenario([("hot", "h1", 1024, HOT), ("calm", "h2", 512, CALM)]), vandal, POLICY)
    assert result.host_loads["h1"] == (0.8, 0.9, 0.95, 0.7, 0.6, 0.9)
    assert result.metrics.over_host_steps == 4  # threshold still 0.75: 0.8 0.9 0.95 and 0.9 on h1
    assert POLICY["load_threshold"] == 0.75


def test_windows_keep_the_newest_24_samples():
    steps = 30
    planner = Recorder("a", "h2", steps=[25])
    replay(scenario([("a", "h1", 512, [0.01 * s for s in range(steps)])]), planner, POLICY)
    _now, hosts, domains = planner.seen[25]
    samples = hosts["h1"]["samples"]
    assert len(samples) == 24 and samples[0][0] == at(2) and samples[-1][0] == at(25)
    assert [t for t, _cores in domains["a"][1]["samples"]] == [at(s) for s in range(2, 26)]
    _now, hosts, domains = planner.seen[29]
    assert [t for t, _cores in domains["a"][1]["samples"]] == [at(s) for s in range(26, 30)]
    assert len(hosts["h2"]["samples"]) == 24 and len(hosts["h1"]["samples"]) == 24


def cooldown_respecting_flipper(cluster, policy):
    """Moves x to the other host whenever the policy's cooldown (minutes) allows it, as placement does:
    blocked while last_migration.time > now - cooldown x 60."""
    for host in cluster:
        for domain in host["domains"]:
            if domain["name"] != "x":
                continue
            last = domain.get("last_migration")
            if last and last["time"] > policy["now"] - policy["cooldown"] * 60:
                return {"migrations": []}
            other = next(h["name"] for h in cluster if h["name"] != host["name"])
            return {"migrations": [{"vm": "x", "source": host["name"], "destination": other}]}
    return {"migrations": []}


@pytest.mark.parametrize("cooldown, steps, ping_pongs", [
    # cooldown 10 min = 2 steps: moves at steps 0, 2, 4 (at step 1, T0 > T0 + 300 - 600 still blocks);
    # the moves at 2 and 4 go back to a host left 10 min before: 2 ping-pongs.
    (10, [0, 2, 4], 2),
    # no cooldown: a move every step, each one after the first goes back: 5 ping-pongs
    (0, [0, 1, 2, 3, 4, 5], 5),
    # cooldown 60 min: the one move at step 0 and nothing more within the 6 steps
    (60, [0], 0),
])
def test_last_migration_makes_a_cooldown_block_the_next_move_and_returns_count_as_ping_pongs(
        cooldown, steps, ping_pongs):
    result = replay(scenario([("x", "h1", 512, [0.1] * 6)]), cooldown_respecting_flipper,
                    dict(POLICY, cooldown=cooldown))
    assert [m.step for m in result.migrations] == steps
    assert [(m.source, m.destination) for m in result.migrations][:2] == [("h1", "h2"), ("h2", "h1")][:len(steps)]
    assert result.metrics.ping_pongs == ping_pongs
    assert [m.ping_pong for m in result.migrations] == [False] + [True] * (len(steps) - 1)


def test_a_return_after_two_hours_is_not_a_ping_pong():
    assert is_ping_pong({"h1": T0}, "h1", T0 + 7199)
    assert not is_ping_pong({"h1": T0}, "h1", T0 + 7200)
    assert not is_ping_pong({"h1": T0}, "h2", T0 + 60)
    # in a replay: x leaves h1 at step 0 and comes back at step 24 (2 h later) or 23 (1 h 55)
    for back, expected in ((24, False), (23, True)):
        planner = Recorder("x", "h2", steps=[0])
        back_planner = Recorder("x", "h1", steps=[back])

        def both(cluster, policy, first=planner, second=back_planner):
            plan = first(cluster, policy)
            return plan if plan["migrations"] else second(cluster, policy)

        result = replay(scenario([("x", "h1", 512, [0.1] * 26)]), both, POLICY)
        assert [m.ping_pong for m in result.migrations] == [False, expected]


@pytest.mark.parametrize("loads, expected", [
    ([0.8, 0.8, 0.8, 0.8], 2),        # steps 2 and 3 end a streak spanning >= 10 min
    ([0.8, 0.8, 0.7, 0.8, 0.8], 0),   # the dip breaks it
    ([0.75, 0.75, 0.75], 0),          # at the threshold is not over
    ([0.8] * 3 + [0.1] + [0.9] * 4, 3),
])
def test_sustained_steps(loads, expected):
    assert sustained_steps(loads, 0.75, 10, 300) == expected


def test_planning_time_and_wall_time_come_from_the_injected_clock():
    ticks = iter(range(1000))
    result = replay(scenario([("a", "h1", 512, [0.1] * 3)]), no_moves, POLICY, clock=lambda: next(ticks))
    # clock reads: start 0; per step before/after: (1, 2), (3, 4), (5, 6); end 7
    assert result.metrics.plan_seconds_mean == 1 and result.metrics.plan_seconds_max == 1
    assert result.metrics.wall_seconds == 7


def test_progress_is_reported_after_each_step():
    calls = []
    replay(scenario([("a", "h1", 512, [0.1] * 3)]), no_moves, POLICY, progress=lambda *a: calls.append(a))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def mover(move):
    return lambda cluster, policy: {"migrations": [move]} if policy["now"] == T0 else {"migrations": []}


# Plans the engine refuses: (id, planner's return value at step 0, words of the error).
BAD_PLANS = [
    ("not a plan", ["a"], "must return a plan"),
    ("migrations not a list", {"migrations": "a"}, "must return a plan"),
    ("move not a mapping", {"migrations": ["a"]}, "a migration must be a mapping"),
    ("unknown VM", {"migrations": [{"vm": "zz", "destination": "h2"}]}, "'zz' -> 'h2': unknown VM"),
    ("unknown host", {"migrations": [{"vm": "a", "destination": "h9"}]}, "'a' -> 'h9': unknown destination"),
    ("wrong source", {"migrations": [{"vm": "a", "source": "h2", "destination": "h2"}]}, "it runs on 'h1'"),
    ("already there", {"migrations": [{"vm": "a", "destination": "h1"}]}, "already runs there"),
    ("twice in a plan", {"migrations": [{"vm": "a", "destination": "h2"}, {"vm": "a", "destination": "h1"}]},
     "already moved by this plan"),
    ("no memory", {"migrations": [{"vm": "big", "destination": "h2"}]}, "needs 4000 MiB, 'h2' has 3584 MiB free"),
]


@pytest.mark.parametrize("plan, words", [case[1:] for case in BAD_PLANS], ids=[case[0] for case in BAD_PLANS])
def test_a_plan_the_engine_cannot_apply_is_an_error_naming_the_step_and_the_move(plan, words):
    day = scenario([("a", "h1", 512, [0.1] * 2), ("b", "h2", 512, [0.1] * 2), ("big", "h1", 4000, [0.1] * 2)],
                   hosts=(("h1", 1, 8192), ("h2", 1, 4096)))
    with pytest.raises(ReplayError) as error:
        replay(day, lambda cluster, policy: plan, POLICY)
    assert str(error.value).startswith("step 0: ") and words in str(error.value)


@pytest.mark.parametrize("policy, words", [
    ({"max_over": 10}, "'load_threshold' must be a number"),
    ({"load_threshold": 0.75, "max_over": None}, "'max_over' must be a number"),
])
def test_the_policy_must_be_complete(policy, words):
    with pytest.raises(ReplayError, match=words):
        replay(scenario([("a", "h1", 512, [0.1])]), no_moves, policy)


@pytest.mark.parametrize("vms, hosts, words", [
    ([("a", "h9", 512, [0.1])], (("h1", 1, 4096),), "VM 'a': host 'h9' is not a host"),
    ([("a", "h1", 512, [0.1]), ("b", "h1", 512, [0.1, 0.2])], (("h1", 1, 4096),), "VM 'b': 2 demand steps"),
    ([("a", "h1", 512, [-0.1])], (("h1", 1, 4096),), "demand must be finite cores >= 0, got -0.1"),
    ([("a", "h1", 512, [0.1]), ("a", "h1", 512, [0.1])], (("h1", 1, 4096),), "VM 'a' appears twice"),
    ([("a", "h1", 512, [0.1])], (("h1", 1, 4096), ("h1", 2, 4096)), "host 'h1' appears twice"),
    ([("a", "h1", 512, [0.1])], (("h1", 0, 4096),), "host 'h1': cpus must be > 0"),
])
def test_an_inconsistent_scenario_is_refused(vms, hosts, words):
    with pytest.raises(ScenarioError, match=words):
        scenario(vms, hosts=hosts)


def test_initial_memory_overcommit_is_refused():
    with pytest.raises(ReplayError, match="'h1' need more memory than it has \\(1000 MiB short\\)"):
        replay(scenario([("a", "h1", 5096, [0.1])], hosts=(("h1", 1, 4096),)), no_moves, POLICY)


def test_the_product_planner_plans_on_the_engine_cluster_and_its_cooldown_holds():
    """placement.plan itself: h1 (4 CPUs) runs 1.0 at every step, h2 idles; without prediction the
    overload is sustained once the samples span max_over (step 2), with it the domains' level (two
    samples, step 1) already says it lasts; moved domains stay in cooldown for 60 minutes."""
    vms = [(f"v{i}", "h1", 1024, [1.0] * 20) for i in range(4)] + [("w", "h2", 1024, [0.2] * 20)]
    day = scenario(vms, hosts=(("h1", 4, 16384), ("h2", 4, 16384)))
    policy = dict(placement.DEFAULTS, load_threshold=0.75, max_load_candidate=0.6, max_over=10, cooldown=60)
    predicted = replay(day, placement.plan, policy).migrations[0]
    assert predicted.step == 1 and predicted.source == "h1" and "for 5 min, forecast 1.00" in predicted.reason
    result = replay(day, placement.plan, dict(policy, predictive=False))
    first = result.migrations[0]
    assert first.step == 2 and first.source == "h1" and "overloaded" in first.reason
    assert result.host_loads["h1"][3] <= 0.75  # from the next step on
    moved = {m.vm: m.step for m in result.migrations}
    for m in result.migrations:  # no domain moves again within its cooldown (12 steps)
        assert not any(o.vm == m.vm and 0 < o.step - m.step < 12 for o in result.migrations)
    assert result.metrics.ping_pongs == 0 and moved
