# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each placement rule rejects a destination with its own reason, and allows the limit case."""

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan, rules
from ansible_collections.xen.drs.plugins.plugin_utils.placement.model import parse_cluster, parse_policy
from ansible_collections.xen.drs.plugins.plugin_utils.placement.state import ClusterState
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import (
    NOW, apply_plan, check_plan, domain, host)

MIN = 60


def pool(web1=None, hv2=None, hv2_domains=(), policy=None):
    """hv1 (8 CPUs) runs at 7/8 = 0.875 and can only shed web1 (4 CPUs); hv2 is the only other host."""
    web1_entry = domain("web1", 4.0, memory_mb=1024, **(web1 or {}))
    cluster = [
        host("hv1", [web1_entry, domain("stay", 3.0)]),
        host("hv2", list(hv2_domains), **{"memory_free_mb": 32768, **(hv2 or {})}),
    ]
    return cluster, {"now": NOW, "exclude": ["stay"], "balance": 0, **(policy or {})}  # the rule alone, no balancing


CASES = {
    # rule: (rejected scenario, reason fragment, allowed limit case)
    "memory incl. reserve": (
        dict(hv2={"memory_free_mb": 1535}),
        "hv2 memory 1535 MB free < 1024 + reserve 512",
        dict(hv2={"memory_free_mb": 1536}),
    ),
    "memory reserve from policy": (
        dict(hv2={"memory_free_mb": 3000}, policy={"memory_reserve_mb": 2000}),
        "hv2 memory 3000 MB free < 1024 + reserve 2000",
        dict(hv2={"memory_free_mb": 3024}, policy={"memory_reserve_mb": 2000}),
    ),
    "max_vm_per_host": (
        dict(hv2_domains=[domain("a", 0.1), domain("b", 0.1)], policy={"max_vm_per_host": 2}),
        "hv2 runs 2 domains, max_vm_per_host 2",
        dict(hv2_domains=[domain("a", 0.1), domain("b", 0.1, state="shut off")], policy={"max_vm_per_host": 2}),
    ),
    "max_load_candidate": (
        dict(hv2_domains=[domain("a", 1.3)]),
        "hv2 load 0.16 + 0.50 = 0.66 > max_load_candidate 0.65",
        dict(hv2_domains=[domain("a", 1.2)]),  # exactly 0.65: at most, so allowed
    ),
    "anti-affinity": (
        dict(hv2_domains=[domain("db2", 0.5)], policy={"anti_affinity": [["web1", "db2"]]}),
        "hv2 anti-affinity group [db2, web1]: db2 runs there",
        dict(hv2_domains=[domain("db2", 0.5, state="shut off")], policy={"anti_affinity": [["web1", "db2"]]}),
    ),
    "pin": (
        dict(policy={"pin": {"web1": ["hv1", "hv3"]}}),
        "hv2 not in pin [hv1, hv3]",
        dict(policy={"pin": {"web1": ["hv1", "hv2"]}}),
    ),
    "max_memory_candidate": (
        dict(hv2_domains=[domain("a", 0.1, memory_mb=32000)], policy={"memory_threshold": 0.5}),
        "hv2 memory load 0.49 + 0.02 = 0.50 > max_memory_candidate 0.5",
        dict(hv2_domains=[domain("a", 0.1, memory_mb=31744)], policy={"memory_threshold": 0.5}),  # exactly 0.5
    ),
    "max_memory_candidate below memory_threshold": (
        dict(hv2_domains=[domain("a", 0.1, memory_mb=26000)],
             policy={"memory_threshold": 0.5, "max_memory_candidate": 0.4}),
        "> max_memory_candidate 0.4",
        dict(hv2_domains=[domain("a", 0.1, memory_mb=26000)], policy={"memory_threshold": 0.5}),
    ),
    "anti-affinity chosen by tags (JMESPath)": (
        dict(web1={"tags": ["db"]}, hv2_domains=[domain("db2", 0.5, tags=["db", "prod"])],
             policy={"anti_affinity": [{"select": "[?contains(tags, 'db')].name"}]}),
        "hv2 anti-affinity group [db2, web1]: db2 runs there",
        dict(web1={"tags": ["db"]}, hv2_domains=[domain("db2", 0.5, tags=["web"])],
             policy={"anti_affinity": [{"select": "[?contains(tags, 'db')].name"}]}),
    ),
    "anti-affinity chosen by inventory tags": (
        dict(hv2_domains=[domain("db2", 0.5)], policy={"tags": {"web1": ["db"], "db2": ["db"]},
                                                       "anti_affinity": [{"select": "[?contains(tags, 'db')].name"}]}),
        "hv2 anti-affinity group [db2, web1]: db2 runs there",
        dict(hv2_domains=[domain("db2", 0.5)], policy={"tags": {"web1": ["db"]},
                                                       "anti_affinity": [{"select": "[?contains(tags, 'db')].name"}]}),
    ),
    "affinity_hosts": (
        dict(policy={"affinity_hosts": [{"members": ["web1"], "hosts": ["hv1", "hv3"]}]}),
        "hv2 not in pin [hv1, hv3]",
        dict(policy={"affinity_hosts": [{"members": ["web1"], "hosts": ["hv1", "hv2"]}]}),
    ),
    "affinity_hosts chosen by memory (JMESPath)": (
        dict(policy={"affinity_hosts": [{"select": "[?memory_mb > `512`].name", "hosts": ["hv1"]}]}),
        "hv2 not in pin [hv1]",
        dict(policy={"affinity_hosts": [{"select": "[?memory_mb > `4096`].name", "hosts": ["hv1"]}]}),
    ),
    "maintenance destination (host flag)": (
        dict(hv2={"maintenance": True}),
        "1 host(s) in maintenance (hv2)",
        dict(hv2={"maintenance": False}),
    ),
    "maintenance destination (policy)": (
        dict(policy={"maintenance": ["hv2"]}),
        "1 host(s) in maintenance (hv2)",
        dict(policy={"maintenance": []}),
    ),
    "exclude": (
        dict(policy={"exclude": ["stay", "web1"]}),
        "excluded by policy",
        dict(policy={"exclude": ["stay"]}),
    ),
    "exclude chosen by JMESPath": (
        dict(policy={"exclude": ["stay", {"select": "[?starts_with(name, 'web')].name"}]}),
        "excluded by policy",
        dict(policy={"exclude": ["stay", {"select": "[?starts_with(name, 'db')].name"}]}),
    ),
    "no return within 2 hours": (
        dict(web1={"last_migration": {"time": NOW - 119 * MIN, "source": "hv2", "destination": "hv1"}}),
        "web1 left hv2 119 min ago (< 120 min)",
        dict(web1={"last_migration": {"time": NOW - 120 * MIN, "source": "hv2", "destination": "hv1"}}),
    ),
    "cooldown": (
        dict(web1={"last_migration": {"time": NOW - 12 * MIN, "source": "hv2", "destination": "hv1"}}),
        "cooldown: migrated 12 min ago, cooldown 60 min",
        dict(web1={"last_migration": {"time": NOW - 60 * MIN, "source": "hv3", "destination": "hv1"}}),
    ),
    "cooldown from policy": (
        dict(web1={"last_migration": {"time": NOW - 12 * MIN}}, policy={"cooldown": 15}),
        "cooldown: migrated 12 min ago, cooldown 15 min",
        dict(web1={"last_migration": {"time": NOW - 12 * MIN}}, policy={"cooldown": 10}),
    ),
    "failure hold": (
        dict(web1={"last_failure": {"time": NOW - 239 * MIN, "destination": "hv2", "error": "CPU model mismatch"}}),
        "held back: its migration to hv2 failed 239 min ago (CPU model mismatch), failure_hold 240 min",
        dict(web1={"last_failure": {"time": NOW - 240 * MIN, "destination": "hv2", "error": "CPU model mismatch"}}),
    ),
    "failure hold from policy": (
        dict(web1={"last_failure": {"time": NOW - 30 * MIN, "destination": "hv2", "error": "refused"}},
             policy={"failure_hold": 31}),
        "held back: its migration to hv2 failed 30 min ago (refused), failure_hold 31 min",
        dict(web1={"last_failure": {"time": NOW - 30 * MIN, "destination": "hv2", "error": "refused"}},
             policy={"failure_hold": 0}),
    ),
    "failure hold: a permanent failure, at once": (
        dict(web1={"last_failure": {"time": NOW - 5 * MIN, "destination": "hv2", "error": "CPU incompatible",
                                    "kind": "permanent", "count": 1}}),
        "held back: its migration to hv2 failed 5 min ago (CPU incompatible), failure_hold 240 min",
        dict(web1={"last_failure": {"time": NOW - 240 * MIN, "destination": "hv2", "error": "CPU incompatible",
                                    "kind": "permanent", "count": 1}}),
    ),
    "failure hold: a transient failure once it repeats": (
        dict(web1={"last_failure": {"time": NOW - 5 * MIN, "destination": "hv2", "error": "connection lost",
                                    "kind": "transient", "count": 2, "previous": NOW - 35 * MIN}}),
        "held back: its migration to hv2 failed 5 min ago (connection lost), 2 transient failures in a row, "
        "the one before it 30 min earlier, failure_hold 240 min",
        # the same failure on its own: the next run tries again
        dict(web1={"last_failure": {"time": NOW - 5 * MIN, "destination": "hv2", "error": "connection lost",
                                    "kind": "transient", "count": 1}}),
    ),
    "failure hold: transient failures less than failure_hold apart": (
        dict(web1={"last_failure": {"time": NOW - 5 * MIN, "destination": "hv2", "error": "timed out",
                                    "kind": "transient", "count": 3, "previous": NOW - 244 * MIN}}),
        "held back: its migration to hv2 failed 5 min ago (timed out), 3 transient failures in a row, "
        "the one before it 239 min earlier, failure_hold 240 min",
        dict(web1={"last_failure": {"time": NOW - 5 * MIN, "destination": "hv2", "error": "timed out",
                                    "kind": "transient", "count": 3, "previous": NOW - 245 * MIN}}),
    ),
    "failure hold: a repeated transient failure, held for failure_hold after the last": (
        dict(web1={"last_failure": {"time": NOW - 239 * MIN, "destination": "hv2", "error": "timed out",
                                    "kind": "transient", "count": 2, "previous": NOW - 250 * MIN}}),
        "held back: its migration to hv2 failed 239 min ago (timed out), 2 transient failures in a row",
        dict(web1={"last_failure": {"time": NOW - 240 * MIN, "destination": "hv2", "error": "timed out",
                                    "kind": "transient", "count": 2, "previous": NOW - 250 * MIN}}),
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_rejects_with_its_reason(rule):
    rejected, reason = CASES[rule][:2]
    result = plan(*pool(**rejected))
    assert result["migrations"] == []
    assert result["hosts"][0]["status"] == "unresolved"
    skipped = {s["vm"]: s["reason"] for s in result["skipped"]}
    assert reason in skipped["web1"], skipped["web1"]
    assert skipped["stay"] == "excluded by policy"


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_allows_the_limit_case(rule):
    allowed = CASES[rule][2]
    result = plan(*pool(**allowed))
    assert [(m["vm"], m["source"], m["destination"]) for m in result["migrations"]] == [("web1", "hv1", "hv2")]
    assert result["hosts"][0]["status"] == "overloaded"


def test_no_destination_lists_each_hosts_reason():
    cluster = [
        host("hv1", [domain("db1", 4.0, memory_mb=1024), domain("stay", 3.0)]),
        host("hv2", memory_free_mb=900),
        host("hv3", [domain("db2", 0.5)]),
        host("hv4", [domain("busy", 7.0)], load=0.3),
    ]
    result = plan(cluster, {"now": NOW, "exclude": ["stay"], "anti_affinity": [["db1", "db2"]]})
    reason = {s["vm"]: s["reason"] for s in result["skipped"]}["db1"]
    assert reason.startswith("no destination: ")
    assert "hv2 memory 900 MB free < 1024 + reserve 512" in reason
    assert "hv3 anti-affinity group [db1, db2]: db2 runs there" in reason
    assert "1 host(s) already over max_load_candidate 0.65 (e.g. hv4)" in reason


def test_the_plan_never_places_two_anti_affine_domains_together():
    cluster = [
        host("hv1", [domain("db1", 3.0), domain("db2", 3.0), domain("web1", 2.0)], cpus=8),
        host("hv2", cpus=16),
        host("hv3", [domain("x", 4.0)], cpus=16),
    ]
    policy = {"now": NOW, "anti_affinity": [["db1", "db2"]], "load_threshold": 0.5, "max_load_candidate": 0.5,
              "exclude": ["web1"]}
    result = plan(cluster, policy)
    destinations = {m["vm"]: m["destination"] for m in result["migrations"]}
    # hv2 is the calmer host, but db1 went there first: db2 must take hv3
    assert destinations == {"db1": "hv2", "db2": "hv3"}


def test_pin_restricts_only_the_pinned_domain():
    cluster = [
        host("hv1", [domain("web1", 4.0), domain("stay", 3.0)]),
        host("hv2"),
        host("hv3", [domain("a", 0.5)]),
    ]
    result = plan(cluster, {"now": NOW, "exclude": ["stay"], "pin": {"web1": ["hv3"], "other": ["hv2"]}})
    assert [(m["vm"], m["destination"]) for m in result["migrations"]] == [("web1", "hv3")]


def test_anti_affine_domains_found_together_are_separated_without_any_overload():
    # A manual migration put db2 next to db1 on a calm host: the smaller one (memory) moves.
    cluster = [host("hv1", [domain("db1", 1.0, memory_mb=8192), domain("db2", 1.0, memory_mb=4096)]),
               host("hv2", [domain("web", 2.0)]), host("hv3", [domain("app", 1.0)])]
    policy = {"now": NOW, "anti_affinity": [["db1", "db2"]]}
    result = plan(cluster, policy)
    assert [(m["vm"], m["source"], m["destination"]) for m in result["migrations"]] == [("db2", "hv1", "hv3")]
    assert result["migrations"][0]["reason"] == "db2 on hv1 with db1, anti-affinity group [db1, db2]"
    assert "rule break, db2 on hv1 with db1, anti-affinity group [db1, db2]: plan moves db2" in result["hosts"][0]["reasons"]
    assert (result["measure"]["before"]["rule_breaks"], result["measure"]["after"]["rule_breaks"]) == (2, 0)
    assert result["skipped"] == []
    check_plan(cluster, policy, result)
    assert plan(apply_plan(cluster, result), policy)["migrations"] == []


def test_a_domain_outside_its_pin_goes_back_inside():
    cluster = [host("hv1", [domain("lic", 0.5)]), host("hv2", [domain("x", 3.0)]), host("hv3", [domain("y", 4.0)])]
    policy = {"now": NOW, "pin": {"lic": ["hv2", "hv3"]}}
    result = plan(cluster, policy)
    assert [(m["vm"], m["destination"], m["reason"]) for m in result["migrations"]] == [
        ("lic", "hv2", "lic on hv1, outside its pin [hv2, hv3]")]
    check_plan(cluster, policy, result)


def test_a_rule_break_that_cannot_be_repaired_is_listed_with_why():
    cluster = [host("hv1", [domain("db1", 1.0), domain("db2", 1.0, last_migration={"time": NOW - 10 * MIN})]),
               host("hv2", [domain("busy", 5.0)])]
    result = plan(cluster, {"now": NOW, "anti_affinity": [["db1", "db2"]], "exclude": ["db1"]})
    assert result["migrations"] == []
    assert {s["vm"]: s["reason"] for s in result["skipped"]} == {
        "db1": "rule break stays (db1 on hv1 with db2, anti-affinity group [db1, db2]): excluded by policy",
        "db2": "rule break stays (db2 on hv1 with db1, anti-affinity group [db1, db2]):"
               " cooldown: migrated 10 min ago, cooldown 60 min"}
    # once db2 may move, only max_load_candidate stands in the way
    result = plan(cluster, {"now": NOW, "anti_affinity": [["db1", "db2"]], "exclude": ["db1"], "cooldown": 5})
    assert {s["vm"]: s["reason"] for s in result["skipped"]}["db2"] == (
        "rule break stays (db2 on hv1 with db1, anti-affinity group [db1, db2]): no destination:"
        " hv2 load 0.62 + 0.12 = 0.75 > max_load_candidate 0.65")


def test_pool_bounds_are_the_most_any_host_not_in_maintenance_could_take():
    cluster = [host("hv1", [domain("a", 4.0)], memory_free_mb=8192),  # 8 CPUs at 0.5: 0.8 core to 0.6
               host("hv2", [domain("b", 1.0)], cpus=16, memory_free_mb=4096),  # 16 at 0.0625: 8.6 cores
               host("hv3", [], memory_free_mb=65536)]  # the most of all, but in maintenance
    policy = parse_policy({"now": NOW, "max_load_candidate": 0.6, "memory_reserve_mb": 512, "maintenance": ["hv3"]})
    hosts = ClusterState(parse_cluster(cluster), policy).arrays
    assert rules.MaxLoadCandidate.most_cpu(hosts, policy) == pytest.approx(0.6 * 16 - 1.0)
    assert rules.Memory.most_memory(hosts, policy) == 8192 - 512
