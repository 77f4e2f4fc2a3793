# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The greedy engine's destination search: the best host the rules allow, and make-room chains.

Every refusal is written to the decision log when it happens (explain.DecisionLog), with the rules
that refused and their numbers at that moment, so the plan's `skipped` says what really happened.
"""

import math
from bisect import bisect_right
from dataclasses import dataclass

from . import objective, rules
from .model import Domain
from .state import HostState, busy_demand


ROOM_HOSTS = 64  # make_room looks at this many of the calmest eligible hosts at most
FEW_ROOMY = 64  # hosts that may take a domain under max_load_candidate, scanned whole below this many


@dataclass(frozen=True)
class Room:
    """Room for `domain` on `host`: `room` first moves from `host` to `room_dest`."""

    room: Domain
    host: HostState
    room_dest: HostState
    peak: float


class Search:
    def __init__(self, state, policy, log):
        self.state = state
        self.policy = policy
        self.log = log
        # A refused search is remembered until a host gains room (state.opened grows): without
        # that, hosts only fill up, so the same search would be refused again.
        self.refused_at = {}  # domain name -> len(state.opened) when its search was refused
        self.no_room_at = {}  # the same for make_room: without an opening it finds no room again
        self.room_stuck_at = {}  # and for a would-be room that found no destination of its own
        # per host, the most CPU and memory one of its domains could free (a bound for make_room)
        self.biggest = {h.name: (max((d.cpu for d in h.running), default=0.0),
                                 max((d.memory_mb for d in h.running), default=0.0)) for h in state.hosts}

    def allowed(self, domain, dest, keep_soft=False):
        if rules.first_rejection(domain, dest, self.state, self.policy) is not None:
            return False
        return not keep_soft or rules.soft_rejection(domain, dest, self.state, self.policy) is None

    def best_destination(self, domain, source):
        """The best destination every rule allows, or None (and the refusal is logged)."""
        refused_at = self.refused_at.get(domain.name)
        if refused_at is None:
            best = self._scan(domain, source, None)
        else:
            opened = {self.state[name] for name in self.state.opened[refused_at:]}
            best = self._scan(domain, source, opened)
        if best is None:
            if refused_at is None:  # the refusal as it first happened (explaining costs a scan of every host)
                self.log.no_destination(domain, self.why_no_destination(domain, source))
            self.refused_at[domain.name] = len(self.state.opened)
        return best

    def best_keeping(self, domain, source):
        """The best destination that keeps every rule, should rules included, or None (not logged)."""
        return self._scan_rules(domain, source, None, keep_soft=True)

    def _scan(self, domain, source, only):
        """Best allowed destination, among `only` or all hosts: one that keeps the domain's should
        rules if any does (rules.SOFT), else the best the hard rules allow."""
        if rules.has_soft_rules(domain.name, self.policy):
            best = self._scan_rules(domain, source, only, keep_soft=True)
            if best is not None:
                return best
        return self._scan_rules(domain, source, only, keep_soft=False)

    def _scan_rules(self, domain, source, only, keep_soft):
        """Best allowed destination by objective.destination_rank, among `only` or all hosts.

        Hosts are bucketed by CPU count and each bucket is sorted by busy load, so within a bucket the
        busy load after the move grows along the list: stop at the first host that cannot beat the best.
        """
        policy = self.policy
        best_key, best = None, None
        if only is None:
            buckets = [self._bucket(cpus, bucket, domain) for cpus, bucket in self.state.by_busy.items()]
        else:
            buckets = [(sorted((s.busy_load, s.name) for s in only), False)]
        # The cheap tests that can matter here: the index holds no maintenance host; a pin or a VM limit
        # matters only when there is one.
        cheap = [rules.MaxLoadCandidate.surely_rejects, rules.Memory.surely_rejects]
        if domain.name in policy.hard_pin:
            cheap.append(rules.Pin.surely_rejects)
        if policy.max_vm_per_host is not None:
            cheap.append(rules.MaxVmPerHost.surely_rejects)
        if policy.memory_candidate is not None:
            cheap.append(rules.MaxMemoryCandidate.surely_rejects)
        if only is not None:
            cheap.append(rules.Maintenance.surely_rejects)
        busy = busy_demand(domain)
        # along a sorted bucket the busy load after the move only grows: past the busy line every host refuses
        busy_line = (None if rules.BusyCandidate.exempt(domain, self.state, policy)
                     else rules.BusyCandidate.limit(policy) + rules.TOLERANCE)
        for bucket, sorted_scan in buckets:
            for busy_load, name in bucket:
                dest = self.state[name]
                busy_after = busy_load + busy / dest.cpus
                if sorted_scan and ((best_key is not None and busy_after > best_key[0])
                                    or (busy_line is not None and busy_after > busy_line)):
                    break
                if name == source.name:
                    continue
                after = dest.load + domain.cpu / dest.cpus
                for test in cheap:
                    if test(domain, dest, policy, after):
                        break
                else:
                    test = None
                if test is not None:
                    continue
                key = objective.destination_rank(busy_after, after, dest)
                if best_key is not None and key >= best_key:
                    continue
                if not self.allowed(domain, dest, keep_soft):
                    continue
                best_key, best = key, dest
        return best

    def _bucket(self, cpus, by_busy, domain):
        """(hosts to scan, whether they are in busy-load order) for one CPU-count bucket: the hosts whose load
        may still take the domain under max_load_candidate, by load, when they are few (scanned whole), else
        the bucket by busy load (scanned until no later host can rank better or pass the busy line)."""
        by_load = self.state.by_load[cpus]
        bound = self.policy.max_load_candidate + 2 * rules.TOLERANCE - domain.cpu / cpus  # a superset: cheap tests decide
        roomy = bisect_right(by_load, (bound, "\U0010ffff"))
        if roomy <= FEW_ROOMY:
            return [(self.state[name].busy_load, name) for _load, name in by_load[:roomy]], False
        return by_busy, True

    def make_room(self, domain, source, already_moved):
        """The best Room letting `domain` onto a host that refuses it now, or None.

        The room is a movable domain on a host under the threshold, moving to its own best
        destination, after which every rule allows `domain` onto that host
        (objective.room_rank chooses among them).
        """
        policy, state = self.policy, self.state
        if self.no_room_at.get(domain.name) == len(state.opened):
            return None
        limit = policy.max_load_candidate + rules.TOLERANCE
        need_mb = rules.Memory.needed_mb(domain, policy)
        # Every pair (host, room) that passes the cheap tests, best-first by the load the host
        # would have (a lower bound of the pair's peak): the exact checks stop at the first pair
        # that can no longer beat the best found.
        hosts = []
        for host in state.hosts:
            target = state[host.name]
            biggest_cpu, biggest_mb = self.biggest[host.name]
            if (target is source or target.maintenance or target.load > policy.load_threshold
                    or target.load + (domain.cpu - biggest_cpu) / target.cpus > limit
                    or target.free_mb + biggest_mb < need_mb
                    or not rules.Pin.allows(domain.name, host.name, policy)):
                continue
            hosts.append((target.load, host.name, host, target))
        # In a big pool only the calmest hosts are looked at (the search is hosts x domains).
        hosts = sorted(hosts)[:ROOM_HOSTS] if len(hosts) > ROOM_HOSTS else hosts
        pairs = []
        for _load, _name, host, target in hosts:
            for room in host.running:
                # the load and memory once room has left and domain arrived
                estimate = target.load + (domain.cpu - room.cpu) / target.cpus
                if (estimate > limit or target.free_mb + room.memory_mb < need_mb
                        or state.placement.get(room.name) != host.name
                        or room.name in already_moved or rules.blocker(room, policy) is not None):
                    continue
                pairs.append((estimate, room.memory_mb, host.name, room.name, room, target))
        pairs.sort(key=lambda pair: pair[:4])
        best_key, best = None, None
        for estimate, _memory, host_name, _name, room, target in pairs:
            if best_key is not None and estimate > best_key[0] + rules.TOLERANCE:
                break
            if self.room_stuck_at.get(room.name) == len(state.opened):
                continue  # it found no destination, and no host has gained room since
            with state.lifted(room) as vacated:
                after = vacated.load_with(domain.cpu)
                refused = rules.first_rejection(domain, vacated, state, policy)
            if refused or (best_key is not None and (after, room.memory_mb) > best_key[:2]):
                continue
            room_dest = self._scan(room, target, None)
            if room_dest is None:
                self.room_stuck_at[room.name] = len(state.opened)
                continue
            key = objective.room_rank(max(after, room_dest.load_with(room.cpu)), room.memory_mb, host_name, room.name)
            if best_key is None or key < best_key:
                best_key, best = key, Room(room, target, room_dest, key[0])
        if best is None:
            self.no_room_at[domain.name] = len(state.opened)
        return best

    def why_no_destination(self, domain, source):
        """Each rule that refuses the domain now, with its first host and how many more."""
        policy, state = self.policy, self.state
        by_rule = {}
        too_busy, in_maintenance = [], []
        numeric_rules = [r for r in rules.NUMERIC if (r is not rules.MaxVmPerHost or policy.max_vm_per_host is not None)
                         and (r is not rules.MaxMemoryCandidate or policy.memory_candidate is not None)]
        for name in sorted(state.by_name):
            dest = state[name]
            if name == source.name:
                continue
            if dest.maintenance:
                in_maintenance.append(name)
                continue
            if dest.load > policy.max_load_candidate:
                too_busy.append(name)
                continue
            after = dest.load + domain.cpu / dest.cpus
            # The numeric rules are sorted out without formatting a sentence for each of 1,000 hosts.
            rule = None
            for numeric in numeric_rules:
                if numeric.surely_rejects(domain, dest, policy, after):
                    rule = numeric.name
                    break
            if rule is not None and rule in by_rule:
                by_rule[rule][1] += 1
                continue
            rejection = rules.first_rejection(domain, dest, state, policy)
            if rejection is None:
                return "not needed: a destination exists but the plan did not need this move"
            by_rule.setdefault(rejection[0], [rejection[1], 0])[1] += 1
        parts = [first if count == 1 else f"{first} (and {count - 1} more)" for first, count in by_rule.values()]
        if too_busy:
            parts.append(f"{len(too_busy)} host(s) already over max_load_candidate"
                         f" {policy.max_load_candidate} (e.g. {too_busy[0]})")
        if in_maintenance:
            parts.append(f"{len(in_maintenance)} host(s) in maintenance ({', '.join(in_maintenance[:3])})")
        return "no destination: " + ("; ".join(parts) if parts else "no other host")


def excess_cores(host, threshold, gone=()):
    """Cores a host must shed to reach the threshold once `gone` (CPU values) left (exactly rounded)."""
    return math.fsum(host.cpu_values + [-c for c in gone]) - threshold * host.cpus


def fewest_needed(host, candidates, threshold, gone=()):
    """How many of the candidates, in order, must leave to bring the host under the threshold,
    once the domains whose CPU values are `gone` have left it."""
    excess = excess_cores(host, threshold, gone)
    removed, total = list(gone), 0.0
    for count, domain in enumerate(candidates, 1):
        removed.append(domain.cpu)
        total += domain.cpu
        # the running total is a cheap filter; fsum decides exactly
        if total >= excess * (1 - rules.TOLERANCE) and host.load_without(removed) <= threshold:
            return count
    return None
