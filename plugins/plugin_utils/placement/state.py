# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster as a plan changes it: host loads, memory, placement, and the moves so far.

Loads are exactly rounded sums (math.fsum) of the domains' `cpu`, so the result does not depend on
input order and re-planning the predicted state sees the very same numbers. Moves are applied and
undone in stack order (the last applied is the first undone).
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .model import Domain

try:
    import numpy as np
except ImportError:  # pragma: no cover - a requirement (requirements.txt); planner.plan says so when missing
    np = None


def rounded(value):
    """Loads in the output: 4 decimals."""
    return round(value, 4)


def plain(number):
    """Memory back to an int when it is one, so the output reads like the input."""
    return int(number) if float(number).is_integer() else number


@dataclass
class Move:
    """One migration of a plan; the loads are filled in when the state applies it."""

    domain: Domain
    source: str
    destination: str
    reason: str
    requires: Tuple[str, ...] = ()  # vm names of earlier moves that make room on the destination
    source_load_before: Optional[float] = None
    source_load_after: Optional[float] = None
    destination_load_before: Optional[float] = None
    destination_load_after: Optional[float] = None

    def as_dict(self):
        return {
            "vm": self.domain.name,
            "uuid": self.domain.uuid,
            "source": self.source,
            "destination": self.destination,
            "reason": self.reason,
            "requires": list(self.requires),
            "cpu": self.domain.cpu,
            "memory_mb": self.domain.memory_mb,
            "source_load_before": rounded(self.source_load_before),
            "source_load_after": rounded(self.source_load_after),
            "destination_load_before": rounded(self.destination_load_before),
            "destination_load_after": rounded(self.destination_load_after),
        }


LEVELLED_SHARE = 0.5  # of a host's CPU use, from domains with a level, before its forecast counts (HostState.levelled)


def forecast_demand(domain):
    """A domain's forecast demand (set by the planner when policy.predictive is on and its samples give
    a level), else its use now."""
    return domain.cpu if domain.forecast is None else domain.forecast


def _levelled_cpu(domain):
    """A domain's use now when the planner gave it a forecast, else 0 (HostState.levelled)."""
    return 0.0 if domain.forecast is None else domain.cpu


def busy_demand(domain):
    """A domain's busy demand (history.busy, set by the planner), else its use now."""
    return domain.cpu if domain.busy is None else domain.busy


@dataclass(eq=False)
class HostState:
    """A host's predicted resources while the plan is being built."""

    name: str
    cpus: float
    maintenance: bool
    cpu_values: list
    free_parts: list
    memory_mb: float = 0.0
    used_parts: list = field(default_factory=list)
    forecast_parts: list = field(default_factory=list)
    busy_parts: list = field(default_factory=list)
    levelled_parts: list = field(default_factory=list)
    running: int = 0
    load: float = 0.0
    busy_load: float = 0.0  # its domains' busy demand (history.busy) over its CPUs
    free_mb: float = 0.0
    used_mb: float = 0.0
    initial_load: float = 0.0
    initial_free_mb: float = 0.0
    initial_used_mb: float = 0.0
    initial_running: int = 0
    arrived: list = field(default_factory=list)
    left: list = field(default_factory=list)

    @classmethod
    def of(cls, host, maintenance):
        state = cls(host.name, host.cpus, maintenance, [d.cpu for d in host.running], [host.memory_free_mb],
                    host.memory_mb, [d.memory_mb for d in host.running], [forecast_demand(d) for d in host.running],
                    [busy_demand(d) for d in host.running], [_levelled_cpu(d) for d in host.running])
        state.running = len(state.cpu_values)
        state._changed()
        state.initial_load, state.initial_free_mb, state.initial_running = state.load, state.free_mb, state.running
        state.initial_used_mb = state.used_mb
        return state

    @property
    def memory_load(self):
        """The fraction of the host's memory its running domains use (0 for a host that reports none)."""
        return self.used_mb / self.memory_mb if self.memory_mb > 0 else 0.0

    def memory_load_with(self, memory_mb):
        return (self.used_mb + memory_mb) / self.memory_mb if self.memory_mb > 0 else 0.0

    @property
    def forecast(self):
        """The host's forecast load: its domains' forecast demand (history.level) over its CPUs."""
        return math.fsum(self.forecast_parts) / self.cpus

    def forecast_with(self, domain):
        return math.fsum(self.forecast_parts + [forecast_demand(domain)]) / self.cpus

    @property
    def levelled(self):
        """Whether at least LEVELLED_SHARE of the host's CPU use comes from domains with a forecast (whose
        samples give a level): without that its forecast is mostly its load now and proves nothing about
        the next minutes, so it neither sheds for it nor makes an overload count as lasting."""
        total = math.fsum(self.cpu_values)
        return total > 0 and math.fsum(self.levelled_parts) >= LEVELLED_SHARE * total

    @property
    def initial_memory_load(self):
        return self.initial_used_mb / self.memory_mb if self.memory_mb > 0 else 0.0

    def load_with(self, cpu):
        return math.fsum(self.cpu_values + [cpu]) / self.cpus

    def load_without(self, cpus):
        return math.fsum(self.cpu_values + [-c for c in cpus]) / self.cpus

    def _changed(self):
        self.load = math.fsum(self.cpu_values) / self.cpus
        self.busy_load = math.fsum(self.busy_parts) / self.cpus
        self.free_mb = math.fsum(self.free_parts)
        self.used_mb = math.fsum(self.used_parts)

    def add(self, domain):
        self.forecast_parts.append(forecast_demand(domain))
        self.levelled_parts.append(_levelled_cpu(domain))
        self.busy_parts.append(busy_demand(domain))
        self.cpu_values.append(domain.cpu)
        self.free_parts.append(-domain.memory_mb)
        self.used_parts.append(domain.memory_mb)
        self.running += 1
        self._changed()

    def remove(self, domain):
        self.forecast_parts.remove(forecast_demand(domain))
        self.levelled_parts.remove(_levelled_cpu(domain))
        self.busy_parts.remove(busy_demand(domain))
        self.cpu_values.remove(domain.cpu)
        self.free_parts.append(domain.memory_mb)
        self.used_parts.remove(domain.memory_mb)
        self.running -= 1
        self._changed()

    def unadd(self, domain):
        self.forecast_parts.remove(forecast_demand(domain))
        self.levelled_parts.remove(_levelled_cpu(domain))
        self.busy_parts.remove(busy_demand(domain))
        self.cpu_values.remove(domain.cpu)
        self.free_parts.remove(-domain.memory_mb)
        self.used_parts.remove(domain.memory_mb)
        self.running -= 1
        self._changed()

    def unremove(self, domain):
        self.forecast_parts.append(forecast_demand(domain))
        self.levelled_parts.append(_levelled_cpu(domain))
        self.busy_parts.append(busy_demand(domain))
        self.cpu_values.append(domain.cpu)
        self.free_parts.remove(domain.memory_mb)
        self.used_parts.append(domain.memory_mb)
        self.running += 1
        self._changed()


class HostArrays:
    """Every host's figures as arrays, in name order, for whole-pool scans (search.py): `name` is the
    position in name order (a tie-break that sorts as the names do), `names` the names themselves.
    ClusterState keeps them in step with each change of a host."""

    FIELDS = ("load", "busy_load", "forecast", "free_mb", "used_mb", "running")

    def __init__(self, states):
        self.names = [s.name for s in states]
        self.position = {name: i for i, name in enumerate(self.names)}
        self.name = np.arange(len(self.names))
        self.cpus = np.array([s.cpus for s in states], dtype=np.float64)
        self.memory_mb = np.array([s.memory_mb for s in states], dtype=np.float64)
        self.maintenance = np.array([s.maintenance for s in states], dtype=bool)
        for attribute in self.FIELDS:
            setattr(self, attribute, np.array([getattr(s, attribute) for s in states], dtype=np.float64))

    def sync(self, host):
        i = self.position[host.name]
        for attribute in self.FIELDS:
            getattr(self, attribute)[i] = getattr(host, attribute)

    def mask(self, names):
        """A boolean array, True at the hosts named."""
        found = np.zeros(len(self.names), dtype=bool)
        found[[self.position[n] for n in names if n in self.position]] = True
        return found


class ClusterState:
    """Hosts, placement and the plan's moves, with apply/undo.

    `arrays` holds every host's figures in name order (HostArrays), kept in step with each change, for
    the destination search. `opened` lists, in order, the hosts that gained room (a domain left them, or
    an arrival was undone): a search refused before can only succeed on those.
    """

    def __init__(self, hosts, policy):
        self.hosts = hosts
        self.parsed = {h.name: h for h in hosts}
        self.by_name = {h.name: HostState.of(h, h.maintenance or h.name in policy.maintenance) for h in hosts}
        self.placement = {d.name: h.name for h in hosts for d in h.running}
        self.domains = {d.name: d for h in hosts for d in h.running}
        self.moves = []
        self.moved = set()
        self.opened = []
        self.arrays = HostArrays([self.by_name[name] for name in sorted(self.by_name)])

    def __getitem__(self, name):
        return self.by_name[name]

    def states(self):
        return self.by_name.values()

    def apply(self, move):
        source, dest = self.by_name[move.source], self.by_name[move.destination]
        move.source_load_before, move.destination_load_before = source.load, dest.load
        source.remove(move.domain)
        dest.add(move.domain)
        self.arrays.sync(source)
        self.arrays.sync(dest)
        move.source_load_after, move.destination_load_after = source.load, dest.load
        self.placement[move.domain.name] = dest.name
        self.moved.add(move.domain.name)
        self.opened.append(source.name)
        source.left.append(move.domain.name)
        dest.arrived.append(move.domain.name)
        self.moves.append(move)
        return move

    def undo(self):
        """Undo the last applied move and return it."""
        move = self.moves.pop()
        source, dest = self.by_name[move.source], self.by_name[move.destination]
        dest.unadd(move.domain)
        source.unremove(move.domain)
        self.arrays.sync(source)
        self.arrays.sync(dest)
        self.placement[move.domain.name] = source.name
        self.moved.discard(move.domain.name)
        self.opened.append(dest.name)
        source.left.pop()
        dest.arrived.pop()
        return move

    def undo_to(self, count):
        """Undo moves until `count` remain; return the undone ones, in the order they were applied."""
        undone = []
        while len(self.moves) > count:
            undone.append(self.undo())
        return undone[::-1]

    @contextmanager
    def lifted(self, domain):
        """The state as if `domain` had left its host, for checking what its departure allows."""
        host = self.by_name[self.placement[domain.name]]
        host.remove(domain)
        self.arrays.sync(host)
        self.placement[domain.name] = None
        try:
            yield host
        finally:
            host.unremove(domain)
            self.arrays.sync(host)
            self.placement[domain.name] = host.name

    @contextmanager
    def placed(self, domain, host_name):
        """The state as if `domain` ran on host_name (where it is placed now it is not)."""
        with self.placed_all([domain], host_name):
            yield self.by_name[host_name]

    @contextmanager
    def placed_all(self, domains, host_name):
        target = self.by_name[host_name]
        origins = []
        for domain in domains:
            origin = self.by_name[self.placement[domain.name]]
            origin.remove(domain)
            target.add(domain)
            self.arrays.sync(origin)
            self.arrays.sync(target)
            self.placement[domain.name] = host_name
            origins.append((domain, origin))
        try:
            yield target
        finally:
            for domain, origin in reversed(origins):
                target.unadd(domain)
                origin.unremove(domain)
                self.arrays.sync(origin)
                self.arrays.sync(target)
                self.placement[domain.name] = origin.name
