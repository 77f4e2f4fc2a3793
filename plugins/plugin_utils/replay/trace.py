# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a CSV of per-VM CPU demand: the layout of the PlanetLab days (one row per VM).

Columns, by header name (the first line is the header):

  vm          required, first: the VM's name, unique in the file
  t0, t1, ... required, at least one, in this order: the VM's CPU demand at each step, in percent
              of one CPU (a number >= 0; 150 is one and a half cores)
  memory_mb   optional, anywhere after vm: the VM's memory in MiB (a number > 0)
  host        optional, anywhere after vm: the host the VM runs on at the first step (non-empty)

Every row has one field per column. Blank lines are skipped. Anything else is a TraceError (a
ValueError) naming the file, the line, the field and the value: an empty file, a header without
rows, an unknown or repeated column, a ragged row, a value that is not a finite number, a negative
demand, a duplicate VM name.

parse_trace() does the work on any iterable of lines; read_trace() opens a file and calls it.
"""

import csv
import math
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

VM_COLUMN = "vm"
MEMORY_COLUMN = "memory_mb"
HOST_COLUMN = "host"
STEP_PREFIX = "t"
_NOTHING = object()


class TraceError(ValueError):
    """Malformed trace input. ``source``, ``line`` (1 is the header) and ``field`` say where."""

    def __init__(self, source, line, field, problem, value=_NOTHING):
        self.source, self.line, self.field = source, line, field
        self.value = None if value is _NOTHING else value
        got = "" if value is _NOTHING else f", got {value!r}"
        super().__init__(f"{source}, line {line}, field {field}: {problem}{got}")


@dataclass(frozen=True)
class TraceVm:
    """One row: a VM's name, its demand per step (percent of one CPU) and the optional columns."""

    name: str
    line: int
    percent: Tuple[float, ...]
    memory_mb: Optional[float] = None
    host: Optional[str] = None


@dataclass(frozen=True)
class Trace:
    """A whole file: its VMs in row order, and which optional columns it had."""

    source: str
    vms: Tuple[TraceVm, ...]
    steps: int
    has_memory: bool = False
    has_host: bool = False

    @property
    def name(self):
        """The file name without directory and extension (a PlanetLab day: ``20110303``)."""
        return os.path.splitext(os.path.basename(self.source))[0]


@dataclass(frozen=True)
class _Columns:
    steps: int
    memory: Optional[int]  # index of the memory_mb column, if any
    host: Optional[int]
    names: Tuple[str, ...]


def read_trace(path):
    """Read the CSV file at ``path`` (UTF-8, an optional byte-order mark is ignored)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return parse_trace(handle, source=str(path))


def parse_trace(lines: Iterable[str], source="<trace>"):
    """Parse CSV ``lines``; ``source`` names the input in errors."""
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise TraceError(source, 1, "header", f"empty file: expected a header '{VM_COLUMN},t0,t1,...'")
    columns = _parse_header(source, [cell.strip() for cell in header])
    vms, first_line = [], {}
    for row in rows:
        line = rows.line_num
        if not row:
            continue
        vm = _parse_row(source, line, row, columns)
        if vm.name in first_line:
            raise TraceError(source, line, VM_COLUMN, f"duplicate VM name (first on line {first_line[vm.name]})",
                             vm.name)
        first_line[vm.name] = line
        vms.append(vm)
    if not vms:
        raise TraceError(source, 2, VM_COLUMN, "no VM rows after the header")
    return Trace(source, tuple(vms), columns.steps, columns.memory is not None, columns.host is not None)


def _parse_header(source, names):
    if names[0] != VM_COLUMN:
        raise TraceError(source, 1, "column 1", f"the first column must be '{VM_COLUMN}'", names[0])
    steps, optional = 0, {}
    for index, name in enumerate(names[1:], start=1):
        if name in (MEMORY_COLUMN, HOST_COLUMN):
            if name in optional:
                raise TraceError(source, 1, f"column {index + 1}", "repeated column", name)
            optional[name] = index
        elif name == f"{STEP_PREFIX}{steps}":
            steps += 1
        else:
            raise TraceError(source, 1, f"column {index + 1}",
                             f"unknown column (expected {MEMORY_COLUMN}, {HOST_COLUMN} or {STEP_PREFIX}{steps})",
                             name)
    if not steps:
        raise TraceError(source, 1, "header", f"no demand columns ({STEP_PREFIX}0, {STEP_PREFIX}1, ...)",
                         ",".join(names))
    return _Columns(steps, optional.get(MEMORY_COLUMN), optional.get(HOST_COLUMN), tuple(names))


def _parse_row(source, line, row, columns):
    if len(row) != len(columns.names):
        field = columns.names[len(row)] if len(row) < len(columns.names) else f"column {len(columns.names) + 1}"
        raise TraceError(source, line, field,
                         f"ragged row: {len(row)} fields, the header has {len(columns.names)}")
    name = row[0].strip()
    if not name:
        raise TraceError(source, line, VM_COLUMN, "a VM name is required", row[0])
    percent = []
    for index, cell in enumerate(row[1:], start=1):
        if index in (columns.memory, columns.host):
            continue
        value = _number(source, line, columns.names[index], cell)
        if value < 0:
            raise TraceError(source, line, columns.names[index], "negative demand", cell)
        percent.append(value)
    memory = host = None
    if columns.memory is not None:
        memory = _number(source, line, MEMORY_COLUMN, row[columns.memory])
        if memory <= 0:
            raise TraceError(source, line, MEMORY_COLUMN, "memory must be > 0 MiB", row[columns.memory])
    if columns.host is not None:
        host = row[columns.host].strip()
        if not host:
            raise TraceError(source, line, HOST_COLUMN, "a host name is required", row[columns.host])
    return TraceVm(name, line, tuple(percent), memory, host)


def _number(source, line, field, cell):
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(source, line, field, "not a number", cell) from None
    if not math.isfinite(value):
        raise TraceError(source, line, field, "not a finite number", cell)
    return value
