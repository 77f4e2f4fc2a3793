#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_lock
short_description: Take or release the lock that keeps two rebalance runs from acting at once
version_added: 0.1.0
description:
  - Takes (O(state=acquired)) or releases (O(state=released)) a lock file on the managed host.
  - The rebalance and evacuate playbooks take it on every hypervisor before they gather and plan, so a run
    started by AWX, cron or a person is refused cleanly while another one holds any of the hosts.
  - The lock file is created atomically (C(O_EXCL)) and holds JSON with the owner (the run id), the runner,
    the host, the process id of the module that took it, the time and the expiry time.
  - Taking and releasing are serialised with C(flock) on the lock directory, so two runs that find the
    same stale lock cannot both take it over.
  - A lock whose expiry time has passed is stale (its run crashed or was killed) and is taken over,
    with a warning that names its previous owner.
  - The lock also names the run's O(controller), the C(ansible-playbook) process that holds it. The action
    plugin of the same name fills it in, and when the lock is held by a run of the same control node whose
    process is gone (killed, crashed, or the control node rebooted), it takes the lock over at once (O(take_over)),
    with a warning, instead of waiting for the expiry time. A run of another control node (another AWX job, another
    machine) cannot be checked and waits for the expiry; a live run's lock is never taken.
  - Taking a lock already held by the same O(owner) renews its expiry time (a heartbeat; the playbooks renew it
    before each migration wave, so O(ttl) needs to cover one stage of a run, not the whole run). Releasing a
    lock held by another owner, or no lock at all, changes nothing.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  owner:
    description:
      - Identifier of the run that takes or releases the lock, for example a time stamp plus a random
        suffix or the AWX job id. Only this owner can release the lock.
    type: str
    required: true
  state:
    description:
      - V(acquired) takes the lock and fails if another owner holds a lock that has not expired.
      - V(released) removes the lock if O(owner) holds it.
    type: str
    choices: [acquired, released]
    default: acquired
  path:
    description:
      - Lock file, written with mode 0600. Its directory, and any missing parent of it, is created with mode 0700.
      - Every runner must use the same path; a tmpfs such as C(/run) is fine, since a reboot ends any run.
    type: path
    default: /run/xen-drs/rebalance.lock
  ttl:
    description:
      - Seconds after which the lock is stale and may be taken over by another run.
      - The playbooks renew the lock before each migration wave, so choose more than the longest stage between
        renewals (the sampling window plus planning, or one wave, that is the migration timeout).
    type: int
    default: 3600
  runner:
    description:
      - Free text stored in the lock to tell people who holds it, for example C(awx job 42) or
        C(cron on ctl1).
    type: str
  controller:
    description:
      - The process that runs this playbook, stored in the lock so that a later run of the same control node
        can tell whether it is still alive. The action plugin sets it; set it by hand only to test.
    type: dict
    suboptions:
      host:
        description: The control node's host name.
        type: str
        required: true
      machine_id:
        description: The control node's machine id (C(/etc/machine-id)).
        type: str
      boot_id:
        description: The control node's boot id (C(/proc/sys/kernel/random/boot_id)).
        type: str
        required: true
      pid_ns:
        description: The inode of the PID namespace C(ansible-playbook) runs in (C(/proc/self/ns/pid)).
        type: int
      pid:
        description: The process id of C(ansible-playbook).
        type: int
        required: true
      start:
        description: Its start time (clock ticks after boot, field 22 of C(/proc/PID/stat)), so a reused process id is not mistaken for it.
        type: int
        required: true
  take_over:
    description:
      - The owner of a lock whose run is known to be dead; the lock is taken over if, and only if, that owner
        still holds it. The action plugin sets it after checking the holder's O(controller) process; a lock held
        by anyone else is refused as usual.
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports whether the lock could be taken or released, and writes nothing.
  diff_mode:
    support: full
    details: Shows the lock file's content before and after.
notes:
  - When the lock is held by another run the module fails with a message that names the holder and
    returns it in RV(holder); the playbooks release what they took and stop.
  - The lock holds the process id of the module that wrote it too (C(pid)), which exits at once; it tells
    nothing about whether the run is alive. O(controller) does.
  - A plain release (O(state=released) with O(owner) and at most O(path), not in check or diff mode) does not send
    this module. The action plugin runs the lock's own code (the collection's C(module_utils/_run_lock.py), its
    source as it is) with the host's Python through the connection, and returns what the module would. It skips
    unpacking and compiling the module's payload (C(ansible.module_utils.basic)), about 0.2 s of the host's CPU,
    which every run pays on every hypervisor at its end. When the host's Python is not known yet or the program
    does not answer, the module runs as usual.
"""

EXAMPLES = r"""
- name: Take the run lock on every hypervisor
  xen.drs.run_lock:
    owner: "{{ xen_drs_run_id }}"
    runner: "awx job {{ awx_job_id | default('manual') }}"
    ttl: 1800

- name: Release it (only if this run holds it)
  xen.drs.run_lock:
    owner: "{{ xen_drs_run_id }}"
    state: released
"""

RETURN = r"""
acquired:
  description: Whether this owner holds the lock after the task (in check mode, whether it would).
  returned: always
  type: bool
  sample: true
released:
  description: Whether the task removed this owner's lock (in check mode, whether it would).
  returned: always
  type: bool
  sample: false
lock:
  description: The lock this owner holds after the task, as written in the lock file.
  returned: when RV(acquired) is true
  type: dict
  sample:
    owner: 20261125T161500Z-k3v9
    runner: awx job 42
    host: hv1
    pid: 31337
    controller: {host: ctl1, machine_id: 5b2c0f6e9d8a4e1f8c7b6a5d4e3f2a1b, boot_id: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0,
                 pid_ns: 4026531836, pid: 4100, start: 981234}
    time: 1764087300.5
    renewed: 1764087300.5
    expires: 1764089100.5
holder:
  description:
    - The lock found in place before the task, if any (another owner's, a stale one, or this owner's).
    - C(owner) is null when the file could not be read as a lock.
  returned: when a lock file existed
  type: dict
  sample:
    owner: 20261125T160000Z-a1b2
    runner: cron on ctl1
    host: hv1
    pid: 4242
    time: 1764086400.0
    expires: 1764088200.0
taken_over:
  description:
    - Set by the action plugin when it took over the lock of a dead run of this control node (see O(take_over)),
      with that run's C(owner) and the C(reason) it is known to be dead.
  returned: when the lock of a dead run was taken over
  type: dict
  sample: {owner: 20261125T160000Z-a1b2, reason: "run 20261125T160000Z-a1b2's ansible-playbook (pid 4100 on ctl1) is no longer running"}
lock_file:
  description: The lock file (named so, not C(path), to keep Ansible from adding file attributes).
  returned: always
  type: str
  sample: /run/xen-drs/rebalance.lock
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.drs.plugins.module_utils._run_lock import (
    LOCK_SPEC,
    LockError,
    read_lock_quietly,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(LOCK_SPEC, state={"type": "str", "choices": ["acquired", "released"], "default": "acquired"}),
        supports_check_mode=True,
    )
    try:
        result, warnings = run(module.params, module.check_mode, time.time())
    except LockError as exc:
        holder = read_lock_quietly(module.params["path"], module.params["ttl"])
        module.fail_json(msg=str(exc), lock_file=module.params["path"], acquired=False, released=False,
                         **({"holder": holder} if holder else {}))
    for warning in warnings:
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
