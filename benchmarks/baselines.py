"""Two baseline planners, written from the public descriptions of their algorithms (no code reused).

Both take the xen.drs input (cluster, policy) and return a list of migrations
``{vm, uuid, source, destination}``. Both obey the same hard rules as xen.drs (memory fit with
reserve, anti-affinity, pins, exclusions, cooldown, maintenance, VM count per host, at most
``max_migrations`` moves, each VM moved at most once per plan; see rules.py), so the benchmark
compares the balancing algorithms and not the rule sets. Like every planner here they see the
planning load (guests' CPU over host cores) only; neither has xen.drs's sustained-overload filter,
which is how their published versions work too (they react to current or averaged usage).
"""
import bisect

from rules import Placement


class _LoadIndex:
    """Hosts kept sorted by current load, so the calmest or busiest host is found without a scan."""

    def __init__(self, placement, hosts):
        self.placement = placement
        self.key = {name: (placement.load(name), name) for name in hosts}
        self.items = sorted(self.key.values())

    def update(self, name):
        old = self.key[name]
        del self.items[bisect.bisect_left(self.items, old)]
        self.key[name] = (self.placement.load(name), name)
        bisect.insort(self.items, self.key[name])

    def busiest(self):
        return self.items[-1]

    def calmest(self):
        return self.items[0]


def _migration(placement, vm, dest):
    source = placement.location[vm]
    placement.move(vm, dest)
    return {"vm": vm, "uuid": placement.domains[vm].get("uuid"), "source": source, "destination": dest}


def xo_performance_plan(cluster, policy=None, critical=None):
    """Xen Orchestra load balancer, performance plan (default "conservative" submode).

    As Xen Orchestra's documentation and load-balancer plugin describe it: from the user's
    critical CPU threshold (default 90 %) the plan derives a high mark (85 % of critical) and a low
    mark (65 % of critical). Hosts at or above the high mark are relieved, most loaded first. Their
    VMs are taken by descending CPU use; each goes to the lowest-CPU host, and only if that host
    stays under the low mark with it; a host stops shedding once it is at or under the low mark.
    Adaptations: ``critical`` defaults to ``load_threshold / 0.85`` so the high mark is xen.drs's
    threshold and "overloaded" means the same for every planner (low mark then 0.574 for the
    default 0.75); XO averages host stats over 30 minutes, here it sees the planning load like
    everyone else; "lowest-CPU host" means the lowest one the shared rules allow (memory fit etc.).
    """
    placement = Placement(cluster, policy)
    critical = placement.policy["load_threshold"] / 0.85 if critical is None else critical
    high, low = critical * 0.85, critical * 0.65
    budget = placement.policy["max_migrations"]
    hosts = [name for name in placement.hosts if name not in placement.maintenance]
    index = _LoadIndex(placement, hosts)
    migrations = []
    for source in sorted((h for h in hosts if placement.load(h) >= high), key=placement.load, reverse=True):
        for vm in sorted(placement.members[source], key=lambda v: (-placement.domains[v]["cpu"], v)):
            if placement.load(source) <= low or len(migrations) >= budget:
                break
            if placement.why_not_movable(vm):
                continue
            dest = _calmest_accepting(placement, index, vm, stop_above=low)
            if dest is None or placement.load_with(dest, vm) >= low:
                continue
            migrations.append(_migration(placement, vm, dest))
            index.update(source)
            index.update(dest)
    return migrations


def proxlb_balance(cluster, policy=None, balanciness=0.10):
    """ProxLB, CPU balancing on used resources.

    From ProxLB's README and issue discussions: while the spread between the most and the least
    used node exceeds ``balanciness`` (default 10 percentage points), move the most used guest of
    the most used node to the node with the most free resources, then re-evaluate. A move is only
    made if it does not make the balance worse (the destination ends below the source's load
    before the move, ProxLB's fix for issue #128). Assumed for memory fit: if the least used node
    cannot take the guest, the next least used one that can is chosen; if the most used node has
    no guest that can go anywhere useful, balancing stops (ProxLB stops when nothing improves).
    """
    placement = Placement(cluster, policy)
    budget = placement.policy["max_migrations"]
    hosts = [name for name in placement.hosts if name not in placement.maintenance]
    index = _LoadIndex(placement, hosts)
    migrations = []
    while len(migrations) < budget:
        top_load, source = index.busiest()
        if top_load - index.calmest()[0] <= balanciness:
            break
        chosen = None
        for vm in sorted(placement.members[source], key=lambda v: (-placement.domains[v]["cpu"], v)):
            if placement.why_not_movable(vm):
                continue
            dest = _calmest_accepting(placement, index, vm, stop_above=top_load)
            if dest is not None and placement.load_with(dest, vm) < top_load:
                chosen = (vm, dest)
                break
        if chosen is None:
            break
        migrations.append(_migration(placement, *chosen))
        index.update(source)
        index.update(chosen[1])
    return migrations


def _calmest_accepting(placement, index, vm, stop_above):
    """The least loaded host (below ``stop_above``) that the shared rules allow for ``vm``."""
    for load, dest in index.items:
        if load >= stop_above:
            return None
        if placement.why_not_to(vm, dest) is None:
            return dest
    return None


PLANNERS = {
    "xo-performance": xo_performance_plan,
    "proxlb": proxlb_balance,
}
