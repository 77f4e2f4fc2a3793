# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replay.presets: the reference cluster and policy of issue 10, and the placed preset."""

import hashlib
import io

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import DEFAULTS
from ansible_collections.xen.drs.plugins.plugin_utils.replay import (
    PRESETS, PresetError, parse_trace, preset, reference_host_count, reference_memory_mb)
from ansible_collections.xen.drs.plugins.plugin_utils.replay.engine import Pool

REFERENCE = preset("reference")


def trace(rows, header_extra=""):
    """A trace of ``rows`` [(name, [percent...])] (``header_extra``: optional columns, then cells)."""
    steps = len(rows[0][1])
    lines = ["vm," + header_extra + ",".join(f"t{i}" for i in range(steps))]
    lines += [f"{name}," + ",".join(str(v) for v in values) for name, values in rows]
    return parse_trace(io.StringIO("\n".join(lines) + "\n", newline=""), source="hand.csv")


@pytest.mark.parametrize("rows, hosts", [
    # step totals 300 % and 600 %: mean 4.5 cores / (8 x 0.5) = 1.125 -> 2 hosts
    ([("a", [100, 300]), ("b", [200, 200]), ("c", [0, 100])], 2),
    # mean exactly 4 cores: one host's worth, not two
    ([("a", [400, 400])], 1),
    # mean 4.005 cores: just over one host's worth
    ([("a", [400, 401])], 2),
    # mean 16.5 cores / 4 = 4.125 -> 5
    ([("a", [1000, 1200]), ("b", [600, 500])], 5),
    # no demand at all: still one host
    ([("a", [0, 0])], 1),
])
def test_host_count_is_ceil_of_mean_total_demand_over_half_of_8_cpus(rows, hosts):
    day = trace(rows)
    assert reference_host_count(day) == hosts
    scenario = REFERENCE.scenario(day)
    assert len(scenario.hosts) == hosts


def test_memory_by_sha256_of_the_name_whatever_the_row():
    names = [f"planetlab-{i}_example_org_slice{i * 7}" for i in range(30)]
    expected = {n: (512, 1024, 2048)[int(hashlib.sha256(n.encode()).hexdigest(), 16) % 3] for n in names}
    assert {n: reference_memory_mb(n) for n in names} == expected
    assert set(expected.values()) == {512, 1024, 2048}  # the names exercise every choice
    forward = REFERENCE.scenario(trace([(n, [10]) for n in names]))
    backward = REFERENCE.scenario(trace([(n, [10]) for n in reversed(names)]))
    assert {vm.name: vm.memory_mb for vm in forward.vms} == expected
    assert {vm.name: vm.memory_mb for vm in backward.vms} == expected


def test_reference_cluster_deals_round_robin_in_row_order_with_1_vcpu_and_cores_from_percent():
    # 5 VMs, mean total 8.5 cores -> 3 hosts
    rows = [("v0", [300, 100]), ("v1", [250, 50]), ("v2", [100, 100]), ("v3", [200, 200]), ("v4", [150, 250])]
    scenario = REFERENCE.scenario(trace(rows))
    assert [h.name for h in scenario.hosts] == ["hv01", "hv02", "hv03"]
    assert {vm.name: vm.host for vm in scenario.vms} == {
        "v0": "hv01", "v1": "hv02", "v2": "hv03", "v3": "hv01", "v4": "hv02"}
    assert all(vm.vcpus == 1 for vm in scenario.vms)
    assert {vm.name: vm.demand for vm in scenario.vms}["v4"] == (1.5, 2.5)
    assert all((h.cpus, h.memory_mb, h.reserved_mb) == (8, 65536, 2048) for h in scenario.hosts)
    assert scenario.step_seconds == 300 and scenario.window == 24
    pool = Pool(scenario)
    pool.sample(0, scenario.start)
    first = {h["name"]: h for h in pool.cluster()}["hv01"]
    used = reference_memory_mb("v0") + reference_memory_mb("v3")
    assert first["memory_free_mb"] == 65536 - 2048 - used
    assert first["samples"] == [(scenario.start, round((3.0 + 2.0) / 8, 6), round(used / 65536, 6))]


def test_reference_ignores_the_optional_columns_placed_uses_them():
    day = parse_trace(io.StringIO("vm,memory_mb,host,t0\na,3000,west,10\nb,700,east,20\nc,900,west,30\n"),
                      source="own.csv")
    reference = REFERENCE.scenario(day)
    assert {vm.name: vm.memory_mb for vm in reference.vms} == {n: reference_memory_mb(n) for n in "abc"}
    assert {vm.host for vm in reference.vms} == {"hv01"}  # 0.6 cores -> 1 host
    placed = preset("placed").scenario(day)
    assert [h.name for h in placed.hosts] == ["west", "east"]
    assert {vm.name: (vm.host, vm.memory_mb) for vm in placed.vms} == {
        "a": ("west", 3000), "b": ("east", 700), "c": ("west", 900)}


def test_reference_policy_is_the_issue_s_keys_over_the_product_defaults():
    policy = REFERENCE.policy(DEFAULTS)
    fixed = {"load_threshold": 0.75, "max_load_candidate": 0.60, "max_over": 10, "cooldown": 60,
             "max_migrations": 5, "max_vm_per_host": 64, "memory_reserve_mb": 1024}
    assert {k: policy[k] for k in fixed} == fixed
    assert set(policy) == set(DEFAULTS)
    assert {k: v for k, v in policy.items() if k not in fixed} == {k: v for k, v in DEFAULTS.items() if k not in fixed}


def test_policy_defaults_are_taken_at_call_time_and_overrides_come_last():
    defaults = dict(DEFAULTS, engine="something new", load_threshold=0.5)
    policy = REFERENCE.policy(defaults, {"engine": "greedy", "cooldown": 15})
    assert policy["engine"] == "greedy" and policy["cooldown"] == 15
    assert policy["load_threshold"] == 0.75  # the preset's key wins over the defaults
    assert REFERENCE.policy(defaults)["engine"] == "something new"


def test_unknown_policy_key_and_unknown_preset_are_errors():
    with pytest.raises(PresetError, match="overrides: unknown policy key 'balance_typo'"):
        REFERENCE.policy(DEFAULTS, {"balance_typo": 3})
    with pytest.raises(PresetError, match="unknown preset 'nope'.*placed, reference"):
        preset("nope")
    assert set(PRESETS) == {"reference", "placed"}
