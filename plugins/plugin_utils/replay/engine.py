# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Step a scenario through a planner, as the rebalance playbook would run on the pool every interval.

At each step, at epoch ``now`` = scenario.start + step x step_seconds:
  1. every VM uses its demand of the step (``cpu``, cores) and gets the sample ``(now, cpu)``; its
     samples are the newest ``window`` taken on the host it runs on now (a VM that migrated starts a
     fresh history on its destination, as hypervisor_info keeps them per host);
  2. every host gets the sample ``(now, load, memory_load)``: load = its VMs' cores / its cpus
     (rounded to 6 decimals, as a measured value), memory_load = its VMs' memory / its memory_mb;
     the newest ``window`` are kept; memory_free_mb = memory_mb - reserved_mb - its VMs' memory;
  3. the planner gets the cluster in the rebalance_plan input format (fresh containers every step,
     so it cannot change the engine's state) and the policy with ``now``;
  4. the planned moves are applied in plan order: they count from the next step on, and each moved
     VM gets ``last_migration: {time: now, source, destination}`` (so the policy's cooldown applies).

The planner is any callable ``planner(cluster, policy) -> {"migrations": [{vm, destination, ...}]}``
(the contract of placement.plan); ``source``, ``reason`` and ``memory_mb`` are used when present.
A move the engine cannot apply (unknown VM or host, a source that is not where the VM runs, a VM
moved twice in one plan, a destination without the memory) is a ReplayError naming the step and
the move. The engine imports no planner, does no I/O and reads the clock only through ``clock``.
"""

import math
import time
from collections import deque
from typing import Any, Callable, Dict, Mapping, Optional

from .metrics import PING_PONG_SECONDS, Migration, ReplayResult, is_ping_pong, summarize

Planner = Callable[[list, Dict[str, Any]], Mapping[str, Any]]
REQUIRED_POLICY = ("load_threshold", "max_over")  # what the engine itself reads from the policy


class ReplayError(ValueError):
    """A replay that cannot go on: a bad policy, or a plan the engine cannot apply."""


def replay(scenario, planner: Planner, policy: Mapping[str, Any], *, clock: Callable[[], float] = time.perf_counter,
           progress: Optional[Callable[[int, int], None]] = None,
           ping_pong_seconds: float = PING_PONG_SECONDS) -> ReplayResult:
    """Replay ``scenario`` through ``planner`` under ``policy`` (a full policy: every key the planner
    should see, at least ``load_threshold`` and ``max_over``; ``now`` is set at each step).
    ``progress(steps done, steps)`` is called after each step when given."""
    for key in REQUIRED_POLICY:
        value = policy.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ReplayError(f"policy: {key!r} must be a number (pass a full policy), got {value!r}")
    pool = Pool(scenario)
    migrations, plan_seconds = [], []
    started = clock()
    for step in range(scenario.steps):
        now = scenario.time_of(step)
        pool.sample(step, now)
        cluster = pool.cluster()
        before = clock()
        plan = planner(cluster, dict(policy, now=now))
        plan_seconds.append(clock() - before)
        moved = set()
        for move in planned_moves(plan, step):
            migrations.append(pool.migrate(move, step, now, moved, ping_pong_seconds))
        if progress is not None:
            progress(step + 1, scenario.steps)
    wall = clock() - started
    loads = {name: tuple(series) for name, series in pool.loads.items()}
    metrics = summarize(loads, migrations, plan_seconds, threshold=policy["load_threshold"],
                        max_over_minutes=policy["max_over"], step_seconds=scenario.step_seconds,
                        vms=len(scenario.vms), wall_seconds=wall)
    return ReplayResult(scenario.name, dict(policy), metrics, tuple(migrations), loads)


def planned_moves(plan, step):
    """The plan's migrations, checked for shape."""
    moves = plan.get("migrations") if isinstance(plan, Mapping) else None
    if not isinstance(moves, (list, tuple)):
        raise ReplayError(f"step {step}: the planner must return a plan {{'migrations': [...]}}, got {plan!r}")
    for move in moves:
        if not isinstance(move, Mapping):
            raise ReplayError(f"step {step}: a migration must be a mapping, got {move!r}")
    return moves


class Pool:
    """The pool's state during a replay: where each VM runs, the samples, the last migrations."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.hosts = {h.name: h for h in scenario.hosts}
        self.vms = {v.name: v for v in scenario.vms}
        self.members = {name: {} for name in self.hosts}  # host -> {vm name: None}, arrival order
        self.memory_used = dict.fromkeys(self.hosts, 0.0)
        self.location = {}
        for vm in scenario.vms:
            self._place(vm.name, vm.host)
        for name in self.hosts:
            if self.memory_free_mb(name) < 0:
                raise ReplayError(f"scenario {scenario.name!r}: the VMs placed on {name!r} need more memory than"
                                  f" it has ({-self.memory_free_mb(name):g} MiB short)")
        self.cpu = dict.fromkeys(self.vms, 0.0)
        self.vm_samples = {name: deque(maxlen=scenario.window) for name in self.vms}
        self.host_samples = {name: deque(maxlen=scenario.window) for name in self.hosts}
        self.loads = {name: [] for name in self.hosts}  # every step's load, for the metrics
        self.last_migration = {}
        self.left_at = {}  # vm -> {host: epoch it left}

    def _place(self, vm, host):
        self.members[host][vm] = None
        self.memory_used[host] += self.vms[vm].memory_mb
        self.location[vm] = host

    def _remove(self, vm):
        host = self.location.pop(vm)
        del self.members[host][vm]
        self.memory_used[host] -= self.vms[vm].memory_mb
        return host

    def memory_free_mb(self, host):
        spec = self.hosts[host]
        return spec.memory_mb - spec.reserved_mb - self.memory_used[host]

    def sample(self, step, now):
        """Steps 1 and 2: the VMs' demand and samples, the hosts' samples and loads."""
        for name, vm in self.vms.items():
            cores = vm.demand[step]
            self.cpu[name] = cores
            self.vm_samples[name].append((now, cores))
        for name, spec in self.hosts.items():
            load = round(math.fsum(self.cpu[vm] for vm in self.members[name]) / spec.cpus, 6)
            memory_load = round(self.memory_used[name] / spec.memory_mb, 6)
            self.host_samples[name].append((now, load, memory_load))
            self.loads[name].append(load)

    def cluster(self):
        """Step 3: the planner's input, in the rebalance_plan format (samples as tuples, oldest first)."""
        return [self._host(name) for name in self.hosts]

    def _host(self, name):
        spec = self.hosts[name]
        return {"name": name, "cpus": spec.cpus, "memory_mb": spec.memory_mb,
                "memory_free_mb": self.memory_free_mb(name), "maintenance": False,
                "samples": list(self.host_samples[name]),
                "domains": [self._domain(vm) for vm in self.members[name]]}

    def _domain(self, name):
        vm = self.vms[name]
        domain = {"name": name, "uuid": vm.id, "vcpus": vm.vcpus, "memory_mb": vm.memory_mb,
                  "cpu": self.cpu[name], "state": "running", "samples": list(self.vm_samples[name])}
        last = self.last_migration.get(name)
        if last is not None:
            domain["last_migration"] = dict(last)
        return domain

    def migrate(self, move, step, now, moved, ping_pong_seconds=PING_PONG_SECONDS):
        """Step 4 for one move; ``moved`` holds the VMs already moved by this plan. Returns the record."""
        vm, destination = move.get("vm"), move.get("destination")
        where = f"step {step}: migration {vm!r} -> {destination!r}"
        if vm not in self.vms:
            raise ReplayError(f"{where}: unknown VM")
        if destination not in self.hosts:
            raise ReplayError(f"{where}: unknown destination host")
        if vm in moved:
            raise ReplayError(f"{where}: the VM was already moved by this plan")
        source = self.location[vm]
        if move.get("source") not in (None, source):
            raise ReplayError(f"{where}: the plan says it leaves {move.get('source')!r}, it runs on {source!r}")
        if destination == source:
            raise ReplayError(f"{where}: the VM already runs there")
        memory = self.vms[vm].memory_mb
        if memory > self.memory_free_mb(destination):
            raise ReplayError(f"{where}: the VM needs {memory:g} MiB, {destination!r} has "
                              f"{self.memory_free_mb(destination):g} MiB free")
        self._remove(vm)
        self._place(vm, destination)
        moved.add(vm)
        left = self.left_at.setdefault(vm, {})
        ping_pong = is_ping_pong(left, destination, now, ping_pong_seconds)
        left[source] = now
        self.last_migration[vm] = {"time": now, "source": source, "destination": destination}
        self.vm_samples[vm] = deque(maxlen=self.scenario.window)  # a fresh history on the new host
        return Migration(step, now, vm, source, destination, str(move.get("reason") or ""), memory, ping_pong)
