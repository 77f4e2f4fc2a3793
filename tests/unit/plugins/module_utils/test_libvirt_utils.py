"""_libvirt: URI building, flags, error messages, connections (with the fake libvirt)."""

from __future__ import annotations

import pytest

from ansible_collections.xen.drs.plugins.module_utils import _libvirt
from ansible_collections.xen.drs.tests.unit.plugins.module_utils.fake_libvirt import FakeLibvirt, libvirtError


@pytest.fixture
def fake(monkeypatch):
    world = FakeLibvirt()
    monkeypatch.setattr(_libvirt, "libvirt", world)
    return world


@pytest.mark.parametrize("uri, destination, expected", [
    ("xen:///system", "hv2", "xen+ssh://hv2/system"),
    ("xen:///", "hv2", "xen+ssh://hv2/"),
    ("qemu:///system", "hv2.example.com", "qemu+ssh://hv2.example.com/system"),
    ("qemu+unix:///system", "hv2", "qemu+ssh://hv2/system"),
    ("qemu+tcp://hv1/system", "hv2", "qemu+tcp://hv2/system"),
    ("xen+ssh://root@hv1/system", "hv2", "xen+ssh://root@hv2/system"),
    ("qemu+tls://hv1:16514/system?no_verify=1", "hv3", "qemu+tls://hv3:16514/system?no_verify=1"),
    ("qemu+ssh://hv1/system?keyfile=/root/.ssh/drs", "hv2", "qemu+ssh://hv2/system?keyfile=/root/.ssh/drs"),
    ("qemu+tcp://hv1/system", "fd00::2", "qemu+tcp://[fd00::2]/system"),
])
def test_destination_uri_keeps_driver_transport_path(uri, destination, expected):
    assert _libvirt.build_destination_uri(uri, destination) == expected


@pytest.mark.parametrize("uri, destination, words", [
    ("nonsense", "hv2", "uri 'nonsense' is not a libvirt URI"),
    ("xen:///system", "", "destination must be a host name"),
])
def test_destination_uri_rejects_bad_input(uri, destination, words):
    with pytest.raises(ValueError, match=words):
        _libvirt.build_destination_uri(uri, destination)


@pytest.mark.parametrize("address, expected", [
    (None, None),
    ("", None),
    ("10.10.0.2", "tcp://10.10.0.2"),
    ("mig-hv2.example.com", "tcp://mig-hv2.example.com"),
    ("10.10.0.2:49200", "tcp://10.10.0.2:49200"),
    ("fd00::2", "tcp://[fd00::2]"),
    ("rdma://10.10.0.2", "rdma://10.10.0.2"),
])
def test_migrate_uri(address, expected):
    assert _libvirt.build_migrate_uri(address) == expected


def test_migrate_flags_and_params(fake):
    assert _libvirt.migrate_flags() == 1 | 2 | 8 | 16
    assert _libvirt.migrate_flags(live=False, peer_to_peer=False, persistent=False, undefine_source=False) == 0
    assert _libvirt.migrate_flags(copy_storage="all", unsafe=True, tunnelled=True) == 1 | 2 | 4 | 8 | 16 | 64 | 512
    assert _libvirt.migrate_params() == {}
    assert _libvirt.migrate_params("tcp://a", 50) == {"migrate_uri": "tcp://a", "bandwidth": 50}


@pytest.mark.parametrize("code, message, expected", [
    (FakeLibvirt.VIR_ERR_MIGRATE_UNSAFE, "Unsafe migration: cache", "unsafe migration"),
    (FakeLibvirt.VIR_ERR_NO_CONNECT, "no connection driver available", "host unreachable"),
    (FakeLibvirt.VIR_ERR_OPERATION_INVALID, "domain is not running", "operation not valid in the domain's current state"),
    (FakeLibvirt.VIR_ERR_NO_MEMORY, "out of memory", "not enough memory"),
    (FakeLibvirt.VIR_ERR_OPERATION_FAILED, "qemu: Cannot allocate memory", "not enough memory"),
    (FakeLibvirt.VIR_ERR_OPERATION_ABORTED, "canceled by client", "migration job aborted"),
    (FakeLibvirt.VIR_ERR_AUTH_FAILED, "authentication failed: no agent", "authentication failed"),
])
def test_describe_error_names_cause_and_keeps_libvirts_words(fake, code, message, expected):
    described = _libvirt.describe_error(libvirtError(message, code))
    assert described.startswith(expected) and described.endswith(message)


def test_describe_unknown_error_is_libvirts_message(fake):
    assert _libvirt.describe_error(libvirtError("something odd", 999)) == "something odd"


@pytest.mark.parametrize("code, expected", [(0, "nostate"), (1, "running"), (3, "paused"), (5, "shutoff"),
                                            (7, "pmsuspended"), (42, "unknown(42)")])
def test_state_name(code, expected):
    assert _libvirt.state_name(code) == expected


def test_connect_uses_the_modules_uri(fake):
    fake.add_host("qemu:///system", "hv1")

    class Module:
        params = {"uri": "qemu:///system"}

    assert _libvirt.connect(Module(), readonly=True).hostname == "hv1"
    assert fake.opened == [("qemu:///system", True)]


def test_connect_error_names_uri_and_cause(fake):
    with pytest.raises(_libvirt.LibvirtConnectionError) as caught:
        _libvirt.connect("xen+ssh://hv9/system")
    assert caught.value.uri == "xen+ssh://hv9/system"
    assert str(caught.value).startswith("cannot connect to libvirt at 'xen+ssh://hv9/system': host unreachable")


def test_connect_without_libvirt_python(monkeypatch):
    monkeypatch.setattr(_libvirt, "libvirt", None)
    with pytest.raises(_libvirt.LibvirtConnectionError, match="libvirt-python"):
        _libvirt.connect("xen:///system")


def test_find_domain_missing_is_none_other_errors_raise(fake):
    conn = fake.add_host("qemu:///system", "hv1")
    conn.add_domain("a", "u-a")
    assert _libvirt.find_domain(conn, name="a").UUIDString() == "u-a"
    assert _libvirt.find_domain(conn, uuid="u-a").name() == "a"
    assert _libvirt.find_domain(conn, name="b") is None

    def broken(_name):
        raise libvirtError("connection lost", FakeLibvirt.VIR_ERR_RPC)

    conn.lookupByName = broken
    with pytest.raises(libvirtError):
        _libvirt.find_domain(conn, name="a")


def test_completed_job_stats_renamed_with_units(fake):
    conn = fake.add_host("qemu:///system", "hv1")
    domain = conn.add_domain("a", "u-a")
    domain.job_stats = {"time_elapsed": 10, "downtime": 2, "disk_total": 5, "type": 3}
    assert _libvirt.completed_job_stats(domain) == {"time_elapsed_ms": 10, "downtime_ms": 2, "disk_total_bytes": 5}
    assert domain.calls == [("jobStats", FakeLibvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)]


NS = _libvirt.TAGS_NAMESPACE
# What `virsh dumpxml` printed on the lab after
# `virsh metadata D --uri NS --key drs --live --config --set '<tags><tag>db</tag><tag>prod</tag></tags>'`,
# beside another application's metadata.
LAB_XML = f"""<domain type='qemu' id='1'>
  <name>tagme</name>
  <uuid>6b1c2c8e-3f0a-4a39-9d0e-2a4c1b7e9f10</uuid>
  <metadata>
    <app1:foo xmlns:app1="http://app1.org/app1/"><tag>not-ours</tag></app1:foo>
    <drs:tags xmlns:drs="{NS}">
      <drs:tag>db</drs:tag>
      <drs:tag>prod</drs:tag>
    </drs:tags>
  </metadata>
  <memory unit='KiB'>98304</memory>
</domain>
"""


def domain_with(metadata):
    return f"<domain type='xen'><name>d</name><metadata>{metadata}</metadata></domain>"


@pytest.mark.parametrize("xml, tags", [
    (LAB_XML, ["db", "prod"]),
    ("<domain type='xen'><name>d</name></domain>", []),  # no <metadata>
    (domain_with(""), []),
    (domain_with(f'<drs:tags xmlns:drs="{NS}"/>'), []),  # `--set '<tags/>'`
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><drs:tag> web </drs:tag><drs:tag>db</drs:tag>'
                 "<drs:tag>web</drs:tag></drs:tags>"), ["db", "web"]),  # sorted, once each, trimmed
    (domain_with(f'<tags xmlns="{NS}"><tag>db</tag></tags>'), ["db"]),  # a default namespace: the same element
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><tag>db</tag></drs:tags>'), ["db"]),  # children without one
    (domain_with('<x:tags xmlns:x="https://example.org/other"><x:tag>db</x:tag></x:tags>'), []),  # not ours
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><drs:tag>caf\u00e9 &amp; bar</drs:tag></drs:tags>'), ["caf\u00e9 & bar"]),
])
def test_tags_from_the_domain_xml(xml, tags):
    assert _libvirt.parse_tags(xml) == (tags, None)


@pytest.mark.parametrize("xml, words", [
    ("<domain><metadata>", "does not parse"),
    ("", "does not parse"),
    (None, "does not parse"),
    (domain_with(f'<drs:tags xmlns:drs="{NS}">db, prod</drs:tags>'), "text 'db, prod' directly inside <tags>"),
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><drs:tag>db</drs:tag>prod</drs:tags>'),
     "text 'prod' between the <tag> elements"),
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><drs:tag/></drs:tags>'), "an empty <tag>"),
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><drs:tag><b>db</b></drs:tag></drs:tags>'), "<b> inside <tag>"),
    (domain_with(f'<drs:tags xmlns:drs="{NS}"><other:tag xmlns:other="urn:x">db</other:tag></drs:tags>'),
     "<{urn:x}tag> inside <tags>, where only <tag> elements belong"),
    (domain_with(f'<drs:labels xmlns:drs="{NS}"><drs:tag>db</drs:tag></drs:labels>'),
     f"<labels> in the metadata namespace {NS}, where <tags> belongs"),
])
def test_malformed_tags_are_none_and_say_why(xml, words):
    tags, problem = _libvirt.parse_tags(xml)
    assert tags == []
    assert words in problem


@pytest.mark.parametrize("uri, tunnelled, encrypted", [
    ("xen+ssh://hv2/system", True, True),
    ("qemu+tls://hv2/system", True, True),
    ("qemu://hv2/system", True, True),            # remote without a transport: libvirt uses tls
    ("qemu+libssh2://hv2/system", True, True),
    ("qemu+tcp://hv2/system", True, False),       # tunnelled, but in a plain TCP connection
    ("xen+ssh://hv2/system", False, False),       # not tunnelled: the stream has its own TCP connection
    ("qemu+tls://hv2/system", False, False),
])
def test_encrypted_stream(uri, tunnelled, encrypted):
    assert _libvirt.encrypted_stream(uri, tunnelled) is encrypted
