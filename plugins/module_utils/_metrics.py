# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's JSON report as Prometheus metrics in the text exposition format (node_exporter's textfile).

``metrics_text(report)`` returns the text; every metric is a gauge and carries the label
``mode`` (rebalance, evacuate or shadow). The report is the one playbooks/tasks/report.yml writes
(report_data.j2); a field it lacks, or a value of the wrong kind, is a ValueError naming the field
and the value.
"""

from __future__ import annotations

import calendar
import math
import time

# name -> help text; the order of the file
HELP = {
    "xen_drs_run_timestamp_seconds": "When the run finished, in seconds since the epoch.",
    "xen_drs_run_duration_seconds": "Wall time of the run, from its start to its report.",
    "xen_drs_run_gather_seconds": "Time spent measuring the hypervisors (the sampling window included).",
    "xen_drs_run_shadow": "1 if the run was a shadow run (planned, migrated nothing), else 0.",
    "xen_drs_run_aborted": "1 if planning failed (nothing was migrated), else 0.",
    "xen_drs_hosts_measured": "Hypervisors measured and planned for.",
    "xen_drs_hosts_left_out": "Hypervisors left out of the run (unreachable or not measured).",
    "xen_drs_host_left_out": "1 for each hypervisor left out of the run.",
    "xen_drs_hosts_overloaded": "Hypervisors judged overloaded (over load_threshold for max_over).",
    "xen_drs_host_load": "Load of a hypervisor when measured (its running domains' CPU use over its CPUs for guests).",
    "xen_drs_host_load_after": "Load of a hypervisor after the migrations done (the plan's prediction in a shadow run).",
    "xen_drs_host_overloaded": "1 if the hypervisor was judged overloaded, else 0.",
    "xen_drs_load_threshold": "The policy's load_threshold.",
    "xen_drs_imbalance": "Standard deviation of the measured hosts' loads.",
    "xen_drs_imbalance_after": "Standard deviation of the hosts' loads after the migrations done (planned in a shadow run).",
    "xen_drs_migrations_planned": "Migrations in the plan.",
    "xen_drs_migrations_done": "Migrations done (the domain moved in this run).",
    "xen_drs_migrations_failed": "Migrations that failed, were unreachable or were not run.",
}
DONE, FAILED = ("migrated",), ("failed", "unreachable", "not run")


def _field(data, name, kind, where="report"):
    value = data.get(name) if isinstance(data, dict) else None
    ok = {"number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          "list": lambda v: isinstance(v, list), "dict": lambda v: isinstance(v, dict),
          "str": lambda v: isinstance(v, str) and v != ""}[kind](value)
    if not ok:
        raise ValueError(f"{where}.{name}: expected a {kind}, got {value!r}")
    return value


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, bool):
        value = int(value)
    if float(value).is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(float(value))


def spread(values):
    """Population standard deviation (0 for fewer than two values)."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _epoch(text, where):
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a time like 2026-01-01T00:00:00Z, got {text!r}") from None


def samples(report):
    """[(metric name, {label: value}, value)] for ``report``, in the file's order."""
    if not isinstance(report, dict):
        raise ValueError(f"report: expected a mapping (the run's JSON report), got {report!r}")
    mode = _field(report, "mode", "str")
    figures = _field(report, "figures", "dict")
    hosts = _field(report, "hosts", "list")
    after = _field(report, "load_after", "dict")
    left_out = _field(report, "left_out", "list")
    outcomes = _field(report, "outcomes", "list")
    policy = report.get("policy") or {}
    loads = {}
    for index, host in enumerate(hosts):
        where = f"report.hosts[{index}]"
        loads[_field(host, "name", "str", where)] = _field(host, "load", "number", where)
    for name, load in after.items():
        if not isinstance(load, (int, float)) or isinstance(load, bool):
            raise ValueError(f"report.load_after.{name}: expected a number, got {load!r}")
    statuses = [_field(o, "status", "str", f"report.outcomes[{i}]") for i, o in enumerate(outcomes)]
    base = {"mode": mode}
    out = [
        ("xen_drs_run_timestamp_seconds", base, _epoch(report.get("finished"), "report.finished")),
        ("xen_drs_run_duration_seconds", base, _field(figures, "wall_seconds", "number", "report.figures")),
        ("xen_drs_run_gather_seconds", base, _field(figures, "gather_seconds", "number", "report.figures")),
        ("xen_drs_run_shadow", base, int(bool(report.get("shadow")))),
        ("xen_drs_run_aborted", base, int(bool(report.get("aborted")))),
        ("xen_drs_hosts_measured", base, len(hosts)),
        ("xen_drs_hosts_left_out", base, len(left_out)),
    ]
    for index, entry in enumerate(left_out):
        out.append(("xen_drs_host_left_out", dict(base, host=_field(entry, "host", "str", f"report.left_out[{index}]")), 1))
    out.append(("xen_drs_hosts_overloaded", base, sum(1 for h in hosts if h.get("overloaded"))))
    for host in hosts:
        out.append(("xen_drs_host_load", dict(base, host=host["name"]), host["load"]))
    for name in sorted(after):
        out.append(("xen_drs_host_load_after", dict(base, host=name), after[name]))
    for host in hosts:
        out.append(("xen_drs_host_overloaded", dict(base, host=host["name"]), int(bool(host.get("overloaded")))))
    if isinstance(policy.get("load_threshold"), (int, float)):
        out.append(("xen_drs_load_threshold", base, policy["load_threshold"]))
    out += [
        ("xen_drs_imbalance", base, round(spread(loads.values()), 6)),
        ("xen_drs_imbalance_after", base, round(spread(after.values()), 6)),
        ("xen_drs_migrations_planned", base, len(_field(report, "migrations", "list"))),
        ("xen_drs_migrations_done", base, sum(1 for s in statuses if s in DONE)),
        ("xen_drs_migrations_failed", base, sum(1 for s in statuses if s in FAILED)),
    ]
    return out


def metrics_text(report):
    """The text exposition format: a HELP and TYPE line before each metric's samples."""
    lines, seen = [], set()
    for name, labels, value in samples(report):
        if name not in seen:
            seen.add(name)
            lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
        rendered = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{rendered}}} {_number(value)}")
    return "\n".join(lines) + "\n"
