"""migration_record: append, idempotence, check mode, bad input, corrupt file."""

from __future__ import annotations

import json

import pytest

from ansible_collections.xen.drs.plugins.modules import migration_record

RECORD = dict(time=1764000000.123, vm="web1", uuid="u-1", source="hv1", destination="hv2")


def args(tmp_path, **extra):
    return dict(dict(RECORD, state_path=str(tmp_path / "state.json")), **extra)


def stored(tmp_path):
    return json.loads((tmp_path / "state.json").read_text())["migrations"]


def test_appends_then_is_idempotent(tmp_path, run_module):
    first = run_module(migration_record, args(tmp_path))
    again = run_module(migration_record, args(tmp_path))
    assert first["changed"] is True and again["changed"] is False
    assert first["record"] == RECORD and again["migrations"] == 1
    assert stored(tmp_path) == [RECORD]


def test_a_different_record_is_added(tmp_path, run_module):
    run_module(migration_record, args(tmp_path))
    result = run_module(migration_record, args(tmp_path, time=1764000100.0, source="hv2", destination="hv3"))
    assert result["changed"] is True and result["migrations"] == 2
    assert [r["destination"] for r in stored(tmp_path)] == ["hv2", "hv3"]


def test_time_given_as_a_string_matches_the_stored_float(tmp_path, run_module):
    run_module(migration_record, args(tmp_path))
    assert run_module(migration_record, args(tmp_path, time="1764000000.123"))["changed"] is False


def test_check_mode_writes_nothing(tmp_path, run_module):
    result = run_module(migration_record, args(tmp_path), check_mode=True)
    assert result["changed"] is True and result["migrations"] == 1
    assert not (tmp_path / "state.json").exists()


def test_corrupt_file_is_a_warning_then_rewritten(tmp_path, run_module):
    (tmp_path / "state.json").write_text("garbage")
    result = run_module(migration_record, args(tmp_path))
    assert result["changed"] is True and any("corrupt" in w for w in result["warnings"])
    assert stored(tmp_path) == [RECORD]


@pytest.mark.parametrize("options, words", [
    (dict(vm=" "), "vm must not be empty, got ' '"),
    (dict(destination=""), "destination must not be empty, got ''"),
    (dict(time=-1), "time must be seconds since the epoch, got -1"),
    (dict(time="nan"), "time must be seconds since the epoch, got nan"),
    (dict(time="inf"), "time must be seconds since the epoch, got inf"),
    (dict(time="yesterday"), "time"),
])
def test_bad_input_names_the_field_and_value(tmp_path, run_module, options, words):
    result = run_module(migration_record, args(tmp_path, **options))
    assert result["failed"] is True and words in result["msg"]
    assert not (tmp_path / "state.json").exists()


def test_unwritable_state_path_fails_naming_it(tmp_path, run_module):
    (tmp_path / "file").write_text("")
    path = str(tmp_path / "file" / "state.json")
    result = run_module(migration_record, args(tmp_path, state_path=path))
    assert result["failed"] is True and path in result["msg"]
