# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a replay steps through: hosts, VMs with their demand per step, and the clock.

A Scenario is plain data, checked when it is made (ScenarioError, a ValueError, names the host or
VM and the field). Presets (presets.py) build one from a trace; tests build small ones by hand.
"""

import math
from dataclasses import dataclass
from typing import Tuple

WINDOW = 24  # samples a host and a domain keep (the engine sends the newest this many)
STEP_SECONDS = 300  # the sampling interval: 5 minutes


class ScenarioError(ValueError):
    """An inconsistent scenario."""


@dataclass(frozen=True)
class HostSpec:
    """A hypervisor: CPUs for guests, memory, and the memory its hypervisor keeps (dom0)."""

    name: str
    cpus: float
    memory_mb: float
    reserved_mb: float = 0.0


@dataclass(frozen=True)
class VmSpec:
    """A VM: where it starts and the cores it uses at each step."""

    name: str
    host: str
    memory_mb: float
    demand: Tuple[float, ...]
    vcpus: int = 1
    uuid: str = ""

    @property
    def id(self):
        """The UUID the planner sees (the name when none was given)."""
        return self.uuid or self.name


@dataclass(frozen=True)
class Scenario:
    """Hosts, VMs, the first step's epoch time and the step length; ``window`` samples are kept."""

    name: str
    hosts: Tuple[HostSpec, ...]
    vms: Tuple[VmSpec, ...]
    start: float
    step_seconds: float = STEP_SECONDS
    window: int = WINDOW

    def __post_init__(self):
        check(self)

    @property
    def steps(self):
        return len(self.vms[0].demand) if self.vms else 0

    def time_of(self, step):
        return self.start + step * self.step_seconds

    @property
    def hours(self):
        return self.steps * self.step_seconds / 3600


def check(scenario):
    """Raise ScenarioError for the first inconsistency in ``scenario``."""
    where = f"scenario {scenario.name!r}"
    if not scenario.hosts:
        raise ScenarioError(f"{where}: no hosts")
    if not scenario.step_seconds > 0 or scenario.window < 1:
        raise ScenarioError(f"{where}: step_seconds must be > 0 and window >= 1, got "
                            f"{scenario.step_seconds!r} and {scenario.window!r}")
    hosts = set()
    for host in scenario.hosts:
        if host.name in hosts:
            raise ScenarioError(f"{where}: host {host.name!r} appears twice")
        hosts.add(host.name)
        for field, value in (("cpus", host.cpus), ("memory_mb", host.memory_mb)):
            if not (math.isfinite(value) and value > 0):
                raise ScenarioError(f"{where}: host {host.name!r}: {field} must be > 0, got {value!r}")
        if not 0 <= host.reserved_mb <= host.memory_mb:
            raise ScenarioError(f"{where}: host {host.name!r}: reserved_mb must be in [0, memory_mb], "
                                f"got {host.reserved_mb!r}")
    vms, steps = set(), len(scenario.vms[0].demand) if scenario.vms else None
    for vm in scenario.vms:
        at = f"{where}: VM {vm.name!r}"
        if vm.name in vms:
            raise ScenarioError(f"{at} appears twice")
        vms.add(vm.name)
        if vm.host not in hosts:
            raise ScenarioError(f"{at}: host {vm.host!r} is not a host of the scenario")
        if len(vm.demand) != steps or not steps:
            raise ScenarioError(f"{at}: {len(vm.demand)} demand steps, expected {steps or 'at least 1'}")
        bad = next((x for x in vm.demand if not (math.isfinite(x) and x >= 0)), None)
        if bad is not None:
            raise ScenarioError(f"{at}: demand must be finite cores >= 0, got {bad!r}")
        if not (math.isfinite(vm.memory_mb) and vm.memory_mb >= 0):
            raise ScenarioError(f"{at}: memory_mb must be >= 0, got {vm.memory_mb!r}")
