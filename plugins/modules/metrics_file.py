#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: metrics_file
short_description: Write a run's figures as Prometheus metrics for node_exporter's textfile collector
version_added: 0.1.0
description:
  - Turns the JSON report of a rebalance, shadow or evacuate run into Prometheus metrics in the text
    exposition format and writes them to O(path), replacing the file atomically. A temporary file in the
    same directory, named C(.xen-drs-metrics-*.tmp), is written, flushed to disk and renamed to O(path), so
    the collector never reads a partial file (it reads C(*.prom) files only).
  - Every metric is a gauge labelled C(mode) (V(rebalance), V(evacuate) or V(shadow)).
    C(xen_drs_run_timestamp_seconds), C(xen_drs_run_duration_seconds) and C(xen_drs_run_gather_seconds);
    C(xen_drs_run_shadow) and C(xen_drs_run_aborted) (0 or 1); C(xen_drs_hosts_measured),
    C(xen_drs_hosts_left_out) and C(xen_drs_host_left_out) (1 per left-out C(host));
    C(xen_drs_hosts_overloaded); per C(host) C(xen_drs_host_load), C(xen_drs_host_load_after) and
    C(xen_drs_host_overloaded); C(xen_drs_load_threshold); C(xen_drs_imbalance) and
    C(xen_drs_imbalance_after) (the standard deviation of the hosts' loads before and after);
    C(xen_drs_migrations_planned), C(xen_drs_migrations_done) and C(xen_drs_migrations_failed).
  - The playbooks run it on the control node when C(xen_drs_metrics_file) is set. Point node_exporter's
    C(--collector.textfile.directory) at the file's directory.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Returns the metrics; writes nothing.
  diff_mode:
    support: none
options:
  path:
    description:
      - The file to write, for example V(/var/lib/node_exporter/textfile/xen_drs.prom). Its directory is created
        (mode 0700) when missing.
    type: path
    required: true
  report:
    description:
      - The run's JSON report, as C(playbooks/tasks/report.yml) builds it (C(xen_drs_report)). It needs
        C(mode), C(finished), C(figures.wall_seconds), C(figures.gather_seconds), C(hosts) (each with C(name)
        and C(load)), C(load_after), C(left_out), C(migrations) and C(outcomes).
    type: dict
    required: true
  mode:
    description: Permissions of the file.
    type: str
    default: "0644"
notes:
  - The report's C(shadow) marks a shadow run; its C(load_after) is then the plan's prediction.
seealso:
  - module: xen.drs.shadow_log
"""

EXAMPLES = r"""
- name: Write the run's metrics where node_exporter reads them
  xen.drs.metrics_file:
    path: /var/lib/node_exporter/textfile/xen_drs.prom
    report: "{{ xen_drs_report }}"
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The file written (or that would be, in check mode).
  returned: success
  type: str
  sample: /var/lib/node_exporter/textfile/xen_drs.prom
metrics:
  description: The metrics text.
  returned: success
  type: str
  sample: "# HELP xen_drs_host_load ...\n# TYPE xen_drs_host_load gauge\nxen_drs_host_load{mode=\"rebalance\",host=\"hv1\"} 0.42\n"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.drs.plugins.module_utils._metrics import metrics_text
from ansible_collections.xen.drs.plugins.module_utils._state import file_mode, write_atomically


def write_metrics(module):
    """The module's result; raises ValueError for a bad report or mode, OSError if the file cannot be written."""
    params = module.params
    mode = file_mode(params["mode"])
    text = metrics_text(params["report"])
    if not module.check_mode:
        write_atomically(params["path"], lambda handle: handle.write(text), prefix=".xen-drs-metrics-", mode=mode)
    return dict(changed=not module.check_mode, path=params["path"], metrics=text)


def get_argument_spec():
    return dict(
        path=dict(type="path", required=True),
        report=dict(type="dict", required=True),
        mode=dict(type="str", default="0644"),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    try:
        result = write_metrics(module)
    except ValueError as err:
        module.fail_json(msg=f"metrics_file: {err}")
    except OSError as err:
        module.fail_json(msg=f"metrics_file: cannot write {module.params['path']}: {err}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
