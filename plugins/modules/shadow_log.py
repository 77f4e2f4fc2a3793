#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: shadow_log
short_description: Append what a shadow run would have done to a bounded log on a hypervisor
version_added: 0.1.0
description:
  - A shadow run (C(playbooks/shadow.yml), or C(xen_drs_shadow=true) on the rebalance playbook) measures and
    records samples like a real run and plans, but migrates nothing. This module appends its plan to a log
    kept on the machine it runs on, beside the state file, so it survives throw-away control nodes such as
    AWX job containers. The playbooks write it on every hypervisor of the run, so the log survives a host too.
  - One entry per run, made from the run's JSON report. C(time) (the run's start, epoch seconds), C(run_id),
    C(mode), C(load_threshold), C(hosts) (each host's load when measured), C(load_after) (each host's load
    the plan predicts), C(moves) (each planned migration's C(vm), C(source), C(destination) and C(reason)),
    C(skipped) (how many domains the plan had to leave where they are) and C(left_out) (hosts not measured).
  - Idempotent. An entry whose C(run_id) is already in the log is not added again.
  - The log keeps the last O(max_entries) entries, oldest first, and is replaced atomically. An entry takes
    about 180 bytes, plus about 25 per host and 120 per move. The default of 2016 entries is a week of runs
    every 5 minutes, about 0.6 MB for 5 hosts with a move every tenth run, about 1.6 MB for 20 hosts and a
    move in every run.
  - A corrupt or unreadable log produces a warning and is started afresh.
  - C(playbooks/export_history.yml) collects the logs of every hypervisor into its export, and
    C(playbooks/whatif.yml) shows them beside a replay (C(xen_drs_whatif_shadow_log)).
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports whether the entry would be added; writes nothing.
  diff_mode:
    support: none
options:
  report:
    description:
      - The shadow run's JSON report, as C(playbooks/tasks/report.yml) builds it (C(xen_drs_report)). It needs
        C(run_id), C(mode), C(started), C(hosts) (each with C(name) and C(load)), C(load_after), C(migrations)
        (each with C(vm), C(source), C(destination) and C(reason)), C(skipped) and C(left_out).
    type: dict
    required: true
  path:
    description: Path of the log on the host the module runs on. Its directory is created with mode 0700.
    type: path
    default: /var/lib/xen-drs/shadow.json
  max_entries:
    description: Entries kept, the newest; at least 1.
    type: int
    default: 2016
seealso:
  - module: xen.drs.hypervisor_info
  - module: xen.drs.metrics_file
"""

EXAMPLES = r"""
- name: Keep what this shadow run would have done
  xen.drs.shadow_log:
    report: "{{ hostvars['localhost']['xen_drs_report'] }}"
"""

RETURN = r"""
entry:
  description: The entry made from the report.
  returned: success
  type: dict
  sample:
    time: 1764000000.0
    run_id: 20251124T160000Z-abc123
    mode: shadow
    load_threshold: 0.75
    hosts: {hv1: 0.91, hv2: 0.2}
    load_after: {hv1: 0.66, hv2: 0.45}
    moves: [{vm: web1, source: hv1, destination: hv2, reason: "hv1 overloaded for 10 min (0.91 > 0.75)"}]
    skipped: 0
    left_out: []
entries:
  description: Entries in the log after this run.
  returned: success
  type: int
  sample: 288
size_bytes:
  description: Size of the log on disk (0 in check mode when there is none yet).
  returned: success
  type: int
  sample: 61440
"""

import calendar
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.drs.plugins.module_utils._state import write_atomically

VERSION = 1
MOVE_FIELDS = ("vm", "source", "destination", "reason")


def _get(data, name, kinds, where):
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kinds) or isinstance(value, bool) or value == "":
        raise ValueError(f"{where}.{name}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def make_entry(report):
    """The log entry of a run's report; ValueError naming the field and the value."""
    if not isinstance(report, dict):
        raise ValueError(f"report: expected the run's JSON report (a mapping), got {report!r}")
    started = _get(report, "started", (str,), "report")
    try:
        epoch = float(calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        raise ValueError(f"report.started: expected a time like 2026-01-01T00:00:00Z, got {started!r}") from None
    hosts = {}
    for index, host in enumerate(_get(report, "hosts", (list,), "report")):
        where = f"report.hosts[{index}]"
        hosts[_get(host, "name", (str,), where)] = _get(host, "load", (int, float), where)
    after = _get(report, "load_after", (dict,), "report")
    for name, load in after.items():
        if not isinstance(load, (int, float)) or isinstance(load, bool):
            raise ValueError(f"report.load_after.{name}: expected a number, got {load!r}")
    moves = []
    for index, move in enumerate(_get(report, "migrations", (list,), "report")):
        moves.append({k: _get(move, k, (str,), f"report.migrations[{index}]") for k in MOVE_FIELDS})
    left_out = [_get(e, "host", (str,), f"report.left_out[{i}]")
                for i, e in enumerate(_get(report, "left_out", (list,), "report"))]
    policy = report.get("policy") or {}
    return {"time": epoch, "run_id": _get(report, "run_id", (str,), "report"), "mode": _get(report, "mode", (str,), "report"),
            "load_threshold": policy.get("load_threshold"), "hosts": hosts, "load_after": dict(after), "moves": moves,
            "skipped": len(report.get("skipped") or []), "left_out": left_out}


def load_log(path):
    """(entries, warning or None); a missing file is an empty log, a bad one a warning."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return [], f"shadow log {path} is unreadable or corrupt ({err}); starting it afresh"
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), list) \
            or not all(isinstance(e, dict) and isinstance(e.get("run_id"), str) for e in data["entries"]):
        return [], f"shadow log {path} is not a version {VERSION} log of entries with a run_id; starting it afresh"
    return data["entries"], None


def append(entries, entry, max_entries):
    """(entries with ``entry`` appended and the oldest dropped beyond ``max_entries``, whether it was new)."""
    if any(e["run_id"] == entry["run_id"] for e in entries):
        return entries, False
    return (entries + [entry])[-max_entries:], True


def record_shadow(module):
    params = module.params
    if params["max_entries"] < 1:
        raise ValueError(f"max_entries must be at least 1, got {params['max_entries']}")
    entry = make_entry(params["report"])
    entries, warning = load_log(params["path"])
    if warning:
        module.warn(warning)
    entries, added = append(entries, entry, params["max_entries"])
    if added and not module.check_mode:
        payload = {"version": VERSION, "entries": entries}
        write_atomically(params["path"], lambda handle: json.dump(payload, handle, separators=(",", ":")),
                         prefix=".shadow-")
    size = os.path.getsize(params["path"]) if os.path.exists(params["path"]) else 0
    return dict(changed=added, entry=entry, entries=len(entries), size_bytes=size)


def get_argument_spec():
    return dict(
        report=dict(type="dict", required=True),
        path=dict(type="path", default="/var/lib/xen-drs/shadow.json"),
        max_entries=dict(type="int", default=2016),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    try:
        result = record_shadow(module)
    except ValueError as err:
        module.fail_json(msg=f"shadow_log: {err}")
    except OSError as err:
        module.fail_json(msg=f"shadow_log: cannot write {module.params['path']}: {err}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
