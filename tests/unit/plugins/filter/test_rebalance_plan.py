# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rebalance_plan filter: type checks, errors as AnsibleFilterError, and the documented example run for real."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.filter import rebalance_plan as module
from ansible_collections.xen.drs.plugins.filter.rebalance_plan import FilterModule, rebalance_plan
from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan

NOW = 1_700_000_900
DOCS = pathlib.Path(module.__file__).with_suffix(".yml")


def pool():
    return [
        {"name": "hv1", "cpus": 8, "memory_mb": 65536, "memory_free_mb": 20000,
         "samples": [[NOW - 900, 0.9], [NOW - 600, 0.9], [NOW - 300, 0.9], [NOW, 0.9]],
         "domains": [{"name": "web1", "uuid": "7f0c0e3e-0001", "vcpus": 4, "memory_mb": 4096, "cpu": 2.0,
                      "state": "running"},
                     {"name": "db1", "uuid": "7f0c0e3e-0002", "vcpus": 4, "memory_mb": 8192, "cpu": 5.0,
                      "state": "running"}]},
        {"name": "hv2", "cpus": 8, "memory_mb": 65536, "memory_free_mb": 40000, "samples": [[NOW, 0.2]],
         "domains": [{"name": "app1", "uuid": "7f0c0e3e-0003", "vcpus": 2, "memory_mb": 2048, "cpu": 1.0,
                      "state": "running"}]},
    ]


def test_filter_is_registered():
    assert FilterModule().filters() == {"rebalance_plan": rebalance_plan}


def test_filter_returns_the_policy_plan():
    policy = {"now": NOW, "exclude": ["db1"]}
    assert rebalance_plan(pool(), policy) == plan(pool(), policy)
    assert [m["vm"] for m in rebalance_plan(pool(), policy)["migrations"]] == ["web1"]


@pytest.mark.parametrize("cluster, policy, message", [
    ({"hv1": {}}, None, "the input must be a list of hosts, got dict"),
    ("hv1", None, "the input must be a list of hosts, got str"),
    ([], ["now"], "the policy must be a mapping, got list"),
    ([{"name": "hv1", "domains": [], "samples": []}], {"now": NOW}, "host 'hv1': required field 'cpus' is missing"),
    (pool(), {"now": NOW, "load_treshold": 0.8}, "policy: unknown key 'load_treshold'"),
])
def test_bad_input_is_an_ansible_filter_error(cluster, policy, message):
    with pytest.raises(AnsibleFilterError, match="rebalance_plan: ") as error:
        rebalance_plan(cluster, policy)
    assert message in str(error.value)


def test_a_missing_numpy_is_an_error_that_names_it(monkeypatch):
    from ansible_collections.xen.drs.plugins.plugin_utils.placement import planner
    monkeypatch.setattr(planner, "np", None)
    with pytest.raises(AnsibleFilterError, match="needs numpy, which is not installed"):
        rebalance_plan(pool(), {"now": NOW})


def test_domain_errors_name_host_domain_field_and_value():
    cluster = pool()
    cluster[1]["domains"][0]["cpu"] = "1.0"
    with pytest.raises(AnsibleFilterError) as error:
        rebalance_plan(cluster, {"now": NOW})
    assert "host 'hv2', domain 'app1': field 'cpu' must be a number, got '1.0'" in str(error.value)


def test_documentation_declares_every_policy_key_with_its_default():
    from ansible_collections.xen.drs.plugins.plugin_utils.placement import DEFAULTS
    options = yaml.safe_load(DOCS.read_text())["DOCUMENTATION"]["options"]["policy"]["suboptions"]
    assert set(options) == set(DEFAULTS)
    for key, default in DEFAULTS.items():
        assert options[key].get("default") == default, key


def _collections_root():
    path = pathlib.Path(module.__file__).resolve()
    # .../ansible_collections/xen/drs/plugins/filter/rebalance_plan.py, possibly through the .venv symlink
    for candidate in (pathlib.Path(module.__file__), path):
        parts = candidate.parts
        if "ansible_collections" in parts:
            return str(pathlib.Path(*parts[:parts.index("ansible_collections")]))
    return None


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible-playbook on PATH")
def test_documented_example_through_ansible_playbook(tmp_path):
    """The first EXAMPLES task runs in a real play and gives the documented result."""
    example = yaml.safe_load(yaml.safe_load(DOCS.read_text())["EXAMPLES"])[0]
    out = tmp_path / "plan.json"
    playbook = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        example,
        {"name": "Save", "ansible.builtin.copy": {"content": "{{ plan | to_json }}", "dest": str(out), "mode": "0644"}},
    ]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collections_root() or os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                          f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["migrations"] == [{
        "vm": "web1", "uuid": "7f0c0e3e-0001", "source": "hv1", "destination": "hv2",
        "reason": "hv1 overloaded 0.88 > 0.75 for 15 min", "requires": [], "cpu": 2.0, "memory_mb": 4096,
        "source_load_before": 0.875, "source_load_after": 0.625,
        "destination_load_before": 0.125, "destination_load_after": 0.375}]
    assert result["hosts"][0] == {
        "name": "hv1", "cpus": 8, "load": 0.875, "predicted_load": 0.625, "overloaded": True, "maintenance": False,
        "status": "overloaded",
        "reasons": ["load 0.88 > threshold 0.75; samples over threshold 0.75 for 15 min (>= max_over 10 min)",
                    "plan moves web1: predicted load 0.62 <= threshold 0.75"],
        "running": 2, "predicted_running": 1, "memory_free_mb": 20000, "predicted_memory_free_mb": 24096,
        "memory_load": 0.1875, "predicted_memory_load": 0.125, "memory_overloaded": False}
    assert result["skipped"] == [{"vm": "db1", "uuid": "7f0c0e3e-0002", "host": "hv1", "reason": "excluded by policy"}]
