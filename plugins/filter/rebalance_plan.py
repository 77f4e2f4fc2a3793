# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.rebalance_plan: plan live migrations for a pool (docs in rebalance_plan.yml)."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

from ansible_collections.xen.drs.plugins.plugin_utils.placement import PlacementError, plan


def rebalance_plan(cluster, policy=None):
    """Validate the argument types, then let the placement policy decide."""
    if not is_sequence(cluster):
        raise AnsibleFilterError(
            f"rebalance_plan: the input must be a list of hosts, got {type(cluster).__name__}")
    if policy is not None and not isinstance(policy, Mapping):
        raise AnsibleFilterError(
            f"rebalance_plan: the policy must be a mapping, got {type(policy).__name__}")
    try:
        return plan(cluster, policy)
    except PlacementError as e:
        raise AnsibleFilterError(f"rebalance_plan: {e}") from e


class FilterModule:
    """xen.drs placement filters."""

    def filters(self):
        return {"rebalance_plan": rebalance_plan}
