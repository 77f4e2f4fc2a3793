# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs placement policy: which running domains to live-migrate where, and why.

Pure Python (stdlib only, relative imports, no I/O) and deterministic: the same cluster and policy
give the same plan whatever the order of hosts, domains or samples. The filter
xen.drs.rebalance_plan, the benchmarks and the tests all call plan().

plan(cluster, policy=None) returns a dict of plain JSON types:
  migrations: ordered moves {vm, uuid, source, destination, reason, cpu, memory_mb,
              source_load_before, source_load_after, destination_load_before, destination_load_after}
  hosts:      per host {name, load, predicted_load, overloaded, maintenance, status, reasons, running,
              predicted_running, memory_free_mb, predicted_memory_free_mb}
  skipped:    domains considered that do not move {vm, uuid, host, reason}
  max_migrations_reached, measure {before, after}, policy (the effective policy)

See plugins/filter/rebalance_plan.yml for every input field, policy key and default.
"""

from .model import DEFAULTS, PlacementError
from .planner import MEASURE_TERMS, measure, plan

__all__ = ["DEFAULTS", "MEASURE_TERMS", "PlacementError", "measure", "plan"]
