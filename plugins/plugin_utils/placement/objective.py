# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a plan minimises, and how the greedy search ranks its choices (the weighers).

The plan's objective, compared term by term (lexicographically), smaller is better:
  1. on_maintenance_hosts  running domains left on maintenance hosts
  2. rule_breaks           running domains breaking a pin or an anti-affinity group
  3. overloaded_hosts      hosts whose load is above load_threshold
  4. load_above_threshold  sum over hosts of (load - load_threshold) where positive
  5. migrations            number of migrations in the plan
  6. peak_load             highest host load after the plan
  7. memory_moved_mb       memory of the domains moved
Terms 1-4 are the measure of a cluster state (MEASURE_TERMS, reported before and after with the
tie-breakers peak_load and sum_of_squares). A single migration is "strictly better" when it lowers
the measure: it lowers one of terms 1-4 and raises none before it. Every migration of a plan does,
except a make-room migration, which leaves terms 1-4 as they are and lets a later migration that
`requires` it lower them. So no plan contains a move that only shuffles load, terms 5-7 choose
among the plans that reach the same terms 1-4, and re-planning the predicted result plans nothing.
Only sustained-overloaded hosts shed load, so terms 3-4 change only on those (and on maintenance
hosts being emptied).

A new objective is a new term here (in its documented place) and, for the greedy search, a weigher
below: a function giving the sort key of a choice.
"""

import math

MEASURE_TERMS = ("on_maintenance_hosts", "rule_breaks", "overloaded_hosts", "load_above_threshold", "peak_load",
                 "sum_of_squares")
OBJECTIVE_TERMS = ("on_maintenance_hosts", "rule_breaks", "overloaded_hosts", "load_above_threshold", "migrations",
                   "peak_load", "memory_moved_mb")


def measure_of(loads, evacuate, breaks, threshold):
    """The measure as a tuple in MEASURE_TERMS order."""
    return (evacuate,
            breaks,
            sum(1 for load in loads if load > threshold),
            math.fsum(max(0.0, load - threshold) for load in loads),
            max(loads, default=0.0),
            math.fsum(load * load for load in loads))


def objective_of(measure, moves):
    """The plan's objective (OBJECTIVE_TERMS) from the measure after it and its moves."""
    return (measure[0], measure[1], measure[2], measure[3], len(moves), measure[4],
            math.fsum(move.domain.memory_mb for move in moves))


# ---------------------------------------------------------------- weighers (greedy search)

def shed_order(domain):
    """Which domain leaves a hot host first: the biggest CPU user; memory and name make it total."""
    return (-domain.cpu, domain.memory_mb, domain.name, domain.uuid)


def repair_order(domain):
    """Which rule-breaking domain moves first: the least memory (of two anti-affine, the smaller)."""
    return (domain.memory_mb, domain.name, domain.uuid)


def destination_rank(load_after, dest):
    """The best destination: lowest predicted load, then most free memory, then name."""
    return (load_after, -dest.free_mb, dest.name)


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
