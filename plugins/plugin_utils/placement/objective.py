# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a plan minimises, and how the greedy search ranks its choices (the weighers).

The plan's objective, compared term by term (lexicographically), smaller is better:
  1. on_maintenance_hosts     running domains left on maintenance hosts
  2. rule_breaks              running domains breaking a must pin or a must anti-affinity group
  3. overloaded_hosts         hosts whose load is above load_threshold
  4. load_above_threshold     sum over hosts of (load - load_threshold) where positive
  5. shed_above_candidate     with policy.headroom, the sum over the hosts that shed for load in this
                              run (sustained overload, or predicted: planner.assess) of (load -
                              max_load_candidate) where positive: a host that sheds goes down to the
                              line a destination may reach, not just under the threshold; else 0
  6. forecast_above_candidate with policy.predictive, the sum over hosts not in maintenance of
                              (forecast load - max_load_candidate) where positive: hosts whose
                              domains' recent level leaves less margin to the threshold than a
                              destination must keep, where the next bursts take it over. The forecast
                              load is the sum of the forecast demand (history.level, the mean of each
                              domain's recent samples) of the domains on the host over its CPUs;
                              without policy.predictive the term is 0
  7. memory_overloaded_hosts  hosts whose memory load is above memory_threshold (0 when it is null)
  8. memory_above_threshold   sum over hosts of (memory load - memory_threshold) where positive
  9. soft_rule_breaks         running domains breaking a should pin or a should anti-affinity group
 10. imbalance                while balancing acts (policy.balance > 0 and the spread of host loads has
                              stayed above the level's target for balance_hold minutes): the standard
                              deviation of the loads of the hosts not in maintenance, plus that of their
                              memory loads when memory_threshold is set; else 0
 11. migrations               number of migrations in the plan
 12. peak_load                highest host load after the plan
 13. memory_moved_mb          memory of the domains moved
Terms 1-10 are the measure of a cluster state (MEASURE_TERMS, reported before and after with the
tie-breakers peak_load and sum_of_squares). A single migration is "strictly better" when it lowers
the measure: it lowers one of terms 1-10 and raises none before it. Every migration of a plan does,
except a make-room migration, which leaves the measure as it is and lets a later migration that
`requires` it lower it. So no plan contains a move that only shuffles load, terms 11-13 choose
among the plans that reach the same terms 1-10, and re-planning the predicted result plans nothing.
Only sustained-overloaded hosts shed load (terms 3-5), only hosts whose forecast is over
max_load_candidate shed for it (6), only hosts whose memory load has stayed over memory_threshold for
max_over minutes shed memory (7-8), and balancing moves happen only while the imbalance is held
(10); the destination rules (load and forecast <= max_load_candidate <= load_threshold, memory load
<= max_memory_candidate <= memory_threshold) keep every move from raising a term above its own.

The engines: the exact one (exact.py) solves terms 1-4, then migrations and peak, exactly;
ENGINE_TERMS chooses between its plan and the greedy one. Terms 5-10 are then lowered by the greedy
steps that follow (steps.py: headroom, shed for the forecast, shed memory, repair should rules,
balance), each move lowering them.

A new objective is a new term here (in its documented place) and, for the greedy search, a weigher
below: a function giving the sort key of a choice.
"""

import math
from dataclasses import dataclass

MEASURE_TERMS = ("on_maintenance_hosts", "rule_breaks", "overloaded_hosts", "load_above_threshold",
                 "shed_above_candidate", "forecast_above_candidate", "memory_overloaded_hosts", "memory_above_threshold", "soft_rule_breaks",
                 "imbalance", "peak_load", "sum_of_squares")
MEASURED = MEASURE_TERMS.index("peak_load")  # terms before it are the measure proper; the rest break ties
COUNT_TERMS = ("on_maintenance_hosts", "rule_breaks", "overloaded_hosts", "memory_overloaded_hosts",
               "soft_rule_breaks")
OBJECTIVE_TERMS = MEASURE_TERMS[:MEASURED] + ("migrations", "peak_load", "memory_moved_mb")
# What the exact engine optimises, and how its plan and the greedy one are compared (before the
# greedy steps for terms 5-10 run on the chosen one: planner.run, steps.run_lower): should-rule
# breaks count, since the exact model does not know should rules and must not break more of them
# than the greedy plan.
ENGINE_TERMS = MEASURE_TERMS[:4] + ("soft_rule_breaks", "migrations", "peak_load", "memory_moved_mb")


def spread(values):
    """Population standard deviation, exactly rounded sums (order does not matter)."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


@dataclass(frozen=True)
class Measured:
    """What measure_of needs of one cluster state."""

    loads: tuple
    evacuate: int
    breaks: int
    threshold: float
    memory_loads: tuple = ()
    memory_threshold: float = None
    soft_breaks: int = 0
    forecasts: tuple = ()  # forecast loads of the hosts not in maintenance
    candidate: float = 0.0  # max_load_candidate
    shedding_loads: tuple = ()  # with policy.headroom, the loads of the hosts that shed for load this run
    balancing: bool = False
    balance_loads: tuple = ()  # loads of the hosts not in maintenance
    balance_memory_loads: tuple = ()


def imbalance(loads, memory_loads, memory_threshold):
    """Term 10's value when balancing acts."""
    return spread(loads) + (spread(memory_loads) if memory_threshold is not None else 0.0)


def measure_of(m):
    """The measure of a Measured as a tuple in MEASURE_TERMS order."""
    loads = m.loads
    if m.memory_threshold is None:
        memory_over, memory_above = 0, 0.0
    else:
        memory_over = sum(1 for load in m.memory_loads if load > m.memory_threshold)
        memory_above = math.fsum(max(0.0, load - m.memory_threshold) for load in m.memory_loads)
    return (m.evacuate,
            m.breaks,
            sum(1 for load in loads if load > m.threshold),
            math.fsum(max(0.0, load - m.threshold) for load in loads),
            math.fsum(max(0.0, load - m.candidate) for load in m.shedding_loads),
            math.fsum(max(0.0, load - m.candidate) for load in m.forecasts),
            memory_over,
            memory_above,
            m.soft_breaks,
            imbalance(m.balance_loads, m.balance_memory_loads, m.memory_threshold) if m.balancing else 0.0,
            max(loads, default=0.0),
            math.fsum(load * load for load in loads))


def _memory_moved(moves):
    return math.fsum(move.domain.memory_mb for move in moves)


def objective_of(measure, moves):
    """The plan's objective (OBJECTIVE_TERMS) from the measure after it and its moves."""
    return measure[:MEASURED] + (len(moves), measure[MEASURED], _memory_moved(moves))


def engine_objective_of(measure, moves):
    """The objective the engines are compared by (ENGINE_TERMS)."""
    soft = measure[MEASURE_TERMS.index("soft_rule_breaks")]
    return measure[:4] + (soft, len(moves), measure[MEASURED], _memory_moved(moves))


# ---------------------------------------------------------------- balancing levels

@dataclass(frozen=True)
class BalanceLevel:
    """policy.balance: balancing acts while the imbalance (term 10) stays above `target`, with moves
    that each lower the busier of their two hosts by at least `min_gain` + GAIN_PER_GIB per GiB of
    memory the move copies."""

    target: float
    min_gain: float


# A lower target acts more often; a minimum gain of a few hundredths keeps the moves few even at
# level 5 (with 0.01 a PlanetLab day on the reference cluster took over 1,100 balancing moves).
BALANCE_LEVELS = {
    1: BalanceLevel(target=0.20, min_gain=0.10),
    2: BalanceLevel(target=0.15, min_gain=0.08),
    3: BalanceLevel(target=0.10, min_gain=0.06),
    4: BalanceLevel(target=0.07, min_gain=0.05),
    5: BalanceLevel(target=0.05, min_gain=0.04),
}
GAIN_PER_GIB = 0.005  # a move copying 4 GiB must gain 0.02 more than the level's min_gain


def balance_cost(memory_mb):
    return GAIN_PER_GIB * memory_mb / 1024


# ---------------------------------------------------------------- weighers (greedy search)

def forecast_shed_order(domain):
    """Which domain leaves a host whose forecast is over max_load_candidate first: the highest forecast
    demand."""
    return (-(domain.forecast or 0.0), domain.memory_mb, domain.name, domain.uuid)


def memory_shed_order(domain):
    """Which domain leaves a memory-overloaded host first: the most memory; CPU and name make it total."""
    return (-domain.memory_mb, -domain.cpu, domain.name, domain.uuid)


def shed_order(domain):
    """Which domain leaves a hot host first: the biggest CPU user; memory and name make it total."""
    return (-domain.cpu, domain.memory_mb, domain.name, domain.uuid)


def repair_order(domain):
    """Which rule-breaking domain moves first: the least memory (of two anti-affine, the smaller)."""
    return (domain.memory_mb, domain.name, domain.uuid)


def balance_rank(gain, cost, dest_recent_peak, domain, dest_name):
    """The best balancing move: the largest gain net of its cost, then the destination whose own
    recent samples stayed lowest, then least memory, then names."""
    return (-(gain - cost), dest_recent_peak, domain.memory_mb, domain.name, dest_name)


def destination_rank(forecast_after, busy_after, load_after, dest):
    """The best destination: the lowest sum of its forecast load and its busy load after the move, then
    lowest predicted load, most free memory, name. The forecast load (its domains' and the newcomer's
    level, history.level) is where its load keeps coming back to; the busy load (their busy demand,
    history.busy: what each uses at times) is how far it goes when they burst. Without a level (or
    without policy.predictive) a domain's forecast is its use now."""
    return (forecast_after + busy_after, load_after, -dest.free_mb, dest.name)


def finishing_rank(peak, domain):
    """The last domain a hot host needs: lowest peak of source and destination, then least memory."""
    return (peak, domain.memory_mb, domain.name, domain.uuid)


def room_rank(peak, room_memory_mb, host_name, room_name):
    """The best make-room: lowest peak of the two hosts afterwards, then least memory moved."""
    return (peak, room_memory_mb, host_name, room_name)


def chain_rank(peak, memory_mb, domain):
    """The best make-room chain for a hot host: lowest peak, then least memory moved in all."""
    return (peak, memory_mb, domain.name, domain.uuid)


def host_order(count, load, name):
    """Which hot host is resolved first: those that need the fewest migrations, then the hottest."""
    return (count is None, count or 0, -load, name)
