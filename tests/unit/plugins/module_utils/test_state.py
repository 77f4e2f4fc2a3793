"""_state: the bounded, atomically written, corruption-tolerant state file."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _state


def record(t, vm="web1", source="hv1", destination="hv2"):
    return dict(time=t, vm=vm, uuid=f"uuid-{vm}", source=source, destination=destination)


def test_missing_file_is_an_empty_state_without_warning(tmp_path):
    assert _state.load_state(str(tmp_path / "none.json")) == (_state.State(), None)


def test_round_trip_and_directory_mode(tmp_path):
    path = tmp_path / "new" / "dir" / "state.json"
    state = _state.State(samples=[[1.0, 0.5]], migrations=[record(1.0)])
    _state.save_state(str(path), state)
    assert _state.load_state(str(path)) == (state, None)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert json.loads(path.read_text())["version"] == 1
    assert os.listdir(path.parent) == ["state.json"]  # no temporary file left behind


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    _state.save_state(str(path), _state.State(samples=[[1.0, 0.1]]))

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_state.json, "dump", full_disk)
    with pytest.raises(OSError):
        _state.save_state(str(path), _state.State(samples=[[2.0, 0.2]]))
    assert _state.load_state(str(path))[0].samples == [[1.0, 0.1]]
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize("text, words", [
    ("{broken", "corrupt"),
    ("[]", "top level is not an object"),
    ('{"version": 2, "samples": []}', "version is 2, expected 1"),
    ('{"version": 1, "samples": [[1, "x"]]}', "'samples' is not a list of [time, load] pairs"),
    ('{"version": 1, "samples": [], "migrations": [{"time": 1}]}', "'migrations' is not a list of records"),
    ('{"version": 1, "migrations": "no"}', "'migrations' is not a list of records"),
])
def test_corrupt_file_is_a_warning_and_empty_state(tmp_path, text, words):
    path = tmp_path / "state.json"
    path.write_text(text)
    state, warning = _state.load_state(str(path))
    assert state == _state.State()
    assert str(path) in warning and words in warning and "starting with an empty state" in warning


def test_unreadable_file_is_a_warning(tmp_path):
    (tmp_path / "state.json").mkdir()  # a directory where the file should be
    state, warning = _state.load_state(str(tmp_path / "state.json"))
    assert state == _state.State() and "unreadable" in warning


def test_binary_garbage_is_a_warning(tmp_path):
    (tmp_path / "state.json").write_bytes(b"\xff\xfe\x00garbage")
    state, warning = _state.load_state(str(tmp_path / "state.json"))
    assert state == _state.State() and warning


def test_prune_keeps_the_window_and_the_bounds():
    samples = [[float(t), 0.1] for t in range(5000)]
    migrations = [record(float(t), vm=f"vm{t}") for t in range(500)]
    pruned = _state.prune(_state.State(samples, migrations), now=4999.0, history_seconds=3000)
    assert len(pruned.samples) == _state.MAX_SAMPLES and pruned.samples[-1][0] == 4999.0
    assert pruned.samples[0][0] == 4000.0
    pruned = _state.prune(_state.State(samples, migrations), now=4999.0, history_seconds=100)
    assert [s[0] for s in pruned.samples] == [float(t) for t in range(4899, 5000)]
    assert len(pruned.migrations) == _state.MAX_MIGRATIONS and pruned.migrations[-1]["vm"] == "vm499"


def test_add_migration_is_idempotent_and_bounded():
    state, added = _state.add_migration(_state.State(), record(1.0))
    assert added and state.migrations == [record(1.0)]
    same, added = _state.add_migration(state, dict(record(1.0)))
    assert not added and same.migrations == [record(1.0)]
    for t in range(2, 300):
        state, _added = _state.add_migration(state, record(float(t)))
    assert len(state.migrations) == _state.MAX_MIGRATIONS and state.migrations[-1]["time"] == 299.0


def test_last_migrations_picks_the_newest_per_uuid():
    latest = _state.last_migrations([record(5.0, source="hv3"), record(9.0, source="hv2"), record(1.0)])
    assert latest["uuid-web1"]["time"] == 9.0 and latest["uuid-web1"]["source"] == "hv2"
