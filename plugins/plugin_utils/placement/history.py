# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judge from a host's load samples whether its overload is sustained.

The streak is the run of newest samples that are all above the threshold. It ends at the first
sample (walking back in time) that is at or below the threshold, or at a gap between two samples
longer than 2 x interval (the host was not watched then, so the overload is not proven). The
overload is sustained when the streak spans at least max_over minutes, from its oldest to its newest
sample. A newest sample older than 2 x interval before `now` is stale: nothing is judged from it.
"""

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
