# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse and validate the cluster and the policy into plain dataclasses.

Every error is a PlacementError whose message names the host, the domain, the field and the value,
so a user can find the bad entry in a 1,000-host inventory.
"""

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Tuple

RUNNING = "running"

DEFAULTS = {
    "load_threshold": 0.75,
    "max_over": 10,
    "max_load_candidate": 0.65,
    "max_vm_per_host": None,
    "max_migrations": 5,
    "cooldown": 60,
    "memory_reserve_mb": 512,
    "anti_affinity": [],
    "pin": {},
    "exclude": [],
    "maintenance": [],
    "interval": 5,
    "now": None,
}


class PlacementError(ValueError):
    """Bad cluster or policy input; the message names where and what."""


@dataclass
class Domain:
    name: str
    uuid: str
    host: str
    vcpus: int
    memory_mb: float
    cpu: float
    state: str
    last_migration_time: Optional[float] = None
    tags: Tuple[str, ...] = ()

    @property
    def running(self):
        return self.state == RUNNING

    @property
    def sort_key(self):
        """Biggest CPU user first; memory and name make the order total."""
        return (-self.cpu, self.memory_mb, self.name, self.uuid)


@dataclass
class Host:
    name: str
    cpus: float
    memory_mb: float
    memory_free_mb: float
    samples: Tuple[Tuple[float, float], ...]
    maintenance: bool
    domains: Tuple[Domain, ...]
    running: Tuple[Domain, ...] = field(init=False)

    def __post_init__(self):
        self.running = tuple(d for d in self.domains if d.running)


@dataclass(frozen=True)
class Policy:
    load_threshold: float
    max_over: float
    max_load_candidate: float
    max_vm_per_host: Optional[int]
    max_migrations: int
    cooldown: float
    memory_reserve_mb: float
    anti_affinity: Tuple[Tuple[str, ...], ...]
    pin: Mapping
    exclude: frozenset
    maintenance: frozenset
    interval: float
    now: float
    groups_of: Mapping = field(default_factory=dict)

    def as_dict(self):
        """The effective policy, as the output reports it."""
        return {
            "load_threshold": self.load_threshold,
            "max_over": self.max_over,
            "max_load_candidate": self.max_load_candidate,
            "max_vm_per_host": self.max_vm_per_host,
            "max_migrations": self.max_migrations,
            "cooldown": self.cooldown,
            "memory_reserve_mb": self.memory_reserve_mb,
            "anti_affinity": [list(g) for g in self.anti_affinity],
            "pin": {k: sorted(v) for k, v in sorted(self.pin.items())},
            "exclude": sorted(self.exclude),
            "maintenance": sorted(self.maintenance),
            "interval": self.interval,
            "now": self.now,
        }


# ---------------------------------------------------------------- field checks


class _At:
    """Where a field lives, formatted only when an error needs it (parsing 20,000 domains must be fast)."""

    __slots__ = ("host", "domain", "part")

    def __init__(self, host, domain=None, part=None):
        self.host, self.domain, self.part = host, domain, part

    def __str__(self):
        text = f"host {self.host!r}"
        if self.domain is not None:
            text += f", domain {self.domain!r}"
        return text if self.part is None else f"{text}, {self.part}"


class _Position(str):
    """An entry without a usable name, shown by its position: cluster[3], domains[0]."""

    def __repr__(self):
        return str(self)


def _fail(where, name, expected, value):
    raise PlacementError(f"{where}: field '{name}' must be {expected}, got {value!r}")


def _is_number(value):
    # bool is an int subclass, but True is never a sensible CPU count.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(where, data, name, minimum=None, above=None, required=True, default=None):
    if name not in data or data[name] is None:
        if required:
            raise PlacementError(f"{where}: required field '{name}' is missing")
        return default
    value = data[name]
    if not _is_number(value) or not math.isfinite(value):
        _fail(where, name, "a number", value)
    if minimum is not None and value < minimum:
        _fail(where, name, f"a number >= {minimum}", value)
    if above is not None and value <= above:
        _fail(where, name, f"a number > {above}", value)
    return value


def _string(where, data, name, required=True):
    if name not in data or data[name] is None:
        if required:
            raise PlacementError(f"{where}: required field '{name}' is missing")
        return None
    value = data[name]
    if not isinstance(value, str) or not value:
        _fail(where, name, "a non-empty string", value)
    return str(value)


def _list(where, value, name):
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        _fail(where, name, "a list", value)
    return value


def _string_list(where, value, name):
    items = _list(where, value, name)
    for item in items:
        if not isinstance(item, str) or not item:
            _fail(where, name, "a list of non-empty strings", value)
    return tuple(str(item) for item in items)


def _mapping(where, value, name):
    if not isinstance(value, Mapping):
        _fail(where, name, "a mapping", value)
    return value


# ---------------------------------------------------------------- cluster


def _parse_samples(where, data):
    raw = data.get("samples")
    if raw is None:
        raise PlacementError(f"{where}: required field 'samples' is missing")
    samples = []
    for pair in _list(where, raw, "samples"):
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(_is_number(x) and math.isfinite(x) for x in pair) or pair[1] < 0):
            _fail(where, "samples", "a list of [epoch_seconds, load >= 0] pairs", pair)
        samples.append((pair[0], pair[1]))
    samples.sort()  # documented as oldest first; sorting makes a shuffled list harmless
    return tuple(samples)


_INF = float("inf")


def _plain_domain(host_name, data):
    """The common case in one go: well-typed values and no optional fields.

    Returns None for anything else, which _parse_domain then checks field by field to explain.
    """
    try:
        name, uuid, vcpus = data["name"], data["uuid"], data["vcpus"]
        memory_mb, cpu, state = data["memory_mb"], data["cpu"], data["state"]
        optional = data.get("last_migration") is not None or data.get("tags") is not None
    except (KeyError, TypeError, AttributeError):
        return None
    if (optional or not (isinstance(name, str) and isinstance(uuid, str) and isinstance(state, str))
            or not (name and uuid and state)
            or not isinstance(vcpus, int) or isinstance(vcpus, bool) or vcpus < 0
            or not _is_number(memory_mb) or not 0 <= memory_mb < _INF  # the comparisons also reject NaN
            or not _is_number(cpu) or not 0 <= cpu < _INF):
        return None
    return Domain(str(name), str(uuid), host_name, vcpus, memory_mb, cpu, str(state))


def _parse_domain(host_name, index, data):
    plain = _plain_domain(host_name, data)
    if plain is not None:
        return plain
    where = _At(host_name, _Position(f"domains[{index}]"))
    if not isinstance(data, Mapping):
        raise PlacementError(f"{where}: must be a mapping, got {data!r}")
    name = _string(where, data, "name")
    where = _At(host_name, name)
    last = data.get("last_migration")
    last_time = None
    if last is not None:
        _mapping(where, last, "last_migration")
        last_time = _number(_At(where.host, where.domain, "last_migration"), last, "time")
    tags = data.get("tags")
    return Domain(
        name=name,
        uuid=_string(where, data, "uuid"),
        host=host_name,
        vcpus=_count(where, data, "vcpus"),
        memory_mb=_number(where, data, "memory_mb", minimum=0),
        cpu=_number(where, data, "cpu", minimum=0),
        state=_string(where, data, "state"),
        last_migration_time=last_time,
        tags=() if tags is None else _string_list(where, tags, "tags"),
    )


def _count(where, data, name):
    value = _number(where, data, name, minimum=0)
    if int(value) != value:
        _fail(where, name, "a whole number", value)
    return int(value)


def _parse_host(index, data):
    where = _At(_Position(f"cluster[{index}]"))
    if not isinstance(data, Mapping):
        raise PlacementError(f"{where}: must be a mapping, got {data!r}")
    name = _string(where, data, "name")
    where = _At(name)
    maintenance = data.get("maintenance", False)
    if maintenance is None:
        maintenance = False
    if not isinstance(maintenance, bool):
        _fail(where, "maintenance", "a boolean", maintenance)
    raw_domains = data.get("domains")
    if raw_domains is None:
        raise PlacementError(f"{where}: required field 'domains' is missing")
    _list(where, raw_domains, "domains")
    return Host(
        name=name,
        cpus=_number(where, data, "cpus", above=0),
        memory_mb=_number(where, data, "memory_mb", minimum=0),
        memory_free_mb=_number(where, data, "memory_free_mb", minimum=0),
        samples=_parse_samples(where, data),
        maintenance=maintenance,
        domains=tuple(_parse_domain(name, i, d) for i, d in enumerate(raw_domains)),
    )


def parse_cluster(cluster):
    """Return the hosts sorted by name; reject duplicates that would make the plan ambiguous."""
    if isinstance(cluster, (str, bytes, Mapping)) or not isinstance(cluster, Sequence):
        raise PlacementError(f"cluster must be a list of hosts, got {type(cluster).__name__}")
    hosts = {}
    running_on = {}
    for index, data in enumerate(cluster):
        host = _parse_host(index, data)
        if host.name in hosts:
            raise PlacementError(f"host {host.name!r}: field 'name' is not unique, got {host.name!r} twice")
        hosts[host.name] = host
        for domain in host.running:
            if domain.name in running_on:
                raise PlacementError(
                    f"host {host.name!r}, domain {domain.name!r}: field 'name' must be unique among "
                    f"running domains, got {domain.name!r} also running on {running_on[domain.name]!r}")
            running_on[domain.name] = host.name
    return [hosts[name] for name in sorted(hosts)]


# ---------------------------------------------------------------- policy


def _policy_number(data, name, minimum=None, above=None, maximum=None):
    value = _number("policy", data, name, minimum=minimum, above=above, required=False,
                    default=DEFAULTS[name])
    if maximum is not None and value > maximum:
        _fail("policy", name, f"a number <= {maximum}", value)
    return value


def parse_policy(policy):
    """Merge the user's policy over DEFAULTS; unknown keys are errors (they are usually typos)."""
    if policy is None:
        policy = {}
    if not isinstance(policy, Mapping):
        raise PlacementError(f"policy must be a mapping, got {type(policy).__name__}")
    unknown = sorted(str(k) for k in policy if k not in DEFAULTS)
    if unknown:
        raise PlacementError(
            f"policy: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(DEFAULTS))})")

    threshold = _policy_number(policy, "load_threshold", above=0, maximum=1)
    candidate = _policy_number(policy, "max_load_candidate", above=0)
    if candidate > threshold:
        _fail("policy", "max_load_candidate",
              f"<= load_threshold {threshold} (else a destination could become overloaded)", candidate)

    max_vm = policy.get("max_vm_per_host")
    if max_vm is not None:
        max_vm = _count("policy", policy, "max_vm_per_host")
        if max_vm < 1:
            _fail("policy", "max_vm_per_host", "a whole number >= 1 or null", policy["max_vm_per_host"])
    max_migrations = DEFAULTS["max_migrations"]
    if policy.get("max_migrations") is not None:
        max_migrations = _count("policy", policy, "max_migrations")

    anti_affinity = []
    for group in _list("policy", policy.get("anti_affinity") or [], "anti_affinity"):
        names = _string_list("policy", group, "anti_affinity")
        if len(names) < 2:
            _fail("policy", "anti_affinity", "a list of groups of at least 2 domain names", group)
        anti_affinity.append(tuple(sorted(set(names))))
    anti_affinity = tuple(sorted(set(anti_affinity)))
    groups_of = {}
    for group in anti_affinity:
        for name in group:
            groups_of.setdefault(name, []).append(group)

    pin = {}
    for name, hosts in _mapping("policy", policy.get("pin") or {}, "pin").items():
        if not isinstance(name, str):
            _fail("policy", "pin", "a mapping of domain name to list of host names", {name: hosts})
        pin[str(name)] = frozenset(_string_list("policy", hosts, f"pin.{name}"))

    now = policy.get("now")
    if now is None:
        now = time.time()  # the only impure input; tests and reproducible runs pass `now`
    else:
        now = _number("policy", policy, "now")

    return Policy(
        load_threshold=threshold,
        max_over=_policy_number(policy, "max_over", minimum=0),
        max_load_candidate=candidate,
        max_vm_per_host=max_vm,
        max_migrations=max_migrations,
        cooldown=_policy_number(policy, "cooldown", minimum=0),
        memory_reserve_mb=_policy_number(policy, "memory_reserve_mb", minimum=0),
        anti_affinity=anti_affinity,
        pin=pin,
        exclude=frozenset(_string_list("policy", policy.get("exclude") or [], "exclude")),
        maintenance=frozenset(_string_list("policy", policy.get("maintenance") or [], "maintenance")),
        interval=_policy_number(policy, "interval", above=0),
        now=now,
        groups_of=groups_of,
    )
