# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse and validate the cluster and the policy into plain dataclasses.

Every error is a PlacementError whose message names the host, the domain, the field and the value,
so a user can find the bad entry in a 1,000-host inventory.
"""

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, NamedTuple, Optional, Tuple

RUNNING = "running"

# What domain_migrate found a failed migration's cause to be (see rules.FailureHold)
PERMANENT, TRANSIENT = "permanent", "transient"
FAILURE_KINDS = (PERMANENT, TRANSIENT)


class Failure(NamedTuple):
    """A domain's last failed migration, as hypervisor_info reports it (its last_failure).

    ``kind`` is PERMANENT (a cause a retry does not remove: a CPU model the destination lacks, a driver
    that refuses the migration) or TRANSIENT (a connection lost, a job aborted at its timeout); a failure
    recorded by a release before the kinds has none and counts as PERMANENT, as every failure did then.
    ``count`` is the number of failures of the domain from that host in a row (this one included, no
    successful migration of it in between), ``previous`` the epoch of the one before this one in that row
    (None when it is the first)."""

    time: float
    destination: str
    error: str
    kind: str = PERMANENT
    count: int = 1
    previous: Optional[float] = None


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
    last_migration_source: Optional[str] = None
    last_failure: Optional[Failure] = None  # its last failed migration, or None
    tags: Tuple[str, ...] = ()
    samples: Tuple[Tuple[float, float], ...] = ()  # (epoch, cores used), oldest first; () when unknown
    forecast: Optional[float] = None  # cores forecast (planner: history.level, when predictive); None: no level
    busy: Optional[float] = None  # cores it uses when busy (planner: history.busy), for ranking destinations

    @property
    def running(self):
        return self.state == RUNNING


@dataclass
class Host:
    name: str
    cpus: float
    memory_mb: float
    memory_free_mb: float
    samples: Tuple[Tuple[float, float], ...]
    maintenance: bool
    domains: Tuple[Domain, ...]
    memory_samples: Tuple[Tuple[float, float], ...] = ()  # (epoch, memory used / memory_mb), oldest first
    running: Tuple[Domain, ...] = field(init=False)

    def __post_init__(self):
        self.running = tuple(d for d in self.domains if d.running)


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


def _parse_samples(where, raw, name, value_name, extra=None):
    """[epoch, value >= 0] pairs sorted oldest first (documented so; sorting makes a shuffled list
    harmless). With `extra` (a name), a third value >= 0 is allowed too; the pairs of (epoch, extra)
    come back as a second tuple."""
    samples, extras = [], []
    width = (2, 3) if extra else (2,)
    shape = f"[epoch_seconds, {value_name} >= 0" + (f"(, {extra} >= 0)" if extra else "") + "]"
    for item in _list(where, raw, name):
        if (isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) not in width
                or not all(_is_number(x) and math.isfinite(x) for x in item) or min(item[1:]) < 0):
            _fail(where, name, f"a list of {shape} entries", item)
        samples.append((item[0], item[1]))
        if len(item) == 3:
            extras.append((item[0], item[2]))
    samples.sort()
    extras.sort()
    return tuple(samples), tuple(extras)


_INF = float("inf")


def _plain_domain(host_name, data):
    """The common case in one go: well-typed values and no optional fields.

    Returns None for anything else, which _parse_domain then checks field by field to explain.
    """
    try:
        name, uuid, vcpus = data["name"], data["uuid"], data["vcpus"]
        memory_mb, cpu, state = data["memory_mb"], data["cpu"], data["state"]
        optional = (data.get("last_migration") is not None or data.get("tags") is not None
                    or data.get("samples") is not None or data.get("last_failure") is not None)
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
    last_time = last_source = None
    if last is not None:
        _mapping(where, last, "last_migration")
        last_time = _number(_At(where.host, where.domain, "last_migration"), last, "time")
        last_source = last.get("source") if isinstance(last.get("source"), str) else None
    failure = data.get("last_failure")
    if failure is not None:
        failure = _parse_failure(where, failure)
    tags = data.get("tags")
    samples = data.get("samples")
    return Domain(
        name=name,
        uuid=_string(where, data, "uuid"),
        host=host_name,
        vcpus=_count(where, data, "vcpus"),
        memory_mb=_number(where, data, "memory_mb", minimum=0),
        cpu=_number(where, data, "cpu", minimum=0),
        state=_string(where, data, "state"),
        last_migration_time=last_time,
        last_migration_source=last_source,
        last_failure=failure,
        tags=() if tags is None else _string_list(where, tags, "tags"),
        samples=() if samples is None else _parse_samples(where, samples, "samples", "cores")[0],
    )


def _parse_failure(where, data):
    _mapping(where, data, "last_failure")
    at = _At(where.host, where.domain, "last_failure")
    when = _number(at, data, "time")
    kind = data.get("kind")
    if kind is None:
        kind = PERMANENT  # recorded before failures had a kind: held at once, as then
    elif kind not in FAILURE_KINDS:
        _fail(at, "kind", " or ".join(repr(k) for k in FAILURE_KINDS), kind)
    count = _count(at, data, "count") if data.get("count") is not None else 1
    if count < 1:
        _fail(at, "count", "a whole number >= 1", data["count"])
    previous = _number(at, data, "previous", required=False)
    if previous is not None and previous > when:
        _fail(at, "previous", f"a time no later than its 'time' ({when})", previous)
    return Failure(when, _string(at, data, "destination"), str(data.get("error") or "no error recorded"),
                   kind, count, previous)


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
    if data.get("samples") is None:
        raise PlacementError(f"{where}: required field 'samples' is missing")
    samples, memory_samples = _parse_samples(where, data["samples"], "samples", "load", extra="memory_load")
    return Host(
        name=name,
        cpus=_number(where, data, "cpus", above=0),
        memory_mb=_number(where, data, "memory_mb", minimum=0),
        memory_free_mb=_number(where, data, "memory_free_mb", minimum=0),
        samples=samples,
        maintenance=maintenance,
        domains=tuple(_parse_domain(name, i, d) for i, d in enumerate(raw_domains)),
        memory_samples=memory_samples,
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
#
# POLICY is the one place the policy is spelled: each knob's name, default, parser and how the
# output reports it. DEFAULTS, the Policy dataclass, parse_policy and Policy.as_dict all come from
# it, and a unit test holds the filter's documented defaults (rebalance_plan.yml) to it.

ENGINES = ("auto", "exact", "greedy")


@dataclass(frozen=True)
class Knob:
    """One policy key: its default (what null means too), its parser and its output form."""

    name: str
    default: Any
    parse: Callable[[str, Any], Any]
    export: Callable[[Any], Any] = lambda value: value


def _knob_number(minimum=None, above=None, maximum=None):
    def parse(name, value):
        value = _number("policy", {name: value}, name, minimum=minimum, above=above)
        if maximum is not None and value > maximum:
            _fail("policy", name, f"a number <= {maximum}", value)
        return value
    return parse


def _knob_count(minimum=0):
    def parse(name, value):
        count = _count("policy", {name: value}, name)
        if count < minimum:
            _fail("policy", name, f"a whole number >= {minimum} or null", value)
        return count
    return parse


STRENGTHS = ("must", "should")


@dataclass(frozen=True)
class Group:
    """An anti-affinity group: members that must (or should) not share a host. `select` (a JMESPath
    expression over the domains' facts, see selectors.py) chooses the members at each run instead."""

    members: Tuple[str, ...]
    strength: str = "must"
    select: Optional[str] = None

    def export(self):
        if self.select is not None:
            return {"select": self.select, "strength": self.strength}
        if self.strength == "must":
            return list(self.members)
        return {"members": list(self.members), "strength": self.strength}


@dataclass(frozen=True)
class PinRule:
    """The hosts a domain must (or should) run on."""

    hosts: frozenset
    strength: str = "must"

    def export(self):
        hosts = sorted(self.hosts)
        return hosts if self.strength == "must" else {"hosts": hosts, "strength": self.strength}


@dataclass(frozen=True)
class HostGroup:
    """A VM-to-host rule: its members (names, or a JMESPath `select`) must (or should) run on `hosts`."""

    members: Tuple[str, ...]
    hosts: frozenset
    strength: str = "must"
    select: Optional[str] = None

    def export(self):
        chosen = {"select": self.select} if self.select is not None else {"members": list(self.members)}
        return {**chosen, "hosts": sorted(self.hosts), "strength": self.strength}


@dataclass(frozen=True)
class Names:
    """A list of names, plus JMESPath selections resolved at each run (exclude)."""

    names: frozenset = frozenset()
    selects: Tuple[str, ...] = ()

    def export(self):
        return sorted(self.names) + [{"select": expr} for expr in self.selects]


def _strength(where, name, data):
    strength = data.get("strength", "must")
    if strength is None:
        strength = "must"
    if strength not in STRENGTHS:
        _fail(where, f"{name}.strength", f"one of {', '.join(STRENGTHS)}", strength)
    return strength


def _expression(where, name, expression):
    """A JMESPath expression, compiled now so that a malformed one fails every run, not only some."""
    if not isinstance(expression, str) or not expression.strip():
        _fail(where, name, "a JMESPath expression (a non-empty string)", expression)
    try:
        import jmespath  # pylint: disable=import-outside-toplevel
        from jmespath.exceptions import JMESPathError  # pylint: disable=import-outside-toplevel
    except ImportError as error:  # pragma: no cover - jmespath is a requirement of the collection
        raise PlacementError(f"{where}: field '{name}' needs the Python package jmespath: {error}") from error
    try:
        jmespath.compile(expression)
    except JMESPathError as error:
        raise PlacementError(f"{where}: field '{name}' is not a valid JMESPath expression, got {expression!r}:"
                             f" {str(error).splitlines()[0]}") from error
    return expression


def _only_keys(name, data, keys, expected):
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        _fail("policy", name, f"{expected} (unknown key {unknown[0]!r})", data)


def _members(name, data, minimum):
    """(member names, select expression) of a rule given as a mapping with members or select."""
    if (data.get("members") is None) == (data.get("select") is None):
        _fail("policy", name, "a rule with exactly one of members (a list of domain names) or select"
                              " (a JMESPath expression)", data)
    if data.get("select") is not None:
        return (), _expression("policy", f"{name}.select", data["select"])
    names = _string_list("policy", data["members"], f"{name}.members")
    if len(set(names)) < minimum:
        _fail("policy", f"{name}.members", f"a list of at least {minimum} domain name(s)", data["members"])
    return tuple(sorted(set(names))), None


def _knob_groups(name, value):
    """A list of groups: each a list of names (strength must) or {members: [...] | select: EXPR,
    strength: must|should}."""
    groups = []
    for index, group in enumerate(_list("policy", value, name)):
        if isinstance(group, Mapping):
            where = f"{name}[{index}]"
            _only_keys(where, group, ("members", "select", "strength"),
                       "a list of names or {members|select, strength}")
            members, select = _members(where, group, 2)
            groups.append(Group(members, _strength("policy", where, group), select))
            continue
        names = _string_list("policy", group, name)
        if len(set(names)) < 2:
            _fail("policy", name, "a list of groups of at least 2 domain names", group)
        groups.append(Group(tuple(sorted(set(names)))))
    return tuple(sorted(set(groups), key=lambda g: (g.members, g.strength, g.select or "")))


def _knob_pin(name, value):
    """Domain name to a list of hosts (strength must) or to {hosts: [...], strength: must|should}."""
    pin = {}
    for domain, hosts in _mapping("policy", value, name).items():
        if not isinstance(domain, str):
            _fail("policy", name, "a mapping of domain name to list of host names", {domain: hosts})
        strength = "must"
        if isinstance(hosts, Mapping):
            _only_keys(f"{name}.{domain}", hosts, ("hosts", "strength"),
                       "a list of hosts or {hosts: [...], strength: must|should}")
            strength = _strength("policy", f"{name}.{domain}", hosts)
            hosts = hosts.get("hosts")
            if hosts is None:
                _fail("policy", f"{name}.{domain}.hosts", "a list of host names", hosts)
        pin[str(domain)] = PinRule(frozenset(_string_list("policy", hosts, f"{name}.{domain}")), strength)
    return pin


def _knob_host_groups(name, value):
    """A list of {members: [...] | select: EXPR, hosts: [...], strength: must|should}."""
    rules = []
    for index, rule in enumerate(_list("policy", value, name)):
        where = f"{name}[{index}]"
        _mapping("policy", rule, where)
        _only_keys(where, rule, ("members", "select", "hosts", "strength"), "{members|select, hosts, strength}")
        members, select = _members(where, rule, 1)
        if rule.get("hosts") is None:
            _fail("policy", f"{where}.hosts", "a list of host names", rule.get("hosts"))
        hosts = frozenset(_string_list("policy", rule["hosts"], f"{where}.hosts"))
        rules.append(HostGroup(members, hosts, _strength("policy", where, rule), select))
    return tuple(rules)


def _knob_tags(name, value):
    tags = {}
    for domain, names in _mapping("policy", value, name).items():
        if not isinstance(domain, str):
            _fail("policy", name, "a mapping of domain name to a list of tags", {domain: names})
        tags[str(domain)] = tuple(sorted(set(_string_list("policy", names, f"{name}.{domain}"))))
    return tags


def _knob_names(name, value):
    return frozenset(_string_list("policy", value, name))


def _knob_selection(name, value):
    """Names, or {select: EXPR} entries resolved at each run."""
    names, selects = [], []
    for index, entry in enumerate(_list("policy", value, name)):
        if isinstance(entry, Mapping):
            _only_keys(f"{name}[{index}]", entry, ("select",), "a domain name or {select: EXPR}")
            selects.append(_expression("policy", f"{name}[{index}].select", entry.get("select")))
        else:
            names.append(entry)
    return Names(frozenset(_string_list("policy", names, name)), tuple(sorted(set(selects))))


def _knob_choice(choices):
    def parse(name, value):
        if value not in choices:
            _fail("policy", name, f"one of {', '.join(choices)}", value)
        return str(value)
    return parse


def _knob_bool(name, value):
    if not isinstance(value, bool):
        _fail("policy", name, "a boolean", value)
    return value


def _knob_level(name, value):
    level = _count("policy", {name: value}, name)
    if level > 5:
        _fail("policy", name, "a whole number from 0 (off) to 5 (aggressive)", value)
    return level


def _knob_now(name, value):
    return _number("policy", {name: value}, name)


def _knob_fraction(name, value):
    return _knob_number(above=0, maximum=1)(name, value)


POLICY = (
    Knob("load_threshold", 0.75, _knob_number(above=0, maximum=1)),
    Knob("max_over", 10, _knob_number(minimum=0)),
    Knob("max_load_candidate", 0.65, _knob_number(above=0)),
    Knob("max_vm_per_host", None, _knob_count(minimum=1)),
    Knob("max_migrations", 5, _knob_count()),
    Knob("cooldown", 60, _knob_number(minimum=0)),
    Knob("failure_hold", 240, _knob_number(minimum=0)),
    Knob("memory_reserve_mb", 512, _knob_number(minimum=0)),
    Knob("anti_affinity", [], _knob_groups, lambda groups: [g.export() for g in groups]),
    Knob("pin", {}, _knob_pin, lambda pin: {k: v.export() for k, v in sorted(pin.items())}),
    Knob("affinity_hosts", [], _knob_host_groups, lambda rules: [r.export() for r in rules]),
    Knob("exclude", [], _knob_selection, lambda names: names.export()),
    Knob("maintenance", [], _knob_names, sorted),
    Knob("interval", 5, _knob_number(above=0)),
    Knob("engine", "auto", _knob_choice(ENGINES)),
    Knob("solver_seconds", 10, _knob_number(above=0)),
    Knob("memory_threshold", None, _knob_fraction),  # None: memory is only a fit rule, never a reason to move
    Knob("max_memory_candidate", None, _knob_fraction),  # None: memory_threshold
    Knob("predictive", True, _knob_bool),
    Knob("headroom", True, _knob_bool),
    Knob("balance", 3, _knob_level),  # the replay evidence: filter docs, balance
    Knob("balance_hold", 15, _knob_number(minimum=0)),
    Knob("tags", {}, _knob_tags, lambda tags: {k: list(v) for k, v in sorted(tags.items())}),
    Knob("now", None, _knob_now),  # None: the controller's clock, read once in parse_policy
)

DEFAULTS = {knob.name: knob.default for knob in POLICY}


def _as_dict(self):
    """The effective policy, as the output reports it."""
    return {knob.name: knob.export(getattr(self, knob.name)) for knob in POLICY}


DERIVED = (
    ("hard_pin", "domain name -> frozenset of hosts, the must pins and affinity_hosts rules (rules.Pin)"),
    ("soft_pin", "the same for the should ones (rules.SoftPin)"),
    ("groups_of", "domain name -> its must anti-affinity groups (tuples of names)"),
    ("soft_groups_of", "domain name -> its should anti-affinity groups"),
    ("hard_groups", "the must anti-affinity groups, tuples of names"),
    ("excluded", "the names exclude lists and selects (rules.Exclude)"),
    ("memory_candidate", "max_memory_candidate, or memory_threshold when that is null"),
)

Policy = make_dataclass(
    "Policy",
    [(knob.name, Any) for knob in POLICY] + [(name, Any, field(default=None)) for name, _doc in DERIVED],
    frozen=True,
    namespace={"as_dict": _as_dict, "__doc__": "The parsed policy: one field per POLICY knob, plus what is derived "
                                               "from them once: " + "; ".join(f"{n}: {d}" for n, d in DERIVED)},
)


def derive(values, selected=None):
    """The DERIVED fields from the knobs' values; `selected` maps each JMESPath expression to the
    names it selects in this run (selectors.py); without it a selection is empty."""
    selected = selected or {}

    def members(rule):
        return tuple(sorted(set(selected.get(rule.select, ())))) if rule.select is not None else rule.members

    groups_of, soft_groups_of, hard_groups = {}, {}, []
    for group in values["anti_affinity"]:
        names = members(group)
        if len(names) < 2:
            continue  # a selection of fewer than 2 keeps nobody apart (the plan warns)
        if group.strength == "must":
            hard_groups.append(names)
        for name in names:
            (groups_of if group.strength == "must" else soft_groups_of).setdefault(name, []).append(names)
    pins = {"must": {}, "should": {}}
    for name, rule in values["pin"].items():
        pins[rule.strength][name] = rule.hosts
    for rule in values["affinity_hosts"]:
        for name in members(rule):  # several rules on one domain: it must run where all of them allow
            pins[rule.strength][name] = pins[rule.strength].get(name, rule.hosts) & rule.hosts
    excluded = set(values["exclude"].names)
    for expression in values["exclude"].selects:
        excluded.update(selected.get(expression, ()))
    memory_candidate = values["max_memory_candidate"]
    return {
        "hard_pin": pins["must"],
        "soft_pin": pins["should"],
        "groups_of": groups_of,
        "soft_groups_of": soft_groups_of,
        "hard_groups": tuple(sorted(set(hard_groups))),
        "excluded": frozenset(excluded),
        "memory_candidate": memory_candidate if memory_candidate is not None else values["memory_threshold"],
    }


def knob_values(policy):
    """The knobs' values of a parsed Policy, as parse_policy gave them to derive()."""
    return {knob.name: getattr(policy, knob.name) for knob in POLICY}


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
    values = {}
    for knob in POLICY:
        raw = policy.get(knob.name)
        raw = knob.default if raw is None else raw
        values[knob.name] = None if raw is None else knob.parse(knob.name, raw)
    if values["max_load_candidate"] > values["load_threshold"]:
        _fail("policy", "max_load_candidate",
              f"<= load_threshold {values['load_threshold']} (else a destination could become overloaded)",
              values["max_load_candidate"])
    memory_candidate = values["max_memory_candidate"]
    if memory_candidate is not None and values["memory_threshold"] is None:
        _fail("policy", "max_memory_candidate", "null while memory_threshold is null (it bounds destinations only "
              "when memory_threshold is set)", memory_candidate)
    if memory_candidate is not None and memory_candidate > values["memory_threshold"]:
        _fail("policy", "max_memory_candidate",
              f"<= memory_threshold {values['memory_threshold']} (else a destination could go over it)",
              memory_candidate)
    if values["now"] is None:
        values["now"] = time.time()  # the only impure input; tests and reproducible runs pass `now`
    return Policy(**values, **derive(values))
