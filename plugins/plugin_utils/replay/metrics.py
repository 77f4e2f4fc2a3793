# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a replay measured: the records, and the pure functions that sum them up.

Definitions (a host-step is one host at one step; each step stands for ``step_seconds``):
  over the threshold     the host's load is strictly above ``load_threshold``, as the policy says
  overload-minutes       host-steps over the threshold x the step length in minutes
  sustained-overloaded   over the threshold, and the run of consecutive steps over it up to this
                         one spans at least ``max_over`` minutes from its first to this step (the
                         policy's own test on samples 5 minutes apart)
  ping-pong              a migration to a host the VM left less than ``ping_pong_seconds`` before
  memory moved           the sum of the moved VMs' memory, MiB
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Mapping, Sequence, Tuple

PING_PONG_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Migration:
    """One applied move: planned at ``step`` (epoch ``time``), in effect from the next step on."""

    step: int
    time: float
    vm: str
    source: str
    destination: str
    reason: str
    memory_mb: float
    ping_pong: bool = False


@dataclass(frozen=True)
class Metrics:
    """The figures of one replay."""

    steps: int
    hosts: int
    vms: int
    hours: float
    migrations: int
    migrations_per_hour: float
    host_steps: int
    over_host_steps: int
    over_share: float
    overload_minutes: float
    sustained_host_steps: int
    peak_load: float
    ping_pongs: int
    memory_moved_mb: float
    plan_seconds_mean: float
    plan_seconds_max: float
    wall_seconds: float


@dataclass(frozen=True)
class ReplayResult:
    """A replay: its figures, every migration, and each host's load at every step."""

    scenario: str
    policy: Dict[str, Any]
    metrics: Metrics
    migrations: Tuple[Migration, ...]
    host_loads: Mapping[str, Tuple[float, ...]] = field(default_factory=dict)

    def as_dict(self):
        """Plain JSON types (tuples become lists)."""
        return asdict(self)


def over_steps(loads: Sequence[float], threshold):
    """How many of ``loads`` are strictly above ``threshold``."""
    return sum(1 for load in loads if load > threshold)


def sustained_steps(loads: Sequence[float], threshold, max_over_minutes, step_seconds):
    """Steps at which the run of consecutive loads above ``threshold`` spans >= ``max_over_minutes``."""
    count, streak = 0, 0
    for load in loads:
        streak = streak + 1 if load > threshold else 0
        if streak and (streak - 1) * step_seconds >= max_over_minutes * 60:
            count += 1
    return count


def is_ping_pong(left_at: Mapping[str, float], destination, now, window_seconds=PING_PONG_SECONDS):
    """Whether a VM that left hosts at ``left_at`` ({host: epoch}) goes back to ``destination`` too soon."""
    return destination in left_at and now - left_at[destination] < window_seconds


def summarize(host_loads: Mapping[str, Sequence[float]], migrations: Sequence[Migration],
              plan_seconds: Sequence[float], *, threshold, max_over_minutes, step_seconds, vms,
              wall_seconds):
    """Metrics of a replay from each host's loads per step, the migrations and the planning times."""
    steps = max((len(loads) for loads in host_loads.values()), default=0)
    hours = steps * step_seconds / 3600
    host_steps = sum(len(loads) for loads in host_loads.values())
    over = sum(over_steps(loads, threshold) for loads in host_loads.values())
    return Metrics(
        steps=steps,
        hosts=len(host_loads),
        vms=vms,
        hours=hours,
        migrations=len(migrations),
        migrations_per_hour=len(migrations) / hours if hours else 0.0,
        host_steps=host_steps,
        over_host_steps=over,
        over_share=over / host_steps if host_steps else 0.0,
        overload_minutes=over * step_seconds / 60,
        sustained_host_steps=sum(sustained_steps(loads, threshold, max_over_minutes, step_seconds)
                                 for loads in host_loads.values()),
        peak_load=max((max(loads) for loads in host_loads.values() if loads), default=0.0),
        ping_pongs=sum(1 for m in migrations if m.ping_pong),
        memory_moved_mb=sum(m.memory_mb for m in migrations),
        plan_seconds_mean=sum(plan_seconds) / len(plan_seconds) if plan_seconds else 0.0,
        plan_seconds_max=max(plan_seconds, default=0.0),
        wall_seconds=wall_seconds,
    )
