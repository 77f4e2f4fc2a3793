"""hypervisor_info against the fake libvirt: measurement, load, state file, errors."""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.xen.drs.plugins.modules import hypervisor_info
from ansible_collections.xen.drs.tests.unit.plugins.module_utils.fake_libvirt import SHUTOFF

URI = "qemu:///system"


@pytest.fixture
def host(fake):
    hv = fake.add_host(URI, "hv1.lab", cpus=4, memory_mb=8192, free_mb=3000)
    hv.add_domain("busy", "00000000-0000-0000-0000-000000000001", vcpus=2, memory_mb=256, cores_used=1.0)
    hv.add_domain("half", "00000000-0000-0000-0000-000000000002", memory_mb=128, cores_used=0.5)
    hv.add_domain("idle", "00000000-0000-0000-0000-000000000003", memory_mb=128, cores_used=0.0)
    return hv


def args(tmp_path, **extra):
    return dict(dict(uri=URI, name="hv1", sample_seconds=2, state_path=str(tmp_path / "state.json")), **extra)


def by_name(result):
    return {d["name"]: d for d in result["hypervisor"]["domains"]}


def test_measures_each_domain_and_the_host_load(host, tmp_path, run_module):
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed"), result
    hv = result["hypervisor"]
    assert (hv["name"], hv["uri"], hv["cpus"], hv["memory_mb"], hv["memory_free_mb"]) == ("hv1", URI, 4, 8192, 3000)
    domains = by_name(result)
    assert {n: d["cpu"] for n, d in domains.items()} == {"busy": 1.0, "half": 0.5, "idle": 0.0}
    assert domains["busy"] == dict(name="busy", uuid="00000000-0000-0000-0000-000000000001", state="running",
                                   vcpus=2, memory_mb=256, cpu=1.0, cpu_measured=True)
    assert hv["load"] == 0.375  # (1.0 + 0.5) / 4
    assert hv["maintenance"] is False
    assert result["changed"] is False


def test_reserved_cpus_are_taken_from_the_capacity(host, tmp_path, run_module):
    result = run_module(hypervisor_info, args(tmp_path, reserved_cpus=1))
    hv = result["hypervisor"]
    assert hv["load"] == 0.5  # 1.5 / (4 - 1)
    # the planner recomputes load as sum(cpu) / cpus: it must see the same capacity
    assert (hv["cpus"], hv["cpus_total"]) == (3, 4)
    assert round(sum(d["cpu"] for d in hv["domains"]) / hv["cpus"], 3) == hv["load"]


def test_name_defaults_to_the_libvirt_hostname(host, tmp_path, run_module):
    result = run_module(hypervisor_info, dict(args(tmp_path), name=None))
    assert result["hypervisor"]["name"] == "hv1.lab"


def test_the_uri_option_is_the_one_opened_read_only(host, fake, tmp_path, run_module):
    fake.add_host("xen:///system", "other")
    run_module(hypervisor_info, args(tmp_path))
    assert fake.opened == [(URI, True)]


def test_window_is_the_one_asked_for(host, fake, tmp_path, run_module):
    before = fake.clock.now_ns
    run_module(hypervisor_info, args(tmp_path, sample_seconds=0.5))
    assert fake.clock.now_ns - before == 500_000_000


def test_stopped_domains_are_listed_but_do_not_load_the_host(host, tmp_path, run_module):
    host.add_domain("off", "00000000-0000-0000-0000-000000000004", state=SHUTOFF, memory_mb=512)
    result = run_module(hypervisor_info, args(tmp_path))
    assert by_name(result)["off"]["state"] == "shutoff"
    assert by_name(result)["off"]["cpu"] == 0.0
    assert result["hypervisor"]["load"] == 0.375


def test_xen_domain_0_is_not_a_domain(host, tmp_path, run_module):
    host.add_domain("Domain-0", "00000000-0000-0000-0000-000000000000", cores_used=3.0, dom_id=0)
    result = run_module(hypervisor_info, args(tmp_path))
    assert "Domain-0" not in by_name(result)
    assert result["hypervisor"]["load"] == 0.375


def test_domains_appearing_or_leaving_during_the_window(host, fake, tmp_path, run_module):
    leaving = host.domains[0]

    def churn():
        host.domains.remove(leaving)
        host.add_domain("arrived", "00000000-0000-0000-0000-000000000009", cores_used=1.0)

    fake.clock.on_sleep.append(churn)
    result = run_module(hypervisor_info, args(tmp_path))
    domains = by_name(result)
    assert "busy" not in domains
    assert domains["arrived"]["cpu"] == 0.0 and domains["arrived"]["cpu_measured"] is False
    assert result["hypervisor"]["load"] == 0.125  # only "half" measured: 0.5 / 4


def test_restarted_domain_is_not_measured(host, fake, tmp_path, run_module):
    busy = host.domains[0]
    busy.cpu_time_offset = 10**12
    fake.clock.on_sleep.append(lambda: setattr(busy, "cpu_time_offset", 0))
    result = run_module(hypervisor_info, args(tmp_path))
    assert by_name(result)["busy"]["cpu_measured"] is False


def test_sample_is_recorded_and_old_ones_pruned(host, tmp_path, run_module):
    now = time.time()
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "samples": [[now - 7200, 0.9], [now - 600, 0.2]], "migrations": []}))
    result = run_module(hypervisor_info, args(tmp_path))
    samples = result["hypervisor"]["samples"]
    assert [load for _t, load in samples] == [0.2, 0.375]
    assert samples[-1][0] >= now
    assert json.loads(path.read_text())["samples"] == samples


def test_check_mode_measures_but_writes_nothing(host, tmp_path, run_module):
    result = run_module(hypervisor_info, args(tmp_path), check_mode=True)
    assert result["hypervisor"]["samples"][-1][1] == 0.375
    assert not (tmp_path / "state.json").exists()


def test_record_sample_false_writes_nothing(host, tmp_path, run_module):
    run_module(hypervisor_info, args(tmp_path, record_sample=False))
    assert not (tmp_path / "state.json").exists()


def test_corrupt_state_file_is_a_warning_and_a_fresh_start(host, tmp_path, run_module):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed")
    assert any("corrupt" in w and str(path) in w for w in result["warnings"])
    assert len(json.loads(path.read_text())["samples"]) == 1


def test_unwritable_state_file_is_a_warning(host, tmp_path, run_module):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_module(hypervisor_info, dict(args(tmp_path), state_path=str(blocker / "state.json")))
    assert not result.get("failed")
    assert any("could not record" in w for w in result["warnings"])


def test_last_migration_and_migrations_touching_the_host(host, tmp_path, run_module):
    now = time.time()
    uuid = "00000000-0000-0000-0000-000000000002"
    records = [
        dict(time=now - 900, vm="half", uuid=uuid, source="hv2", destination="hv1"),
        dict(time=now - 300, vm="half", uuid=uuid, source="hv3", destination="hv1"),
        dict(time=now - 200, vm="x", uuid="u-x", source="hv2", destination="hv3"),
        dict(time=now - 9000, vm="old", uuid="u-old", source="hv1", destination="hv2"),
    ]
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "samples": [], "migrations": records}))
    result = run_module(hypervisor_info, args(tmp_path))
    domains = by_name(result)
    assert domains["half"]["last_migration"] == dict(time=now - 300, source="hv3", destination="hv1")
    assert "last_migration" not in domains["busy"]
    assert [r["time"] for r in result["migrations"]] == [now - 900, now - 300]


@pytest.mark.parametrize("option, value, words", [
    ("sample_seconds", 0, "sample_seconds must be greater than 0, got 0"),
    ("reserved_cpus", -1, "reserved_cpus must be 0 or more, got -1"),
    ("reserved_cpus", 4, "reserved_cpus must be smaller than the host's 4 CPUs, got 4"),
    ("history_minutes", 0, "history_minutes must be greater than 0, got 0"),
])
def test_bad_options_name_option_and_value(host, tmp_path, run_module, option, value, words):
    result = run_module(hypervisor_info, dict(args(tmp_path), **{option: value}))
    assert result["failed"] is True
    assert words in result["msg"]


def test_unreachable_uri_is_named_in_the_error(fake, tmp_path, run_module):
    result = run_module(hypervisor_info, dict(args(tmp_path), uri="qemu+tcp://nowhere/system"))
    assert result["failed"] is True
    assert "qemu+tcp://nowhere/system" in result["msg"] and "unreachable" in result["msg"]


def test_missing_libvirt_python_is_reported(monkeypatch, tmp_path, run_module):
    monkeypatch.setattr(hypervisor_info, "HAS_LIBVIRT", False)
    result = run_module(hypervisor_info, args(tmp_path))
    assert result["failed"] is True
    assert "libvirt-python" in result["msg"]


@pytest.mark.parametrize("used_ns, window_ns, expected", [
    (1_500_000_000, 1_000_000_000, 1.5),
    (1, 3, 0.333),
    (0, 1_000_000_000, 0.0),
    (-5, 1_000_000_000, None),  # CPU time went backwards: restarted
    (5, 0, None),  # no window
])
def test_cpu_use(used_ns, window_ns, expected):
    start = hypervisor_info.Reading("d", "u", "running", 1, 1, 1_000_000, 10)
    end = hypervisor_info.Reading("d", "u", "running", 1, 1, 1_000_000 + used_ns, 10 + window_ns)
    assert hypervisor_info.cpu_use(start, end) == expected
