# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DRS behaviours below overload: should rules, memory shedding, balancing, rule selections.

Every plan here also goes through the independent oracle (check_plan), and re-planning its predicted
result moves nothing.
"""

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import PlacementError, plan
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import (
    NOW, apply_plan, check_plan, domain, host, samples)

MIN = 60


def moves(result):
    return [(m["vm"], m["source"], m["destination"]) for m in result["migrations"]]


def planned(cluster, policy):
    result = plan(cluster, policy)
    check_plan(cluster, policy, result)
    if not result["max_migrations_reached"]:
        assert plan(apply_plan(cluster, result), policy)["migrations"] == []
    return result


# ---------------------------------------------------------------- should rules

def should_pool(hv3_load=1.0):
    """hv1 is hot and can only shed db1; hv2 (calmest) runs db2; hv3 is a little busier (5.0: too busy
    for db1 or db2)."""
    return [host("hv1", [domain("db1", 4.0), domain("stay", 3.0)]),
            host("hv2", [domain("db2", 0.5)]),
            host("hv3", [domain("x", hv3_load)])]


def should_policy(strength="should", **extra):
    return {"now": NOW, "exclude": ["stay"], "balance": 0,
            "anti_affinity": [{"members": ["db1", "db2"], "strength": strength}], **extra}


def test_a_should_group_is_kept_when_another_host_fits():
    result = planned(should_pool(), should_policy())
    assert moves(result) == [("db1", "hv1", "hv3")]  # hv2 is calmer, but db2 runs there
    assert result["soft_rule_breaks"] == []
    assert result["measure"]["after"]["soft_rule_breaks"] == 0


def test_a_should_group_is_broken_only_when_nothing_else_fits_and_the_break_is_reported():
    # hv3 would go over max_load_candidate; db2 is pinned to hv2, so the break cannot be repaired either
    result = planned(should_pool(hv3_load=5.0), should_policy(pin={"db2": ["hv2"]}))
    assert moves(result) == [("db1", "hv1", "hv2")]
    reason = result["migrations"][0]["reason"]
    assert reason.startswith("hv1 overloaded 0.88 > 0.75 for 30 min; breaks a should rule, no allowed host keeps it:")
    assert "hv2 should-anti-affinity group [db1, db2]: db2 runs there" in reason
    assert {b["vm"] for b in result["soft_rule_breaks"]} == {"db1", "db2"}
    assert result["measure"]["after"]["soft_rule_breaks"] == 2


def test_a_must_group_is_never_broken_for_an_overload():
    result = planned(should_pool(hv3_load=5.0), should_policy("must"))
    assert moves(result) == []
    assert result["hosts"][0]["status"] == "unresolved"


def test_a_should_pin_is_preferred_and_broken_only_when_nothing_else_fits():
    pool = [host("hv1", [domain("web1", 4.0), domain("stay", 3.0)]), host("hv2"), host("hv3", [domain("x", 1.0)])]
    policy = {"now": NOW, "exclude": ["stay"], "balance": 0,
              "pin": {"web1": {"hosts": ["hv1", "hv3"], "strength": "should"}}}
    assert moves(planned(pool, policy)) == [("web1", "hv1", "hv3")]
    pool[2]["domains"] = [domain("x", 4.0)]
    result = planned(pool, policy)
    assert moves(result) == [("web1", "hv1", "hv2")]
    assert "hv2 not in should-pin [hv1, hv3]" in result["migrations"][0]["reason"]


def test_should_breaks_are_repaired_with_one_migration_each_least_memory_first():
    pool = [host("hv1", [domain("a1", 0.5, memory_mb=2048), domain("a2", 0.5, memory_mb=4096),
                         domain("b1", 0.5, memory_mb=1024), domain("b2", 0.5, memory_mb=8192)]),
            host("hv2"), host("hv3")]
    policy = {"now": NOW, "balance": 0, "anti_affinity": [{"members": ["a1", "a2"], "strength": "should"},
                                                          {"members": ["b1", "b2"], "strength": "should"}]}
    result = planned(pool, policy)
    assert moves(result) == [("b1", "hv1", "hv2"), ("a1", "hv1", "hv3")]
    assert result["migrations"][0]["reason"] == "should rule: b1 on hv1 with b2, should-anti-affinity group [b1, b2]"
    assert result["measure"]["before"]["soft_rule_breaks"] == 4
    assert result["measure"]["after"]["soft_rule_breaks"] == 0


def test_a_should_break_that_needs_room_made_stays_and_is_listed():
    pool = [host("hv1", [domain("a1", 0.5), domain("a2", 0.5)]), host("hv2", [domain("full", 5.0)], cpus=8)]
    policy = {"now": NOW, "balance": 0, "anti_affinity": [{"members": ["a1", "a2"], "strength": "should"}]}
    result = planned(pool, policy)  # hv2 would reach 0.69 > max_load_candidate 0.65 with either
    assert moves(result) == []
    assert [(b["vm"], b["host"]) for b in result["soft_rule_breaks"]] == [("a1", "hv1"), ("a2", "hv1")]
    # why each stays, as the repair found it: no host the hard rules allow (hv2 is too busy for either)
    assert [b["unrepaired"] for b in result["soft_rule_breaks"]] == [
        "no destination: hv2 load 0.62 + 0.06 = 0.69 > max_load_candidate 0.65"] * 2


def test_a_should_break_that_only_a_should_rule_keeps_in_place_says_so():
    # a1 and a2 should stay apart, and both should stay on hv1: hv2 would take either, but breaks its pin
    pool = [host("hv1", [domain("a1", 0.5), domain("a2", 0.5, memory_mb=4096)]), host("hv2")]
    policy = {"now": NOW, "balance": 0, "anti_affinity": [{"members": ["a1", "a2"], "strength": "should"}],
              "pin": {name: {"hosts": ["hv1"], "strength": "should"} for name in ("a1", "a2")}}
    result = planned(pool, policy)
    assert moves(result) == []
    assert [(b["vm"], b["unrepaired"]) for b in result["soft_rule_breaks"]] == [
        ("a1", "no host keeps every rule: hv2 not in should-pin [hv1]"),
        ("a2", "no host keeps every rule: hv2 not in should-pin [hv1]")]


def test_a_should_break_left_for_a_cooldown_or_lack_of_budget_says_so():
    moved = {"time": NOW - 10 * MIN, "source": "hv3", "destination": "hv1"}
    pool = [host("hv1", [domain("a1", 0.5), domain("a2", 0.5, memory_mb=4096),
                         domain("b1", 0.5, last_migration=moved), domain("b2", 0.5, memory_mb=4096, last_migration=moved),
                         domain("c1", 0.5, memory_mb=2048), domain("c2", 0.5, memory_mb=4096)]),
            host("hv2"), host("hv3")]
    policy = {"now": NOW, "balance": 0, "max_migrations": 1,
              "anti_affinity": [{"members": [p + "1", p + "2"], "strength": "should"} for p in "abc"]}
    result = planned(pool, policy)
    assert moves(result) == [("a1", "hv1", "hv2")]
    cooldown, budget = "cooldown: migrated 10 min ago, cooldown 60 min", "max_migrations 1 reached before its repair"
    assert {b["vm"]: b["unrepaired"] for b in result["soft_rule_breaks"]} == {
        "b1": cooldown, "b2": cooldown, "c1": budget, "c2": budget}


# ---------------------------------------------------------------- memory

def memory_pool(over_for=30):
    """hv1's domains use 40 of its 64 GiB (0.625) and have for `over_for` minutes; hv2 and hv3 are empty."""
    domains = [domain("big", 0.5, memory_mb=24576), domain("mid", 0.5, memory_mb=12288),
               domain("small", 0.5, memory_mb=4096)]
    hv1 = host("hv1", domains, memory_free_mb=20000)
    hv1["samples"] = [[t, load, 40960 / 65536] for t, load in samples(1.5 / 8, over_for)]
    return [hv1, host("hv2", memory_free_mb=60000), host("hv3", memory_free_mb=60000)]


def test_a_host_over_memory_threshold_for_max_over_sheds_the_most_memory_first():
    result = planned(memory_pool(), {"now": NOW, "balance": 0, "memory_threshold": 0.5})
    assert moves(result) == [("big", "hv1", "hv2")]
    assert result["migrations"][0]["reason"] == "hv1 memory 0.62 > memory_threshold 0.5 for 30 min"
    hv1 = result["hosts"][0]
    assert hv1["memory_overloaded"] is True and hv1["memory_load"] == 0.625 and hv1["predicted_memory_load"] == 0.25
    assert result["measure"]["before"]["memory_overloaded_hosts"] == 1
    assert result["measure"]["after"]["memory_overloaded_hosts"] == 0


def test_memory_overload_that_is_not_sustained_moves_nothing():
    result = planned(memory_pool(over_for=5), {"now": NOW, "balance": 0, "memory_threshold": 0.5})
    assert moves(result) == []
    assert result["hosts"][0]["memory_overloaded"] is False


def test_memory_destinations_stay_under_max_memory_candidate():
    pool = memory_pool()
    pool[1]["domains"] = [domain("resident", 0.1, memory_mb=16384)]  # hv2 at 0.25: big would take it to 0.625
    result = planned(pool, {"now": NOW, "balance": 0, "memory_threshold": 0.5, "max_memory_candidate": 0.45})
    assert moves(result) == [("big", "hv1", "hv3")]


def test_without_memory_threshold_memory_is_only_a_fit_rule():
    result = planned(memory_pool(), {"now": NOW, "balance": 0})
    assert moves(result) == []
    assert result["measure"]["before"]["memory_overloaded_hosts"] == 0


# ---------------------------------------------------------------- balancing

def balance_pool(hv1_samples=None):
    """hv1 at 0.6 (not overloaded), hv2 and hv3 at 0.1: spread 0.24 for 30 minutes."""
    hv1 = host("hv1", [domain("web1", 1.6), domain("web2", 1.6), domain("web3", 1.6)])
    if hv1_samples is not None:
        hv1["samples"] = hv1_samples
    return [hv1, host("hv2", [domain("a", 0.8)]), host("hv3", [domain("b", 0.8)])]


LEVEL_2 = {"now": NOW, "balance": 2}  # the level these cases were built for (the default is 3, target 0.10)


def test_balancing_moves_one_domain_off_a_busier_host_and_says_why():
    result = planned(balance_pool(), LEVEL_2)
    assert moves(result) == [("web1", "hv1", "hv2")]
    assert result["migrations"][0]["reason"] == "imbalance 0.24 > target 0.15 for 15 min; move gains 0.20"
    assert result["balance"]["held"] is True
    assert result["balance"]["imbalance_before"] == 0.2357
    assert result["balance"]["imbalance_after"] == 0.1247  # under the target 0.15: one move is enough
    assert result["measure"]["after"]["overloaded_hosts"] == 0


@pytest.mark.parametrize("policy, why", [
    ({"balance": 0}, None),
    ({"balance": 1}, "min_gain"),  # the move gains 0.20, level 1 asks 0.10 + cost: it moves; see below
])
def test_balance_levels(policy, why):
    result = planned(balance_pool(), {"now": NOW, **policy})
    if policy["balance"] == 0:
        assert moves(result) == [] and result["balance"] is None
    else:  # spread 0.24 > level 1's target 0.20
        assert moves(result) == [("web1", "hv1", "hv2")] and result["balance"]["min_gain"] == 0.10


def test_balancing_waits_for_the_hold():
    # hv1 was at 0.1 until 10 minutes ago: the spread has not stayed above the target for 15 minutes
    history = samples(0.1, 30)[:-3] + samples(0.6, 10)
    result = planned(balance_pool(history), LEVEL_2)
    assert moves(result) == []
    assert result["balance"]["held"] is False
    assert result["balance"]["reason"].startswith("imbalance 0.00 <= target 0.15 15 min ago")


def test_a_move_that_gains_too_little_for_its_memory_is_not_made():
    pool = balance_pool()
    for entry in pool[0]["domains"]:
        entry["memory_mb"] = 30 * 1024  # 0.15 of cost: 0.20 gain < 0.08 + 0.15
    pool[0]["memory_free_mb"] = pool[1]["memory_free_mb"] = pool[2]["memory_free_mb"] = 40000
    assert moves(planned(pool, LEVEL_2)) == []


def test_balancing_moves_steady_demand_not_a_spike_that_is_over():
    pool = balance_pool()
    spike = pool[0]["domains"][0]
    spike["samples"] = [[t, 0.1] for t, _load in samples(0, 30)[:-1]] + [[NOW, 1.6]]
    pool[0]["domains"][1]["samples"] = [[t, 1.6] for t, _load in samples(0, 30)]
    result = planned(pool, LEVEL_2)
    assert moves(result) == [("web2", "hv1", "hv2")]


def test_balancing_leaves_a_domain_that_moved_lately_to_settle():
    pool = balance_pool()
    pool[0]["domains"][0]["last_migration"] = {"time": NOW - 90 * MIN, "source": "hv3", "destination": "hv1"}
    result = planned(pool, LEVEL_2)
    assert moves(result) == [("web2", "hv1", "hv2")]  # web1 would be first (by name) but moved 90 min ago


def test_balancing_never_creates_an_overload_or_breaks_a_rule():
    pool = balance_pool()
    policy = {"now": NOW, "balance": 5, "max_migrations": 100, "anti_affinity": [["web1", "a"]],
              "pin": {"web2": ["hv1"]}}
    result = planned(pool, policy)
    assert all(h["predicted_load"] <= 0.65 for h in result["hosts"][1:])
    assert ("web1", "hv1", "hv2") not in moves(result) and all(m[0] != "web2" for m in moves(result))


# ---------------------------------------------------------------- rule selections

def test_a_selection_that_selects_nothing_is_a_warning():
    result = plan(balance_pool(), {"now": NOW, "anti_affinity": [{"select": "[?contains(tags, 'db')].name"}]})
    assert result["warnings"] == ["anti_affinity[0].select \"[?contains(tags, 'db')].name\" selects no domain"]


def test_a_selection_must_return_names():
    with pytest.raises(PlacementError) as error:
        plan(balance_pool(), {"now": NOW, "exclude": [{"select": "[].memory_mb"}]})
    assert "'exclude.select' '[].memory_mb' must select a list of domain names, got [1024, 1024" in str(error.value)


def test_selections_are_resolved_at_each_run_from_the_domains_facts():
    pool = balance_pool()
    pool[0]["domains"][0]["tags"] = ["pci"]
    policy = {"now": NOW, "affinity_hosts": [{"select": "[?contains(tags, 'pci')].name", "hosts": ["hv1"]}]}
    result = planned(pool, policy)
    assert all(m[0] != "web1" for m in moves(result)) and moves(result)
    assert result["policy"]["affinity_hosts"] == [{"select": "[?contains(tags, 'pci')].name", "hosts": ["hv1"],
                                                   "strength": "must"}]


# ---------------------------------------------------------------- destinations

def spiky_pool():
    """hv1 is hot (sustained 0.875) and sheds big (3.0 cores); stay may not move. hv2 runs spiky, at 0.5
    cores now but at 2.0 every fourth sample of the last hour; hv3 runs steady at 1.0 cores."""
    spiky = [[t, 2.0 if i % 4 == 1 else 0.5] for i, (t, _load) in enumerate(samples(0, 60))]
    return [host("hv1", [domain("big", 3.0), domain("stay", 4.0)]),
            host("hv2", [domain("spiky", 0.5, samples=spiky)]),
            host("hv3", [domain("steady", 1.0, samples=samples(1.0, 60))])]


def test_a_domain_goes_where_the_busy_demand_stays_lowest_not_only_the_load_now():
    # load after: hv2 (0.5 + 3.0) / 8 = 0.44, hv3 (1.0 + 3.0) / 8 = 0.50; busy load after (the 90th
    # percentile of each domain's samples and its use now): hv2 (2.0 + 3.0) / 8 = 0.625, hv3 0.50
    result = planned(spiky_pool(), {"now": NOW, "balance": 0, "exclude": ["stay"]})
    assert moves(result) == [("big", "hv1", "hv3")]


def test_without_history_the_calmest_destination_wins():
    pool = spiky_pool()
    del pool[1]["domains"][0]["samples"]
    assert moves(planned(pool, {"now": NOW, "balance": 0, "exclude": ["stay"]})) == [("big", "hv1", "hv2")]


def bursty_pool():
    """hv1 is hot (sustained 0.875) and sheds big (3.0 cores); stay may not move. hv2 runs bursty, at 0.5
    cores now but at 4.0 every fourth sample of the last hour (busy demand 4.0: hv2's busy load 0.50);
    hv3 runs steady at 2.5 cores (load 0.31)."""
    bursts = [[t, 4.0 if i % 4 == 1 else 0.5] for i, (t, _load) in enumerate(samples(0, 60))]
    return [host("hv1", [domain("big", 3.0), domain("stay", 4.0)]),
            host("hv2", [domain("bursty", 0.5, samples=bursts)]),
            host("hv3", [domain("steady", 2.5)])]


def test_no_destination_may_end_with_a_busy_load_past_the_threshold_s_mirror_of_max_load_candidate():
    # big onto hv2: load 0.44 fits, but busy load (4.0 + 3.0) / 8 = 0.88 > 2 x 0.75 - 0.65 = 0.85;
    # onto hv3: load 0.69 > 0.65. Nothing else may move: big stays, and the plan says why.
    policy = {"now": NOW, "balance": 0, "exclude": ["stay", "bursty", "steady"]}
    result = planned(bursty_pool(), policy)
    assert moves(result) == []
    assert result["skipped"][0] == {
        "vm": "big", "uuid": "uuid-big", "host": "hv1",
        "reason": "no destination: hv2 busy load 0.50 + 0.38 = 0.88 > 2 x load_threshold - max_load_candidate"
                  " = 0.85; hv3 load 0.31 + 0.38 = 0.69 > max_load_candidate 0.65"}


def test_room_is_made_on_a_host_whose_busy_load_refuses_a_domain():
    # bursty leaves hv2 for hv3 (load 0.38, busy load (2.5 + 4.0) / 8 = 0.81), then big fits hv2
    result = planned(bursty_pool(), {"now": NOW, "balance": 0, "exclude": ["stay"]})
    assert moves(result) == [("bursty", "hv2", "hv3"), ("big", "hv1", "hv2")]
    assert result["migrations"][1]["requires"] == ["bursty"]


@pytest.mark.parametrize("engine", ["greedy", "auto"])
def test_the_busy_line_does_not_hold_a_domain_on_a_maintenance_host(engine):
    # burst: 1 core now, 7 every fourth sample (busy demand 7.0): an empty 8-CPU host would end at a busy
    # load of 0.88 > 0.85, but emptying a maintenance host ranks above any load in the measure
    bursts = [[t, 7.0 if i % 4 == 1 else 1.0] for i, (t, _load) in enumerate(samples(0, 60))]
    pool = [host("hv1", [domain("burst", 1.0, samples=bursts)]), host("hv2", [])]
    result = planned(pool, {"now": NOW, "balance": 0, "maintenance": ["hv1"], "engine": engine})
    assert moves(result) == [("burst", "hv1", "hv2")]


def test_the_busy_line_does_not_hold_a_domain_breaking_a_must_pin():
    bursts = [[t, 7.0 if i % 4 == 1 else 1.0] for i, (t, _load) in enumerate(samples(0, 60))]
    pool = [host("hv1", [domain("burst", 1.0, samples=bursts)]), host("hv2", [])]
    result = planned(pool, {"now": NOW, "balance": 0, "pin": {"burst": ["hv2"]}})
    assert moves(result) == [("burst", "hv1", "hv2")]


# ---------------------------------------------------------------- prediction

def series(*values, interval=5):
    """[t, cores] samples, one every `interval` minutes, the last one now."""
    return [[NOW - (len(values) - 1 - i) * interval * MIN, value] for i, value in enumerate(values)]


FORECAST = "its domains' mean use over 30 min"  # the level's window: 3 x max_over (10 min)


def dipping_pool():
    """hv1 at 0.50 now, but web1 uses 1.0 core now after 3.0 in the five samples before: its level (the
    mean of its six samples of the last 30 min) is 16 / 6 = 2.67 cores; steady has run at 3.0 all along.
    hv1's forecast is (2.67 + 3.0) / 8 = 0.71 > max_load_candidate 0.65. hv2 (1.0) and hv3 (2.4) calm."""
    hv1 = host("hv1", [domain("web1", 1.0, samples=series(3.0, 3.0, 3.0, 3.0, 3.0, 1.0)),
                       domain("steady", 3.0, samples=series(*[3.0] * 6))])
    return [hv1, host("hv2", [domain("a", 1.0)]), host("hv3", [domain("b", 2.4)])]


def test_a_host_whose_domains_level_is_over_max_load_candidate_sheds_before_the_next_burst():
    result = planned(dipping_pool(), {"now": NOW, "balance": 0})
    # the highest forecast demand leaves first: steady (3.0) frees more than web1 (2.67)
    assert moves(result) == [("steady", "hv1", "hv2")]
    assert result["migrations"][0]["reason"] == f"hv1 forecast 0.71 > max_load_candidate 0.65 ({FORECAST})"
    assert result["measure"]["before"]["forecast_above_candidate"] == 0.0583
    assert result["measure"]["after"]["forecast_above_candidate"] == 0
    assert result["hosts"][0]["status"] == "ok"


def test_without_prediction_nothing_moves():
    assert moves(planned(dipping_pool(), {"now": NOW, "balance": 0, "predictive": False})) == []


def test_a_host_sheds_for_its_forecast_only_when_its_domains_have_a_level():
    def pool(web1_history, db1_history):
        """hv1 at 0.70 (over max_load_candidate 0.65, under the threshold); web1 and db1 steady for the
        given number of samples."""
        return [host("hv1", [domain("web1", 3.0, samples=series(*[3.0] * web1_history)),
                             domain("db1", 2.6, samples=series(*[2.6] * db1_history))]),
                host("hv2", [domain("a", 1.0)]), host("hv3", [domain("b", 2.4)])]

    # only the sample now: no level, so the forecast is the load now and proves nothing; hv1 stays
    assert moves(planned(pool(1, 1), {"now": NOW, "balance": 0})) == []
    # db1 has a level, but its 2.6 cores are less than half of hv1's 5.6: still the load now, mostly
    assert moves(planned(pool(1, 2), {"now": NOW, "balance": 0})) == []
    # two samples each give a level: (3.0 + 2.6) / 8 = 0.70 > 0.65, web1 leaves
    assert moves(planned(pool(2, 2), {"now": NOW, "balance": 0})) == [("web1", "hv1", "hv2")]


def test_a_burst_whose_level_stays_low_waits_for_max_over():
    """hv1 went over the threshold in the last 5 minutes (0.80 now, 0.55 before): web1 burst from 0.4 to
    2.4 cores, its level is 4.4 / 6 = 0.73; hv1's forecast (0.73 + 4.0) / 8 = 0.59 is under
    max_load_candidate: the burst is expected to pass, and nothing moves until the overload lasts."""
    hv1 = host("hv1", [domain("web1", 2.4, samples=series(0.4, 0.4, 0.4, 0.4, 0.4, 2.4)),
                       domain("steady", 4.0, samples=series(*[4.0] * 6))],
               samples=series(0.55, 0.55, 0.55, 0.55, 0.55, 0.80))
    result = planned([hv1, host("hv2", [domain("a", 1.0)]), host("hv3", [domain("b", 1.6)])],
                     {"now": NOW, "balance": 0})
    assert moves(result) == []
    assert result["hosts"][0]["overloaded"] is False


def test_an_overload_whose_level_is_over_the_threshold_is_acted_on_at_once():
    """As above, but web1 has used 2.4 cores all along: hv1's forecast (2.4 + 4.0) / 8 = 0.80 says the
    overload will still be there when max_over has passed."""
    hv1 = host("hv1", [domain("web1", 2.4, samples=series(*[2.4] * 6)),
                       domain("steady", 4.0, samples=series(*[4.0] * 6))],
               samples=series(0.55, 0.55, 0.55, 0.55, 0.55, 0.80))
    result = planned([hv1, host("hv2", [domain("a", 1.0)]), host("hv3", [domain("b", 1.6)])],
                     {"now": NOW, "balance": 0})
    assert result["hosts"][0]["overloaded"] is True
    assert result["migrations"][0]["reason"] == f"hv1 overloaded 0.80 > 0.75 for 0 min, forecast 0.80 ({FORECAST})"
    assert result["hosts"][0]["predicted_load"] <= 0.65


def test_no_destination_may_end_with_a_forecast_over_max_load_candidate():
    pool = dipping_pool()
    # steady (3.0) leaves hv1 (forecast 0.71 > 0.55). hv2 has the lower busy load after it ((1.6 + 3.0) / 8
    # = 0.575 against hv3's (3.0 + 3.0) / 8 = 0.75, b's one burst), but a's level is 9 / 6 = 1.5 cores:
    # hv2's forecast would end at (1.5 + 3.0) / 8 = 0.5625 > 0.55; hv3's at (8 / 6 + 3.0) / 8 = 0.54
    pool[1]["domains"] = [domain("a", 1.0, samples=series(1.6, 1.6, 1.6, 1.6, 1.6, 1.0))]
    pool[2]["domains"] = [domain("b", 1.0, samples=series(1.0, 1.0, 1.0, 1.0, 3.0, 1.0))]
    result = planned(pool, {"now": NOW, "balance": 0, "max_load_candidate": 0.55})
    assert moves(result) == [("steady", "hv1", "hv3")]


def test_of_two_destinations_as_busy_the_one_whose_level_is_lower_takes_the_domain():
    pool = dipping_pool()
    # steady (3.0) leaves hv1. a and b both use 1.0 now and 1.6 at their busiest (busy loads after the
    # move tie at (1.6 + 3.0) / 8 = 0.575, loads at 0.5), but a has run at 1.6 most of the last 30 min
    # (level 1.5: forecast after 0.5625), b only once (level 1.1: 0.5125): hv3, though hv2 comes first by name
    pool[1]["domains"] = [domain("a", 1.0, samples=series(1.6, 1.6, 1.6, 1.6, 1.6, 1.0))]
    pool[2]["domains"] = [domain("b", 1.0, samples=series(1.0, 1.0, 1.0, 1.0, 1.6, 1.0))]
    assert moves(planned(pool, {"now": NOW, "balance": 0})) == [("steady", "hv1", "hv3")]


def test_a_forecast_move_never_sends_a_domain_back_where_it_left_within_two_hours():
    pool = dipping_pool()
    pool[0]["domains"][1]["last_migration"] = {"time": NOW - 90 * MIN, "source": "hv2", "destination": "hv1"}
    # steady may not go back to hv2 and does not fit hv3 ((2.4 + 3.0) / 8 = 0.675 > 0.65): web1 goes instead
    assert moves(planned(pool, {"now": NOW, "balance": 0})) == [("web1", "hv1", "hv2")]


def test_a_load_next_to_a_limit_is_printed_with_the_limit_s_precision():
    result = planned(memory_pool(), {"now": NOW, "balance": 0, "memory_threshold": 0.6249})
    assert result["migrations"][0]["reason"] == "hv1 memory 0.6250 > memory_threshold 0.6249 for 30 min"
