"""PlanetLab trace replay for the benchmark, through the collection's one replay engine.

The engine, the CSV loader and the ``reference`` preset live in plugins/plugin_utils/replay/ (the
runner puts plugins/plugin_utils on sys.path, so they import as ``replay``; the product's policy as
``placement``). This module only names the days, adapts the planners to the engine's signature
``planner(cluster, policy) -> {"migrations": [...]}`` and replays one day:

  - the reference cluster of the day (issue 10: 8-CPU / 64 GiB hosts at a mean load of 0.5, VMs
    dealt round-robin, memory by sha256 of the name), stepped every 5 minutes;
  - the reference policy, over the product's own defaults (placement.DEFAULTS, read at call time),
    then the variant's overrides.

Per planner the engine measures migrations, the share of host-steps over ``load_threshold``,
overload-minutes, host-steps sustained-overloaded, peak load, ping-pongs (back on a host left less
than 2 hours before), memory moved, planning time per step and the day's wall time.
"""
import dataclasses
import glob
import os
import random

import baselines
import placement  # pylint: disable=import-error
import replay  # pylint: disable=import-error

TRACE_DIR = "/work/shared/traces/planetlab"
PRESET = "reference"


def days(trace_dir=TRACE_DIR):
    """Paths of the available trace days, oldest first."""
    return sorted(glob.glob(os.path.join(trace_dir, "*.csv")))


def xen_drs(cluster, policy):
    """The product's planner, as the filter calls it."""
    return placement.plan(cluster, policy)


def as_plan(planner):
    """A baseline ``planner(cluster, policy) -> [migrations]`` with the engine's signature."""
    def plan(cluster, policy):
        return {"migrations": planner(cluster, policy)}
    plan.__name__ = getattr(planner, "__name__", "plan")
    return plan


def no_balancing(_cluster, _policy):
    """Moves nothing: what the pool's load does on its own."""
    return {"migrations": []}


XO_GREEDY = as_plan(baselines.xo_performance_plan)
PROXLB = as_plan(baselines.proxlb_balance)


def reference_policy(overrides=None):
    """The reference policy over placement.DEFAULTS, then ``overrides``."""
    return replay.preset(PRESET).policy(placement.DEFAULTS, overrides)


def scenario(path):
    """The reference cluster of the trace day at ``path``."""
    return replay.preset(PRESET).scenario(replay.read_trace(path))


def reshuffled(day, seed):
    """The reference cluster of ``day`` (a Scenario) with its VMs dealt round-robin in another order:
    the file's rows shuffled by ``random.Random(seed)``. Same VMs, hosts, memory and demand; only the
    starting placement differs. The reference placement is one draw among many: a policy judged on it
    alone can be tuned to it (the benchmark's "days you do not have")."""
    order = list(range(len(day.vms)))
    random.Random(seed).shuffle(order)
    hosts = [host.name for host in day.hosts]
    vms = tuple(dataclasses.replace(day.vms[index], host=hosts[deal % len(hosts)]) for deal, index in enumerate(order))
    return dataclasses.replace(day, name="%s~placement%d" % (day.name, seed), vms=vms)


def replay_day(day, planner, overrides=None):
    """Replay ``day`` (a path, or a Scenario already built) through ``planner``: a ReplayResult."""
    day = scenario(day) if isinstance(day, str) else day
    return replay.replay(day, planner, reference_policy(overrides))
