"""Fixtures for the libvirt modules' unit tests: the fake libvirt, and running a module's main()."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.xen.drs.plugins.module_utils import _libvirt
from ansible_collections.xen.drs.plugins.modules import domain_migrate, hypervisor_info
from ansible_collections.xen.drs.tests.unit.plugins.module_utils.fake_libvirt import FakeLibvirt


@pytest.fixture
def fake(monkeypatch):
    """A FakeLibvirt in place of libvirt, whose clock is the monotonic clock and sleep of the test."""
    world = FakeLibvirt()
    monkeypatch.setattr(_libvirt, "libvirt", world)
    for module in (hypervisor_info, domain_migrate):
        monkeypatch.setattr(module, "HAS_LIBVIRT", True)
    monkeypatch.setattr("time.monotonic_ns", world.clock.monotonic_ns)
    monkeypatch.setattr("time.sleep", world.clock.sleep)
    return world


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run ``module.main()`` with ``args`` like Ansible would; returns the parsed JSON result.

    ``warnings`` in the result is turned into plain messages (ansible-core 2.19 sends structured ones).
    """

    def run(module, args, check_mode=False, diff=False):
        # Ansible does not pass options the task leaves out; None here means "left out".
        args = {k: v for k, v in args.items() if v is not None}
        args.update(_ansible_check_mode=check_mode, _ansible_diff=diff)
        ansible_warnings._global_warnings.clear()  # module-global in ansible-core; one run must not see another's
        # Once any test has imported controller code (the filter tests do), ansible-core routes module
        # warnings to the controller's display instead of the result; a module runs on a target.
        monkeypatch.setattr(ansible_internal, "is_controller", False)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
        return result

    return run
