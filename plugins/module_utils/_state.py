# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-hypervisor state file of xen.drs.

It lives on the hypervisor because AWX runs every job in a throw-away container: the host's
recent load samples, its domains' CPU samples and the migrations that touched it must survive the
control node.

Format (JSON), version 3::

    {"version": 3,
     "samples": [[epoch, load, memory_load], ...],
     "domains": {"<domain uuid>": [[epoch, cores], ...], ...},
     "migrations": [{"time", "vm", "uuid", "source", "destination"}, ...],
     "failures": [{"time", "vm", "uuid", "source", "destination", "error", "kind", "count", "previous"}, ...],
     "archive": {"step": 300,
                 "host": {"name", "cpus", "memory_mb", "load": SERIES, "memory_load": SERIES},
                 "domains": {"<domain uuid>": {"name", "memory_mb", "vcpus", "cpu": SERIES}, ...}}}

every list oldest first. A failure's ``kind``, ``count`` and ``previous`` (see add_failure) are optional: a
failure written before them reads as the first of its row, and the plans take it as permanent. A host
sample may also be an ``[epoch, load]`` pair (samples written by version 1, or taken when the host's
memory was unknown). Version 1 (``samples`` as pairs, no ``domains``) and version 2 (no ``archive``)
are read as they are and written back as version 3, with an empty archive that fills from then on. A file of a newer version is never overwritten: it
reads as an empty state marked ``newer_version``, and save_state refuses it. The file is bounded
(see MAX_SAMPLES / MAX_MIGRATIONS / MAX_ARCHIVE_BUCKETS / MAX_ARCHIVE_DOMAINS) and replaced atomically.

The archive is the long, downsampled history a replay needs (the samples above only cover
``history_minutes``): a SERIES is ``{"start": epoch, "n": count, "v": [mean or null, ...]}``,
``v[i]`` the mean of the samples taken in ``[start + i * step, start + (i + 1) * step)`` (null:
none), ``n`` the number of samples in the last bucket (so the next sample of that bucket updates its
mean). Buckets are ARCHIVE_STEP (5 minutes) long and kept ARCHIVE_DAYS (14 days, 4,032 buckets); a
value is written with 3 decimals, so a full series is about 24 KB and a host with 20 domains keeps
about 0.5 MB. A domain's archive stays on the host after the domain left (a replay needs where it
was), until its newest bucket is older than the archive's days; at most MAX_ARCHIVE_DOMAINS domains,
those seen last.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace

from ansible_collections.xen.drs.plugins.module_utils._files import make_directories

VERSION = 3
MAX_SAMPLES = 1000  # per series: the host's, and each domain's
MAX_MIGRATIONS = 200
RECORD_FIELDS = ("time", "vm", "uuid", "source", "destination")
ARCHIVE_STEP = 300  # seconds per archive bucket (the replay's step)
ARCHIVE_DAYS = 14
MAX_ARCHIVE_BUCKETS = ARCHIVE_DAYS * 86400 // ARCHIVE_STEP  # 4,032 per series, whatever the days asked
MAX_ARCHIVE_DOMAINS = 200


@dataclass
class State:
    samples: list = field(default_factory=list)
    migrations: list = field(default_factory=list)
    domains: dict = field(default_factory=dict)  # domain uuid -> [[epoch, cores], ...]
    archive: dict = field(default_factory=dict)  # the downsampled long history (see the module's docstring)
    failures: list = field(default_factory=list)  # failed migrations: RECORD_FIELDS + error, newest last
    newer_version: int | None = None  # the version of a file this release cannot read (never overwritten)


class NewerStateFileError(OSError):
    """save_state was given the state read from a file that a newer release wrote; the file is kept."""


class _NewerVersion(ValueError):
    def __init__(self, version):
        super().__init__(f"version is {version}, newer than the {VERSION} this release writes")
        self.version = version


# Entry width -> how the entry reads, for the host's samples (version 1 and 2) and each domain's.
HOST_V1 = {2: "[time, load]"}
HOST = {2: "[time, load]", 3: "[time, load, memory_load]"}
DOMAIN = {2: "[time, cores]"}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_sample(sample, shapes):
    return isinstance(sample, list) and len(sample) in shapes and all(_number(v) for v in sample)


def _valid_record(record):
    return (isinstance(record, dict) and all(k in record for k in RECORD_FIELDS)
            and _number(record["time"])
            and all(isinstance(record[k], str) for k in RECORD_FIELDS[1:]))


def _valid_failure(record):
    """A failed migration: a record with its error; kind, count and previous are optional (a release before
    them wrote none)."""
    count = record.get("count", 1) if isinstance(record, dict) else None
    return (_valid_record(record) and isinstance(record.get("error"), str)
            and record.get("kind", PERMANENT) in FAILURE_KINDS
            and isinstance(count, int) and not isinstance(count, bool) and count >= 1
            and _number(record.get("previous", 0)))


def _check_samples(samples, shapes, what):
    if not isinstance(samples, list) or not all(_valid_sample(s, shapes) for s in samples):
        raise ValueError(f"{what} is not a list of {' or '.join(shapes.values())} entries")


def parse_state(text):
    """State from the file's text (version 1, 2 or 3); raises ValueError saying what is wrong.

    A newer version raises _NewerVersion (a ValueError) carrying it.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version is {version!r}, expected 1 to {VERSION}")
    if version > VERSION:
        raise _NewerVersion(version)
    samples, migrations = data.get("samples", []), data.get("migrations", [])
    _check_samples(samples, HOST_V1 if version == 1 else HOST, "'samples'")
    if not isinstance(migrations, list) or not all(_valid_record(r) for r in migrations):
        raise ValueError(f"'migrations' is not a list of records with {', '.join(RECORD_FIELDS)}")
    domains = {} if version == 1 else data.get("domains", {})
    if not isinstance(domains, dict):
        raise ValueError("'domains' is not an object of domain uuid -> samples")
    for uuid, series in domains.items():
        _check_samples(series, DOMAIN, f"'domains' entry {uuid!r}")
    archive = {} if version < 3 else data.get("archive", {})
    check_archive(archive)
    # optional in version 3 (a release before it ignores the key, and drops it when it writes the file)
    failures = data.get("failures", [])
    if not isinstance(failures, list) or not all(_valid_failure(r) for r in failures):
        raise ValueError(f"'failures' is not a list of records with {', '.join(RECORD_FIELDS)}, error "
                         f"(and optionally kind: {' or '.join(FAILURE_KINDS)}, count >= 1, previous)")
    return State(samples=samples, migrations=migrations, domains=domains, archive=archive, failures=failures)


def _check_series(series, what):
    if not isinstance(series, dict):
        raise ValueError(f"{what} is not an object {{start, n, v}}, got {series!r}")
    start, count, values = series.get("start"), series.get("n"), series.get("v")
    if not _number(start):
        raise ValueError(f"{what}.start is not a number, got {start!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"{what}.n is not a whole number >= 1, got {count!r}")
    if not isinstance(values, list) or not values or not all(v is None or _number(v) for v in values):
        raise ValueError(f"{what}.v is not a non-empty list of numbers or nulls")
    if len(values) > MAX_ARCHIVE_BUCKETS:
        raise ValueError(f"{what}.v has {len(values)} buckets, more than {MAX_ARCHIVE_BUCKETS}")


def _check_fields(entry, fields, what):
    if not isinstance(entry, dict):
        raise ValueError(f"{what} is not an object, got {entry!r}")
    for name, kind in fields:
        value = entry.get(name)
        valid = isinstance(value, str) and value if kind == "str" else _number(value) and value >= 0
        if not valid:
            raise ValueError(f"{what}.{name} is not a {'non-empty string' if kind == 'str' else 'number >= 0'}, "
                             f"got {value!r}")


def check_archive(archive):
    """Raise ValueError naming the field and the value if ``archive`` is not a valid archive."""
    if not isinstance(archive, dict):
        raise ValueError(f"'archive' is not an object, got {archive!r}")
    if not archive:
        return
    if archive.get("step") != ARCHIVE_STEP:
        raise ValueError(f"'archive'.step is not {ARCHIVE_STEP}, got {archive.get('step')!r}")
    host = archive.get("host")
    if host is not None:
        _check_fields(host, (("name", "str"), ("cpus", "num"), ("memory_mb", "num")), "'archive'.host")
        for name in ("load", "memory_load"):
            if name in host:
                _check_series(host[name], f"'archive'.host.{name}")
    domains = archive.get("domains", {})
    if not isinstance(domains, dict):
        raise ValueError(f"'archive'.domains is not an object of domain uuid -> history, got {domains!r}")
    for uuid, entry in domains.items():
        what = f"'archive'.domains[{uuid!r}]"
        _check_fields(entry, (("name", "str"), ("memory_mb", "num"), ("vcpus", "num")), what)
        _check_series(entry.get("cpu"), f"{what}.cpu")


def _bucket(epoch):
    return epoch - epoch % ARCHIVE_STEP


def series_end(series):
    """The start of a series' last bucket."""
    return series["start"] + (len(series["v"]) - 1) * ARCHIVE_STEP


def series_add(series, taken, value):
    """``series`` (or None) with the sample ``value`` taken at ``taken`` folded into its bucket.

    The bucket's value is the mean of its samples. A sample older than the last bucket (a clock that
    went back) is ignored; buckets skipped since the last sample are null."""
    bucket = _bucket(int(taken))
    if not series:
        return {"start": bucket, "n": 1, "v": [round(value, 3)]}
    last = series_end(series)
    values, count = list(series["v"]), series["n"]
    if bucket < last:
        return series
    if bucket == last:
        if values[-1] is None:
            values[-1], count = round(value, 3), 1
        else:
            values[-1], count = round((values[-1] * count + value) / (count + 1), 3), count + 1
    else:
        values.extend([None] * ((bucket - last) // ARCHIVE_STEP - 1) + [round(value, 3)])
        count = 1
    return {"start": series["start"], "n": count, "v": values}


def series_trim(series, now, days):
    """``series`` without the buckets that ended more than ``days`` before ``now`` (and at most
    MAX_ARCHIVE_BUCKETS), without leading nulls; None when nothing is left."""
    if not series:
        return None
    values, start = list(series["v"]), series["start"]
    oldest = max(_bucket(int(now)) - days * 86400 + ARCHIVE_STEP, series_end(series) - (MAX_ARCHIVE_BUCKETS - 1) * ARCHIVE_STEP)
    if oldest > start:
        drop = (oldest - start) // ARCHIVE_STEP
        values, start = values[drop:], start + drop * ARCHIVE_STEP
    while values and values[0] is None:
        values, start = values[1:], start + ARCHIVE_STEP
    if not values:
        return None
    return {"start": start, "n": series["n"], "v": values}


def archive_add(archive, taken, host, load, memory, domains, days=ARCHIVE_DAYS):
    """The archive with this run's samples folded in and every bound applied.

    ``host`` is {name, cpus, memory_mb}; ``load`` and ``memory`` (None: unknown) the host's sample;
    ``domains`` the module's domain facts: each running domain measured over the whole window adds its
    cores to its series and updates its name, memory and vCPUs. ``days`` 0 empties the archive."""
    if days <= 0:
        return {}
    old_host = archive.get("host", {})
    new_host = dict(host, load=series_add(old_host.get("load"), taken, load))
    if memory is not None:
        new_host["memory_load"] = series_add(old_host.get("memory_load"), taken, memory)
    elif "memory_load" in old_host:
        new_host["memory_load"] = old_host["memory_load"]
    entries = dict(archive.get("domains", {}))
    for domain in domains:
        if domain["state"] == "running" and domain["cpu_measured"]:
            old = entries.get(domain["uuid"], {})
            entries[domain["uuid"]] = {"name": domain["name"], "memory_mb": domain["memory_mb"],
                                       "vcpus": domain["vcpus"], "cpu": series_add(old.get("cpu"), taken, domain["cpu"])}
    return trim_archive({"step": ARCHIVE_STEP, "host": new_host, "domains": entries}, taken, days)


def trim_archive(archive, now, days=ARCHIVE_DAYS):
    """Every series within ``days`` and MAX_ARCHIVE_BUCKETS; the MAX_ARCHIVE_DOMAINS domains seen last."""
    if not archive:
        return {}
    host = dict(archive.get("host") or {})
    for name in ("load", "memory_load"):
        if name in host:
            trimmed = series_trim(host[name], now, days)
            if trimmed is None:
                del host[name]
            else:
                host[name] = trimmed
    kept = {}
    for uuid, entry in archive.get("domains", {}).items():
        cpu = series_trim(entry["cpu"], now, days)
        if cpu is not None:
            kept[uuid] = dict(entry, cpu=cpu)
    newest = sorted(kept, key=lambda uuid: (series_end(kept[uuid]["cpu"]), uuid))[-MAX_ARCHIVE_DOMAINS:]
    result = {"step": ARCHIVE_STEP, "domains": {uuid: kept[uuid] for uuid in sorted(newest)}}
    if host:
        result["host"] = host
    return result


def load_state(path):
    """(State, warning or None). A missing file is a fresh state; a bad one is a warning, never an error.

    A corrupt or unreadable file gives an empty state that the next save replaces. A file written
    by a newer release gives an empty state with ``newer_version`` set, which save_state refuses to
    write, so the file stays as that release left it.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return State(), None
    except (OSError, UnicodeDecodeError) as err:
        return State(), f"state file {path} is unreadable ({err}); starting with an empty state"
    try:
        return parse_state(text), None
    except _NewerVersion as err:
        return State(newer_version=err.version), (
            f"state file {path} was written by a newer release of xen.drs ({err}); it is left unchanged "
            "and this run starts with an empty state and records nothing in it")
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        return State(), f"state file {path} is corrupt ({err}); starting with an empty state"


def _recent(series, now, history_seconds):
    return [s for s in series if s[0] >= now - history_seconds][-MAX_SAMPLES:]


FUTURE_TOLERANCE_SECONDS = 5


def drop_future(state, now):
    """(state without the samples later than ``now``, how many were dropped, how many records are later).

    A host whose clock went back (set by hand, or a bad NTP step) finds samples from its future in its
    state file: judged as the newest, they would hide the present. They are dropped; migration records
    are kept (the caller counts a later record's time as ``now``, so the cooldown still holds)."""
    limit = now + FUTURE_TOLERANCE_SECONDS
    samples = [s for s in state.samples if s[0] <= limit]
    domains = {uuid: [s for s in series if s[0] <= limit] for uuid, series in state.domains.items()}
    dropped = (len(state.samples) - len(samples)
               + sum(len(series) for series in state.domains.values()) - sum(len(s) for s in domains.values()))
    later_records = sum(1 for r in state.migrations if r["time"] > limit)
    return replace(state, samples=samples, domains={u: s for u, s in domains.items() if s}), dropped, later_records


def prune(state, now, history_seconds, keep_domains=None):
    """Drop samples older than the history window and keep every list within its bounds.

    Host and domain samples are bounded alike (the window, then the last MAX_SAMPLES). With
    ``keep_domains`` (uuids), the history of any other domain is dropped; a domain left with no
    sample in the window is dropped too.
    """
    domains = {}
    for uuid, series in state.domains.items():
        if keep_domains is None or uuid in keep_domains:
            recent = _recent(series, now, history_seconds)
            if recent:
                domains[uuid] = recent
    return replace(state, samples=_recent(state.samples, now, history_seconds),
                   migrations=state.migrations[-MAX_MIGRATIONS:], domains=domains)


def save_state(path, state):
    """Write ``state`` atomically: a temporary file in the same directory, fsync, rename.

    The directory is created with mode 0700. Raises OSError if the file cannot be written, and
    NewerStateFileError (an OSError) for a state read from a newer release's file.
    """
    if state.newer_version is not None:
        raise NewerStateFileError(
            f"state file {path} was written by a newer release of xen.drs (version {state.newer_version}, "
            f"this one writes {VERSION}); left unchanged")
    payload = {"version": VERSION, "samples": state.samples, "domains": state.domains,
               "migrations": state.migrations, "archive": state.archive, "failures": state.failures}
    write_atomically(path, lambda handle: json.dump(payload, handle, separators=(",", ":")), prefix=".state-")


def file_mode(text, field="mode"):
    """Octal permissions such as "0644" as an int; ValueError naming ``field`` and the value otherwise."""
    try:
        mode = int(text, 8)
    except (TypeError, ValueError):
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{field} must be octal permissions such as 0644, got {text!r}")
    return mode


def write_atomically(path, write, prefix=".xen-drs-", mode=None):
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it and rename it to ``path``.

    Readers see the old file or the new one, never a part. The temporary file's name starts with
    ``prefix`` and ends with ``.tmp`` (so a reader globbing ``*.prom`` or ``*.json`` skips it), and is
    removed if anything fails. A missing directory (and any missing parent) is created with mode 0700.
    ``mode`` (e.g. 0o644) is the file's mode, else mkstemp's 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    make_directories(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # only left behind when something above failed
            os.unlink(tmp)


def same_record(a, b):
    return all(a.get(k) == b.get(k) for k in RECORD_FIELDS)


def add_migration(state, record):
    """State with ``record`` appended, and whether it was new (records are idempotent)."""
    if any(same_record(r, record) for r in state.migrations):
        return state, False
    migrations = state.migrations + [{k: record[k] for k in RECORD_FIELDS}]
    return replace(state, migrations=migrations[-MAX_MIGRATIONS:]), True


MAX_FAILURES = 50
# A failure's kind (the state file's values; _libvirt.failure_kind chooses one, the plans read it)
PERMANENT, TRANSIENT = "permanent", "transient"
FAILURE_KINDS = (PERMANENT, TRANSIENT)


def add_failure(state, record, error, kind):
    """State with the failed migration ``record``, its ``error`` and ``kind`` (permanent or transient) appended
    (the last MAX_FAILURES kept).

    The failure also gets ``count``, the failures of this domain from this host in a row, this one included
    (1 + the count of its previous failure here, unless a migration of the domain is recorded since that
    one; a failure recorded without a count counts 1), and ``previous``, the time of the one before it in
    that row (absent when it is the first)."""
    failure = dict({k: record[k] for k in RECORD_FIELDS}, error=str(error), kind=kind, count=1)
    earlier = [f for f in state.failures if f["uuid"] == record["uuid"] and f["time"] <= record["time"]]
    if earlier:
        last = max(earlier, key=lambda f: f["time"])
        moved_since = any(m["uuid"] == record["uuid"] and m["time"] > last["time"] for m in state.migrations)
        if not moved_since:
            failure.update(count=last.get("count", 1) + 1, previous=last["time"])
    return replace(state, failures=(state.failures + [failure])[-MAX_FAILURES:])


def last_migrations(migrations):
    """uuid -> its most recent migration record."""
    latest = {}
    for record in sorted(migrations, key=lambda r: r["time"]):
        latest[record["uuid"]] = record
    return latest
