"""replay.history: an export of playbooks/export_history.yml (filter history_export) as a trace and its hosts."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.xen.drs.plugins.filter.history_export import history_export
from ansible_collections.xen.drs.plugins.module_utils import _state
from ansible_collections.xen.drs.plugins.plugin_utils import replay

HV1, HV2 = dict(name="hv1", cpus=6, memory_mb=32768), dict(name="hv2", cpus=12, memory_mb=65536)


def state_file(host, domains, start, loads):
    archive = {}
    for step, load in enumerate(loads):
        archive = _state.archive_add(archive, start + step * 300, host, load, 0.5,
                                     [dict(d, cpu=d["cpus"][step]) for d in domains if d["cpus"][step] is not None])
    text = json.dumps({"version": 3, "samples": [], "archive": archive, "migrations": []})
    return base64.b64encode(text.encode()).decode()


def running(uuid, name, cpus, memory_mb=1024):
    return dict(uuid=uuid, name=name, state="running", cpu_measured=True, memory_mb=memory_mb, vcpus=1, cpus=cpus)


def export():
    start = 1_764_000_000
    # web1 runs on hv1 for two steps, then (migrated) on hv2 for two; db1 stays on hv2
    hv1 = state_file(HV1, [running("u-web", "web1", [0.5, 0.75, None, None])], start, [0.1, 0.1, 0.0, 0.0])
    hv2 = state_file(HV2, [running("u-web", "web1", [None, None, 1.0, 1.25]),
                           running("u-db", "db1", [2.0, 2.0, 2.0, 2.0], 4096)], start, [0.2] * 4)
    return history_export([{"host": "hv1", "state": hv1}, {"host": "hv2", "state": hv2},
                           {"host": "hv3", "problem": "unreachable: no route"}], 1.0)


def test_an_export_replays_with_the_real_host_sizes(tmp_path):
    document = export()
    assert document["problems"] == [{"host": "hv3", "problem": "unreachable: no route"}]
    path = tmp_path / "history.json"
    path.write_text(json.dumps(document))
    history = replay.read_history(str(path))
    vms = {vm.name: vm for vm in history.trace.vms}
    assert history.trace.steps == 4 and history.start == 1_764_000_000 - 1_764_000_000 % 300
    assert vms["web1"].percent == (50.0, 75.0, 100.0, 125.0) and vms["web1"].host == "hv1"
    assert vms["db1"].percent == (200.0,) * 4 and vms["db1"].host == "hv2" and vms["db1"].memory_mb == 4096
    assert {n: (h.cpus, h.memory_mb) for n, h in history.hosts.items()} == {"hv1": (6, 32768), "hv2": (12, 65536)}
    scenario = replay.preset("placed").scenario(history.trace, start=history.start, hosts=history.hosts)
    assert {h.name: h.cpus for h in scenario.hosts} == {"hv1": 6, "hv2": 12}  # not the CSV traces' 8


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(format="other"), "field format: not a xen.drs.history export, got 'other'"),
    (lambda d: d["hosts"][0].update(cpus="six"), "field hosts[0].cpus: must be a number > 0, got 'six'"),
    (lambda d: d["domains"][0].update(memory_mb=0), "field domains[0].memory_mb: must be a number > 0, got 0"),
    (lambda d: d["domains"][0]["history"]["hv2"]["v"].__setitem__(0, -1),
     "field domains[0].history.hv2.v[0]: must be a number >= 0, got -1"),
    (lambda d: d["domains"][0]["history"].update(hv9=d["domains"][0]["history"]["hv2"]),
     "field domains[0].history: names a host without size in 'hosts', got 'hv9'"),
])
def test_a_bad_export_names_the_file_the_field_and_the_value(tmp_path, change, words):
    document = export()
    change(document)
    path = tmp_path / "history.json"
    path.write_text(json.dumps(document))
    with pytest.raises(replay.HistoryError) as error:
        replay.read_history(str(path))
    assert str(error.value) == f"{path}, {words}"
