"""domain_migrate against the fake libvirt: flags and URIs, check mode, idempotence, failures."""

from __future__ import annotations

import json

import pytest

from ansible_collections.xen.drs.plugins.modules import domain_migrate
from ansible_collections.xen.drs.tests.unit.plugins.module_utils.fake_libvirt import (
    PAUSED,
    SHUTOFF,
    FakeLibvirt,
    libvirtError,
)

SRC = "qemu:///system"
DST = "qemu+tcp://10.0.0.2/system"
UUID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hosts(fake):
    src = fake.add_host(SRC, "hv1")
    dst = fake.add_host(DST, "hv2")
    src.add_domain("web1", UUID, memory_mb=256, cores_used=0.4)
    return src, dst


def args(tmp_path, **extra):
    base = dict(name="web1", uri=SRC, source="hv1", destination="hv2", destination_uri=DST,
                state_path=str(tmp_path / "state.json"))
    return dict(base, **extra)


def names(conn):
    return [(d.name(), d.isActive()) for d in conn.domains]


def migrate_call(domain):
    return next(call for call in domain.calls if call[0] in ("migrateToURI3", "migrate3"))


def test_live_migration_moves_verifies_and_records(hosts, tmp_path, run_module):
    src, dst = hosts
    domain = src.domains[0]
    result = run_module(domain_migrate, args(tmp_path, migration_address="10.1.0.2", bandwidth_mib=100))
    assert not result.get("failed"), result
    assert result["changed"] is True and result["verified"] is True
    assert names(src) == [] and names(dst) == [("web1", True)]
    name, uri, params, flags = migrate_call(domain)
    fl = FakeLibvirt
    assert (name, uri) == ("migrateToURI3", DST)
    assert params == {"migrate_uri": "tcp://10.1.0.2", "bandwidth": 100}
    assert flags == fl.VIR_MIGRATE_LIVE | fl.VIR_MIGRATE_PEER2PEER | fl.VIR_MIGRATE_PERSIST_DEST | fl.VIR_MIGRATE_UNDEFINE_SOURCE
    assert result["domain"] == dict(name="web1", uuid=UUID)
    assert result["migrate_uri"] == "tcp://10.1.0.2"
    assert result["job"] == dict(time_elapsed_ms=2100, downtime_ms=40, data_total_bytes=140000000,
                                 data_processed_bytes=141000000, memory_bps=120000000)
    record = result["record"]
    assert {k: record[k] for k in ("vm", "uuid", "source", "destination")} == dict(
        vm="web1", uuid=UUID, source="hv1", destination="hv2")
    assert json.loads((tmp_path / "state.json").read_text())["migrations"] == [record]


def test_diff_shows_the_domains_host(hosts, tmp_path, run_module):
    result = run_module(domain_migrate, args(tmp_path), diff=True)
    assert result["diff"] == dict(before=dict(host="hv1"), after=dict(host="hv2"))


def test_found_by_uuid(hosts, tmp_path, run_module):
    result = run_module(domain_migrate, dict(args(tmp_path), name=None, uuid=UUID))
    assert result["changed"] is True and result["domain"]["name"] == "web1"


@pytest.mark.parametrize("options, expected_flags", [
    (dict(live=False), ["PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE"]),
    (dict(persistent=False, undefine_source=False), ["LIVE", "PEER2PEER"]),
    (dict(tunnelled=True), ["LIVE", "PEER2PEER", "TUNNELLED", "PERSIST_DEST", "UNDEFINE_SOURCE"]),
    (dict(copy_storage="all", unsafe=True),
     ["LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "NON_SHARED_DISK", "UNSAFE"]),
    (dict(copy_storage="incremental"), ["LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "NON_SHARED_INC"]),
])
def test_options_become_libvirt_flags(hosts, tmp_path, run_module, options, expected_flags):
    domain = hosts[0].domains[0]
    result = run_module(domain_migrate, args(tmp_path, **options))
    assert result["changed"] is True, result
    assert migrate_call(domain)[3] == sum(getattr(FakeLibvirt, "VIR_MIGRATE_" + f) for f in expected_flags)


def test_undefine_source_false_leaves_a_stopped_definition(hosts, tmp_path, run_module):
    src, dst = hosts
    result = run_module(domain_migrate, args(tmp_path, undefine_source=False))
    assert result["verified"] is True
    assert names(src) == [("web1", False)] and names(dst) == [("web1", True)]


def test_client_managed_migration_connects_to_the_destination(hosts, fake, tmp_path, run_module):
    domain = hosts[0].domains[0]
    result = run_module(domain_migrate, args(tmp_path, peer_to_peer=False))
    assert result["changed"] is True
    assert migrate_call(domain)[:2] == ("migrate3", DST)
    assert (DST, False) in fake.opened


def test_max_downtime_is_set_before_migrating(hosts, tmp_path, run_module):
    domain = hosts[0].domains[0]
    run_module(domain_migrate, args(tmp_path, max_downtime_ms=250))
    assert [c[0] for c in domain.calls][:2] == ["migrateSetMaxDowntime", "migrateToURI3"]
    assert domain.calls[0][1] == 250


def test_default_destination_uri_is_built_from_uri(fake, tmp_path, run_module):
    fake.add_host("qemu+tcp://hv1/system", "hv1").add_domain("web1", UUID)
    fake.add_host("qemu+tcp://hv2/system", "hv2")
    result = run_module(domain_migrate, dict(args(tmp_path), uri="qemu+tcp://hv1/system", destination_uri=None))
    assert result["destination_uri"] == "qemu+tcp://hv2/system"
    assert result["verified"] is True


def test_check_mode_reports_and_moves_nothing(hosts, fake, tmp_path, run_module):
    src, dst = hosts
    result = run_module(domain_migrate, args(tmp_path), check_mode=True, diff=True)
    assert result["changed"] is True
    assert "would migrate web1 from hv1 to hv2" in result["msg"]
    assert result["diff"]["after"] == dict(host="hv2")
    assert names(src) == [("web1", True)] and names(dst) == []
    assert all(readonly for _uri, readonly in fake.opened)
    assert not (tmp_path / "state.json").exists()


def test_check_mode_fails_when_destination_is_unreachable(hosts, tmp_path, run_module):
    result = run_module(domain_migrate, args(tmp_path, destination_uri="qemu+tcp://down/system"), check_mode=True)
    assert result["failed"] is True
    assert "qemu+tcp://down/system" in result["msg"] and "unreachable" in result["msg"]
    assert result["domain_state_after"] == "running"


def test_repeating_a_migration_is_a_no_op(hosts, tmp_path, run_module):
    first = run_module(domain_migrate, args(tmp_path))
    again = run_module(domain_migrate, args(tmp_path))
    assert first["changed"] is True
    assert again["changed"] is False and "already running on hv2" in again["msg"]
    assert len(json.loads((tmp_path / "state.json").read_text())["migrations"]) == 1


def test_domain_nowhere_is_skipped_naming_it(hosts, tmp_path, run_module):
    result = run_module(domain_migrate, args(tmp_path, name="ghost"))
    assert result["skipped"] is True and not result.get("failed") and result["changed"] is False
    assert "not moved: domain 'ghost' is not defined on hv1" in result["msg"] and "not running on hv2" in result["msg"]
    assert result["domain_state_after"] == "undefined"


@pytest.mark.parametrize("state, word", [(SHUTOFF, "shutoff"), (PAUSED, "paused")])
def test_a_domain_no_longer_running_is_skipped_and_left_as_it_is(hosts, tmp_path, run_module, state, word):
    hosts[0].domains[0]._state = state
    result = run_module(domain_migrate, args(tmp_path))
    assert result["skipped"] is True and result["changed"] is False and not result.get("failed")
    assert f"is {word} on hv1" in result["msg"] and result["domain_state_after"] == word
    assert hosts[0].domains[0]._state == state and not [c for c in hosts[0].domains[0].calls if c[0].startswith("migrate")]


@pytest.mark.parametrize("error, code, cause", [
    ("internal error: process exited while connecting to monitor: Cannot allocate memory",
     FakeLibvirt.VIR_ERR_OPERATION_FAILED, "not enough memory"),
    ("Unsafe migration: Migration may lead to data corruption if disks use cache other than none",
     FakeLibvirt.VIR_ERR_MIGRATE_UNSAFE, "unsafe migration"),
    ("unable to connect to server at '10.0.0.2:16509': Connection refused",
     FakeLibvirt.VIR_ERR_SYSTEM_ERROR, "host unreachable"),
    ("Requested operation is not valid: domain is already being migrated",
     FakeLibvirt.VIR_ERR_OPERATION_INVALID, "not valid in the domain's current state"),
    ("internal error: Attempt to migrate guest to the same host 0000-1",
     FakeLibvirt.VIR_ERR_INTERNAL_ERROR, "destination is the source host"),
])
def test_failed_migration_names_the_cause_and_the_domain_stays(hosts, tmp_path, run_module, error, code, cause):
    src, dst = hosts
    src.domains[0].migrate_error = libvirtError(error, code)
    result = run_module(domain_migrate, args(tmp_path))
    assert result["failed"] is True
    assert cause in result["msg"] and error in result["msg"]
    assert "migrating web1 from hv1 to hv2" in result["msg"]
    assert result["domain_state_after"] == "running"
    assert names(src) == [("web1", True)] and names(dst) == []
    # no migration recorded, but the failure is, with its cause: the plan holds the domain back
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["migrations"] == []
    assert [{k: f[k] for k in ("vm", "uuid", "source", "destination")} for f in state["failures"]] == [
        {"vm": "web1", "uuid": UUID, "source": "hv1", "destination": "hv2"}]
    assert cause in state["failures"][0]["error"]


def failures(tmp_path):
    return json.loads((tmp_path / "state.json").read_text())["failures"]


@pytest.mark.parametrize("error, code, kind", [
    ("the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f",
     FakeLibvirt.VIR_ERR_CPU_INCOMPATIBLE, "permanent"),
    ("Operation not supported: migration of a domain with a vhost-user device", FakeLibvirt.VIR_ERR_OPERATION_UNSUPPORTED,
     "permanent"),
    ("argument unsupported: unsupported flags (0x800)", FakeLibvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, "permanent"),
    ("unsupported configuration: guest and host CPU are not compatible", FakeLibvirt.VIR_ERR_CONFIG_UNSUPPORTED,
     "permanent"),
    ("Unsafe migration: Migration may lead to data corruption", FakeLibvirt.VIR_ERR_MIGRATE_UNSAFE, "permanent"),
    ("operation failed: guest CPU doesn't match specification: missing features: pcid",
     FakeLibvirt.VIR_ERR_OPERATION_FAILED, "permanent"),
    ("internal error: Attempt to migrate guest to the same host 0000-1", FakeLibvirt.VIR_ERR_INTERNAL_ERROR, "permanent"),
    ("internal error: client socket is closed", FakeLibvirt.VIR_ERR_INTERNAL_ERROR, "transient"),  # a libvirtd killed
    ("End of file while reading data: Input/output error", FakeLibvirt.VIR_ERR_SYSTEM_ERROR, "transient"),
    ("Cannot write data: Broken pipe", FakeLibvirt.VIR_ERR_RPC, "transient"),
    ("operation failed: migration out job: unexpectedly failed", FakeLibvirt.VIR_ERR_OPERATION_FAILED, "transient"),
    ("operation aborted: migration out job: canceled by client", FakeLibvirt.VIR_ERR_OPERATION_ABORTED, "transient"),
    ("Requested operation is not valid: domain is already being migrated", FakeLibvirt.VIR_ERR_OPERATION_INVALID,
     "transient"),
    ("an error whose code this release does not know", 4242, "transient"),
])
def test_a_failure_is_recorded_as_permanent_or_transient(hosts, tmp_path, run_module, error, code, kind):
    hosts[0].domains[0].migrate_error = libvirtError(error, code)
    result = run_module(domain_migrate, args(tmp_path))
    assert result["failed"] is True
    [failure] = failures(tmp_path)
    assert (failure["kind"], failure["count"], "previous" in failure) == (kind, 1, False)
    assert result["failure"] == failure
    said = "a permanent failure: the plans hold" if kind == "permanent" else "a transient failure: the next run may try"
    assert said in result["msg"], result["msg"]


def test_failures_in_a_row_are_counted_until_a_migration_succeeds(hosts, tmp_path, run_module):
    domain = hosts[0].domains[0]
    domain.migrate_error = libvirtError("internal error: client socket is closed", FakeLibvirt.VIR_ERR_INTERNAL_ERROR)
    first = run_module(domain_migrate, args(tmp_path))["failure"]
    second = run_module(domain_migrate, args(tmp_path))
    assert second["failure"]["count"] == 2 and second["failure"]["previous"] == first["time"]
    assert "a transient failure, 2 in a row: the plans hold the domain back" in second["msg"], second["msg"]
    domain.migrate_error = None
    assert run_module(domain_migrate, args(tmp_path))["changed"] is True
    hosts[1].domains[0].migrate_error = libvirtError("internal error: client socket is closed",
                                                     FakeLibvirt.VIR_ERR_INTERNAL_ERROR)
    back = run_module(domain_migrate, args(tmp_path, uri=DST, source="hv2", destination="hv1", destination_uri=SRC))
    assert back["failure"]["count"] == 1 and "previous" not in back["failure"]  # the migration ended the row
    assert [f["count"] for f in failures(tmp_path)] == [1, 2, 1]


def test_a_source_libvirtd_gone_with_the_migration_is_named_not_a_bare_libvirt_error(hosts, tmp_path, run_module):
    src = hosts[0]
    lost = libvirtError("internal error: client socket is closed", FakeLibvirt.VIR_ERR_INTERNAL_ERROR)
    src.domains[0].migrate_error = lost

    def gone(_uuid):
        raise lost

    src.lookupByUUIDString = gone  # the source's libvirtd died with the migration: nothing answers any more
    result = run_module(domain_migrate, args(tmp_path))
    assert result["failed"] is True and result["domain_state_after"] == "unknown"
    assert result["msg"].startswith("migrating web1 from hv1 to hv2"), result["msg"]
    assert "its state on hv1 could not be read: internal error: client socket is closed" in result["msg"]
    assert failures(tmp_path)[0]["kind"] == "transient"


def test_timeout_aborts_the_job(hosts, tmp_path, run_module):
    src = hosts[0]
    domain = src.domains[0]
    domain.migrate_seconds = 30
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["failed"] is True
    assert "timed out after 1 s and the migration job was aborted" in result["msg"]
    assert ("abortJob",) in domain.calls
    assert result["domain_state_after"] == "running" and names(src) == [("web1", True)]
    assert result["failure"]["kind"] == "transient" == failures(tmp_path)[0]["kind"]


def test_timeout_on_a_driver_that_cannot_abort_warns_when_the_migration_completes(hosts, tmp_path, run_module):
    src, dst = hosts
    domain = src.domains[0]
    domain.migrate_seconds = 1.5
    domain.abort_error = libvirtError("this function is not supported by the connection driver: virDomainAbortJob",
                                      FakeLibvirt.VIR_ERR_NO_SUPPORT)
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["changed"] is True and result["verified"] is True
    assert any("1 s timeout was reached but the job could not be aborted" in w for w in result["warnings"])
    assert names(src) == [] and names(dst) == [("web1", True)]


def test_failure_after_a_failed_abort_names_both(hosts, tmp_path, run_module):
    domain = hosts[0].domains[0]
    domain.migrate_seconds = 1.5
    domain.abort_error = libvirtError("virDomainAbortJob not supported", FakeLibvirt.VIR_ERR_NO_SUPPORT)
    domain.migrate_error = libvirtError("migration failed: connection reset", FakeLibvirt.VIR_ERR_OPERATION_FAILED)
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["failed"] is True
    assert "connection reset (the 1 s timeout was reached, but aborting the job failed" in result["msg"]
    assert result["domain_state_after"] == "running"


def busy():
    return libvirtError("Timed out during operation: cannot acquire state change lock (held by "
                        "monitor=remoteDispatchDomainMigratePerform3Params)", FakeLibvirt.VIR_ERR_OPERATION_TIMEOUT)


def test_an_abort_refused_while_the_job_is_busy_is_tried_again(hosts, tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(domain_migrate, "ABORT_RETRY_SECONDS", 0.2)
    src = hosts[0]
    domain = src.domains[0]
    domain.migrate_seconds = 30
    domain.abort_error = [busy(), busy(), None]
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["failed"] is True and "timed out after 1 s and the migration job was aborted" in result["msg"], result
    assert domain.calls.count(("abortJob",)) == 3
    assert result["domain_state_after"] == "running" and names(src) == [("web1", True)]


def test_an_abort_that_stays_busy_until_the_migration_fails_names_both(hosts, tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(domain_migrate, "ABORT_RETRY_SECONDS", 0.2)
    domain = hosts[0].domains[0]
    domain.migrate_seconds = 1.7
    domain.abort_error = [busy() for _try in range(50)]
    domain.migrate_error = libvirtError("internal error: client socket is closed", FakeLibvirt.VIR_ERR_INTERNAL_ERROR)
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["failed"] is True
    assert "client socket is closed (the 1 s timeout was reached, but aborting the job failed: operation timed out" in result["msg"]
    assert domain.calls.count(("abortJob",)) >= 2  # tried again while the job was busy, stopped when the call returned
    assert len(domain.abort_error) > 40


def test_an_abort_refused_for_another_reason_is_not_tried_again(hosts, tmp_path, run_module, monkeypatch):
    monkeypatch.setattr(domain_migrate, "ABORT_RETRY_SECONDS", 0.2)
    domain = hosts[0].domains[0]
    domain.migrate_seconds = 1.7
    domain.abort_error = libvirtError("virDomainAbortJob not supported", FakeLibvirt.VIR_ERR_NO_SUPPORT)
    result = run_module(domain_migrate, args(tmp_path, timeout=1))
    assert result["changed"] is True and domain.calls.count(("abortJob",)) == 1


def test_unsupported_max_downtime_fails_before_migrating(hosts, tmp_path, run_module):
    domain = hosts[0].domains[0]
    domain.downtime_error = libvirtError("this function is not supported by the connection driver",
                                         FakeLibvirt.VIR_ERR_NO_SUPPORT)
    result = run_module(domain_migrate, args(tmp_path, max_downtime_ms=100))
    assert result["failed"] is True and "not supported" in result["msg"]
    assert [c[0] for c in domain.calls] == ["migrateSetMaxDowntime"]


def test_unverified_success_is_a_failure(hosts, tmp_path, run_module):
    hosts[0].domains[0].migrate_moves = False
    result = run_module(domain_migrate, args(tmp_path))
    assert result["failed"] is True and result["verified"] is False
    assert "is running on hv1 and not running on hv2" in result["msg"]
    assert result["destination_state"] == "undefined"
    assert [(f["error"], f["kind"]) for f in failures(tmp_path)] == [
        ("libvirt reported success, but the domain was running on hv1 and not running on hv2", "permanent")]


def test_a_domain_that_arrived_paused_is_a_failure_and_is_left_paused(hosts, tmp_path, run_module):
    src, dst = hosts
    src.domains[0].arrival_state = PAUSED  # libvirt reports success, the domain is on hv2 but does not run
    result = run_module(domain_migrate, args(tmp_path))
    assert result["failed"] is True and result["verified"] is False
    assert "libvirt reported success, but web1 is not running on hv1 and paused on hv2" in result["msg"], result["msg"]
    assert f"it is left paused on hv2 ({DST}), not resumed" in result["msg"]
    assert result["destination_state"] == "paused" and result["domain_state_after"] == "undefined"
    assert "record" not in result
    # nothing resumed, nothing lost: the domain is where libvirt put it, in the state it had
    assert names(src) == [] and [(d.name(), d._state) for d in dst.domains] == [("web1", PAUSED)]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["migrations"] == []
    assert [f["error"] for f in state["failures"]] == [
        "libvirt reported success, but the domain was not running on hv1 and paused on hv2"]


def test_repeating_a_migration_that_arrived_paused_is_skipped_not_done(hosts, tmp_path, run_module):
    src, dst = hosts
    src.domains[0].arrival_state = PAUSED
    assert run_module(domain_migrate, args(tmp_path))["failed"] is True
    again = run_module(domain_migrate, args(tmp_path))
    assert again["skipped"] is True and again["changed"] is False and not again.get("failed")
    assert "not moved: domain 'web1' is not defined on hv1" in again["msg"] and f"is paused on hv2 ({DST})" in again["msg"]
    assert again["destination_state"] == "paused" and again["domain_state_after"] == "undefined"
    assert [(d.name(), d._state) for d in dst.domains] == [("web1", PAUSED)]


def test_an_unreachable_destination_is_not_the_domains_failure(hosts, tmp_path, run_module):
    result = run_module(domain_migrate, args(tmp_path, destination_uri="qemu+tcp://10.0.0.9/system"))
    assert result["failed"] is True and not (tmp_path / "state.json").exists()


def test_unreachable_destination_fails_before_migrating(hosts, tmp_path, run_module):
    domain = hosts[0].domains[0]
    result = run_module(domain_migrate, args(tmp_path, destination_uri="qemu+tcp://10.0.0.9/system"))
    assert result["failed"] is True
    assert "hv2 is unreachable" in result["msg"] and "qemu+tcp://10.0.0.9/system" in result["msg"]
    assert result["domain_state_after"] == "running"
    assert not [c for c in domain.calls if c[0] == "migrateToURI3"]


@pytest.mark.parametrize("options, words", [
    (dict(bandwidth_mib=0), "bandwidth_mib must be greater than 0, got 0"),
    (dict(max_downtime_ms=-5), "max_downtime_ms must be greater than 0, got -5"),
    (dict(timeout=0), "timeout must be greater than 0, got 0"),
    (dict(timeout=-30), "timeout must be greater than 0, got -30"),
    (dict(bandwidth_mib=-1), "bandwidth_mib must be greater than 0, got -1"),
    (dict(tunnelled=True, peer_to_peer=False), "tunnelled=true requires peer_to_peer=true"),
    (dict(tunnelled=True, migration_address="10.1.0.2"), "migration_address (10.1.0.2) cannot be used with"),
    (dict(copy_storage="some"), "copy_storage"),
    (dict(uuid=UUID), "mutually exclusive: name|uuid"),
    (dict(name=None), "one of the following is required: name, uuid"),
    (dict(uri="nonsense"), "cannot connect to libvirt at 'nonsense'"),
])
def test_bad_options_name_option_and_value(hosts, tmp_path, run_module, options, words):
    result = run_module(domain_migrate, args(tmp_path, **options) if "name" not in options
                        else dict(args(tmp_path), **options))
    assert result["failed"] is True
    assert words in result["msg"]
    assert names(hosts[0]) == [("web1", True)]


CLEAR_TEXT = "crosses the network from hv1 to hv2 unencrypted"


@pytest.mark.parametrize("options, warned", [
    (dict(), "not tunnelled"),
    (dict(tunnelled=True, destination_uri="qemu+tcp://hv2/system"), "whose transport is not encrypted"),
    (dict(tunnelled=True, destination_uri="qemu+ssh://hv2/system"), None),
    (dict(private_network=True), None),
])
def test_a_clear_text_memory_stream_is_warned_about_unless_the_network_is_private(hosts, fake, tmp_path, run_module,
                                                                                  options, warned):
    if "destination_uri" in options:
        fake.add_host(options["destination_uri"], "hv2")
    for check_mode in (True, False):
        result = run_module(domain_migrate, args(tmp_path, **options), check_mode=check_mode)
        assert result["changed"] is True and not result.get("failed")
        found = [w for w in result["warnings"] if CLEAR_TEXT in w]
        if warned:
            assert len(found) == 1 and warned in found[0] and "web1" in found[0], result["warnings"]
        else:
            assert not found, result["warnings"]
