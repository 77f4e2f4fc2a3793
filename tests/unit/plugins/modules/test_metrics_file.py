"""xen.drs.metrics_file and module_utils._metrics: a run's report as node_exporter textfile metrics."""

from __future__ import annotations

import os
import statistics

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _metrics, _state
from ansible_collections.xen.drs.plugins.modules import metrics_file
from ansible_collections.xen.drs.tests.unit.plugins.modules.prometheus_text import parse, value


def report(**changes):
    base = {
        "run_id": "20260101T000000Z-abc123", "mode": "rebalance", "shadow": False,
        "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:00:42Z",
        "figures": {"wall_seconds": 42.5, "gather_seconds": 3.25, "sample_seconds": 3.0, "migrate_seconds": 30.0},
        "policy": {"load_threshold": 0.75}, "aborted": None,
        "left_out": [{"host": "hv9", "reason": "unreachable: timed out"}, {"host": 'odd"host\\', "reason": "x"}],
        "hosts": [{"name": "hv1", "load": 0.91, "overloaded": True}, {"name": "hv2", "load": 0.2, "overloaded": False},
                  {"name": "hv3", "load": 0.0, "overloaded": False}],
        "load_after": {"hv1": 0.66, "hv2": 0.45, "hv3": 0.0},
        "migrations": [{"vm": "web1"}, {"vm": "db1"}],
        "outcomes": [{"vm": "web1", "status": "migrated"}, {"vm": "db1", "status": "failed"}],
        "skipped": [],
    }
    base.update(changes)
    return base


def test_metrics_match_the_report():
    data = report()
    samples, types = parse(_metrics.metrics_text(data))
    assert set(types.values()) == {"gauge"}
    mode = {"mode": "rebalance"}
    assert value(samples, "xen_drs_run_duration_seconds", **mode) == data["figures"]["wall_seconds"]
    assert value(samples, "xen_drs_run_gather_seconds", **mode) == data["figures"]["gather_seconds"]
    assert value(samples, "xen_drs_run_timestamp_seconds", **mode) == 1767225642.0
    for host in data["hosts"]:
        assert value(samples, "xen_drs_host_load", host=host["name"], **mode) == host["load"]
        assert value(samples, "xen_drs_host_overloaded", host=host["name"]) == int(host["overloaded"])
    for name, load in data["load_after"].items():
        assert value(samples, "xen_drs_host_load_after", host=name) == load
    loads = [h["load"] for h in data["hosts"]]
    assert value(samples, "xen_drs_imbalance") == pytest.approx(statistics.pstdev(loads), abs=1e-6)
    imbalance_after = statistics.pstdev(data["load_after"].values())
    assert value(samples, "xen_drs_imbalance_after") == pytest.approx(imbalance_after, abs=1e-6)
    assert value(samples, "xen_drs_migrations_planned") == 2
    assert value(samples, "xen_drs_migrations_done") == 1
    assert value(samples, "xen_drs_migrations_failed") == 1
    assert value(samples, "xen_drs_hosts_left_out") == 2
    assert value(samples, "xen_drs_host_left_out", host='odd"host\\') == 1  # escaped, and read back as it was
    assert value(samples, "xen_drs_hosts_overloaded") == 1 and value(samples, "xen_drs_load_threshold") == 0.75
    assert value(samples, "xen_drs_run_shadow") == 0 and value(samples, "xen_drs_run_aborted") == 0


def test_a_shadow_run_moves_nothing_and_says_so():
    samples, _types = parse(_metrics.metrics_text(report(mode="shadow", shadow=True, outcomes=[])))
    assert value(samples, "xen_drs_run_shadow", mode="shadow") == 1
    assert value(samples, "xen_drs_migrations_planned") == 2 and value(samples, "xen_drs_migrations_done") == 0


@pytest.mark.parametrize("changes, words", [
    ({"mode": ""}, "report.mode: expected a str, got ''"),
    ({"hosts": [{"name": "hv1", "load": "high"}]}, "report.hosts[0].load: expected a number, got 'high'"),
    ({"figures": {"gather_seconds": 1}}, "report.figures.wall_seconds: expected a number, got None"),
    ({"load_after": {"hv1": None}}, "report.load_after.hv1: expected a number, got None"),
    ({"finished": "yesterday"}, "report.finished: expected a time like 2026-01-01T00:00:00Z, got 'yesterday'"),
    ({"outcomes": [{"vm": "a"}]}, "report.outcomes[0].status: expected a str, got None"),
    ({"left_out": [{"reason": "x"}]}, "report.left_out[0].host: expected a str, got None"),
])
def test_a_bad_report_names_the_field_and_the_value(changes, words, tmp_path, run_module):
    with pytest.raises(ValueError) as error:
        _metrics.metrics_text(report(**changes))
    assert words in str(error.value)
    path = tmp_path / "xen_drs.prom"
    result = run_module(metrics_file, dict(path=str(path), report=report(**changes)))
    assert result["failed"] and words in result["msg"] and not path.exists()


def test_the_module_replaces_the_file_atomically(tmp_path, run_module, monkeypatch):
    path = tmp_path / "xen_drs.prom"
    path.write_text("old complete file\n")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        # at the rename the collector still sees the old file, and the new one is complete beside it
        seen.append((os.path.basename(src), path.read_text(), open(src, encoding="utf-8").read()))
        real_replace(src, dst)

    monkeypatch.setattr(_state.os, "replace", replace)
    result = run_module(metrics_file, dict(path=str(path), report=report()))
    assert not result.get("failed"), result
    assert len(seen) == 1
    name, at_rename, new = seen[0]
    assert name.startswith(".xen-drs-metrics-") and name.endswith(".tmp")  # not a *.prom the collector would read
    assert at_rename == "old complete file\n" and new == result["metrics"] == path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["xen_drs.prom"]


def test_check_mode_writes_nothing_and_a_bad_mode_is_named(tmp_path, run_module):
    path = tmp_path / "xen_drs.prom"
    result = run_module(metrics_file, dict(path=str(path), report=report()), check_mode=True)
    assert result["metrics"] and not path.exists() and not result["changed"]
    result = run_module(metrics_file, dict(path=str(path), report=report(), mode="rw"))
    assert result["failed"] and "mode must be octal permissions such as 0644, got 'rw'" in result["msg"]
