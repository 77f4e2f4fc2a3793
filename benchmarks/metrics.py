"""One function that scores any planner's migrations the same way: apply them, then measure."""
import statistics

from rules import Placement


def evaluate(cluster, migrations, policy):
    """Apply ``migrations`` (dicts with ``vm`` and ``destination``) in order and measure the result.

    Loads are predicted planning loads (guest CPU over host cores). A host is overloaded when its
    load is above ``load_threshold``; every scenario host is sustained-overloaded exactly when
    that holds before planning (scenarios.py guarantees it). Rule breaks are counted, not refused,
    so a planner that breaks a rule is visible in the table rather than silently corrected.
    """
    placement = Placement(cluster, policy)
    threshold = placement.policy["load_threshold"]
    before = placement.loads()
    violations = []
    memory_mb = 0
    for migration in migrations:
        vm, dest = migration["vm"], migration["destination"]
        if vm not in placement.domains or dest not in placement.hosts:
            violations.append("%s -> %s: unknown domain or host" % (vm, dest))
            continue
        reason = placement.why_not(vm, dest)
        if reason:
            violations.append("%s -> %s: %s" % (vm, dest, reason))
        memory_mb += placement.domains[vm]["memory_mb"]
        placement.move(vm, dest)
    after = placement.loads()
    return {
        "migrations": len(migrations),
        "overloaded_before": sum(load > threshold for load in before.values()),
        "overloaded_before_hosts": sorted(name for name, load in before.items() if load > threshold),
        "overloaded": sum(load > threshold for load in after.values()),
        "overloaded_hosts": sorted(name for name, load in after.items() if load > threshold),
        "excess": sum(max(0.0, load - threshold) for load in after.values()),
        "peak": max(after.values()),
        "stdev": statistics.pstdev(after.values()),
        "memory_moved_gib": memory_mb / 1024,
        "violations": violations,
    }
