"""xen.drs.report_files: a run's JSON report and HTML page, written in one module call."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _state
from ansible_collections.xen.drs.plugins.modules import report_files

REPORT = {"run_id": "20260101T000000Z-abc123", "mode": "rebalance", "hosts": [{"name": "hv1", "load": 0.5}],
          "note": "ünïcode < & >"}
HTML = "<!DOCTYPE html>\n<html><body><p>hv1 0.50 &amp; ünïcode</p></body></html>\n"


def args(directory, **changes):
    return dict(dict(dir=str(directory), name="xen-drs-20260101T000000Z-abc123", report=REPORT, html=HTML), **changes)


def test_both_files_are_written_in_a_new_directory_with_their_modes(tmp_path, run_module):
    directory = tmp_path / "reports" / "xen-drs"
    result = run_module(report_files, args(directory))
    assert not result.get("failed"), result
    json_path, html_path = (directory / "xen-drs-20260101T000000Z-abc123.json", directory / "xen-drs-20260101T000000Z-abc123.html")
    assert result["paths"] == [str(json_path), str(html_path)] and result["created_dir"] is True
    assert json.loads(json_path.read_text(encoding="utf-8")) == REPORT
    assert html_path.read_text(encoding="utf-8") == HTML
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o750  # a parent it created too, whatever the umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in (json_path, html_path)} == {0o640}
    assert sorted(os.listdir(directory)) == sorted(p.name for p in (json_path, html_path))  # no temporary file left


def test_an_existing_directory_keeps_its_mode_and_an_old_report_is_replaced_atomically(tmp_path, run_module, monkeypatch):
    tmp_path.chmod(0o1777)  # a directory like /tmp
    old = tmp_path / "xen-drs-20260101T000000Z-abc123.json"
    old.write_text("old complete report\n")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst), old.read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(_state.os, "replace", replace)
    result = run_module(report_files, args(tmp_path))
    assert not result.get("failed") and result["created_dir"] is False, result
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o1777
    assert [(dst, at_rename) for _src, dst, at_rename in seen][0] == (old.name, "old complete report\n")
    assert all(src.startswith(".xen-drs-report-") and src.endswith(".tmp") for src, _dst, _old in seen)
    assert json.loads(old.read_text()) == REPORT


def test_check_mode_writes_nothing(tmp_path, run_module):
    directory = tmp_path / "reports"
    result = run_module(report_files, args(directory), check_mode=True)
    assert not result.get("failed") and result["created_dir"] is True and len(result["paths"]) == 2, result
    assert not directory.exists()


@pytest.mark.parametrize("changes, words", [
    ({"mode": "rw"}, "report_files: mode must be octal permissions such as 0644, got 'rw'"),
    ({"dir_mode": "999"}, "report_files: dir_mode must be octal permissions such as 0644, got '999'"),
    ({"name": "../escape"}, "report_files: name must be a file name without a directory, got '../escape'"),
    ({"name": ".."}, "report_files: name must be a file name without a directory, got '..'"),
])
def test_bad_parameters_are_named_and_nothing_is_written(tmp_path, run_module, changes, words):
    result = run_module(report_files, args(tmp_path / "reports", **changes))
    assert result["failed"] and words in result["msg"], result
    assert not (tmp_path / "reports").exists()


def test_a_directory_that_cannot_be_made_names_the_directory_and_the_cause(tmp_path, run_module):
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / "a-file" / "reports"
    result = run_module(report_files, args(directory))
    assert result["failed"], result
    assert result["msg"].startswith(f"report_files: cannot write the reports to {directory}: ")
    assert "Not a directory" in result["msg"]


def test_a_failed_write_leaves_no_partial_file(tmp_path, run_module, monkeypatch):
    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_state.os, "fsync", full)
    result = run_module(report_files, args(tmp_path))
    assert result["failed"] and "No space left on device" in result["msg"], result
    assert os.listdir(tmp_path) == []
