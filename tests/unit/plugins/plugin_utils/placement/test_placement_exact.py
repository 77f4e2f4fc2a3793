# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exact engine: where it beats the greedy one, its requires lists, its fallbacks and reports."""

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import exact, plan
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import (
    NOW, apply_plan, check_plan, domain, host)

pytestmark = pytest.mark.skipif(exact.highspy is None, reason="highspy is not installed")


def moves(result):
    return [(m["vm"], m["source"], m["destination"], *m["requires"]) for m in result["migrations"]]


def first_choice_blocks_the_second():
    """hv0 (4 CPUs, load 2.0) must shed a and b (3.5 each). Greedily, a takes hv3 (the least loaded),
    after which b fits nowhere until c makes room on hv2: 3 migrations. a onto hv2 (memory just
    fits) and b onto hv3 need 2."""
    return [host("hv0", [domain("x", 1.0, memory_mb=4096), domain("a", 3.5), domain("b", 3.5, memory_mb=2048)],
                 cpus=4, memory_free_mb=4096),
            host("hv1", [domain("d", 3.5, memory_mb=2048), domain("e", 1.5)], memory_free_mb=4096),
            host("hv2", [domain("c", 1.0)], memory_free_mb=2048),
            host("hv3", [domain("f", 0.5)])]


def test_the_exact_engine_needs_fewer_migrations_where_the_greedy_choice_blocks_the_next():
    cluster = first_choice_blocks_the_second()
    policy = {"now": NOW, "max_migrations": 10, "exclude": ["x"]}
    greedy = plan(cluster, dict(policy, engine="greedy"))
    assert moves(greedy) == [("a", "hv0", "hv3"), ("c", "hv2", "hv3"), ("b", "hv0", "hv2", "c")]
    result = plan(cluster, policy)
    assert (result["engine"], result["optimal"], result["gap"]) == ("exact", True, 0.0)
    assert sorted(moves(result)) == [("a", "hv0", "hv2"), ("b", "hv0", "hv3")]
    assert all(m["reason"] == "hv0 overloaded 2.00 > 0.75 for 30 min" for m in result["migrations"])
    assert result["hosts"][0]["status"] == "overloaded"
    check_plan(cluster, policy, result)
    assert plan(apply_plan(cluster, result), policy)["migrations"] == []


def test_a_move_may_require_several_departures():
    # big (6 GiB) fits on hv2 only once both r1 and r2 (2 GiB each) have left it for hv3.
    cluster = [host("hv1", [domain("big", 3.0, memory_mb=6144), domain("x", 4.0)]),
               host("hv2", [domain("r1", 0.5, memory_mb=2048), domain("r2", 0.5, memory_mb=2048)],
                    memory_free_mb=2560),
               host("hv3", [domain("full", 0.5)], cpus=4, memory_free_mb=6144)]
    policy = {"now": NOW, "exclude": ["x"]}
    result = plan(cluster, policy)
    assert result["engine"] == "exact"
    assert moves(result) == [("r1", "hv2", "hv3"), ("r2", "hv2", "hv3"), ("big", "hv1", "hv2", "r1", "r2")]
    assert result["migrations"][0]["reason"] == "makes room on hv2 for big: hv1 overloaded 0.88 > 0.75 for 30 min"
    check_plan(cluster, policy, result)
    greedy = plan(cluster, dict(policy, engine="greedy"))
    assert greedy["migrations"] == [] and greedy["hosts"][0]["status"] == "unresolved"


def test_an_end_state_with_no_executable_order_is_cut_and_the_greedy_plan_kept_when_nothing_else_does():
    # a may go to hv2 only once b has left it, and b may go to hv1 only once a has left hv1 (hv1 is
    # over max_load_candidate until then): a swap. The MIP finds it; no order runs it; the cut forbids it,
    # and no other plan does better than the greedy one.
    cluster = [host("hv1", [domain("a", 4.0, memory_mb=4096), domain("x", 3.0)], memory_free_mb=1024),
               host("hv2", [domain("b", 1.0, memory_mb=4096), domain("y", 0.2)], memory_free_mb=1024)]
    policy = {"now": NOW, "exclude": ["x", "y"], "memory_reserve_mb": 0}
    result = plan(cluster, policy)
    assert result["migrations"] == []
    assert result["engine"] == "greedy"
    assert "solved again after 1 cycle cut(s)" in result["solver_status"]
    assert "greedy plan as good" in result["solver_status"]
    assert result["skipped"] == [{"vm": "a", "uuid": "uuid-a", "host": "hv1",
                                  "reason": "no destination: hv2 memory 1024 MB free < 4096 + reserve 0"},
                                 {"vm": "x", "uuid": "uuid-x", "host": "hv1", "reason": "excluded by policy"}]


def test_a_swap_is_cut_and_the_plan_solved_again_finds_the_chain_that_runs():
    # The fewest migrations clearing hv1 is the swap a -> hv2, b -> hv1 (each waits for the other to
    # leave). Cut, the solver finds the three that run: r1 and r2 leave hv3 for hv4, then a fits on hv3.
    # The greedy engine makes room with one departure at most, so it clears nothing.
    cluster = [host("hv1", [domain("a", 4.0, memory_mb=6144), domain("x", 3.0)], memory_free_mb=1024),
               host("hv2", [domain("b", 1.0, memory_mb=6144), domain("y", 0.2)], memory_free_mb=1024),
               host("hv3", [domain("r1", 0.2, memory_mb=2048), domain("r2", 0.2, memory_mb=2048)], memory_free_mb=2048),
               host("hv4", [domain("z", 0.2)], memory_free_mb=4096)]
    policy = {"now": NOW, "exclude": ["x", "y", "z"], "memory_reserve_mb": 0}
    result = plan(cluster, policy)
    assert result["engine"] == "exact"
    assert moves(result) == [("r1", "hv3", "hv4"), ("r2", "hv3", "hv4"), ("a", "hv1", "hv3", "r1", "r2")]
    assert result["optimal"] is False
    assert "solved again after 1 cycle cut(s), so not proven optimal" in result["solver_status"]
    check_plan(cluster, policy, result)
    assert plan(apply_plan(cluster, result), policy)["migrations"] == []
    assert plan(cluster, dict(policy, engine="greedy"))["migrations"] == []


def test_nothing_to_fix_runs_no_solver():
    cluster = [host("hv1", [domain("a", 1.0)]), host("hv2")]
    result = plan(cluster, {"now": NOW, "engine": "exact"})
    assert (result["engine"], result["optimal"], result["gap"], result["solver_status"]) == ("greedy", None, None, None)


def test_a_pool_above_the_exact_size_is_planned_greedily_and_says_so(monkeypatch):
    monkeypatch.setattr(exact, "MAX_HOSTS", 3)
    cluster = first_choice_blocks_the_second()
    policy = {"now": NOW, "max_migrations": 10, "exclude": ["x"]}
    result = plan(cluster, dict(policy, engine="exact"))
    assert result["engine"] == "greedy" and len(result["migrations"]) == 3
    assert result["warnings"] == ["engine exact: 4 hosts / 7 running domains is above the exact engine's"
                                  " 3 hosts / 5000 domains; planned by the greedy engine"]
    assert plan(cluster, policy)["warnings"] == []  # auto: the greedy engine is simply the one that serves


def test_the_wall_clock_safety_net_is_reported_and_the_plan_stays_valid(monkeypatch):
    monkeypatch.setattr(exact, "MIP_MAX_NODES", 10 ** 6)
    cluster = first_choice_blocks_the_second()
    policy = {"now": NOW, "max_migrations": 10, "exclude": ["x"], "solver_seconds": 1e-9}
    result = plan(cluster, policy)
    assert result["optimal"] is False
    assert "Time limit reached" in result["solver_status"]
    check_plan(cluster, policy, result)


def test_a_maintenance_host_missing_from_the_pool_is_a_warning_not_an_error():
    cluster = [host("hv1", [domain("a", 1.0)]), host("hv2")]
    result = plan(cluster, {"now": NOW, "maintenance": ["hv9", "hv2"]})
    assert result["warnings"] == ["maintenance host hv9 is not in the pool: nothing to empty"]
    assert result["hosts"][1]["status"] == "maintenance"


def captured_model(monkeypatch, cluster, policy):
    """The exact engine's model of a plan, as built (the solve then runs as usual)."""
    models = []
    real_staged = exact._staged

    def capture(model, *args):
        models.append(model)
        return real_staged(model, *args)

    monkeypatch.setattr(exact, "_staged", capture)
    plan(cluster, policy)
    monkeypatch.undo()
    return models[0]


def values_of(model, pairs):
    values = [0.0] * len(model.columns)
    for pair in pairs:
        values[model.x[pair]] = 1.0
    return values


def stuck_in(model):
    model.state.undo_to(0)  # the plan's moves: from the state before them

    def stuck(values):
        _ordered, pairs = exact._order(model.planning, model.chosen(values))
        model.state.undo_to(0)
        return pairs
    return stuck


def a_swap_with_room_elsewhere():
    # a -> hv2 waits for b to leave hv2, b -> hv1 waits for a to leave hv1 (memory): a swap. r leaving
    # hv2 for hv3 first lets a in.
    cluster = [host("hv1", [domain("a", 4.0, memory_mb=4096), domain("x", 3.0)], memory_free_mb=1024),
               host("hv2", [domain("b", 1.0, memory_mb=4096), domain("y", 0.2), domain("r", 0.1, memory_mb=3072)],
                    memory_free_mb=1024),
               host("hv3", [], memory_free_mb=8192)]
    return cluster, {"now": NOW, "exclude": ["x", "y"], "memory_reserve_mb": 0}


def test_a_cycle_cut_forbids_the_stuck_moves_unless_another_departure_makes_room(monkeypatch):
    model = captured_model(monkeypatch, *a_swap_with_room_elsewhere())
    swap = [("a", "hv2"), ("b", "hv1")]

    def feasible(pairs):
        fixed = {c: float(key in pairs) for key, c in model.x.items()}
        values, _status, _gap = exact._solve(model, 2, [], set(), 5.0, fixed=fixed)
        return values is not None

    assert feasible(swap) and feasible(swap + [("r", "hv3")])
    free = model.cut_cycle(swap, swap)
    assert free == {"a", "b", "r"}
    assert not feasible(swap)
    assert feasible(swap + [("r", "hv3")])


def test_a_plan_with_no_order_is_repaired_around_its_cycle(monkeypatch):
    model = captured_model(monkeypatch, *a_swap_with_room_elsewhere())
    stuck = stuck_in(model)
    swap = values_of(model, [("a", "hv2"), ("b", "hv1")])
    assert stuck(swap)
    repaired = exact._orderable(model, swap, stuck, deadline=exact.time.monotonic() + 5)
    assert model.chosen(repaired) == [("a", "hv3")]  # the one move that clears hv1 and runs
    assert not stuck(repaired) and model.cuts == 1


def test_polishing_finds_the_direct_move_for_a_chain(monkeypatch):
    # a must leave hv1: to hv3 directly, or to hv2 once r has left it for hv4. Polished, the chain of two
    # moves becomes the one.
    cluster = [host("hv1", [domain("a", 3.0, memory_mb=4096), domain("x", 4.0)], memory_free_mb=1024),
               host("hv2", [domain("r", 0.5, memory_mb=4096)], memory_free_mb=1024),
               host("hv3", [domain("s", 0.5)], memory_free_mb=8192),
               host("hv4", [domain("t", 0.5)], memory_free_mb=8192)]
    model = captured_model(monkeypatch, cluster, {"now": NOW, "exclude": ["x"], "memory_reserve_mb": 0})
    chain = values_of(model, [("a", "hv2"), ("r", "hv4")])
    polished = exact._polish(model, chain, stuck_in(model), deadline=exact.time.monotonic() + 5)
    assert len(model.chosen(polished)) == 1 and model.chosen(polished)[0][0] == "a"
