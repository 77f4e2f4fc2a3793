# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Group a plan's migrations into waves that can run at the same time (docs: migration_waves.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.plugin_utils.placement.execution import ExecutionError, requirements


def migration_waves(migrations, parallel=2):
    """Waves of migrations in which every host sends or receives at most one domain.

    Each migration goes into the earliest wave after the last one that uses either of its hosts,
    so every host sees its migrations in plan order (the plan's memory and load predictions assume
    that order), and a wave holds at most ``parallel`` migrations. A migration also goes after the
    wave of every earlier migration it ``requires`` (by VM name), so their outcomes are known before it runs.
    """
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise AnsibleFilterError(f"migration_waves: parallel must be a whole number of at least 1, got {parallel!r}")
    if not isinstance(migrations, list):
        raise AnsibleFilterError(f"migration_waves: migrations must be a list, got {type(migrations).__name__}")
    waves = []
    last_wave_of_host = {}
    wave_of_vm = {}
    for index, migration in enumerate(migrations):
        if not isinstance(migration, dict) or not {"source", "destination"} <= migration.keys():
            raise AnsibleFilterError(f"migration_waves: migrations[{index}] needs 'source' and 'destination', got {migration!r}")
        for field, kind in (("source", "host"), ("destination", "host"), ("vm", "domain")):
            value = migration.get(field, "-")
            if not isinstance(value, str) or not value:
                raise AnsibleFilterError(f"migration_waves: migrations[{index}].{field} must be a {kind} name, got {value!r}")
        try:
            required = requirements(migration, f"migrations[{index}]")
        except ExecutionError as e:
            raise AnsibleFilterError(f"migration_waves: {e}") from e
        hosts = (migration["source"], migration["destination"])
        wave = max([last_wave_of_host.get(host, -1) for host in hosts]
                   + [wave_of_vm[vm] for vm in required if vm in wave_of_vm]) + 1
        while wave < len(waves) and len(waves[wave]) >= parallel:
            wave += 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(migration)
        for host in hosts:
            last_wave_of_host[host] = wave
        if "vm" in migration:
            wave_of_vm[migration["vm"]] = wave
    return waves


class FilterModule:
    """xen.drs wave planning filter."""

    def filters(self):
        return {"migration_waves": migration_waves}
