"""xen.drs.shadow_log: what a shadow run would have done, in a bounded log beside the state file."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.xen.drs.plugins.modules import shadow_log
from ansible_collections.xen.drs.tests.unit.plugins.modules.test_metrics_file import report


def shadow_report(run_id="20260101T000000Z-abc123", started="2026-01-01T00:00:00Z", **changes):
    moves = [{"vm": "web1", "uuid": "u1", "source": "hv1", "destination": "hv2", "reason": "hv1 overloaded (0.91 > 0.75)",
              "memory_mb": 1024}]
    return report(run_id=run_id, started=started, mode="shadow", shadow=True, migrations=moves, outcomes=[],
                  skipped=[{"vm": "db1", "reason": "pinned"}], **changes)


def args(tmp_path, **extra):
    return dict(dict(path=str(tmp_path / "shadow.json")), **extra)


def test_an_entry_holds_the_plan_the_loads_and_the_reasons(tmp_path, run_module):
    data = shadow_report()
    result = run_module(shadow_log, args(tmp_path, report=data))
    assert not result.get("failed"), result
    entry = result["entry"]
    assert entry == {"time": 1767225600.0, "run_id": data["run_id"], "mode": "shadow", "load_threshold": 0.75,
                     "hosts": {h["name"]: h["load"] for h in data["hosts"]}, "load_after": data["load_after"],
                     "moves": [{k: data["migrations"][0][k] for k in ("vm", "source", "destination", "reason")}],
                     "skipped": 1, "left_out": ["hv9", 'odd"host\\']}
    stored = json.loads((tmp_path / "shadow.json").read_text())
    assert stored == {"version": 1, "entries": [entry]}
    assert result["entries"] == 1 and result["size_bytes"] == os.path.getsize(tmp_path / "shadow.json")
    # the same run again adds nothing
    again = run_module(shadow_log, args(tmp_path, report=data))
    assert not again["changed"] and again["entries"] == 1


def test_the_log_keeps_the_newest_max_entries(tmp_path, run_module):
    for minute in range(7):
        result = run_module(shadow_log, args(tmp_path, max_entries=4,
                                             report=shadow_report(run_id=f"run{minute}",
                                                                  started=f"2026-01-01T00:{minute:02d}:00Z")))
        assert result["changed"]
    entries = json.loads((tmp_path / "shadow.json").read_text())["entries"]
    assert [e["run_id"] for e in entries] == ["run3", "run4", "run5", "run6"]
    assert [e["time"] for e in entries] == [1767225600.0 + 60 * m for m in range(3, 7)]


def test_a_week_of_runs_and_its_size_on_disk(tmp_path):
    """The default bound: 2016 entries (a week every 5 minutes) of a 5-host pool with a move in one run of 10."""
    entries = []
    hosts = [{"name": f"hv{i}", "load": 0.123 + i / 10, "overloaded": False} for i in range(1, 6)]
    for run in range(2100):
        data = shadow_report(run_id=f"20260101T000000Z-{run:06d}", hosts=hosts,
                             load_after={h["name"]: h["load"] for h in hosts})
        if run % 10:
            data["migrations"] = []
        entries, _added = shadow_log.append(entries, shadow_log.make_entry(data), 2016)
    assert len(entries) == 2016 and entries[0]["run_id"].endswith("000084")
    path = tmp_path / "shadow.json"
    path.write_text(json.dumps({"version": 1, "entries": entries}, separators=(",", ":")))
    size = path.stat().st_size
    print(f"\nshadow log, 2016 entries of 5 hosts: {size / 1024:.0f} KiB")
    assert size < 1_000_000


@pytest.mark.parametrize("changes, words", [
    ({"started": "soon"}, "report.started: expected a time like 2026-01-01T00:00:00Z, got 'soon'"),
    ({"run_id": 7}, "report.run_id: expected str, got 7"),
    ({"hosts": [{"name": "hv1"}]}, "report.hosts[0].load: expected int or float, got None"),
    ({"migrations": [{"vm": "a", "source": "hv1", "destination": "hv2"}]},
     "report.migrations[0].reason: expected str, got None"),
    ({"load_after": {"hv1": "x"}}, "report.load_after.hv1: expected a number, got 'x'"),
])
def test_a_bad_report_names_the_field_and_the_value(tmp_path, run_module, changes, words):
    data = dict(shadow_report(), **changes)
    result = run_module(shadow_log, args(tmp_path, report=data))
    assert result["failed"] and words in result["msg"], result["msg"]
    assert not (tmp_path / "shadow.json").exists()


def test_bad_max_entries_and_a_corrupt_log(tmp_path, run_module):
    result = run_module(shadow_log, args(tmp_path, report=shadow_report(), max_entries=0))
    assert result["failed"] and "max_entries must be at least 1, got 0" in result["msg"]
    (tmp_path / "shadow.json").write_text("{not json")
    result = run_module(shadow_log, args(tmp_path, report=shadow_report()))
    assert not result.get("failed") and result["entries"] == 1
    assert any("corrupt" in w and "shadow.json" in w for w in result["warnings"])


def test_check_mode_writes_nothing(tmp_path, run_module):
    result = run_module(shadow_log, args(tmp_path, report=shadow_report()), check_mode=True)
    assert result["changed"] and result["entries"] == 1 and not (tmp_path / "shadow.json").exists()
