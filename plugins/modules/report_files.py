#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: report_files
short_description: Write a run's JSON report and its HTML page in one call
version_added: 0.1.0
description:
  - Writes O(report) as C(DIR/NAME.json) and O(html) as C(DIR/NAME.html), each replaced atomically. A
    temporary file C(.xen-drs-report-*.tmp) in O(dir) is written, flushed to disk and renamed, so a reader
    never sees a partial report.
  - O(dir) is created with O(dir_mode) when it does not exist, and so is each of its parents that does not exist
    (whatever the umask); an existing directory keeps its mode (it may be one the user shares, such as C(/tmp)).
  - The playbooks run it once per run on the control node. It replaces a directory task and two template
    tasks, which cost four module runs.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Returns the paths; writes nothing and creates no directory.
  diff_mode:
    support: none
options:
  dir:
    description: The report directory.
    type: path
    required: true
  name:
    description: The files' name without its suffix, for example V(xen-drs-20260101T000000Z-abc123).
    type: str
    required: true
  report:
    description: The run's report, written as JSON (indented by 4, keys sorted).
    type: dict
    required: true
  html:
    description: The report's HTML page, written as given.
    type: str
    required: true
  mode:
    description: Permissions of the two files.
    type: str
    default: "0640"
  dir_mode:
    description: Permissions of O(dir) when the module creates it.
    type: str
    default: "0750"
seealso:
  - module: xen.drs.metrics_file
"""

EXAMPLES = r"""
- name: Write the run's reports
  xen.drs.report_files:
    dir: /var/log/xen-drs
    name: "xen-drs-{{ xen_drs_run_id }}"
    report: "{{ xen_drs_report }}"
    html: "{{ lookup('ansible.builtin.template', 'report.html.j2') }}"
  delegate_to: localhost
"""

RETURN = r"""
paths:
  description: The files written (or that would be, in check mode), the JSON report first.
  returned: success
  type: list
  elements: str
  sample: [/var/log/xen-drs/xen-drs-20260101T000000Z-abc123.json, /var/log/xen-drs/xen-drs-20260101T000000Z-abc123.html]
created_dir:
  description: Whether O(dir) was created (or would be, in check mode).
  returned: success
  type: bool
  sample: false
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.drs.plugins.module_utils._files import make_directories
from ansible_collections.xen.drs.plugins.module_utils._state import file_mode, write_atomically


def report_paths(directory, name):
    """The JSON report's path and the HTML page's; ValueError for a name that is not a plain file name."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"name must be a file name without a directory, got {name!r}")
    return [os.path.join(directory, f"{name}.json"), os.path.join(directory, f"{name}.html")]


def write_reports(params, check_mode):
    """The module's result; raises ValueError for bad parameters, OSError when a file cannot be written."""
    directory = params["dir"]
    paths = report_paths(directory, params["name"])
    mode, dir_mode = file_mode(params["mode"], "mode"), file_mode(params["dir_mode"], "dir_mode")
    texts = [json.dumps(params["report"], indent=4, sort_keys=True), params["html"]]
    if check_mode:
        return dict(changed=True, paths=paths, created_dir=not os.path.isdir(directory))
    created = make_directories(directory, dir_mode)  # and its missing parents, each with dir_mode
    for path, text in zip(paths, texts):
        write_atomically(path, lambda handle, text=text: handle.write(text), prefix=".xen-drs-report-", mode=mode)
    return dict(changed=True, paths=paths, created_dir=created)


def get_argument_spec():
    return dict(
        dir=dict(type="path", required=True),
        name=dict(type="str", required=True),
        report=dict(type="dict", required=True),
        html=dict(type="str", required=True),
        mode=dict(type="str", default="0640"),
        dir_mode=dict(type="str", default="0750"),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    try:
        result = write_reports(module.params, module.check_mode)
    except ValueError as err:
        module.fail_json(msg=f"report_files: {err}")
    except OSError as err:
        module.fail_json(msg=f"report_files: cannot write the reports to {module.params['dir']}: {err}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
