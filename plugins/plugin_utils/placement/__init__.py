# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs placement policy: which running domains to live-migrate where, and why.

Python with numpy (relative imports, no I/O; the search tests every host at once on numpy arrays,
and the exact engine uses highspy when it is installed) and deterministic: the same cluster and
policy give the same plan whatever the order of hosts, domains or samples. The filter xen.drs.rebalance_plan, the benchmarks and the tests all call plan().

Layout, one job per module:
  model.py      parsing and validation; POLICY, the one table of policy keys and defaults
  state.py      the cluster state with apply/undo of a Move (which converts itself to output)
  rules.py      each hard rule once, and the numeric tolerance
  objective.py  the plan's objective and measure, and the greedy search's weighers
  history.py    whether a host's overload is sustained, from its samples
  search.py     the greedy destination search and make-room chains
  steps.py      the greedy engine (evacuate, repair, resolve, shed)
  exact.py      the exact engine (mixed-integer program, HiGHS)
  explain.py    the decision log; `hosts` and `skipped` built from it
  planner.py    the driver

plan(cluster, policy=None) returns a dict of plain JSON types:
  migrations: ordered moves {vm, uuid, source, destination, reason, requires, cpu, memory_mb,
              source_load_before, source_load_after, destination_load_before, destination_load_after}
  hosts:      per host {name, cpus, load, predicted_load, overloaded, maintenance, status, reasons,
              running, predicted_running, memory_free_mb, predicted_memory_free_mb}
  skipped:    domains considered that do not move {vm, uuid, host, reason}
  max_migrations_reached, measure {before, after}, engine, optimal, gap, solver_status, warnings,
  policy (the effective policy)

See plugins/filter/rebalance_plan.yml for every input field, policy key and default.
"""

from .model import DEFAULTS, POLICY, PlacementError
from .objective import MEASURE_TERMS, OBJECTIVE_TERMS
from .planner import measure, plan

__all__ = ["DEFAULTS", "MEASURE_TERMS", "OBJECTIVE_TERMS", "POLICY", "PlacementError", "measure", "plan"]
