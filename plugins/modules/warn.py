#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: warn
short_description: Show a warning in the run's output
version_added: 0.1.0
description:
  - Shows O(msg) as an Ansible warning (a C([WARNING]:) line, as modules' warnings are shown), prefixed with the
    name of the host the task runs for, and changes nothing.
  - For a setting that is allowed but unsafe, which the run must not hide among ordinary task output
    (M(ansible.builtin.debug) prints a task result, M(ansible.builtin.fail) stops the host). The hypervisor role
    uses it when libvirtd is to take unauthenticated TCP connections.
  - Runs on the control node (an action plugin); it does not connect to the host.
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
    details: Warns in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the control node, whatever the target host.
options:
  msg:
    description: The warning, not empty.
    type: str
    required: true
seealso:
  - module: ansible.builtin.debug
"""

EXAMPLES = r"""
- name: Warn that libvirtd takes unauthenticated TCP connections
  xen.drs.warn:
    msg: anyone who reaches libvirtd-tcp controls the guests without a password
  when: hypervisor_tcp_auth == 'none'
"""

RETURN = r"""
msg:
  description: The warning shown (without the host name).
  returned: always
  type: str
  sample: anyone who reaches libvirtd-tcp controls the guests without a password
"""
