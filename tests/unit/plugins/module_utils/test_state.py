"""_state: the bounded, atomically written, corruption-tolerant, versioned state file."""

from __future__ import annotations

import dataclasses
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
    state = _state.State(samples=[[1.0, 0.5, 0.25], [2.0, 0.5]], migrations=[record(1.0)],
                         domains={"uuid-a": [[1.0, 0.75], [2.0, 1.0]]})
    _state.save_state(str(path), state)
    assert _state.load_state(str(path)) == (state, None)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700  # the parent it created too
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "version": 3, "samples": [[1.0, 0.5, 0.25], [2.0, 0.5]], "domains": {"uuid-a": [[1.0, 0.75], [2.0, 1.0]]},
        "migrations": [record(1.0)], "archive": {}, "failures": []}
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
    ('{"samples": []}', "version is None, expected 1 to 3"),
    ('{"version": "2", "samples": []}', "version is '2', expected 1 to 3"),
    ('{"version": true, "samples": []}', "version is True, expected 1 to 3"),
    ('{"version": 0, "samples": []}', "version is 0, expected 1 to 3"),
    ('{"version": 1, "samples": [[1, "x"]]}', "'samples' is not a list of [time, load] entries"),
    # version 1 never wrote memory: a third value there is not from this collection
    ('{"version": 1, "samples": [[1, 0.5, 0.2]]}', "'samples' is not a list of [time, load] entries"),
    ('{"version": 2, "samples": [[1, 0.5, 0.2, 9]]}',
     "'samples' is not a list of [time, load] or [time, load, memory_load] entries"),
    ('{"version": 2, "domains": []}', "'domains' is not an object of domain uuid -> samples"),
    ('{"version": 2, "domains": {"u1": [[1, 0.5, 3]]}}', "'domains' entry 'u1' is not a list of [time, cores] entries"),
    ('{"version": 2, "domains": {"u1": [[1, null]]}}', "'domains' entry 'u1' is not a list of [time, cores] entries"),
    ('{"version": 1, "samples": [], "migrations": [{"time": 1}]}', "'migrations' is not a list of records"),
    ('{"version": 1, "migrations": "no"}', "'migrations' is not a list of records"),
])
def test_corrupt_file_is_a_warning_and_empty_state(tmp_path, text, words):
    path = tmp_path / "state.json"
    path.write_text(text)
    state, warning = _state.load_state(str(path))
    assert state == _state.State()
    assert str(path) in warning and words in warning and "starting with an empty state" in warning


def test_version_1_file_is_read_and_written_back_as_version_3(tmp_path):
    """What the previous release wrote: host samples as pairs, no domains; nothing of it is lost."""
    path = tmp_path / "state.json"
    records = [record(100.0), record(200.0, vm="db1", source="hv2", destination="hv1")]
    path.write_text(json.dumps({"version": 1, "samples": [[100.0, 0.5], [160.0, 0.75]], "migrations": records}))
    state, warning = _state.load_state(str(path))
    assert warning is None
    assert state == _state.State(samples=[[100.0, 0.5], [160.0, 0.75]], migrations=records, domains={})
    state = _state.prune(_state.State(samples=state.samples + [[220.0, 0.25, 0.5]], migrations=state.migrations,
                                      domains={"uuid-db1": [[220.0, 1.0]]}), now=220.0, history_seconds=3600)
    _state.save_state(str(path), state)
    written = json.loads(path.read_text())
    assert written == {"version": 3, "samples": [[100.0, 0.5], [160.0, 0.75], [220.0, 0.25, 0.5]],
                       "domains": {"uuid-db1": [[220.0, 1.0]]}, "migrations": records, "archive": {}, "failures": []}
    assert _state.load_state(str(path)) == (state, None)


def test_a_newer_version_is_an_empty_state_and_its_file_is_never_overwritten(tmp_path):
    path = tmp_path / "state.json"
    newer = json.dumps({"version": 4, "samples": {"whatever": "a later release keeps"}, "migrations": []})
    path.write_text(newer)
    state, warning = _state.load_state(str(path))
    assert (state.samples, state.migrations, state.domains, state.archive, state.newer_version) == ([], [], {}, {}, 4)
    assert str(path) in warning and "newer release" in warning and "left unchanged" in warning
    # every writer goes through save_state: a measured sample, a migration record
    for changed in (_state.prune(_state.State(samples=[[1.0, 0.5]], newer_version=4), 1.0, 60),
                    _state.add_migration(state, record(1.0))[0]):
        with pytest.raises(_state.NewerStateFileError, match="version 4, this one writes 3"):
            _state.save_state(str(path), changed)
    assert path.read_text() == newer
    assert issubclass(_state.NewerStateFileError, OSError)  # what the modules already catch


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


def test_prune_bounds_each_domain_like_the_host_and_drops_departed_domains():
    long = [[float(t), 0.5] for t in range(5000)]
    state = _state.State(samples=list(long), domains={"here": list(long), "gone": list(long),
                                                      "stale": [[10.0, 1.0]]})
    pruned = _state.prune(state, now=4999.0, history_seconds=3000, keep_domains={"here", "stale"})
    assert sorted(pruned.domains) == ["here"]  # "gone" left the host, "stale" has nothing in the window
    assert pruned.domains["here"] == pruned.samples
    assert len(pruned.domains["here"]) == _state.MAX_SAMPLES and pruned.domains["here"][0][0] == 4000.0
    pruned = _state.prune(state, now=4999.0, history_seconds=100, keep_domains={"here"})
    assert [s[0] for s in pruned.domains["here"]] == [float(t) for t in range(4899, 5000)]
    # without keep_domains (the migration writers) every domain's history stays
    assert sorted(_state.prune(state, now=20.0, history_seconds=100).domains) == ["gone", "here", "stale"]


def test_add_migration_keeps_the_samples_of_host_and_domains():
    state = _state.State(samples=[[1.0, 0.5, 0.1]], domains={"uuid-web1": [[1.0, 0.5]]})
    added, _new = _state.add_migration(state, record(2.0))
    assert (added.samples, added.domains) == (state.samples, state.domains)


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


# ---------------------------------------------------------------- the archive (version 3)

STEP = _state.ARCHIVE_STEP
DAY = 86400


def domain(uuid, cpu, name=None, state="running", measured=True, memory_mb=1024, vcpus=2):
    return dict(uuid=uuid, name=name or uuid, cpu=cpu, state=state, cpu_measured=measured, memory_mb=memory_mb,
                vcpus=vcpus)


HOST = dict(name="hv1", cpus=8, memory_mb=65536)


def test_version_2_file_is_read_and_written_back_as_version_3_with_an_archive(tmp_path):
    """What the previous release wrote: samples, domains and records are kept; the archive starts empty."""
    path = tmp_path / "state.json"
    v2 = {"version": 2, "samples": [[100.0, 0.5, 0.25]], "domains": {"u1": [[100.0, 0.75]]},
          "migrations": [record(90.0)]}
    path.write_text(json.dumps(v2))
    state, warning = _state.load_state(str(path))
    assert warning is None
    assert state == _state.State(samples=v2["samples"], domains=v2["domains"], migrations=v2["migrations"])
    state = dataclasses.replace(state, archive=_state.archive_add(state.archive, 400.0, HOST, 0.5, 0.25,
                                                                  [domain("u1", 0.75)]))
    _state.save_state(str(path), state)
    written = json.loads(path.read_text())
    assert written["version"] == 3 and all(written[k] == v2[k] for k in ("samples", "domains", "migrations"))
    assert written["archive"]["host"] == dict(HOST, load={"start": 300, "n": 1, "v": [0.5]},
                                              memory_load={"start": 300, "n": 1, "v": [0.25]})
    assert _state.load_state(str(path)) == (state, None)


def test_a_bucket_is_the_mean_of_its_samples_and_gaps_are_null():
    series = None
    for taken, value in ((600.0, 0.2), (700.0, 0.4), (899.0, 0.9), (1500.0, 1.0), (1510.0, 0.0)):
        series = _state.series_add(series, taken, value)
    # [600, 900): 0.2, 0.4, 0.9 -> 0.5; [900, 1200) and [1200, 1500) saw nothing; [1500, 1800): 1.0, 0.0
    assert series == {"start": 600, "n": 2, "v": [0.5, None, None, 0.5]}
    # a sample from before the last bucket (the clock went back) changes nothing
    assert _state.series_add(series, 650.0, 5.0) == series


def test_archive_keeps_the_days_asked_and_drops_domains_not_seen_since():
    archive, now = {}, 10 * DAY
    for step in range(3 * DAY // STEP):  # three days, one sample per bucket
        taken = now + step * STEP
        domains = [domain("stays", 0.5)] + ([domain("left", 1.0)] if step < 12 else [])
        archive = _state.archive_add(archive, taken, HOST, 0.25, 0.5, domains, days=2)
    end = now + (3 * DAY // STEP - 1) * STEP
    load = archive["host"]["load"]
    assert len(load["v"]) == 2 * DAY // STEP and _state.series_end(load) == end
    assert load["start"] == end - 2 * DAY + STEP and set(load["v"]) == {0.25}
    assert list(archive["domains"]) == ["stays"]  # "left" was last seen 3 days ago
    # a domain that left recently keeps its archive (the replay needs where it was)
    archive = _state.archive_add(archive, end + STEP, HOST, 0.25, 0.5, [domain("new", 0.1)], days=2)
    archive = _state.archive_add(archive, end + 2 * STEP, HOST, 0.25, 0.5, [], days=2)
    assert sorted(archive["domains"]) == ["new", "stays"]
    assert _state.archive_add(archive, end + 3 * STEP, HOST, 0.25, 0.5, [], days=0) == {}


def test_archive_bounds_buckets_and_domains_and_its_size_on_disk(tmp_path, monkeypatch):
    # at most MAX_ARCHIVE_BUCKETS per series, whatever the days
    series = {"start": 0, "n": 1, "v": [0.5] * (_state.MAX_ARCHIVE_BUCKETS + 50)}
    trimmed = _state.series_trim(series, _state.series_end(series), 1000)
    assert len(trimmed["v"]) == _state.MAX_ARCHIVE_BUCKETS and trimmed["start"] == 50 * STEP
    # at most MAX_ARCHIVE_DOMAINS domains: those seen last
    monkeypatch.setattr(_state, "MAX_ARCHIVE_DOMAINS", 3)
    archive = {}
    for index in range(5):
        archive = _state.archive_add(archive, DAY + index * STEP, HOST, 0.1, None, [domain(f"d{index}", 0.1)])
    assert sorted(archive["domains"]) == ["d2", "d3", "d4"]
    monkeypatch.undo()
    # a full archive: 14 days of a host with 20 domains, loads with 3 decimals
    full = {"start": 0, "n": 1, "v": [round(0.123 + (i % 700) / 1000, 3) for i in range(_state.MAX_ARCHIVE_BUCKETS)]}
    archive = {"step": STEP, "host": dict(HOST, load=full, memory_load=full),
               "domains": {f"uuid-{i:036d}": {"name": f"vm{i}", "memory_mb": 4096, "vcpus": 2, "cpu": full}
                           for i in range(20)}}
    path = tmp_path / "state.json"
    _state.save_state(str(path), _state.State(archive=archive))
    size = path.stat().st_size
    print(f"\nfull 14-day archive, host + 20 domains: {size / 1024:.0f} KiB on disk")
    assert 22 * 20_000 < size < 22 * 30_000  # about 24 KB a series, as the docs say
    assert _state.load_state(str(path))[0].archive == archive


@pytest.mark.parametrize("archive, words", [
    ([], "'archive' is not an object, got []"),
    ({"step": 60, "domains": {}}, "'archive'.step is not 300, got 60"),
    ({"step": 300, "host": {"name": "hv1", "cpus": "8", "memory_mb": 1}}, "'archive'.host.cpus is not a number >= 0, got '8'"),
    ({"step": 300, "host": {"name": "", "cpus": 8, "memory_mb": 1}}, "'archive'.host.name is not a non-empty string, got ''"),
    ({"step": 300, "host": dict(HOST, load={"start": 0, "n": 1, "v": ["x"]})},
     "'archive'.host.load.v is not a non-empty list of numbers or nulls"),
    ({"step": 300, "domains": {"u1": {"name": "a", "memory_mb": 1, "vcpus": 1, "cpu": {"start": 0, "n": 0, "v": [1]}}}},
     "'archive'.domains['u1'].cpu.n is not a whole number >= 1, got 0"),
    ({"step": 300, "domains": {"u1": {"name": "a", "memory_mb": -5, "vcpus": 1}}},
     "'archive'.domains['u1'].memory_mb is not a number >= 0, got -5"),
    ({"step": 300, "domains": {"u1": {
        "name": "a", "memory_mb": 1, "vcpus": 1,
        "cpu": {"start": 0, "n": 1, "v": [0.1] * (_state.MAX_ARCHIVE_BUCKETS + 1)}}}},
     "'archive'.domains['u1'].cpu.v has 4033 buckets, more than 4032"),
])
def test_a_bad_archive_is_a_warning_naming_the_field_and_the_value(tmp_path, archive, words):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 3, "samples": [], "archive": archive}))
    state, warning = _state.load_state(str(path))
    assert state == _state.State()
    assert "corrupt" in warning and words in warning


def test_drop_future_keeps_the_present_and_counts_what_it_dropped():
    state = _state.State(samples=[[100.0, 0.5], [104.0, 0.5], [200.0, 0.9]],
                         domains={"a": [[100.0, 1.0], [300.0, 2.0]], "b": [[400.0, 1.0]]},
                         migrations=[record(100.0), record(500.0)])
    kept, dropped, later = _state.drop_future(state, 100.0)
    assert kept.samples == [[100.0, 0.5], [104.0, 0.5]]  # within the tolerance of 5 s
    assert kept.domains == {"a": [[100.0, 1.0]]} and (dropped, later) == (3, 1)
    assert kept.migrations == state.migrations  # records are kept: their time counts as now


def test_a_failure_counts_the_failures_in_a_row_since_the_last_migration():
    state = _state.add_failure(_state.State(), record(100.0), "refused", "transient")
    assert state.failures == [dict(record(100.0), error="refused", kind="transient", count=1)]
    state = _state.add_failure(state, record(200.0, vm="db1"), "other domain", "transient")
    state = _state.add_failure(state, record(300.0), "timed out", "transient")
    assert state.failures[-1] == dict(record(300.0), error="timed out", kind="transient", count=2, previous=100.0)
    state = _state.add_failure(state, record(400.0), "CPU incompatible", "permanent")
    assert (state.failures[-1]["count"], state.failures[-1]["previous"]) == (3, 300.0)
    # a migration of the domain since its last failure ends the row
    state = dataclasses.replace(state, migrations=[record(450.0, source="hv2", destination="hv1")])
    state = _state.add_failure(state, record(500.0), "timed out", "transient")
    assert state.failures[-1] == dict(record(500.0), error="timed out", kind="transient", count=1)
    assert state.failures[1]["count"] == 1  # db1's own row


def test_a_failure_written_before_kinds_and_counts_reads_and_counts_one(tmp_path):
    path = tmp_path / "state.json"
    old = dict(record(100.0), error="refused")  # a release before kind, count and previous
    path.write_text(json.dumps({"version": 3, "samples": [], "migrations": [], "failures": [old]}))
    state, warning = _state.load_state(str(path))
    assert warning is None and state.failures == [old]
    state = _state.add_failure(state, record(200.0), "timed out", "transient")
    assert (state.failures[-1]["count"], state.failures[-1]["previous"]) == (2, 100.0)
    _state.save_state(str(path), state)
    assert _state.load_state(str(path)) == (state, None)


@pytest.mark.parametrize("bad", [{"kind": "flaky"}, {"count": 0}, {"count": "2"}, {"previous": "then"}])
def test_a_failure_with_a_bad_kind_count_or_previous_is_a_corrupt_file(tmp_path, bad):
    path = tmp_path / "state.json"
    failure = dict(record(100.0), error="refused", **bad)
    path.write_text(json.dumps({"version": 3, "samples": [], "migrations": [], "failures": [failure]}))
    state, warning = _state.load_state(str(path))
    assert state == _state.State()
    assert "corrupt" in warning and "'failures'" in warning and "kind: permanent or transient" in warning
