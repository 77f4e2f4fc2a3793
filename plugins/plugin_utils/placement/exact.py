# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exact engine: the plan as a mixed-integer program, solved with HiGHS (highspy).

The model (the end state of the plan; one binary x[d, h] per candidate domain d and allowed host h):
- Candidates: the movable domains on hosts that must act (maintenance hosts, sustained-overloaded
  hosts: those that can be in a set of at most fewest + SLACK_MOVES departures clearing the host;
  domains breaking a pin or an anti-affinity group), plus "room makers": movable domains on calm
  hosts whose departure would help some candidate in (memory, load, VM count or an anti-affine
  mate): all of them up to SMALL_POOL hosts, else the ROOM_MAKERS_PER_HOST best per host. Every move
  of the greedy plan is in the model too, so the greedy plan is a feasible warm start. Other
  domains stay where they are; above SMALL_POOL hosts each candidate keeps its DESTINATIONS_PER_DOMAIN
  roomiest hosts.
- Destinations: hosts not in maintenance that are at most at the threshold, and sustained-overloaded
  hosts once they have shed enough. A host that already meets every rule (load <= max_load_candidate,
  busy load <= rules.BusyCandidate.limit, memory reserve free, VM count) keeps meeting it at the end;
  one that does not may receive only if its end state does (y[h] switches its constraints on, with
  the smallest valid big-M). The rules are those of rules.py: pin and maintenance as absent
  variables, memory with the reserve, max_load_candidate, the busy load, max_vm_per_host,
  anti-affinity (no host ends with two members of a group unless it started so, and none arrives
  there). A cover cut per sustained host (clearing it takes
  at least the fewest departures its biggest domains need) tightens the relaxation.
- Objective, lexicographic (objective.py), solved in stages, each exact for its terms:
  1. W_M * (domains left on maintenance hosts) + W_B * (rule breaks) + W_O * (sustained-overloaded
     hosts left over the threshold) + (their load above the threshold). The first three terms are
     integers and the last is at most its value now, so W_O > that value, W_B > W_O * (hosts + 1)
     and W_M > W_B * (most breaks + 1) order them exactly. Skipped when the greedy plan reaches 0
     (the usual case: 0 is the lower bound). When the greedy plan leaves a sustained host over, a
     plan clearing them all is searched first (stage 2 with stage 1 fixed at 0, far easier for the
     solver, and with each sustained host's end load, arrivals counted, at most the threshold: a
     tighter relaxation, valid only there), and stage 1 runs only if none is found. When that count
     finds no plan in its share of the time, any plan that clears is asked for (no objective: found
     much sooner); a plan not proven optimal is then pruned, given an order (below) and polished:
     fewer migrations by small models around the hosts its moves link (_polish, a large
     neighbourhood search).
  2. With stage 1 held (one row per term): the number of migrations, skipped when the plan already
     needs no more than the lower bound `fewest_moves`. A plan of stage 1 or 2 not proven optimal is
     pruned, ordered and polished as above, in the stage's own time (COUNT_SHARE for the solver).
  3. With stages 1 and 2 held: the peak load, exact to PEAK_GAP, with memory moved as a tie-break;
     skipped (and `optimal` false) for models above PEAK_MAX_COLUMNS columns.
  Each stage carries the next tier as a tie-break too small to change its own optimum, so a stage
  stopped by its limits still leaves a good plan, and moves such a plan does not need are pruned.
- Limits: a node limit per stage (deterministic: the same input gives the same plan) and
  policy.solver_seconds of wall clock for all stages together (at most LARGE_POOL_SECONDS above
  SMALL_POOL hosts), as a safety net whose hitting the plan reports in `solver_status` (the
  plan is then the best found, if better than the greedy; such a plan may differ between runs).
- A MIP constrains the end state. Its moves are then ordered by replaying them through the greedy's
  own rules (rules.first_rejection), each valid at its turn given the moves before it; a move
  `requires` the earlier departures from its destination without which it would be refused. A plan
  with no executable order (moves that each wait for another to leave first: a swap, a cycle) gets a
  cut forbidding that cycle unless something else leaves its destinations (cut_cycle), and is
  repaired around it (_orderable): a small model in which only the cycle's domains, the plan's other
  arrivals there and those hosts' residents may change, solved for a plan as good in stage 1's terms
  with the fewest migrations, cut and repaired again while it has no order (at most
  REPAIRS_PER_ROUND times).
  The stages then run again from the repaired plan in the time left (at most ORDER_CUTS rounds; the
  plan is then not proven optimal); a repaired plan with an order is the fallback if their plans
  have none. A plan still without an order, or whose objective is not better than the greedy
  plan's, is not used: the greedy plan stands.
"""

import math
import time
from dataclasses import dataclass
from typing import Optional

from . import objective, rules
from .search import excess_cores, fewest_needed
from .state import Move, busy_demand

try:
    import highspy
    import numpy as np
except ImportError:  # pragma: no cover - the requirements install it; the greedy engine needs nothing
    highspy = None

MAX_HOSTS = 250
MAX_DOMAINS = 5000
MAX_COLUMNS = 60000
ROOM_MAKERS_PER_HOST = 4
SMALL_POOL = 16  # hosts: up to this size every resident that helps may make room
DESTINATIONS_PER_DOMAIN = 12  # above SMALL_POOL hosts; up to it every allowed host
SLACK_MOVES = 3
MIP_MAX_NODES = 2000
PEAK_MAX_NODES = 200
PEAK_MAX_COLUMNS = 3000
LARGE_POOL_SECONDS = 0.8  # the wall-clock budget above SMALL_POOL hosts
PEAK_GAP = 1e-4
COUNT_GAP = 0.45
TIE_WEIGHT = 1e-7
STAGE_SHARE = {1: 0.5, 2: 0.7, 3: 1.0}  # of the wall-clock budget left when the stage starts
CLEAR_SHARE = 0.6  # of the budget, for the search of a plan that clears every sustained host (the top term: it gets most)
STAGE_TOLERANCE = 1e-6
REPAIR_SHARE = 0.3  # of the time left, for the repair of a plan after a cycle cut (a small model)
COUNT_SHARE = 0.6  # of the time of the clearing search, stage 1 and stage 2, for the solver; the rest polishes
FIRST_SHARE = 0.5  # of the clearing search's time left, for any plan that clears if the count found none
POLISH_STEP_SECONDS = 0.2  # one small model of _polish at most
ORDER_CUTS = 3  # rounds of cycle cuts (a plan with no executable order solved again) per plan at most
POLISH_CUTS = 2  # cycle cuts per small model of _polish at most
REPAIRS_PER_ROUND = 8  # cycle cuts and repairs of a plan with no executable order in one round, at most


@dataclass(frozen=True)
class Outcome:
    accepted: bool = False
    optimal: Optional[bool] = None
    gap: Optional[float] = None
    status: Optional[str] = None
    warning: Optional[str] = None


def too_big(hosts):
    """Why the exact engine does not serve this pool, or None."""
    if highspy is None:
        return "highspy is not installed"
    running = sum(len(h.running) for h in hosts)
    if len(hosts) > MAX_HOSTS or running > MAX_DOMAINS:
        return (f"{len(hosts)} hosts / {running} running domains is above the exact engine's"
                f" {MAX_HOSTS} hosts / {MAX_DOMAINS} domains")
    return None


class _Model:
    """Columns and rows of the MIP, built from the initial state of a Planning."""

    def __init__(self, planning, greedy_moves):
        self.planning = planning
        state, policy = planning.state, planning.policy
        self.state, self.policy = state, policy
        verdicts = planning.verdicts
        threshold, candidate = policy.load_threshold, policy.max_load_candidate
        self.columns = []  # (kind, key)
        self.lower, self.upper, self.integral = [], [], []
        self.rows = []  # (lower, upper, [(column, value)])
        self.cuts = 0  # cycle cuts made (cut_cycle)

        hosts = {h.name: h for h in state.hosts}
        self.home = {d.name: h.name for h in state.hosts for d in h.running}
        self.domains = state.domains
        self.sustained = [n for n in sorted(hosts) if verdicts[n].sustained]
        self.maintenance = [n for n in sorted(hosts) if state[n].maintenance]
        self.verdicts = verdicts
        # a sustained-overloaded host may receive once it has shed enough (its constraints are switched)
        self.destinations = [n for n in sorted(hosts) if not state[n].maintenance
                             and (verdicts[n].sustained or state[n].load <= threshold)]

        movable = {name for name, d in self.domains.items() if rules.blocker(d, policy) is None}
        candidates = {n for n in movable if state[self.home[n]].maintenance}
        for s in self.sustained:
            candidates |= self._useful(s, movable)
        candidates |= {n for n in planning.initial_breaks if n in movable}
        candidates |= {m.domain.name for m in greedy_moves}
        room_makers = self._room_makers(candidates, movable)
        self.movers = sorted(candidates | room_makers)
        moving = set(self.movers)

        # x columns: statically allowed (pin, maintenance, not home, could fit if room were made)
        self.x = {}
        for name, allowed in sorted(self._static_destinations(moving).items()):
            for dest in allowed:
                self.x[name, dest] = self._column("x", (name, dest), 0, 1, True)
        for move in greedy_moves:  # the warm start must be representable
            key = (move.domain.name, move.destination)
            if key not in self.x:
                self.x[key] = self._column("x", key, 0, 1, True)
        self.outgoing, self.incoming = {}, {h: [] for h in hosts}
        for (name, dest), col in sorted(self.x.items()):
            self.outgoing.setdefault(name, []).append(col)
            self.incoming[dest].append((name, col))
        for name, cols in self.outgoing.items():
            self._row(-math.inf, 1, [(c, 1.0) for c in cols])
        self._destination_rows(candidate)
        self.excess = {s: self._column("e", s, 0, math.inf, False) for s in self.sustained}
        self.over = {s: self._column("o", s, 0, 1, True) for s in self.sustained}
        for s in self.sustained:
            current = state[s]
            # end load - threshold <= e, and <= (load now - threshold) * o (o = 1: still overloaded).
            # Departures only: a host that receives ends under max_load_candidate anyway. (With the
            # arrivals in the second row the relaxation is tighter and some counts are proven sooner,
            # but stage 1 then finds plans that lower the excess a little for many more migrations,
            # which the count stage cannot bring down in its time; with them in both rows HiGHS 1.16's
            # presolve was seen to loop without end, deaf to its time limit: memory_tight seed 1.)
            terms = [(c, v) for c, v in self._load_terms(s) if v < 0]
            self._row(-math.inf, threshold - current.load, terms + [(self.excess[s], -1.0)])
            self._row(-math.inf, threshold - current.load,
                      terms + [(self.over[s], -(current.load - threshold))])
            # cover cut: clearing the host takes at least as many departures as its biggest modelled
            # domains need (arrivals only add load); valid for any plan, it tightens the relaxation
            leaving = [c for n in self._residents(s) for c in self.outgoing.get(n, ())]
            ranked = sorted((self.domains[n] for n in self._residents(s) if n in self.outgoing),
                            key=objective.shed_order)
            need = fewest_needed(current, ranked, threshold)
            if need is None:
                self.upper[self.over[s]] = self.lower[self.over[s]] = 1  # cannot be cleared
            else:
                self._row(need, math.inf, [(c, 1.0) for c in leaving] + [(self.over[s], float(need))])
        # only while every sustained host must be cleared (o = 0 held): its end load with arrivals
        # is at most the threshold, a tighter relaxation for the search of such a plan
        self.clear_rows = [(-math.inf, threshold - state[s].load, self._load_terms(s)) for s in self.sustained]
        self.left_on_maintenance = []  # (constant, terms): domains that stay
        for m in self.maintenance:
            for n in self._residents(m):
                self.left_on_maintenance.append([(c, -1.0) for c in self.outgoing.get(n, ())])
        self.break_terms, self.break_constant = self._break_rows()
        self._row(-math.inf, policy.max_migrations, [(c, 1.0) for c in self.x.values()])
        self.peak = self._column("p", "peak", 0, math.inf, False)
        sending = self.outgoing_hosts()
        fixed_peak = max((state[h].load for h in hosts if not self.incoming[h] and h not in sending), default=0.0)
        self.lower[self.peak] = fixed_peak
        self.peak_rows = []  # only stage 3 needs them
        for h in sorted(hosts):
            terms = self._load_terms(h)
            if terms:
                self.peak_rows.append((-math.inf, -state[h].load, terms + [(self.peak, -1.0)]))

    # ------------------------------------------------------------ building blocks

    def _column(self, kind, key, lower, upper, integral):
        self.columns.append((kind, key))
        self.lower.append(lower)
        self.upper.append(upper)
        self.integral.append(integral)
        return len(self.columns) - 1

    def _row(self, lower, upper, terms):
        if terms:
            self.rows.append((lower, upper, terms))

    def _residents(self, host_name):
        return sorted(d.name for d in self.state.parsed[host_name].running)

    def outgoing_hosts(self):
        return {self.home[n] for n in self.outgoing}

    def _load_terms(self, h, demand=lambda domain: domain.cpu):
        """End load of host h minus its load now, as terms in x (of the domains' `demand`: their
        CPU use, or their busy demand for the busy load)."""
        cpus = self.state[h].cpus
        terms = [(c, -demand(self.domains[n]) / cpus) for n in self._residents(h) for c in self.outgoing.get(n, ())]
        terms += [(c, demand(self.domains[n]) / cpus) for n, c in self.incoming[h]]
        return terms

    def _useful(self, host_name, movable):
        """The movable domains of a sustained host that can be in a set of at most fewest + SLACK_MOVES
        domains bringing it under the threshold (the smallest ones cannot: they are left out)."""
        host = self.state[host_name]
        ranked = sorted((d for d in self.state.parsed[host_name].running if d.name in movable and d.cpu > 0),
                        key=objective.shed_order)
        fewest = fewest_needed(host, ranked, self.policy.load_threshold)
        if fewest is None:
            return {d.name for d in ranked}
        size = fewest + SLACK_MOVES
        excess = excess_cores(host, self.policy.load_threshold)
        biggest = sum(d.cpu for d in ranked[:size - 1])
        return {d.name for index, d in enumerate(ranked)
                if index < size - 1 or d.cpu + biggest >= excess * (1 - rules.TOLERANCE)}

    def _room_makers(self, candidates, movable):
        """Movable domains on calm destinations whose departure would help some candidate in.

        A candidate "waits" on a host when the rules' numeric tests (rules.Memory.fits,
        MaxLoadCandidate.may_fit, MaxVmPerHost.fits, run on arrays) or an anti-affine mate refuse it
        now but would let it in once every movable resident had left. A resident helps it when its
        departure lowers what is short (memory, load, the VM count, the mate). Per host, kept are
        the residents that alone let the most candidates in, then that help the most, then the
        biggest in memory (at most ROOM_MAKERS_PER_HOST).
        """
        state, policy = self.state, self.policy
        names = sorted(candidates)
        cpu = np.array([self.domains[n].cpu for n in names], dtype=np.float64)
        memory = np.array([self.domains[n].memory_mb for n in names], dtype=np.float64)
        chosen = set()
        for h in self.destinations:
            residents = [d for d in state.parsed[h].running if d.name in movable and d.name not in candidates]
            if self.verdicts[h].sustained or not residents:
                continue  # a sustained host's movable domains are candidates already
            current = state[h]
            cores = math.fsum(current.cpu_values)
            room_cpu = np.array([d.cpu for d in residents], dtype=np.float64)
            room_memory = np.array([d.memory_mb for d in residents], dtype=np.float64)
            allowed = np.array([self.home[n] != h and rules.Pin.allows(n, h, policy) for n in names], dtype=bool)
            mates = [rules.AntiAffinity.mates_on(n, h, policy, state.placement)[1] for n in names]
            memory_ok = rules.Memory.fits(current.free_mb, memory, policy)
            load_ok = rules.MaxLoadCandidate.may_fit((cores + cpu) / current.cpus, policy)
            count_ok = rules.MaxVmPerHost.fits(current.running + 1, policy)
            alone = np.array([not m for m in mates], dtype=bool)
            if_all_left = (rules.Memory.fits(current.free_mb + room_memory.sum(), memory, policy)
                           & rules.MaxLoadCandidate.may_fit((cores - room_cpu.sum() + cpu) / current.cpus, policy))
            waiting = np.flatnonzero(allowed & if_all_left & ~(memory_ok & load_ok & count_ok & alone))
            if not waiting.size:
                continue
            helps = ((~memory_ok[waiting])[:, None] & (room_memory > 0)[None, :]) \
                | ((~load_ok[waiting])[:, None] & (room_cpu > 0)[None, :]) \
                | np.full((waiting.size, len(residents)), not count_ok, dtype=bool)
            alone_after = (rules.Memory.fits(current.free_mb + room_memory[None, :], memory[waiting][:, None], policy)
                           & rules.MaxLoadCandidate.may_fit(
                               (cores - room_cpu[None, :] + cpu[waiting][:, None]) / current.cpus, policy)
                           & rules.MaxVmPerHost.fits(current.running, policy))
            for row, index in enumerate(waiting):
                if mates[index]:
                    is_mate = np.array([d.name in mates[index] for d in residents], dtype=bool)
                    helps[row, :] |= is_mate
                    alone_after[row, :] &= np.array([mates[index] == [d.name] for d in residents], dtype=bool)
            ranked = sorted((-int(single), -int(helped), -room.memory_mb, room.cpu, room.name)
                            for single, helped, room in zip(alone_after.sum(axis=0), helps.sum(axis=0), residents)
                            if helped)
            keep = len(ranked) if len(self.state.hosts) <= SMALL_POOL else ROOM_MAKERS_PER_HOST
            chosen |= {entry[4] for entry in ranked[:keep]}
        return chosen

    def _static_destinations(self, moving):
        """{domain name: [hosts]}: where each mover could go if every mover there left (pin,
        memory, load, anti-affinity), the hosts with the most room first, at most
        DESTINATIONS_PER_DOMAIN of them."""
        state, policy = self.state, self.policy
        hosts = self.destinations
        if not hosts:
            return {}
        leaving = {h: [d for d in state.parsed[h].running if d.name in moving] for h in hosts}
        free_most = np.array([state[h].free_mb + sum(d.memory_mb for d in leaving[h]) for h in hosts])
        cores_least = np.array([math.fsum(state[h].cpu_values + [-d.cpu for d in leaving[h]]) for h in hosts])
        cpus = np.array([state[h].cpus for h in hosts], dtype=np.float64)
        loads = np.array([state[h].load for h in hosts])
        free = np.array([state[h].free_mb for h in hosts])
        found = {}
        keep = len(hosts) if len(self.state.hosts) <= SMALL_POOL else DESTINATIONS_PER_DOMAIN
        for name in sorted(moving):
            domain = self.domains[name]
            mask = (rules.Memory.fits(free_most, domain.memory_mb, policy)
                    & rules.MaxLoadCandidate.may_fit((cores_least + domain.cpu) / cpus, policy))
            indices = [i for i in np.flatnonzero(mask) if hosts[i] != self.home[name]
                       and rules.Pin.allows(name, hosts[i], policy)]
            if name in policy.groups_of:
                indices = [i for i in indices
                           if all(m in moving for m in
                                  rules.AntiAffinity.mates_on(name, hosts[i], policy, state.placement)[1])]
            # most room first: lowest load after the move, then most free memory, then name
            ranked = sorted(indices, key=lambda i: (loads[i] + domain.cpu / cpus[i], -free[i], hosts[i]))
            found[name] = [hosts[i] for i in ranked[:keep]]
        return found

    def _destination_rows(self, candidate):
        state, policy = self.state, self.policy
        limit = policy.max_vm_per_host
        busy_limit = rules.BusyCandidate.limit(policy)
        for h in self.destinations:
            arrivals = self.incoming[h]
            if not arrivals:
                continue
            current = state[h]
            residents = self._residents(h)
            leaving_cols = [(n, c) for n in residents for c in self.outgoing.get(n, ())]
            clean = (current.load <= candidate and current.free_mb >= policy.memory_reserve_mb
                     and (limit is None or current.running <= limit) and current.busy_load <= busy_limit)
            switch = None
            if not clean:
                switch = self._column("y", h, 0, 1, True)
                for _name, col in arrivals:
                    self._row(-math.inf, 0, [(col, 1.0), (switch, -1.0)])
            # load: end load <= max_load_candidate
            terms = self._load_terms(h)
            self._guarded(terms, candidate - current.load, switch)
            # busy load: end busy load <= rules.BusyCandidate.limit; left out where the load row implies it
            # (domains without samples: busy demand = cpu, and the limit is at least max_load_candidate)
            busy_terms = self._load_terms(h, busy_demand)
            if busy_terms != terms or busy_limit - current.busy_load < candidate - current.load:
                self._guarded(busy_terms, busy_limit - current.busy_load, switch)
            # memory: memory taken in - memory freed <= free now - reserve
            # (in GiB, so that the rows' coefficients are of a size with the load rows')
            terms = [(c, self.domains[n].memory_mb / 1024) for n, c in arrivals]
            terms += [(c, -self.domains[n].memory_mb / 1024) for n, c in leaving_cols]
            self._guarded(terms, (current.free_mb - policy.memory_reserve_mb) / 1024, switch)
            if limit is not None:
                terms = [(c, 1.0) for _n, c in arrivals] + [(c, -1.0) for _n, c in leaving_cols]
                self._guarded(terms, limit - current.running, switch)
            for group in policy.hard_groups:
                staying = [n for n in group if self.home.get(n) == h]
                coming = [(n, c) for n, c in arrivals if n in group]
                if not coming:
                    continue
                # arrivals + members that stay <= 1 (a member arrives only where none stays)
                terms = [(c, 1.0) for _n, c in coming]
                terms += [(c, -1.0) for n in staying for c in self.outgoing.get(n, ())]
                self._row(-math.inf, 1 - len(staying), terms)

    def _guarded(self, terms, bound, switch):
        """sum(terms) <= bound, switched on by `switch` (None: always on).

        A host that receives nothing (switch = 0) only loses load, memory and domains, so its terms
        are at most 0: the smallest valid big-M is max(0, -bound), and none is needed when bound >= 0.
        """
        slack = 0.0 if switch is None else max(0.0, -bound)
        if slack == 0.0:
            self._row(-math.inf, bound, terms)
        else:
            self._row(-math.inf, bound + slack, terms + [(switch, slack)])

    def _break_rows(self):
        """Terms counting the rule breaks left (pin and anti-affinity), and their constant part."""
        state, policy = self.state, self.policy
        terms, constant = [], 0
        for name in sorted(self.planning.initial_breaks):
            if not rules.Pin.allows(name, self.home[name], policy):
                constant += 1
                terms += [(c, -1.0) for c in self.outgoing.get(name, ())]
        for group in policy.hard_groups:
            by_host = {}
            for name in group:
                if name in self.home:
                    by_host.setdefault(self.home[name], []).append(name)
            for h, members in sorted(by_host.items()):
                if len(members) < 2:
                    continue
                count = len(members)
                resolved = self._column("r", (group, h), 0, 1, True)
                broken = self._column("b", (group, h), 0, math.inf, False)
                leaving = [(c, -1.0) for n in members for c in self.outgoing.get(n, ())]
                # staying = count + sum(leaving); staying <= 1 + (count - 1)(1 - resolved)
                self._row(-math.inf, 1 + (count - 1) - count, leaving + [(resolved, count - 1)])
                # broken >= staying - count * resolved
                self._row(-math.inf, -count, leaving + [(resolved, -count), (broken, -1.0)])
                terms.append((broken, 1.0))
        return terms, constant

    def fewest_moves(self):
        """A lower bound on the migrations of any plan that clears everything: each movable domain
        on a maintenance host or outside its pin, plus on each sustained host the fewest of its
        biggest other domains whose departure brings it under the threshold."""
        state, policy = self.state, self.policy
        must = {n for n in self.movers if state[self.home[n]].maintenance
                or not rules.Pin.allows(n, self.home[n], policy)}
        count = len(must)
        for s in self.sustained:
            host = state[s]
            ranked = sorted((d for d in state.parsed[s].running if d.name in self.outgoing and d.name not in must),
                            key=objective.shed_order)
            left = [d.cpu for d in state.parsed[s].running if d.name in must]
            fewest = fewest_needed(host, ranked, policy.load_threshold, gone=left)
            count += fewest or 0
        return count

    def chosen(self, values):
        """The (domain, destination) pairs a solution moves, sorted."""
        return [key for key, col in sorted(self.x.items()) if values[col] > 0.5]

    def cut_cycle(self, stuck, plan):
        """Forbid a plan's moves that wait for each other, unless room is made otherwise. Among the
        `stuck` (domain, destination) pairs of `plan` (its pairs), which has no executable order: a
        cycle of moves each going where the next one leaves (all the stuck pairs if there is none).
        Their destinations fill up only by arrivals and empty only by departures, so the same moves
        stay stuck while the plan's other arrivals there still come and nothing else leaves there:
        x(cycle) + x(those arrivals) - x(departures there the plan did not have) <= their number - 1.
        """
        leaving = {}
        for pair in stuck:
            leaving.setdefault(self.home[pair[0]], []).append(pair)
        cycle = _find_cycle(sorted(stuck), lambda pair: leaving.get(pair[1], ())) or sorted(stuck)
        targets = {dest for _name, dest in cycle}
        moving = {name for name, _dest in plan}
        arrivals = [pair for pair in plan if pair[1] in targets and pair not in cycle]
        room = [c for h in sorted(targets) for n in self._residents(h) if n not in moving
                for c in self.outgoing.get(n, ())]
        pairs = cycle + arrivals
        self.cuts += 1
        self._row(-math.inf, len(pairs) - 1, [(self.x[pair], 1.0) for pair in pairs] + [(c, -1.0) for c in room])
        return {name for name, _dest in pairs} | {n for h in targets for n in self._residents(h)
                                                  if n not in moving and n in self.outgoing}

    # ------------------------------------------------------------ solving

    def objective_terms(self, tier):
        """([(column, coefficient)], constant) of a stage's objective."""
        if tier == 1:
            initial_excess = math.fsum(max(0.0, self.state[s].load - self.policy.load_threshold)
                                       for s in self.sustained)
            most_breaks = self.break_constant + sum(1 for _c, v in self.break_terms if v > 0) * len(self.domains)
            w_over = initial_excess + 1.0
            w_break = w_over * (len(self.sustained) + 1)
            weights = {"excess": 1.0, "over": w_over, "breaks": w_break,
                       "maintenance": w_break * (most_breaks + 1) + w_break}
            terms, constant = [], 0.0
            for name, part, part_constant, _integral in self.stage_one_parts():
                terms += [(c, weights[name] * v) for c, v in part]
                constant += weights[name] * part_constant
            return terms, constant
        if tier == 2:
            return [(c, 1.0) for c in self.x.values()], 0.0
        memory_total = sum(self.domains[n].memory_mb for n in self.movers) or 1.0
        terms = [(c, self.domains[name].memory_mb / (1e4 * memory_total)) for (name, _dest), c in self.x.items()]
        return terms + [(self.peak, 1.0)], 0.0

    def solve_terms(self, tier):
        """What a stage minimises: its objective plus the next tier as a tie-break too small to
        change its optimum, so a stage stopped by its limits still leaves a good plan.

        Stage 1 adds TIE_WEIGHT in all for the migrations (the load above the threshold, the only
        continuous term, is held to STAGE_TOLERANCE > TIE_WEIGHT). Stage 2 adds the peak scaled to
        less than half a migration; it stops once the gap is under half a migration (COUNT_GAP),
        which proves the count, not the peak (stage 3 then minimises the peak).
        """
        terms, _constant = self.objective_terms(tier)
        if tier == 1:
            weight = TIE_WEIGHT / (len(self.x) + 1)
            terms = terms + [(c, weight) for c in self.x.values()]
        elif tier == 2:
            terms = terms + [(self.peak, 0.4 / self.peak_bound())]
        return terms

    def peak_bound(self):
        """More than any host's load after any plan of the model."""
        state = self.state
        return 1.0 + max((state[h].load + sum(self.domains[n].cpu for n, _c in self.incoming[h]) / state[h].cpus
                          for h in self.incoming), default=1.0)

    def value(self, tier, values):
        terms, constant = self.objective_terms(tier)
        return math.fsum(values[c] * v for c, v in terms) + constant

    def held(self, tier, values):
        """Rows holding a solved stage at its value: stage 1 one row per term (better numbers than
        its weighted sum), the others one row each."""
        if tier != 1:
            terms, constant = self.objective_terms(tier)
            return [(terms, self.value(tier, values) - constant, tier == 2)]
        return [(terms, math.fsum(values[c] * v for c, v in terms), integral)
                for _name, terms, _constant, integral in self.stage_one_parts() if terms]

    def stage_one_parts(self):
        """Stage 1's terms, in objective order reversed: (name, terms, constant, whole number)."""
        return [("excess", [(c, 1.0) for c in self.excess.values()], 0.0, False),
                ("over", [(c, 1.0) for c in self.over.values()], 0.0, True),
                ("breaks", self.break_terms, self.break_constant, True),
                ("maintenance", [(c, v) for row in self.left_on_maintenance for c, v in row],
                 len(self.left_on_maintenance), True)]


def _prune(model, values, caps):
    """Drop the moves a plan does not need: each chosen move, least CPU first, is taken out when
    every row of the model (the rules, and the stages held by `caps`) still holds without it.
    A solve stopped by its limits can carry moves that do nothing; this is a deterministic pass."""
    rows = list(model.rows) + [(-math.inf, most + (0.5 if integral else STAGE_TOLERANCE * max(1.0, abs(most))), terms)
                               for terms, most, integral in caps]
    by_column = {}
    for index, (_low, _high, terms) in enumerate(rows):
        for column, _value in terms:
            by_column.setdefault(column, []).append(index)
    sums = [math.fsum(values[c] * v for c, v in terms) for _low, _high, terms in rows]
    chosen = sorted((c for c in model.x.values() if values[c] > 0.5),
                    key=lambda c: (model.domains[model.columns[c][1][0]].cpu, model.columns[c][1]))
    for column in chosen:
        touched = by_column.get(column, [])
        trial = {i: sums[i] - math.fsum(v for c, v in rows[i][2] if c == column) for i in touched}
        if all(rows[i][0] - 1e-9 <= trial[i] <= rows[i][1] + 1e-9 for i in touched):
            values[column] = 0.0
            for index, total in trial.items():
                sums[index] = total
    return values


def _find_cycle(nodes, successors):
    """A list of nodes that form a cycle (each node's successor is the next, the last's the first), or None."""
    colour = {}  # 1: on the current path, 2: done
    for start in nodes:
        if start in colour:
            continue
        path, stack = [], [(start, iter(successors(start)))]
        colour[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                colour[node] = 2
            elif colour.get(child) == 1:
                return path[path.index(child):]
            elif child not in colour:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(successors(child))))
    return None


def _combine(terms):
    merged = {}
    for column, value in terms:
        merged[column] = merged.get(column, 0.0) + value
    return merged


def _solve(model, tier, caps, warm, seconds, clearing=False, fixed=None, any_plan=False):
    """Minimise one tier with the earlier tiers held by `caps` ([(terms, most)]); warm: x columns set to 1;
    fixed: {column: value} held there; clearing: with the rows that hold while every sustained host is cleared.

    Returns (values or None, HiGHS model status, gap)."""
    highs = getattr(highspy, "_Highs", highspy.Highs)()  # the bare binding prints no banner
    # No `threads` option: HiGHS has one scheduler per process, and asking for another thread count
    # than the first instance did makes run() fail. Its branch and bound is deterministic as it is.
    nodes, gap, absolute = {1: (MIP_MAX_NODES, 0.0, 0.0), 2: (MIP_MAX_NODES, 0.0, COUNT_GAP),
                            3: (PEAK_MAX_NODES, PEAK_GAP, 0.0)}[tier]
    for option, value in (("output_flag", False), ("mip_max_nodes", nodes), ("random_seed", 0),
                          ("time_limit", float(seconds)), ("mip_rel_gap", gap), ("mip_abs_gap", absolute)):
        highs.setOptionValue(option, value)
    count = len(model.columns)
    inf = highspy.kHighsInf
    lower = np.array([v if v != -math.inf else -inf for v in model.lower], dtype=np.float64)
    upper = np.array([v if v != math.inf else inf for v in model.upper], dtype=np.float64)
    highs.addVars(count, lower, upper)
    highs.changeColsIntegrality(count, np.arange(count, dtype=np.int32),
                                np.array(model.integral, dtype=np.uint8))
    cost = np.zeros(count)
    for column, value in ([] if any_plan else _combine(model.solve_terms(tier)).items()):
        cost[column] += value
    highs.changeColsCost(count, np.arange(count, dtype=np.int32), cost)
    rows = list(model.rows) + (model.peak_rows if tier == 3 else []) + (model.clear_rows if clearing else [])
    for column, value in (fixed or {}).items():
        lower[column] = upper[column] = value
    for terms, most, integral in caps:
        if most <= STAGE_TOLERANCE and all(v > 0 and lower[c] == 0 for c, v in terms):
            for column, _value in terms:  # held at 0: fix the columns, presolve drops them
                upper[column] = 0.0
        else:  # counts are whole numbers: half a unit of room is safe and numerically kind
            rows.append((-math.inf, most + (0.5 if integral else STAGE_TOLERANCE * max(1.0, abs(most))), terms))
    highs.changeColsBounds(count, np.arange(count, dtype=np.int32), lower, upper)
    for low, high, row_terms in rows:
        merged = _combine(row_terms)
        highs.addRow(-inf if low == -math.inf else low, inf if high == math.inf else high, len(merged),
                     np.array(list(merged), dtype=np.int32), np.array(list(merged.values()), dtype=np.float64))
    index = np.array(sorted(model.x.values()), dtype=np.int32)
    highs.setSolution(len(index), index, np.array([1.0 if c in warm else 0.0 for c in index], dtype=np.float64))
    highs.run()
    status = highs.modelStatusToString(highs.getModelStatus())
    info = highs.getInfo()
    solution = highs.getSolution().col_value
    if info.primal_solution_status != 2 or len(solution) != count:
        return None, status, None
    gap = info.mip_gap if math.isfinite(info.mip_gap) else None
    return list(solution), status, gap


def improve(planning, greedy_moves, greedy_objective):
    """Solve; replace planning.state's greedy moves with the exact plan when it is valid and better.

    Stages: 1 the measure terms, 2 the number of migrations, 3 the peak (memory as a tie-break),
    each with the earlier ones held at their optimum. A stage whose optimum the greedy plan
    provably reaches already (stage 1 at 0; stage 2 at the lower bound `fewest_moves`) is skipped.
    A plan with no executable order (moves that each wait for another to leave first: a swap, a
    cycle) gets cuts and repairs (cut_cycle, _repair), and the stages run again from the repaired
    plan in the time left, at most ORDER_CUTS rounds; the plan is then not proven optimal (the order
    is found greedily, so a cut may forbid a plan that some other order would have run).
    """
    state, policy = planning.state, planning.policy
    threshold = policy.load_threshold
    greedy_left_over = math.fsum(max(0.0, s.load - threshold) + (s.load > threshold)
                                 for s in state.states() if planning.verdicts[s.name].sustained)
    applied = state.undo_to(0)
    model = _Model(planning, greedy_moves)
    if len(model.columns) > MAX_COLUMNS:
        _restore(state, applied)
        return Outcome(status="model too big", warning=(
            f"the exact model has {len(model.columns)} columns (> {MAX_COLUMNS}): greedy plan kept"))
    # for all stages together; a big model gets less (its pool is planned again next interval, and
    # the greedy plan is its fallback), so that a 100-host pool plans within 2 s
    budget = policy.solver_seconds
    if len(state.hosts) > SMALL_POOL:
        budget = min(budget, LARGE_POOL_SECONDS)
    deadline = time.monotonic() + budget
    cleared = greedy_objective[:2] == (0, 0) and greedy_left_over <= STAGE_TOLERANCE
    warm = {model.x[m.domain.name, m.destination] for m in greedy_moves}

    def stuck(values):
        """The moves of a plan that wait for each other, [] when it has an executable order (the
        state is left as it was)."""
        _ordered, pairs = _order(planning, model.chosen(values))
        state.undo_to(0)
        return pairs

    rounds, fallback = 0, None
    while True:
        staged = _staged(model, warm, deadline, cleared, greedy_objective, stuck)
        if staged.failed:
            _restore(state, applied)
            return Outcome(status=staged.status, optimal=False)
        cuts = model.cuts
        status = staged.status + (f"; solved again after {cuts} cycle cut(s), so not proven optimal" if cuts else "")
        # the last stage's plan, or else the latest earlier one with an executable order (a later stage
        # only improves lower tiers, and may have picked a cycle where an earlier plan had none)
        ordered = None
        for back, values in enumerate(reversed(staged.plans)):
            ordered, _pairs = _order(planning, model.chosen(values))
            if ordered is not None:
                if back:
                    status += f"; the last stage's plan has no executable order: the one of {back} stage(s) before"
                break
        out_of_time = rounds >= ORDER_CUTS or time.monotonic() >= deadline
        if ordered is None and fallback is not None and out_of_time:
            ordered, _pairs = _order(planning, model.chosen(fallback))
            status += "; the stages' plans have no executable order: a repaired plan instead"
        if ordered is not None or out_of_time:
            break
        # cut the cycle and repair the plan around it until it has an order: the next round's warm start
        repaired = _orderable(model, staged.plans[-1], stuck, deadline)
        if repaired is not None:
            warm = {c for c in model.x.values() if repaired[c] > 0.5}
            fallback = repaired  # if the stages' next plans have no order
        rounds += 1
    proven = staged.proven and not model.cuts
    if ordered is None:
        _restore(state, applied)
        return Outcome(status=f"{status}; no executable order", optimal=False, gap=staged.gap,
                       warning="the exact plan has no executable order (a swap): greedy plan kept")
    exact_objective = objective.engine_objective_of(planning.current_measure(), state.moves)
    if not _better(exact_objective, greedy_objective):
        state.undo_to(0)
        _restore(state, applied)
        return Outcome(status=f"{status}; greedy plan as good", optimal=proven, gap=staged.gap)
    return Outcome(accepted=True, optimal=proven, gap=staged.gap, status=status)


def _orderable(model, plan, stuck, deadline):
    """`plan` if it has an executable order; else, cut by cut (cut_cycle), the plan repaired around
    each cycle: as good in stage 1's terms, with the fewest migrations, changing only the moves of the
    domains of the cut and of the residents of its destinations (a small model, each solved in
    REPAIR_SHARE of the time left). Returns the values of the first with an order, or None after
    REPAIRS_PER_ROUND cuts."""
    held = model.held(1, plan)
    clearing = model.value(1, plan) <= STAGE_TOLERANCE
    for _repair in range(REPAIRS_PER_ROUND + 1):
        pairs = stuck(plan)
        if not pairs:
            return plan
        if _repair == REPAIRS_PER_ROUND:
            break
        free = model.cut_cycle(pairs, model.chosen(plan))
        fixed = {c: plan[c] for (name, _dest), c in model.x.items() if name not in free}
        seconds = (deadline - time.monotonic()) * REPAIR_SHARE
        plan, _status, _gap = _solve(model, 2, held, set(), seconds, clearing=clearing, fixed=fixed)
        if plan is None:
            break
    return None


def _any_clearing(model, clear, warm, seconds):
    """The values of a plan that clears every sustained host, or None, found fast: any plan at all is
    asked for (no objective), with and then without the clearing rows (the solver finds one much
    sooner with them on some models and without them on others), each in half the time."""
    for clearing in (True, False):
        values, status, _gap = _solve(model, 2, clear, warm, seconds / 2, clearing=clearing, any_plan=True)
        if values is not None or status == "Infeasible":
            return values
    return None


def _polish(model, plan, stuck, deadline):
    """Fewer migrations for `plan`, as good in stage 1's terms, by small models (large neighbourhood
    search): in turn, the domains on a few hosts the plan's moves link (each chain of two moves, then
    each move's two ends) and those moving there may change, the rest is held, each solve in at most
    POLISH_STEP_SECONDS. They may move among those hosts; once that finds nothing, anywhere. A plan
    with an executable order is only replaced by one with an order (a cycle found is cut, and the
    same hosts are tried again). Passes until neither finds anything or the time is up; returns the
    best plan."""
    ordered = not stuck(plan)
    held = model.held(1, plan)
    clearing = model.value(1, plan) <= STAGE_TOLERANCE
    anywhere = False
    while time.monotonic() < deadline:
        pairs = model.chosen(plan)
        better = None
        for hosts in _neighbourhoods(model, pairs):
            free = {n for h in hosts for n in model._residents(h)} | {n for n, dest in pairs if dest in hosts}
            fixed = {c: plan[c] for (name, dest), c in model.x.items()
                     if name not in free or not (anywhere or dest in hosts or plan[c] > 0.5)}
            if deadline - time.monotonic() <= 0:
                break
            for _cut in range(POLISH_CUTS + 1):
                solved, _status, _gap = _solve(model, 2, held, {model.x[pair] for pair in pairs},
                                               min(deadline - time.monotonic(), POLISH_STEP_SECONDS),
                                               clearing=clearing, fixed=fixed)
                if solved is None or len(model.chosen(solved)) >= len(pairs):
                    break
                waiting = stuck(solved) if ordered else []
                if not waiting:
                    better = solved
                    break
                model.cut_cycle(waiting, model.chosen(solved))
            if better is not None:
                break
        if better is not None:
            plan, anywhere = better, False
        elif anywhere:
            break
        else:
            anywhere = True
    return plan


def _neighbourhoods(model, pairs):
    """Host sets for _polish, smallest change first: the three hosts of each chain of two moves (a
    domain goes where another leaves), then the two of each move."""
    chains = [(model.home[name], dest, onward) for name, dest in pairs
              for onward in sorted({d for n, d in pairs if model.home[n] == dest})]
    seen, out = set(), []
    for hosts in [frozenset(chain) for chain in chains] + [frozenset((model.home[n], d)) for n, d in pairs]:
        if hosts not in seen:
            seen.add(hosts)
            out.append(sorted(hosts))
    return out


@dataclass
class _Staged:
    """What the staged solve found: each stage's plan (x values), in order."""

    plans: list
    proven: bool = True
    gap: Optional[float] = None
    status: str = "optimal"
    failed: bool = False


def _staged(model, warm, deadline, cleared, greedy_objective, stuck):
    """The stages of improve(), from the greedy plan `warm` (x columns set to 1), until `deadline`.

    The plan that counts the migrations is checked for an executable order (stuck: the moves that
    wait for each other) before the peak is optimised: without one, the staged solve stops there, for
    improve() to cut the cycle."""
    budget = deadline - time.monotonic()
    values = [0.0] * len(model.columns)
    for column in warm:
        values[column] = 1.0
    found = _Staged(plans=[])
    caps, counted = [], False
    if not cleared and greedy_objective[:2] == (0, 0) and model.over:
        # The greedy plan leaves a sustained host over: first look for a plan that clears them all
        # (stage 1 at its lower bound, 0), counting migrations: that is stage 2 with stage 1 held at
        # 0, and fixing the clearing makes it far easier for the solver than the weighted stage 1.
        # When none is found in its share of the budget, stage 1 runs with what is left.
        clearing = {"excess", "over"}
        clear = [(terms, 0.0 if name in clearing else math.fsum(values[c] * v for c, v in terms), integral)
                 for name, terms, _constant, integral in model.stage_one_parts() if terms]
        # The count, from the greedy plan; when it finds no plan, any plan that clears (found much
        # sooner), then fewer migrations by small models (_polish), as when it found one unproven.
        clear_deadline = time.monotonic() + budget * CLEAR_SHARE
        solved, clear_status, found.gap = _solve(model, 2, clear, warm, budget * CLEAR_SHARE * COUNT_SHARE,
                                                 clearing=True)
        if solved is None and clear_status != "Infeasible":
            solved = _any_clearing(model, clear, warm, (clear_deadline - time.monotonic()) * FIRST_SHARE)
        if solved is not None and clear_status != "Optimal":
            solved = _prune(model, solved, clear)
            solved = _polish(model, _orderable(model, solved, stuck, clear_deadline) or solved, stuck, clear_deadline)
        if solved is not None and model.value(1, solved) <= STAGE_TOLERANCE:
            values = solved  # pruned before it was ordered and polished, if not optimal
            warm = {c for c in model.x.values() if values[c] > 0.5}
            found.plans.append(values)
            cleared = counted = True
            caps = clear + model.held(2, values)
            if clear_status != "Optimal":
                found.proven, found.status = False, clear_status
            if stuck(values):
                return found
    for tier in (1, 2, 3):
        if tier < 3 and counted:
            continue
        if tier == 1 and cleared:
            caps += model.held(1, values)  # nothing is left to fix: the lower bound
            continue
        if tier == 2 and model.value(1, values) <= STAGE_TOLERANCE and len(warm) <= model.fewest_moves():
            caps += model.held(2, values)  # the plan needs no more migrations than the lower bound
            continue
        if tier == 3 and len(model.columns) > PEAK_MAX_COLUMNS:
            found.proven, found.status = False, f"peak not optimised (model of {len(model.columns)} columns)"
            break
        # each stage may use its share of what is left, so a slow stage 1 leaves stage 2 time to
        # count the migrations of the best plan it found
        seconds = (deadline - time.monotonic()) * STAGE_SHARE[tier]
        if seconds <= 0:
            found.proven, found.status = False, "Time limit reached"
            break
        stage_deadline = time.monotonic() + seconds
        solved, stage_status, found.gap = _solve(model, tier, caps, warm, seconds * (COUNT_SHARE if tier < 3 else 1))
        if solved is None:
            found.failed, found.status = True, f"stage {tier}: {stage_status}"
            return found
        values = solved if stage_status == "Optimal" else _prune(model, solved, caps)
        if tier < 3 and stage_status != "Optimal":  # as in the clearing search
            values = _polish(model, _orderable(model, values, stuck, stage_deadline) or values, stuck, stage_deadline)
        warm = {c for c in model.x.values() if values[c] > 0.5}
        found.plans.append(values)
        found.proven = found.proven and stage_status == "Optimal"
        if stage_status != "Optimal":
            found.status = stage_status
        caps += model.held(tier, values)
        if tier == 2 and stuck(values):
            return found
    if not found.plans:
        found.plans.append(values)  # every stage skipped: the greedy plan is the answer
    return found


def _restore(state, moves):
    for move in moves:
        state.apply(move)


def _better(candidate, incumbent):
    """Lexicographic comparison with the stage tolerance on the continuous terms."""
    for mine, theirs in zip(candidate, incumbent):
        if abs(mine - theirs) > STAGE_TOLERANCE * max(1.0, abs(theirs)):
            return mine < theirs
    return False


def _order(planning, chosen):
    """Apply the chosen (domain, destination) pairs to the state in an executable order: (moves, []),
    or (None, the pairs that each wait for another) when there is none.

    Priority: evacuations, repairs, then moves off sustained hosts (each by name), room makers when
    something waits for them; at each turn the first move in that order that every rule allows.
    """
    state, policy, verdicts = planning.state, planning.policy, planning.verdicts
    home = dict(state.placement)

    def priority(pair):
        name, dest = pair
        source = home[name]
        if state[source].maintenance:
            return (0, source, name)
        if name in planning.initial_breaks:
            return (1, source, name)
        if verdicts[source].sustained:
            return (2, source, name)
        return (3, source, name)

    pending = sorted(chosen, key=priority)
    while pending:
        for index, (name, dest) in enumerate(pending):
            domain = state.domains[name]
            if rules.first_rejection(domain, state[dest], state, policy) is None:
                break
        else:
            state.undo_to(0)
            return None, pending
        pending.pop(index)
        requires = _requirements(state, policy, domain, dest)
        state.apply(Move(domain, home[name], dest, "", requires))
    _explain(planning, home)
    return state.moves, []


def _requirements(state, policy, domain, dest):
    """The earlier departures from `dest` without which `domain` would be refused there."""
    departed = [m for m in state.moves if m.source == dest]
    needed = []
    for move in departed:
        with state.placed(move.domain, dest):
            if rules.first_rejection(domain, state[dest], state, policy) is not None:
                needed.append(move.domain.name)
    if not needed and departed:
        with state.placed_all([m.domain for m in departed], dest):
            if rules.first_rejection(domain, state[dest], state, policy) is not None:
                needed = [m.domain.name for m in departed]
    return tuple(needed)


def _explain(planning, home):
    """Each move's reason, as the greedy engine would give it."""
    state, verdicts = planning.state, planning.verdicts
    required_by = {}
    for move in state.moves:
        for name in move.requires:
            required_by.setdefault(name, []).append(move)
    for move in state.moves:
        name, source = move.domain.name, move.source
        if state[source].maintenance:
            move.reason = f"{source} in maintenance"
        elif name in planning.initial_breaks:
            move.reason = planning.initial_breaks[name]
        elif verdicts[source].sustained:
            move.reason = verdicts[source].reason
    for move in state.moves:
        if not move.reason:
            waiting = required_by.get(move.domain.name, [])
            why = waiting[0].reason if waiting else "exact plan"
            move.reason = (f"makes room on {move.source} for {', '.join(m.domain.name for m in waiting)}: {why}"
                           if waiting else f"moves with the exact plan: {why}")
