"""The benchmark's own parts: seeded generator, exact solver, baselines' rule keeping."""
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS.parent / "plugins" / "plugin_utils"))  # the policy, as `placement`

import baselines  # noqa: E402  pylint: disable=wrong-import-position,import-error
import metrics  # noqa: E402  pylint: disable=wrong-import-position,import-error
import rules  # noqa: E402  pylint: disable=wrong-import-position,import-error
import scenarios  # noqa: E402  pylint: disable=wrong-import-position,import-error

NOW = 1_000_000_000


def host(name, cpus, free_mb, domains):
    """A host whose samples say: loaded as now for the last 20 minutes."""
    load = sum(cpu for _vm, cpu, _memory in domains) / cpus
    return {
        "name": name, "cpus": cpus, "memory_mb": 262144, "memory_free_mb": free_mb, "maintenance": False,
        "samples": [[NOW - minutes * 60, load] for minutes in (20, 15, 10, 5, 0)],
        "domains": [{"name": vm, "uuid": "uuid-" + vm, "vcpus": 4, "memory_mb": memory, "cpu": cpu,
                     "state": "running"} for vm, cpu, memory in domains],
    }


def policy(cluster, **overrides):
    return scenarios.policy_for(cluster, now=NOW, **overrides)


@pytest.mark.parametrize("kind", scenarios.KINDS)
def test_generator_is_seeded(kind):
    assert scenarios.generate(kind, 8, 100, 7) == scenarios.generate(kind, 8, 100, 7)
    assert scenarios.generate(kind, 8, 100, 7) != scenarios.generate(kind, 8, 100, 8)


@pytest.mark.parametrize("kind", scenarios.KINDS)
def test_generator_overload_is_sustained_exactly_when_planning_load_is_over(kind):
    cluster = scenarios.generate(kind, 20, 400, 3)
    assert sum(len(h["domains"]) for h in cluster) == 400
    for entry in cluster:
        over = rules.host_load(entry) > scenarios.THRESHOLD
        samples = entry["samples"]
        assert samples[-1][0] - samples[0][0] > scenarios.MAX_OVER * 60
        assert all((load > scenarios.THRESHOLD) == over for _time, load in samples)
        assert entry["memory_free_mb"] >= 0
        assert entry["memory_mb"] >= entry["memory_free_mb"] + sum(d["memory_mb"] for d in entry["domains"])


def test_anti_affinity_groups_start_on_distinct_hosts():
    cluster = scenarios.generate("anti_affinity", 30, 600, 1)
    location = {d["name"]: h["name"] for h in cluster for d in h["domains"]}
    groups = scenarios.policy_for(cluster)["anti_affinity"]
    assert sum(len(g) for g in groups) >= 0.39 * 600
    for group in groups:
        assert len({location[vm] for vm in group}) == len(group) >= 2


def test_constrained_scenario_pins_and_excludes_running_domains():
    cluster = scenarios.generate("constrained", 20, 400, 1)
    location = {d["name"]: h["name"] for h in cluster for d in h["domains"]}
    pol = scenarios.policy_for(cluster)
    assert 20 <= len(pol["exclude"]) <= 60 and 30 <= len(pol["pin"]) <= 90
    assert set(pol["exclude"]) <= set(location)
    for vm, hosts in pol["pin"].items():
        assert location[vm] in hosts and 2 <= len(hosts) <= 3


def test_generator_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'lukewarm'"):
        scenarios.generate("lukewarm", 4, 10, 1)


def hand_made():
    """h1 (0.95) must shed 2 cores; h2 and h3 can each take 1.5 at most (max_load_candidate 0.65),
    so no single domain does it and the minimum is two migrations of the small ones, one to each."""
    return [
        host("h1", 10, 65536, [("a", 3.0, 2048), ("b", 2.5, 2048), ("c", 1.5, 2048), ("d", 1.5, 2048),
                               ("e", 1.0, 2048)]),
        host("h2", 10, 65536, [("f", 5.0, 2048)]),
        host("h3", 10, 65536, [("g", 5.0, 2048)]),
    ]


def test_exact_solver_finds_the_known_minimum():
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = hand_made()
    solved = exact.minimum_migrations(cluster, policy(cluster))
    assert solved["status"] == "optimal"
    assert solved["overloaded"] == 0
    assert len(solved["migrations"]) == 2
    assert {m["vm"] for m in solved["migrations"]} <= {"c", "d", "e"}
    assert {m["destination"] for m in solved["migrations"]} == {"h2", "h3"}
    result = metrics.evaluate(cluster, solved["migrations"], policy(cluster))
    assert result["violations"] == [] and result["overloaded"] == 0


def test_exact_solver_leaves_overload_when_memory_forbids_every_move():
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = hand_made()
    cluster[2]["memory_free_mb"] = 1024  # h3 cannot take anything: only h2 is left, 1.5 cores
    solved = exact.minimum_migrations(cluster, policy(cluster))
    assert solved["status"] == "optimal"
    assert solved["overloaded"] == 1
    assert solved["migrations"] == []


def test_baselines_respect_memory():
    # h3 is the calmest host but has no memory to spare; h2 has room.
    cluster = [
        host("h1", 10, 65536, [("a", 3.0, 4096), ("b", 3.0, 4096), ("c", 3.0, 4096)]),
        host("h2", 10, 65536, [("d", 1.0, 4096)]),
        host("h3", 10, 3000, [("e", 0.5, 4096)]),
    ]
    for name, planner in baselines.PLANNERS.items():
        migrations = planner(cluster, policy(cluster))
        assert migrations, name
        assert all(m["destination"] == "h2" for m in migrations), name
        assert metrics.evaluate(cluster, migrations, policy(cluster))["violations"] == [], name


@pytest.mark.parametrize("name", sorted(baselines.PLANNERS))
def test_baselines_keep_the_shared_rules_on_generated_scenarios(name):
    for kind in ("memory_bound", "anti_affinity"):
        cluster = scenarios.generate(kind, 40, 800, 2)
        migrations = baselines.PLANNERS[name](cluster, policy(cluster))
        result = metrics.evaluate(cluster, migrations, policy(cluster))
        assert migrations and result["violations"] == [], (kind, result["violations"][:3])


def test_metrics_flag_a_rule_break():
    cluster = hand_made()
    cluster[1]["memory_free_mb"] = 1024
    result = metrics.evaluate(cluster, [{"vm": "c", "destination": "h2"}], policy(cluster))
    assert result["violations"] == ["c -> h2: memory on h2"]
    assert result["migrations"] == 1
    assert result["memory_moved_gib"] == 2.0


def test_exact_reach_prices_a_result_at_least_as_good():
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = hand_made()
    cluster[2]["memory_free_mb"] = 1024  # h1 cannot be cleared: plain minimum is 0 moves
    target = metrics.evaluate(cluster, [{"vm": "c", "destination": "h2"}], policy(cluster))
    assert target["overloaded"] == 1 and target["excess"] < 0.2
    solved = exact.minimum_migrations(cluster, policy(cluster), reach=target)
    assert solved["status"] == "optimal"
    assert len(solved["migrations"]) == 1
    assert metrics.evaluate(cluster, solved["migrations"], policy(cluster))["excess"] <= target["excess"] + 1e-9


def test_exact_direct_only_moves_nothing_from_calm_hosts():
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = hand_made()
    solved = exact.minimum_migrations(cluster, policy(cluster), direct_only=True)
    assert solved["migrations"] and all(m["source"] == "h1" for m in solved["migrations"])


def test_replay_counts_overload_sustained_and_ping_pong():
    import traces  # pylint: disable=import-outside-toplevel,import-error

    rows = [("busy", [0.9] * 5), ("idle", [0.0] * 5)]
    quiet = traces.replay(lambda cluster, pol: [], rows, hosts=1, cpus=1, mean_load=0.9)
    # over the threshold at every step, sustained once 10 minutes of samples are over (steps 2-4)
    assert (quiet["over"], quiet["sustained"], quiet["migrations"]) == (5, 3, 0)

    def flip(cluster, pol):
        """Move the busy VM to the other host at every call, ignoring every rule."""
        source, vm = next((h, d["name"]) for h in cluster for d in h["domains"] if d["uuid"] == "trace-busy")
        dest = next(h for h in cluster if h is not source)
        return [{"vm": vm, "source": source["name"], "destination": dest["name"]}]

    rows = [("busy", [0.9] * 5)] + [("idle%d" % i, [0.01] * 5) for i in range(3)]
    moved = traces.replay(flip, rows, hosts=2, cpus=1, mean_load=0.47)
    assert moved["migrations"] == 5
    assert moved["ping_pong"] == 4  # every move after the first goes back to a host left a step ago


def test_every_planner_honours_max_vm_per_host():
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = hand_made()
    capped = policy(cluster, max_vm_per_host=2)  # h2 and h3 run one domain each: one more fits on each
    solved = exact.minimum_migrations(cluster, capped)
    assert solved["overloaded"] == 0 and len(solved["migrations"]) == 2
    capped = policy(cluster, max_vm_per_host=1)  # nothing may land anywhere
    assert exact.minimum_migrations(cluster, capped)["migrations"] == []
    for name, planner in baselines.PLANNERS.items():
        assert planner(cluster, capped) == [], name


def test_exact_plan_makes_room_first():
    """a (8 GiB) can only leave h1 for h3, and only once b has left h3 for h4 (h4 has CPU for b, not a)."""
    exact = pytest.importorskip("exact", reason="highspy not installed")
    cluster = [
        host("h1", 10, 65536, [("a", 2.0, 8192), ("k", 7.5, 1024)]),
        host("h2", 10, 4096, [("m", 2.0, 1024)]),
        host("h3", 10, 1024, [("b", 0.2, 8192)]),
        host("h4", 10, 16384, [("n", 6.0, 1024)]),
    ]
    solved = exact.minimum_migrations(cluster, policy(cluster))
    assert [(m["vm"], m["destination"]) for m in solved["migrations"]] == [("b", "h4"), ("a", "h3")]
    result = metrics.evaluate(cluster, solved["migrations"], policy(cluster))
    assert result["violations"] == [] and result["overloaded"] == 0
