"""Shadow mode, metrics and the history export on the real lab (issue 11, sections 2 and 4).

One idle guest on hv1 and a policy with hv1 in maintenance, so every plan moves it (whatever the
machine's load). In order:
1. playbooks/shadow.yml records a sample on every hypervisor, plans the move, moves nothing, appends
   the plan to the shadow log on every hypervisor and writes the metrics file, whose values are the
   run's JSON report's;
2. playbooks/export_history.yml collects the hypervisors' history into one file without changing
   any file on them: the hosts' real sizes, the guest's archived load, the shadow run;
3. playbooks/whatif.yml replays that export with the hosts' real sizes and shows its shadow log;
4. headless chromium opens that whatif.html: the shadow table shows the run's move, with no console error
   and no network request.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest

import rebalance_demo as demo
from test_whatif import OUTPUT, assert_clean, needs_chromium, open_in_browser

# the units' small Prometheus text parser (a plain module there; not importable as a package here)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "plugins" / "modules"))
from prometheus_text import parse, value  # noqa: E402  pylint: disable=wrong-import-position

GUEST = "sh-idle1"
STATE_FILE = "/var/lib/xen-drs/state.json"
SHADOW_LOG = "/var/lib/xen-drs/shadow.json"
POLICY = {"maintenance": ["hv1"]}


def host_json(lab, host, path):
    proc = lab.host_exec(host, ["cat", path], check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def digests(lab, paths=(STATE_FILE, SHADOW_LOG)):
    out = {}
    for host in lab.hypervisors:
        for path in paths:
            proc = lab.host_exec(host, ["cat", path], check=False)
            out[(host, path)] = hashlib.sha256(proc.stdout.encode()).hexdigest() if proc.returncode == 0 else None
    return out


def run(lab, playbook, report_dir, **extra):
    cmd = demo.playbook_command(lab, playbook, report_dir, POLICY, "--extra-vars",
                                json.dumps(dict({"xen_drs_sample_seconds": 1}, **extra)))
    started = time.monotonic()
    proc = lab.ctl(cmd, check=False, timeout=600)
    output = proc.stdout + proc.stderr
    print(f"{playbook}: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def shadow_run(lab, tmp_path_factory):
    """The guest, the files before, one shadow run; returns what the tests need."""
    reports = tmp_path_factory.mktemp("shadow")
    lab.start_guests({"hv1": {GUEST: "idle"}})
    try:
        before = {h: host_json(lab, h, STATE_FILE) or {"samples": []} for h in lab.hypervisors}
        logs_before = {h: (host_json(lab, h, SHADOW_LOG) or {"entries": []})["entries"] for h in lab.hypervisors}
        metrics = reports / "textfile" / "xen_drs.prom"
        started = time.time()
        output = run(lab, "shadow.yml", reports, xen_drs_metrics_file=str(metrics))
        yield {"reports": reports, "before": before, "logs_before": logs_before, "output": output,
               "report": demo.newest_report(reports), "metrics": metrics, "started": started}
    finally:
        lab.remove_guest(GUEST)


def test_a_shadow_run_records_samples_plans_and_moves_nothing(lab, shadow_run):  # pylint: disable=redefined-outer-name
    report = shadow_run["report"]
    assert report["mode"] == "shadow" and report["shadow"] is True and report["outcomes"] == []
    planned = [m for m in report["migrations"] if m["vm"] == GUEST]
    assert planned and planned[0]["source"] == "hv1" and planned[0]["reason"], report["migrations"]
    assert demo.placement(lab)[GUEST] == "hv1"  # nothing moved
    assert "shadow run: nothing will move" in shadow_run["output"]
    for host in lab.hypervisors:
        state = host_json(lab, host, STATE_FILE)
        # a sample was recorded during the run, as a real run does (--check records none)
        assert state["samples"][-1][0] >= shadow_run["started"]
        assert len(state["samples"]) > len(shadow_run["before"][host]["samples"]) or len(state["samples"]) >= 1000
        # the archive (state version 3) knows the host's size and the guest
        assert state["version"] == 3 and state["archive"]["host"]["cpus"] == report_host(report, host)["cpus"]
        log = host_json(lab, host, SHADOW_LOG)["entries"]
        assert len(log) == len(shadow_run["logs_before"][host]) + 1
        entry = log[-1]
        assert entry["run_id"] == report["run_id"] and entry["mode"] == "shadow"
        assert entry["hosts"] == {h["name"]: h["load"] for h in report["hosts"]}
        assert [m["vm"] for m in entry["moves"]] == [m["vm"] for m in report["migrations"]]
        assert entry["moves"][0]["reason"] == report["migrations"][0]["reason"]
    assert GUEST in {d["name"] for d in host_json(lab, "hv1", STATE_FILE)["archive"]["domains"].values()}


def report_host(report, name):
    return next(h for h in report["hosts"] if h["name"] == name)


def test_the_metrics_file_holds_the_reports_figures(shadow_run):  # pylint: disable=redefined-outer-name
    report, path = shadow_run["report"], shadow_run["metrics"]
    assert [p.name for p in path.parent.iterdir()] == ["xen_drs.prom"]  # no temporary file left
    samples, types = parse(path.read_text())
    assert set(types.values()) == {"gauge"}
    mode = {"mode": "shadow"}
    for host in report["hosts"]:
        assert value(samples, "xen_drs_host_load", host=host["name"], **mode) == host["load"]
    assert value(samples, "xen_drs_migrations_planned", **mode) == len(report["migrations"]) >= 1
    assert value(samples, "xen_drs_migrations_done", **mode) == 0
    assert value(samples, "xen_drs_run_shadow", **mode) == 1
    assert value(samples, "xen_drs_hosts_left_out", **mode) == len(report["left_out"]) == 0
    assert value(samples, "xen_drs_run_duration_seconds", **mode) == report["figures"]["wall_seconds"] > 0


@pytest.fixture(scope="module")
def exported(lab, shadow_run, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """export_history.yml over the lab (with the files' digests before and after), then whatif.yml on the export."""
    work = tmp_path_factory.mktemp("export")
    export_file = work / "history.json"
    before = digests(lab)
    output = run(lab, "export_history.yml", work, xen_drs_export_file=str(export_file))
    after = digests(lab)
    whatif_dir = work / "whatif"
    cmd = ["ansible-playbook", "-i", "localhost,", str(demo.PLAYBOOKS / "whatif.yml"), "--extra-vars", json.dumps(
        {"xen_drs_whatif_trace": str(export_file), "xen_drs_whatif_report_dir": str(whatif_dir),
         "xen_drs_policy": {"max_migrations": 2}})]
    proc = lab.ctl(cmd, check=False, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return {"file": export_file, "output": output, "unchanged": before == after, "whatif": whatif_dir}


def test_export_collects_the_history_read_only_and_whatif_replays_it(shadow_run, exported):  # pylint: disable=redefined-outer-name
    report, export_file = shadow_run["report"], exported["file"]
    assert exported["unchanged"], "the export changed a file on a hypervisor"
    assert "shadow run(s)" in exported["output"]
    export = json.loads(export_file.read_text())
    assert export["format"] == "xen.drs.history" and export["problems"] == []
    sizes = {h["name"]: (h["cpus"], h["memory_mb"]) for h in export["hosts"]}
    assert {name: cpus for name, (cpus, _memory) in sizes.items()} == {h["name"]: h["cpus"] for h in report["hosts"]}
    assert all(memory > 0 for _cpus, memory in sizes.values())
    guest = next(d for d in export["domains"] if d["name"] == GUEST)
    assert "hv1" in guest["history"] and guest["history"]["hv1"]["v"][-1] is not None
    assert report["run_id"] in {e["run_id"] for e in export["shadow"]}

    whatif_dir = exported["whatif"]
    whatif = json.loads((whatif_dir / "whatif.json").read_text())
    assert {h["name"]: (h["cpus"], h["memory_mb"]) for h in whatif["scenario"]["hosts"]} == sizes
    assert whatif["trace"]["vms"] == len(export["domains"])
    assert [e["run_id"] for e in whatif["shadow"]["entries"]] == [e["run_id"] for e in export["shadow"]]
    html = (whatif_dir / "whatif.html").read_text()
    assert "What it would have done" in html and report["migrations"][0]["reason"].split(" ")[0] in html
    print(f"export: {export_file.stat().st_size} bytes, {len(export['domains'])} domain(s), "
          f"{len(export['shadow'])} shadow run(s); replay {whatif['scenario']['steps']} step(s)")


@needs_chromium
def test_the_shadow_log_shows_in_a_browser(shadow_run, exported):  # pylint: disable=redefined-outer-name
    """whatif.html of the lab's own export, opened in headless chromium: the shadow table shows this run's move."""
    report = shadow_run["report"]
    findings = open_in_browser(exported["whatif"] / "whatif.html", OUTPUT / "whatif-shadow.png")
    assert_clean(findings)
    shadow = [t for t in findings["tables"] if t["cls"] == "shadow"]
    assert len(shadow) == 1 and shadow[0]["width"] >= 400 and shadow[0]["height"] >= 40, shadow
    rows = shadow[0]["rows"]
    move = report["migrations"][0]
    mine = [row for row in rows if report["run_id"] in row]
    assert len(mine) == 1, rows
    assert f"{move['vm']} {move['source']} \u2192 {move['destination']}: {move['reason']}" in mine[0], mine[0]
    assert all(f"{host['name']} {host['load']:.2f}" in mine[0] for host in report["hosts"]), mine[0]
