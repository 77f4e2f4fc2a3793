# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input is an error naming the host, the domain, the field and the value; defaults apply."""

import copy
import json

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import DEFAULTS, PlacementError, plan
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import NOW, domain, host


def cluster():
    return [host("hv1", [domain("web1", 2.0), domain("db1", 1.0)]), host("hv2", [domain("app1", 1.0)])]


def broken(change):
    data = cluster()
    change(data)
    return data


@pytest.mark.parametrize("change, expected", [
    (lambda c: c[0]["domains"][0].update(cpu="lots"), ["hv1", "web1", "'cpu'", "'lots'"]),
    (lambda c: c[0]["domains"][0].pop("uuid"), ["hv1", "web1", "'uuid'", "missing"]),
    (lambda c: c[0]["domains"][1].update(memory_mb=-5), ["hv1", "db1", "'memory_mb'", "-5"]),
    (lambda c: c[0]["domains"][1].update(vcpus=1.5), ["hv1", "db1", "'vcpus'", "1.5"]),
    (lambda c: c[0]["domains"][1].update(state=None), ["hv1", "db1", "'state'", "missing"]),
    (lambda c: c[0]["domains"][1].update(cpu=True), ["hv1", "db1", "'cpu'", "True"]),
    (lambda c: c[0]["domains"][1].update(cpu=float("nan")), ["hv1", "db1", "'cpu'", "nan"]),
    (lambda c: c[0]["domains"][1].update(tags="web"), ["hv1", "db1", "'tags'", "'web'"]),
    (lambda c: c[0]["domains"][1].update(last_migration={"source": "hv2"}), ["hv1", "db1", "'time'", "missing"]),
    (lambda c: c[0]["domains"][1].update(last_migration={"time": "yesterday"}), ["hv1", "db1", "'time'", "'yesterday'"]),
    (lambda c: c[0]["domains"][1].update(last_failure={"time": NOW, "destination": "hv2", "kind": "flaky"}),
     ["hv1", "db1", "last_failure", "'kind'", "'permanent' or 'transient'", "'flaky'"]),
    (lambda c: c[0]["domains"][1].update(last_failure={"time": NOW, "destination": "hv2", "count": 0}),
     ["hv1", "db1", "last_failure", "'count'", ">= 1", "0"]),
    (lambda c: c[0]["domains"][1].update(last_failure={"time": NOW, "destination": "hv2", "count": 1.5}),
     ["hv1", "db1", "last_failure", "'count'", "whole number", "1.5"]),
    (lambda c: c[0]["domains"][1].update(last_failure={"time": NOW, "destination": "hv2", "previous": NOW + 60}),
     ["hv1", "db1", "last_failure", "'previous'", "no later than its 'time'", str(NOW + 60)]),
    (lambda c: c[0]["domains"][1].update(last_failure={"time": NOW, "destination": "hv2", "previous": "then"}),
     ["hv1", "db1", "last_failure", "'previous'", "'then'"]),
    (lambda c: c[0]["domains"][1].pop("name"), ["hv1", "domains[1]", "'name'", "missing"]),
    (lambda c: c[0]["domains"].append("web9"), ["hv1", "domains[2]", "'web9'"]),
    (lambda c: c[1].update(cpus=0), ["hv2", "'cpus'", "> 0", "0"]),
    (lambda c: c[1].update(cpus="8"), ["hv2", "'cpus'", "'8'"]),
    (lambda c: c[1].pop("memory_free_mb"), ["hv2", "'memory_free_mb'", "missing"]),
    (lambda c: c[1].update(maintenance="yes"), ["hv2", "'maintenance'", "'yes'"]),
    (lambda c: c[1].update(samples=[[NOW, 0.5, 0.3, 1]]), ["hv2", "'samples'", "[1700000000, 0.5, 0.3, 1]"]),
    (lambda c: c[1].update(samples=[[NOW, 0.5, -0.3]]), ["hv2", "'samples'", "memory_load", "-0.3"]),
    (lambda c: c[0]["domains"][1].update(samples=[[NOW, -1]]), ["hv1", "db1", "'samples'", "[1700000000, -1]"]),
    (lambda c: c[0]["domains"][1].update(samples=[[NOW, 0.5, 0.1]]), ["hv1", "db1", "'samples'", "0.1]"]),
    (lambda c: c[0]["domains"][1].update(samples=0.5), ["hv1", "db1", "'samples'", "0.5"]),
    (lambda c: c[1].update(samples="0.5"), ["hv2", "'samples'", "'0.5'"]),
    (lambda c: c[1].update(domains={"app1": {}}), ["hv2", "'domains'", "a list"]),
    (lambda c: c[1].pop("name"), ["cluster[1]", "'name'", "missing"]),
    (lambda c: c[1].update(name="hv1"), ["'hv1'", "'name'", "not unique"]),
    (lambda c: c[1]["domains"].append(domain("web1", 0.5)), ["hv2", "web1", "'name'", "also running on 'hv1'"]),
])
def test_bad_cluster_input_names_host_domain_field_and_value(change, expected):
    with pytest.raises(PlacementError) as error:
        plan(broken(change), {"now": NOW})
    for word in expected:
        assert word in str(error.value)


@pytest.mark.parametrize("policy, expected", [
    ({"load_treshold": 0.8}, ["unknown key 'load_treshold'"]),
    ({"load_threshold": 0}, ["'load_threshold'", "> 0", "0"]),
    ({"load_threshold": 1.2}, ["'load_threshold'", "<= 1", "1.2"]),
    ({"load_threshold": "high"}, ["'load_threshold'", "'high'"]),
    ({"max_load_candidate": 0.8}, ["'max_load_candidate'", "load_threshold 0.75", "0.8"]),
    ({"max_over": -1}, ["'max_over'", "-1"]),
    ({"interval": 0}, ["'interval'", "0"]),
    ({"max_migrations": 2.5}, ["'max_migrations'", "2.5"]),
    ({"max_vm_per_host": 0}, ["'max_vm_per_host'", "0"]),
    ({"cooldown": "1h"}, ["'cooldown'", "'1h'"]),
    ({"memory_reserve_mb": -1}, ["'memory_reserve_mb'", "-1"]),
    ({"anti_affinity": ["db1", "db2"]}, ["'anti_affinity'", "'db1'"]),
    ({"anti_affinity": [["db1"]]}, ["'anti_affinity'", "at least 2", "['db1']"]),
    ({"pin": ["web1"]}, ["'pin'", "['web1']"]),
    ({"pin": {"web1": "hv2"}}, ["'pin.web1'", "'hv2'"]),
    ({"exclude": "web1"}, ["'exclude'", "'web1'"]),
    ({"maintenance": ["hv1", ""]}, ["'maintenance'", "['hv1', '']"]),
    ({"now": "today"}, ["'now'", "'today'"]),
    ({"engine": "fast"}, ["'engine'", "one of auto, exact, greedy", "'fast'"]),
    ({"anti_affinity": [{"members": ["a", "b"], "strength": "may"}]}, ["'anti_affinity[0].strength'", "'may'"]),
    ({"anti_affinity": [{"members": ["a", "b"], "select": "[].name"}]}, ["'anti_affinity[0]'", "exactly one of"]),
    ({"anti_affinity": [{"members": ["a"], "strength": "should"}]}, ["'anti_affinity[0].members'", "at least 2"]),
    ({"anti_affinity": [{"select": "[?tags"}]}, ["'anti_affinity[0].select'", "JMESPath", "'[?tags'"]),
    ({"anti_affinity": [{"members": ["a", "b"], "weight": 3}]}, ["'anti_affinity[0]'", "unknown key 'weight'"]),
    ({"pin": {"web1": {"hosts": ["hv1"], "strength": "never"}}}, ["'pin.web1.strength'", "'never'"]),
    ({"pin": {"web1": {"strength": "should"}}}, ["'pin.web1.hosts'"]),
    ({"affinity_hosts": [{"members": ["web1"]}]}, ["'affinity_hosts[0].hosts'", "None"]),
    ({"affinity_hosts": [{"select": 5, "hosts": ["hv1"]}]}, ["'affinity_hosts[0].select'", "5"]),
    ({"exclude": [{"select": "]["}]}, ["'exclude[0].select'", "JMESPath", "']['"]),
    ({"memory_threshold": 1.5}, ["'memory_threshold'", "<= 1", "1.5"]),
    ({"memory_threshold": 0.8, "max_memory_candidate": 0.9}, ["'max_memory_candidate'", "memory_threshold 0.8", "0.9"]),
    ({"max_memory_candidate": 0.9}, ["'max_memory_candidate'", "memory_threshold is null", "0.9"]),
    ({"balance": 6}, ["'balance'", "0 (off) to 5", "6"]),
    ({"predictive": "yes"}, ["'predictive'", "a boolean", "'yes'"]),
    ({"headroom": 1}, ["'headroom'", "a boolean", "1"]),
    ({"balance": "high"}, ["'balance'", "'high'"]),
    ({"balance_hold": -5}, ["'balance_hold'", "-5"]),
    ({"tags": {"web1": "db"}}, ["'tags.web1'", "'db'"]),
    ({"engine": ["exact"]}, ["'engine'", "['exact']"]),
    ({"solver_seconds": 0}, ["'solver_seconds'", "> 0", "0"]),
    ({"solver_seconds": float("inf")}, ["'solver_seconds'", "inf"]),
])
def test_bad_policy_names_key_and_value(policy, expected):
    with pytest.raises(PlacementError) as error:
        plan(cluster(), {"now": NOW, **policy})
    for word in expected:
        assert word in str(error.value)


def test_cluster_and_policy_must_be_containers():
    with pytest.raises(PlacementError, match="list of hosts"):
        plan({"hv1": {}}, {"now": NOW})
    with pytest.raises(PlacementError, match="policy must be a mapping"):
        plan(cluster(), ["now"])


def test_defaults_are_documented_values_and_reported():
    assert DEFAULTS == {"load_threshold": 0.75, "max_over": 10, "max_load_candidate": 0.65,
                        "max_vm_per_host": None, "max_migrations": 5, "cooldown": 60, "failure_hold": 240,
                        "memory_reserve_mb": 512,
                        "anti_affinity": [], "pin": {}, "exclude": [], "maintenance": [], "interval": 5,
                        "engine": "auto", "solver_seconds": 10, "memory_threshold": None,
                        "max_memory_candidate": None, "predictive": True, "headroom": True, "balance": 3, "balance_hold": 15, "tags": {},
                        "affinity_hosts": [],
                        "now": None}
    effective = plan(cluster(), {"now": NOW})["policy"]
    assert effective == {**DEFAULTS, "now": NOW}


def test_null_policy_values_mean_the_default():
    nulls = {key: None for key in DEFAULTS if key != "now"}
    assert plan(cluster(), {"now": NOW, **nulls})["policy"] == {**DEFAULTS, "now": NOW}


def test_now_defaults_to_the_clock():
    import time
    before = time.time()
    assert before <= plan(cluster())["policy"]["now"] <= time.time()


def test_unknown_keys_in_the_cluster_are_ignored():
    data = cluster()
    data[0]["vendor"] = "acme"
    data[0]["domains"][0]["owner"] = "team-a"
    assert plan(data, {"now": NOW}) == plan(cluster(), {"now": NOW})


def test_input_is_not_modified_and_output_is_plain_json():
    data = cluster()
    data[0] = host("hv1", [domain("web1", 4.0), domain("db1", 3.0)])
    original = copy.deepcopy(data)
    result = plan(data, {"now": NOW})
    assert data == original
    assert result["migrations"], "the scenario should move something"
    assert json.loads(json.dumps(result)) == result


def test_unsorted_samples_are_read_oldest_first():
    data = [host("hv1", [domain("web1", 4.0), domain("db1", 3.0)]), host("hv2")]
    data[0]["samples"].reverse()
    assert plan(data, {"now": NOW})["migrations"][0]["vm"] in ("web1", "db1")


def test_maintenance_may_name_hosts_that_are_not_in_the_input():
    """A host down for repairs is usually absent from the gathered facts: that is no error."""
    assert plan(cluster(), {"now": NOW, "maintenance": ["hv9"], "balance": 0})["migrations"] == []
