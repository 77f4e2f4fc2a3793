"""hypervisor_info against the fake libvirt: measurement, load, state file, history, tags, errors."""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _state
from ansible_collections.xen.drs.plugins.module_utils._libvirt import TAGS_NAMESPACE
from ansible_collections.xen.drs.plugins.modules import hypervisor_info
from ansible_collections.xen.drs.plugins.plugin_utils.placement import plan
from ansible_collections.xen.drs.tests.unit.plugins.module_utils.fake_libvirt import SHUTOFF

URI = "qemu:///system"
BUSY, HALF, IDLE = (f"00000000-0000-0000-0000-00000000000{n}" for n in (1, 2, 3))
# a sample's time is rounded to the millisecond, so it may be up to half of one before the clock read earlier
MS = 0.001


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
    taken = hv["samples"][-1][0]
    assert domains["busy"] == dict(name="busy", uuid=BUSY, state="running", vcpus=2, memory_mb=256, cpu=1.0,
                                   cpu_measured=True, samples=[[taken, 1.0]], tags=[])
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
    path.write_text(json.dumps({"version": 2, "samples": [[now - 7200, 0.9, 0.5], [now - 600, 0.2, 0.1]],
                                "migrations": []}))
    result = run_module(hypervisor_info, args(tmp_path))
    after = time.time()
    samples = result["hypervisor"]["samples"]
    assert [sample[1:] for sample in samples] == [[0.2, 0.1], [0.375, 0.062]]  # 512 MiB running of 8192
    # This run's sample, taken between the two clock reads (it failed ~1 run in 3 when it asked for
    # >= now: the module rounds the time to the millisecond, which can be below a clock read before).
    assert now - MS <= samples[-1][0] <= after + MS
    assert json.loads(path.read_text())["samples"] == samples


def test_memory_load_counts_the_running_domains_memory_over_the_hosts(fake, tmp_path, run_module):
    hv = fake.add_host(URI, "hv1", cpus=4, memory_mb=4000, free_mb=2000)
    hv.add_domain("a", "u-a", memory_mb=1000, cores_used=0.5)
    hv.add_domain("b", "u-b", memory_mb=500)
    hv.add_domain("off", "u-off", state=SHUTOFF, memory_mb=2000)
    sample = run_module(hypervisor_info, args(tmp_path))["hypervisor"]["samples"][-1]
    assert sample[1:] == [0.125, 0.375]  # 0.5 cores of 4; (1000 + 500) MiB of 4000, the shut-off one not counted


def test_a_host_reporting_no_memory_gets_a_sample_without_memory_load(fake, tmp_path, run_module):
    fake.add_host(URI, "hv1", cpus=4, memory_mb=0).add_domain("a", "u-a", cores_used=1.0)
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed"), result
    assert result["hypervisor"]["samples"][-1][1:] == [0.25]


def test_domain_samples_grow_run_by_run(host, tmp_path, run_module):
    first = by_name(run_module(hypervisor_info, args(tmp_path)))
    second = run_module(hypervisor_info, args(tmp_path))
    taken = second["hypervisor"]["samples"][-1][0]
    domains = by_name(second)
    assert [cores for _t, cores in domains["busy"]["samples"]] == [1.0, 1.0]
    assert domains["busy"]["samples"][0] == first["busy"]["samples"][0]
    assert domains["half"]["samples"][-1] == [taken, 0.5]
    assert domains["idle"]["samples"][-1] == [taken, 0.0]  # idle is measured: a sample of 0 cores
    stored = json.loads((tmp_path / "state.json").read_text())
    assert stored["domains"] == {d["uuid"]: d["samples"] for d in domains.values()}


def test_domain_samples_are_bounded_like_the_hosts(host, tmp_path, run_module):
    now = time.time()
    old = [[now - 7200 + i, 0.25] for i in range(10)]  # outside the 60 min window
    recent = [[now - 3000 + i, 0.5] for i in range(_state.MAX_SAMPLES + 200)]  # inside, but too many
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 2, "samples": [s + [0.1] for s in old + recent], "migrations": [],
        "domains": {BUSY: old + recent, HALF: old}}))
    result = run_module(hypervisor_info, args(tmp_path))
    host_samples, domains = result["hypervisor"]["samples"], by_name(result)
    assert len(host_samples) == len(domains["busy"]["samples"]) == _state.MAX_SAMPLES
    assert domains["busy"]["samples"][:-1] == recent[-(_state.MAX_SAMPLES - 1):]
    assert domains["busy"]["samples"][-1] == [host_samples[-1][0], 1.0]
    assert domains["half"]["samples"] == [[host_samples[-1][0], 0.5]]  # its old ones fell out of the window
    # a shorter window (history_minutes) bounds the domains as it bounds the host
    result = run_module(hypervisor_info, args(tmp_path, history_minutes=30))
    assert len(by_name(result)["busy"]["samples"]) == len(result["hypervisor"]["samples"])
    assert all(t >= now - 1800 - MS for t, _cores in by_name(result)["busy"]["samples"])


def test_departed_domains_lose_their_history_and_unmeasured_ones_get_no_sample(host, fake, tmp_path, run_module):
    now = time.time()
    before = [[now - 300, 0.8]]
    restarted = host.add_domain("restarted", "u-restarted", cores_used=1.0)
    arrived_uuid = "u-arrived"
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 2, "samples": [], "migrations": [],
        "domains": {BUSY: before, "u-gone": before, "u-restarted": before, arrived_uuid: before}}))
    host.add_domain("off", "u-off", state=SHUTOFF)
    restarted.cpu_time_offset = 10**12

    def churn():
        restarted.cpu_time_offset = 0  # its CPU time went backwards: restarted during the window
        host.add_domain("arrived", arrived_uuid, cores_used=1.0)  # e.g. migrated back in during the window

    fake.clock.on_sleep.append(churn)
    result = run_module(hypervisor_info, args(tmp_path))
    taken = result["hypervisor"]["samples"][-1][0]
    domains = by_name(result)
    assert domains["busy"]["samples"] == before + [[taken, 1.0]]
    assert domains["restarted"]["samples"] == before and domains["restarted"]["cpu_measured"] is False
    assert domains["arrived"]["samples"] == before and domains["arrived"]["cpu_measured"] is False
    assert domains["off"]["samples"] == []
    stored = json.loads((tmp_path / "state.json").read_text())["domains"]
    assert "u-gone" not in stored and "u-off" not in stored
    assert sorted(stored) == sorted([BUSY, HALF, IDLE, "u-restarted", arrived_uuid])


def test_a_migrated_domain_starts_a_fresh_history_on_its_destination(fake, tmp_path, run_module):
    source = fake.add_host(URI, "hv1", cpus=4)
    dest_uri = "qemu+tcp://hv2/system"
    fake.add_host(dest_uri, "hv2", cpus=4)
    web = source.add_domain("web", "u-web", cores_used=1.0)
    source_args = args(tmp_path, state_path=str(tmp_path / "hv1.json"))
    dest_args = args(tmp_path, uri=dest_uri, name="hv2", state_path=str(tmp_path / "hv2.json"))
    for _run in range(2):
        run_module(hypervisor_info, source_args)
    web.migrate3(fake.hosts[dest_uri], {}, fake.VIR_MIGRATE_UNDEFINE_SOURCE)
    there = by_name(run_module(hypervisor_info, dest_args))["web"]
    assert len(there["samples"]) == 1 and there["samples"][0][1] == 1.0
    run_module(hypervisor_info, source_args)
    assert json.loads((tmp_path / "hv1.json").read_text())["domains"] == {}


def test_check_mode_measures_but_writes_nothing(host, tmp_path, run_module):
    result = run_module(hypervisor_info, args(tmp_path), check_mode=True)
    assert result["hypervisor"]["samples"][-1][1] == 0.375
    assert by_name(result)["busy"]["samples"][-1][1] == 1.0
    assert not (tmp_path / "state.json").exists()


def test_record_sample_false_writes_nothing(host, tmp_path, run_module):
    run_module(hypervisor_info, args(tmp_path, record_sample=False))
    assert not (tmp_path / "state.json").exists()


def test_corrupt_state_file_is_a_warning_and_a_fresh_start(host, tmp_path, run_module):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed")
    assert any(w.startswith("hv1: state file ") and "corrupt" in w and str(path) in w for w in result["warnings"])
    assert len(json.loads(path.read_text())["samples"]) == 1


def test_a_version_1_state_file_keeps_its_samples_and_records_and_becomes_version_3(host, tmp_path, run_module):
    now = time.time()
    records = [dict(time=now - 600, vm="half", uuid=HALF, source="hv2", destination="hv1")]
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "samples": [[now - 600, 0.5], [now - 300, 0.625]],
                                "migrations": records}))
    result = run_module(hypervisor_info, args(tmp_path))
    assert result["warnings"] == []
    samples = result["hypervisor"]["samples"]
    assert samples[:2] == [[now - 600, 0.5], [now - 300, 0.625]] and samples[2][1:] == [0.375, 0.062]
    assert result["migrations"] == records
    assert by_name(result)["half"]["last_migration"] == dict(time=now - 600, source="hv2", destination="hv1")
    stored = json.loads(path.read_text())
    assert {k: v for k, v in stored.items() if k != "archive"} == {
        "version": 3, "samples": samples, "migrations": records, "failures": [],
        "domains": {d["uuid"]: d["samples"] for d in result["hypervisor"]["domains"]}}
    # the archive starts with this run: one bucket for the host and each measured domain
    assert stored["archive"]["host"]["load"]["v"] == [samples[-1][1]]
    assert sorted(stored["archive"]["domains"]) == [BUSY, HALF, IDLE]


def test_a_newer_state_file_is_left_as_it_is(host, tmp_path, run_module):
    path = tmp_path / "state.json"
    newer = json.dumps({"version": 4, "samples": [[1.0, {"load": 0.5}]], "migrations": []})
    path.write_text(newer)
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed"), result
    assert [w for w in result["warnings"] if "newer release" in w and str(path) in w and "left unchanged" in w]
    assert len(result["hypervisor"]["samples"]) == 1  # this run's only
    assert path.read_text() == newer


def test_unwritable_state_file_is_a_warning(host, tmp_path, run_module):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_module(hypervisor_info, dict(args(tmp_path), state_path=str(blocker / "state.json")))
    assert not result.get("failed")
    assert any(w.startswith("hv1: could not record") for w in result["warnings"])


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


def test_last_failure_with_its_kind_count_and_previous(host, tmp_path, run_module):
    now = time.time()
    failures = [
        dict(time=now - 900, vm="half", uuid=HALF, source="hv1", destination="hv2", error="timed out", kind="transient",
             count=1),
        dict(time=now - 300, vm="half", uuid=HALF, source="hv1", destination="hv3", error="client socket is closed",
             kind="transient", count=2, previous=now - 900),
        dict(time=now - 200, vm="busy", uuid=BUSY, source="hv1", destination="hv2", error="refused"),  # an older release's
        dict(time=now + 600, vm="idle", uuid=IDLE, source="hv1", destination="hv2", error="CPU incompatible",
             kind="permanent", count=2, previous=now + 300),  # from this host's future: made now
    ]
    (tmp_path / "state.json").write_text(json.dumps({"version": 3, "samples": [], "migrations": [],
                                                     "failures": failures}))
    result = run_module(hypervisor_info, args(tmp_path))
    domains = by_name(result)
    assert domains["half"]["last_failure"] == dict(time=now - 300, destination="hv3", error="client socket is closed",
                                                   kind="transient", count=2, previous=now - 900)
    assert domains["busy"]["last_failure"] == dict(time=now - 200, destination="hv2", error="refused")
    idle = domains["idle"]["last_failure"]
    assert idle["time"] == idle["previous"] <= now + 5 and idle["kind"] == "permanent"


def test_tags_come_from_the_domains_metadata(host, tmp_path, run_module):
    busy, half, _idle = host.domains
    busy.set_tags("prod", "db", "db")
    half.metadata = '<app:x xmlns:app="https://other.example/app"><tag>not ours</tag></app:x>'
    result = run_module(hypervisor_info, args(tmp_path))
    assert result["warnings"] == []
    assert {n: d["tags"] for n, d in by_name(result).items()} == {"busy": ["db", "prod"], "half": [], "idle": []}


@pytest.mark.parametrize("metadata, words", [
    (f'<drs:tags xmlns:drs="{TAGS_NAMESPACE}"><drs:label>db</drs:label></drs:tags>', "<label> inside <tags>"),
    (f'<drs:tags xmlns:drs="{TAGS_NAMESPACE}"><drs:tag> </drs:tag></drs:tags>', "an empty <tag>"),
    (f'<drs:tag xmlns:drs="{TAGS_NAMESPACE}">db</drs:tag>', f"<tag> in the metadata namespace {TAGS_NAMESPACE}"),
])
def test_malformed_tags_give_no_tags_and_a_warning(host, tmp_path, run_module, metadata, words):
    busy = host.domains[0]
    busy.set_tags("db")
    host.domains[1].set_tags("web")
    busy.metadata += metadata  # beside a well-formed element: the domain still gets no tags
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed"), result
    assert by_name(result)["busy"]["tags"] == [] and by_name(result)["half"]["tags"] == ["web"]
    assert [w for w in result["warnings"] if w.startswith("domain busy: no tags taken") and words in w]


def test_domain_xml_that_does_not_parse_gives_no_tags_and_a_warning(host, tmp_path, run_module):
    host.domains[0].xml = "<domain><metadata><drs:tags"
    result = run_module(hypervisor_info, args(tmp_path))
    assert not result.get("failed"), result
    assert by_name(result)["busy"]["tags"] == []
    assert [w for w in result["warnings"] if "domain busy" in w and "does not parse" in w]


def test_a_pool_mixing_old_and_new_release_hosts_plans(host, fake, tmp_path, run_module):
    """hv1 runs this release (its state file still version 1); hv2 the previous one: pairs, no domain history."""
    now = time.time()
    (tmp_path / "state.json").write_text(json.dumps(
        {"version": 1, "samples": [[now - 600, 0.375], [now - 300, 0.375]], "migrations": []}))
    new = run_module(hypervisor_info, args(tmp_path))["hypervisor"]
    assert len(new["samples"][-1]) == 3 and all(d["samples"] for d in new["domains"])
    old = dict(name="hv2", uri=URI, cpus=4, cpus_total=4, memory_mb=8192, memory_free_mb=4096, load=0.9,
               maintenance=False, samples=[[now - 60 * m, 0.9] for m in (20, 15, 10, 5, 0)],
               domains=[dict(name=f"old{i}", uuid=f"u-old{i}", state="running", vcpus=1, memory_mb=256,
                             cpu=0.9, cpu_measured=True) for i in range(4)])
    result = plan([new, old], {"now": now, "load_threshold": 0.75, "max_load_candidate": 0.65, "max_over": 10})
    moves = [(m["source"], m["destination"]) for m in result["migrations"]]
    assert ("hv2", "hv1") in moves, result
    hosts = {h["name"]: h for h in result["hosts"]}
    assert hosts["hv2"]["overloaded"] and hosts["hv2"]["predicted_load"] <= 0.75
    assert hosts["hv1"]["predicted_load"] <= 0.65


@pytest.mark.parametrize("option, value, words", [
    ("sample_seconds", 0, "sample_seconds must be greater than 0 and at most 600, got 0"),
    ("sample_seconds", -3, "sample_seconds must be greater than 0 and at most 600, got -3"),
    ("sample_seconds", "nan", "sample_seconds must be greater than 0 and at most 600, got nan"),
    ("sample_seconds", "inf", "sample_seconds must be greater than 0 and at most 600, got inf"),
    ("sample_seconds", 86400, "sample_seconds must be greater than 0 and at most 600, got 86400"),
    ("reserved_cpus", -1, "reserved_cpus must be 0 or more, got -1"),
    ("reserved_cpus", 4, "reserved_cpus must be smaller than the host's 4 CPUs, got 4"),
    ("history_minutes", 0, "history_minutes must be greater than 0, got 0"),
    ("history_minutes", -60, "history_minutes must be greater than 0, got -60"),
    ("archive_days", 15, "archive_days must be from 0 to 14, got 15"),
    ("archive_days", -1, "archive_days must be from 0 to 14, got -1"),
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


def test_the_archive_keeps_the_host_size_and_a_departed_domain(host, tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(hypervisor_info.time, "time", lambda: 1_764_000_010.0)  # both runs in one 5-minute bucket
    run_module(hypervisor_info, args(tmp_path, reserved_cpus=1))
    host.domains[:] = [d for d in host.domains if d.name() != "busy"]  # busy migrated away
    result = run_module(hypervisor_info, args(tmp_path, reserved_cpus=1))
    archive = json.loads((tmp_path / "state.json").read_text())["archive"]
    assert {k: archive["host"][k] for k in ("name", "cpus", "memory_mb")} == dict(name="hv1", cpus=3, memory_mb=8192)
    # the bucket's load is the mean of the two runs' (1.5 then 0.5 cores of 3)
    assert archive["host"]["load"] == {"start": 1_764_000_000, "n": 2, "v": [round((0.5 + 0.167) / 2, 3)]}
    assert BUSY not in {d["uuid"] for d in result["hypervisor"]["domains"]}
    assert archive["domains"][BUSY] == {"name": "busy", "memory_mb": 256, "vcpus": 2,
                                        "cpu": {"start": archive["domains"][BUSY]["cpu"]["start"], "n": 1, "v": [1.0]}}
    assert archive["domains"][HALF]["cpu"]["n"] == 2
    run_module(hypervisor_info, args(tmp_path, archive_days=0))
    assert json.loads((tmp_path / "state.json").read_text())["archive"] == {}


@pytest.mark.parametrize("offset, word", [(600, "behind"), (-900, "ahead of")])
def test_a_host_clock_minutes_off_the_controllers_is_named_and_its_samples_shifted(
        host, tmp_path, run_module, offset, word):
    earlier = time.time() - 300
    (tmp_path / "state.json").write_text(json.dumps({"version": 3, "samples": [[earlier, 0.5]],
                                                     "domains": {BUSY: [[earlier, 1.0]]}, "migrations": []}))
    result = run_module(hypervisor_info, args(tmp_path, controller_time=time.time() + offset))
    skew = result["clock_skew_seconds"]
    assert skew == pytest.approx(-offset, abs=5)
    assert any(w.startswith(f"hv1: its clock is {abs(offset)} s {word} the control node's") or
               w.startswith(f"hv1: its clock is {abs(offset) - 1} s {word}") for w in result["warnings"]), result["warnings"]
    samples = result["hypervisor"]["samples"]
    assert samples[0][0] == pytest.approx(earlier - skew, abs=0.01)  # in the controller's time
    assert by_name(result)["busy"]["samples"][0][0] == pytest.approx(earlier - skew, abs=0.01)
    # the state file keeps the host's own time
    assert json.loads((tmp_path / "state.json").read_text())["samples"][0][0] == pytest.approx(earlier, abs=0.01)


def test_a_clock_within_tolerance_is_left_alone(host, tmp_path, run_module):
    result = run_module(hypervisor_info, args(tmp_path, controller_time=time.time() - 2))
    assert abs(result["clock_skew_seconds"]) < 30 and not any("clock" in w for w in result["warnings"])
    assert "clock_skew_seconds" not in run_module(hypervisor_info, args(tmp_path))


def test_samples_from_the_future_are_dropped_and_a_future_record_counts_as_now(host, tmp_path, run_module):
    now = time.time()
    future = now + 3600  # the host's clock went back an hour since these were written
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 3, "samples": [[now - 300, 0.5], [future, 0.9]], "domains": {BUSY: [[future, 2.0]]},
        "migrations": [dict(time=future, vm="busy", uuid=BUSY, source="hv2", destination="hv1")]}))
    result = run_module(hypervisor_info, args(tmp_path))
    assert any("2 sample(s) and 1 migration record(s) later than this host's clock" in w for w in result["warnings"])
    samples = result["hypervisor"]["samples"]
    assert [round(s[1], 3) for s in samples] == [0.5, 0.375] and samples[-1][0] <= time.time()
    busy = by_name(result)["busy"]
    assert [s[1] for s in busy["samples"]] == [1.0]
    assert now - 1 <= busy["last_migration"]["time"] <= time.time()  # its cooldown starts now, not in an hour
    # the records the plan merges across hosts say the same (reconcile_records keeps the newest time)
    assert [r["time"] for r in result["migrations"]] == [busy["last_migration"]["time"]]


# ------------------------------------------------------------------ lock: take the run lock, then measure


def lock_args(tmp_path, owner="run-2", **extra):
    return args(tmp_path, lock=dict(dict(owner=owner, runner="cron on ctl", path=str(tmp_path / "run" / "rebalance.lock"),
                                         ttl=600), **extra))


def test_with_lock_the_lock_is_taken_then_the_host_measured(host, tmp_path, run_module):
    result = run_module(hypervisor_info, lock_args(tmp_path))
    assert not result.get("failed"), result
    assert result["hypervisor"]["load"] == 0.375 and (tmp_path / "state.json").exists()
    lock = json.loads((tmp_path / "run" / "rebalance.lock").read_text())
    assert (lock["owner"], lock["runner"]) == ("run-2", "cron on ctl")
    assert result["run_lock"]["acquired"] and result["run_lock"]["lock"] == lock
    assert result["changed"] is False  # bookkeeping: run_lock.changed says the lock file was written
    assert result["run_lock"]["changed"] is True
    assert oct((tmp_path / "run").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "run" / "rebalance.lock").stat().st_mode & 0o777) == "0o600"


def test_with_lock_held_by_another_run_nothing_is_measured(host, fake, tmp_path, run_module):
    run_module(hypervisor_info, lock_args(tmp_path, owner="run-1"))
    (tmp_path / "state.json").unlink()
    held = (tmp_path / "run" / "rebalance.lock").read_text()
    opened = len(fake.opened)
    result = run_module(hypervisor_info, lock_args(tmp_path))
    assert result["failed"] and "held by run run-1" in result["msg"] and "hypervisor" not in result
    assert result["run_lock"]["acquired"] is False and result["run_lock"]["holder"]["owner"] == "run-1"
    assert len(fake.opened) == opened and not (tmp_path / "state.json").exists()  # libvirt not even opened
    assert (tmp_path / "run" / "rebalance.lock").read_text() == held


def test_with_lock_a_host_that_cannot_be_measured_says_its_lock_was_taken(fake, tmp_path, run_module):
    result = run_module(hypervisor_info, dict(lock_args(tmp_path), uri="qemu+tcp://nowhere/system"))
    assert result["failed"] and "qemu+tcp://nowhere/system" in result["msg"]
    assert result["run_lock"]["acquired"] is True  # for the caller to release it
    assert json.loads((tmp_path / "run" / "rebalance.lock").read_text())["owner"] == "run-2"


def test_with_lock_in_check_mode_nothing_is_written(host, tmp_path, run_module):
    result = run_module(hypervisor_info, lock_args(tmp_path), check_mode=True)
    assert result["run_lock"]["acquired"] and result["hypervisor"]["load"] == 0.375
    assert not (tmp_path / "run").exists() and not (tmp_path / "state.json").exists()


def test_with_lock_a_stale_lock_is_taken_over_with_a_warning(host, tmp_path, run_module):
    path = tmp_path / "run" / "rebalance.lock"
    path.parent.mkdir()
    path.write_text(json.dumps({"owner": "run-0", "time": time.time() - 900, "expires": time.time() - 300}))
    result = run_module(hypervisor_info, lock_args(tmp_path))
    assert result["run_lock"]["acquired"] and result["run_lock"]["holder"]["owner"] == "run-0"
    assert any("stale" in w and "run-0" in w for w in result["warnings"]), result["warnings"]
    assert json.loads(path.read_text())["owner"] == "run-2"
