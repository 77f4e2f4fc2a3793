# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The search: which running domains leave which hosts, and where they go.

Order of work, repeated until a round plans nothing new or max_migrations is reached:

1. Evacuate maintenance hosts (by name), biggest CPU user first.
2. Repair rule breaks the cluster starts with: a domain running outside its pin, or with a member
   of its anti-affinity group, moves (least memory first, so of two anti-affine domains the
   smaller one goes). Overload is not needed for these moves.
3. Resolve sustained-overloaded hosts, those needing the fewest migrations first: while the host is
   over the threshold, move its biggest movable domain, except that the last one needed is the
   domain (among those big enough to finish the job) giving the lowest peak of source and
   destination, then the least memory. A host that cannot be brought under the threshold within
   the remaining budget is rolled back and left for step 4. When a domain that would need fewer
   moves finds no destination, a second try may make room for it (below); it is kept only when it
   brings the host under the threshold with fewer migrations in all.
4. Shed what can be shed from hosts that stay over: biggest movable domain first.

Each domain's destination is the best fit among hosts every constraint allows: lowest predicted
load, then most free memory, then name. When no host allows it, "making room" may: a movable
domain on a host under the threshold first moves to its own best destination, so that the domain
then fits where it left (two migrations for one; the second one `requires` the first).

Loads are exactly rounded sums (math.fsum) of the domains' `cpu`, so the result does not depend on
input order and re-planning the predicted state sees the very same numbers.

The measure a plan improves, compared in this order: running domains left on maintenance hosts,
running domains breaking a pin or an anti-affinity group, total load above the threshold (sum over
hosts), peak host load, sum of squared host loads. Every migration lowers one of the first three
terms and never raises an earlier one (no move creates a break); a make-room
migration does so together with the migration it enables, which follows it at once.
"""

import math
from bisect import bisect_left, insort
from collections import namedtuple

from .constraints import cooldown_reason, first_violation, rule_break
from .history import SUSTAINED, judge, minutes
from .model import parse_cluster, parse_policy

OK = "ok"
OVERLOADED = "overloaded"
UNRESOLVED = "unresolved"
MAINTENANCE = "maintenance"


def _round(value):
    return round(value, 4)


def _plain(number):
    """Memory back to an int when it is one, so the output reads like the input."""
    return int(number) if float(number).is_integer() else number


class _HostState:
    """A host's predicted resources while the plan is being built."""

    __slots__ = ("name", "cpus", "maintenance", "cpu_values", "free_parts", "running", "load", "free_mb",
                 "initial_load", "initial_free_mb", "initial_running", "judgment", "sustained",
                 "arrived", "left")

    def __init__(self, host, maintenance):
        self.name = host.name
        self.cpus = host.cpus
        self.maintenance = maintenance
        self.cpu_values = [d.cpu for d in host.running]
        self.free_parts = [host.memory_free_mb]
        self.running = len(self.cpu_values)
        self.load = math.fsum(self.cpu_values) / self.cpus
        self.free_mb = host.memory_free_mb
        self.initial_load = self.load
        self.initial_free_mb = self.free_mb
        self.initial_running = self.running
        self.judgment = None
        self.sustained = False
        self.arrived = []
        self.left = []

    def load_with(self, cpu):
        return math.fsum(self.cpu_values + [cpu]) / self.cpus

    def load_without(self, cpus):
        return math.fsum(self.cpu_values + [-c for c in cpus]) / self.cpus

    def _changed(self):
        self.load = math.fsum(self.cpu_values) / self.cpus
        self.free_mb = math.fsum(self.free_parts)

    def add(self, domain):
        self.cpu_values.append(domain.cpu)
        self.free_parts.append(-domain.memory_mb)
        self.running += 1
        self._changed()

    def remove(self, domain):
        self.cpu_values.remove(domain.cpu)
        self.free_parts.append(domain.memory_mb)
        self.running -= 1
        self._changed()

    def unadd(self, domain):
        self.cpu_values.remove(domain.cpu)
        self.free_parts.remove(-domain.memory_mb)
        self.running -= 1
        self._changed()

    def unremove(self, domain):
        self.cpu_values.append(domain.cpu)
        self.free_parts.remove(domain.memory_mb)
        self.running += 1
        self._changed()


class _Move:
    """One proposed move, as the constraint checks see it."""

    __slots__ = ("domain", "dest", "dest_load_after")

    def __init__(self, domain, dest, dest_load_after):
        self.domain = domain
        self.dest = dest
        self.dest_load_after = dest_load_after


# One try at resolving a host: the moves applied (None when rolled back), the candidates refused a
# destination, and the domains a make-room chain would have moved had the budget allowed two migrations.
_Try = namedtuple("_Try", "applied refused unaffordable")


class _Vacated:
    """A host as the constraint checks see it once one of its domains has left (for make-room)."""

    __slots__ = ("name", "maintenance", "load", "free_mb", "running")

    def __init__(self, state, leaving):
        self.name = state.name
        self.maintenance = state.maintenance
        self.load = state.load_without([leaving.cpu])
        self.free_mb = state.free_mb + leaving.memory_mb
        self.running = state.running - 1


# Sure rejections by the numeric rules, tested without building the reason (see why_no_destination).
CHEAP_RULES = (
    ("max_load_candidate", lambda move, policy: move.dest_load_after > policy.max_load_candidate + 1e-9),
    ("memory", lambda move, policy: move.dest.free_mb < move.domain.memory_mb + policy.memory_reserve_mb),
    ("max_vm_per_host", lambda move, policy: (policy.max_vm_per_host is not None
                                              and move.dest.running >= policy.max_vm_per_host)),
)


class _Planner:
    def __init__(self, hosts, policy):
        self.policy = policy
        self.hosts = hosts
        self.states = {h.name: _HostState(h, h.maintenance or h.name in policy.maintenance) for h in hosts}
        self.placement = {d.name: h.name for h in hosts for d in h.running}
        # Possible destinations by CPU count, each bucket sorted by load (see _search).
        self.index = {}
        for state in sorted(self.states.values(), key=lambda s: (s.load, s.name)):
            if not state.maintenance:
                self.index.setdefault(state.cpus, []).append((state.load, state.name))
        self.migrations = []
        self.unaffordable = set()  # domains a make-room chain would move, had the budget two migrations left
        self.moved = set()
        self.unplaceable = set()  # domains a search found no destination for, to explain them
        # Refused searches are remembered until a host may accept more than before (an "opening"):
        # without one, hosts only fill up, so the same search would be refused again.
        self.opened = []  # host names, in the order they gained room
        self.refused = {}  # domain name -> len(self.opened) when its search was refused
        self.initial_breaks = self.breaks()

    # ------------------------------------------------------------ bookkeeping

    def _reindex(self, state, old_load):
        if state.maintenance:
            return
        bucket = self.index[state.cpus]
        del bucket[bisect_left(bucket, (old_load, state.name))]
        insort(bucket, (state.load, state.name))

    def _apply(self, domain, source, dest, reason, requires=None):
        source_before, dest_before = source.load, dest.load
        source.remove(domain)
        dest.add(domain)
        self._reindex(source, source_before)
        self._reindex(dest, dest_before)
        self.placement[domain.name] = dest.name
        self.moved.add(domain.name)
        if not source.maintenance and source.load <= self.policy.max_load_candidate:
            self.opened.append(source.name)  # it can now take domains (a host above that takes none)
        source.left.append(domain.name)
        dest.arrived.append(domain.name)
        self.migrations.append({
            "vm": domain.name,
            "uuid": domain.uuid,
            "source": source.name,
            "destination": dest.name,
            "reason": reason,
            "requires": requires,
            "cpu": domain.cpu,
            "memory_mb": domain.memory_mb,
            "source_load_before": _round(source_before),
            "source_load_after": _round(source.load),
            "destination_load_before": _round(dest_before),
            "destination_load_after": _round(dest.load),
        })
        return (domain, source, dest, reason, requires)

    def _apply_chain(self, domain, source, chain, reason):
        """Make room, then move the domain into it; the second migration requires the first."""
        room, host, room_dest = chain[:3]
        return [self._apply(room, host, room_dest, f"makes room on {host.name} for {domain.name}: {reason}"),
                self._apply(domain, source, host, reason, requires=room.name)]

    def _undo(self, applied):
        domain, source, dest = applied[:3]
        source_now, dest_now = source.load, dest.load
        dest.unadd(domain)
        source.unremove(domain)
        self._reindex(source, source_now)
        self._reindex(dest, dest_now)
        self.placement[domain.name] = source.name
        self.moved.discard(domain.name)
        self.opened.append(dest.name)  # the destination has its room back
        source.left.pop()
        dest.arrived.pop()
        self.migrations.pop()

    @property
    def budget(self):
        return self.policy.max_migrations - len(self.migrations)

    @property
    def out_of_budget(self):
        return self.budget <= 0 or bool(self.unaffordable)

    # ------------------------------------------------------------ destination search

    def best_destination(self, domain, source):
        """The best destination every constraint allows, or None."""
        refused_at = self.refused.get(domain.name)
        if refused_at is None:
            best = self._search(domain, source, self.states.values(), scan_all=False)
        else:
            opened = {self.states[name] for name in self.opened[refused_at:]}
            best = self._search(domain, source, opened, scan_all=True)
        if best is None:
            self.unplaceable.add(domain.name)
            self.refused[domain.name] = len(self.opened)
        return best

    def _search(self, domain, source, hosts, scan_all):
        """Best allowed destination: lowest predicted load, then most free memory, then name.

        Hosts are bucketed by CPU count and each bucket is sorted by load, so within a bucket the
        load after the move grows along the list: stop at the first host that cannot beat the best.
        """
        policy = self.policy
        ceiling = policy.max_load_candidate + 1e-9  # the exact check below decides near the limit
        need_mb = domain.memory_mb + policy.memory_reserve_mb
        max_vm = policy.max_vm_per_host
        best_key, best = None, None
        buckets = self.index.values() if not scan_all else [sorted((s.load, s.name) for s in hosts)]
        for bucket in buckets:
            for load, name in bucket:
                dest = self.states[name]
                after = load + domain.cpu / dest.cpus
                if not scan_all and (after > ceiling or (best_key is not None and after > best_key[0])):
                    break
                if (name == source.name or dest.maintenance or dest.free_mb < need_mb
                        or (max_vm is not None and dest.running >= max_vm)):
                    continue  # cheap rejections first; first_violation repeats them with reasons
                key = (after, -dest.free_mb, name)
                if best_key is not None and key >= best_key:
                    continue
                if first_violation(_Move(domain, dest, dest.load_with(domain.cpu)), policy, self.placement):
                    continue
                best_key, best = key, dest
        return best

    def make_room(self, domain, source):
        """The best way to let a domain onto a host that refuses it now: (room, host, room_dest, peak) or None.

        `room`, a movable domain on `host` (a host under the threshold), moves to its own best
        destination `room_dest`, after which every rule allows `domain` onto `host`. Best: lowest
        peak of the two hosts afterwards (`peak`), then least memory moved, then names.
        """
        policy = self.policy
        limit = policy.max_load_candidate + 1e-9
        need_mb = domain.memory_mb + policy.memory_reserve_mb
        allowed = policy.pin.get(domain.name)
        best_key, best = None, None
        for host in self.hosts:
            state = self.states[host.name]
            if (state is source or state.maintenance or state.load > policy.load_threshold
                    or (allowed is not None and host.name not in allowed)):
                continue
            for room in host.running:
                # cheap rejections first: the load and memory once room has left and domain arrived
                if (state.load + (domain.cpu - room.cpu) / state.cpus > limit
                        or state.free_mb + room.memory_mb < need_mb
                        or room.name in self.moved or self.blocker(room) is not None):
                    continue
                vacated = _Vacated(state, room)
                after = math.fsum(state.cpu_values + [-room.cpu, domain.cpu]) / state.cpus
                self.placement[room.name] = None  # gone from host, wherever it goes
                refused = first_violation(_Move(domain, vacated, after), policy, self.placement)
                self.placement[room.name] = host.name
                if refused or (best_key is not None and (after, room.memory_mb) > best_key[:2]):
                    continue
                room_dest = self._search(room, state, self.states.values(), scan_all=False)
                if room_dest is None:
                    continue
                key = (max(after, room_dest.load_with(room.cpu)), room.memory_mb, host.name, room.name)
                if best_key is None or key < best_key:
                    best_key, best = key, (room, state, room_dest, key[0])
        return best

    def why_no_destination(self, domain, source):
        """Each rule that refuses the domain, with its first host and how many more (for skipped)."""
        by_rule = {}
        too_busy, in_maintenance = [], []
        for name in sorted(self.states):
            dest = self.states[name]
            if name == source.name:
                continue
            if dest.maintenance:
                in_maintenance.append(name)
                continue
            if dest.load > self.policy.max_load_candidate:
                too_busy.append(name)
                continue
            move = _Move(domain, dest, dest.load + domain.cpu / dest.cpus)
            # The numeric rules are sorted out without formatting a sentence for each of 1,000 hosts.
            rule = next((rule for rule, check in CHEAP_RULES if check(move, self.policy)), None)
            if rule is not None and rule in by_rule:
                by_rule[rule][1] += 1
                continue
            move.dest_load_after = dest.load_with(domain.cpu)
            violation = first_violation(move, self.policy, self.placement)
            if violation is None:
                return "not needed: a destination exists but the plan did not need this move"
            by_rule.setdefault(violation[0], [violation[1], 0])[1] += 1
        parts = [first if count == 1 else f"{first} (and {count - 1} more)" for first, count in by_rule.values()]
        if too_busy:
            parts.append(f"{len(too_busy)} host(s) already over max_load_candidate"
                         f" {self.policy.max_load_candidate} (e.g. {too_busy[0]})")
        if in_maintenance:
            parts.append(f"{len(in_maintenance)} host(s) in maintenance ({', '.join(in_maintenance[:3])})")
        return "no destination: " + ("; ".join(parts) if parts else "no other host")

    # ------------------------------------------------------------ which domains may move

    def blocker(self, domain):
        """Why a domain may not move at all (policy or cooldown), or None."""
        if domain.name in self.policy.exclude:
            return "excluded by policy"
        return cooldown_reason(domain, self.policy)

    def _sheddable(self, host):
        """Domains whose move would lower the host's load, biggest first."""
        return [d for d in host.running
                if d.name not in self.moved and d.cpu > 0 and self.blocker(d) is None]

    # ------------------------------------------------------------ steps

    def evacuate(self, host):
        state = self.states[host.name]
        progress = False
        for domain in sorted(host.running, key=lambda d: d.sort_key):
            if self.budget <= 0:
                break
            if domain.name in self.moved or self.blocker(domain) is not None:
                continue
            reason = f"{host.name} in maintenance"
            dest = self.best_destination(domain, state)
            if dest is not None:
                self._apply(domain, state, dest, reason)
                progress = True
                continue
            chain = self.make_room(domain, state)
            if chain is not None and self.budget < 2:
                self.unaffordable.add(domain.name)
            elif chain is not None:
                self._apply_chain(domain, state, chain, reason)
                progress = True
        return progress

    def breaks(self):
        """{domain name: why} for every running domain that breaks a pin or anti-affinity where it runs now."""
        found = {}
        for host in self.hosts:
            for domain in host.running:
                if domain.name in self.policy.pin or domain.name in self.policy.groups_of:
                    reason = rule_break(domain.name, self.placement[domain.name], self.policy, self.placement)
                    if reason is not None:
                        found[domain.name] = reason
        return found

    def repair(self, host):
        """Move the domains that break a rule on this host, least memory first, while they still do."""
        state = self.states[host.name]
        progress = False
        for domain in sorted(host.running, key=lambda d: (d.memory_mb, d.name, d.uuid)):
            if self.budget <= 0:
                break
            if domain.name in self.moved or self.blocker(domain) is not None:
                continue
            reason = rule_break(domain.name, host.name, self.policy, self.placement)
            if reason is None:
                continue  # never broke a rule, or its partner has left already
            dest = self.best_destination(domain, state)
            if dest is not None:
                self._apply(domain, state, dest, reason)
                progress = True
        return progress

    def needed(self, state, candidates):
        """How many of the biggest candidates must leave to bring the host under the threshold."""
        threshold = self.policy.load_threshold
        excess = math.fsum(state.cpu_values) - threshold * state.cpus
        removed, total = [], 0.0
        for count, domain in enumerate(candidates, 1):
            removed.append(domain.cpu)
            total += domain.cpu
            # the running total is a cheap filter; fsum decides exactly
            if total >= excess * (1 - 1e-9) and state.load_without(removed) <= threshold:
                return count
        return None

    def resolve(self, host, reason):
        """Bring one overloaded host under the threshold with the fewest moves, or change nothing.

        Direct moves first. When a candidate found no destination, making room for it may need
        fewer migrations in all: that try replaces the direct one only if it does.
        """
        fewest = self.needed(self.states[host.name], sorted(self._sheddable(host), key=lambda d: d.sort_key))
        direct = self._resolve(host, reason, chains=False)
        moves = direct.applied
        if not direct.refused or fewest is None or (moves is not None and len(moves) < fewest + 2):
            return bool(moves)  # nothing refused, or a chain (one migration more than the fewest) cannot do better
        self._undo_all(moves or [])
        chained = self._resolve(host, reason, chains=True)
        if chained.applied is not None and (moves is None or len(chained.applied) < len(moves)):
            return True
        if moves is None:
            self.unaffordable |= chained.unaffordable
        self._undo_all(chained.applied or [])
        for domain, source, dest, move_reason, requires in moves or []:
            self._apply(domain, source, dest, move_reason, requires)
        return bool(moves)

    def _undo_all(self, applied):
        for move in reversed(applied):
            self._undo(move)

    def _resolve(self, host, reason, chains):
        """One try (see _Try), with make-room chains or without."""
        state = self.states[host.name]
        threshold = self.policy.load_threshold
        candidates = sorted(self._sheddable(host), key=lambda d: d.sort_key)
        blocked = set()
        applied = []
        unaffordable = set()
        while state.load > threshold:
            remaining = [d for d in candidates if d.name not in blocked and d.name not in self.moved]
            count = self.needed(state, remaining)
            if count is None or count > self.budget:
                break
            if count > 1:
                domain = remaining[0]
                dest = self.best_destination(domain, state)
                chain = self.make_room(domain, state) if dest is None and chains else None
                if chain is not None and self.budget <= count:
                    unaffordable.add(domain.name)
                if dest is not None:
                    applied.append(self._apply(domain, state, dest, reason))
                elif chain is not None and self.budget > count:
                    applied += self._apply_chain(domain, state, chain, reason)
                else:
                    blocked.add(domain.name)
                continue
            options, refused = [], []
            for domain in remaining:
                source_after = state.load_without([domain.cpu])
                if source_after > threshold:
                    break  # sorted biggest first: the rest are too small as well
                dest = self.best_destination(domain, state)
                if dest is None:
                    refused.append(domain)
                    continue
                peak = max(source_after, dest.load_with(domain.cpu))
                options.append(((peak, domain.memory_mb, domain.name, domain.uuid), domain, dest))
            if options:
                domain, dest = min(options, key=lambda option: option[0])[1:]
                applied.append(self._apply(domain, state, dest, reason))
                continue
            chains_found = []
            for domain in refused if chains else ():
                chain = self.make_room(domain, state)
                if chain is not None:
                    peak = max(state.load_without([domain.cpu]), chain[3])
                    memory = domain.memory_mb + chain[0].memory_mb
                    chains_found.append(((peak, memory, domain.name, domain.uuid), domain, chain))
            if self.budget < 2:
                unaffordable.update(option[1].name for option in chains_found)
            if chains_found and self.budget >= 2:
                domain, chain = min(chains_found, key=lambda option: option[0])[1:]
                applied += self._apply_chain(domain, state, chain, reason)
            else:
                blocked.update(d.name for d in refused)
        if state.load > threshold:
            self._undo_all(applied)
            return _Try(None, blocked, unaffordable)
        return _Try(applied, blocked, unaffordable)

    def shed(self, host, reason):
        """Lower a host that cannot get under the threshold as far as the constraints allow."""
        state = self.states[host.name]
        progress = False
        for domain in sorted(self._sheddable(host), key=lambda d: d.sort_key):
            if self.budget <= 0 or state.load <= self.policy.load_threshold:
                break
            dest = self.best_destination(domain, state)
            if dest is not None:
                self._apply(domain, state, dest, reason)
                progress = True
        return progress

    def run(self):
        policy = self.policy
        for host in self.hosts:
            state = self.states[host.name]
            state.judgment = judge(host.samples, policy.load_threshold, policy.max_over, policy.interval, policy.now)
            state.sustained = (not state.maintenance and state.load > policy.load_threshold
                               and state.judgment.verdict == SUSTAINED)
        maintenance = [h for h in self.hosts if self.states[h.name].maintenance]
        overloaded = [h for h in self.hosts if self.states[h.name].sustained]
        reasons = {h.name: (f"{h.name} overloaded {self.states[h.name].load:.2f} > {policy.load_threshold}"
                            f" for {minutes(self.states[h.name].judgment.over_for_min)} min")
                   for h in overloaded}
        breaking = [h for h in self.hosts if not self.states[h.name].maintenance
                    and any(d.name in self.initial_breaks for d in h.running)]
        progress = True
        while progress and self.budget > 0:
            progress = False
            for host in maintenance:
                progress |= self.evacuate(host)
            for host in breaking:
                progress |= self.repair(host)
            still_over = [h for h in overloaded if self.states[h.name].load > policy.load_threshold]
            still_over.sort(key=self._resolve_order)
            for host in still_over:
                progress |= self.resolve(host, reasons[host.name])
            for host in overloaded:
                progress |= self.shed(host, reasons[host.name])
        return self._report()

    def _resolve_order(self, host):
        state = self.states[host.name]
        count = self.needed(state, sorted(self._sheddable(host), key=lambda d: d.sort_key))
        return (count is None, count or 0, -state.load, host.name)

    # ------------------------------------------------------------ output

    def _skipped(self):
        skipped = []
        threshold = self.policy.load_threshold
        still_broken = self.breaks()
        for host in self.hosts:
            state = self.states[host.name]
            resolved = not state.maintenance and state.load <= threshold
            for domain in sorted(host.running, key=lambda d: d.name):
                broken = still_broken.get(domain.name)
                if domain.name in self.moved or not (state.maintenance or state.sustained or broken):
                    continue
                reason = self.blocker(domain)
                if reason is None and resolved and broken is None:
                    if domain.name not in self.unplaceable or self.best_destination(domain, state) is not None:
                        continue  # not needed: the host is under the threshold without it
                    reason = self.why_no_destination(domain, state)
                if reason is None and not state.maintenance and domain.cpu <= 0 and broken is None:
                    reason = "uses no CPU: moving it would not lower the load"
                if reason is None and domain.name in self.unaffordable:
                    reason = (f"needs room made for it first (2 migrations) but max_migrations"
                              f" {self.policy.max_migrations} leaves {self.budget}")
                if reason is None and self.out_of_budget:
                    reason = f"max_migrations {self.policy.max_migrations} reached"
                if reason is None:
                    reason = self.why_no_destination(domain, state)  # against the final predicted state
                if broken is not None:
                    reason = f"rule break stays ({broken}): {reason}"
                skipped.append({"vm": domain.name, "uuid": domain.uuid, "host": host.name, "reason": reason})
        return skipped

    def _host_entry(self, host):
        state = self.states[host.name]
        policy = self.policy
        threshold = policy.load_threshold
        reasons = []
        if state.maintenance:
            status = MAINTENANCE
            reasons.append(f"in maintenance: {state.initial_running} running domain(s),"
                           f" {len(state.left)} planned to leave, {state.running} stay")
        elif state.sustained:
            reasons.append(f"load {state.initial_load:.2f} > threshold {threshold}; {state.judgment.reason}")
            if state.load <= threshold:
                status = OVERLOADED
                reasons.append(f"plan moves {', '.join(state.left)}: predicted load {state.load:.2f}"
                               f" <= threshold {threshold}")
            else:
                status = UNRESOLVED
                moved = f"after moving {', '.join(state.left)}" if state.left else "with no valid move"
                cause = (f"max_migrations {policy.max_migrations} reached" if self.out_of_budget
                         else "no further valid move (see skipped)")
                reasons.append(f"predicted load {state.load:.2f} still > threshold {threshold} {moved}: {cause}")
        elif state.initial_load > threshold:
            verdict = state.judgment.verdict
            status = verdict if verdict != "not-over" else "overload-not-sustained"
            reasons.append(f"load {state.initial_load:.2f} > threshold {threshold} but {state.judgment.reason}:"
                           " sheds nothing for load")
        else:
            status = OK
            reasons.append(f"load {state.initial_load:.2f} <= threshold {threshold}")
        for domain in sorted(host.running, key=lambda d: d.name):
            if domain.name in self.initial_breaks:
                repair = f": plan moves {domain.name}" if domain.name in self.moved else ""
                reasons.append(f"rule break, {self.initial_breaks[domain.name]}{repair}")
        if state.arrived:
            reasons.append(f"receives {', '.join(state.arrived)}: predicted load {state.load:.2f}")
        return {
            "name": state.name,
            "load": _round(state.initial_load),
            "predicted_load": _round(state.load),
            "overloaded": state.sustained,
            "maintenance": state.maintenance,
            "status": status,
            "reasons": reasons,
            "running": state.initial_running,
            "predicted_running": state.running,
            "memory_free_mb": _plain(state.initial_free_mb),
            "predicted_memory_free_mb": _plain(state.free_mb),
        }

    def terms(self, initial):
        states = self.states.values()
        loads = [s.initial_load if initial else s.load for s in states]
        evacuate = sum(s.initial_running if initial else s.running for s in states if s.maintenance)
        breaks = len(self.initial_breaks if initial else self.breaks())
        return measure_of(loads, evacuate, breaks, self.policy.load_threshold)

    def _measure(self, initial):
        terms = self.terms(initial)
        return dict(zip(MEASURE_TERMS, terms[:2] + tuple(_round(t) for t in terms[2:])))

    def _report(self):
        skipped = self._skipped()
        return {
            "migrations": self.migrations,
            "hosts": [self._host_entry(h) for h in self.hosts],
            "skipped": skipped,
            "max_migrations_reached": self.out_of_budget,
            "measure": {"before": self._measure(True), "after": self._measure(False)},
            "policy": self.policy.as_dict(),
        }


MEASURE_TERMS = ("on_maintenance_hosts", "rule_breaks", "load_above_threshold", "peak_load", "sum_of_squares")


def measure_of(loads, evacuate, breaks, threshold):
    """The documented measure as a tuple: smaller is better, compared term by term."""
    return (evacuate,
            breaks,
            math.fsum(max(0.0, load - threshold) for load in loads),
            max(loads, default=0.0),
            math.fsum(load * load for load in loads))


def measure(cluster, policy=None):
    """The measure of a cluster as given (no planning): see the module docstring."""
    return _Planner(parse_cluster(cluster), parse_policy(policy)).terms(initial=True)


def plan(cluster, policy=None):
    """Plan the migrations for one run; see the package docstring for input and output."""
    parsed_policy = parse_policy(policy)
    hosts = parse_cluster(cluster)
    return _Planner(hosts, parsed_policy).run()
