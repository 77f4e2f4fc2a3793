# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.hypervisor_info on the controller side: with the option ``lock``, the run lock is taken in the same
module run that measures, and this plugin does for it what the run_lock action plugin does for run_lock: it
names the ansible-playbook process that holds the lock (``lock.controller``) and takes over the lock of a dead
run of this control node (``lock.take_over``), never a live run's. Docs: modules/hypervisor_info.py.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.xen.drs.plugins.action.run_lock import run_taking_over

display = Display()


class ActionModule(ActionBase):
    """Measure through the module, taking the run lock first when asked to (see run_lock's action plugin)."""

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)

        def execute(args):
            return self._execute_module(module_name="xen.drs.hypervisor_info", module_args=args, task_vars=task_vars)

        def warn(text):
            display.warning(f"{task_vars.get('inventory_hostname')}: {text}")

        return run_taking_over(execute, dict(self._task.args), warn, lock_key="lock")
