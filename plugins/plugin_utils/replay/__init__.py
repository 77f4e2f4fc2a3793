# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs trace replay: step per-VM CPU demand through a planner and measure what it does.

Pure Python (relative imports only; no ansible, no planner imported: the planner is an argument,
so the same engine replays the product's placement.plan and any other planner with its contract).
Works as ``ansible_collections.xen.drs.plugins.plugin_utils.replay`` and, with plugins/plugin_utils
on sys.path (the benchmarks), as ``replay``.

  trace.py     read_trace(path) / parse_trace(lines): the CSV of per-VM demand (TraceError)
  scenario.py  HostSpec, VmSpec, Scenario: what a replay steps through (ScenarioError)
  presets.py   named presets (``reference``, ``placed``): trace -> scenario, and the policy they fix
  engine.py    replay(scenario, planner, policy) -> ReplayResult: the one stepping loop (ReplayError)
  metrics.py   Migration, Metrics, ReplayResult and the pure functions behind the figures
  history.py   read_history(path): an export of playbooks/export_history.yml as a trace, real host sizes and
               the shadow log (HistoryError); read_shadow_log(path)
  whatif.py    run_whatif(trace, planner, defaults, policy, variants, preset): one trace replayed under a
               base policy and named variants, as the whatif.json document (WhatifError)

Typical use:

    import placement, replay
    ref = replay.preset("reference")
    trace = replay.read_trace("20110303.csv")
    result = replay.replay(ref.scenario(trace), placement.plan, ref.policy(placement.DEFAULTS))
    result.metrics.over_share, result.metrics.migrations, result.migrations[0].reason
"""

from .engine import ReplayError, replay
from .history import History, HistoryError, looks_like_export, parse_history, read_history, read_shadow_log
from .metrics import PING_PONG_SECONDS, Metrics, Migration, ReplayResult, summarize
from .presets import PRESETS, REFERENCE_POLICY, Preset, PresetError, preset, reference_host_count, reference_memory_mb
from .scenario import STEP_SECONDS, WINDOW, HostSpec, Scenario, ScenarioError, VmSpec
from .trace import Trace, TraceError, TraceVm, parse_trace, read_trace
from .whatif import WhatifError, run_whatif

__all__ = [
    "History", "HistoryError", "HostSpec", "Metrics", "Migration", "PING_PONG_SECONDS", "PRESETS", "Preset", "PresetError", "REFERENCE_POLICY",
    "ReplayError", "ReplayResult", "STEP_SECONDS", "Scenario", "ScenarioError", "Trace", "TraceError", "TraceVm",
    "VmSpec", "WINDOW", "WhatifError", "looks_like_export", "parse_history", "parse_trace", "preset", "read_history",
    "read_shadow_log", "read_trace", "reference_host_count",
    "reference_memory_mb", "replay", "run_whatif", "summarize",
]
