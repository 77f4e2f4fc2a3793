# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt plumbing shared by the xen.drs modules.

One place for the guarded import, opening connections, naming domain states, reading a domain's
xen.drs tags from its XML, building migration URIs/flags and turning libvirt errors into messages
that name the cause.
Nothing here calls ``exit_json``/``fail_json``: helpers raise, modules report.

Every libvirt constant is looked up on the ``libvirt`` module at call time, so unit tests
can substitute a fake module for it.
"""

from __future__ import annotations

import traceback
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

from ansible_collections.xen.drs.plugins.module_utils._state import PERMANENT, TRANSIENT

try:
    import libvirt
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

    class LibvirtError(Exception):
        """Stand-in so ``except LibvirtError`` stays valid without libvirt-python."""

        def get_error_code(self):
            return None

        def get_error_message(self):
            return str(self)

else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
    LibvirtError = libvirt.libvirtError


# virDomainState, in enum order (stable libvirt ABI).
STATE_NAMES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended")

# libvirt error code name -> the cause in words, for the errors a migration typically meets.
_CAUSES = (
    ("VIR_ERR_NO_CONNECT", "host unreachable"),
    ("VIR_ERR_SYSTEM_ERROR", "host unreachable or system error"),
    ("VIR_ERR_RPC", "connection to the host failed"),
    ("VIR_ERR_AUTH_FAILED", "authentication failed"),
    ("VIR_ERR_AUTH_UNAVAILABLE", "authentication unavailable"),
    ("VIR_ERR_OPERATION_DENIED", "permission denied"),
    ("VIR_ERR_NO_DOMAIN", "no such domain"),
    ("VIR_ERR_OPERATION_INVALID", "operation not valid in the domain's current state"),
    ("VIR_ERR_MIGRATE_UNSAFE", "unsafe migration (storage not shared or disk cache not safe; "
                               "use copy_storage, or unsafe=true if the storage really is shared)"),
    ("VIR_ERR_NO_MEMORY", "not enough memory"),
    ("VIR_ERR_OPERATION_ABORTED", "migration job aborted"),
    ("VIR_ERR_OPERATION_TIMEOUT", "operation timed out"),
    ("VIR_ERR_NO_SUPPORT", "not supported by this hypervisor driver"),
    ("VIR_ERR_ARGUMENT_UNSUPPORTED", "option not supported by this hypervisor driver"),
    ("VIR_ERR_OPERATION_UNSUPPORTED", "operation not supported by this hypervisor driver"),
    ("VIR_ERR_CONFIG_UNSUPPORTED", "domain configuration not supported on the destination"),
    ("VIR_ERR_CPU_INCOMPATIBLE", "the destination's CPU cannot run the domain's CPU model"),
    ("VIR_ERR_INVALID_ARG", "invalid argument"),
)

# Causes libvirt reports only in the message text (as an internal or operation error).
_MESSAGE_CAUSES = (
    ("cannot allocate memory", "not enough memory"),
    ("out of memory", "not enough memory"),
    ("insufficient memory", "not enough memory"),
    ("migrate guest to the same host", "destination is the source host"),
    ("connection refused", "host unreachable (connection refused)"),
    ("no route to host", "host unreachable (no route)"),
    ("name or service not known", "host unreachable (unknown host name)"),
)


# A failed migration is PERMANENT when its cause stays with the domain or the pair of hosts, so that trying
# again only fails again (the plans hold the domain at once), and TRANSIENT otherwise (the plans hold it only
# once it fails again). libvirt's error codes (virErrorNumber, include/libvirt/virterror.h) that say so:
_PERMANENT_CODES = (
    "VIR_ERR_CPU_INCOMPATIBLE",  # the destination's CPU lacks what the guest's CPU model needs
    "VIR_ERR_OPERATION_UNSUPPORTED",  # the driver does not do this migration
    "VIR_ERR_ARGUMENT_UNSUPPORTED",  # an option (flag, parameter) the driver refuses
    "VIR_ERR_NO_SUPPORT",  # the driver has no such function
    "VIR_ERR_CONFIG_UNSUPPORTED",  # the domain's configuration cannot run on the destination
    "VIR_ERR_MIGRATE_UNSAFE",  # storage or disk cache not safe to migrate
    "VIR_ERR_INVALID_ARG",
    "VIR_ERR_XML_ERROR",  # the domain's XML, as the destination reads it
    "VIR_ERR_XML_DETAIL",
    "VIR_ERR_XML_INVALID_SCHEMA",
    "VIR_ERR_NO_SECURITY_MODEL",  # the destination lacks the domain's security driver
    "VIR_ERR_OPERATION_DENIED",
    "VIR_ERR_ACCESS_DENIED",  # an access control policy refuses it
    "VIR_ERR_HOOK_SCRIPT_FAILED",  # a hook on the destination refuses the domain
)
# Permanent causes libvirt reports only in the message text (as an internal or operation error).
_PERMANENT_MESSAGES = (
    "migrate guest to the same host",  # two hosts with one host UUID
    "guest cpu doesn't match",
    "incompatible with host cpu",
)


def failure_kind(err):
    """PERMANENT or TRANSIENT for a libvirt error that failed a migration (see _PERMANENT_CODES).

    Any other error (the connection lost, a libvirtd killed, the job aborted or timed out, not enough memory
    on the destination now, an internal error) is TRANSIENT: the domain is held back only if it fails again."""
    lowered = (err.get_error_message() or str(err)).lower()
    if any(needle in lowered for needle in _PERMANENT_MESSAGES):
        return PERMANENT
    return PERMANENT if any(is_error(err, name) for name in _PERMANENT_CODES) else TRANSIENT


class LibvirtConnectionError(Exception):
    """A libvirt connection could not be opened; the message names the URI and why."""

    def __init__(self, uri, reason):
        self.uri = uri
        self.reason = reason
        super().__init__(f"cannot connect to libvirt at '{uri}': {reason}")


def describe_error(err):
    """One line for a libvirt error: the cause in words, then libvirt's own message."""
    message = (err.get_error_message() or str(err)).strip()
    lowered = message.lower()
    for needle, cause in _MESSAGE_CAUSES:
        if needle in lowered:
            return f"{cause}: {message}"
    code = err.get_error_code()
    for name, cause in _CAUSES:
        if code is not None and code == getattr(libvirt, name, None):
            return f"{cause}: {message}"
    return message


def is_error(err, name):
    """True when ``err`` carries the libvirt error code called ``name`` (e.g. ``VIR_ERR_NO_DOMAIN``)."""
    code = err.get_error_code()
    return code is not None and code == getattr(libvirt, name, None)


def _quiet(_ctx, _err):
    """libvirt-python prints every error on stderr by default; the modules report them instead."""


def connect(module_or_uri, readonly=False):
    """Open a libvirt connection to ``module_or_uri`` (a URI, or a module whose ``uri`` option is used).

    Raises LibvirtConnectionError naming the URI and the cause.
    """
    uri = module_or_uri if isinstance(module_or_uri, str) else module_or_uri.params["uri"]
    if libvirt is None:
        raise LibvirtConnectionError(uri, "the libvirt Python bindings (libvirt-python) are not installed")
    libvirt.registerErrorHandler(_quiet, None)
    try:
        conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
    except LibvirtError as err:
        raise LibvirtConnectionError(uri, describe_error(err)) from err
    if conn is None:
        raise LibvirtConnectionError(uri, "libvirt returned no connection")
    return conn


def state_name(code):
    """libvirt domain state code -> lowercase word (``running``, ``shutoff``, ...)."""
    if 0 <= code < len(STATE_NAMES):
        return STATE_NAMES[code]
    return f"unknown({code})"


def domain_state(domain):
    """State word of a domain, as libvirt reports it now."""
    return state_name(domain.state()[0])


# A domain's tags live in its <metadata>, in the collection's own XML namespace, as libvirt writes
# them for `virsh metadata DOMAIN --uri TAGS_NAMESPACE --key TAGS_KEY --set '<tags><tag>db</tag></tags>'`:
#   <metadata><drs:tags xmlns:drs="TAGS_NAMESPACE"><drs:tag>db</drs:tag></drs:tags></metadata>
TAGS_NAMESPACE = "https://github.com/xen-drs/xen.drs/metadata/tags"
TAGS_KEY = "drs"


def _local(tag):
    """An element name without the tags namespace (ElementTree spells it ``{uri}name``); another one stays."""
    prefix = f"{{{TAGS_NAMESPACE}}}"
    return tag[len(prefix):] if tag.startswith(prefix) else tag


def _tag_values(tags_element):
    """The tags inside one <tags> element; raises ValueError naming what does not belong there."""
    values = []
    if (tags_element.text or "").strip():
        raise ValueError(f"text {tags_element.text.strip()!r} directly inside <tags>")
    for child in tags_element:
        if child.tag not in (f"{{{TAGS_NAMESPACE}}}tag", "tag"):
            raise ValueError(f"<{_local(child.tag)}> inside <tags>, where only <tag> elements belong")
        if len(child):
            raise ValueError(f"<{_local(child[0].tag)}> inside <tag>, where only the tag's text belongs")
        value = (child.text or "").strip()
        if not value:
            raise ValueError("an empty <tag>")
        if (child.tail or "").strip():
            raise ValueError(f"text {child.tail.strip()!r} between the <tag> elements")
        values.append(value)
    return values


def parse_tags(domain_xml):
    """(tags sorted and unique, None), or ([], what is wrong) for XML that is not as documented.

    ``domain_xml`` is a domain's XML as XMLDesc returns it. A domain without the xen.drs element
    in its <metadata> has no tags (and nothing is wrong). Never raises.
    """
    try:
        root = ElementTree.fromstring(domain_xml)
    except (ElementTree.ParseError, TypeError, ValueError) as err:
        return [], f"the domain XML does not parse ({err})"
    tags = set()
    try:
        for metadata in root.findall("metadata"):
            for element in metadata:
                if not isinstance(element.tag, str) or not element.tag.startswith(f"{{{TAGS_NAMESPACE}}}"):
                    continue  # another application's metadata (or a comment)
                if _local(element.tag) != "tags":
                    raise ValueError(f"<{_local(element.tag)}> in the metadata namespace {TAGS_NAMESPACE}, "
                                     "where <tags> belongs")
                tags.update(_tag_values(element))
    except ValueError as err:
        return [], str(err)
    return sorted(tags), None


def find_domain(conn, name=None, uuid=None):
    """The domain with this UUID (preferred) or name on ``conn``, or None if it is not defined there."""
    try:
        return conn.lookupByUUIDString(uuid) if uuid else conn.lookupByName(name)
    except LibvirtError as err:
        if is_error(err, "VIR_ERR_NO_DOMAIN"):
            return None
        raise


def _split_scheme(uri, option):
    parts = urlsplit(uri)
    if not parts.scheme:
        raise ValueError(f"{option} '{uri}' is not a libvirt URI (expected e.g. xen:///system)")
    driver, _plus, transport = parts.scheme.partition("+")
    return parts, driver, transport


def _host_for_uri(host):
    """Bracket a bare IPv6 address; a host name, IPv4 address or ``host:port`` stays as it is."""
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


def build_destination_uri(uri, destination):
    """Destination libvirt URI: the source ``uri`` with its host replaced by ``destination``.

    The driver, path and query are kept. A remote source URI keeps its transport and user
    (``qemu+tcp://a/system`` -> ``qemu+tcp://<destination>/system``); a local one
    (``xen:///system``, ``qemu+unix:///system``) gets ``+ssh``, libvirt's usual remote transport
    (``xen:///system`` -> ``xen+ssh://<destination>/system``).
    """
    if not destination:
        raise ValueError("destination must be a host name, got an empty value")
    parts, driver, transport = _split_scheme(uri, "uri")
    if not parts.hostname or transport == "unix":
        transport = "ssh"
    scheme = f"{driver}+{transport}" if transport else driver
    netloc = _host_for_uri(destination)
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port and parts.hostname:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


ENCRYPTED_TRANSPORTS = ("ssh", "libssh", "libssh2", "tls")


def encrypted_stream(destination_uri, tunnelled):
    """Whether a peer-to-peer migration's memory stream crosses the network encrypted.

    Only a tunnelled migration sends it inside the libvirt connection, and that connection is encrypted
    when its transport is ssh or tls (a remote URI without a transport uses tls). Otherwise the stream
    goes over its own TCP connection, in clear text."""
    parts, _driver, transport = _split_scheme(destination_uri, "destination_uri")
    return bool(tunnelled) and (transport in ENCRYPTED_TRANSPORTS or (not transport and bool(parts.hostname)))


def build_migrate_uri(migration_address):
    """Migration data URI for ``migration_address``, or None to let libvirt choose.

    QEMU and Xen's libxl driver both take ``tcp://host[:port]`` (libxl picks a port from
    49152-49216 when none is given). A value that already has a scheme is used as given.
    """
    if not migration_address:
        return None
    if "://" in migration_address:
        return migration_address
    return f"tcp://{_host_for_uri(migration_address)}"


def migrate_flags(live=True, peer_to_peer=True, tunnelled=False, persistent=True,
                  undefine_source=True, copy_storage="none", unsafe=False):
    """virDomainMigrateFlags for the given choices."""
    chosen = (
        (live, "VIR_MIGRATE_LIVE"),
        (peer_to_peer, "VIR_MIGRATE_PEER2PEER"),
        (tunnelled, "VIR_MIGRATE_TUNNELLED"),
        (persistent, "VIR_MIGRATE_PERSIST_DEST"),
        (undefine_source, "VIR_MIGRATE_UNDEFINE_SOURCE"),
        (copy_storage == "all", "VIR_MIGRATE_NON_SHARED_DISK"),
        (copy_storage == "incremental", "VIR_MIGRATE_NON_SHARED_INC"),
        (unsafe, "VIR_MIGRATE_UNSAFE"),
    )
    flags = 0
    for wanted, name in chosen:
        if wanted:
            flags |= getattr(libvirt, name)
    return flags


def migrate_params(migrate_uri=None, bandwidth_mib=None):
    """Typed parameters for virDomainMigrateToURI3 / virDomainMigrate3."""
    params = {}
    if migrate_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migrate_uri
    if bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth_mib
    return params


# jobStats key -> returned key. Times are milliseconds, sizes bytes, rates bytes/s.
_JOB_FIELDS = (
    ("time_elapsed", "time_elapsed_ms"),
    ("downtime", "downtime_ms"),
    ("setup_time", "setup_time_ms"),
    ("data_total", "data_total_bytes"),
    ("data_processed", "data_processed_bytes"),
    ("data_remaining", "data_remaining_bytes"),
    ("memory_total", "memory_total_bytes"),
    ("memory_processed", "memory_processed_bytes"),
    ("memory_bps", "memory_bps"),
    ("memory_iteration", "memory_iterations"),
    ("disk_total", "disk_total_bytes"),
    ("disk_processed", "disk_processed_bytes"),
    ("disk_bps", "disk_bps"),
)


def completed_job_stats(domain):
    """Statistics of the domain's last completed job (a migration), or {} if libvirt has none."""
    try:
        stats = domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except LibvirtError:
        return {}
    return {out: stats[key] for key, out in _JOB_FIELDS if key in stats}
