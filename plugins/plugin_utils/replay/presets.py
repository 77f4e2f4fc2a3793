# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named presets: how a trace becomes a scenario, and the policy keys the preset fixes.

``reference`` (the reference cluster and policy of the DRS-behaviours issue, so that figures compare
across runs and projects):
  - each VM 1 vCPU; its demand at a step is the trace percent / 100 cores;
  - its memory 512, 1024 or 2048 MiB, chosen by int(sha256(VM name).hexdigest(), 16) % 3;
  - hosts of 8 CPUs and 64 GiB, 2048 MiB of it kept by the hypervisor (memory_free_mb = 65536 -
    2048 - its VMs' memory);
  - ceil(mean total demand over the trace / (8 x 0.5)) hosts (at least one), named hv01, hv02, ...;
  - VMs dealt round-robin to the hosts in the file's row order;
  - policy: load_threshold 0.75, max_load_candidate 0.60, max_over 10, cooldown 60,
    max_migrations 5, max_vm_per_host 64, memory_reserve_mb 1024, and the product's defaults for
    every other key (Preset.policy takes them as an argument: pass placement.DEFAULTS).
  The recipe fixes memory and placement, so it ignores a trace's memory_mb and host columns.

``placed`` (a pool's own history): like ``reference``, but a VM's memory comes from the trace's
  memory_mb column and its first host from the host column, when the trace has them; the hosts are
  then the ones the trace names, in order of first appearance, each of the reference's size.
"""

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping

from .scenario import STEP_SECONDS, HostSpec, Scenario, VmSpec

REFERENCE_START = 1_767_225_600  # 2026-01-01 00:00 UTC, the benchmark's fixed clock
REFERENCE_HOST_CPUS = 8
REFERENCE_HOST_MEMORY_MB = 65536
REFERENCE_RESERVED_MB = 2048
REFERENCE_TARGET_LOAD = 0.5  # mean load the host count aims at
REFERENCE_MEMORY_MB = (512, 1024, 2048)
REFERENCE_POLICY = {
    "load_threshold": 0.75,
    "max_load_candidate": 0.60,
    "max_over": 10,
    "cooldown": 60,
    "max_migrations": 5,
    "max_vm_per_host": 64,
    "memory_reserve_mb": 1024,
}


class PresetError(ValueError):
    """An unknown preset, or a policy key the planner does not know."""


def reference_memory_mb(name):
    """512, 1024 or 2048 MiB, by int(sha256(name as UTF-8).hexdigest(), 16) % 3."""
    return REFERENCE_MEMORY_MB[int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % 3]


def reference_host_count(trace, cpus=REFERENCE_HOST_CPUS, target_load=REFERENCE_TARGET_LOAD):
    """ceil(mean over the steps of the total demand in cores / (cpus x target_load)), at least 1.

    Computed with exact fractions of the parsed values, so a mean that is a whole multiple of the
    hosts' capacity is not pushed one host up by rounding."""
    total_percent = sum(Fraction(value) for vm in trace.vms for value in vm.percent)
    return max(1, math.ceil(total_percent / (100 * trace.steps * Fraction(cpus) * Fraction(target_load))))


def host_names(count):
    width = max(2, len(str(count)))
    return [f"hv{index:0{width}d}" for index in range(1, count + 1)]


def reference_host(name):
    return HostSpec(name, REFERENCE_HOST_CPUS, REFERENCE_HOST_MEMORY_MB, REFERENCE_RESERVED_MB)


def _vm(trace_vm, host, memory_mb):
    return VmSpec(name=trace_vm.name, host=host, memory_mb=memory_mb,
                  demand=tuple(percent / 100 for percent in trace_vm.percent), vcpus=1)


def reference_scenario(trace, start=REFERENCE_START):
    """The reference cluster for ``trace`` (a trace.Trace)."""
    names = host_names(reference_host_count(trace))
    vms = tuple(_vm(vm, names[index % len(names)], reference_memory_mb(vm.name))
                for index, vm in enumerate(trace.vms))
    return Scenario(f"reference:{trace.name}", tuple(reference_host(n) for n in names), vms, start, STEP_SECONDS)


def placed_scenario(trace, start=REFERENCE_START, hosts=None):
    """The trace's own memory and first hosts where it has them, else the reference's.

    ``hosts`` (name -> HostSpec, e.g. an export's real host sizes, history.py) replaces the reference
    host of each host it names, and adds the hosts no VM starts on."""
    sizes = dict(hosts or {})
    if not trace.has_host:
        names = host_names(reference_host_count(trace))
        placed = [names[index % len(names)] for index in range(len(trace.vms))]
    else:
        placed = [vm.host for vm in trace.vms]
        names = list(dict.fromkeys(placed))
    names += [name for name in sizes if name not in names]
    vms = tuple(_vm(vm, host, vm.memory_mb if trace.has_memory else reference_memory_mb(vm.name))
                for vm, host in zip(trace.vms, placed))
    return Scenario(f"placed:{trace.name}", tuple(sizes.get(n) or reference_host(n) for n in names), vms, start,
                    STEP_SECONDS)


@dataclass(frozen=True)
class Preset:
    """A named way from a trace to a scenario, and the policy keys it fixes."""

    name: str
    build: Callable[..., Scenario]
    policy_overrides: Mapping[str, Any]

    def scenario(self, trace, start=REFERENCE_START, **options):
        return self.build(trace, start=start, **options)

    def policy(self, defaults: Mapping[str, Any], overrides: Mapping[str, Any] = None):
        """``defaults`` (the planner's own, e.g. placement.DEFAULTS), then the preset's keys, then
        ``overrides``; a key not in ``defaults`` is a PresetError naming it."""
        merged = dict(defaults)
        for source, keys in (("preset " + self.name, self.policy_overrides), ("overrides", overrides or {})):
            unknown = sorted(str(key) for key in keys if key not in defaults)
            if unknown:
                raise PresetError(f"{source}: unknown policy key {unknown[0]!r} (known: {', '.join(sorted(defaults))})")
            merged.update(keys)
        return merged


PRESETS = {
    "reference": Preset("reference", reference_scenario, REFERENCE_POLICY),
    "placed": Preset("placed", placed_scenario, REFERENCE_POLICY),
}


def preset(name):
    """The preset called ``name``."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]
