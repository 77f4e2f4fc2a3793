# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.whatif: replay a trace through the placement policy, on the controller (docs in modules/whatif.py).

An action plugin, not a module: the replay runs the planner of plugins/plugin_utils/placement, which a
module (shipped to a target with module_utils only) could not import, and it needs no target at all.
This plugin only validates its arguments, reads the trace, calls replay.run_whatif with placement.plan
and prints progress; every error of the library becomes a failed task with the library's message.
"""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import NoLogError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.xen.drs.plugins.plugin_utils import placement, replay

display = Display()

ARGUMENT_SPEC = dict(
    trace=dict(type="path", required=True),
    policy=dict(type="dict", default={}),
    variants=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        policy=dict(type="dict", default={}),
    )),
    preset=dict(type="str", choices=sorted(replay.PRESETS)),
    progress_seconds=dict(type="float", default=15),
    shadow_log=dict(type="path"),
)


def validated(task_args):
    """The arguments with their defaults; AnsibleActionFail naming every bad one (ActionBase's
    validate_argument_spec reports only the first error, which for a bad list element is a no_log
    check's message that names no option)."""
    validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(task_args)
    errors = [error for error in validation.errors if not isinstance(error, NoLogError)] or list(validation.errors)
    if errors:
        raise AnsibleActionFail("whatif: " + "; ".join(str(error) for error in errors))
    return dict(task_args, **validation.validated_parameters)


class Progress:
    """Prints ``whatif: done/total steps (variant NAME), elapsed`` at most every ``every`` seconds and
    when a variant ends; ``say`` is the printer (Display.display in a playbook)."""

    def __init__(self, say, every, steps_per_variant, clock=time.monotonic):
        self.say, self.every, self.steps = say, every, steps_per_variant
        self.clock = clock
        self.last = clock()

    def __call__(self, done, total, name, elapsed):
        now = self.clock()
        variant_done = done % self.steps == 0
        if variant_done or (self.every > 0 and now - self.last >= self.every):
            self.last = now
            self.say(f"whatif: {done}/{total} steps ({'done' if variant_done else 'at'} variant {name!r}), "
                     f"{elapsed:.1f} s elapsed")


class ActionModule(ActionBase):
    """Replays on the controller; never connects to the target."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        args = validated(self._task.args)
        path = os.path.abspath(args["trace"])
        options, shadow_path = {}, args["shadow_log"] and os.path.abspath(args["shadow_log"])
        try:
            with open(path, encoding="utf-8-sig") as handle:
                export = replay.looks_like_export(handle.read(64))
            if export:  # playbooks/export_history.yml's file: the pool's own history, hosts and shadow log
                history = replay.read_history(path)
                trace = history.trace
                options = dict(hosts=history.hosts, start=history.start)
                if history.shadow and not shadow_path:
                    options["shadow"] = {"source": path, "entries": list(history.shadow)}
            else:
                trace = replay.read_trace(path)
            if shadow_path:
                options["shadow"] = {"source": shadow_path, "entries": replay.read_shadow_log(shadow_path)}
        except OSError as error:
            which = ("shadow_log", shadow_path) if shadow_path and error.filename == shadow_path else ("trace", path)
            return dict(result, failed=True, msg=f"whatif: {which[0]} {which[1]}: cannot read it: {error.strerror or error}")
        except (UnicodeDecodeError, replay.TraceError, replay.HistoryError) as error:
            return dict(result, failed=True, msg=f"whatif: {error}")
        progress = Progress(display.display, args["progress_seconds"], trace.steps)
        display.display(f"whatif: {path}: {len(trace.vms)} VMs, {trace.steps} steps, "
                        f"{1 + len(args['variants'])} run(s)")
        try:
            document = replay.run_whatif(trace, placement.plan, placement.DEFAULTS, policy=args["policy"],
                                         variants=args["variants"], preset=args["preset"], progress=progress,
                                         **options)
        except ValueError as error:  # WhatifError, PresetError, ScenarioError, ReplayError, PlacementError
            return dict(result, failed=True, msg=f"whatif: {error}")
        result.update(changed=False, whatif=document)
        return result
