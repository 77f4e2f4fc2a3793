"""The hypervisor role's libvirt files, rendered by Ansible's own template engine.

The molecule scenario starts libvirtd on the QEMU/SSH rendering; these cover the other drivers
and transports (Xen, TLS, TCP) and libvirt's value syntax for the extra options.
"""
import json
import pathlib
import subprocess
import sys

import pytest
import yaml

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles" / "hypervisor"
UUID = "7b0c3e1a-5d2f-4c8e-9a41-2f6d8e0b1c55"


def render(tmp_path, **overrides):
    """Render libvirtd.conf and the driver's file with the role's defaults plus overrides."""
    variables = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()), **overrides}
    variables["hypervisor__host_uuid"] = UUID
    driver_conf = {"xen": "libxl.conf", "qemu": "qemu.conf"}[variables["hypervisor_driver"]]
    playbook = [{
        "hosts": "localhost",
        "gather_facts": False,
        "vars": variables,
        "tasks": [
            {"ansible.builtin.template": {"src": str(ROLE / "templates" / f"{name}.j2"),
                                          "dest": str(tmp_path / name), "mode": "0600"}}
            for name in ("libvirtd.conf", driver_conf)
        ],
    }]
    (tmp_path / "play.yml").write_text(json.dumps(playbook))
    ansible_playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(ansible_playbook), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return (tmp_path / "libvirtd.conf").read_text().splitlines(), (tmp_path / driver_conf).read_text().splitlines()


def test_xen_over_ssh_listens_on_nothing_and_keeps_libxl_empty(tmp_path):
    libvirtd, libxl = render(tmp_path, hypervisor_driver="xen")
    assert f'host_uuid = "{UUID}"' in libvirtd
    assert "listen_tls = 0" in libvirtd and "listen_tcp = 0" in libvirtd
    assert [line for line in libxl if line and not line.startswith("#")] == []


def test_tls_points_at_the_certificates_and_allowed_dns(tmp_path):
    libvirtd = render(tmp_path, hypervisor_driver="qemu", hypervisor_migration_transport="tls",
                      hypervisor_tls_allowed_dn_list=["CN=hv1", "CN=hv2"])[0]
    assert "listen_tls = 1" in libvirtd and "listen_tcp = 0" in libvirtd
    assert 'ca_file = "/etc/pki/CA/cacert.pem"' in libvirtd
    assert 'key_file = "/etc/pki/libvirt/private/serverkey.pem"' in libvirtd
    assert 'tls_allowed_dn_list = ["CN=hv1", "CN=hv2"]' in libvirtd


@pytest.mark.parametrize("auth", ["sasl", "none"])
def test_tcp_states_its_authentication(tmp_path, auth):
    libvirtd = render(tmp_path, hypervisor_driver="qemu", hypervisor_migration_transport="tcp",
                      hypervisor_tcp_auth=auth, hypervisor_insecure_lab=True)[0]
    assert "listen_tcp = 1" in libvirtd and "listen_tls = 0" in libvirtd
    assert f'auth_tcp = "{auth}"' in libvirtd


def test_extra_options_use_libvirt_value_syntax(tmp_path):
    libvirtd, qemu = render(
        tmp_path, hypervisor_driver="qemu", hypervisor_migration_host="hv1.example",
        hypervisor_libvirtd_options={"log_level": 2, "admin_keepalive_required": True},
        hypervisor_driver_options={"security_driver": "none", "cgroup_controllers": ["cpu", "memory"],
                                   "set_process_name": False})
    assert "log_level = 2" in libvirtd and "admin_keepalive_required = 1" in libvirtd
    assert 'security_driver = "none"' in qemu
    assert 'cgroup_controllers = ["cpu", "memory"]' in qemu
    assert "set_process_name = 0" in qemu
    assert 'migration_host = "hv1.example"' in qemu
    assert "migration_port_min = 49152" in qemu and "migration_port_max = 49215" in qemu
    assert not any(line.startswith("migration_address") for line in qemu)
