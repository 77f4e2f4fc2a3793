# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What-if: replay one trace under a base policy and named variants of it, as one JSON document.

``run_whatif(trace, planner, defaults, ...)`` is what the xen.drs.whatif action and playbooks/whatif.yml
run. Like the engine it imports no planner: pass placement.plan and placement.DEFAULTS.

The scenario and the base policy:
  preset None       the pool's own: the ``placed`` preset's cluster (the trace's memory_mb and host
                    columns when it has them, else the reference's), and the base policy
                    ``defaults`` + ``policy`` (the inventory's xen_drs_policy);
  preset NAME       that preset's cluster and policy (``defaults`` + the preset's keys), so figures
                    compare across runs and projects; ``policy`` is not used.
The variants are ``[{"name": ..., "policy": {overrides}}]``, each replayed under the base policy
with its overrides. The base is replayed first under the name BASE_NAME (or the preset's name).

Every policy is checked before the first replay: an unknown key or ``now`` (the replay sets it at
each step) is a WhatifError naming the variant, and so is a value the planner refuses (the planner
is called once on an empty pool with each policy, as playbooks/tasks/prepare.yml does).
"""

import math
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .engine import replay
from .metrics import ReplayResult
from .presets import REFERENCE_START, preset as named_preset

FORMAT = 1  # the document's layout version
BASE_NAME = "inventory"  # the base variant's name when no preset is given
NAMELESS_PRESET = "placed"  # the cluster built when no preset is given
RESERVED_KEYS = ("now",)


class WhatifError(ValueError):
    """Bad variants or policies: the message names the variant and the field."""


def variant_list(variants):
    """Check ``variants`` ([{name, policy}]) and return [(name, overrides)]."""
    if variants is None:
        return []
    if isinstance(variants, (str, bytes, Mapping)) or not hasattr(variants, "__iter__"):
        raise WhatifError(f"variants: must be a list of {{name, policy}}, got {variants!r}")
    checked, seen = [], set()
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not isinstance(variant, Mapping):
            raise WhatifError(f"{where}: must be a mapping {{name, policy}}, got {variant!r}")
        unknown = sorted(str(key) for key in variant if key not in ("name", "policy"))
        if unknown:
            raise WhatifError(f"{where}: unknown field {unknown[0]!r} (known: name, policy)")
        name, overrides = variant.get("name"), variant.get("policy", {})
        if not isinstance(name, str) or not name.strip():
            raise WhatifError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
        if name in seen:
            raise WhatifError(f"{where}: field 'name' repeats an earlier variant's name, got {name!r}")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping):
            raise WhatifError(f"{where} ({name}): field 'policy' must be a mapping of policy keys, got {overrides!r}")
        seen.add(name)
        checked.append((name, dict(overrides)))
    return checked


def merge_policy(defaults, base, overrides, where):
    """``defaults`` + ``base`` + ``overrides``; unknown keys and ``now`` are WhatifErrors naming ``where``."""
    merged = dict(defaults)
    for label, keys in (("policy", base), ("overrides", overrides)):
        if not isinstance(keys, Mapping):
            raise WhatifError(f"{where}: the {label} must be a mapping, got {keys!r}")
        for key in sorted(keys, key=str):
            if key in RESERVED_KEYS:
                raise WhatifError(f"{where}: policy key {key!r} is set by the replay at each step, got {keys[key]!r}")
            if key not in defaults:
                raise WhatifError(f"{where}: unknown policy key {key!r} (known: "
                                  f"{', '.join(k for k in sorted(defaults) if k not in RESERVED_KEYS)})")
        merged.update(keys)
    merged.pop("now", None)
    return merged


def check_policy(planner, policy, now, where):
    """Let the planner judge ``policy`` on an empty pool; its error becomes a WhatifError naming ``where``."""
    try:
        planner([], dict(policy, now=now))
    except ValueError as error:  # placement.PlacementError is a ValueError
        raise WhatifError(f"{where}: {error}") from error


def plan_runs(trace, planner, defaults, *, policy=None, variants=None, preset=None, start=REFERENCE_START,
              hosts=None):
    """The scenario and [(name, overrides, full policy)] to replay, every policy checked.

    ``hosts`` (name -> HostSpec: an export's real host sizes) sizes the pool's own hosts (no preset)."""
    runs = variant_list(variants)
    if preset is None:
        scenario = named_preset(NAMELESS_PRESET).scenario(trace, start=start, hosts=hosts)
        base_name, base = BASE_NAME, merge_policy(defaults, policy or {}, {}, "policy")
    else:
        chosen = named_preset(preset)  # PresetError (a ValueError) for an unknown name
        scenario = chosen.scenario(trace, start=start)
        base_name, base = chosen.name, chosen.policy(defaults)
        base.pop("now", None)
    if any(name == base_name for name, _overrides in runs):
        raise WhatifError(f"variants: the name {base_name!r} is the base run's; choose another")
    planned = [(base_name, {}, base)]
    for index, (name, overrides) in enumerate(runs):
        planned.append((name, overrides, merge_policy(base, {}, overrides, f"variants[{index}] ({name})")))
    for name, _overrides, full in planned:
        check_policy(planner, full, scenario.start, f"variant {name!r}")
    return scenario, planned


def run_whatif(trace, planner, defaults, *, policy=None, variants=None, preset=None, start=REFERENCE_START,
               progress: Optional[Callable[..., None]] = None, clock: Callable[[], float] = time.perf_counter,
               hosts=None, shadow=None):
    """Replay ``trace`` (a trace.Trace) under the base policy and each variant: the whatif.json document.

    ``progress(done, total, variant name, elapsed seconds)`` is called after every step of every
    variant (``done`` and ``total`` count steps over all variants). ``hosts`` are real host sizes
    (plan_runs); ``shadow`` ({source, entries}) is a shadow log carried into the document as it is."""
    started = clock()
    scenario, planned = plan_runs(trace, planner, defaults, policy=policy, variants=variants, preset=preset,
                                  start=start, hosts=hosts)
    total = scenario.steps * len(planned)
    results = []
    for index, (name, overrides, full) in enumerate(planned):
        report = None
        if progress is not None:
            def report(done, _steps, offset=index * scenario.steps, name=name):
                progress(offset + done, total, name, clock() - started)
        result = replay(scenario, planner, full, clock=clock, progress=report)
        results.append((name, overrides, result))
    return document(trace, scenario, preset, results, clock() - started, shadow)


def document(trace, scenario, preset, results, wall_seconds, shadow=None):
    """The whatif.json document (plain JSON types)."""
    return {
        "shadow": _plain(shadow) if shadow else None,
        "format": FORMAT,
        "trace": {"path": trace.source, "name": trace.name, "vms": len(trace.vms), "steps": trace.steps,
                  "memory_mb_column": trace.has_memory, "host_column": trace.has_host},
        "preset": preset,
        "policy_from": f"preset {preset}" if preset else "inventory",
        "scenario": {"name": scenario.name, "start": scenario.start, "step_seconds": scenario.step_seconds,
                     "steps": scenario.steps, "hours": scenario.hours, "vms": len(scenario.vms),
                     "hosts": [{"name": h.name, "cpus": h.cpus, "memory_mb": h.memory_mb,
                                "reserved_mb": h.reserved_mb} for h in scenario.hosts]},
        "variants": [variant_entry(name, overrides, result) for name, overrides, result in results],
        "wall_seconds": wall_seconds,
    }


def variant_entry(name, overrides, result: ReplayResult):
    """One variant: its overrides, full policy, figures, migrations and each host's load per step."""
    data = result.as_dict()
    return _plain({"name": name, "overrides": overrides, "policy": data["policy"], "metrics": data["metrics"],
                   "migrations": data["migrations"], "host_loads": data["host_loads"]})


def _plain(value: Any):
    """JSON types: mappings become dicts (str keys), sequences lists, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
