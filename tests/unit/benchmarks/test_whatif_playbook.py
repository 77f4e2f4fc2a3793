"""benchmarks/whatif_playbook.py: the day it picks and its two verdicts (the playbook itself runs in
tests/integration/test_whatif.py)."""
import pathlib
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import whatif_playbook as wp  # noqa: E402  pylint: disable=wrong-import-position,import-error

METRICS = {"migrations": 7, "over_host_steps": 12, "over_share": 0.01, "wall_seconds": 14.2,
           "plan_seconds_mean": 0.04, "plan_seconds_max": 0.3}
MOVES = [{"step": 2, "time": 1767226200, "vm": "a", "source": "hv01", "destination": "hv02", "reason": "r",
          "memory_mb": 512, "ping_pong": False}]


def result(seconds=95.0, rc=0, metrics=None, migrations=None):
    doc = {"variants": [{"name": "reference", "metrics": dict(METRICS, **(metrics or {})),
                         "migrations": MOVES if migrations is None else migrations}]}
    return {"day": "20110322", "seconds": seconds, "rc": rc, "variants": 3, "output": "",
            "document": doc if rc == 0 else None}


def replayed(metrics=None):
    # the benchmark's own replay of the day: other wall-clock timings, the same counts
    row = {"metrics": dict(METRICS, wall_seconds=13.0, plan_seconds_mean=0.05, **(metrics or {})), "migrations": MOVES}
    return {"days": [{"day": "20110303", "rows": {}}, {"day": "20110322", "rows": {"xen.drs default": row}}]}


def verdicts(run, replay=None):
    return {target: ok for target, ok, _detail in wp.verdicts(run, replay or replayed(), "xen.drs default")}


def test_largest_day_is_the_one_with_most_rows(tmp_path):
    for name, rows in (("a", 3), ("b", 9), ("c", 5)):
        (tmp_path / f"{name}.csv").write_text("vm,t0\n" + "".join(f"v{i},1\n" for i in range(rows)))
    assert wp.largest_day(sorted(str(p) for p in tmp_path.iterdir())).endswith("b.csv")


def test_met_when_fast_and_equal_whatever_the_timings():
    assert verdicts(result()) == {wp.TARGET_TIME: True, wp.TARGET_SAME: True}


def test_missed_when_slow_or_failed():
    assert verdicts(result(seconds=wp.SECONDS + 1))[wp.TARGET_TIME] is False
    failed = verdicts(result(rc=2))
    assert failed == {wp.TARGET_TIME: False}  # no document: nothing to compare


def test_missed_when_a_figure_or_a_migration_differs():
    assert verdicts(result(metrics={"over_host_steps": 13}))[wp.TARGET_SAME] is False
    assert verdicts(result(migrations=[dict(MOVES[0], destination="hv03")]))[wp.TARGET_SAME] is False
    assert verdicts(result(), replayed(metrics={"migrations": 8}))[wp.TARGET_SAME] is False


def test_nothing_to_judge_without_a_run_or_without_that_day():
    assert not wp.verdicts(None, replayed(), "xen.drs default")
    assert verdicts(result(), {"days": []}) == {wp.TARGET_TIME: True}
