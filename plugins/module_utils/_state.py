# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-hypervisor state file of xen.drs.

It lives on the hypervisor because AWX runs every job in a throw-away container: the host's
recent load samples, its domains' CPU samples and the migrations that touched it must survive the
control node.

Format (JSON), version 2::

    {"version": 2,
     "samples": [[epoch, load, memory_load], ...],
     "domains": {"<domain uuid>": [[epoch, cores], ...], ...},
     "migrations": [{"time", "vm", "uuid", "source", "destination"}, ...]}

every list oldest first. A host sample may also be an ``[epoch, load]`` pair (samples written by
version 1, or taken when the host's memory was unknown). Version 1 (``samples`` as pairs, no
``domains``) is read as it is and written back as version 2. A file of a newer version is never
overwritten: it reads as an empty state marked ``newer_version``, and save_state refuses it.
The file is bounded (see MAX_SAMPLES / MAX_MIGRATIONS) and replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace

VERSION = 2
MAX_SAMPLES = 1000  # per series: the host's, and each domain's
MAX_MIGRATIONS = 200
RECORD_FIELDS = ("time", "vm", "uuid", "source", "destination")


@dataclass
class State:
    samples: list = field(default_factory=list)
    migrations: list = field(default_factory=list)
    domains: dict = field(default_factory=dict)  # domain uuid -> [[epoch, cores], ...]
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


def _check_samples(samples, shapes, what):
    if not isinstance(samples, list) or not all(_valid_sample(s, shapes) for s in samples):
        raise ValueError(f"{what} is not a list of {' or '.join(shapes.values())} entries")


def parse_state(text):
    """State from the file's text (version 1 or 2); raises ValueError saying what is wrong.

    A newer version raises _NewerVersion (a ValueError) carrying it.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version is {version!r}, expected 1 or {VERSION}")
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
    return State(samples=samples, migrations=migrations, domains=domains)


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
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    payload = {"version": VERSION, "samples": state.samples, "domains": state.domains,
               "migrations": state.migrations}
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
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


def last_migrations(migrations):
    """uuid -> its most recent migration record."""
    latest = {}
    for record in sorted(migrations, key=lambda r: r["time"]):
        latest[record["uuid"]] = record
    return latest
