"""The hypervisor role's preflight, run by ansible-playbook on localhost: unauthenticated TCP libvirt is refused
unless hypervisor_insecure_lab is set, and then the run shows a real warning (a [WARNING] line, xen.drs.warn),
not a task result that scrolls by."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

import ansible_collections.xen.drs as collection

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles" / "hypervisor"
# ansible-playbook finds xen.drs where this test process found it
COLLECTIONS = str(pathlib.Path(list(collection.__path__)[0]).parents[2])
WARNING = "anyone who reaches localhost's libvirtd-tcp socket controls its guests without a password"


def preflight(tmp_path, **overrides):
    """Run the role's preflight tasks with its defaults plus overrides; returns (rc, output)."""
    variables = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()), **overrides}
    playbook = [{
        "hosts": "localhost",
        "gather_facts": False,
        "vars": variables,
        "tasks": [{"ansible.builtin.include_role": {"name": "xen.drs.hypervisor", "tasks_from": "preflight"}}],
    }]
    (tmp_path / "play.yml").write_text(json.dumps(playbook))
    ansible_playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    result = subprocess.run(
        [str(ansible_playbook), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, check=False, env=env)
    # a warning may be wrapped over several lines: compare with the whitespace folded
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_unauthenticated_tcp_with_insecure_lab_is_a_real_warning(tmp_path):
    rc, output = preflight(tmp_path, hypervisor_driver="qemu", hypervisor_migration_transport="tcp",
                           hypervisor_tcp_auth="none", hypervisor_insecure_lab=True)
    assert rc == 0, output
    assert f"[WARNING]: localhost: hypervisor_tcp_auth=none with hypervisor_insecure_lab=true: {WARNING}" in output, output


def test_unauthenticated_tcp_without_insecure_lab_is_refused(tmp_path):
    rc, output = preflight(tmp_path, hypervisor_driver="qemu", hypervisor_migration_transport="tcp",
                           hypervisor_tcp_auth="none")
    assert rc != 0 and "needs hypervisor_insecure_lab=true" in output, output


@pytest.mark.parametrize("overrides", [
    dict(hypervisor_migration_transport="tcp", hypervisor_tcp_auth="sasl"),
    dict(hypervisor_migration_transport="ssh"),
])
def test_authenticated_transports_do_not_warn(tmp_path, overrides):
    rc, output = preflight(tmp_path, hypervisor_driver="qemu", **overrides)
    assert rc == 0, output
    assert WARNING not in output and "[WARNING]: localhost" not in output, output
