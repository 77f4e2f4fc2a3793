# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One small check per placement rule.

Each check looks at one proposed move (a domain onto a destination, in the predicted state) and
returns None when the rule allows it, or a short reason naming the destination and the numbers.
The planner asks them in RULES order, cheapest and most often decisive first.
"""

from .history import minutes


def maintenance_destination(move, policy, placement):
    if move.dest.maintenance:
        return f"{move.dest.name} in maintenance"
    return None


def pin(move, policy, placement):
    allowed = policy.pin.get(move.domain.name)
    if allowed is not None and move.dest.name not in allowed:
        return f"{move.dest.name} not in pin [{', '.join(sorted(allowed))}]"
    return None


def max_load_candidate(move, policy, placement):
    if move.dest_load_after > policy.max_load_candidate:
        return (f"{move.dest.name} load {move.dest.load:.2f} + {move.dest_load_after - move.dest.load:.2f}"
                f" = {move.dest_load_after:.2f} > max_load_candidate {policy.max_load_candidate}")
    return None


def memory_fit(move, policy, placement):
    needed = move.domain.memory_mb + policy.memory_reserve_mb
    if move.dest.free_mb < needed:
        return (f"{move.dest.name} memory {move.dest.free_mb:g} MB free < {move.domain.memory_mb:g}"
                f" + reserve {policy.memory_reserve_mb:g}")
    return None


def max_vm_per_host(move, policy, placement):
    limit = policy.max_vm_per_host
    if limit is not None and move.dest.running + 1 > limit:
        return f"{move.dest.name} runs {move.dest.running} domains, max_vm_per_host {limit}"
    return None


def anti_affinity(move, policy, placement):
    for group in policy.groups_of.get(move.domain.name, ()):
        there = [name for name in group if name != move.domain.name and placement.get(name) == move.dest.name]
        if there:
            return f"{move.dest.name} anti-affinity group [{', '.join(group)}]: {', '.join(there)} runs there"
    return None


RULES = (
    ("maintenance", maintenance_destination),
    ("pin", pin),
    ("max_load_candidate", max_load_candidate),
    ("memory", memory_fit),
    ("max_vm_per_host", max_vm_per_host),
    ("anti_affinity", anti_affinity),
)


def first_violation(move, policy, placement):
    """(rule, reason) of the first rule that rejects the move, or None when every rule allows it."""
    for rule, check in RULES:
        reason = check(move, policy, placement)
        if reason is not None:
            return rule, reason
    return None


def rule_break(name, host_name, policy, placement):
    """Why a running domain breaks a pin or an anti-affinity group where it runs now, or None.

    The move rules above keep a plan from creating such a break; this finds the ones a plan starts
    with (a manual migration, an HA restart, a rule added later), for the planner to repair.
    """
    allowed = policy.pin.get(name)
    if allowed is not None and host_name not in allowed:
        return f"{name} on {host_name}, outside its pin [{', '.join(sorted(allowed))}]"
    for group in policy.groups_of.get(name, ()):
        there = [other for other in group if other != name and placement.get(other) == host_name]
        if there:
            return f"{name} on {host_name} with {', '.join(there)}, anti-affinity group [{', '.join(group)}]"
    return None


def cooldown_reason(domain, policy):
    """Why a domain may not move yet because it moved recently, or None."""
    if domain.last_migration_time is None or policy.cooldown <= 0:
        return None
    since = (policy.now - domain.last_migration_time) / 60
    if since < policy.cooldown:
        return f"cooldown: migrated {minutes(max(since, 0))} min ago, cooldown {minutes(policy.cooldown)} min"
    return None
