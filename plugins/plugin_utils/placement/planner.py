# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The driver: parse, judge each host, plan with the greedy engine, improve with the exact one, report.

Engines (policy.engine):
- greedy (steps.py): fast, always available; its plan is the exact engine's warm start and fallback.
- exact (exact.py): a mixed-integer program solved with HiGHS, for pools up to exact.MAX_HOSTS hosts
  and exact.MAX_DOMAINS running domains, run only when something needs fixing (a maintenance host
  with running domains, a rule break, a sustained overload). Its plan replaces the greedy one only
  when it replays as a valid sequence of moves and its objective (objective.py) is better.
- auto (default): exact where it serves, greedy elsewhere.
"""

from dataclasses import dataclass
from typing import Optional

from . import exact, explain, rules, selectors, steps
from .history import (INSUFFICIENT, NOT_SUSTAINED, SUSTAINED, Judgment, busy, figure, held_spread, judge,
                      level, minutes, recent_peak)
from .model import PlacementError, parse_cluster, parse_policy
from .objective import (BALANCE_LEVELS, COUNT_TERMS, MEASURE_TERMS, Measured, engine_objective_of, imbalance,
                        measure_of, spread)
from .search import Search
from .state import ClusterState, np, rounded

IMBALANCE = MEASURE_TERMS.index("imbalance")
LEVEL_WINDOW = 3  # x max_over: the minutes of samples a domain's level (its forecast, history.level) is the mean of
BUSY_WINDOW = 12  # x max_over: the minutes of samples a domain's busy demand is taken from (history.busy)


@dataclass(frozen=True)
class Verdict:
    """What the samples say about a host: its judgments, whether it must shed, and the move reasons."""

    judgment: Judgment
    sustained: bool
    reason: str
    memory: Optional[Judgment] = None  # None while memory_threshold is null
    memory_sustained: bool = False
    memory_reason: str = ""


def forecast_words(policy):
    """How a forecast is named in reasons: the mean use of the host's domains over the level's window."""
    return f"its domains' mean use over {minutes(LEVEL_WINDOW * policy.max_over)} min"


def assess(state, policy):
    verdicts = {}
    for host in state.hosts:
        current = state[host.name]
        judgment = judge(host.samples, policy.load_threshold, policy.max_over, policy.interval, policy.now)
        sustained = (not current.maintenance and current.load > policy.load_threshold
                     and judgment.verdict == SUSTAINED)
        load = figure(current.load, policy.load_threshold)
        reason = f"{host.name} overloaded {load} > {policy.load_threshold} for {minutes(judgment.over_for_min)} min"
        if (not sustained and policy.predictive and not current.maintenance
                and current.load > policy.load_threshold and judgment.verdict in (INSUFFICIENT, NOT_SUSTAINED)
                and current.levelled and current.forecast > policy.load_threshold):
            # the level its domains keep coming back to is over the threshold too: the overload will still
            # be there when max_over has passed, act now
            sustained = True
            reason = (f"{host.name} overloaded {load} > {policy.load_threshold}"
                      f" for {minutes(judgment.over_for_min)} min, forecast"
                      f" {figure(current.forecast, policy.load_threshold)} ({forecast_words(policy)})")
        memory, memory_sustained, memory_reason = None, False, ""
        if policy.memory_threshold is not None:
            memory = judge(host.memory_samples, policy.memory_threshold, policy.max_over, policy.interval, policy.now)
            memory_sustained = (not current.maintenance and current.memory_load > policy.memory_threshold
                                and memory.verdict == SUSTAINED)
            memory_reason = (f"{host.name} memory {figure(current.memory_load, policy.memory_threshold)} >"
                             f" memory_threshold {policy.memory_threshold} for {minutes(memory.over_for_min)} min")
        verdicts[host.name] = Verdict(judgment, sustained, reason, memory, memory_sustained, memory_reason)
    return verdicts


def _broken(state, policy, names_rules, broken_now):
    found = {}
    for name, host_name in state.placement.items():
        if names_rules(name, policy):
            reason = broken_now(name, host_name, policy, state.placement)
            if reason is not None:
                found[name] = reason
    return found


def breaks(state, policy):
    """{domain name: why} for every running domain that breaks a must pin or anti-affinity where it runs now."""
    return _broken(state, policy, rules.has_rules, rules.rule_break)


def soft_breaks(state, policy):
    """{domain name: why} for every running domain that breaks a should rule where it runs now."""
    return _broken(state, policy, rules.has_soft_rules, rules.soft_break)


def measure_now(state, policy, balancing=False, initial=False, shedding=frozenset()):
    states = list(state.states())
    loads = tuple(s.initial_load if initial else s.load for s in states)
    memory_loads = tuple(s.initial_memory_load if initial else s.memory_load for s in states)
    calm = [i for i, s in enumerate(states) if not s.maintenance]
    return measure_of(Measured(
        loads=loads,
        evacuate=sum(s.initial_running if initial else s.running for s in states if s.maintenance),
        breaks=len(breaks(state, policy)),
        threshold=policy.load_threshold,
        memory_loads=memory_loads,
        memory_threshold=policy.memory_threshold,
        soft_breaks=len(soft_breaks(state, policy)),
        forecasts=tuple(s.forecast for s in states if not s.maintenance and s.levelled) if policy.predictive else (),
        candidate=policy.max_load_candidate,
        shedding_loads=tuple(loads[i] for i, s in enumerate(states) if s.name in shedding) if policy.headroom else (),
        balancing=balancing,
        balance_loads=tuple(loads[i] for i in calm),
        balance_memory_loads=tuple(memory_loads[i] for i in calm),
    ))


def _measure_dict(terms):
    return {name: value if name in COUNT_TERMS else rounded(value) for name, value in zip(MEASURE_TERMS, terms)}


def needs_work(state, verdicts, initial_breaks):
    return bool(initial_breaks) or any(
        verdicts[s.name].sustained or (s.maintenance and s.running) for s in state.states())


class Planning:
    """One run: the parsed input, the greedy plan and, where it serves, the exact one."""

    def __init__(self, hosts, policy):
        policy, selection_warnings = selectors.resolve(policy, hosts)
        self.hosts, self.policy = hosts, policy
        self.log = explain.DecisionLog()
        for text in selection_warnings:
            self.log.warn(text)
        busy_window = BUSY_WINDOW * policy.max_over
        for host in hosts:
            for domain in host.running:
                domain.busy = busy(domain.samples, domain.cpu, busy_window, policy.now)
        if policy.predictive:
            window = LEVEL_WINDOW * policy.max_over
            for host in hosts:
                for domain in host.running:
                    domain.forecast = level(domain.samples, window, policy.now)
        known = {h.name for h in hosts}
        for name in sorted(policy.maintenance - known):
            self.log.warn(f"maintenance host {name} is not in the pool: nothing to empty")
        self.state = ClusterState(hosts, policy)
        self.verdicts = assess(self.state, policy)
        self.initial_breaks = breaks(self.state, policy)
        self.initial_soft_breaks = soft_breaks(self.state, policy)
        self.level = BALANCE_LEVELS.get(policy.balance)
        self.spread = None
        if self.level is not None:
            series = [h.samples for h in hosts if not self.state[h.name].maintenance]
            self.spread = held_spread(series, self.level.target, policy.balance_hold, policy.interval, policy.now,
                                      spread)
        self.balancing = self.spread is not None and self.spread.held
        self.shedding = frozenset(name for name, v in self.verdicts.items() if v.sustained)
        self.initial_measure = measure_now(self.state, policy, self.balancing, initial=True, shedding=self.shedding)
        self.engine = "greedy"
        self.solver = {"optimal": None, "gap": None, "status": None}

    def current_measure(self):
        return measure_now(self.state, self.policy, self.balancing, shedding=self.shedding)

    def imbalance(self):
        calm = [s for s in self.state.states() if not s.maintenance]
        return imbalance([s.load for s in calm], [s.memory_load for s in calm], self.policy.memory_threshold)

    def run(self):
        state, policy = self.state, self.policy
        greedy = steps.Greedy(state, policy, self.log, self.verdicts)
        steps.run(greedy, self.initial_breaks)
        self.out_of_budget = greedy.out_of_budget
        self.budget = greedy.budget
        if policy.engine != "greedy" and needs_work(state, self.verdicts, self.initial_breaks):
            self._try_exact()
        if self.engine == "exact":
            # The greedy steps on the exact plan, with what is left of the budget: they find whether a
            # make-room chain was cut short by max_migrations (the plan then says so), and finish what a
            # solve stopped by its limits left.
            finish = steps.Greedy(state, policy, self.log, self.verdicts)
            steps.run(finish, self.initial_breaks)
            self.out_of_budget = self.out_of_budget or finish.out_of_budget
            self.budget = finish.budget
        peaks = {h.name: recent_peak(h.samples, state[h.name].initial_load, policy.max_over, policy.now)
                 for h in self.hosts}
        memory_hosts = [(h, self.verdicts[h.name].memory_reason) for h in self.hosts
                        if self.verdicts[h.name].memory_sustained]
        forecast_hosts = [h for h in self.hosts if policy.predictive and not state[h.name].maintenance]
        headroom_hosts = [h for h in self.hosts if policy.headroom and h.name in self.shedding]
        while True:
            done = len(state.moves)
            lower = steps.Greedy(state, policy, self.log, self.verdicts, peaks)
            steps.run_lower(lower, headroom_hosts, forecast_hosts, memory_hosts, soft_breaks(state, policy),
                            self.level if self.balancing else None, self.imbalance, forecast_words(policy))
            if len(state.moves) == done:
                break
            # a move for a lower term may have made room for a must-fix one (a maintenance host's domain,
            # say): the greedy steps again, so that re-planning the result finds nothing left to do
            done = len(state.moves)
            again = steps.Greedy(state, policy, self.log, self.verdicts)
            steps.run(again, self.initial_breaks)
            self.out_of_budget = self.out_of_budget or again.out_of_budget
            if len(state.moves) == done:
                break
        return self.report()

    def _try_exact(self):
        size = exact.too_big(self.hosts)
        if size is not None:
            if self.policy.engine == "exact":
                self.log.warn(f"engine exact: {size}; planned by the greedy engine")
            return
        greedy_objective = engine_objective_of(self.current_measure(), self.state.moves)
        greedy_moves = list(self.state.moves)
        outcome = exact.improve(self, greedy_moves, greedy_objective)
        self.solver = {"optimal": outcome.optimal, "gap": outcome.gap, "status": outcome.status}
        if outcome.warning:
            self.log.warn(outcome.warning)
        if outcome.accepted:
            self.engine = "exact"
            self._explain_exact()

    def _explain_exact(self):
        """The exact plan decided at once: what stays is explained against the state it leads to."""
        state, policy, log = self.state, self.policy, self.log
        log.refusals.clear()
        log.unaffordable.clear()
        self.budget = policy.max_migrations - len(state.moves)
        self.out_of_budget = self.budget <= 0
        search = Search(state, policy, log)
        still_broken = breaks(state, policy)
        for host in state.hosts:
            current = state[host.name]
            acting = current.maintenance or (self.verdicts[host.name].sustained and current.load > policy.load_threshold)
            for domain in host.running:
                if domain.name in state.moved or rules.blocker(domain, policy) is not None:
                    continue
                if acting or domain.name in still_broken:
                    log.no_destination(domain, search.why_no_destination(domain, current))

    def balance_report(self):
        if self.level is None:
            return None
        return {"level": self.policy.balance, "target": self.level.target, "min_gain": self.level.min_gain,
                "held": self.spread.held, "reason": self.spread.reason,
                "imbalance_before": rounded(self.initial_measure[IMBALANCE]) if self.balancing else None,
                "imbalance_after": rounded(self.current_measure()[IMBALANCE]) if self.balancing else None}

    def report(self):
        state, policy = self.state, self.policy
        after = self.current_measure()
        breaks_now = breaks(state, policy)
        left = policy.max_migrations - len(state.moves)
        return {
            "migrations": [move.as_dict() for move in state.moves],
            "hosts": [explain.host_entry(h, state[h.name], self.verdicts[h.name], policy, self.initial_breaks,
                                         state.moved, self.out_of_budget) for h in state.hosts],
            "skipped": explain.skipped(state, self.verdicts, policy, self.log, breaks_now, self.out_of_budget,
                                       self.budget),
            "max_migrations_reached": self.out_of_budget or left <= 0,
            "measure": {"before": _measure_dict(self.initial_measure), "after": _measure_dict(after)},
            "soft_rule_breaks": [{"vm": name, "host": state.placement[name], "reason": why,
                                  "unrepaired": self.log.soft_kept.get(name)}
                                 for name, why in sorted(soft_breaks(state, policy).items())],
            "balance": self.balance_report(),
            "engine": self.engine,
            "optimal": self.solver["optimal"],
            "gap": self.solver["gap"],
            "solver_status": self.solver["status"],
            "warnings": list(self.log.warnings),
            "policy": policy.as_dict(),
        }


def _require_numpy():
    if np is None:
        raise PlacementError("the placement policy needs numpy, which is not installed on the control node"
                             " (pip install -r requirements.txt from the collection)")


def measure(cluster, policy=None):
    """The measure of a cluster as given (no planning): see objective.py."""
    _require_numpy()
    return Planning(parse_cluster(cluster), parse_policy(policy)).initial_measure


def plan(cluster, policy=None):
    """Plan the migrations for one run; see the package docstring for input and output."""
    _require_numpy()
    parsed_policy = parse_policy(policy)
    return Planning(parse_cluster(cluster), parsed_policy).run()
