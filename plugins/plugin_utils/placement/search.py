# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The greedy engine's destination search: the best host the rules allow, and make-room chains.

Every refusal is written to the decision log when it happens (explain.DecisionLog), with the rules
that refused and their numbers at that moment, so the plan's `skipped` says what really happened.
"""

import heapq
import math
from dataclasses import dataclass

from . import objective, rules
from .model import Domain
from .state import HostState, busy_demand, forecast_demand, np


ROOM_HOSTS = 64  # make_room looks at this many of the calmest eligible hosts at most
ROUNDING_MARGIN = 1e-6  # cores: a pool bound decides only this far from the line; nearer, the exact tests do


@dataclass(frozen=True)
class Room:
    """Room for `domain` on `host`: `room` first moves from `host` to `room_dest`."""

    room: Domain
    host: HostState
    room_dest: HostState
    peak: float


class _Subset:
    """What objective.destination_rank reads of a host, for some hosts of a state.HostArrays."""

    def __init__(self, hosts, found):
        self.free_mb = hosts.free_mb[found]
        self.name = hosts.name[found]


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
        self.room_dest_at = {}  # a would-be room's destination, with the state it was found in
        self.pool_bounds = None  # (state, the most CPU and memory any host could take), for _room_destination
        # per host (in state.arrays' order), the most CPU and memory one of the domains it started with
        # could free: a bound for make_room, whose rooms are those domains
        parsed = [state.parsed[name] for name in state.arrays.names]
        self.biggest_cpu = np.array([max((d.cpu for d in h.running), default=0.0) for h in parsed])
        self.biggest_mb = np.array([max((d.memory_mb for d in h.running), default=0.0) for h in parsed])

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

    def why_not_keeping(self, domain, source):
        """Why best_keeping found nothing: the hard rules' refusal (why_no_destination) when they allow
        no host, else the should rule that refuses the first host they allow (name order) and how many
        more a should rule refuses."""
        allowed = [dest for dest in sorted(self.state.states(), key=lambda s: s.name)
                   if dest is not source and rules.first_rejection(domain, dest, self.state, self.policy) is None]
        if not allowed:
            return self.why_no_destination(domain, source)
        refusals = [why for why in (rules.soft_rejection(domain, dest, self.state, self.policy) for dest in allowed)
                    if why is not None]
        if not refusals:
            return self.why_no_destination(domain, source)
        more = f" (and {len(refusals) - 1} more host(s) a should rule refuses)" if len(refusals) > 1 else ""
        return f"no host keeps every rule: {refusals[0]}{more}"

    def _scan(self, domain, source, only):
        """Best allowed destination, among `only` or all hosts: one that keeps the domain's should
        rules if any does (rules.SOFT), else the best the hard rules allow."""
        if rules.has_soft_rules(domain.name, self.policy):
            best = self._scan_rules(domain, source, only, keep_soft=True)
            if best is not None:
                return best
        return self._scan_rules(domain, source, only, keep_soft=False)

    def _open_to(self, domain, source):
        """The hosts the domain could be sent to at all, as a mask over state.arrays: not `source`, not in
        maintenance (rules.Maintenance), and among its pinned hosts if it has any (rules.Pin)."""
        hosts = self.state.arrays
        possible = np.logical_not(rules.Maintenance.surely_rejects(domain, hosts, self.policy, None))
        possible[hosts.position[source.name]] = False
        pinned = rules.Pin.pinned_to(domain.name, self.policy)
        if pinned is not None:
            possible &= hosts.mask(pinned)
        return possible

    def _scan_rules(self, domain, source, only, keep_soft):
        """Best allowed destination by objective.destination_rank, among `only` or all hosts.

        The cheap tests (the NUMERIC rules' bounds, the pin, maintenance, the busy line) run on every host
        at once (state.HostArrays); the hosts they leave are checked by every rule in rank order.
        """
        policy, hosts = self.policy, self.state.arrays
        after = hosts.load + domain.cpu / hosts.cpus
        busy_after = hosts.busy_load + busy_demand(domain) / hosts.cpus
        forecast_after = hosts.forecast + forecast_demand(domain) / hosts.cpus
        possible = self._open_to(domain, source)
        for rule in rules.NUMERIC:
            possible &= np.logical_not(rule.surely_rejects(domain, hosts, policy, after))
        if only is not None:
            possible &= hosts.mask(s.name for s in only)
        found = np.flatnonzero(possible)
        under_line = busy_after[found] <= rules.BusyCandidate.limit(policy) + rules.TOLERANCE
        if not under_line.all() and not rules.BusyCandidate.exempt(domain, self.state, policy):
            found = found[under_line]
        if not found.size:
            return None
        rank = objective.destination_rank(forecast_after[found], busy_after[found], after[found],
                                          _Subset(hosts, found))
        for index in found[np.lexsort(rank[::-1])]:
            dest = self.state[hosts.names[index]]
            if self.allowed(domain, dest, keep_soft):
                return dest
        return None

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
        # that can no longer beat the best found. The hosts first, all at once (state.HostArrays).
        hosts = state.arrays
        possible = (self._open_to(domain, source) & (hosts.load <= policy.load_threshold)
                    & (hosts.load + (domain.cpu - self.biggest_cpu) / hosts.cpus <= limit)
                    & (hosts.free_mb + self.biggest_mb >= need_mb))
        found = np.flatnonzero(possible)
        # In a big pool only the calmest hosts are looked at (the search is hosts x domains).
        found = found[np.lexsort((found, hosts.load[found]))][:ROOM_HOSTS]
        calmest = [(state.parsed[hosts.names[i]], state[hosts.names[i]]) for i in found]
        pairs = []
        for host, target in calmest:
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
            room_dest = self._room_destination(room, target)
            if room_dest is None:
                self.room_stuck_at[room.name] = len(state.opened)
                continue
            key = objective.room_rank(max(after, room_dest.load_with(room.cpu)), room.memory_mb, host_name, room.name)
            if best_key is None or key < best_key:
                best_key, best = key, Room(room, target, room_dest, key[0])
        if best is None:
            self.no_room_at[domain.name] = len(state.opened)
        return best

    def _room_destination(self, room, host):
        """A would-be room's best destination, or None. It is remembered with the state it was found in
        (the moves applied and undone so far: every change of the plan is one of those), since make_room
        asks again for each domain it looks for room for."""
        version = (len(self.state.moves), len(self.state.opened))
        known = self.room_dest_at.get(room.name)
        if known is not None and known[0] == version:
            return known[1]
        if self.pool_bounds is None or self.pool_bounds[0] != version:
            hosts = self.state.arrays
            self.pool_bounds = (version, rules.MaxLoadCandidate.most_cpu(hosts, self.policy),
                                rules.Memory.most_memory(hosts, self.policy))
        _version, most_cpu, most_memory = self.pool_bounds
        # most rooms in a full pool fit nowhere: the pool's bounds say so without a scan (with a margin
        # for rounding: near the bound the scan decides)
        if room.cpu > most_cpu + ROUNDING_MARGIN or room.memory_mb > most_memory:
            dest = None
        else:
            dest = self._scan(room, host, None)
        self.room_dest_at[room.name] = (version, dest)
        return dest

    def why_no_destination(self, domain, source):
        """Each rule that refuses the domain now, with its first host (in name order) and how many more.

        The NUMERIC rules' bounds sort most hosts out at once (state.HostArrays). In name order, every
        host no bound refuses is asked by every rule (rules.first_rejection), and so is each host a bound
        refuses until one of them names that bound's rule: the bound's later hosts count under it.
        """
        policy, state, hosts = self.policy, self.state, self.state.arrays
        after = hosts.load + domain.cpu / hosts.cpus
        others = np.ones(len(hosts.names), dtype=bool)
        others[hosts.position[source.name]] = False
        in_maintenance = np.flatnonzero(others & hosts.maintenance)
        too_busy = np.flatnonzero(others & ~hosts.maintenance & (hosts.load > policy.max_load_candidate))
        left = others & ~hosts.maintenance & (hosts.load <= policy.max_load_candidate)
        bound = np.full(len(hosts.names), -1)  # per host, the first NUMERIC rule whose bound refuses it
        for number, rule in enumerate(rules.NUMERIC):
            bound[left & (bound < 0) & np.asarray(rule.surely_rejects(domain, hosts, policy, after), dtype=bool)] = number
        refused_by = [np.flatnonzero(bound == number) for number in range(len(rules.NUMERIC))]
        queue = [(int(i), -1) for i in np.flatnonzero(left & (bound < 0))]
        queue += [(int(found[0]), number) for number, found in enumerate(refused_by) if found.size]
        heapq.heapify(queue)
        asked = [0] * len(rules.NUMERIC)  # per bound, how many of its hosts were asked
        by_rule = {}
        while queue:
            index, number = heapq.heappop(queue)
            if number >= 0 and rules.NUMERIC[number].name in by_rule:
                by_rule[rules.NUMERIC[number].name][1] += len(refused_by[number]) - asked[number]
                continue
            rejection = rules.first_rejection(domain, state[hosts.names[index]], state, policy)
            if rejection is None:
                return "not needed: a destination exists but the plan did not need this move"
            by_rule.setdefault(rejection[0], [rejection[1], 0])[1] += 1
            if number >= 0:
                asked[number] += 1
                if asked[number] < len(refused_by[number]):
                    heapq.heappush(queue, (int(refused_by[number][asked[number]]), number))
        parts = [first if count == 1 else f"{first} (and {count - 1} more)" for first, count in by_rule.values()]
        if too_busy.size:
            parts.append(f"{too_busy.size} host(s) already over max_load_candidate"
                         f" {policy.max_load_candidate} (e.g. {hosts.names[too_busy[0]]})")
        if in_maintenance.size:
            parts.append(f"{in_maintenance.size} host(s) in maintenance"
                         f" ({', '.join(hosts.names[i] for i in in_maintenance[:3])})")
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
