# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the plan chooses: fewest moves, lowest peak, least memory, evacuations, budget, no ping-pong."""

import json
import random

from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import (
    NOW, apply_plan, check_plan, domain, host)

MIN = 60


def moves(result):
    return [(m["vm"], m["source"], m["destination"]) for m in result["migrations"]]


def test_one_big_domain_rather_than_several_small_ones():
    # 16 CPUs at 15.5 cores: 3.5 must leave. c (3.5) alone does it; the XO order would also start there.
    cluster = [host("hv1", [domain("a", 6.0), domain("b", 2.5), domain("c", 3.5), domain("d", 1.5),
                            domain("e", 1.0), domain("f", 1.0)], cpus=16),
               host("hv2", cpus=16)]
    result = plan(cluster, {"now": NOW, "exclude": ["a"], "balance": 0, "headroom": False})  # clearing only
    assert moves(result) == [("c", "hv1", "hv2")]
    assert result["hosts"][0]["predicted_load"] == 0.75


def test_when_the_biggest_cannot_go_the_fewest_others_do():
    cluster = [host("hv1", [domain("a", 6.0), domain("b", 2.5), domain("c", 3.5, memory_mb=60000),
                            domain("d", 1.5), domain("e", 1.0), domain("f", 1.0)], cpus=16),
               host("hv2", cpus=16)]
    result = plan(cluster, {"now": NOW, "exclude": ["a"], "headroom": False})  # clearing only
    assert sorted(m[0] for m in moves(result)) == ["b", "d"]
    skipped = {s["vm"]: s["reason"] for s in result["skipped"]}
    assert skipped["a"] == "excluded by policy"
    # the refusal as it happened: c was tried (and refused) before b and d left for hv2
    assert skipped["c"] == "no destination: hv2 memory 32768 MB free < 60000 + reserve 512"


def test_the_last_domain_is_the_one_giving_the_lowest_peak():
    # Either a (3) or b (2.5) brings hv1 under 0.75: b leaves hv1 at 0.60 and hv3 at 0.56,
    # a would leave 0.54 and 0.62 - a higher peak.
    cluster = [host("hv1", [domain("a", 3.0), domain("b", 2.5), domain("c", 1.0), domain("d", 0.8)]),
               host("hv3", [domain("f", 2.0)])]
    result = plan(cluster, {"now": NOW})
    assert moves(result) == [("b", "hv1", "hv3")]
    migration = result["migrations"][0]
    assert (migration["source_load_before"], migration["source_load_after"]) == (0.9125, 0.6)
    assert (migration["destination_load_before"], migration["destination_load_after"]) == (0.25, 0.5625)


def test_equal_cpu_the_smaller_memory_moves():
    cluster = [host("hv1", [domain("big", 2.0, memory_mb=8192), domain("small", 2.0, memory_mb=2048),
                            domain("stay", 3.0)]),
               host("hv2", cpus=16)]
    result = plan(cluster, {"now": NOW, "exclude": ["stay"], "balance": 0, "headroom": False})  # clearing only
    assert moves(result) == [("small", "hv1", "hv2")]


def test_destination_is_the_lowest_predicted_load_then_most_free_memory_then_name():
    def cluster(**free):
        return [host("hv1", [domain("web1", 2.0), domain("stay", 5.0)]),
                host("hv2", [domain("x", 1.0)], cpus=16, memory_free_mb=free.get("hv2", 8192)),
                host("hv3", [domain("y", 1.0)], cpus=16, memory_free_mb=free.get("hv3", 8192)),
                host("hv4", [domain("z", 1.0)], cpus=8, memory_free_mb=65536)]
    policy = {"now": NOW, "exclude": ["stay"]}
    assert moves(plan(cluster(), policy)) == [("web1", "hv1", "hv2")]  # tie on load and memory: name
    assert moves(plan(cluster(hv3=9000), policy)) == [("web1", "hv1", "hv3")]  # tie on load: memory
    assert plan(cluster(), policy)["hosts"][3]["status"] == "ok"  # hv4 (0.125 -> 0.375) never the best fit


def test_maintenance_host_is_emptied_whatever_its_load():
    cluster = [host("hv1", [domain("a", 0.5), domain("b", 0.2), domain("c", 0.1, state="shut off")],
                    maintenance=True),
               host("hv2", [domain("x", 1.0)]), host("hv3", [domain("y", 2.0)])]
    result = plan(cluster, {"now": NOW})
    assert moves(result) == [("a", "hv1", "hv2"), ("b", "hv1", "hv2")]
    assert {m["reason"] for m in result["migrations"]} == {"hv1 in maintenance"}
    hv1 = result["hosts"][0]
    assert (hv1["status"], hv1["maintenance"], hv1["predicted_running"]) == ("maintenance", True, 0)
    assert hv1["reasons"] == ["in maintenance: 2 running domain(s), 2 planned to leave, 0 stay"]
    assert result["measure"]["before"]["on_maintenance_hosts"] == 2
    assert result["measure"]["after"]["on_maintenance_hosts"] == 0


def test_maintenance_from_policy_still_respects_the_constraints():
    cluster = [host("hv1", [domain("a", 0.5), domain("b", 0.2, memory_mb=40000), domain("c", 0.1),
                            domain("d", 0.1, last_migration={"time": NOW - 5 * MIN})]),
               host("hv2", [domain("x", 1.0)])]
    result = plan(cluster, {"now": NOW, "maintenance": ["hv1"], "exclude": ["c"]})
    assert moves(result) == [("a", "hv1", "hv2")]
    skipped = {s["vm"]: s["reason"] for s in result["skipped"]}
    assert skipped["c"] == "excluded by policy"
    assert skipped["d"] == "cooldown: migrated 5 min ago, cooldown 60 min"
    assert "hv2 memory" in skipped["b"]
    assert result["hosts"][0]["reasons"] == ["in maintenance: 4 running domain(s), 1 planned to leave, 3 stay"]


def test_max_migrations_caps_the_plan_and_says_so():
    cluster = [host(f"hv{i}", [domain(f"web{i}", 4.0 + i * 0.1), domain(f"stay{i}", 3.0)]) for i in range(1, 4)]
    cluster += [host("spare1", cpus=16), host("spare2", cpus=16), host("spare3", cpus=16)]
    policy = {"now": NOW, "max_migrations": 2, "exclude": ["stay1", "stay2", "stay3"]}
    result = plan(cluster, policy)
    assert [m[1] for m in moves(result)] == ["hv3", "hv2"]  # the most loaded first
    assert result["max_migrations_reached"] is True
    hv1 = result["hosts"][0]
    assert hv1["status"] == "unresolved"
    assert "max_migrations 2 reached" in hv1["reasons"][-1]
    assert {"vm": "web1", "uuid": "uuid-web1", "host": "hv1", "reason": "max_migrations 2 reached"} in result["skipped"]


def test_max_migrations_zero_plans_nothing():
    cluster = [host("hv1", [domain("a", 7.0)]), host("hv2", cpus=64)]
    result = plan(cluster, {"now": NOW, "max_migrations": 0})
    assert result["migrations"] == [] and result["hosts"][0]["status"] == "unresolved"


def test_hosts_needing_fewer_moves_are_resolved_first_within_the_budget():
    cluster = [host("hv1", [domain(f"a{i}", 1.0) for i in range(8)]),  # needs 2 moves
               host("hv2", [domain("b1", 7.0)], cpus=8, load=0.8),
               host("spare", cpus=64)]
    result = plan(cluster, {"now": NOW, "max_migrations": 1})
    assert moves(result) == [("b1", "hv2", "spare")]


def test_a_host_that_cannot_get_under_sheds_what_it_can():
    cluster = [host("hv1", [domain("a", 3.0), domain("b", 3.0), domain("c", 2.0), domain("d", 1.0)]),
               host("hv2", [domain("x", 2.5)])]
    result = plan(cluster, {"now": NOW})
    # hv2 has room for 2.7 cores under max_load_candidate: only c fits, and then not even d.
    assert moves(result) == [("c", "hv1", "hv2")]
    hv1 = result["hosts"][0]
    assert (hv1["status"], hv1["predicted_load"]) == ("unresolved", 0.875)
    assert hv1["reasons"][-1] == ("predicted load 0.88 still > threshold 0.75 after moving c:"
                                  " no further valid move (see skipped)")
    assert {s["vm"] for s in result["skipped"]} == {"a", "b", "d"}
    assert result["measure"]["after"]["load_above_threshold"] < result["measure"]["before"]["load_above_threshold"]


def test_only_running_domains_count_and_move():
    cluster = [host("hv1", [domain("off", 6.0, state="shut off"), domain("paused", 1.0, state="paused"),
                            domain("web1", 2.0)], load=0.9),
               host("hv2")]
    result = plan(cluster, {"now": NOW})
    assert result["hosts"][0]["load"] == 0.25
    assert result["migrations"] == []


def test_domain_using_no_cpu_is_not_moved_for_load():
    cluster = [host("hv1", [domain("idle", 0.0), domain("busy", 7.0)]), host("hv2", cpus=4)]
    result = plan(cluster, {"now": NOW})
    assert result["migrations"] == []
    assert {s["vm"]: s["reason"] for s in result["skipped"]}["idle"].startswith("uses no CPU")


def test_no_ping_pong_replanning_the_predicted_result_moves_nothing():
    cluster = [host("hv1", [domain("a", 3.0), domain("b", 2.5), domain("c", 1.0)]),
               host("hv2", [domain("d", 3.0), domain("e", 3.0), domain("f", 1.5)]),
               host("hv3", [domain("g", 1.0)], cpus=16),
               host("hv4", [domain("h", 0.5)], maintenance=True)]
    for cooldown in (60, 0):
        policy = {"now": NOW, "cooldown": cooldown}
        result = plan(cluster, policy)
        assert len(result["migrations"]) == 3
        check_plan(cluster, policy, result)
        again = plan(apply_plan(cluster, result), policy)
        assert again["migrations"] == []
        assert [h["predicted_load"] for h in again["hosts"]] == [h["predicted_load"] for h in result["hosts"]]


def test_a_domain_in_cooldown_stays_even_if_it_is_the_best_candidate():
    cluster = [host("hv1", [domain("a", 4.0, last_migration={"time": NOW - 30 * MIN}), domain("b", 3.0)]),
               host("hv2", cpus=16)]
    result = plan(cluster, {"now": NOW})
    assert moves(result) == [("b", "hv1", "hv2")]
    assert {s["vm"]: s["reason"] for s in result["skipped"]} == {
        "a": "cooldown: migrated 30 min ago, cooldown 60 min"}


def test_same_input_in_any_order_gives_the_same_plan():
    cluster = [host(f"hv{i}", [domain(f"vm{i}-{j}", 0.5 + ((i * 7 + j * 3) % 10) / 4, memory_mb=512 * (1 + j % 3))
                               for j in range(i % 5 + 1)], cpus=8)
               for i in range(12)]
    policy = {"now": NOW, "max_migrations": 20, "anti_affinity": [["vm4-0", "vm9-1"]], "maintenance": ["hv3"]}
    expected = json.dumps(plan(cluster, policy), sort_keys=True)
    shuffler = random.Random(7)
    for attempt in range(5):
        shuffled = [dict(h, domains=shuffler.sample(h["domains"], len(h["domains"]))) for h in cluster]
        shuffler.shuffle(shuffled)
        assert json.dumps(plan(shuffled, policy), sort_keys=True) == expected


def test_every_decision_is_explained_in_the_output():
    cluster = [host("hv1", [domain("a", 4.0), domain("b", 3.0)]),
               host("hv2", [domain("c", 4.0)], over_for=5),
               host("hv3", [domain("d", 1.0)])]
    result = plan(cluster, {"now": NOW})
    by_name = {h["name"]: h for h in result["hosts"]}
    assert by_name["hv1"]["reasons"] == [
        "load 0.88 > threshold 0.75; samples over threshold 0.75 for 30 min (>= max_over 10 min)",
        "plan moves b: predicted load 0.50 <= threshold 0.75"]
    assert by_name["hv2"]["status"] == "ok"
    assert by_name["hv3"]["reasons"] == ["load 0.12 <= threshold 0.75", "receives b: predicted load 0.50"]
    assert result["measure"]["after"]["load_above_threshold"] == 0.0
    assert result["measure"]["before"]["peak_load"] == 0.875
