# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-hypervisor state file of xen.drs.

It lives on the hypervisor because AWX runs every job in a throw-away container: the host's
recent load samples and the migrations that touched it must survive the control node.

Format (JSON): ``{"version": 1, "samples": [[epoch, load], ...], "migrations": [record, ...]}``
with records ``{"time", "vm", "uuid", "source", "destination"}``, oldest first.
The file is bounded (see MAX_SAMPLES / MAX_MIGRATIONS) and replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

VERSION = 1
MAX_SAMPLES = 1000
MAX_MIGRATIONS = 200
RECORD_FIELDS = ("time", "vm", "uuid", "source", "destination")


@dataclass
class State:
    samples: list = field(default_factory=list)
    migrations: list = field(default_factory=list)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_sample(sample):
    return isinstance(sample, list) and len(sample) == 2 and all(_number(v) for v in sample)


def _valid_record(record):
    return (isinstance(record, dict) and all(k in record for k in RECORD_FIELDS)
            and _number(record["time"])
            and all(isinstance(record[k], str) for k in RECORD_FIELDS[1:]))


def parse_state(text):
    """State from the file's text; raises ValueError saying what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    if data.get("version") != VERSION:
        raise ValueError(f"version is {data.get('version')!r}, expected {VERSION}")
    samples, migrations = data.get("samples", []), data.get("migrations", [])
    if not isinstance(samples, list) or not all(_valid_sample(s) for s in samples):
        raise ValueError("'samples' is not a list of [time, load] pairs")
    if not isinstance(migrations, list) or not all(_valid_record(r) for r in migrations):
        raise ValueError(f"'migrations' is not a list of records with {', '.join(RECORD_FIELDS)}")
    return State(samples=samples, migrations=migrations)


def load_state(path):
    """(State, warning or None). A missing file is a fresh state; a bad one is a warning, never an error."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return State(), None
    except (OSError, UnicodeDecodeError) as err:
        return State(), f"state file {path} is unreadable ({err}); starting with an empty state"
    try:
        return parse_state(text), None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        return State(), f"state file {path} is corrupt ({err}); starting with an empty state"


def prune(state, now, history_seconds):
    """Drop samples older than the history window and keep both lists within their bounds."""
    samples = [s for s in state.samples if s[0] >= now - history_seconds]
    return State(samples=samples[-MAX_SAMPLES:], migrations=state.migrations[-MAX_MIGRATIONS:])


def save_state(path, state):
    """Write ``state`` atomically: a temporary file in the same directory, fsync, rename.

    The directory is created with mode 0700. Raises OSError if the file cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    payload = {"version": VERSION, "samples": state.samples, "migrations": state.migrations}
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
    return State(samples=state.samples, migrations=migrations[-MAX_MIGRATIONS:]), True


def last_migrations(migrations):
    """uuid -> its most recent migration record."""
    latest = {}
    for record in sorted(migrations, key=lambda r: r["time"]):
        latest[record["uuid"]] = record
    return latest
