"""A small in-memory stand-in for the ``libvirt`` Python module, for unit tests.

``FakeLibvirt`` is patched in as ``_libvirt.libvirt``. It holds hypervisors by URI
(``FakeConnect``), each with domains (``FakeDomain``), and a ``FakeClock`` that drives both the
monotonic clock the modules read and the domains' CPU time. Migrations move a FakeDomain
between two FakeConnects the way libvirt does (or fail the way a test tells them to).

These fakes prove the modules' logic only; the lab tests in tests/integration prove the modules work.
"""

from __future__ import annotations

import threading
from xml.sax.saxutils import escape

from ansible_collections.xen.drs.plugins.module_utils._libvirt import TAGS_NAMESPACE, LibvirtError

RUNNING, PAUSED, SHUTOFF = 1, 3, 5


class libvirtError(LibvirtError):  # pylint: disable=invalid-name
    """libvirt's error class (same spelling), carrying the code and message a test gives it."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code
        self.message = message

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return self.message


class FakeClock:
    """Monotonic time in ns that only moves when the code under test sleeps."""

    def __init__(self):
        self.now_ns = 1_000_000_000
        self.on_sleep = []  # callables run after each sleep, e.g. to start or stop a domain

    def monotonic_ns(self):
        return self.now_ns

    def sleep(self, seconds):
        self.now_ns += int(seconds * 1e9)
        for hook in self.on_sleep:
            hook()


class FakeDomain:
    def __init__(self, world, name, uuid, state=RUNNING, vcpus=1, memory_mb=128, cores_used=0.0, dom_id=None):
        self.world = world
        self._name = name
        self._uuid = uuid
        self._state = state
        self.vcpus = vcpus
        self.memory_mb = memory_mb
        self.cores_used = cores_used
        self.started_ns = world.clock.now_ns
        self.cpu_time_offset = 0
        self.dom_id = dom_id
        self.job_stats = {}
        self.calls = []
        self.migrate_error = None  # a libvirtError to raise from the migration call
        self.migrate_seconds = 0  # real seconds the migration takes, unless abortJob() ends it first
        self.abort_error = None  # a libvirtError for abortJob() to raise (a driver that cannot abort)
        self.migrate_moves = True  # False: "succeeds" without moving (for verification tests)
        self.arrival_state = RUNNING  # its state on the destination after a migration (PAUSED: arrived paused)
        self.downtime_error = None
        self.metadata = ""  # what XMLDesc prints inside <metadata> (nothing: no <metadata> element)
        self.xml = None  # the whole of XMLDesc's answer instead, for XML libvirt would never print
        self._aborted = threading.Event()

    def set_tags(self, *tags):
        """The metadata libvirt keeps after `virsh metadata --uri TAGS_NAMESPACE --key drs --set '<tags>...'`
        (as seen on the lab: the key becomes the prefix of every element)."""
        inner = "".join(f"<drs:tag>{escape(tag)}</drs:tag>" for tag in tags)
        self.metadata = f'<drs:tags xmlns:drs="{TAGS_NAMESPACE}">{inner}</drs:tags>'

    # what the modules call
    def name(self):
        return self._name

    def UUIDString(self):  # noqa: N802  pylint: disable=invalid-name
        return self._uuid

    def ID(self):  # noqa: N802  pylint: disable=invalid-name
        if self.dom_id is not None:
            return self.dom_id
        return 7 if self._state != SHUTOFF else -1

    def isActive(self):  # noqa: N802  pylint: disable=invalid-name
        return self._state != SHUTOFF

    def state(self):
        return [self._state, 1]

    def cpu_time_ns(self):
        if self._state == SHUTOFF:
            return 0
        return self.cpu_time_offset + int(self.cores_used * (self.world.clock.now_ns - self.started_ns))

    def info(self):
        return [self._state, self.memory_mb * 1024, self.memory_mb * 1024, self.vcpus, self.cpu_time_ns()]

    def XMLDesc(self, flags=0):  # noqa: N802  pylint: disable=invalid-name
        if self.xml is not None:
            return self.xml
        metadata = f"\n  <metadata>\n    {self.metadata}\n  </metadata>" if self.metadata else ""
        return (f"<domain type='qemu' id='{self.ID()}'>\n  <name>{escape(self._name)}</name>\n"
                f"  <uuid>{self._uuid}</uuid>{metadata}\n"
                f"  <memory unit='KiB'>{self.memory_mb * 1024}</memory>\n  <vcpu placement='static'>{self.vcpus}</vcpu>\n"
                "</domain>\n")

    def jobStats(self, flags=0):  # noqa: N802  pylint: disable=invalid-name
        self.calls.append(("jobStats", flags))
        return dict(self.job_stats)

    def abortJob(self):  # noqa: N802  pylint: disable=invalid-name
        self.calls.append(("abortJob",))
        error = self.abort_error  # a libvirtError, or a list of them (None: that try succeeds) used up one per call
        if isinstance(error, list):
            error = error.pop(0) if error else None
        if error is not None:
            raise error  # pylint: disable=raising-bad-type  # a libvirtError set by the test
        self._aborted.set()

    def migrateSetMaxDowntime(self, ms, flags=0):  # noqa: N802  pylint: disable=invalid-name
        self.calls.append(("migrateSetMaxDowntime", ms, flags))
        if self.downtime_error is not None:
            raise self.downtime_error  # pylint: disable=raising-bad-type  # a libvirtError set by the test

    def migrateToURI3(self, dconnuri, params, flags):  # noqa: N802  pylint: disable=invalid-name
        self.calls.append(("migrateToURI3", dconnuri, dict(params), flags))
        self._migrate(self.world.host(dconnuri, "source libvirtd"), flags)

    def migrate3(self, dconn, params, flags):
        self.calls.append(("migrate3", dconn.uri, dict(params), flags))
        return self._migrate(dconn, flags)

    def _migrate(self, dest, flags):
        if self.migrate_seconds and self._aborted.wait(self.migrate_seconds):
            raise libvirtError("operation aborted: migration out job: canceled by client",
                               FakeLibvirt.VIR_ERR_OPERATION_ABORTED)
        if self.migrate_error is not None:
            raise self.migrate_error  # pylint: disable=raising-bad-type  # a libvirtError set by the test
        if not self.migrate_moves:
            return self
        source = self.world.owner(self)
        if flags & FakeLibvirt.VIR_MIGRATE_UNDEFINE_SOURCE:
            source.domains.remove(self)
        else:
            self._state = SHUTOFF
        moved = FakeDomain(self.world, self._name, self._uuid, self.arrival_state, self.vcpus, self.memory_mb,
                           self.cores_used)
        moved.metadata = self.metadata  # the domain's XML travels with it (QEMU keeps <metadata>)
        moved.job_stats = {"time_elapsed": 2100, "downtime": 40, "data_total": 140000000,
                           "data_processed": 141000000, "memory_bps": 120000000, "type": 3}
        dest.domains.append(moved)
        return moved


class FakeConnect:
    def __init__(self, world, uri, hostname, cpus=4, memory_mb=8192, free_mb=4096):
        self.world = world
        self.uri = uri
        self.hostname = hostname
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.free_mb = free_mb
        self.domains = []
        self.readonly = None
        self.closed = False

    def add_domain(self, name, uuid, **kwargs):
        domain = FakeDomain(self.world, name, uuid, **kwargs)
        self.domains.append(domain)
        return domain

    def getInfo(self):  # noqa: N802  pylint: disable=invalid-name
        return ["x86_64", self.memory_mb, self.cpus, 2400, 1, 1, self.cpus, 1]

    def getHostname(self):  # noqa: N802  pylint: disable=invalid-name
        return self.hostname

    def getFreeMemory(self):  # noqa: N802  pylint: disable=invalid-name
        return self.free_mb * 1024 * 1024

    def listAllDomains(self, flags=0):  # noqa: N802  pylint: disable=invalid-name
        return list(self.domains)

    def lookupByName(self, name):  # noqa: N802  pylint: disable=invalid-name
        for domain in self.domains:
            if domain.name() == name:
                return domain
        raise libvirtError(f"Domain not found: no domain with matching name '{name}'", FakeLibvirt.VIR_ERR_NO_DOMAIN)

    def lookupByUUIDString(self, uuid):  # noqa: N802  pylint: disable=invalid-name
        for domain in self.domains:
            if domain.UUIDString() == uuid:
                return domain
        raise libvirtError(f"Domain not found: no domain with matching uuid '{uuid}'", FakeLibvirt.VIR_ERR_NO_DOMAIN)

    def close(self):
        self.closed = True
        return 0


class FakeLibvirt:
    """The fake ``libvirt`` module: constants (real values), libvirtError, open/openReadOnly."""

    libvirtError = libvirtError

    VIR_ERR_INTERNAL_ERROR = 1
    VIR_ERR_NO_MEMORY = 2
    VIR_ERR_NO_SUPPORT = 3
    VIR_ERR_NO_CONNECT = 5
    VIR_ERR_INVALID_ARG = 8
    VIR_ERR_OPERATION_FAILED = 9
    VIR_ERR_XML_ERROR = 27
    VIR_ERR_OPERATION_DENIED = 29
    VIR_ERR_SYSTEM_ERROR = 38
    VIR_ERR_RPC = 39
    VIR_ERR_NO_DOMAIN = 42
    VIR_ERR_AUTH_FAILED = 45
    VIR_ERR_OPERATION_INVALID = 55
    VIR_ERR_CONFIG_UNSUPPORTED = 67
    VIR_ERR_OPERATION_TIMEOUT = 68
    VIR_ERR_ARGUMENT_UNSUPPORTED = 74
    VIR_ERR_OPERATION_ABORTED = 78
    VIR_ERR_MIGRATE_UNSAFE = 81
    VIR_ERR_OPERATION_UNSUPPORTED = 84
    VIR_ERR_ACCESS_DENIED = 88
    VIR_ERR_CPU_INCOMPATIBLE = 91
    VIR_ERR_AUTH_UNAVAILABLE = 94

    VIR_MIGRATE_LIVE = 1
    VIR_MIGRATE_PEER2PEER = 2
    VIR_MIGRATE_TUNNELLED = 4
    VIR_MIGRATE_PERSIST_DEST = 8
    VIR_MIGRATE_UNDEFINE_SOURCE = 16
    VIR_MIGRATE_NON_SHARED_DISK = 64
    VIR_MIGRATE_NON_SHARED_INC = 128
    VIR_MIGRATE_UNSAFE = 512
    VIR_MIGRATE_PARAM_URI = "migrate_uri"
    VIR_MIGRATE_PARAM_BANDWIDTH = "bandwidth"
    VIR_DOMAIN_JOB_STATS_COMPLETED = 1

    def __init__(self):
        self.clock = FakeClock()
        self.hosts = {}
        self.opened = []  # (uri, readonly) of every connection opened

    def add_host(self, uri, hostname, **kwargs):
        self.hosts[uri] = FakeConnect(self, uri, hostname, **kwargs)
        return self.hosts[uri]

    def host(self, uri, who="client"):
        if uri not in self.hosts:
            raise libvirtError(f"unable to connect to server at '{uri}' ({who}): Connection refused",
                               self.VIR_ERR_SYSTEM_ERROR)
        return self.hosts[uri]

    def owner(self, domain):
        return next(conn for conn in self.hosts.values() if domain in conn.domains)

    def registerErrorHandler(self, handler, ctx):  # noqa: N802  pylint: disable=invalid-name
        pass

    def open(self, uri):
        self.opened.append((uri, False))
        return self.host(uri)

    def openReadOnly(self, uri):  # noqa: N802  pylint: disable=invalid-name
        self.opened.append((uri, True))
        return self.host(uri)
