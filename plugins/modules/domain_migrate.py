#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: domain_migrate
short_description: Live-migrate one libvirt domain to another hypervisor, safely
version_added: 0.1.0
description:
  - Migrates one domain, found by O(name) or O(uuid), from the hypervisor it runs on (O(uri)) to
    O(destination), then checks that it runs there (libvirt's state C(running); active but paused is not enough)
    and no longer runs on the source.
  - Runs on the B(source) hypervisor; playbooks C(delegate_to) it.
  - A domain that is not running on the source but is running on the destination is left alone
    (RV(ignore:changed=false)), so repeating a migration is a no-op.
  - A domain that is not running on the source any more and not on the destination either (shut down, paused,
    or moved elsewhere since the plan was made) is not touched; the task is skipped, and RV(ignore:msg) says
    where the domain is and in which state, on both hosts (a domain paused on the destination is not running
    there, so repeating a migration that arrived paused is skipped, not reported as done).
  - If the migration fails, libvirt keeps the domain running on the source. The module fails with a
    message naming the cause (destination unreachable, not enough memory, unsafe storage, timeout, ...)
    and reports the domain's state on the source in RV(domain_state_after).
  - After a successful migration the record C({time, vm, uuid, source, destination}) is appended to the
    source's state file (O(state_path)), where M(xen.drs.hypervisor_info) reads it.
  - A migration that was tried and failed (libvirt refused or aborted it, or reported success while the domain
    did not run on the destination afterwards) is recorded there too, with its error, its kind and a count, as a
    failure (RV(failure)); M(xen.drs.hypervisor_info) reports the domain's last one as its C(last_failure).
    A destination that cannot be reached before the migration starts is not recorded; that is the host's trouble,
    not the domain's.
  - The kind is V(permanent) when the cause stays with the domain or the pair of hosts, so that trying again only
    fails again. libvirt says so with its error code C(VIR_ERR_CPU_INCOMPATIBLE) (a CPU model the destination lacks),
    C(VIR_ERR_OPERATION_UNSUPPORTED), C(VIR_ERR_ARGUMENT_UNSUPPORTED), C(VIR_ERR_NO_SUPPORT) (the driver refuses
    the migration or one of its options), C(VIR_ERR_CONFIG_UNSUPPORTED), C(VIR_ERR_MIGRATE_UNSAFE), C(VIR_ERR_INVALID_ARG),
    C(VIR_ERR_XML_ERROR), C(VIR_ERR_XML_DETAIL), C(VIR_ERR_XML_INVALID_SCHEMA), C(VIR_ERR_NO_SECURITY_MODEL),
    C(VIR_ERR_OPERATION_DENIED), C(VIR_ERR_ACCESS_DENIED) or C(VIR_ERR_HOOK_SCRIPT_FAILED), or with a message saying
    that the guest's CPU does not match or that the destination is the source host. A success that the check
    afterwards finds false is permanent too.
  - Any other failure is V(transient), for example the connection lost during the migration (a libvirtd killed or restarted, a
    link cut), the job aborted at O(timeout), not enough memory on the destination at that moment, libvirt's
    internal errors. The count is the number of failures of the domain from this host in a row (none of its
    migrations recorded in between), this one included; a failure after another also records when that one was.
  - The plans (P(xen.drs.rebalance_plan#filter), policy C(failure_hold), 240 minutes by default) hold the domain
    back after a permanent failure at once, and after a transient one only when it repeats (the failure before it
    in the row came less than C(failure_hold) minutes earlier), so that a migration that keeps failing is not tried
    again every run while a single network glitch does not park the domain for hours.
  - A migration that libvirt reports as successful while the domain is not running on the destination afterwards
    fails, and RV(destination_state) says what was found there (V(undefined) when the domain is not there at all).
    A domain that arrived B(paused) is not resumed. It is left paused on the destination, where libvirt put it
    (defined there too with O(persistent=true)). When the source no longer runs it (with O(undefine_source=true)
    its definition is gone from the source) that paused domain is its only copy, and the message says so, names
    the destination and asks to resume it there (C(virsh resume)) once the cause is known. The plans do not move
    a domain that is not running, so a later run leaves it alone too.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details:
      - Looks the domain up on the source and opens a read-only connection to O(destination_uri) to
        prove that it is reachable, then reports what would happen with RV(ignore:changed=true).
        Nothing is migrated or written.
  diff_mode:
    support: full
    details: The domain's host before and after.
options:
  name:
    description: Name of the domain to migrate. Mutually exclusive with O(uuid).
    type: str
  uuid:
    description: UUID of the domain to migrate. Mutually exclusive with O(name).
    type: str
  uri:
    description:
      - libvirt URI of the source hypervisor, as seen from where the module runs. Always used as given.
    type: str
    default: xen:///system
  source:
    description:
      - Name of the source host as the cluster knows it, for the migration record.
      - Defaults to the hostname libvirt reports for O(uri).
    type: str
  destination:
    description:
      - Name of the destination host as the cluster knows it, for the record and the default O(destination_uri).
    type: str
    required: true
  destination_uri:
    description:
      - libvirt URI of the destination, as the source sees it.
      - >-
        Default: O(uri) with its host replaced by O(destination). The driver, path and query of O(uri) are kept.
        A remote O(uri) keeps its transport and user. A local one gets C(+ssh).
        So V(xen:///system) becomes C(xen+ssh://DESTINATION/system), and V(qemu+tcp://hv1/system)
        becomes C(qemu+tcp://DESTINATION/system).
    type: str
  migration_address:
    description:
      - Address of the destination on the dedicated migration network.
        The memory stream goes there instead of to the address of O(destination_uri).
        This replaces the CSV C(host_mapping) of older tools.
      - Becomes the migration URI C(tcp://ADDRESS). QEMU and Xen's libxl driver both take that form;
        libxl picks a port in 49152-49216 unless one is given (C(ADDRESS:PORT)). A value that already
        contains C(://) is passed to libvirt unchanged.
      - Not used with O(tunnelled=true), where the data travels inside the libvirt connection.
    type: str
  live:
    description:
      - Live migration. The domain keeps running while its memory is copied.
      - V(false) pauses the domain for the whole copy (shorter total time, longer downtime).
    type: bool
    default: true
  peer_to_peer:
    description:
      - The source libvirtd connects to O(destination_uri) itself (C(VIR_MIGRATE_PEER2PEER)).
      - V(false) is client-managed migration. The module connects to both hosts and drives the migration.
    type: bool
    default: true
  tunnelled:
    description:
      - Send the migration data through the libvirt connection. Requires O(peer_to_peer=true).
      - Only then is the memory stream encrypted, and only when O(destination_uri)'s transport is C(ssh) or C(tls).
        Otherwise the guest's memory crosses the network in clear text, and the module warns unless
        O(private_network=true).
    type: bool
    default: false
  private_network:
    description:
      - The migration network is private (a dedicated VLAN or cable that nobody else can read), so a clear-text
        memory stream is acceptable there and the module does not warn about it.
      - Playbooks pass C(xen_drs_migration_network_private).
    type: bool
    default: false
  persistent:
    description: Define the domain persistently on the destination.
    type: bool
    default: true
  undefine_source:
    description: Remove the domain's definition from the source after a successful migration.
    type: bool
    default: true
  bandwidth_mib:
    description: Bandwidth limit for the migration, in MiB/s. Unlimited when omitted.
    type: int
  max_downtime_ms:
    description:
      - Maximum tolerable downtime at the switch-over, in milliseconds, set on the domain before migrating.
      - Not every driver supports it (Xen's libxl driver does not). The module then fails before migrating.
    type: int
  timeout:
    description:
      - Seconds after which the migration job is aborted (C(virDomainAbortJob)). The domain then keeps running on the source.
      - An abort that libvirt refuses because the job is busy (it cannot take the domain's state change lock, held
        for example by a call stuck on a cut network) is tried again every 2 s until the migration call returns.
    type: int
    default: 300
  copy_storage:
    description:
      - Copy non-shared disks to the destination. V(all) copies whole disks, V(incremental) copies
        only what is not in a shared backing image. The destination must already have the target volumes or pool.
      - Keep V(none) for shared storage such as iSCSI.
    type: str
    choices: [none, all, incremental]
    default: none
  unsafe:
    description:
      - Migrate even if libvirt considers it unsafe (for example disks with a cache mode that is not safe on
        shared storage). Only for storage you know to be shared and coherent.
    type: bool
    default: false
  state_path:
    description: The source's state file, where the migration record is appended.
    type: path
    default: /var/lib/xen-drs/state.json
requirements:
  - libvirt-python (the C(libvirt) Python module) on the source host
notes:
  - This module writes the record to the B(source's) state file only. Run M(xen.drs.migration_record)
    delegated to the destination with RV(record) afterwards so that both hosts' state hold it
    (see the examples).
  - The module verifies the outcome by domain UUID on both hosts, so the destination must be reachable from the
    source at O(destination_uri) also with O(peer_to_peer=true).
  - Migration statistics come from libvirt's completed-job statistics. Drivers that keep none return an empty RV(job).
  - On Xen (libvirt's libxl driver) the options that apply are O(live), O(peer_to_peer), O(tunnelled), O(persistent),
    O(undefine_source) and O(migration_address). O(bandwidth_mib), O(max_downtime_ms), O(copy_storage) and O(unsafe)
    are QEMU/KVM features that libvirt rejects for Xen, and the module then fails before anything moves.
    If the driver cannot abort a job, reaching O(timeout) produces a warning and the migration runs to its end.
  - Verified on Xen 4.17 with libvirt 9.0's libxl driver (the collection's Xen lab, C(tests/xen)), peer-to-peer over
    C(xen+ssh://), with and without O(migration_address). libxl keeps no completed-job statistics, so RV(job) is empty
    there and the downtime is not reported. PV guests need a hypervisor built with shadow paging to migrate live
    (Debian's is built without it; see C(tests/xenlab/README.md)).
seealso:
  - module: xen.drs.hypervisor_info
  - module: xen.drs.migration_record
  - name: libvirt migration guide
    description: Transports, peer-to-peer and tunnelled migration, migration URIs.
    link: https://libvirt.org/migration.html
"""

EXAMPLES = r"""
- name: Live-migrate web1 from hv1 to hv2 over the migration network
  xen.drs.domain_migrate:
    name: web1
    source: hv1
    destination: hv2
    migration_address: 10.10.0.2
    timeout: 120
  delegate_to: hv1
  register: moved

- name: Record the migration on the destination too
  xen.drs.migration_record:
    time: "{{ moved.record.time }}"
    vm: "{{ moved.record.vm }}"
    uuid: "{{ moved.record.uuid }}"
    source: "{{ moved.record.source }}"
    destination: "{{ moved.record.destination }}"
  delegate_to: hv2
  when: moved is changed

- name: QEMU pool reached over TCP, with a bandwidth cap and a downtime target
  xen.drs.domain_migrate:
    uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
    uri: qemu:///system
    destination: hv3
    destination_uri: qemu+tcp://hv3.example.com/system
    bandwidth_mib: 500
    max_downtime_ms: 300
  delegate_to: hv1
"""

RETURN = r"""
domain:
  description: The migrated domain.
  returned: always
  type: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web1
    uuid:
      description: Domain UUID.
      type: str
      sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
source:
  description: Source host name.
  returned: always
  type: str
  sample: hv1
destination:
  description: Destination host name.
  returned: always
  type: str
  sample: hv2
destination_uri:
  description: libvirt URI of the destination that was used.
  returned: always
  type: str
  sample: xen+ssh://hv2/system
migrate_uri:
  description: Migration data URI, or null when libvirt chose it.
  returned: always
  type: str
  sample: tcp://10.10.0.2
job:
  description: libvirt's statistics of the completed migration job (keys present when the driver reports them).
  returned: when a migration ran
  type: dict
  contains:
    time_elapsed_ms:
      description: Duration of the migration.
      type: int
      sample: 2104
    downtime_ms:
      description: Time the domain was paused at the switch-over.
      type: int
      sample: 48
    data_total_bytes:
      description: Bytes to transfer.
      type: int
      sample: 136314880
    data_processed_bytes:
      description: Bytes transferred.
      type: int
      sample: 140509184
    memory_bps:
      description: Memory transfer rate, bytes per second.
      type: int
      sample: 125829120
  sample: {time_elapsed_ms: 2104, downtime_ms: 48, data_total_bytes: 136314880, data_processed_bytes: 140509184}
elapsed_seconds:
  description: Wall-clock time of the migration call as measured by the module.
  returned: when a migration ran
  type: float
  sample: 2.31
verified:
  description:
    - The domain runs on the destination (libvirt's state V(running), not paused) and not on the source (checked by UUID).
    - V(false) when libvirt reported success but this check failed; the task then fails.
  returned: when a migration ran
  type: bool
  sample: true
record:
  description: The migration record written to the source's state file; pass it to M(xen.drs.migration_record) on the destination.
  returned: when a migration ran
  type: dict
  sample: {time: 1764000000.123, vm: web1, uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, source: hv1, destination: hv2}
failure:
  description:
    - The failure as it was recorded in the source's state file, when a migration was tried and failed.
    - C(kind) is V(permanent) or V(transient) (see the description), C(count) the failures of the domain from this
      host in a row, this one included, C(previous) the time of the one before it in that row (absent for the first).
  returned: when a migration was tried and failed
  type: dict
  sample: {time: 1764000000.123, vm: web1, uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, source: hv1, destination: hv2,
           error: "timed out after 300 s and the migration job was aborted", kind: transient, count: 2,
           previous: 1763999700.456}
domain_state_after:
  description:
    - State of the domain on the source after a failed migration (normally V(running)), or when it was not moved
      because it was not running there (V(undefined) when it is not defined there).
    - V(unknown) when the source's libvirt stopped answering during the migration (its libvirtd killed); the
      message then says so.
  returned: failure, or when the task is skipped
  type: str
  sample: running
destination_state:
  description:
    - State of the domain on the destination when libvirt reported success but the domain did not run there
      (V(paused) for a domain that arrived paused, which is left so), or V(undefined) when it is not defined there.
  returned: when the check after the migration fails, or when the task is skipped
  type: str
  sample: paused
"""

import threading
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.drs.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtConnectionError,
    LibvirtError,
    build_destination_uri,
    build_migrate_uri,
    completed_job_stats,
    connect,
    describe_error,
    domain_state,
    encrypted_stream,
    failure_kind,
    find_domain,
    is_error,
    migrate_flags,
    migrate_params,
)
from ansible_collections.xen.drs.plugins.module_utils._state import (
    PERMANENT,
    TRANSIENT,
    add_failure,
    add_migration,
    load_state,
    save_state,
)


class MigrationFailed(Exception):
    """A migration that did not happen or could not be verified; ``result`` goes into fail_json."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


ABORT_RETRY_SECONDS = 2.0  # between tries at aborting a job whose state lock a call in flight holds


class Watchdog:
    """Aborts the domain's job (virDomainAbortJob) if it still runs ``seconds`` after entering the block.

    An abort refused because the job is busy (libvirt timed out waiting for the domain's state change
    lock, held by a call in flight such as the migration's own monitor call after the network went
    away) is tried again every ``retry_seconds`` until it succeeds or the block is left."""

    def __init__(self, domain, seconds, retry_seconds=None):
        self.domain = domain
        self.seconds = seconds
        self.retry_seconds = ABORT_RETRY_SECONDS if retry_seconds is None else retry_seconds
        self.fired = False
        self.abort_error = None
        self._left = threading.Event()
        self._timer = threading.Timer(seconds, self._abort)
        self._timer.daemon = True

    def _abort(self):
        self.fired = True
        while True:
            try:
                self.domain.abortJob()
                self.abort_error = None
                return
            except LibvirtError as err:  # the job ended at that moment, the driver cannot abort jobs, or it is busy
                self.abort_error = describe_error(err)
                if not is_error(err, "VIR_ERR_OPERATION_TIMEOUT") or self._left.wait(self.retry_seconds):
                    return

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._left.set()
        self._timer.cancel()
        self._timer.join()  # an abort in progress finishes before its outcome is read

    def explain(self, err):
        """Why the migration call failed, given what the watchdog did."""
        if not self.fired:
            return describe_error(err)
        if self.abort_error is None:
            return f"timed out after {self.seconds} s and the migration job was aborted"
        return (f"{describe_error(err)} (the {self.seconds} s timeout was reached, "
                f"but aborting the job failed: {self.abort_error})")


def held_why(failure):
    """What the plans make of the failure ``failure`` (a failure record): a few words for the message."""
    if failure["kind"] == PERMANENT:
        return "a permanent failure: the plans hold the domain back for failure_hold minutes"
    if failure["count"] < 2:
        return "a transient failure: the next run may try again; a second one within failure_hold holds the domain back"
    return (f"a transient failure, {failure['count']} in a row: the plans hold the domain back for failure_hold "
            "minutes when the one before it came less than failure_hold minutes earlier")


def check_options(params):
    for option in ("bandwidth_mib", "max_downtime_ms", "timeout"):
        if params[option] is not None and params[option] <= 0:
            raise ValueError(f"{option} must be greater than 0, got {params[option]}")
    if params["tunnelled"] and not params["peer_to_peer"]:
        raise ValueError("tunnelled=true requires peer_to_peer=true")
    if params["tunnelled"] and params["migration_address"]:
        raise ValueError(f"migration_address ({params['migration_address']}) cannot be used with tunnelled=true: "
                         "tunnelled data travels inside the libvirt connection")


def describe(params):
    return f"domain '{params['name']}'" if params["name"] else f"domain with UUID {params['uuid']}"


def source_state(conn, uuid):
    """The domain's state on the source now ('undefined' if it is gone)."""
    domain = find_domain(conn, uuid=uuid)
    return domain_state(domain) if domain is not None else "undefined"


class Migration:
    """One migration of one domain, from the connection ``src`` to ``destination_uri``."""

    def __init__(self, module, src):
        self.module = module
        self.params = module.params
        self.src = src
        self.source = self.params["source"] or src.getHostname()
        self.destination_uri = (self.params["destination_uri"]
                                or build_destination_uri(self.params["uri"], self.params["destination"]))
        self.migrate_uri = build_migrate_uri(self.params["migration_address"])

    def base_result(self, name, uuid):
        return dict(domain=dict(name=name, uuid=uuid), source=self.source,
                    destination=self.params["destination"], destination_uri=self.destination_uri,
                    migrate_uri=self.migrate_uri)

    def diff(self):
        return dict(before=dict(host=self.source), after=dict(host=self.params["destination"]))

    def run(self):
        domain = find_domain(self.src, name=self.params["name"], uuid=self.params["uuid"])
        if domain is None or domain_state(domain) != "running":
            return self.already_moved(domain)
        name, uuid = domain.name(), domain.UUIDString()
        result = self.base_result(name, uuid)
        # Read-only is enough to prove the destination answers, and is all check mode may do.
        try:
            connect(self.destination_uri, readonly=True).close()
        except LibvirtConnectionError as err:
            raise MigrationFailed(f"destination {self.params['destination']} is unreachable, {name} stays on "
                                  f"{self.source}: {err}", domain_state_after=domain_state(domain),
                                  **result) from err
        if not self.params["private_network"] and not encrypted_stream(self.destination_uri, self.params["tunnelled"]):
            self.module.warn(f"the memory of {name} crosses the network from {self.source} to "
                             f"{self.params['destination']} unencrypted ({self.cleartext_why()}): tunnel it over ssh or tls "
                             "(tunnelled=true), or set private_network=true if the migration network is private")
        if self.module.check_mode:
            return dict(result, changed=True, diff=self.diff(),
                        msg=f"would migrate {name} from {self.source} to {self.params['destination']}")
        elapsed = self.migrate(domain, name, uuid)
        job = self.verify(name, uuid)
        record = self.new_record(name, uuid)
        self.update_state(lambda state: add_migration(state, record)[0], "migration done, but it could not be recorded")
        return dict(result, changed=True, diff=self.diff(), job=job, elapsed_seconds=round(elapsed, 3),
                    verified=True, record=record)

    def cleartext_why(self):
        if not self.params["tunnelled"]:
            return "not tunnelled"
        return f"tunnelled in {self.destination_uri}, whose transport is not encrypted"

    def already_moved(self, domain):
        """changed=false if the domain already runs on the destination; else skipped, saying where it is.

        A domain that is not running on the source any more (shut down, paused, moved elsewhere by hand
        since the plan was made) is not moved: the reason the plan had no longer holds."""
        uuid = domain.UUIDString() if domain is not None else self.params["uuid"]
        dst = connect(self.destination_uri, readonly=True)
        try:
            there = find_domain(dst, name=self.params["name"], uuid=uuid)
            there_state = domain_state(there) if there is not None else "undefined"
            if there_state == "running":  # not merely active: a domain paused there does not run
                return dict(self.base_result(there.name(), there.UUIDString()), changed=False,
                            msg=f"already running on {self.params['destination']}")
        finally:
            dst.close()
        state = domain_state(domain) if domain is not None else "undefined"
        where = f"is {state}" if domain is not None else "is not defined"
        there_is = "not running" if there_state == "undefined" else there_state
        return dict(self.base_result(self.params["name"], uuid), changed=False, skipped=True, domain_state_after=state,
                    destination_state=there_state,
                    msg=f"not moved: {describe(self.params)} {where} on {self.source} ({self.params['uri']}) "
                        f"and is {there_is} on {self.params['destination']} ({self.destination_uri})")

    def migrate(self, domain, name, uuid):
        """Run the migration, aborting it after ``timeout`` seconds; returns the seconds it took."""
        params = self.params
        flags = migrate_flags(live=params["live"], peer_to_peer=params["peer_to_peer"],
                              tunnelled=params["tunnelled"], persistent=params["persistent"],
                              undefine_source=params["undefine_source"],
                              copy_storage=params["copy_storage"], unsafe=params["unsafe"])
        typed = migrate_params(self.migrate_uri, params["bandwidth_mib"])
        dconn = None if params["peer_to_peer"] else connect(self.destination_uri)
        watchdog = Watchdog(domain, params["timeout"])
        started = time.monotonic()
        try:
            if params["max_downtime_ms"]:
                domain.migrateSetMaxDowntime(params["max_downtime_ms"], 0)
            with watchdog:
                if dconn is None:
                    domain.migrateToURI3(self.destination_uri, typed, flags)
                else:
                    domain.migrate3(dconn, typed, flags)
        except LibvirtError as err:
            cause = watchdog.explain(err)
            # a job aborted at its timeout is a slow or cut network, whatever error the migration call returned
            kind = TRANSIENT if watchdog.fired else failure_kind(err)
            failure = self.save_failure(name, uuid, cause, kind)
            msg = (f"migrating {name} from {self.source} to {params['destination']} ({self.destination_uri}) "
                   f"failed: {cause}")
            try:
                state_after = source_state(self.src, uuid)
            except LibvirtError as lost:  # the source's libvirtd went away with the migration
                state_after = "unknown"
                msg += f"; its state on {self.source} could not be read: {describe_error(lost)}"
            raise MigrationFailed(f"{msg} ({held_why(failure)})", domain_state_after=state_after,
                                  failure=failure, **self.base_result(name, uuid)) from err
        finally:
            if dconn is not None:
                dconn.close()
        if watchdog.abort_error:
            self.module.warn(f"the {params['timeout']} s timeout was reached but the job could not be aborted "
                             f"({watchdog.abort_error}); the migration then completed")
        return time.monotonic() - started

    def verify(self, name, uuid):
        """Check by UUID that the domain runs on the destination only; returns the job statistics.

        Running means libvirt's state VIR_DOMAIN_RUNNING: a domain that arrived paused is active there
        (isActive), but it does not run, and that is a failure. Nothing is resumed: the domain is left
        as libvirt left it, and the message says where it is and in which state."""
        dst = connect(self.destination_uri, readonly=True)
        try:
            there = find_domain(dst, uuid=uuid)
            here = find_domain(self.src, uuid=uuid)
            there_state = domain_state(there) if there is not None else "undefined"
            on_source = here is not None and here.isActive()
            if there_state != "running" or on_source:
                destination = self.params["destination"]
                where = (f"{'running' if on_source else 'not running'} on {self.source} and "
                         f"{'not running' if there_state == 'undefined' else there_state} on {destination}")
                # nothing failed that a retry would mend: the driver or a hook left it so
                failure = self.save_failure(name, uuid, f"libvirt reported success, but the domain was {where}",
                                            PERMANENT)
                msg = f"libvirt reported success, but {name} is {where}"
                if there is not None and there.isActive() and there_state != "running" and not on_source:
                    msg += (f"; it is left {there_state} on {destination} ({self.destination_uri}), not resumed, "
                            f"and does not run anywhere: resume it there (virsh resume {name}) once the cause is known")
                raise MigrationFailed(
                    f"{msg} ({held_why(failure)})", verified=False, domain_state_after=source_state(self.src, uuid),
                    destination_state=there_state, failure=failure, **self.base_result(name, uuid))
            return completed_job_stats(there) or (completed_job_stats(here) if here is not None else {})
        finally:
            dst.close()

    def new_record(self, name, uuid):
        """The record of a migration of this domain from this source to this destination, made now."""
        return dict(time=round(time.time(), 3), vm=name, uuid=uuid, source=self.source,
                    destination=self.params["destination"])

    def save_failure(self, name, uuid, error, kind):
        """Record a failed migration in the source's state file and return the record (with its kind, count
        and previous): hypervisor_info reports it as the domain's last_failure, and the plans hold the domain
        back for failure_hold minutes (a transient failure only once it repeats)."""
        record = self.new_record(name, uuid)
        saved = {}

        def change(state):
            state = add_failure(state, record, error, kind)
            saved.update(state.failures[-1])
            return state

        self.update_state(change, "the failure could not be recorded")
        return saved or dict(record, error=error, kind=kind, count=1)

    def update_state(self, change, not_saved):
        """Apply ``change`` to the source's state file; a file that cannot be written is a warning
        starting with ``not_saved``."""
        path = self.params["state_path"]
        state, warning = load_state(path)
        if warning:
            self.module.warn(warning)
        try:
            save_state(path, change(state))
        except OSError as err:
            self.module.warn(f"{not_saved} in {path}: {err}")


def run(module):
    """The module's result; raises ValueError, LibvirtConnectionError, LibvirtError or MigrationFailed."""
    check_options(module.params)
    src = connect(module, readonly=module.check_mode)
    try:
        return Migration(module, src).run()
    finally:
        src.close()


def get_argument_spec():
    return dict(
        name=dict(type="str"),
        uuid=dict(type="str"),
        uri=dict(type="str", default="xen:///system"),
        source=dict(type="str"),
        destination=dict(type="str", required=True),
        destination_uri=dict(type="str"),
        migration_address=dict(type="str"),
        live=dict(type="bool", default=True),
        peer_to_peer=dict(type="bool", default=True),
        tunnelled=dict(type="bool", default=False),
        private_network=dict(type="bool", default=False),
        persistent=dict(type="bool", default=True),
        undefine_source=dict(type="bool", default=True),
        bandwidth_mib=dict(type="int"),
        max_downtime_ms=dict(type="int"),
        timeout=dict(type="int", default=300),
        copy_storage=dict(type="str", choices=["none", "all", "incremental"], default="none"),
        unsafe=dict(type="bool", default=False),
        state_path=dict(type="path", default="/var/lib/xen-drs/state.json"),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("name", "uuid")], required_one_of=[("name", "uuid")])
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        result = run(module)
    except MigrationFailed as err:
        module.fail_json(msg=str(err), **err.result)
    except (ValueError, LibvirtConnectionError) as err:
        module.fail_json(msg=str(err))
    except LibvirtError as err:
        module.fail_json(msg=f"libvirt at '{module.params['uri']}': {describe_error(err)}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
