# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One export of a pool's history from each hypervisor's state file and shadow log (docs: history_export.yml)."""

from __future__ import annotations

import base64
import json

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.module_utils._state import ARCHIVE_STEP, parse_state

FORMAT = "xen.drs.history"
VERSION = 1
SHADOW_VERSION = 1  # the shadow log's layout (modules/shadow_log.py)


def _text(entry, key, where):
    content = entry.get(key)
    if content is None:
        return None
    try:
        return base64.b64decode(content).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as error:
        raise AnsibleFilterError(f"history_export: {where}.{key}: not base64 UTF-8 text ({error})") from error


def history_export(hosts, exported=None):
    """The export document of ``hosts``: [{host, state, shadow, problem}] with the files base64 encoded."""
    if not isinstance(hosts, list):
        raise AnsibleFilterError(f"history_export: expected a list of hosts, got {type(hosts).__name__}")
    out_hosts, domains, migrations, shadow, problems = [], {}, {}, {}, []
    for index, entry in enumerate(hosts):
        where = f"hosts[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("host"), str) or not entry["host"]:
            raise AnsibleFilterError(f"history_export: {where}.host: expected a host name, got {entry!r}")
        name = entry["host"]
        host = {"name": name, "cpus": None, "memory_mb": None, "load": None, "memory_load": None, "samples": []}
        out_hosts.append(host)
        if entry.get("problem"):
            problems.append({"host": name, "problem": entry["problem"]})
        text = _text(entry, "state", where)
        if text is not None:
            try:
                state = parse_state(text)
            except ValueError as error:  # a newer release's file, or a corrupt one: named, not fatal
                problems.append({"host": name, "problem": f"state file not read: {error}"})
                state = None
            if state is not None:
                archive_host = state.archive.get("host") or {}
                host.update({k: archive_host.get(k) for k in ("cpus", "memory_mb", "load", "memory_load")},
                            samples=state.samples)
                for record in state.migrations:
                    migrations[tuple(record[k] for k in ("time", "uuid", "source", "destination"))] = record
                for uuid, archived in state.archive.get("domains", {}).items():
                    domain = domains.setdefault(uuid, {"uuid": uuid, "history": {}})
                    newest = max((s["start"] + len(s["v"]) for s in domain["history"].values()), default=None)
                    mine = archived["cpu"]["start"] + len(archived["cpu"]["v"])
                    if newest is None or mine >= newest:  # name, memory and vCPUs as last seen
                        domain.update(name=archived["name"], memory_mb=archived["memory_mb"], vcpus=archived["vcpus"])
                    domain["history"][name] = archived["cpu"]
        text = _text(entry, "shadow", where)
        if text is not None:
            try:
                log = json.loads(text)
                if not isinstance(log, dict) or log.get("version") != SHADOW_VERSION:
                    raise ValueError(f"not a version {SHADOW_VERSION} shadow log")
                for item in log.get("entries", []):
                    shadow[item["run_id"]] = item
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                problems.append({"host": name, "problem": f"shadow log not read: {error}"})
    return {
        "format": FORMAT, "version": VERSION, "exported": exported, "step_seconds": ARCHIVE_STEP,
        "hosts": out_hosts,
        "domains": sorted(domains.values(), key=lambda d: (d.get("name", ""), d["uuid"])),
        "migrations": sorted(migrations.values(), key=lambda r: r["time"]),
        "shadow": sorted(shadow.values(), key=lambda e: (e.get("time", 0), e["run_id"])),
        "problems": problems,
    }


class FilterModule:
    def filters(self):
        return {"history_export": history_export}
