# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hard placement rules, each in one place, and the one home of the numeric tolerance.

Three kinds of rule:
- MOVABLE: may this domain move at all (exclude, cooldown, failure hold)? `blocks(domain, policy)` -> reason or None.
- PLACE: may this domain go to this host now? `rejects(domain, dest, state, policy)` -> reason or
  None, where `dest` is a state.HostState and `state` the ClusterState (placement of the others).
  `surely_rejects(domain, dest, policy, after)` is an optional cheap bound for the search's fast
  path: True only when `rejects` would refuse too (it never builds a sentence). The NUMERIC rules'
  bounds take arrays as well (`dest` a state.HostArrays, `after` an array of loads), so that the
  search tests every host at once.
- BROKEN: does this domain break a rule where it runs now (pin, anti-affinity)?
  `broken_now(name, host_name, policy, placement)` -> reason or None, for repair.

The greedy search asks the PLACE rules in order (cheapest and most often decisive first); the exact
engine turns the same rules into constraints (exact.py) and every exact plan is replayed through
`first_rejection` before it is accepted, so both engines agree on what is valid.
"""

from .history import figure, minutes
from .model import TRANSIENT
from .state import busy_demand, np

# Loads are fractions summed with math.fsum; a cheap running estimate may differ from the exact sum
# by rounding, so fast paths only reject beyond this margin and the exact check decides near a limit.
TOLERANCE = 1e-9


# ---------------------------------------------------------------- may the domain move at all

class Exclude:
    name = "exclude"

    @staticmethod
    def blocks(domain, policy):
        return "excluded by policy" if domain.name in policy.excluded else None


class Cooldown:
    name = "cooldown"

    @staticmethod
    def blocks(domain, policy):
        if domain.last_migration_time is None or policy.cooldown <= 0:
            return None
        since = (policy.now - domain.last_migration_time) / 60
        if since < policy.cooldown:
            return f"cooldown: migrated {minutes(max(since, 0))} min ago, cooldown {minutes(policy.cooldown)} min"
        return None


class FailureHold:
    """A domain whose migration failed lately is held back for failure_hold minutes, so that a migration that
    keeps failing is not tried again every run.

    A permanent failure (domain_migrate's kind: a CPU model the destination lacks, a driver or an option it
    refuses, unsafe storage), or one recorded before failures had a kind, holds the domain at once. A transient
    one (the connection lost, the job aborted at its timeout, a libvirtd restarted) holds it only once it
    repeats: the failure before it, in the same row of failures, came less than failure_hold minutes before it.
    A transient failure on its own lets the next run try again."""

    name = "failure_hold"

    @staticmethod
    def blocks(domain, policy):
        failure = domain.last_failure
        if failure is None or policy.failure_hold <= 0:
            return None
        since = (policy.now - failure.time) / 60
        if since >= policy.failure_hold:
            return None
        held = f"held back: its migration to {failure.destination} failed {minutes(max(since, 0))} min ago ({failure.error})"
        if failure.kind == TRANSIENT:
            if failure.previous is None:
                return None
            gap = (failure.time - failure.previous) / 60
            if gap >= policy.failure_hold:
                return None
            held += (f", {max(failure.count, 2)} transient failures in a row, the one before it {minutes(gap)} min "
                     "earlier")
        return f"{held}, failure_hold {minutes(policy.failure_hold)} min"


MOVABLE = (Exclude, Cooldown, FailureHold)


class Settled:
    """A move for the measure's lower terms (headroom, a forecast, memory, a should rule, balance)
    only takes a domain that has not migrated for NoReturn.RETURN_MINUTES: a domain moved lately is
    left to settle, so that the next run does not move it on (the plan moves a domain once)."""

    name = "settled"

    @staticmethod
    def blocks(domain, policy):
        if domain.last_migration_time is None:
            return None
        since = (policy.now - domain.last_migration_time) / 60
        if since < NoReturn.RETURN_MINUTES:
            return f"migrated {minutes(max(since, 0))} min ago: left to settle for {NoReturn.RETURN_MINUTES} min"
        return None


def blocker(domain, policy):
    """Why a domain may not move at all, or None."""
    for rule in MOVABLE:
        reason = rule.blocks(domain, policy)
        if reason is not None:
            return reason
    return None


# ---------------------------------------------------------------- may the domain go there

class Maintenance:
    name = "maintenance"

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return dest.maintenance

    @staticmethod
    def rejects(domain, dest, state, policy):
        return f"{dest.name} in maintenance" if dest.maintenance else None


class Pin:
    """A domain runs only on its pinned hosts (policy.hard_pin; SoftPin: the should pins)."""

    name = "pin"
    pins = "hard_pin"  # the Policy field holding {domain: hosts}
    label = "pin"

    @classmethod
    def pinned_to(cls, domain_name, policy):
        """The hosts the domain is pinned to, or None (any host)."""
        return getattr(policy, cls.pins).get(domain_name)

    @classmethod
    def allows(cls, domain_name, host_name, policy):
        allowed = cls.pinned_to(domain_name, policy)
        return allowed is None or host_name in allowed

    @classmethod
    def _hosts(cls, name, policy):
        return ", ".join(sorted(getattr(policy, cls.pins)[name]))

    @classmethod
    def rejects(cls, domain, dest, state, policy):
        if cls.allows(domain.name, dest.name, policy):
            return None
        return f"{dest.name} not in {cls.label} [{cls._hosts(domain.name, policy)}]"

    @classmethod
    def broken_now(cls, name, host_name, policy, placement):
        if cls.allows(name, host_name, policy):
            return None
        return f"{name} on {host_name}, outside its {cls.label} [{cls._hosts(name, policy)}]"


class MaxLoadCandidate:
    name = "max_load_candidate"

    @staticmethod
    def may_fit(load_after, policy):
        """False only when a (cheaply estimated) load after the move is surely too high; numbers or arrays."""
        return load_after <= policy.max_load_candidate + TOLERANCE

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return np.logical_not(MaxLoadCandidate.may_fit(after, policy))

    @staticmethod
    def most_cpu(hosts, policy):
        """The most CPU (cores) any host of `hosts` (a state.HostArrays) not in maintenance could take under
        max_load_candidate: a bound over the pool (a domain using more fits on none of them)."""
        spare = (policy.max_load_candidate - hosts.load) * hosts.cpus
        return float(np.max(spare, initial=-np.inf, where=~hosts.maintenance))

    @staticmethod
    def rejects(domain, dest, state, policy):
        after = dest.load_with(domain.cpu)
        if after > policy.max_load_candidate:
            return (f"{dest.name} load {dest.load:.2f} + {after - dest.load:.2f}"
                    f" = {after:.2f} > max_load_candidate {policy.max_load_candidate}")
        return None


class Memory:
    name = "memory"

    @staticmethod
    def needed_mb(domain, policy):
        return domain.memory_mb + policy.memory_reserve_mb

    @staticmethod
    def fits(free_mb, memory_mb, policy):
        """Whether memory_mb fits in free_mb with the reserve kept; numbers or arrays."""
        return free_mb >= memory_mb + policy.memory_reserve_mb

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return np.logical_not(Memory.fits(dest.free_mb, domain.memory_mb, policy))

    @staticmethod
    def most_memory(hosts, policy):
        """The most memory (MB) any host of `hosts` (a state.HostArrays) not in maintenance could take with
        the reserve kept: a bound over the pool."""
        return float(np.max(hosts.free_mb, initial=-np.inf, where=~hosts.maintenance)) - policy.memory_reserve_mb

    @staticmethod
    def rejects(domain, dest, state, policy):
        if not Memory.fits(dest.free_mb, domain.memory_mb, policy):
            return (f"{dest.name} memory {dest.free_mb:g} MB free < {domain.memory_mb:g}"
                    f" + reserve {policy.memory_reserve_mb:g}")
        return None


class MaxMemoryCandidate:
    """With memory_threshold set, a destination's memory load after a move stays at most
    max_memory_candidate (memory_threshold when null), so no move can make a host shed memory."""

    name = "max_memory_candidate"

    @staticmethod
    def may_fit(used_after_mb, memory_mb, policy):
        """False only when the memory used after the move is surely too much; numbers or arrays."""
        if policy.memory_candidate is None:
            return True
        return used_after_mb <= (policy.memory_candidate + TOLERANCE) * memory_mb

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return np.logical_not(MaxMemoryCandidate.may_fit(dest.used_mb + domain.memory_mb, dest.memory_mb, policy))

    @staticmethod
    def rejects(domain, dest, state, policy):
        if policy.memory_candidate is None:
            return None
        after = dest.memory_load_with(domain.memory_mb)
        if after > policy.memory_candidate:
            return (f"{dest.name} memory load {dest.memory_load:.2f} + {after - dest.memory_load:.2f}"
                    f" = {after:.2f} > max_memory_candidate {policy.memory_candidate}")
        return None


class ForecastCandidate:
    """With policy.predictive, a destination's forecast load after a move (history.level of the
    domains that would run there) stays at most max_load_candidate, so no move makes a host that
    must shed for its forecast."""

    name = "forecast"

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return False  # needs the forecast sum; decided by rejects

    @staticmethod
    def rejects(domain, dest, state, policy):
        if not policy.predictive:
            return None
        after = dest.forecast_with(domain)
        if after > policy.max_load_candidate + TOLERANCE:
            return (f"{dest.name} forecast {dest.forecast:.2f} + {after - dest.forecast:.2f}"
                    f" = {after:.2f} > max_load_candidate {policy.max_load_candidate}")
        return None


class BusyCandidate:
    """A destination's busy load after a move (the busy demand, history.busy, of the domains that would
    run there, over its CPUs) stays at most load_threshold + (load_threshold - max_load_candidate): as
    far above the threshold as max_load_candidate keeps the load now below it. Busy demand is what
    each domain uses at times (the 90th percentile of its samples); a host whose domains add up past
    that line is where a few of them rising in the same few minutes take it over the threshold.
    Without samples a domain's busy demand is its use now, so the rule never binds before
    max_load_candidate does. It does not hold a domain on a maintenance host or one breaking a must rule
    where it runs (exempt): emptying the one and repairing the other rank above any load in the measure.
    The exact engine keeps the line for every domain (stricter), and its plan stands only if it is better."""

    name = "busy"

    @staticmethod
    def limit(policy):
        return 2 * policy.load_threshold - policy.max_load_candidate

    @staticmethod
    def exempt(domain, state, policy):
        source = state.placement.get(domain.name)
        return source is not None and (state[source].maintenance
                                       or rule_break(domain.name, source, policy, state.placement) is not None)

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return False  # needs the busy sum; decided by rejects

    @staticmethod
    def rejects(domain, dest, state, policy):
        after = dest.busy_load + busy_demand(domain) / dest.cpus
        limit = BusyCandidate.limit(policy)
        if after > limit + TOLERANCE and not BusyCandidate.exempt(domain, state, policy):
            return (f"{dest.name} busy load {dest.busy_load:.2f} + {after - dest.busy_load:.2f} = {after:.2f}"
                    f" > 2 x load_threshold - max_load_candidate = {figure(limit, limit)}")
        return None


class NoReturn:
    """No move sends a domain back to the host it left less than RETURN_MINUTES ago (its
    last_migration): that would be a ping-pong, even after its cooldown."""

    name = "no_return"
    RETURN_MINUTES = 120

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return False  # rare: decided by rejects

    @staticmethod
    def rejects(domain, dest, state, policy):
        if (domain.last_migration_source != dest.name or domain.last_migration_time is None
                or policy.now - domain.last_migration_time >= NoReturn.RETURN_MINUTES * 60):
            return None
        return (f"{domain.name} left {dest.name} {minutes(max(0.0, policy.now - domain.last_migration_time) / 60)}"
                f" min ago (< {NoReturn.RETURN_MINUTES} min)")


class MaxVmPerHost:
    name = "max_vm_per_host"

    @staticmethod
    def fits(running_after, policy):
        """Whether a host may run running_after domains; numbers or arrays."""
        return True if policy.max_vm_per_host is None else running_after <= policy.max_vm_per_host

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return np.logical_not(MaxVmPerHost.fits(dest.running + 1, policy))

    @staticmethod
    def rejects(domain, dest, state, policy):
        if MaxVmPerHost.surely_rejects(domain, dest, policy, None):
            return f"{dest.name} runs {dest.running} domains, max_vm_per_host {policy.max_vm_per_host}"
        return None


class AntiAffinity:
    """Members of a group never share a host (policy.groups_of; SoftAntiAffinity: the should groups)."""

    name = "anti_affinity"
    groups = "groups_of"  # the Policy field holding {domain: its groups}
    label = "anti-affinity"

    @classmethod
    def mates_on(cls, name, host_name, policy, placement):
        """(group, members of it other than `name` placed on host_name), first group with any."""
        for group in getattr(policy, cls.groups).get(name, ()):
            there = [other for other in group if other != name and placement.get(other) == host_name]
            if there:
                return group, there
        return None, ()

    @staticmethod
    def surely_rejects(domain, dest, policy, after):
        return False  # needs the placement; decided by rejects

    @classmethod
    def rejects(cls, domain, dest, state, policy):
        group, there = cls.mates_on(domain.name, dest.name, policy, state.placement)
        if there:
            return f"{dest.name} {cls.label} group [{', '.join(group)}]: {', '.join(there)} runs there"
        return None

    @classmethod
    def broken_now(cls, name, host_name, policy, placement):
        group, there = cls.mates_on(name, host_name, policy, placement)
        if there:
            return f"{name} on {host_name} with {', '.join(there)}, {cls.label} group [{', '.join(group)}]"
        return None


PLACE = (Maintenance, Pin, MaxLoadCandidate, Memory, MaxMemoryCandidate, MaxVmPerHost, AntiAffinity,
         ForecastCandidate, BusyCandidate, NoReturn)
# The numeric rules, in the order a search's fast path tests them.
NUMERIC = (MaxLoadCandidate, Memory, MaxMemoryCandidate, MaxVmPerHost)
BROKEN = (Pin, AntiAffinity)


# ---------------------------------------------------------------- should rules
#
# A `should` rule is kept whenever a valid plan keeps it: the search tries the destinations that keep
# every should rule first, and takes one that breaks one only when no other fits (the move's reason
# then says which). Breaks count in the measure's term soft_rule_breaks, below overload.

class SoftPin(Pin):
    name = "pin (should)"
    pins = "soft_pin"
    label = "should-pin"


class SoftAntiAffinity(AntiAffinity):
    name = "anti_affinity (should)"
    groups = "soft_groups_of"
    label = "should-anti-affinity"


SOFT = (SoftPin, SoftAntiAffinity)


def soft_rejection(domain, dest, state, policy):
    """Why moving `domain` onto `dest` would break a should rule, or None."""
    if not has_soft_rules(domain.name, policy):
        return None
    for rule in SOFT:
        reason = rule.rejects(domain, dest, state, policy)
        if reason is not None:
            return reason
    return None


def soft_break(name, host_name, policy, placement):
    """Why a running domain breaks a should rule where it runs now, or None."""
    return _first_break(SOFT, name, host_name, policy, placement)


def has_soft_rules(name, policy):
    return name in policy.soft_pin or name in policy.soft_groups_of


def first_rejection(domain, dest, state, policy):
    """(rule name, reason) of the first PLACE rule that refuses `domain` onto `dest`, or None."""
    if dest.name == state.placement.get(domain.name):
        return "same_host", f"{dest.name} is where it runs"
    for rule in PLACE:
        reason = rule.rejects(domain, dest, state, policy)
        if reason is not None:
            return rule.name, reason
    return None


def rule_break(name, host_name, policy, placement):
    """Why a running domain breaks a pin or an anti-affinity group where it runs now, or None.

    The PLACE rules keep a plan from creating such a break; this finds the ones a plan starts with
    (a manual migration, an HA restart, a rule added later), for the planner to repair.
    """
    return _first_break(BROKEN, name, host_name, policy, placement)


def _first_break(kinds, name, host_name, policy, placement):
    for rule in kinds:
        reason = rule.broken_now(name, host_name, policy, placement)
        if reason is not None:
            return reason
    return None


def has_rules(name, policy):
    """Whether any BROKEN rule names this domain (the others cannot break)."""
    return name in policy.hard_pin or name in policy.groups_of
