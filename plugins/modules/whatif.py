#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: whatif
short_description: Replay a trace of per-VM CPU demand through the placement policy and its variants
version_added: 0.1.0
description:
  - Reads a CSV trace of per-VM CPU demand on the control node and replays it, step by step, through the very
    planner the M(xen.drs.rebalance_plan) filter calls, under a base policy and under each of O(variants). It
    shows what the policy would have done with that history, before it is allowed to move anything.
  - At each step every host gets its load sample and every VM its CPU samples, the planner plans with the
    step's time as C(now), and the planned moves take effect from the next step on, with C(last_migration)
    recorded as the modules record it (so cooldown and the 2-hour no-return rule apply).
  - Runs entirely on the controller (an action plugin). It touches no hypervisor and changes nothing, so it
    always reports C(changed=false). Use it from C(playbooks/whatif.yml), which also writes C(whatif.json) and
    C(whatif.html).
  - "The trace: a header C(vm,t0,t1,...) then one row per VM, its demand at each step in percent of one CPU
    (150 is one and a half cores), steps 5 minutes apart (the layout of the PlanetLab days). Optional columns
    C(memory_mb) (the VM's memory, MiB) and C(host) (the host it runs on at the first step) may appear anywhere
    after C(vm). Malformed input (an empty file, an unknown or repeated column, a ragged row, a value that is
    not a finite number, a negative demand, a duplicate VM) fails the task with the file, the line, the field
    and the value."
  - "The cluster: without O(preset), hosts of 8 CPUs and 64 GiB (2 GiB kept by the hypervisor); the VMs start on
    the trace's C(host) column and use its C(memory_mb) column when it has them; otherwise as many hosts as keep
    the mean load at 0.5, VMs dealt round-robin, memory 512, 1024 or 2048 MiB by a hash of the name. The base
    policy is O(policy) over the planner's defaults."
  - "With O(preset=reference): the reference cluster and reference policy (load_threshold 0.75,
    max_load_candidate 0.60, max_over 10, cooldown 60, max_migrations 5, max_vm_per_host 64,
    memory_reserve_mb 1024, the planner's defaults otherwise), so figures compare across runs and with
    the collection's benchmark. O(policy) is not used then; O(variants) still apply."
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: All the work is done by the action plugin on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Replays as usual; it changes nothing in any mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the control node, whatever the target host.
options:
  trace:
    description:
      - Path of the CSV trace on the control node (UTF-8; a byte-order mark is ignored). A relative path is
        relative to the directory ansible-playbook runs in.
      - Or the JSON file C(playbooks/export_history.yml) writes (a file starting with C({)), the pool's own history.
        Each domain is a VM whose demand at each 5-minute step is its archived CPU use there (0 where no host
        measured it), starting on the host that measured it first, with its memory; the hosts have their real
        CPUs (for guests) and memory; the replay starts at the history's first step. Its shadow log is shown
        beside the replay unless O(shadow_log) names another. A malformed export fails naming the file, the
        field and the value.
    type: path
    required: true
  policy:
    description:
      - The base placement policy (the inventory's C(xen_drs_policy)), over the planner's defaults; see
        C(ansible-doc -t filter xen.drs.rebalance_plan) for its keys. An unknown key fails the task, and so does
        C(now), which the replay sets at each step.
      - Ignored when O(preset) is set (the preset fixes the policy).
    type: dict
    default: {}
  variants:
    description:
      - Further runs, each under the base policy with some keys overridden, for example each C(balance) level.
      - The base run comes first, named C(inventory) (or after the preset); no variant may take its name.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The variant's name, unique among the variants.
        type: str
        required: true
      policy:
        description: The policy keys this variant overrides.
        type: dict
        default: {}
  preset:
    description:
      - A named cluster and policy instead of the pool's own (see the description). C(placed) is the preset the
        run without O(preset) uses for its cluster, with the reference policy.
    type: str
    choices: [placed, reference]
  progress_seconds:
    description:
      - Print a progress line (steps done of all steps, elapsed seconds) at most this often, and after each
        variant. V(0) prints only after each variant.
    type: float
    default: 15
  shadow_log:
    description:
      - A shadow log to show beside the replay (what shadow runs would have done), carried into RV(whatif.shadow).
        Either an export of C(playbooks/export_history.yml) (its C(shadow) list) or a log that M(xen.drs.shadow_log)
        wrote on a hypervisor.
    type: path
seealso:
  - plugin: xen.drs.rebalance_plan
    plugin_type: filter
notes:
  - A full PlanetLab day (about 1,000 VMs on 30 hosts, 288 steps) takes 10 to 20 seconds per variant on a
    2-core machine.
  - The result holds every host's load at every step of every variant; run with C(-v) only on short traces.
"""

EXAMPLES = r"""
- name: Replay a day of demand under the inventory's policy and two balance levels
  xen.drs.whatif:
    trace: /srv/traces/20110303.csv
    policy: "{{ xen_drs_policy | default({}) }}"
    variants:
      - name: no balancing
        policy: {balance: 0}
      - name: aggressive
        policy: {balance: 4, max_migrations: 10}
  register: whatif

- name: The reference cluster and policy, as the benchmark replays them
  xen.drs.whatif:
    trace: /srv/traces/20110303.csv
    preset: reference
  register: reference

- name: Print each variant's migrations and share of host-steps over the threshold
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.metrics.migrations }} migrations, {{ '%.2f' | format(100 * item.metrics.over_share) }} %"
  loop: "{{ whatif.whatif.variants }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
whatif:
  description: The document C(playbooks/whatif.yml) writes to C(whatif.json).
  returned: success
  type: dict
  contains:
    format:
      description: The layout version of this document.
      type: int
      sample: 1
    trace:
      description: The trace read, C({path, name, vms, steps, memory_mb_column, host_column}).
      type: dict
      sample: {path: /srv/traces/20110303.csv, name: "20110303", vms: 1052, steps: 288,
               memory_mb_column: false, host_column: false}
    preset:
      description: The preset used, or null for the pool's own cluster and the given policy.
      type: str
      sample: reference
    policy_from:
      description: Where the base policy came from, C(inventory) or C(preset NAME).
      type: str
      sample: inventory
    scenario:
      description:
        - The cluster replayed, C({name, start, step_seconds, steps, hours, vms, hosts}); C(hosts) lists
          C({name, cpus, memory_mb, reserved_mb}). C(start) is the epoch time of the first step.
      type: dict
    variants:
      description:
        - One entry per run, the base run first, C({name, overrides, policy, metrics, migrations, host_loads}).
        - C(policy) is the full policy replayed; C(host_loads) maps each host to its load at every step.
        - "C(metrics): C(steps), C(hosts), C(vms), C(hours), C(migrations), C(migrations_per_hour),
          C(host_steps), C(over_host_steps) and C(over_share) (host-steps strictly over C(load_threshold)),
          C(overload_minutes), C(sustained_host_steps) (over for at least C(max_over) minutes), C(peak_load),
          C(ping_pongs) (a VM back on a host it left less than 2 hours before), C(memory_moved_mb),
          C(plan_seconds_mean), C(plan_seconds_max), C(wall_seconds)."
        - "C(migrations): every move in order, C({step, time, vm, source, destination, reason, memory_mb,
          ping_pong}); planned at C(step) (epoch C(time)), in effect from the next step on."
      type: list
      elements: dict
    shadow:
      description:
        - The shadow log shown beside the replay, C({source, entries}), entries oldest first as M(xen.drs.shadow_log)
          writes them; null when there is none.
      type: dict
    wall_seconds:
      description: Seconds the whole replay took.
      type: float
      sample: 52.7
"""
