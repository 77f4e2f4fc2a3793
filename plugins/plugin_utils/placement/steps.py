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

The greedy plan is the exact engine's warm start and fallback (planner.py). Then, on whichever plan
won, the steps for the measure's lower terms (objective.py), each move lowering its own term and
raising none above it, within what is left of max_migrations (run_lower):
5. headroom: with policy.headroom, a host that shed for load (sustained or predicted overload)
   goes on down to max_load_candidate: while it is above, the smallest domain whose departure
   takes it there leaves, else the biggest.
6. shed_forecast: with policy.predictive, hosts whose forecast load (their domains' recent mean use,
   history.level) is over max_load_candidate, the domain with the highest forecast demand first, until
   the forecast is at most max_load_candidate, the line a destination's forecast may reach.
7. shed_memory: hosts whose memory load has stayed over memory_threshold for max_over minutes, the
   domain with the most memory first, until the host is at most at the threshold.
8. repair_soft: each domain breaking a should rule moves to a host that keeps every rule, when
   one migration does it (no make-room chain for a should rule).
9. balance: while the imbalance is held above the level's target, the move that lowers the busier
   of its two hosts the most, net of its cost (objective.BalanceLevel), judged on the domain's
   persistent demand (history.persistent), each move lowering the imbalance.
"""

from dataclasses import dataclass, field

from . import history, objective, rules
from .search import Search, fewest_needed
from .state import Move

BALANCE_SOURCES = 8  # the busiest hosts a balancing step looks at
BALANCE_DESTINATIONS = 16  # and the calmest


@dataclass
class Attempt:
    """One try at resolving a host: the moves applied (None when rolled back) and the domains refused."""

    applied: list = None
    refused: set = field(default_factory=set)
    unaffordable: set = field(default_factory=set)


class Greedy:
    """The context the steps share: state, policy, search, decision log, budget."""

    def __init__(self, state, policy, log, verdicts, recent_peaks=None):
        self.state = state
        self.policy = policy
        self.log = log
        self.verdicts = verdicts
        self.recent_peaks = recent_peaks  # host name -> history.recent_peak; set for the lower terms' steps
        self.search = Search(state, policy, log)
        self.balance_refused = set()

    @property
    def budget(self):
        return self.policy.max_migrations - len(self.state.moves)

    @property
    def out_of_budget(self):
        return self.budget <= 0 or bool(self.log.unaffordable)

    def movable(self, domain):
        if domain.name in self.state.moved or rules.blocker(domain, self.policy) is not None:
            return False
        return self.recent_peaks is None or rules.Settled.blocks(domain, self.policy) is None

    def why_unmovable(self, domain):
        """Why movable(domain) is false, in words."""
        if domain.name in self.state.moved:
            return "moved by this plan already"
        return rules.blocker(domain, self.policy) or rules.Settled.blocks(domain, self.policy)

    def sheddable(self, host):
        """Domains whose move would lower the host's load, biggest first."""
        return sorted((d for d in host.running if d.cpu > 0 and self.movable(d)), key=objective.shed_order)

    def move(self, domain, dest, reason, requires=()):
        soft = rules.soft_rejection(domain, dest, self.state, self.policy)
        if soft is not None:
            reason = f"{reason}; breaks a should rule, no allowed host keeps it: {soft}"
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
    source, threshold = greedy.state[host.name], greedy.policy.load_threshold
    return _shed_while(greedy, host, objective.shed_order, lambda: source.load > threshold,
                       lambda domain: domain.cpu > 0, reason)


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


# ---------------------------------------------------------------- the measure's lower terms


def headroom(greedy, host, reason):
    """Take a host that shed for load down to max_load_candidate (see the module docstring)."""
    source, progress = greedy.state[host.name], False
    candidate = greedy.policy.max_load_candidate
    refused = set()
    while greedy.budget > 0 and source.load > candidate:
        movable = [d for d in greedy.sheddable(host) if d.name not in refused]
        if not movable:
            break
        enough = [d for d in movable if source.load_without([d.cpu]) <= candidate]
        domain = min(enough, key=lambda d: (d.cpu, d.memory_mb, d.name)) if enough else movable[0]
        dest = greedy.search.best_destination(domain, source)
        if dest is None:
            refused.add(domain.name)
            continue
        greedy.move(domain, dest, f"{reason}; down to max_load_candidate {candidate}")
        progress = True
    return progress


def _shed_while(greedy, host, order, over, helps, reason):
    """Move the host's domains, in `order`, while `over()` holds; only those `helps(domain)` says
    lower what is over. Returns whether anything moved."""
    source, progress = greedy.state[host.name], False
    for domain in sorted(host.running, key=order):
        if greedy.budget <= 0 or not over():
            break
        if not helps(domain) or not greedy.movable(domain):
            continue
        dest = greedy.search.best_destination(domain, source)
        if dest is not None:
            greedy.move(domain, dest, reason)
            progress = True
    return progress


def shed_forecast(greedy, host, words):
    """Bring a host's forecast load to max_load_candidate, highest forecast demand first; `words` say
    what the forecast is."""
    source, candidate = greedy.state[host.name], greedy.policy.max_load_candidate
    reason = f"{host.name} forecast {history.figure(source.forecast, candidate)} > max_load_candidate {candidate} ({words})"
    return _shed_while(greedy, host, objective.forecast_shed_order,
                       lambda: source.levelled and source.forecast > candidate, lambda domain: bool(domain.forecast),
                       reason)


def shed_memory(greedy, host, reason):
    """Bring a host whose memory overload is sustained to memory_threshold, most memory first."""
    source, threshold = greedy.state[host.name], greedy.policy.memory_threshold
    return _shed_while(greedy, host, objective.memory_shed_order, lambda: source.memory_load > threshold,
                       lambda domain: domain.memory_mb > 0, reason)


def repair_soft(greedy, soft_breaks):
    """Move each domain that breaks a should rule to a host that keeps every rule, when one migration
    does it (least memory first; no make-room chain for a should rule)."""
    state, progress, log = greedy.state, False, greedy.log
    for name in sorted(soft_breaks, key=lambda n: objective.repair_order(state.domains[n])):
        domain = state.domains[name]
        source_name = state.placement[name]
        reason = rules.soft_break(name, source_name, greedy.policy, state.placement)
        if reason is None:
            continue  # its mate left already
        if not greedy.movable(domain):
            log.soft_unrepaired(name, greedy.why_unmovable(domain))
            continue
        if greedy.budget <= 0:
            log.soft_unrepaired(name, f"max_migrations {greedy.policy.max_migrations} reached before its repair")
            continue
        dest = greedy.search.best_keeping(domain, state[source_name])
        if dest is None:
            log.soft_unrepaired(name, greedy.search.why_not_keeping(domain, state[source_name]))
            continue
        greedy.move(domain, dest, f"should rule: {reason}")
        progress = True
    return progress


def balance(greedy, level, imbalance_now):
    """Balancing moves while the imbalance stays above the level's target (see objective.BalanceLevel)."""
    state, policy = greedy.state, greedy.policy
    progress = False
    while greedy.budget > 0:
        before = imbalance_now()
        if before <= level.target:
            break
        choice = _best_balancing_move(greedy, level)
        if choice is None:
            break
        gain, domain, dest = choice
        greedy.move(domain, dest, f"imbalance {before:.2f} > target {level.target} for"
                                  f" {history.minutes(policy.balance_hold)} min; move gains {gain:.2f}")
        if imbalance_now() >= before:  # a memory spread it raised more than the CPU one it lowered
            state.undo()
            greedy.balance_refused.add((domain.name, dest.name))
            continue
        progress = True
    return progress


def _best_balancing_move(greedy, level):
    """(gain, domain, destination) of the best balancing move, or None."""
    state, policy = greedy.state, greedy.policy
    hosts = [s for s in state.states() if not s.maintenance]
    sources = sorted(hosts, key=lambda s: (-s.load, s.name))[:BALANCE_SOURCES]
    calm = sorted(hosts, key=lambda s: (s.load, s.name))[:BALANCE_DESTINATIONS]
    best_key, best = None, None
    for source in sources:
        for domain in state.parsed[source.name].running:
            if (state.placement.get(domain.name) != source.name or domain.cpu <= 0
                    or not greedy.movable(domain)):
                continue
            demand = history.persistent(domain.samples, domain.cpu, policy.max_over, policy.now)
            cost = objective.balance_cost(domain.memory_mb)
            for dest in calm:
                if dest is source or dest.load >= source.load or (domain.name, dest.name) in greedy.balance_refused:
                    continue
                # the busier of the two hosts after the move, with the domain's persistent demand
                gain = source.load - max(source.load - demand / source.cpus, dest.load + demand / dest.cpus)
                actual = source.load - max(source.load_without([domain.cpu]), dest.load_with(domain.cpu))
                if min(gain, actual) < level.min_gain + cost:
                    continue
                peak = greedy.recent_peaks[dest.name]
                key = objective.balance_rank(gain, cost, peak, domain, dest.name)
                if best_key is not None and key >= best_key:
                    continue
                if not greedy.search.allowed(domain, dest, keep_soft=True):
                    continue
                best_key, best = key, (gain, domain, dest)
    return best


def run_lower(greedy, headroom_hosts, forecast_hosts, memory_hosts, soft_breaks, level, imbalance_now,
              forecast_words):
    """The steps for the measure's lower terms (5-10), in order, on the plan the engines chose;
    `forecast_words` say in the reasons what a forecast is (planner.forecast_words)."""
    state, policy = greedy.state, greedy.policy
    for host in headroom_hosts:
        headroom(greedy, host, greedy.verdicts[host.name].reason)
    for host in forecast_hosts:
        shed_forecast(greedy, host, forecast_words)  # it sheds only while the host's forecast is over the line
    for host, reason in memory_hosts:
        if state[host.name].memory_load > policy.memory_threshold:
            shed_memory(greedy, host, reason)
    if soft_breaks:
        repair_soft(greedy, soft_breaks)
    if level is not None:
        balance(greedy, level, imbalance_now)
