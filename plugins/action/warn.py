# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.warn: show a warning in the run's output, on the controller (docs in modules/warn.py).

ansible-core has no task that warns: ansible.builtin.debug prints an ordinary task result (easy to miss, and
not counted as a warning by anything that reads the output), ansible.builtin.fail stops the host. This plugin
shows its message through Ansible's own warning display, the ``[WARNING]:`` lines modules' warnings use, and
changes nothing.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

ARGUMENT_SPEC = dict(msg=dict(type="str", required=True))


class ActionModule(ActionBase):
    """Show ``msg`` as a warning, naming the host it is about."""

    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            raise AnsibleActionFail(f"xen.drs.warn: {'; '.join(validation.error_messages)}")
        msg = validation.validated_parameters["msg"].strip()
        if not msg:
            raise AnsibleActionFail("xen.drs.warn: msg must not be empty")
        display.warning(f"{(task_vars or {}).get('inventory_hostname', 'localhost')}: {msg}")
        result.update(changed=False, msg=msg)
        return result
