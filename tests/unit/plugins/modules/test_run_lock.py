"""run_lock: taking, refusing, releasing, stale take-over, check mode, and a real race between processes.

The module is run as Ansible runs it (a Python process reading its arguments from a JSON file), against
lock files in a temporary directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _run_lock
from ansible_collections.xen.drs.plugins.modules import run_lock

MODULE = run_lock.__file__
# The module imports the collection's module_utils (AnsiballZ ships them to a host): its process finds them
# where this test process found the collection.
MODULE_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
    MODULE[:MODULE.rindex(f"{os.sep}ansible_collections{os.sep}")], os.environ.get("PYTHONPATH")])))


def run_module(tmp_path, check_mode=False, diff=False, **args):
    """Run the module in a fresh process; returns its JSON result."""
    params = dict(args)
    params["_ansible_check_mode"] = check_mode
    params["_ansible_diff"] = diff
    args_file = tmp_path / f"args-{os.getpid()}-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    proc = subprocess.run([sys.executable, MODULE, str(args_file)], capture_output=True, text=True,
                          check=False, timeout=60, env=MODULE_ENV)
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout)
    # ansible-core 2.19 returns warnings as structured events; older ones as strings
    result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
    return result


@pytest.fixture(name="lock_path")
def fixture_lock_path(tmp_path):
    return tmp_path / "locks" / "rebalance.lock"


def read(path):
    return json.loads(path.read_text())


def test_acquire_creates_the_directory_and_a_json_lock(tmp_path, lock_path):
    before = time.time()
    result = run_module(tmp_path, owner="run-1", runner="cron on ctl", path=str(lock_path), ttl=600)
    assert result["changed"] and result["acquired"] and not result.get("failed")
    lock = read(lock_path)
    assert lock["owner"] == "run-1" and lock["runner"] == "cron on ctl"
    assert before <= lock["time"] <= time.time()
    assert lock["expires"] == pytest.approx(lock["time"] + 600)
    assert lock["pid"] > 0 and lock["host"]
    assert result["lock"] == lock
    assert oct(lock_path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(lock_path.stat().st_mode & 0o777) == "0o600"


def test_every_directory_the_lock_needs_is_created_0700_whatever_the_umask(tmp_path):
    lock_path = tmp_path / "run" / "xen-drs" / "rebalance.lock"
    old = os.umask(0o002)
    try:
        result = run_module(tmp_path, owner="run-1", path=str(lock_path))
    finally:
        os.umask(old)
    assert result["acquired"], result
    assert [oct(d.stat().st_mode & 0o777) for d in (lock_path.parent.parent, lock_path.parent)] == ["0o700", "0o700"]


def test_second_owner_is_refused_and_the_lock_is_untouched(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", runner="awx job 7", path=str(lock_path))
    first = lock_path.read_bytes()
    result = run_module(tmp_path, owner="run-2", path=str(lock_path))
    assert result["failed"] and not result["acquired"]
    assert "held by run run-1 (awx job 7)" in result["msg"]
    assert "refusing to start a second run" in result["msg"]
    assert result["holder"]["owner"] == "run-1"
    assert lock_path.read_bytes() == first


def test_same_owner_acquiring_again_renews_the_expiry_time(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", runner="cron on ctl", path=str(lock_path), ttl=600)
    first = read(lock_path)
    time.sleep(0.05)
    result = run_module(tmp_path, owner="run-1", path=str(lock_path), ttl=60)
    assert result["acquired"] and not result.get("failed")
    renewed = read(lock_path)
    assert renewed["expires"] == pytest.approx(renewed["renewed"] + 60) and renewed["renewed"] > first["renewed"]
    # the rest of the lock is the run's: when it was taken, by whom
    assert {k: v for k, v in renewed.items() if k not in ("renewed", "expires")} == \
        {k: v for k, v in first.items() if k not in ("renewed", "expires")}


CONTROLLER = {"host": "ctl1", "machine_id": "m4ch1ne", "boot_id": "b00t", "pid_ns": 4026531836, "pid": 4100, "start": 981234}


def test_the_controller_is_kept_in_the_lock_and_named_when_refused(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", path=str(lock_path), controller=CONTROLLER)
    assert read(lock_path)["controller"] == CONTROLLER
    refused = run_module(tmp_path, owner="run-2", path=str(lock_path))
    assert refused["failed"] and "by ansible-playbook pid 4100 on ctl1" in refused["msg"]


def test_take_over_takes_only_the_named_owners_lock(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", path=str(lock_path), ttl=3600)
    first = lock_path.read_bytes()
    refused = run_module(tmp_path, owner="run-3", path=str(lock_path), take_over="run-2")
    assert refused["failed"] and "refusing to start a second run" in refused["msg"]
    assert lock_path.read_bytes() == first  # a run that died is not a licence to take anyone's lock
    taken = run_module(tmp_path, owner="run-3", path=str(lock_path), take_over="run-1")
    assert taken["acquired"] and taken["changed"] and taken["holder"]["owner"] == "run-1"
    assert any("whose controller process is gone" in w and "run-1" in w for w in taken["warnings"])
    assert read(lock_path)["owner"] == "run-3"


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, lock_path):
    lock_path.parent.mkdir()
    lock_path.write_text(json.dumps({"owner": "crashed", "runner": None, "host": "hv1", "pid": 1,
                                     "time": time.time() - 100, "expires": time.time() - 1}))
    result = run_module(tmp_path, owner="run-2", path=str(lock_path))
    assert result["changed"] and result["acquired"]
    assert result["holder"]["owner"] == "crashed"
    assert any("stale" in w and "crashed" in w for w in result["warnings"])
    assert read(lock_path)["owner"] == "run-2"


def test_unreadable_lock_counts_as_held_until_ttl_after_it_was_written(tmp_path, lock_path):
    lock_path.parent.mkdir()
    lock_path.write_text("{half a lock")
    refused = run_module(tmp_path, owner="run-2", path=str(lock_path), ttl=60)
    assert refused["failed"] and "an unreadable lock" in refused["msg"]
    assert refused["holder"]["owner"] is None
    old = time.time() - 120
    os.utime(lock_path, (old, old))
    taken = run_module(tmp_path, owner="run-2", path=str(lock_path), ttl=60)
    assert taken["acquired"] and taken["changed"]
    assert read(lock_path)["owner"] == "run-2"


def test_release_by_owner_removes_the_lock(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", path=str(lock_path))
    result = run_module(tmp_path, owner="run-1", state="released", path=str(lock_path))
    assert result["changed"] and result["released"]
    assert not lock_path.exists()


def test_release_by_another_owner_leaves_the_lock_and_warns(tmp_path, lock_path):
    run_module(tmp_path, owner="run-1", path=str(lock_path))
    first = lock_path.read_bytes()
    result = run_module(tmp_path, owner="run-2", state="released", path=str(lock_path))
    assert not result["changed"] and not result["released"] and not result.get("failed")
    assert any("held by run run-1" in w for w in result["warnings"])
    assert lock_path.read_bytes() == first


def test_release_without_a_lock_is_a_no_op(tmp_path, lock_path):
    result = run_module(tmp_path, owner="run-1", state="released", path=str(lock_path))
    assert not result["changed"] and not result["released"] and not result.get("failed")


def test_check_mode_reports_and_writes_nothing(tmp_path, lock_path):
    would = run_module(tmp_path, check_mode=True, diff=True, owner="run-1", path=str(lock_path))
    assert would["changed"] and would["acquired"]
    assert not lock_path.parent.exists()

    run_module(tmp_path, owner="run-1", path=str(lock_path))
    first = lock_path.read_bytes()
    refused = run_module(tmp_path, check_mode=True, owner="run-2", path=str(lock_path))
    assert refused["failed"] and "held by run run-1" in refused["msg"]
    release = run_module(tmp_path, check_mode=True, diff=True, owner="run-1", state="released",
                         path=str(lock_path))
    assert release["changed"] and release["released"]
    assert release["diff"]["before"]["owner"] == "run-1" and release["diff"]["after"] == {}
    assert lock_path.read_bytes() == first


def test_diff_shows_the_lock_before_and_after(tmp_path, lock_path):
    result = run_module(tmp_path, diff=True, owner="run-1", path=str(lock_path))
    assert result["diff"]["before"] == {} and result["diff"]["after"]["owner"] == "run-1"
    plain = run_module(tmp_path, owner="run-1", path=str(lock_path))
    assert "diff" not in plain


@pytest.mark.parametrize("args, message", [
    ({"owner": "  "}, "owner must not be empty"),
    ({"owner": "run-1", "ttl": 0}, "ttl must be a positive number of seconds, got 0"),
    ({"owner": "run-1", "ttl": -3600}, "ttl must be a positive number of seconds, got -3600"),
    ({"owner": "run-1", "state": "held"}, "value of state must be one of: acquired, released, got: held"),
])
def test_bad_input_names_the_field_and_the_value(tmp_path, lock_path, args, message):
    result = run_module(tmp_path, path=str(lock_path), **args)
    assert result["failed"] and message in result["msg"]


def test_unusable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = run_module(tmp_path, owner="run-1", path=str(blocker / "rebalance.lock"))
    assert result["failed"] and f"cannot use lock file {blocker}/rebalance.lock" in result["msg"]


def test_racing_runs_over_a_stale_lock_exactly_one_wins(tmp_path, lock_path):
    lock_path.parent.mkdir()
    lock_path.write_text(json.dumps({"owner": "crashed", "runner": None, "host": "hv1", "pid": 1,
                                     "time": time.time() - 100, "expires": time.time() - 1}))
    owners = [f"run-{n}" for n in range(8)]
    with ThreadPoolExecutor(len(owners)) as pool:
        results = list(pool.map(lambda owner: run_module(tmp_path, owner=owner, path=str(lock_path)), owners))
    winners = [r for r in results if r.get("acquired")]
    assert len(winners) == 1, results
    assert all("held by run" in r["msg"] for r in results if r.get("failed"))
    assert read(lock_path)["owner"] == winners[0]["lock"]["owner"]


def test_describe_names_owner_runner_host_and_times():
    text = _run_lock.describe({"owner": "r1", "runner": "awx job 3", "host": "hv2",
                              "time": 0, "expires": 60})
    assert text == "r1 (awx job 3) on hv2, taken 1970-01-01T00:00:00Z, expires 1970-01-01T00:01:00Z"
