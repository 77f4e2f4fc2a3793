"""playbooks/rebalance.yml and evacuate.yml against the real lab, in the order an operator meets them.

One pool for the module: hv1 carries two busy guests and an idle one, hv2 an idle one, hv3 nothing.
1. warm-up runs (max_migrations 0) record hv1's load until its overload has lasted max_over; an extra,
   unreachable hypervisor in the inventory is left out and named, the run goes on;
2. --check prints the plan a real run carries out and changes nothing (domains, state files, locks,
   reports);
3. the real run live-migrates a busy guest off hv1, which keeps ticking; the load spreads;
4. a second run right away moves nothing and reports changed=0;
   (a bad host mapping stops a run before it touches a host; the check run reads a good one);
5. a run started while another one holds the lock is refused and leaves the other one's lock alone;
6. evacuate.yml empties hv1; its guests keep running elsewhere.
The real runs carry secrets (a become password, a vault-like variable, a TLS private key): none shows in their
output or reports. A report directory a run creates, and its parent, are not readable by others.
Every claim is checked with virsh on the hosts, the hosts' files and the run's JSON report.
Wall times are printed as figures, not asserted.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
import time

import pytest

import rebalance_demo as demo

BUSY = ("rb-busy1", "rb-busy2")
IDLE_HV1, IDLE_HV2 = "rb-idle1", "rb-idle2"
STATE_FILE = "/var/lib/xen-drs/state.json"
LOCK_FILE = "/run/xen-drs/rebalance.lock"
MAX_WARM_UP_RUNS = 8


@pytest.fixture(scope="module")
def pool(lab, tmp_path_factory):
    """The loaded pool, its policy and a report directory; guests removed at the end."""
    try:
        loads = demo.load_pool(lab, prefix="rb-")
        policy = demo.demo_policy(*loads)
        print(f"\npolicy {policy}")
        yield {"policy": policy, "reports": tmp_path_factory.mktemp("reports"), "too_busy": demo.too_busy(*loads)}
    finally:
        for name in (*BUSY, IDLE_HV1, IDLE_HV2):
            if name in lab.state()["guests"]:
                lab.remove_guest(name)


def rebalance(lab, pool, playbook="rebalance.yml", policy=None, options=(), inventories=()):  # pylint: disable=redefined-outer-name
    """Run a playbook; returns (rc, output, wall seconds)."""
    cmd = demo.playbook_command(lab, playbook, pool["reports"], policy or pool["policy"], *options)
    for inventory in inventories:
        cmd[1:1] = ["-i", str(inventory)]
    started = time.monotonic()
    proc = lab.ctl(cmd, check=False, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def reports(pool):  # pylint: disable=redefined-outer-name
    return sorted(pool["reports"].glob("xen-drs-*"))


def host_files(lab, paths=(STATE_FILE, LOCK_FILE)):
    """sha256 of every hypervisor's state file and lock file (None when absent)."""
    digests = {}
    for host in lab.hypervisors:
        for path in paths:
            proc = lab.host_exec(host, ["cat", path], check=False)
            digests[(host, path)] = hashlib.sha256(proc.stdout.encode()).hexdigest() if proc.returncode == 0 else None
    return digests


def ticks(lab, host, guest):
    found = re.findall(r"^tick (\d+)$", lab.console(host, guest), re.MULTILINE)
    return int(found[-1]) if found else 0


def skip_if_too_busy(pool):  # pylint: disable=redefined-outer-name
    """The load-driven steps need a second busy guest to add load; a crowded machine cannot show that."""
    if pool["too_busy"]:
        pytest.skip(pool["too_busy"])


def host_entry(report, name):
    return next(h for h in report["hosts"] if h["name"] == name)


def test_warm_up_records_load_and_leaves_an_unreachable_host_out(lab, pool, tmp_path):
    skip_if_too_busy(pool)
    unreachable = tmp_path / "unreachable.yml"
    unreachable.write_text(json.dumps({"hypervisors": {"hosts": {"hv9": {
        "ansible_host": f"{lab.subnet_prefix}.99", "ansible_ssh_common_args": "-o ConnectTimeout=3"}}}}))
    warm_up = dict(pool["policy"], max_migrations=0)
    for attempt in range(1, MAX_WARM_UP_RUNS + 1):
        rc, output, wall = rebalance(lab, pool, policy=warm_up, inventories=[unreachable])
        assert rc == 0, output[-4000:]
        report = demo.newest_report(pool["reports"])
        hv1 = host_entry(report, "hv1")
        print(f"warm-up run {attempt}: {wall:.1f} s, hv1 load {hv1['load']:.2f}, {hv1['status']}: "
              f"{'; '.join(hv1['reasons'])}")
        assert [h["host"] for h in report["left_out"]] == ["hv9"]
        assert report["left_out"][0]["reason"].startswith("unreachable")
        assert sorted(h["name"] for h in report["hosts"]) == ["hv1", "hv2", "hv3"]
        assert report["migrations"] == [] and demo.placement(lab)[BUSY[0]] == "hv1"
        if hv1["overloaded"]:
            break
    else:
        pytest.fail(f"hv1 not judged overloaded for max_over after {MAX_WARM_UP_RUNS} runs")
    assert "hv9" in output and "left out" in output


def test_a_bad_host_mapping_stops_the_run_before_any_host_is_touched(lab, pool, tmp_path):
    mapping = tmp_path / "host_mapping.csv"
    mapping.write_text(f"host,address\nhv1,{lab.address('hv1')}\nhv1,{lab.address('hv2')}\n")
    before = (demo.placement(lab), host_files(lab), reports(pool))
    rc, output, _wall = rebalance(lab, pool, options=("--extra-vars", json.dumps({"xen_drs_host_mapping": str(mapping)})))
    assert rc != 0
    assert f"host_mapping {mapping} line 3: host 'hv1' is mapped twice (first on line 2)" in output, output[-4000:]
    assert (demo.placement(lab), host_files(lab), reports(pool)) == before


def test_the_report_directory_a_run_creates_is_not_readable_by_others(lab, pool, tmp_path):
    """The report directory does not exist yet, nor its parent: the run creates both 0750 (whatever the umask),
    its reports 0640."""
    reports_dir = tmp_path / "log" / "xen-drs"
    rc, output, _wall = rebalance(lab, pool, policy=dict(pool["policy"], max_migrations=0), options=(
        "--extra-vars", json.dumps({"xen_drs_report_dir": str(reports_dir)})))
    assert rc == 0, output[-4000:]
    assert {d.name: oct(stat.S_IMODE(d.stat().st_mode)) for d in (reports_dir.parent, reports_dir)} == {
        "log": "0o750", "xen-drs": "0o750"}
    written = list(reports_dir.iterdir())
    assert len(written) == 2 and {oct(stat.S_IMODE(f.stat().st_mode)) for f in written} == {"0o640"}


def test_check_mode_prints_the_plan_and_changes_nothing(lab, pool, tmp_path):
    skip_if_too_busy(pool)
    before = (demo.placement(lab), host_files(lab), reports(pool))
    # the migration addresses from a host mapping (the lab's own addresses), read like a user's file
    mapping = tmp_path / "host_mapping.csv"
    mapping.write_text("# migration network\nhost,address\n" + "".join(f"{h},{lab.address(h)}\n" for h in lab.hypervisors))
    rc, output, wall = rebalance(lab, pool, options=("--check", "--diff", "--extra-vars",
                                                     json.dumps({"xen_drs_host_mapping": str(mapping)})))
    print(f"check-mode run: {wall:.1f} s")
    assert rc == 0, output[-4000:]
    assert "check mode: nothing will be changed" in output
    planned = re.findall(r"^\s+\"\s+\d+\s+\d+\s+(\S+)\s+hv1 -> (hv\d)", output, re.MULTILINE)
    assert planned and planned[0][0] in BUSY, output[-4000:]
    assert "would migrate" in output
    assert (demo.placement(lab), host_files(lab), reports(pool)) == before


def run_and_report(run, report_dir, label):
    """Run a playbook that must succeed; print its wall time, figures and moves. Returns (report, output)."""
    rc, output, wall = run()
    assert rc == 0, output[-4000:]
    report = demo.newest_report(report_dir)
    print(f"{label}: {wall:.1f} s wall; report figures {report['figures']}; moves "
          f"{[(m['vm'], m['source'], m['destination'], m['job'].get('downtime_ms')) for m in demo.moved(report)]}")
    return report, output


# Secrets an inventory may hold for a rebalance: none may show in the run's output or its reports. (No
# ansible_password: set, it makes the ssh connection want sshpass, and the lab logs in with keys.) The
# collection takes no TLS key itself (libvirt's TLS transport reads its keys from files on the hypervisors),
# but a pool's inventory may keep one for the roles that install them, so every run carries it: a PEM key,
# looked for by its body line too, which a leak shows whether raw or JSON-escaped.
TLS_KEY_BODY = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCxdrsTlsProbe7f3a"
SECRETS = {"ansible_become_password": "become-Pa55-9c2d", "xen_drs_vault_probe": "vault-Pa55-41ab",
           "xen_drs_lab_tls_server_key": f"-----BEGIN PRIVATE KEY-----\n{TLS_KEY_BODY}\n-----END PRIVATE KEY-----\n"}
LEAK_MARKS = [*SECRETS.values(), TLS_KEY_BODY]


def secrets_file(directory):
    """The secrets as an extra-vars file; returns the options that pass it."""
    path = directory / "secrets.json"
    path.write_text(json.dumps(SECRETS))
    return ("--extra-vars", f"@{path}")


def assert_no_secret(output, report_dir, run_id):
    """No secret in the run's output or in its JSON and HTML reports."""
    written = [f.read_text(errors="replace") for f in report_dir.glob(f"xen-drs-{run_id}.*")]
    assert len(written) == 2, written
    for secret in LEAK_MARKS:
        assert secret not in output and not any(secret in text for text in written), secret


def test_rebalance_moves_a_busy_guest_and_it_keeps_running(lab, pool, tmp_path):
    skip_if_too_busy(pool)
    ticks_before = {g: ticks(lab, "hv1", g) for g in BUSY}
    report, output = run_and_report(lambda: rebalance(lab, pool, options=secrets_file(tmp_path)),
                                    pool["reports"], "rebalance run")
    assert_no_secret(output, pool["reports"], report["run_id"])
    moves = demo.moved(report)
    assert len(moves) == 1 and moves[0]["vm"] in BUSY and moves[0]["verified"]
    moved, destination = moves[0]["vm"], moves[0]["destination"]
    placement = demo.placement(lab)
    assert placement[moved] == destination != "hv1"
    assert moved not in lab.virsh("hv1", "list", "--all", "--name").split()
    stayed = next(g for g in BUSY if g != moved)
    assert placement[stayed] == "hv1"
    # the guest's memory moved with it: its tick counter continues on the destination
    time.sleep(3)
    assert ticks(lab, destination, moved) > ticks_before[moved]
    assert "xdrs-guest: boot" not in lab.console(destination, moved)
    # both hosts hold the record; the spread shows in the report
    for host in ("hv1", destination):
        state = json.loads(lab.host_exec(host, ["cat", STATE_FILE]).stdout)
        assert any(r["vm"] == moved and r["destination"] == destination for r in state["migrations"])
    assert report["load_after"]["hv1"] < host_entry(report, "hv1")["load"]
    assert report["load_after"][destination] > host_entry(report, destination)["load"]
    html = (pool["reports"] / f"xen-drs-{report['run_id']}.html").read_text()
    assert moved in html and 'class="bar after"' in html
    # nothing the run wrote is readable by others: reports 0640, the state file 0600 (this report directory
    # is the lab's; a directory the run creates is checked by test_the_report_directory_a_run_creates_...)
    assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in pool["reports"].glob(f"xen-drs-{report['run_id']}.*")} == {"0o640"}
    assert lab.host_exec("hv1", ["stat", "-c", "%a", STATE_FILE]).stdout.strip() == "600"


def expect_nothing_to_do(lab, run, report_dir):
    """Run again right away: no migration, changed=0 on every host, placement unchanged. Returns the report."""
    placement = demo.placement(lab)
    report, output = run_and_report(run, report_dir, "second run")
    assert report["migrations"] == [] and report["outcomes"] == []
    assert demo.recap_changed(output) == {"hv1": 0, "hv2": 0, "hv3": 0, "localhost": 0}
    assert demo.placement(lab) == placement
    return report


def test_second_run_moves_nothing(lab, pool):
    skip_if_too_busy(pool)
    expect_nothing_to_do(lab, lambda: rebalance(lab, pool), pool["reports"])


def test_a_run_is_refused_while_another_holds_the_lock(lab, pool):
    slow = demo.playbook_command(lab, "rebalance.yml", pool["reports"], pool["policy"],
                                 "--extra-vars", '{"xen_drs_sample_seconds": 40}')
    first = subprocess.Popen(lab._enter("ctl") + slow, env=lab.ctl_env(), cwd=str(demo.REPO),  # pylint: disable=protected-access
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not all(lab.host_exec(h, ["test", "-e", LOCK_FILE], check=False).returncode == 0
                      for h in lab.hypervisors):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never held the locks"
            time.sleep(0.5)
        held = host_files(lab, [LOCK_FILE])
        placement = demo.placement(lab)
        rc, output, wall = rebalance(lab, pool)
        print(f"refused run: {wall:.1f} s")
        assert rc != 0
        assert "refusing to run" in output and "held by run" in output
        assert first.poll() is None, "the first run ended before the second one was refused"
        assert host_files(lab, [LOCK_FILE]) == held  # the first run's locks are untouched
        assert demo.placement(lab) == placement
    finally:
        first_output = first.communicate(timeout=600)[0]
    assert first.returncode == 0, first_output[-4000:]
    assert all(lab.host_exec(h, ["test", "-e", LOCK_FILE], check=False).returncode != 0 for h in lab.hypervisors)


def test_evacuate_empties_the_host_and_guests_keep_running(lab, pool, tmp_path):
    on_hv1 = lab.virsh("hv1", "list", "--name").split()
    assert on_hv1, "nothing left on hv1 to evacuate"
    ticks_before = {g: ticks(lab, "hv1", g) for g in on_hv1}
    # room for everything that leaves hv1 (the lab's hosts have 2 CPUs between them all)
    roomy = dict(pool["policy"], load_threshold=0.95, max_load_candidate=0.95)
    # the evacuation carries the secrets too (it runs whatever the machine's load, unlike the rebalance above)
    rc, output, wall = rebalance(lab, pool, "evacuate.yml", policy=roomy,
                                 options=("--extra-vars", "xen_drs_evacuate=hv1", *secrets_file(tmp_path)))
    report = demo.newest_report(pool["reports"])
    print(f"evacuate run: {wall:.1f} s wall; moved {[(m['vm'], m['destination']) for m in demo.moved(report)]}")
    assert rc == 0, output[-4000:]
    assert_no_secret(output, pool["reports"], report["run_id"])
    assert lab.virsh("hv1", "list", "--name").split() == []
    placement = demo.placement(lab)
    time.sleep(3)
    for guest in on_hv1:
        assert placement[guest] in ("hv2", "hv3")
        assert ticks(lab, placement[guest], guest) > ticks_before[guest]
