# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sustained overload from samples, and that only a sustained overload sheds anything."""

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan
from ansible_collections.xen.drs.plugins.plugin_utils.placement.history import busy, judge
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.placement.builders import NOW, domain, host

MIN = 60


def series(*points):
    """(minutes before NOW, load) pairs to samples."""
    return [[NOW - minutes * MIN, load] for minutes, load in points]


@pytest.mark.parametrize("points, max_over, interval, verdict, over_for", [
    # every 5 min, over for exactly max_over: sustained
    (((10, 0.9), (5, 0.9), (0, 0.9)), 10, 5, "sustained", 10),
    # one sample short of max_over, and nothing older: too little history
    (((5, 0.9), (0, 0.9)), 10, 5, "insufficient-history", 5),
    # a long history, but the streak started 5 min ago
    (((20, 0.9), (15, 0.5), (10, 0.5), (5, 0.9), (0, 0.9)), 10, 5, "overload-not-sustained", 5),
    # a sample exactly at the threshold breaks the streak (over means strictly above)
    (((15, 0.9), (10, 0.75), (5, 0.9), (0, 0.9)), 10, 5, "overload-not-sustained", 5),
    # a gap longer than 2 x interval breaks the streak
    (((30, 0.9), (25, 0.9), (20, 0.9), (9, 0.9), (4, 0.9), (0, 0.9)), 10, 5, "overload-not-sustained", 9),
    # a gap of exactly 2 x interval does not
    (((20, 0.9), (10, 0.9), (0, 0.9)), 10, 5, "sustained", 20),
    # newest sample under the threshold: not over now, whatever came before
    (((20, 0.9), (10, 0.9), (0, 0.5)), 10, 5, "not-over", 0),
    # stale: the newest sample is older than 2 x interval
    (((40, 0.9), (30, 0.9), (20, 0.9), (11, 0.9)), 10, 5, "insufficient-history", 0),
    # no samples at all
    ((), 10, 5, "insufficient-history", 0),
    # max_over 0: one sample over is enough
    (((0, 0.9),), 0, 5, "sustained", 0),
    # fractional minutes as the lab demo uses them: every 15 s, max_over 1 min
    (((1, 0.9), (0.75, 0.9), (0.5, 0.9), (0.25, 0.9), (0, 0.9)), 1, 0.25, "sustained", 1),
    (((0.75, 0.9), (0.5, 0.9), (0.25, 0.9), (0, 0.9)), 1, 0.25, "insufficient-history", 0.75),
    (((2, 0.9), (1, 0.9), (0.25, 0.9), (0, 0.9)), 1, 0.25, "overload-not-sustained", 0.25),
])
def test_judgment(points, max_over, interval, verdict, over_for):
    judgment = judge(tuple(tuple(s) for s in series(*points)), 0.75, max_over, interval, NOW)
    assert judgment.verdict == verdict, judgment.reason
    assert judgment.over_for_min == pytest.approx(over_for)


def test_reasons_give_the_numbers():
    short = judge(tuple(tuple(s) for s in series((5, 0.9), (0, 0.9))), 0.75, 10, 5, NOW)
    assert "5 min" in short.reason and "max_over needs 10 min" in short.reason
    gap = judge(tuple(tuple(s) for s in series((30, 0.9), (12, 0.9), (6, 0.9), (0, 0.9))), 0.75, 20, 5, NOW)
    assert "gap of 18 min" in gap.reason


def overloaded_pool(samples):
    """hv1 runs at 0.875 by its domains; hv2 has room; hv1's samples are given."""
    return [host("hv1", [domain("web1", 4.0), domain("db1", 3.0)], samples=samples), host("hv2")]


@pytest.mark.parametrize("points, status", [
    (((5, 0.9), (0, 0.9)), "insufficient-history"),
    (((20, 0.5), (5, 0.9), (0, 0.9)), "overload-not-sustained"),
    (((20, 0.9), (10, 0.9), (0, 0.5)), "overload-not-sustained"),
    (((60, 0.9), (55, 0.9)), "insufficient-history"),
    ((), "insufficient-history"),
])
def test_overload_that_is_not_sustained_sheds_nothing(points, status):
    result = plan(overloaded_pool(series(*points)), {"now": NOW})
    assert result["migrations"] == []
    hv1 = result["hosts"][0]
    assert (hv1["status"], hv1["overloaded"]) == (status, False)
    assert "sheds nothing" in hv1["reasons"][0]


def test_sustained_overload_sheds():
    result = plan(overloaded_pool(series((15, 0.9), (10, 0.9), (5, 0.9), (0, 0.9))), {"now": NOW})
    assert [m["source"] for m in result["migrations"]] == ["hv1"]
    assert result["migrations"][0]["reason"] == "hv1 overloaded 0.88 > 0.75 for 15 min"
    assert result["hosts"][0]["status"] == "overloaded"
    assert result["hosts"][0]["overloaded"] is True


def test_samples_over_but_domains_under_threshold_is_ok():
    """Planning load comes from the domains' cpu; samples alone do not make a host shed."""
    result = plan([host("hv1", [domain("web1", 2.0)], load=0.95), host("hv2")], {"now": NOW})
    assert result["migrations"] == []
    assert result["hosts"][0]["status"] == "ok"


def test_lab_demo_time_knobs():
    pool = overloaded_pool(series(*[(m / 4, 0.9) for m in range(8, -1, -1)]))
    result = plan(pool, {"now": NOW, "max_over": 1, "interval": 0.25})
    assert len(result["migrations"]) == 1
    assert "for 2 min" in result["migrations"][0]["reason"]


@pytest.mark.parametrize("points, current, window, expected", [
    # no samples: its use now
    ((), 0.4, 120, 0.4),
    # ten values (nine samples and its use now): the 90th percentile is the highest
    (tuple((m, 0.1) for m in range(40, 0, -5)) + ((0, 2.0),), 0.1, 120, 2.0),
    # a single peak among 19 values (18 samples and now) is in the 10 % the quantile leaves out
    (tuple((m, 2.0 if m == 50 else 0.5) for m in range(90, 0, -5)), 0.5, 120, 0.5),
    # two peaks among 19 are not
    (tuple((m, 2.0 if m in (50, 20) else 0.5) for m in range(90, 0, -5)), 0.5, 120, 2.0),
    # samples older than the window do not count
    (((150, 3.0), (140, 3.0), (10, 0.2), (5, 0.2), (0, 0.2)), 0.2, 120, 0.2),
])
def test_busy_demand_is_the_90th_percentile_of_the_window_and_now(points, current, window, expected):
    assert busy(series(*points), current, window, NOW) == expected
