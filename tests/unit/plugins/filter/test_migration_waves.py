"""migration_waves: no host twice in a wave, plan order kept per host, wave size bounded."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, strategies as st

from ansible_collections.xen.drs.plugins.filter.migration_waves import migration_waves


def move(vm, source, destination):
    return {"vm": vm, "source": source, "destination": destination}


def names(waves):
    return [[m["vm"] for m in wave] for wave in waves]


def test_disjoint_moves_share_a_wave_up_to_parallel():
    plan = [move("a", "hv1", "hv2"), move("b", "hv3", "hv4"), move("c", "hv5", "hv6")]
    assert names(migration_waves(plan, 2)) == [["a", "b"], ["c"]]
    assert names(migration_waves(plan, 3)) == [["a", "b", "c"]]


def test_a_host_never_sends_or_receives_twice_in_one_wave():
    plan = [move("a", "hv1", "hv2"), move("b", "hv1", "hv3"), move("c", "hv4", "hv2"), move("d", "hv5", "hv6")]
    assert names(migration_waves(plan, 5)) == [["a", "d"], ["b", "c"]]


def test_a_later_move_never_overtakes_an_earlier_one_on_the_same_host():
    # c (hv3->hv1) must wait for a (hv1->hv2) even though wave 0 has room after b is placed
    plan = [move("a", "hv1", "hv2"), move("b", "hv2", "hv3"), move("c", "hv3", "hv1")]
    assert names(migration_waves(plan, 3)) == [["a"], ["b"], ["c"]]


def test_no_migrations_no_waves():
    assert migration_waves([], 2) == []


@pytest.mark.parametrize("parallel", [0, -1, True, "2", 1.5])
def test_bad_parallel_is_named(parallel):
    with pytest.raises(AnsibleFilterError, match=f"parallel must be a whole number of at least 1, got {parallel!r}"):
        migration_waves([move("a", "hv1", "hv2")], parallel)


def test_bad_migration_is_named():
    with pytest.raises(AnsibleFilterError, match=r"migrations\[1\] needs 'source' and 'destination'"):
        migration_waves([move("a", "hv1", "hv2"), {"vm": "b"}])


hosts = st.sampled_from([f"hv{n}" for n in range(5)])


@given(st.lists(st.tuples(hosts, hosts).filter(lambda p: p[0] != p[1]), max_size=25),
       st.integers(min_value=1, max_value=4))
def test_waves_are_a_safe_ordered_partition(pairs, parallel):
    plan = [move(str(n), s, d) for n, (s, d) in enumerate(pairs)]
    waves = migration_waves(plan, parallel)
    assert sorted(m["vm"] for wave in waves for m in wave) == sorted(m["vm"] for m in plan)
    position = {m["vm"]: w for w, wave in enumerate(waves) for m in wave}
    for wave in waves:
        assert 1 <= len(wave) <= parallel
        used = [h for m in wave for h in (m["source"], m["destination"])]
        assert len(used) == len(set(used))
    for i, earlier in enumerate(plan):
        for later in plan[i + 1:]:
            if {earlier["source"], earlier["destination"]} & {later["source"], later["destination"]}:
                assert position[earlier["vm"]] < position[later["vm"]]
