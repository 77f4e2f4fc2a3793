# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for what a run does with its plan (docs: one <filter>.yml per filter beside this file).

Each filter checks its arguments' types, calls plugin_utils/placement/execution.py, and turns its
errors into AnsibleFilterError; the playbooks' tasks call them and the templates only print.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

from ansible_collections.xen.drs.plugins.plugin_utils.placement import execution


def _call(name, function, *args):
    try:
        return function(*args)
    except execution.ExecutionError as e:
        raise AnsibleFilterError(f"{name}: {e}") from e


def _check(name, what, value, kind):
    ok = isinstance(value, Mapping) if kind == "mapping" else is_sequence(value)
    if not ok:
        raise AnsibleFilterError(f"{name}: {what} must be a {'mapping' if kind == 'mapping' else 'list'}, "
                                 f"got {type(value).__name__}")


def evacuation_policy(policy, cluster, host=None):
    """The policy of a run that empties host (the policy unchanged when host is None)."""
    if policy is not None:
        _check("evacuation_policy", "the policy", policy, "mapping")
    _check("evacuation_policy", "the cluster", cluster, "list")
    return _call("evacuation_policy", execution.evacuation_policy, policy, cluster, host)


def runnable(move, outcomes, heartbeats=None):
    """Whether a move may run: every migration it requires has a succeeded outcome, and no heartbeat of its
    source or destination failed."""
    _check("runnable", "the move", move, "mapping")
    _check("runnable", "the outcomes", outcomes, "list")
    if heartbeats is not None:
        _check("runnable", "the heartbeats", heartbeats, "mapping")
    return _call("runnable", execution.runnable, move, outcomes, heartbeats)


def outcome_status(result, check_mode=False):
    """The status of a migration from the task result registered for it."""
    _check("outcome_status", "the result", result, "mapping")
    return _call("outcome_status", execution.outcome_status, result, check_mode)


def outcome_msg(result, move, outcomes, heartbeats=None):
    """The message of a migration's outcome: why it did not run, or the migration's own message."""
    _check("outcome_msg", "the result", result, "mapping")
    _check("outcome_msg", "the move", move, "mapping")
    _check("outcome_msg", "the outcomes", outcomes, "list")
    if heartbeats is not None:
        _check("outcome_msg", "the heartbeats", heartbeats, "mapping")
    return _call("outcome_msg", execution.outcome_msg, result, move, outcomes, heartbeats)


def failed_outcomes(outcomes):
    """The outcomes whose domain stays on its source."""
    _check("failed_outcomes", "the outcomes", outcomes, "list")
    return _call("failed_outcomes", execution.failed_outcomes, outcomes)


def moved_outcomes(outcomes):
    """The outcomes whose domain left its source in this run (or would have, in check mode)."""
    _check("moved_outcomes", "the outcomes", outcomes, "list")
    return _call("moved_outcomes", execution.moved_outcomes, outcomes)


def reconcile_records(infos):
    """The migration records each answered host lacks, and the hosts with the pool's newest record per domain."""
    _check("reconcile_records", "the hosts' information", infos, "mapping")
    return _call("reconcile_records", execution.reconcile_records, infos)


def loads_after(plan, outcomes):
    """Each planned host's load after the moves that really happened."""
    _check("loads_after", "the plan", plan, "mapping")
    _check("loads_after", "the outcomes", outcomes, "list")
    return _call("loads_after", execution.loads_after, plan, outcomes)


class FilterModule:
    """xen.drs run execution filters."""

    def filters(self):
        return {
            "evacuation_policy": evacuation_policy,
            "runnable": runnable,
            "outcome_status": outcome_status,
            "outcome_msg": outcome_msg,
            "failed_outcomes": failed_outcomes,
            "moved_outcomes": moved_outcomes,
            "loads_after": loads_after,
            "reconcile_records": reconcile_records,
        }
