"""The hard placement rules every planner in the benchmark obeys, and a mutable view to check them.

The baselines, the exact solver and the metrics all use this one module, so a comparison measures
the balancing algorithms, not different rule sets. The rules follow the xen.drs data contract:
memory fit with a reserve, anti-affinity, pins, exclusions, cooldown after a migration, maintenance
hosts and an optional VM count per host. ``max_load_candidate`` is not a hard rule here: it is
xen.drs's (and the exact solver's) way of choosing destinations, which the baselines replace with
their own marks.
"""
import math
import time

# The policy's own defaults (run.py passes every key explicitly anyway); the policy package is
# importable as `placement` because run.py and the tests put plugins/plugin_utils on sys.path.
from placement import DEFAULTS as CONTRACT_DEFAULTS  # pylint: disable=import-error


def full_policy(policy=None):
    """The contract defaults overlaid with ``policy``; ``now`` defaults to the wall clock."""
    merged = dict(CONTRACT_DEFAULTS)
    merged.update(policy or {})
    if merged["now"] is None:
        merged["now"] = time.time()
    return merged


def running(host):
    return [d for d in host["domains"] if d.get("state", "running") == "running"]


def host_load(host):
    """Planning load: running guests' CPU (cores) over the host's cores."""
    return sum(d["cpu"] for d in running(host)) / host["cpus"]


class Placement:
    """Where every running domain is while a plan is being built or replayed.

    Memory: a destination must keep ``memory_reserve_mb`` free after the move, counting memory
    taken in by earlier moves of the plan and memory freed by domains that left it earlier in the
    plan (the xen.drs policy's reading: the plan is executed in order).
    """

    def __init__(self, cluster, policy=None):
        self.policy = full_policy(policy)
        self.hosts = {h["name"]: h for h in cluster}
        self.domains = {}
        self.location = {}
        self.cpu_used = {}
        self.taken_mb = {}  # memory taken in minus memory freed by the plan so far
        self.members = {}
        for host in cluster:
            name = host["name"]
            self.cpu_used[name] = 0.0
            self.taken_mb[name] = 0
            self.members[name] = set()
            for dom in running(host):
                self.domains[dom["name"]] = dom
                self.location[dom["name"]] = name
                self.members[name].add(dom["name"])
                self.cpu_used[name] += dom["cpu"]
        self.maintenance = set(self.policy["maintenance"]) | {h["name"] for h in cluster if h.get("maintenance")}
        self.excluded = set(self.policy["exclude"])
        self.pins = {vm: set(hosts) for vm, hosts in self.policy["pin"].items()}
        self.groups_of = {}
        for group in self.policy["anti_affinity"]:
            for vm in group:
                self.groups_of.setdefault(vm, []).append(set(group))
        self.moved_vms = set()

    def load(self, host):
        return self.cpu_used[host] / self.hosts[host]["cpus"]

    def load_with(self, host, vm):
        """Load of ``host`` if ``vm`` were added to it."""
        return (self.cpu_used[host] + self.domains[vm]["cpu"]) / self.hosts[host]["cpus"]

    def loads(self):
        """Each host's load from the domains it holds now, summed exactly (math.fsum): the measure of a
        result does not depend on the order its moves were applied in (cpu_used, kept step by step
        for the planners' checks, can end 1e-16 above a threshold that the exact sum meets)."""
        return {name: math.fsum(self.domains[vm]["cpu"] for vm in self.members[name]) / self.hosts[name]["cpus"]
                for name in self.hosts if name not in self.maintenance}

    def free_mb(self, host):
        """Memory a migration may still use on ``host``, reserve already deducted."""
        return self.hosts[host]["memory_free_mb"] - self.taken_mb[host] - self.policy["memory_reserve_mb"]

    def why_not_movable(self, vm):
        """None if ``vm`` may migrate now, else the reason."""
        if vm not in self.domains:
            return "not running"
        if vm in self.excluded:
            return "excluded"
        if vm in self.moved_vms:
            return "already moved in this plan"
        last = self.domains[vm].get("last_migration")
        if last and last.get("time", 0) > self.policy["now"] - self.policy["cooldown"] * 60:
            return "in cooldown"
        return None

    def why_not_to(self, vm, dest):
        """None if ``vm`` may be placed on ``dest`` given everything placed so far, else the reason."""
        if dest not in self.hosts:
            return "unknown host %s" % dest
        if dest == self.location[vm]:
            return "already there"
        if dest in self.maintenance:
            return "%s in maintenance" % dest
        if vm in self.pins and dest not in self.pins[vm]:
            return "pinned elsewhere"
        if self.domains[vm]["memory_mb"] > self.free_mb(dest):
            return "memory on %s" % dest
        limit = self.policy["max_vm_per_host"]
        if limit is not None and len(self.members[dest]) + 1 > limit:
            return "max_vm_per_host on %s" % dest
        for group in self.groups_of.get(vm, ()):
            if any(self.location.get(other) == dest for other in group if other != vm):
                return "anti-affinity on %s" % dest
        return None

    def why_not(self, vm, dest):
        return self.why_not_movable(vm) or self.why_not_to(vm, dest)

    def move(self, vm, dest):
        source = self.location[vm]
        dom = self.domains[vm]
        self.cpu_used[source] -= dom["cpu"]
        self.members[source].discard(vm)
        self.cpu_used[dest] += dom["cpu"]
        self.members[dest].add(vm)
        self.taken_mb[source] -= dom["memory_mb"]
        self.taken_mb[dest] += dom["memory_mb"]
        self.location[vm] = dest
        self.moved_vms.add(vm)
