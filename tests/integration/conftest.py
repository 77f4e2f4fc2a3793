"""Integration tests run against a real lab (tests/lab): libvirtd hypervisors, tgt iSCSI, ssh.

Fixtures and helpers for every integration test:

* ``lab`` (session): a lab named ``xt<pid>`` with 3 hypervisors and no guests, brought up once and
  torn down at the end of the session, also when tests fail. Skipped (with the reason) only when
  not running as root or when libvirtd is not installed.
* ``make_guests`` (function): ``make_guests({"hv1": {"busy1": "busy"}})`` starts guests and removes
  them (wherever they migrated to) when the test ends, so tests can share the session's lab.
* ``run_playbook(lab, playbook, extra_vars=None, check=False)``: runs ansible-playbook from the
  lab's controller, over ssh, with the lab's inventory; returns (rc, stdout, parsed JSON or None).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
sys.path.insert(0, str(REPO / "tests"))

import lab as lab_lib  # noqa: E402  pylint: disable=wrong-import-position
from ansible_run import run_playbook, task_results  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


def lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, bridges, mounts)"
    if not shutil.which("libvirtd"):
        return "libvirtd is not installed (bash scripts/setup installs the lab's packages)"
    return None


@pytest.fixture(scope="session")
def lab():
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    # The PID makes the name unique among live sessions; a lab by that name is a crashed one's.
    the_lab = lab_lib.Lab(f"xt{os.getpid()}", hosts=3)
    the_lab.down()
    # A CI timeout sends SIGTERM: turn it into an interrupt, so the lab still comes down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = time.monotonic()
        the_lab.up()
        print(f"\nlab {the_lab.name}: up in {time.monotonic() - started:.1f} s")
        yield the_lab
    finally:
        print(f"\nlab {the_lab.name}: down in {the_lab.down():.1f} s")
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def make_guests(lab):  # pylint: disable=redefined-outer-name
    made: list[str] = []

    def start(spec: dict[str, dict[str, str]]) -> list[str]:
        # Recorded first: if one fails to start, the others are still removed.
        made.extend(name for guests in spec.values() for name in guests)
        lab.start_guests(spec)
        return list(made)

    yield start
    for name in made:
        lab.remove_guest(name)


def pytest_terminal_summary(terminalreporter):
    """The fault table of test_faults.py, when its tests ran: faults injected, guests checked, lost, twice;
    and the fault tests that failed before their guests were checked (they are in no row)."""
    rows = getattr(sys.modules.get("test_faults"), "FAULT_TABLE", [])
    checked = {row.test for row in rows}
    unchecked = sorted({report.nodeid for outcome in ("failed", "error")
                        for report in terminalreporter.stats.get(outcome, [])
                        if "test_faults.py::" in report.nodeid and report.nodeid not in checked})
    if not rows and not unchecked:
        return
    write = terminalreporter.write_line
    for nodeid in unchecked:
        write(f"fault test failed before its guests were checked (not in the table): {nodeid}")
    write("")
    write(f"fault table: {len(rows)} fault(s) injected, {sum(r.guests_checked for r in rows)} guest(s) checked, "
          f"{sum(r.lost for r in rows)} lost (must be 0), {sum(r.twice for r in rows)} running twice (must be 0)")
    write(f"  {'FAULT':58} {'GUESTS':>6} {'LOST':>4} {'TWICE':>5}  OUTCOME")
    for row in rows:
        write(f"  {row.fault:58} {row.guests_checked:>6} {row.lost:>4} {row.twice:>5}  {row.outcome}")
