"""ansible-playbook as a lab's controller, for the libvirt lab's and the Xen lab's tests alike.

``lab`` is a tests/lab ``Lab`` or a tests/xenlab ``XenLab``: both have ``inventory_path`` and
``ctl(cmd, check=, timeout=, env=)``, which runs a command where the lab's hosts are reachable.
"""

from __future__ import annotations

import json
from pathlib import Path


def run_playbook(lab, playbook, extra_vars: dict | None = None, check: bool = False,
                 timeout: float = 900) -> tuple[int, str, dict | None]:
    """ansible-playbook from the lab's controller; stdout is the ansible.posix.json callback's.

    Returns (rc, stdout + stderr, the parsed JSON or None if stdout is not JSON, e.g. a syntax error).
    """
    cmd = ["ansible-playbook", "-i", str(lab.inventory_path), str(Path(playbook).resolve())]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if check:
        cmd += ["--check", "--diff"]
    proc = lab.ctl(cmd, check=False, timeout=timeout, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result = None
    return proc.returncode, proc.stdout + proc.stderr, result


def task_results(result: dict, task_name: str) -> dict[str, dict]:
    """{host: result} of the task called ``task_name`` in ansible.posix.json output."""
    for play in result["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == task_name:
                return task["hosts"]
    raise KeyError(f"no task named {task_name!r} in the playbook's output")
