#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migration_record
short_description: Record a domain migration in a hypervisor's xen.drs state file
version_added: 0.1.0
description:
  - Appends the record C({time, vm, uuid, source, destination}) of a migration to the state file of the
    host it runs on, where M(xen.drs.hypervisor_info) reads it (for example to keep a domain from being
    moved again too soon).
  - M(xen.drs.domain_migrate) writes the source's state itself. Run this module delegated to the
    destination with the RV(xen.drs.domain_migrate#module:record) it returned, so both hosts' state hold the record.
  - Idempotent. A record that is already in the file (same five fields) is not added again.
  - The file keeps the last 200 migrations and is replaced atomically. A corrupt or unreadable file produces a
    warning and is started afresh.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports whether the record would be added; writes nothing.
  diff_mode:
    support: none
options:
  time:
    description: When the migration finished, in seconds since the epoch.
    type: float
    required: true
  vm:
    description: Name of the migrated domain.
    type: str
    required: true
  uuid:
    description: UUID of the migrated domain.
    type: str
    required: true
  source:
    description: Host the domain left.
    type: str
    required: true
  destination:
    description: Host the domain moved to.
    type: str
    required: true
  state_path:
    description: Path of the state file on the host the module runs on. Its directory is created with mode 0700.
    type: path
    default: /var/lib/xen-drs/state.json
seealso:
  - module: xen.drs.domain_migrate
  - module: xen.drs.hypervisor_info
"""

EXAMPLES = r"""
- name: Record the migration on the destination as well
  xen.drs.migration_record:
    time: "{{ moved.record.time }}"
    vm: "{{ moved.record.vm }}"
    uuid: "{{ moved.record.uuid }}"
    source: "{{ moved.record.source }}"
    destination: "{{ moved.record.destination }}"
  delegate_to: "{{ moved.record.destination }}"
  when: moved is changed
"""

RETURN = r"""
record:
  description: The record, as stored.
  returned: always
  type: dict
  sample: {time: 1764000000.123, vm: web1, uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, source: hv1, destination: hv2}
migrations:
  description: How many migration records the state file holds afterwards (or would, in check mode).
  returned: always
  type: int
  sample: 12
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.drs.plugins.module_utils._state import RECORD_FIELDS, add_migration, load_state, save_state


def check_options(params):
    for option in RECORD_FIELDS[1:]:
        if not params[option].strip():
            raise ValueError(f"{option} must not be empty, got {params[option]!r}")
    if not 0 < params["time"] < float("inf"):  # also false for NaN
        raise ValueError(f"time must be seconds since the epoch, got {params['time']}")


def record_migration(module):
    """The module's result; raises ValueError for bad options and OSError if the file cannot be written."""
    params = module.params
    check_options(params)
    record = {k: params[k] for k in RECORD_FIELDS}
    state, warning = load_state(params["state_path"])
    if warning:
        module.warn(warning)
    state, added = add_migration(state, record)
    if added and not module.check_mode:
        save_state(params["state_path"], state)
    return dict(changed=added, record=record, migrations=len(state.migrations))


def get_argument_spec():
    return dict(
        time=dict(type="float", required=True),
        vm=dict(type="str", required=True),
        uuid=dict(type="str", required=True),
        source=dict(type="str", required=True),
        destination=dict(type="str", required=True),
        state_path=dict(type="path", default="/var/lib/xen-drs/state.json"),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    try:
        result = record_migration(module)
    except ValueError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        module.fail_json(msg=f"cannot write the state file {module.params['state_path']}: {err}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
