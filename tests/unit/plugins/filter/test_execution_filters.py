# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run execution filters: registered with a sidecar doc each, type checks, errors as AnsibleFilterError,
and the filters on real registered results in a real play (as playbooks/tasks/migrate_wave.yml uses them)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.filter import execution as module
from ansible_collections.xen.drs.plugins.filter.execution import FilterModule
from ansible_collections.xen.drs.plugins.plugin_utils.placement import execution as library

FILTERS = FilterModule().filters()
FILTER_DIR = pathlib.Path(module.__file__).parent


def test_filters_are_registered():
    assert set(FILTERS) == {"evacuation_policy", "runnable", "outcome_status", "outcome_msg",
                            "failed_outcomes", "moved_outcomes", "loads_after", "reconcile_records"}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_has_its_own_sidecar_doc(name):
    docs = yaml.safe_load((FILTER_DIR / f"{name}.yml").read_text())
    assert docs["DOCUMENTATION"]["name"] == name
    options = docs["DOCUMENTATION"]["options"]
    positional = [p.strip() for p in str(docs["DOCUMENTATION"].get("positional", "")).split(",") if p.strip()]
    assert "_input" in options and set(positional) <= set(options)
    assert "_value" in docs["RETURN"] and docs["EXAMPLES"].strip()


@pytest.mark.parametrize("name, args, result", [
    ("runnable", ({"vm": "a", "requires": ["b", "c"]},
                  [{"vm": "b", "status": "migrated"}, {"vm": "c", "status": "failed"}]), False),
    ("runnable", ({"vm": "a", "requires": "b"}, [{"vm": "b", "status": "already there"}]), True),
    ("runnable", ({"vm": "a", "source": "hv1", "destination": "hv2"}, [], {"hv2": {"unreachable": True}}), False),
    ("outcome_status", ({"changed": True}, True), "would migrate"),
    ("outcome_status", ({"skipped": True},), "not run"),
    ("outcome_msg", ({"skipped": True}, {"vm": "a", "requires": "b"}, []),
     "the make-room migration of b did not succeed"),
    ("outcome_msg", ({"skipped": True}, {"vm": "a", "source": "hv1", "destination": "hv2"}, [],
                     {"hv2": {"unreachable": True, "msg": "timed out"}}),
     "not sent: the run lock on destination hv2 could not be renewed before the wave (timed out)"),
    ("failed_outcomes", ([{"vm": "a", "status": "migrated"}, {"vm": "b", "status": "not run"}],),
     [{"vm": "b", "status": "not run"}]),
    ("moved_outcomes", ([{"vm": "a", "status": "migrated"}, {"vm": "b", "status": "already there"}],),
     [{"vm": "a", "status": "migrated"}]),
    ("loads_after", ({"hosts": [{"name": "hv1", "load": 0.5}], "migrations": []}, []), {"hv1": 0.5}),
    ("evacuation_policy", ({}, [{"name": "hv1", "domains": [{"state": "running"}] * 3}], "hv1"),
     {"maintenance": ["hv1"], "max_migrations": 6}),
    ("evacuation_policy", ({"max_migrations": 2}, [], None), {"max_migrations": 2}),
])
def test_filters_return_what_the_library_does(name, args, result):
    assert FILTERS[name](*args) == result


@pytest.mark.parametrize("name, args, message", [
    ("runnable", ("a", []), "runnable: the move must be a mapping, got str"),
    ("runnable", ({"vm": "a"}, {"vm": "b"}), "runnable: the outcomes must be a list, got dict"),
    ("runnable", ({"vm": "a"}, [], ["hv1"]), "runnable: the heartbeats must be a mapping, got list"),
    ("outcome_status", ("changed",), "outcome_status: the result must be a mapping, got str"),
    ("outcome_msg", ({}, {}, None), "outcome_msg: the outcomes must be a list, got NoneType"),
    ("outcome_msg", ({}, {}, [], ["hv1"]), "outcome_msg: the heartbeats must be a mapping, got list"),
    ("outcome_msg", ({"skipped": True}, {"source": "hv1"}, [], {"hv1": "ok"}),
     "outcome_msg: heartbeats['hv1'] must be a mapping, got str: 'ok'"),
    ("failed_outcomes", ("migrated",), "failed_outcomes: the outcomes must be a list, got str"),
    ("moved_outcomes", ({},), "moved_outcomes: the outcomes must be a list, got dict"),
    ("loads_after", ([], []), "loads_after: the plan must be a mapping, got list"),
    ("evacuation_policy", (["x"], [], "hv1"), "evacuation_policy: the policy must be a mapping, got list"),
    ("evacuation_policy", ({}, "hv1", "hv1"), "evacuation_policy: the cluster must be a list, got str"),
])
def test_the_filter_checks_the_argument_types(name, args, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        FILTERS[name](*args)


@pytest.mark.parametrize("name, args, message", [
    ("runnable", ({"vm": "a", "requires": 3}, []), "runnable: move 'a': requires must be null, a VM name"),
    ("runnable", ({"vm": "a", "requires": "b"}, [{"vm": "b", "status": "ok"}]),
     r"runnable: outcomes\[0\]: status must be one of"),
    ("outcome_status", ({}, "no"), "outcome_status: check_mode must be a boolean"),
    ("moved_outcomes", ([{"vm": "a"}],), r"moved_outcomes: outcomes\[0\]: status must be one of"),
    ("loads_after", ({"hosts": [{"load": 1}]}, []), r"loads_after: plan.hosts\[0\] needs 'name' and 'load'"),
    ("evacuation_policy", ({"max_migrations": "9"}, [], "hv1"), "evacuation_policy: policy.max_migrations must be"),
])
def test_library_errors_become_ansible_filter_errors(name, args, message):
    with pytest.raises(AnsibleFilterError, match=message) as error:
        FILTERS[name](*args)
    assert isinstance(error.value.__cause__, library.ExecutionError)


def _collections_root():
    for candidate in (pathlib.Path(module.__file__), pathlib.Path(module.__file__).resolve()):
        parts = candidate.parts
        if "ansible_collections" in parts:
            return str(pathlib.Path(*parts[:parts.index("ansible_collections")]))
    return None


# The Migrate stage's use of the filters on results that ansible really registered.
PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    outcomes:
      - {vm: room-ok, uuid: u1, status: migrated}
      - {vm: room-bad, uuid: u2, status: failed}
  tasks:
    - name: A move whose make-room moves all succeeded runs
      ansible.builtin.command: "true"
      when: move | xen.drs.runnable(outcomes)
      vars: {move: {vm: a, requires: [room-ok]}}
      register: ran
    - name: A move with one failed make-room move does not run
      ansible.builtin.command: "true"
      when: move | xen.drs.runnable(outcomes)
      vars: {move: {vm: b, requires: [room-ok, room-bad]}}
      register: held
    - name: A failed migration
      ansible.builtin.command: "false"
      register: broke
      ignore_errors: true
    - name: Nothing to do
      ansible.builtin.command: "true"
      changed_when: false
      register: there
    - name: Save
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0644"
        content: >-
          {{ {'statuses': [ran, held, broke, there] | map('xen.drs.outcome_status', false) | list,
              'check': [ran, held, broke, there] | map('xen.drs.outcome_status', true) | list,
              'msg': held | xen.drs.outcome_msg({'vm': 'b', 'requires': ['room-ok', 'room-bad']}, outcomes),
              'load_after': plan | xen.drs.loads_after(outcomes),
              'failed': outcomes | xen.drs.failed_outcomes | map(attribute='vm') | list} | to_json }}
      vars:
        plan:
          hosts: [{name: hv1, load: 0.5}, {name: hv2, load: 0.25}]
          migrations:
            - {vm: room-ok, uuid: u1, source: hv1, destination: hv2, source_load_before: 0.5,
               source_load_after: 0.25, destination_load_before: 0.25, destination_load_after: 0.5}
            - {vm: room-bad, uuid: u2, source: hv2, destination: hv1, source_load_before: 0.5,
               source_load_after: 0.25, destination_load_before: 0.25, destination_load_after: 0.5}
"""


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible-playbook on PATH")
def test_filters_on_results_a_real_play_registered(tmp_path):
    out = tmp_path / "out.json"
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collections_root() or os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"out={out}",
                          "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(out.read_text()) == {
        "statuses": ["migrated", "not run", "failed", "already there"],
        "check": ["would migrate", "not run", "failed", "would migrate"],
        "msg": "the make-room migration of room-bad did not succeed",
        "load_after": {"hv1": 0.25, "hv2": 0.5},
        "failed": ["room-bad"],
    }
