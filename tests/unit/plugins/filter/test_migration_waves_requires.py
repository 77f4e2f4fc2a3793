# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_waves: a migration runs in a later wave than every migration it requires."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.filter.migration_waves import migration_waves


def move(vm, source, destination, requires=None):
    return {"vm": vm, "source": source, "destination": destination, "requires": requires}


def names(waves):
    return [[m["vm"] for m in wave] for wave in waves]


@pytest.mark.parametrize("plan, parallel, waves", [
    # the planner's make-room pair: the room leaves the destination first (shared host anyway)
    ([move("room", "hv2", "hv3"), move("a", "hv1", "hv2", "room")], 2, [["room"], ["a"]]),
    ([move("room", "hv2", "hv3"), move("a", "hv1", "hv2", ["room"])], 2, [["room"], ["a"]]),
    # a requirement on hosts the move does not share still goes first
    ([move("c", "hv3", "hv4"), move("a", "hv1", "hv2", ["c"])], 2, [["c"], ["a"]]),
    ([move("b", "hv5", "hv6"), move("c", "hv3", "hv4"), move("a", "hv1", "hv2", ["b", "c"])], 3,
     [["b", "c"], ["a"]]),
    # no requirement, or one that is not in the plan: as before
    ([move("c", "hv3", "hv4"), move("a", "hv1", "hv2", [])], 2, [["c", "a"]]),
    ([move("c", "hv3", "hv4"), move("a", "hv1", "hv2", None)], 2, [["c", "a"]]),
    ([move("c", "hv3", "hv4"), move("a", "hv1", "hv2", "ghost")], 2, [["c", "a"]]),
    # migrations without the key at all
    ([{"vm": "c", "source": "hv3", "destination": "hv4"}, {"vm": "a", "source": "hv1", "destination": "hv2"}], 2,
     [["c", "a"]]),
])
def test_required_migrations_run_in_an_earlier_wave(plan, parallel, waves):
    assert names(migration_waves(plan, parallel)) == waves


def test_bad_requires_is_named():
    with pytest.raises(AnsibleFilterError, match=r"migration_waves: migrations\[1\] 'a': requires must be null"):
        migration_waves([move("c", "hv3", "hv4"), move("a", "hv1", "hv2", 7)])
