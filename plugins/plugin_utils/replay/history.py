# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the history that playbooks/export_history.yml collects from a pool, as a trace and its hosts.

The export (``"format": "xen.drs.history"``, version 1) holds, per host, its CPUs for guests, its
memory and its load as an archive series, and per domain its name, memory, vCPUs and, per host that
measured it, its cores as an archive series. A series is ``{"start", "n", "v"}``: ``v[i]`` the mean
of the bucket starting at ``start + i * step_seconds`` (null: no sample). See module_utils/_state.py.

read_history(path) / parse_history(document, source) -> History: a trace.Trace (one row per domain,
its demand at each step from the earliest bucket of any domain to the latest, 0 where no host
measured it; its host where it was first measured; its memory), the hosts' real sizes (HostSpec,
for presets.placed_scenario), the first step's epoch time, and the shadow log entries of the export.
Anything malformed is a HistoryError (a ValueError) naming the file, the field and the value.
"""

import json
import math
from dataclasses import dataclass
from typing import Mapping, Tuple

from .scenario import STEP_SECONDS, HostSpec
from .trace import Trace, TraceVm

FORMAT = "xen.drs.history"
VERSION = 1


class HistoryError(ValueError):
    """A malformed export: ``source`` and ``field`` say where."""

    def __init__(self, source, field, problem, value):
        self.source, self.field = source, field
        super().__init__(f"{source}, field {field}: {problem}, got {value!r}")


@dataclass(frozen=True)
class History:
    trace: Trace
    hosts: Mapping[str, HostSpec]
    start: float
    shadow: Tuple[dict, ...]


def looks_like_export(text):
    """Whether ``text`` (a file's start) is JSON rather than a CSV trace."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def read_history(path):
    with open(path, encoding="utf-8-sig") as handle:
        text = handle.read()
    try:
        document = json.loads(text)
    except ValueError as error:
        raise HistoryError(str(path), "(document)", f"not JSON ({error})", text[:40]) from None
    return parse_history(document, source=str(path))


def _num(source, field, value, minimum=0.0, strict=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value > minimum if strict else value >= minimum)
    if not ok:
        raise HistoryError(source, field, f"must be a number {'>' if strict else '>='} {minimum:g}", value)
    return float(value)


def _series(source, field, series, step):
    if not isinstance(series, dict) or not isinstance(series.get("v"), list):
        raise HistoryError(source, field, "must be a series {start, n, v}", series)
    start = _num(source, f"{field}.start", series.get("start"))
    values = series["v"]
    for index, value in enumerate(values):
        if value is not None:
            _num(source, f"{field}.v[{index}]", value)
    return int(start), values, step


def parse_history(document, source="<export>"):
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise HistoryError(source, "format", f"not a {FORMAT} export", document.get("format")
                           if isinstance(document, dict) else document)
    if document.get("version") != VERSION:
        raise HistoryError(source, "version", f"expected {VERSION}", document.get("version"))
    step = document.get("step_seconds")
    if step != STEP_SECONDS:
        raise HistoryError(source, "step_seconds", f"expected {STEP_SECONDS}", step)
    hosts = {}
    for index, host in enumerate(document.get("hosts") or []):
        where = f"hosts[{index}]"
        name = host.get("name") if isinstance(host, dict) else None
        if not isinstance(name, str) or not name:
            raise HistoryError(source, f"{where}.name", "must be a host name", name)
        if host.get("cpus") is None:  # no archive on that host yet: it held no domain in the history
            continue
        hosts[name] = HostSpec(name, _num(source, f"{where}.cpus", host["cpus"], strict=True),
                               _num(source, f"{where}.memory_mb", host.get("memory_mb"), strict=True))
    rows = []
    for index, domain in enumerate(document.get("domains") or []):
        where = f"domains[{index}]"
        if not isinstance(domain, dict):
            raise HistoryError(source, where, "must be an object", domain)
        name = domain.get("name")
        if not isinstance(name, str) or not name:
            raise HistoryError(source, f"{where}.name", "must be a domain name", name)
        memory = _num(source, f"{where}.memory_mb", domain.get("memory_mb"), strict=True)
        history = domain.get("history")
        if not isinstance(history, dict):
            raise HistoryError(source, f"{where}.history", "must be an object host -> series", history)
        per_host = []
        for host, series in sorted(history.items()):
            if host not in hosts:
                raise HistoryError(source, f"{where}.history", "names a host without size in 'hosts'", host)
            per_host.append((host, _series(source, f"{where}.history.{host}", series, step)))
        rows.append((name, domain.get("uuid") or name, memory, per_host))
    starts = [start for _n, _u, _m, per_host in rows for _h, (start, values, _s) in per_host if values]
    if not starts:
        raise HistoryError(source, "domains", "no domain has any archived sample", len(rows))
    first = min(starts)
    last = max(start + (len(values) - 1) * step for _n, _u, _m, ph in rows for _h, (start, values, _s) in ph)
    steps = (last - first) // step + 1
    names = [name for name, *_rest in rows]
    vms = []
    for name, uuid, memory, per_host in rows:
        cores, where_first = [None] * steps, None
        for host, (start, values, _step) in per_host:
            offset = (start - first) // step
            for index, value in enumerate(values):
                at = offset + index
                if value is not None and (cores[at] is None or value > cores[at]):
                    cores[at] = value
                    if where_first is None or at < where_first[0]:
                        where_first = (at, host)
        if where_first is None:
            continue
        unique = name if names.count(name) == 1 else f"{name}-{uuid}"
        vms.append(TraceVm(unique, 0, tuple(100.0 * (c or 0.0) for c in cores), memory, where_first[1]))
    shadow = document.get("shadow") or []
    if not isinstance(shadow, list) or not all(isinstance(e, dict) for e in shadow):
        raise HistoryError(source, "shadow", "must be a list of shadow log entries", shadow)
    trace = Trace(source, tuple(vms), steps, has_memory=True, has_host=True)
    return History(trace, hosts, float(first), tuple(shadow))


def read_shadow_log(path):
    """The entries of a shadow log: an export's ``shadow`` list or a xen.drs.shadow_log file."""
    with open(path, encoding="utf-8-sig") as handle:
        try:
            document = json.load(handle)
        except ValueError as error:
            raise HistoryError(str(path), "(document)", f"not JSON ({error})", None) from None
    if isinstance(document, dict) and document.get("format") == FORMAT:
        entries = document.get("shadow")
    elif isinstance(document, dict) and "entries" in document:
        entries = document.get("entries")
    else:
        raise HistoryError(str(path), "(document)", f"neither a {FORMAT} export nor a shadow log",
                           type(document).__name__)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("time"), (int, float))
                                                and isinstance(e.get("moves", []), list) for e in entries):
        raise HistoryError(str(path), "entries", "must be a list of entries with a time and moves", entries)
    return sorted(entries, key=lambda e: e["time"])
