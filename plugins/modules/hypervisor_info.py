#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hypervisor_info
short_description: Measure a hypervisor's load and its domains' CPU use through libvirt
version_added: 0.1.0
description:
  - Connects read-only to libvirt on a hypervisor and returns the host in the shape that the
    P(xen.drs.rebalance_plan#filter) filter takes as one host. That is its CPUs, memory and, for each
    domain, state, vCPUs, memory and the CPU cores it used during a sampling window.
  - The CPU use of a domain is measured from the domain's own CPU time, read at the start and at
    the end of the window (O(sample_seconds)), each reading timed with a monotonic clock.
    A domain that appears or disappears during the window is handled as follows. A domain
    present only at the start is not reported. A domain present only at the end (for example one
    that was just migrated in), or whose CPU time went backwards (it was restarted), is reported with
    RV(hypervisor.domains[].cpu=0.0) and RV(hypervisor.domains[].cpu_measured=false), and does not count
    toward the host load.
  - The host load is the sum of the running domains' CPU use divided by the CPUs available to them
    (the host's CPUs minus O(reserved_cpus)). Node-level load averages are not used. On Xen they describe
    dom0 only, and in a namespace lab they are shared by all hosts.
  - The host's recent load samples, its running domains' CPU samples and the migrations that touched
    it are kept in a small state file on the machine the module runs on (O(state_path)). It survives
    throw-away control nodes such as AWX job containers. The file is bounded (the host and each domain
    at most 1000 samples within O(history_minutes), and the last 200 migrations) and is replaced
    atomically.
  - Each run adds a host sample C([epoch, load, memory_load]), where memory_load is the memory of the
    running domains (RV(hypervisor.domains[].memory_mb)) over RV(hypervisor.memory_mb). Each running
    domain whose CPU use was measured over the whole window (RV(hypervisor.domains[].cpu_measured=true))
    gets a sample C([epoch, cores]), kept under its UUID. A domain that arrived or restarted during the
    window gets none that run.
  - A domain's history stays on the host that measured it. A domain that migrated starts a fresh history
    on its destination (the migration record does not carry it), and its history on the source is
    dropped at the source's next run, once the domain is no longer defined there. The placement policy
    treats a domain without samples as one whose current RV(hypervisor.domains[].cpu) is all that is known.
  - The state file also keeps a long, downsampled history for replay (P(xen.drs.whatif#module), through
    C(playbooks/export_history.yml)), the archive. The host's load and memory_load and each measured running
    domain's cores are folded into 5-minute buckets (the mean of the samples in each), kept O(archive_days)
    days, with the host's CPUs (for guests) and memory and each domain's name, memory and vCPUs.
    A full series is 4,032 buckets (14 days) of about 6 bytes, about 24 KB; a host with 20 domains keeps
    about 0.5 MB, and at most 200 domains are kept (those seen last), at most about 5 MB.
    A domain's archive stays on the host after it left, until its newest bucket is older than O(archive_days).
  - The state file has a schema version (3). A file written by an earlier release (version 1, host
    samples as C([epoch, load]) pairs and no domain samples; version 2, no archive) is read with its
    samples and migration records, and written back as version 3 with an archive that starts filling then.
    Old two-value host samples stay valid as they are.
  - A corrupt or unreadable state file produces a warning and a fresh state, never a failure, and is
    replaced when the module next writes it. A file of a newer version (written by a later release of
    xen.drs) produces a warning and a fresh state for this run, and is left unchanged; nothing is recorded
    in it (and M(xen.drs.domain_migrate) and M(xen.drs.migration_record) record no migration in it) until
    that release runs again or the file is removed.
  - Tags of a domain come from its libvirt XML (C(<metadata>), read with XMLDesc, which every driver
    including libxl returns), in the namespace C(https://github.com/xen-drs/xen.drs/metadata/tags), as
    C(<drs:tags xmlns:drs="https://github.com/xen-drs/xen.drs/metadata/tags"><drs:tag>db</drs:tag><drs:tag>prod</drs:tag></drs:tags>).
  - To set a domain's tags (here C(db) and C(prod)), on its hypervisor,
    C(virsh metadata DOMAIN --uri https://github.com/xen-drs/xen.drs/metadata/tags --key drs --live --config --set '<tags><tag>db</tag><tag>prod</tag></tags>')
    (C(--live) for the running domain, C(--config) for its persistent definition; a shut-off domain takes C(--config) only).
    To remove them, C(virsh metadata DOMAIN --uri https://github.com/xen-drs/xen.drs/metadata/tags --live --config --remove).
    From Python, C(dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, '<tags><tag>db</tag></tags>', 'drs',
    'https://github.com/xen-drs/xen.drs/metadata/tags', libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)).
  - Metadata in that namespace that is not C(<tags>) holding only non-empty C(<tag>) elements gives the
    domain no tags and a warning naming the domain and what is wrong; the run goes on.
author:
  - xen.drs maintainers (@xen-drs)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Measures as usual; never writes the state file.
  diff_mode:
    support: none
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor. Always used as given.
      - Use V(xen:///system) on a Xen host (libvirt's libxl driver), V(qemu:///system) for QEMU/KVM.
      - A remote URI (for example V(xen+ssh://hv1/system)) measures a remote host. The state file still
        lives on the machine the module runs on.
    type: str
    default: xen:///system
  name:
    description:
      - Name of the host as the cluster knows it (playbooks pass C(inventory_hostname)).
      - Used in the result and to select the migrations that touched this host.
      - Defaults to the hostname libvirt reports.
    type: str
  sample_seconds:
    description:
      - Length of the sampling window in seconds, during which the module waits.
      - Longer windows smooth out bursts; the default of 3 s is a good compromise for scheduled runs.
      - At most 600 seconds.
    type: float
    default: 3
  reserved_cpus:
    description:
      - CPUs kept for the host itself (dom0 on Xen), subtracted from the capacity used for RV(hypervisor.load).
      - Must be smaller than the host's CPU count.
    type: int
    default: 0
  state_path:
    description:
      - Path of the state file on the machine the module runs on. Its directory, and any missing parent of it, is
        created with mode 0700.
    type: path
    default: /var/lib/xen-drs/state.json
  history_minutes:
    description:
      - How far back the host's load samples, the domains' CPU samples and migrations are returned (and samples kept).
      - Playbooks pass C(xen_drs_history_minutes).
    type: int
    default: 60
  archive_days:
    description:
      - Days of 5-minute aggregates kept in the state file's archive (see the description), from 0 to 14.
      - V(0) keeps no archive (and empties one kept before).
    type: int
    default: 14
  controller_time:
    description:
      - The control node's clock (epoch seconds) when it sent this task; the playbooks pass it. The host's clock
        is compared with it as the module starts (RV(clock_skew_seconds)).
      - The samples are stamped with the host's clock, and the plan judges them against the control node's. When
        the two differ by more than 30 seconds, the module warns and returns the samples (the host's and its
        domains') shifted into the control node's time, so a host whose clock is minutes off is neither judged
        stale nor ahead. The state file keeps the host's own time. Migration records are not shifted.
    type: float
  record_sample:
    description:
      - Append the samples just measured (the host's and the domains') to the state file.
      - Never happens in check mode.
    type: bool
    default: true
  lock:
    description:
      - Take the run lock of M(xen.drs.run_lock) first, in the same module run, and measure only once it is held,
        so that a run locks and measures a host with one module run (one ssh round trip and module transfer
        instead of two). The rebalance, evacuate and shadow playbooks do so.
      - The lock is taken exactly as M(xen.drs.run_lock) takes it with O(xen.drs.run_lock#module:state=acquired),
        with the same options (see there), and the action plugin of this module fills in O(lock.controller) and takes
        over the lock of a dead run of this control node (O(lock.take_over)) as the run_lock action plugin does.
      - When another run holds the lock, the module fails without measuring anything, naming the holder, and
        returns it in RV(run_lock.holder) with RV(run_lock.acquired=false). When the lock was taken but the host
        could not be measured, the module fails with RV(run_lock.acquired=true), so the caller knows to release it.
      - Without this option no lock is taken or checked.
    type: dict
    suboptions:
      owner:
        description: The run that takes the lock (see O(xen.drs.run_lock#module:owner)).
        type: str
        required: true
      path:
        description: The lock file (see O(xen.drs.run_lock#module:path)).
        type: path
        default: /run/xen-drs/rebalance.lock
      ttl:
        description: Seconds after which the lock is stale (see O(xen.drs.run_lock#module:ttl)).
        type: int
        default: 3600
      runner:
        description: Free text stored in the lock to tell people who holds it (see O(xen.drs.run_lock#module:runner)).
        type: str
      controller:
        description:
          - The C(ansible-playbook) process that runs this playbook (see O(xen.drs.run_lock#module:controller)). The action
            plugin sets it; set it by hand only to test.
        type: dict
        suboptions:
          host:
            description: The control node's host name.
            type: str
            required: true
          machine_id:
            description: The control node's machine id.
            type: str
          boot_id:
            description: The control node's boot id.
            type: str
            required: true
          pid_ns:
            description: The inode of the PID namespace C(ansible-playbook) runs in.
            type: int
          pid:
            description: The process id of C(ansible-playbook).
            type: int
            required: true
          start:
            description: Its start time (clock ticks after boot).
            type: int
            required: true
      take_over:
        description: The owner of a lock whose run is known to be dead (see O(xen.drs.run_lock#module:take_over)); the action plugin sets it.
        type: str
requirements:
  - libvirt-python (the C(libvirt) Python module) on the host the module runs on
notes:
  - Xen's control domain (Domain-0, domain ID 0) is not listed as a domain. Its CPUs are accounted for with O(reserved_cpus).
  - The module only reads libvirt (it opens a read-only connection) and reports RV(ignore:changed=false), also when it records a sample
    or takes the lock (RV(run_lock.changed) tells whether it wrote the lock file).
  - Uses only libvirt calls that the libxl (Xen) and QEMU drivers both implement (node info, free memory, domain info,
    the domain's XML description).
  - On Xen, libvirt's node info is the whole machine, so RV(hypervisor.memory_mb) includes Domain-0's memory and Xen's
    own, which no domain listed here uses. The memory_load of the samples therefore stays below 1 on a full host.
  - Verified on Xen 4.17 with libvirt 9.0's libxl driver (the collection's Xen lab, C(tests/xen)). The libxl driver keeps
    C(<metadata>) through define, the XML description and live migration, so tags travel with the domain. It does not
    implement bulk domain statistics, host CPU or memory statistics, or C(vcpus()), none of which this module uses.
    After a migration Xen gives the domain a new ID and restarts its CPU time; neither matters here, as a domain is
    recognised by its UUID and its CPU use is measured within one run's sampling window.
seealso:
  - module: xen.drs.domain_migrate
  - module: xen.drs.migration_record
"""

EXAMPLES = r"""
- name: Measure every hypervisor for 5 seconds
  xen.drs.hypervisor_info:
    name: "{{ inventory_hostname }}"
    sample_seconds: 5
    reserved_cpus: 1
  register: hv

- name: Show the load and the busiest domain
  ansible.builtin.debug:
    msg: "{{ hv.hypervisor.load }} / {{ hv.hypervisor.domains | sort(attribute='cpu') | last }}"

- name: Take the run lock and measure, in one module run (measures nothing if another run holds the lock)
  xen.drs.hypervisor_info:
    name: "{{ inventory_hostname }}"
    lock:
      owner: "{{ xen_drs_run_id }}"
      runner: "awx job {{ awx_job_id | default('manual') }}"
      ttl: 1800
  register: hv

- name: Measure a QEMU host without recording the sample
  xen.drs.hypervisor_info:
    uri: qemu:///system
    record_sample: false
"""

RETURN = r"""
hypervisor:
  description: The host, in the shape P(xen.drs.rebalance_plan#filter) takes as one host.
  returned: success
  type: dict
  contains:
    name:
      description: Host name (O(name), or libvirt's hostname).
      type: str
      sample: hv1
    uri:
      description: The libvirt URI used.
      type: str
      sample: xen:///system
    cpus:
      description:
        - CPUs available to guests, the capacity the placement policy plans with
          (the host's active physical CPUs minus O(reserved_cpus)).
      type: int
      sample: 15
    cpus_total:
      description: Active physical CPUs of the host, as libvirt reports them.
      type: int
      sample: 16
    memory_mb:
      description: Memory of the host in MiB.
      type: int
      sample: 65536
    memory_free_mb:
      description: Free memory of the host in MiB, as libvirt reports it.
      type: int
      sample: 20480
    load:
      description: Sum of the running domains' RV(hypervisor.domains[].cpu) over RV(hypervisor.cpus).
      type: float
      sample: 0.42
    samples:
      description:
        - The host's samples within O(history_minutes), oldest first, ending with the one just measured.
        - Each is C([epoch seconds, load, memory_load]), memory_load being the running domains' memory over
          RV(hypervisor.memory_mb), 3 decimals. Samples recorded by the previous release are C([epoch seconds, load])
          pairs, and so is a sample taken when the host reports no memory.
      type: list
      elements: list
      sample: [[1764000000.0, 0.4], [1764000300.0, 0.42, 0.61]]
    maintenance:
      description: Whether the host is in maintenance. This module always reports V(false); playbooks set it from inventory.
      type: bool
      sample: false
    domains:
      description: The domains defined on the host (running or not), except Xen's Domain-0.
      type: list
      elements: dict
      contains:
        name:
          description: Domain name.
          type: str
          sample: web1
        uuid:
          description: Domain UUID.
          type: str
          sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
        state:
          description: libvirt state as a lowercase word.
          type: str
          choices: [nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended]
          sample: running
        vcpus:
          description: Virtual CPUs of the domain.
          type: int
          sample: 2
        memory_mb:
          description: Current memory of the domain in MiB.
          type: int
          sample: 2048
        cpu:
          description: CPU cores the domain used on average during the window (1.0 = one core busy), 3 decimals.
          type: float
          sample: 0.731
        cpu_measured:
          description: False when the domain was not present at both ends of the window, so RV(hypervisor.domains[].cpu) is 0.0.
          type: bool
          sample: true
        samples:
          description:
            - The domain's CPU use on this host, C([epoch seconds, cores]) pairs within O(history_minutes), oldest first,
              the same shape as RV(hypervisor.samples). The last is this run's RV(hypervisor.domains[].cpu) when the
              domain is running and was measured.
            - Empty for a domain never measured running on this host within the window. A domain that migrated here
              starts with an empty history (it brings none from its source).
          type: list
          elements: list
          sample: [[1764000000.0, 0.7], [1764000300.0, 0.731]]
        tags:
          description:
            - The domain's tags from its libvirt metadata (see the description for how to set them), sorted, each once.
            - Empty when it has none, or when its metadata is malformed (then with a warning).
          type: list
          elements: str
          sample: [db, prod]
        last_migration:
          description: The domain's most recent migration in the state file; omitted if there is none.
          type: dict
          returned: when the state file has a migration of this domain
          sample: {time: 1764000000.123, source: hv1, destination: hv2}
        last_failure:
          description:
            - The domain's most recent failed migration from this host, as M(xen.drs.domain_migrate) recorded it in
              the state file (the last 50 failures are kept).
            - C(kind) is V(permanent) (a cause a retry does not remove) or V(transient) (a connection lost, a job
              aborted at its timeout), C(count) the failures in a row, C(previous) the time of the one before it in
              that row. A failure recorded by a release before them has none of the three.
            - The plan holds the domain back for C(failure_hold) minutes after a permanent failure (or one without a
              kind), and after a transient one only when C(previous) is less than C(failure_hold) minutes before it.
          type: dict
          returned: when the state file has a failed migration of this domain
          sample: {time: 1764000000.123, destination: hv2, error: "the destination's CPU cannot run the domain's CPU model",
                   kind: permanent, count: 1}
clock_skew_seconds:
  description:
    - How far the host's clock is ahead of the control node's (negative when behind), within the time the task
      took to reach the host (usually under a second). Returned when O(controller_time) is given.
  returned: when O(controller_time) is given
  type: float
  sample: -312.4
migrations:
  description: Migration records within O(history_minutes) whose source or destination is this host, oldest first.
  returned: success
  type: list
  elements: dict
  sample: [{time: 1764000000.123, vm: web1, uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, source: hv1, destination: hv2}]
run_lock:
  description:
    - What taking the lock did (O(lock)), as M(xen.drs.run_lock) returns it, also when the module failed.
  returned: when O(lock) is given
  type: dict
  contains:
    acquired:
      description:
        - Whether this owner holds the lock (in check mode, whether it would). When false, nothing was measured.
      type: bool
      sample: true
    changed:
      description: Whether the lock file was written (in check mode, whether it would be).
      type: bool
      sample: true
    lock:
      description: The lock this owner holds, as written in the lock file (see RV(xen.drs.run_lock#module:lock)).
      type: dict
      returned: when RV(run_lock.acquired) is true
    holder:
      description: The lock found in place before (see RV(xen.drs.run_lock#module:holder)).
      type: dict
      returned: when a lock file existed
    taken_over:
      description: Set by the action plugin when it took over the lock of a dead run of this control node.
      type: dict
      returned: when the lock of a dead run was taken over
      sample: {owner: 20261125T160000Z-a1b2, reason: "run 20261125T160000Z-a1b2's ansible-playbook (pid 4100 on ctl1) is no longer running"}
    lock_file:
      description: The lock file.
      type: str
      sample: /run/xen-drs/rebalance.lock
"""

import time
from dataclasses import asdict, dataclass, replace

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.drs.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    TAGS_NAMESPACE,
    LibvirtConnectionError,
    LibvirtError,
    connect,
    describe_error,
    is_error,
    parse_tags,
    state_name,
)
from ansible_collections.xen.drs.plugins.module_utils._run_lock import LOCK_SPEC, LockError, read_lock_quietly
from ansible_collections.xen.drs.plugins.module_utils._run_lock import run as run_lock
from ansible_collections.xen.drs.plugins.module_utils._state import (
    ARCHIVE_DAYS,
    archive_add,
    drop_future,
    last_migrations,
    load_state,
    prune,
    save_state,
)

XEN_CONTROL_DOMAIN_ID = 0


@dataclass
class Reading:
    """One domain read once: what libvirt's domain info says, and when (monotonic ns); at the window's
    end also its tags (or why its tag metadata was not taken)."""

    name: str
    uuid: str
    state: str
    vcpus: int
    memory_mb: int
    cpu_time_ns: int
    at_ns: int
    tags: tuple = ()
    tags_problem: str | None = None  # why the tags in the domain's metadata were not taken


@dataclass
class Host:
    name: str
    cpus: int
    memory_mb: int
    memory_free_mb: int


def read_domain(domain, clock, with_tags=False):
    """A Reading of ``domain``, or None for Xen's Domain-0 or a domain that vanished meanwhile.

    With ``with_tags``, also its tags, from its XML (XMLDesc, which every driver has), read after
    the timed CPU reading.
    """
    try:
        if domain.ID() == XEN_CONTROL_DOMAIN_ID:
            return None
        before = clock()
        state, _max_kib, memory_kib, vcpus, cpu_time_ns = domain.info()
        after = clock()
        reading = Reading(name=domain.name(), uuid=domain.UUIDString(), state=state_name(state),
                          vcpus=vcpus, memory_mb=memory_kib // 1024, cpu_time_ns=cpu_time_ns,
                          at_ns=(before + after) // 2)
        if with_tags:
            tags, reading.tags_problem = parse_tags(domain.XMLDesc(0))
            reading.tags = tuple(tags)
        return reading
    except LibvirtError as err:
        if is_error(err, "VIR_ERR_NO_DOMAIN"):
            return None
        raise


def read_domains(conn, clock, with_tags=False):
    """uuid -> Reading for every domain defined on ``conn``."""
    readings = (read_domain(domain, clock, with_tags) for domain in conn.listAllDomains(0))
    return {r.uuid: r for r in readings if r is not None}


def cpu_use(start, end):
    """Cores used between two readings of a domain, or None if they cannot be compared."""
    window_ns = end.at_ns - start.at_ns
    used_ns = end.cpu_time_ns - start.cpu_time_ns
    if window_ns <= 0 or used_ns < 0:
        return None
    return round(used_ns / window_ns, 3)


def domain_facts(start, end):
    """The returned domains: those present at the end of the window, with their CPU use."""
    domains = []
    for uuid, last in sorted(end.items(), key=lambda item: item[1].name):
        cpu = cpu_use(start[uuid], last) if uuid in start else None
        domains.append(dict(name=last.name, uuid=uuid, state=last.state, vcpus=last.vcpus,
                            memory_mb=last.memory_mb, cpu=cpu or 0.0, cpu_measured=cpu is not None,
                            tags=list(last.tags)))
    return domains


def tag_warnings(readings):
    """A warning for each domain whose tags were not taken because its metadata is malformed."""
    return [f"domain {r.name}: no tags taken, its xen.drs metadata ({TAGS_NAMESPACE}) is malformed: {r.tags_problem}"
            for r in sorted(readings.values(), key=lambda r: r.name) if r.tags_problem]


MAX_SAMPLE_SECONDS = 600


def host_load(domains, cpus, reserved_cpus):
    """Sum of the running domains' CPU use over the CPUs available to them."""
    used = sum(d["cpu"] for d in domains if d["state"] == "running")
    return round(used / (cpus - reserved_cpus), 3)


def memory_load(domains, memory_mb):
    """Memory of the running domains over the host's memory, or None when the host reports none."""
    if memory_mb <= 0:
        return None
    return round(sum(d["memory_mb"] for d in domains if d["state"] == "running") / memory_mb, 3)


def host_sample(taken, load, memory):
    """``[epoch, load, memory_load]``, or ``[epoch, load]`` when the memory load is unknown."""
    return [taken, load] if memory is None else [taken, load, memory]


def domain_history(known, domains, taken):
    """uuid -> CPU samples of the domains on the host now: those ``known`` plus this run's.

    A domain gets a sample only when it is running and its CPU use was measured over the whole
    window; the others keep what they had. Domains no longer on the host are left out.
    """
    history = {}
    for domain in domains:
        series = list(known.get(domain["uuid"], []))
        if domain["state"] == "running" and domain["cpu_measured"]:
            series.append([taken, domain["cpu"]])
        history[domain["uuid"]] = series
    return history


def read_host(conn, name):
    info = conn.getInfo()
    return Host(name=name or conn.getHostname(), cpus=info[2], memory_mb=info[1],
                memory_free_mb=conn.getFreeMemory() // (1024 * 1024))


def measure(conn, name, sample_seconds, sleep, clock):
    """(Host, domains, warnings) measured over ``sample_seconds``; ``clock`` is a monotonic clock in ns."""
    host = read_host(conn, name)
    start = read_domains(conn, clock)
    sleep(sample_seconds)
    end = read_domains(conn, clock, with_tags=True)
    return host, domain_facts(start, end), tag_warnings(end)


def check_options(params):
    if not 0 < params["sample_seconds"] <= MAX_SAMPLE_SECONDS:  # also false for NaN
        raise ValueError(f"sample_seconds must be greater than 0 and at most {MAX_SAMPLE_SECONDS}, "
                         f"got {params['sample_seconds']}")
    if params["reserved_cpus"] < 0:
        raise ValueError(f"reserved_cpus must be 0 or more, got {params['reserved_cpus']}")
    if params["history_minutes"] <= 0:
        raise ValueError(f"history_minutes must be greater than 0, got {params['history_minutes']}")
    if not 0 <= params["archive_days"] <= ARCHIVE_DAYS:
        raise ValueError(f"archive_days must be from 0 to {ARCHIVE_DAYS}, got {params['archive_days']}")


SKEW_TOLERANCE_SECONDS = 30


def shifted(series, seconds):
    return [[round(point[0] + seconds, 3), *point[1:]] for point in series]


def gather(module):
    """The module's result; raises ValueError, LibvirtConnectionError or LibvirtError."""
    params = module.params
    check_options(params)
    skew = None if params["controller_time"] is None else round(time.time() - params["controller_time"], 1)
    conn = connect(module, readonly=True)
    try:
        host, domains, warnings = measure(conn, params["name"], params["sample_seconds"], time.sleep,
                                          time.monotonic_ns)
    finally:
        conn.close()
    for warning in warnings:
        module.warn(warning)
    if params["reserved_cpus"] >= host.cpus:
        raise ValueError(f"reserved_cpus must be smaller than the host's {host.cpus} CPUs, "
                         f"got {params['reserved_cpus']}")
    load = host_load(domains, host.cpus, params["reserved_cpus"])

    history_seconds = params["history_minutes"] * 60
    taken = round(time.time(), 3)
    state, warning = load_state(params["state_path"])
    if warning:
        module.warn(f"{host.name}: {warning}")  # one run warns for many hosts: say which
    state, dropped, later_records = drop_future(state, taken)
    if dropped or later_records:
        module.warn(f"{host.name}: the state file holds {dropped} sample(s) and {later_records} migration record(s) "
                    f"later than this host's clock (did it go back?); the samples are dropped and the records "
                    f"count as made now")
    memory = memory_load(domains, host.memory_mb)
    sample = host_sample(taken, load, memory)
    archive = archive_add(state.archive, taken, dict(name=host.name, cpus=host.cpus - params["reserved_cpus"],
                                                     memory_mb=host.memory_mb),
                          load, memory, domains, params["archive_days"])
    state = prune(replace(state, samples=state.samples + [sample],
                          domains=domain_history(state.domains, domains, taken), archive=archive),
                  taken, history_seconds, keep_domains={d["uuid"] for d in domains})
    if params["record_sample"] and not module.check_mode and state.newer_version is None:  # load_state warned
        try:
            save_state(params["state_path"], state)
        except OSError as err:
            module.warn(f"{host.name}: could not record the samples in {params['state_path']}: {err}")

    latest = last_migrations(state.migrations)
    failed = last_migrations(state.failures)
    for domain in domains:
        if domain["uuid"] in failed:
            failure = failed[domain["uuid"]]
            domain["last_failure"] = dict({k: failure[k] for k in ("destination", "error", "kind", "count")
                                           if k in failure}, time=min(failure["time"], taken))
            if "previous" in failure:
                domain["last_failure"]["previous"] = min(failure["previous"], taken)
        domain["samples"] = state.domains.get(domain["uuid"], [])
        if domain["uuid"] in latest:
            record = latest[domain["uuid"]]
            domain["last_migration"] = dict({k: record[k] for k in ("source", "destination")},
                                            time=min(record["time"], taken))  # a record from the future: now
    # a record from this host's future counts as made now, here as in last_migration (the plan merges both)
    migrations = [dict(r, time=min(r["time"], taken)) for r in state.migrations
                  if host.name in (r["source"], r["destination"]) and r["time"] >= taken - history_seconds]
    # The planner's capacity is what guests can use, so it predicts the same load the samples record.
    samples = state.samples
    if skew is not None and abs(skew) > SKEW_TOLERANCE_SECONDS:
        module.warn(f"{host.name}: its clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the control "
                    f"node's; its samples are shifted into the control node's time for this plan (fix its NTP)")
        samples = shifted(samples, -skew)
        for domain in domains:
            domain["samples"] = shifted(domain["samples"], -skew)
    hypervisor = dict(asdict(host), cpus=host.cpus - params["reserved_cpus"], cpus_total=host.cpus,
                      uri=params["uri"], load=load, samples=samples, maintenance=False, domains=domains)
    result = dict(changed=False, hypervisor=hypervisor, migrations=migrations)
    if skew is not None:
        result["clock_skew_seconds"] = skew
    return result


def get_argument_spec():
    return dict(
        uri=dict(type="str", default="xen:///system"),
        name=dict(type="str"),
        sample_seconds=dict(type="float", default=3.0),
        reserved_cpus=dict(type="int", default=0),
        state_path=dict(type="path", default="/var/lib/xen-drs/state.json"),
        history_minutes=dict(type="int", default=60),
        archive_days=dict(type="int", default=14),
        controller_time=dict(type="float"),
        record_sample=dict(type="bool", default=True),
        lock=dict(type="dict", options=LOCK_SPEC),
    )


def take_lock(module):
    """Take the run lock (O(lock)) as run_lock does; fails the module, measuring nothing, if it is not taken.

    Returns what taking it did (RV(run_lock)), or None without O(lock)."""
    lock = module.params["lock"]
    if lock is None:
        return None
    try:
        result, warnings = run_lock(dict(lock, state="acquired"), module.check_mode, time.time())
    except LockError as exc:
        holder = read_lock_quietly(lock["path"], lock["ttl"])
        module.fail_json(msg=str(exc), run_lock=dict(lock_file=lock["path"], acquired=False, changed=False,
                                                     **({"holder": holder} if holder else {})))
    for warning in warnings:
        module.warn(warning)
    result.pop("diff", None)
    result.pop("released", None)
    return result


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    locked = take_lock(module)
    # from here on the lock (if asked for) is held: every failure says so, for the caller to release it
    extra = {} if locked is None else {"run_lock": locked}
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR, **extra)
    try:
        result = gather(module)
    except (ValueError, LibvirtConnectionError) as err:
        module.fail_json(msg=str(err), **extra)
    except LibvirtError as err:
        module.fail_json(msg=f"libvirt at '{module.params['uri']}': {describe_error(err)}", **extra)
    module.exit_json(**result, **extra)


if __name__ == "__main__":
    main()
