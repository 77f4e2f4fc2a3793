# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judge from a host's load samples whether its overload is sustained.

The streak is the run of newest samples that are all above the threshold. It ends at the first
sample (walking back in time) that is at or below the threshold, or at a gap between two samples
longer than 2 x interval (the host was not watched then, so the overload is not proven). The
overload is sustained when the streak spans at least max_over minutes, from its oldest to its newest
sample. A newest sample older than 2 x interval before `now` is stale: nothing is judged from it.
"""

import math
from dataclasses import dataclass

SUSTAINED = "sustained"
NOT_SUSTAINED = "overload-not-sustained"
INSUFFICIENT = "insufficient-history"
NOT_OVER = "not-over"


@dataclass(frozen=True)
class Judgment:
    verdict: str
    over_for_min: float  # how long the current streak has lasted, in minutes
    reason: str

    @property
    def sustained(self):
        return self.verdict == SUSTAINED


def minutes(value):
    """Format minutes for messages: 15, 0.25, 12.5."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def figure(value, like):
    """A fraction printed next to a limit: with as many decimals as the limit has (at least 2), so that
    0.0146 is not printed 0.01 next to a limit of 0.012611, nor 0.854 as 0.85 next to 0.85."""
    text = repr(float(like))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 2
    return f"{value:.{max(2, min(decimals, 6))}f}"


def judge(samples, threshold, max_over, interval, now):
    """Return a Judgment; times are epoch seconds, max_over and interval minutes."""
    if not samples:
        return Judgment(INSUFFICIENT, 0.0, "no load samples")
    max_gap = 2 * interval * 60
    newest_time, newest_load = samples[-1]
    age = now - newest_time
    if age > max_gap:
        return Judgment(INSUFFICIENT, 0.0,
                        f"newest sample is {minutes(age / 60)} min old (> 2 x interval {minutes(interval)} min)")
    if newest_load <= threshold:
        return Judgment(NOT_OVER, 0.0, f"newest sample {newest_load:.2f} <= threshold {threshold}")

    start = len(samples) - 1
    ended_by = None
    while start > 0:
        previous_time, previous_load = samples[start - 1]
        if samples[start][0] - previous_time > max_gap:
            ended_by = (f"a gap of {minutes((samples[start][0] - previous_time) / 60)} min in the samples"
                        f" (> 2 x interval {minutes(interval)} min)")
            break
        if previous_load <= threshold:
            ended_by = f"an earlier sample {previous_load:.2f} <= threshold"
            break
        start -= 1
    over_for = (newest_time - samples[start][0]) / 60
    if over_for >= max_over:
        return Judgment(SUSTAINED, over_for,
                        f"samples over threshold {threshold} for {minutes(over_for)} min"
                        f" (>= max_over {minutes(max_over)} min)")
    if ended_by is None:
        return Judgment(INSUFFICIENT, over_for,
                        f"samples cover only {minutes(over_for)} min, all over threshold {threshold};"
                        f" max_over needs {minutes(max_over)} min")
    return Judgment(NOT_SUSTAINED, over_for,
                    f"samples over threshold {threshold} for only {minutes(over_for)} min"
                    f" (< max_over {minutes(max_over)} min), after {ended_by}")


@dataclass(frozen=True)
class Spread:
    """Whether the spread (standard deviation) of the hosts' loads has stayed above a target."""

    held: bool
    values: tuple  # the spread at each slot, newest first
    reason: str


def held_spread(series, target, hold, interval, now, spread):
    """Judge from the hosts' samples whether the spread of their loads stayed above `target` for
    `hold` minutes.

    `series` holds one sample list per host (oldest first). Slot j (j = 0 .. ceil(hold / interval))
    takes each host's newest sample in (now - (j + 1) x interval, now - j x interval]; a host with no
    sample there is left out of that slot. The spread is held when every slot has at least two hosts
    and a spread above the target. `spread` computes it from a slot's loads.
    """
    step = interval * 60
    slots = int(math.ceil(hold / interval - 1e-9)) if interval > 0 else 0
    values = []
    for j in range(slots + 1):
        high, low = now - j * step, now - (j + 1) * step
        loads = []
        for samples in series:
            inside = [load for t, load in samples if low < t <= high]
            if inside:
                loads.append(inside[-1])
        if len(loads) < 2:
            return Spread(False, tuple(values), f"fewer than 2 hosts have a sample {minutes(j * interval)} min ago")
        values.append(spread(loads))
        if values[-1] <= target:
            return Spread(False, tuple(values),
                          f"imbalance {values[-1]:.2f} <= target {target} {minutes(j * interval)} min ago")
    return Spread(True, tuple(values), f"imbalance above target {target} for {minutes(slots * interval)} min"
                                       f" ({', '.join(f'{v:.2f}' for v in reversed(values))})")


def recent(samples, window, now):
    """The sample values of the last `window` minutes (at least the newest one), oldest first."""
    inside = [value for t, value in samples if t > now - window * 60]
    return inside or [value for _t, value in samples[-1:]]


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def persistent(samples, current, window, now):
    """A domain's persistent demand: the median of its samples over the last `window` minutes, at most
    its current use (a spike that is already over counts at what it is now); `current` without samples."""
    if not samples:
        return current
    return min(current, median(recent(samples, window, now)))


def recent_peak(samples, current, window, now):
    """The highest of a host's samples over the last `window` minutes and its load now."""
    return max([current] + (recent(samples, window, now) if samples else []))


BUSY_QUANTILE = 0.9  # of a domain's samples and its use now: how much it uses when busy (history.busy)


def busy(samples, current, window, now):
    """A domain's busy demand: the BUSY_QUANTILE quantile (nearest rank, from below) of its samples over
    the last `window` minutes and its use now; `current` without samples. A host whose domains' busy
    demands add up high is one where a few of them rising together take it over the threshold."""
    values = sorted((recent(samples, window, now) if samples else []) + [current])
    return values[min(len(values) - 1, int(BUSY_QUANTILE * len(values)))]


def level(samples, window, now):
    """A domain's forecast demand: the mean of its samples over the last `window` minutes, the level its
    use keeps coming back to. On the PlanetLab days a domain's departure from that mean carries over to
    the next 5-minute sample by only 3-6 %: a burst now says little about the next samples, the recent
    mean says more (benchmarks/README.md). None with fewer than 2 samples in the window: the sample now
    alone is no level."""
    values = [value for t, value in samples if t > now - window * 60]
    if len(values) < 2:
        return None
    return math.fsum(values) / len(values)
