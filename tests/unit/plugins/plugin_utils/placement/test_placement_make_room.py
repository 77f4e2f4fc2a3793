# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make-room chains: a domain leaves a calm host so that a bigger one fits there.

The pool used throughout (defaults: threshold 0.75, max_load_candidate 0.65):
hv1 (8 CPUs) runs big (3.0), four smalls (0.5 each) and x (excluded). big fits nowhere as it is:
hv2 (8 CPUs, r 1.5 + y 1.0) would reach 0.69, hv3 (4 CPUs, empty) 0.75. Once r moves to hv3,
big fits on hv2.
"""

from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import (
    NOW, apply_plan, check_plan, domain, host)

SMALLS = [domain(f"s{i}", 0.5) for i in range(1, 5)]


def pool(excluded_cpu, hv1_maintenance=False):
    hv1 = host("hv1", [domain("big", 3.0), *SMALLS, domain("x", excluded_cpu)], maintenance=hv1_maintenance)
    return [hv1, host("hv2", [domain("r", 1.5), domain("y", 1.0)]), host("hv3", cpus=4)]


def moves(result):
    return [(m["vm"], m["source"], m["destination"], *m["requires"]) for m in result["migrations"]]


def test_making_room_for_one_big_domain_beats_moving_four_small_ones():
    # hv1 at 7.6/8 = 0.95 must shed 1.6 cores: big (with r making room) in 2 moves, or all 4 smalls.
    cluster, policy = pool(2.6), {"now": NOW, "exclude": ["x"]}
    result = plan(cluster, policy)
    assert moves(result) == [("r", "hv2", "hv3"), ("big", "hv1", "hv2", "r")]
    assert result["migrations"][0]["reason"] == "makes room on hv2 for big: hv1 overloaded 0.95 > 0.75 for 30 min"
    assert result["hosts"][0]["status"] == "overloaded" and result["hosts"][0]["predicted_load"] == 0.575
    check_plan(cluster, policy, result)  # the oracle also checks big was refused on hv2 before r left


def test_the_room_is_the_domain_giving_the_lowest_peak():
    # y could make room too, but leaves hv2 at 0.5625 against 0.5 when r goes.
    result = plan(pool(2.6), {"now": NOW, "exclude": ["x"]})
    assert result["migrations"][0]["vm"] == "r"
    with_r_kept = plan(pool(2.6), {"now": NOW, "exclude": ["x", "r"]})
    assert moves(with_r_kept) == [("y", "hv2", "hv3"), ("big", "hv1", "hv2", "y")]


def test_no_chain_when_direct_moves_are_as_few():
    # hv1 at 7.0/8 must shed 1.0: two smalls do it, as many moves as a chain; the greedy engine
    # keeps to direct moves then.
    result = plan(pool(2.0), {"now": NOW, "exclude": ["x"], "engine": "greedy", "headroom": False})
    assert [m["vm"] for m in result["migrations"]] == ["s1", "s2"]
    assert all(m["requires"] == [] for m in result["migrations"])


def test_the_exact_engine_takes_the_chain_when_it_gives_a_lower_peak_for_as_many_moves():
    # Same 2 migrations; the chain leaves the peak at 0.5 (hv1 and hv2), the smalls at 0.75 (hv1).
    cluster, policy = pool(2.0), {"now": NOW, "exclude": ["x"]}
    result = plan(cluster, policy)
    assert (result["engine"], result["optimal"]) == ("exact", True)
    assert moves(result) == [("r", "hv2", "hv3"), ("big", "hv1", "hv2", "r")]
    assert result["measure"]["after"]["peak_load"] == 0.5
    check_plan(cluster, policy, result)


def test_no_room_is_made_with_domains_that_may_not_move():
    for blocked in ({"exclude": ["x", "r", "y"]},
                    {"exclude": ["x"], "cooldown": 60, "_recent": ["r", "y"]}):
        cluster = pool(2.6)
        for entry in cluster[1]["domains"]:
            if entry["name"] in blocked.get("_recent", ()):
                entry["last_migration"] = {"time": NOW - 5 * 60, "source": "hv3", "destination": "hv2"}
        policy = {k: v for k, v in blocked.items() if not k.startswith("_")} | {"now": NOW}
        result = plan(cluster, policy)
        assert sorted(m["vm"] for m in result["migrations"]) == ["s1", "s2", "s3", "s4"], blocked


def test_room_made_for_anti_affinity():
    # hv2 has the CPU for big, but r is big's anti-affine partner: r goes to hv3 first.
    cluster = [host("hv1", [domain("big", 3.0), *SMALLS, domain("x", 2.6)]),
               host("hv2", [domain("r", 0.5)]), host("hv3", cpus=4)]
    policy = {"now": NOW, "exclude": ["x"], "anti_affinity": [["big", "r"]]}
    result = plan(cluster, policy)
    assert moves(result) == [("r", "hv2", "hv3"), ("big", "hv1", "hv2", "r")]
    check_plan(cluster, policy, result)


def test_a_maintenance_host_is_emptied_through_a_chain():
    cluster, policy = pool(0.0, hv1_maintenance=True), {"now": NOW, "max_migrations": 10}
    result = plan(cluster, policy)
    assert ("r", "hv2", "hv3") in moves(result) and ("big", "hv1", "hv2", "r") in moves(result)
    assert result["hosts"][0]["predicted_running"] == 0
    check_plan(cluster, policy, result)


def test_a_chain_the_budget_cannot_pay_for_is_reported_as_cut_short():
    # One migration left, a chain needs two: nothing moves, and the plan says the budget stopped it.
    cluster = [host("hv1", [domain("big", 3.0)], maintenance=True)] + pool(0.0)[1:]
    result = plan(cluster, {"now": NOW, "max_migrations": 1})
    assert result["migrations"] == []
    assert result["max_migrations_reached"] is True
    assert result["skipped"] == [{"vm": "big", "uuid": "uuid-big", "host": "hv1",
                                  "reason": "needs room made for it first (2 migrations) but max_migrations 1 leaves 1"}]


def test_replanning_after_a_chain_moves_nothing():
    cluster, policy = pool(2.6), {"now": NOW, "exclude": ["x"]}
    result = plan(cluster, policy)
    assert plan(apply_plan(cluster, result), policy)["migrations"] == []
