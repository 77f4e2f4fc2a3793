# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The greedy engine: its steps, repeated until a round plans nothing new or the budget is spent.

1. evacuate: maintenance hosts (by name), biggest CPU user first.
2. repair: rule breaks the cluster starts with (a domain outside its pin, or with a member of its
   anti-affinity group) move, least memory first; overload is not needed for these moves.
3. resolve: sustained-overloaded hosts, those needing the fewest migrations first: while the host
   is over the threshold, move its biggest movable domain, except that the last one needed is the
   domain (among those big enough to finish the job) giving the lowest peak of source and
   destination, then the least memory. A host that cannot be brought under the threshold within
   the budget is rolled back and left for step 4. When a domain that would need fewer moves finds
   no destination, a second try may make room for it (search.Search.make_room); it is kept only
   when it brings the host under the threshold with fewer migrations in all.
4. shed: what can be shed from hosts that stay over, biggest movable domain first.

The greedy plan is the exact engine's warm start and fallback (planner.py).
"""

from dataclasses import dataclass, field

from . import objective, rules
from .search import Search, fewest_needed
from .state import Move


@dataclass
class Attempt:
    """One try at resolving a host: the moves applied (None when rolled back) and the domains refused."""

    applied: list = None
    refused: set = field(default_factory=set)
    unaffordable: set = field(default_factory=set)


class Greedy:
    """The context the steps share: state, policy, search, decision log, budget."""

    def __init__(self, state, policy, log, verdicts):
        self.state = state
        self.policy = policy
        self.log = log
        self.verdicts = verdicts
        self.search = Search(state, policy, log)

    @property
    def budget(self):
        return self.policy.max_migrations - len(self.state.moves)

    @property
    def out_of_budget(self):
        return self.budget <= 0 or bool(self.log.unaffordable)

    def movable(self, domain):
        return domain.name not in self.state.moved and rules.blocker(domain, self.policy) is None

    def sheddable(self, host):
        """Domains whose move would lower the host's load, biggest first."""
        return sorted((d for d in host.running if d.cpu > 0 and self.movable(d)), key=objective.shed_order)

    def move(self, domain, dest, reason, requires=()):
        return self.state.apply(Move(domain, self.state.placement[domain.name], dest.name, reason, tuple(requires)))

    def move_with_room(self, domain, room, reason):
        """Make room, then move the domain into it; the second migration requires the first."""
        first = self.move(room.room, room.room_dest,
                          f"makes room on {room.host.name} for {domain.name}: {reason}")
        return [first, self.move(domain, room.host, reason, requires=(room.room.name,))]


def evacuate(greedy, host):
    state, progress = greedy.state, False
    source = state[host.name]
    for domain in sorted(host.running, key=objective.shed_order):
        if greedy.budget <= 0:
            break
        if not greedy.movable(domain):
            continue
        reason = f"{host.name} in maintenance"
        dest = greedy.search.best_destination(domain, source)
        if dest is not None:
            greedy.move(domain, dest, reason)
            progress = True
            continue
        room = greedy.search.make_room(domain, source, state.moved)
        if room is not None and greedy.budget < 2:
            greedy.log.too_costly(domain)
        elif room is not None:
            greedy.move_with_room(domain, room, reason)
            progress = True
    return progress


def repair(greedy, host):
    """Move the domains that break a rule on this host, least memory first, while they still do."""
    state, progress = greedy.state, False
    for domain in sorted(host.running, key=objective.repair_order):
        if greedy.budget <= 0:
            break
        if not greedy.movable(domain):
            continue
        reason = rules.rule_break(domain.name, host.name, greedy.policy, state.placement)
        if reason is None:
            continue  # never broke a rule, or its partner has left already
        dest = greedy.search.best_destination(domain, state[host.name])
        if dest is not None:
            greedy.move(domain, dest, reason)
            progress = True
    return progress


def resolve(greedy, host, reason):
    """Bring one overloaded host under the threshold with the fewest moves, or change nothing.

    Direct moves first. When a candidate found no destination, making room for it may need fewer
    migrations in all: that try replaces the direct one only if it does.
    """
    state = greedy.state
    threshold = greedy.policy.load_threshold
    fewest = fewest_needed(state[host.name], greedy.sheddable(host), threshold)
    start = len(state.moves)
    direct = _attempt(greedy, host, reason, chains=False)
    if not direct.refused or fewest is None or (direct.applied is not None and len(direct.applied) < fewest + 2):
        return bool(direct.applied)  # nothing refused, or a chain (one migration more) cannot do better
    kept = state.undo_to(start)
    chained = _attempt(greedy, host, reason, chains=True)
    if chained.applied is not None and (direct.applied is None or len(chained.applied) < len(direct.applied)):
        return True
    if direct.applied is None:
        for name in chained.unaffordable:
            greedy.log.too_costly(state.domains[name])
    state.undo_to(start)
    for move in kept:
        state.apply(move)
    return bool(kept)


def _attempt(greedy, host, reason, chains):
    """One Attempt, with make-room chains or without."""
    state, policy, search = greedy.state, greedy.policy, greedy.search
    source = state[host.name]
    threshold = policy.load_threshold
    candidates = greedy.sheddable(host)
    attempt = Attempt(applied=[])
    start = len(state.moves)
    while source.load > threshold:
        remaining = [d for d in candidates if d.name not in attempt.refused and d.name not in state.moved]
        count = fewest_needed(source, remaining, threshold)
        if count is None or count > greedy.budget:
            break
        if count > 1:
            domain = remaining[0]
            dest = search.best_destination(domain, source)
            room = search.make_room(domain, source, state.moved) if dest is None and chains else None
            if room is not None and greedy.budget <= count:
                attempt.unaffordable.add(domain.name)
            if dest is not None:
                attempt.applied.append(greedy.move(domain, dest, reason))
            elif room is not None and greedy.budget > count:
                attempt.applied += greedy.move_with_room(domain, room, reason)
            else:
                attempt.refused.add(domain.name)
            continue
        options, refused = [], []
        for domain in remaining:
            source_after = source.load_without([domain.cpu])
            if source_after > threshold:
                break  # sorted biggest first: the rest are too small as well
            dest = search.best_destination(domain, source)
            if dest is None:
                refused.append(domain)
                continue
            options.append((objective.finishing_rank(max(source_after, dest.load_with(domain.cpu)), domain),
                            domain, dest))
        if options:
            _rank, domain, dest = min(options, key=lambda option: option[0])
            attempt.applied.append(greedy.move(domain, dest, reason))
            continue
        rooms = []
        for domain in refused if chains else ():
            room = search.make_room(domain, source, state.moved)
            if room is not None:
                peak = max(source.load_without([domain.cpu]), room.peak)
                rooms.append((objective.chain_rank(peak, domain.memory_mb + room.room.memory_mb, domain), domain, room))
        if greedy.budget < 2:
            attempt.unaffordable.update(option[1].name for option in rooms)
        if rooms and greedy.budget >= 2:
            _rank, domain, room = min(rooms, key=lambda option: option[0])
            attempt.applied += greedy.move_with_room(domain, room, reason)
        else:
            attempt.refused.update(d.name for d in refused)
    if source.load > threshold:
        state.undo_to(start)
        attempt.applied = None
    return attempt


def shed(greedy, host, reason):
    """Lower a host that cannot get under the threshold as far as the rules allow."""
    source, progress = greedy.state[host.name], False
    for domain in greedy.sheddable(host):
        if greedy.budget <= 0 or source.load <= greedy.policy.load_threshold:
            break
        dest = greedy.search.best_destination(domain, source)
        if dest is not None:
            greedy.move(domain, dest, reason)
            progress = True
    return progress


def run(greedy, initial_breaks):
    """The greedy plan: the steps in order, round after round. Moves end up in greedy.state.moves."""
    state, policy, verdicts = greedy.state, greedy.policy, greedy.verdicts
    maintenance = [h for h in state.hosts if state[h.name].maintenance]
    overloaded = [h for h in state.hosts if verdicts[h.name].sustained]
    breaking = [h for h in state.hosts if not state[h.name].maintenance
                and any(d.name in initial_breaks for d in h.running)]
    progress = True
    while progress and greedy.budget > 0:
        progress = False
        for host in maintenance:
            progress |= evacuate(greedy, host)
        for host in breaking:
            progress |= repair(greedy, host)
        still_over = [h for h in overloaded if state[h.name].load > policy.load_threshold]
        still_over.sort(key=lambda h: objective.host_order(
            fewest_needed(state[h.name], greedy.sheddable(h), policy.load_threshold),
            state[h.name].load, h.name))
        for host in still_over:
            progress |= resolve(greedy, host, verdicts[host.name].reason)
        for host in overloaded:
            progress |= shed(greedy, host, verdicts[host.name].reason)
