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
  - The host's recent load samples and the migrations that touched it are kept in a small state file
    on the machine the module runs on (O(state_path)). It survives throw-away control nodes such as AWX
    job containers. The file is bounded (at most 1000 samples within the history window, and the last
    200 migrations) and is replaced atomically. A corrupt or unreadable file produces a warning and a
    fresh state, never a failure.
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
      - Path of the state file on the machine the module runs on. Its directory is created with mode 0700.
    type: path
    default: /var/lib/xen-drs/state.json
  history_minutes:
    description:
      - How far back load samples and migrations are returned (and samples kept).
    type: int
    default: 60
  record_sample:
    description:
      - Append the load just measured to the state file.
      - Never happens in check mode.
    type: bool
    default: true
requirements:
  - libvirt-python (the C(libvirt) Python module) on the host the module runs on
notes:
  - Xen's control domain (Domain-0, domain ID 0) is not listed as a domain. Its CPUs are accounted for with O(reserved_cpus).
  - The module only reads libvirt (it opens a read-only connection) and reports RV(ignore:changed=false), also when it records a sample.
  - Uses only libvirt calls that the libxl (Xen) and QEMU drivers both implement (node info, free memory, domain info).
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
      description: C([epoch seconds, load]) pairs within O(history_minutes), oldest first, ending with the one just measured.
      type: list
      elements: list
      sample: [[1764000000.0, 0.4], [1764000300.0, 0.42]]
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
        last_migration:
          description: The domain's most recent migration in the state file; omitted if there is none.
          type: dict
          returned: when the state file has a migration of this domain
          sample: {time: 1764000000.123, source: hv1, destination: hv2}
migrations:
  description: Migration records within O(history_minutes) whose source or destination is this host, oldest first.
  returned: success
  type: list
  elements: dict
  sample: [{time: 1764000000.123, vm: web1, uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, source: hv1, destination: hv2}]
"""

import time
from dataclasses import asdict, dataclass

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.drs.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtConnectionError,
    LibvirtError,
    connect,
    describe_error,
    is_error,
    state_name,
)
from ansible_collections.xen.drs.plugins.module_utils._state import (
    State,
    last_migrations,
    load_state,
    prune,
    save_state,
)

XEN_CONTROL_DOMAIN_ID = 0


@dataclass
class Reading:
    """One domain read once: what libvirt's domain info says, and when (monotonic ns)."""

    name: str
    uuid: str
    state: str
    vcpus: int
    memory_mb: int
    cpu_time_ns: int
    at_ns: int


@dataclass
class Host:
    name: str
    cpus: int
    memory_mb: int
    memory_free_mb: int


def read_domain(domain, clock):
    """A Reading of ``domain``, or None for Xen's Domain-0 or a domain that vanished meanwhile."""
    try:
        if domain.ID() == XEN_CONTROL_DOMAIN_ID:
            return None
        before = clock()
        state, _max_kib, memory_kib, vcpus, cpu_time_ns = domain.info()
        after = clock()
        return Reading(name=domain.name(), uuid=domain.UUIDString(), state=state_name(state),
                       vcpus=vcpus, memory_mb=memory_kib // 1024, cpu_time_ns=cpu_time_ns,
                       at_ns=(before + after) // 2)
    except LibvirtError as err:
        if is_error(err, "VIR_ERR_NO_DOMAIN"):
            return None
        raise


def read_domains(conn, clock):
    """uuid -> Reading for every domain defined on ``conn``."""
    readings = (read_domain(domain, clock) for domain in conn.listAllDomains(0))
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
                            memory_mb=last.memory_mb, cpu=cpu or 0.0, cpu_measured=cpu is not None))
    return domains


def host_load(domains, cpus, reserved_cpus):
    """Sum of the running domains' CPU use over the CPUs available to them."""
    used = sum(d["cpu"] for d in domains if d["state"] == "running")
    return round(used / (cpus - reserved_cpus), 3)


def read_host(conn, name):
    info = conn.getInfo()
    return Host(name=name or conn.getHostname(), cpus=info[2], memory_mb=info[1],
                memory_free_mb=conn.getFreeMemory() // (1024 * 1024))


def measure(conn, name, sample_seconds, sleep, clock):
    """(Host, domains) measured over ``sample_seconds``; ``clock`` is a monotonic clock in ns."""
    host = read_host(conn, name)
    start = read_domains(conn, clock)
    sleep(sample_seconds)
    return host, domain_facts(start, read_domains(conn, clock))


def check_options(params):
    if params["sample_seconds"] <= 0:
        raise ValueError(f"sample_seconds must be greater than 0, got {params['sample_seconds']}")
    if params["reserved_cpus"] < 0:
        raise ValueError(f"reserved_cpus must be 0 or more, got {params['reserved_cpus']}")
    if params["history_minutes"] <= 0:
        raise ValueError(f"history_minutes must be greater than 0, got {params['history_minutes']}")


def gather(module):
    """The module's result; raises ValueError, LibvirtConnectionError or LibvirtError."""
    params = module.params
    check_options(params)
    conn = connect(module, readonly=True)
    try:
        host, domains = measure(conn, params["name"], params["sample_seconds"], time.sleep, time.monotonic_ns)
    finally:
        conn.close()
    if params["reserved_cpus"] >= host.cpus:
        raise ValueError(f"reserved_cpus must be smaller than the host's {host.cpus} CPUs, "
                         f"got {params['reserved_cpus']}")
    load = host_load(domains, host.cpus, params["reserved_cpus"])

    history_seconds = params["history_minutes"] * 60
    taken = round(time.time(), 3)
    state, warning = load_state(params["state_path"])
    if warning:
        module.warn(warning)
    state = prune(State(samples=state.samples + [[taken, load]], migrations=state.migrations),
                  taken, history_seconds)
    if params["record_sample"] and not module.check_mode:
        try:
            save_state(params["state_path"], state)
        except OSError as err:
            module.warn(f"could not record the load sample in {params['state_path']}: {err}")

    latest = last_migrations(state.migrations)
    for domain in domains:
        if domain["uuid"] in latest:
            record = latest[domain["uuid"]]
            domain["last_migration"] = {k: record[k] for k in ("time", "source", "destination")}
    migrations = [r for r in state.migrations
                  if host.name in (r["source"], r["destination"]) and r["time"] >= taken - history_seconds]
    # The planner's capacity is what guests can use, so it predicts the same load the samples record.
    hypervisor = dict(asdict(host), cpus=host.cpus - params["reserved_cpus"], cpus_total=host.cpus,
                      uri=params["uri"], load=load, samples=state.samples, maintenance=False, domains=domains)
    return dict(changed=False, hypervisor=hypervisor, migrations=migrations)


def get_argument_spec():
    return dict(
        uri=dict(type="str", default="xen:///system"),
        name=dict(type="str"),
        sample_seconds=dict(type="float", default=3.0),
        reserved_cpus=dict(type="int", default=0),
        state_path=dict(type="path", default="/var/lib/xen-drs/state.json"),
        history_minutes=dict(type="int", default=60),
        record_sample=dict(type="bool", default=True),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        result = gather(module)
    except (ValueError, LibvirtConnectionError) as err:
        module.fail_json(msg=str(err))
    except LibvirtError as err:
        module.fail_json(msg=f"libvirt at '{module.params['uri']}': {describe_error(err)}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
