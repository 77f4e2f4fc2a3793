# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small builders for cluster inputs, shared by the placement tests, plus an independent oracle.

The oracle (check_plan, measure) re-implements the rules from the spec in the plainest way, so the
property tests do not trust the planner's own bookkeeping.
"""

import copy
import math

NOW = 1_700_000_000


def domain(name, cpu, memory_mb=1024, state="running", **extra):
    return {"name": name, "uuid": f"uuid-{name}", "vcpus": 2, "memory_mb": memory_mb, "cpu": cpu,
            "state": state, **extra}


def samples(load, minutes, interval=5, now=NOW):
    """One sample every `interval` minutes over the last `minutes` minutes, all at `load`."""
    count = int(round(minutes / interval))
    return [[now - (count - i) * interval * 60, load] for i in range(count + 1)]


def host(name, domains=(), cpus=8, memory_free_mb=32768, over_for=30, load=None, **extra):
    """A host whose samples say it has run at its domains' load for `over_for` minutes."""
    running = [d["cpu"] for d in domains if d["state"] == "running"]
    if load is None:
        load = sum(running) / cpus
    entry = {"name": name, "cpus": cpus, "memory_mb": 65536, "memory_free_mb": memory_free_mb,
             "samples": samples(load, over_for), "domains": list(domains)}
    entry.update(extra)
    return entry


def apply_plan(cluster, result, now=NOW):
    """The cluster as the plan predicts it: domains moved, memory from the plan, migration stamped."""
    predicted = copy.deepcopy(cluster)
    by_name = {h["name"]: h for h in predicted}
    for move in result["migrations"]:
        source, dest = by_name[move["source"]], by_name[move["destination"]]
        moving = next(d for d in source["domains"] if d["name"] == move["vm"] and d["state"] == "running")
        source["domains"].remove(moving)
        moving["last_migration"] = {"time": now, "source": source["name"], "destination": dest["name"]}
        dest["domains"].append(moving)
    for entry in result["hosts"]:
        by_name[entry["name"]]["memory_free_mb"] = entry["predicted_memory_free_mb"]
    return predicted


# ------------------------------------------------------------------ independent oracle

DEFAULTS = {"load_threshold": 0.75, "max_load_candidate": 0.65, "max_vm_per_host": None, "max_migrations": 5,
            "cooldown": 60, "failure_hold": 240, "memory_reserve_mb": 512, "anti_affinity": [], "pin": {}, "exclude": [],
            "maintenance": [], "memory_threshold": None, "max_memory_candidate": None, "predictive": True,
            "headroom": True, "max_over": 10}


def held_by_failure(failure, now, hold):
    """The spec: a failed migration holds its domain for `hold` minutes after it, a transient failure only
    when the one before it (its `previous`) came less than `hold` minutes before it; no kind is permanent."""
    if not failure or not hold or (now - failure["time"]) / 60 >= hold:
        return False
    if failure.get("kind") != "transient":
        return True
    return failure.get("previous") is not None and (failure["time"] - failure["previous"]) / 60 < hold


def level(domain, pol, now=NOW):
    """A domain's level: the mean of its samples over the last 3 x max_over minutes; None with fewer than
    2 of them or without prediction."""
    window = 3 * pol["max_over"] * 60
    values = [v for t, v in domain.get("samples") or () if t > now - window]
    if not pol["predictive"] or len(values) < 2:
        return None
    return sum(values) / len(values)


def forecast(domain, pol, now=NOW):
    """A domain's forecast demand: its level, else its cpu."""
    found = level(domain, pol, now)
    return domain["cpu"] if found is None else found


def _levelled(host, pol):
    """Whether at least half of the host's CPU use comes from domains with a level."""
    total = sum(d["cpu"] for d in host["running"])
    return total > 0 and sum(d["cpu"] for d in host["running"] if level(d, pol) is not None) >= 0.5 * total


def busy(domain, pol, now=NOW):
    """A domain's busy demand: of its samples of the last 12 x max_over minutes (the newest one when
    none is that recent) and its cpu, the value at rank int(0.9 x count) from the lowest (from 0)."""
    samples = domain.get("samples") or ()
    values = [v for t, v in samples if t > now - 12 * pol["max_over"] * 60]
    if samples and not values:
        values = [max(samples, key=lambda sample: sample[0])[1]]
    values = sorted(values + [domain["cpu"]])
    return values[min(len(values) - 1, int(0.9 * len(values)))]


def _forecasts(hosts, pol):
    return {name: sum(forecast(d, pol) for d in h["running"]) / h["cpus"] for name, h in hosts.items()}


def _rules(pol):
    """(must pins, should pins, must groups, should groups) from the policy's plain or strength forms."""
    pins, soft_pins, groups, soft_groups = {}, {}, [], []
    for name, rule in pol["pin"].items():
        if isinstance(rule, dict):
            (soft_pins if rule.get("strength") == "should" else pins)[name] = set(rule["hosts"])
        else:
            pins[name] = set(rule)
    for group in pol["anti_affinity"]:
        if isinstance(group, dict):
            (soft_groups if group.get("strength") == "should" else groups).append(set(group["members"]))
        else:
            groups.append(set(group))
    return pins, soft_pins, groups, soft_groups


def _spread(values):
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _loads(hosts):
    return {name: math.fsum(d["cpu"] for d in h["running"]) / h["cpus"] for name, h in hosts.items()}


def _memory_loads(hosts):
    return {name: (sum(d["memory_mb"] for d in h["running"]) / h["memory_mb"] if h["memory_mb"] else 0.0)
            for name, h in hosts.items()}


def _state(cluster, policy):
    maintenance = set(policy.get("maintenance") or [])
    return {h["name"]: {"cpus": h["cpus"], "free": h["memory_free_mb"], "memory_mb": h["memory_mb"],
                        "maintenance": bool(h.get("maintenance")) or h["name"] in maintenance,
                        "running": [d for d in h["domains"] if d["state"] == "running"]}
            for h in cluster}


def _breaks_rule(hosts, pol, name, host_name, strength="must"):
    """Whether a running domain sits outside its pin or next to a member of its anti-affinity group."""
    pins, soft_pins, groups, soft_groups = _rules(pol)
    if strength == "should":
        pins, groups = soft_pins, soft_groups
    if name in pins and host_name not in pins[name]:
        return True
    neighbours = {d["name"] for d in hosts[host_name]["running"]} - {name}
    return any(name in group and neighbours & group for group in groups)


def measure(hosts, pol, balancing=False, shedding=()):
    """(maintenance, must breaks, load above, headroom, forecast above, memory above, should breaks,
    imbalance, peak, sum of squares).

    The imbalance counts only while the plan says balancing acts (`balancing`); the rest is computed here.
    """
    loads = _loads(hosts)
    threshold = pol["load_threshold"]
    memory_threshold = pol["memory_threshold"]
    memory_loads = _memory_loads(hosts)
    on_maintenance = sum(len(h["running"]) for h in hosts.values() if h["maintenance"])
    breaks = sum(_breaks_rule(hosts, pol, d["name"], name) for name, h in hosts.items() for d in h["running"])
    soft = sum(_breaks_rule(hosts, pol, d["name"], name, "should") for name, h in hosts.items() for d in h["running"])
    forecasts = _forecasts(hosts, pol)
    forecast_above = sum(max(0.0, forecasts[n] - pol["max_load_candidate"]) for n, h in hosts.items()
                         if pol["predictive"] and not h["maintenance"] and _levelled(h, pol))
    memory_above = 0.0 if memory_threshold is None else \
        math.fsum(max(0.0, m - memory_threshold) for m in memory_loads.values())
    calm = [name for name, h in hosts.items() if not h["maintenance"]]
    imbalance = 0.0
    if balancing:
        imbalance = _spread([loads[n] for n in calm])
        if memory_threshold is not None:
            imbalance += _spread([memory_loads[n] for n in calm])
    headroom = sum(max(0.0, loads[n] - pol["max_load_candidate"]) for n in shedding) if pol["headroom"] else 0.0
    return (on_maintenance,
            breaks,
            math.fsum(max(0.0, load - threshold) for load in loads.values()),
            round(headroom, 9),
            round(forecast_above, 9),
            round(memory_above, 9),
            soft,
            round(imbalance, 9),
            max(loads.values(), default=0.0),
            math.fsum(load * load for load in loads.values()))


def _busy_exempt(hosts, pol, domain, source_name):
    """Whether the busy line spares the domain: it is on a maintenance host, or breaks a must pin or
    anti-affinity group there (None: where it is was not given, so it is not spared)."""
    if source_name is None:
        return False
    source, name = hosts[source_name], domain["name"]
    if source["maintenance"]:
        return True
    pins, _soft_pins, groups, _soft_groups = _rules(pol)
    if name in pins and source_name not in pins[name]:
        return True
    mates = {d["name"] for d in source["running"]} - {name}
    return any(name in group and mates & (group - {name}) for group in groups)


def _refusal(hosts, pol, domain, dest_name, source_name=None):
    """Why the rules refuse the domain (running on source_name, when given) onto dest_name now, or None."""
    dest, name = hosts[dest_name], domain["name"]
    pins, _soft_pins, groups, _soft_groups = _rules(pol)
    if dest["maintenance"]:
        return "maintenance"
    if name in pins and dest_name not in pins[name]:
        return "pin"
    if dest["free"] < domain["memory_mb"] + pol["memory_reserve_mb"]:
        return "memory"
    candidate = pol["max_memory_candidate"] if pol["max_memory_candidate"] is not None else pol["memory_threshold"]
    used = sum(d["memory_mb"] for d in dest["running"]) + domain["memory_mb"]
    if candidate is not None and dest["memory_mb"] and used / dest["memory_mb"] > candidate + 1e-9:
        return "max_memory_candidate"
    if pol["max_vm_per_host"] is not None and len(dest["running"]) + 1 > pol["max_vm_per_host"]:
        return "max_vm_per_host"
    for group in groups:
        if name in group and {d["name"] for d in dest["running"]} & (group - {name}):
            return "anti-affinity"
    dest_load = math.fsum([d["cpu"] for d in dest["running"]] + [domain["cpu"]]) / dest["cpus"]
    if dest_load > pol["max_load_candidate"] + 1e-9:
        return "max_load_candidate"
    busy_limit = 2 * pol["load_threshold"] - pol["max_load_candidate"]
    if (sum(busy(d, pol) for d in dest["running"] + [domain]) / dest["cpus"] > busy_limit + 1e-9
            and not _busy_exempt(hosts, pol, domain, source_name)):
        return "busy"
    last = domain.get("last_migration") or {}
    if last.get("source") == dest_name and NOW - last["time"] < 120 * 60:
        return "no_return"
    if pol["predictive"]:
        dest_forecast = sum(forecast(d, pol) for d in dest["running"] + [domain]) / dest["cpus"]
        if dest_forecast > pol["max_load_candidate"] + 1e-9:
            return "forecast"
    return None


def check_plan(cluster, policy, result, now=NOW):
    """Assert that every migration is allowed, in order, and that the plan improves the measure.

    A make-room migration (a later one lists it in `requires`) leaves a host under the threshold so
    that a later domain, refused there before, fits. Every migration that no later one requires
    "closes" a step: the measure must be strictly lower there than at the previous close.
    """
    pol = {**DEFAULTS, **{k: v for k, v in policy.items() if v is not None}}
    hosts = _state(cluster, pol)
    overloaded = {h["name"] for h in result["hosts"] if h["overloaded"]}
    memory_overloaded = {h["name"] for h in result["hosts"] if h["memory_overloaded"]}
    balancing = bool(result["balance"] and result["balance"]["held"])
    migrations = result["migrations"]
    assert len(migrations) <= pol["max_migrations"]
    moved, done = set(), {}
    before = measure(hosts, pol, balancing, overloaded)
    for index, move in enumerate(migrations):
        name, source, dest = move["vm"], hosts[move["source"]], hosts[move["destination"]]
        assert name not in moved, f"{name} moves twice"
        moved.add(name)
        assert move["source"] != move["destination"]
        domain = next(d for d in source["running"] if d["name"] == name)
        assert move["uuid"] == domain["uuid"]
        assert isinstance(move["requires"], list)
        for required in move["requires"]:
            assert required in done and done[required]["source"] == move["destination"], \
                f"{name} requires {required}, which did not leave {move['destination']} before it"
        enabled = [m for m in migrations[index + 1:] if name in m["requires"]]
        primary = (source["maintenance"] or move["source"] in overloaded
                   or _breaks_rule(hosts, pol, name, move["source"])
                   or move["source"] in memory_overloaded
                   or _breaks_rule(hosts, pol, name, move["source"], "should")
                   or (balancing and move["reason"].startswith("imbalance "))
                   or (pol["predictive"] and _levelled(source, pol)
                       and _forecasts(hosts, pol)[move["source"]] > pol["max_load_candidate"]))
        if enabled and not primary:
            assert _loads(hosts)[move["source"]] <= pol["load_threshold"], \
                f"{name} makes room on a host that is itself over the threshold"
            waiting = [next(d for d in hosts[m["source"]]["running"] if d["name"] == m["vm"]) for m in enabled]
            assert any(_refusal(hosts, pol, d, move["source"]) is not None for d in waiting), \
                f"{name} makes room that was there"
        else:
            assert primary, f"{move['source']} sheds for no reason"
        assert name not in pol["exclude"]
        last = domain.get("last_migration")
        if last and pol["cooldown"]:
            assert (now - last["time"]) / 60 >= pol["cooldown"], f"{name} moved inside its cooldown"
        assert not held_by_failure(domain.get("last_failure"), now, pol["failure_hold"]), \
            f"{name} moved inside its failure hold"
        refused = _refusal(hosts, pol, domain, move["destination"], move["source"])
        assert refused is None, f"{name} onto {move['destination']} breaks {refused}"
        source["running"].remove(domain)
        source["free"] += domain["memory_mb"]
        dest["running"].append(domain)
        dest["free"] -= domain["memory_mb"]
        done[name] = move
        if not enabled:
            after = measure(hosts, pol, balancing, overloaded)
            assert after < before, f"moving {name} does not improve the measure"
            before = after
    return hosts
