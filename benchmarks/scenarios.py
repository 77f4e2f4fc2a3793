"""Seeded scenario generator: clusters in the xen.drs data contract, from 3 hosts to 1,000 hosts.

``generate(kind, hosts, domains, seed)`` returns a cluster (list of host dicts). The same arguments
always give the same cluster. Every host's sample history reaches back further than ``max_over``
minutes and stays on one side of ``load_threshold``: a host is sustained-overloaded exactly when
its planning load (sum of guest CPU over cores) is above the threshold, so every planner sees the
same overload. Policy rules travel as domain tags, which ``policy_for`` turns into the policy:
``aa:<group>`` (anti-affinity group), ``pin:<host>,<host>`` (pin) and ``exclude``.
"""
import math
import random
import uuid

KINDS = ("uniform", "skewed", "one_hot", "hot_spots", "memory_bound", "anti_affinity", "constrained")
NOW = 1_767_225_600  # 2026-01-01 00:00 UTC: a fixed clock keeps runs reproducible
THRESHOLD = 0.75
MAX_OVER = 10
INTERVAL = 5
DOM0_MB = 4096  # memory the hypervisor keeps for itself
VM_MEMORY_MB = (1024, 2048, 4096, 8192, 16384)
RECENTLY_MIGRATED = 0.03  # share of domains still in cooldown from an earlier migration


def generate(kind, hosts, domains, seed, now=NOW):
    """A cluster of ``hosts`` hosts and ``domains`` running domains of the given ``kind``."""
    if kind not in KINDS:
        raise ValueError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    if hosts < 2 or domains < hosts:
        raise ValueError("need at least 2 hosts and one domain per host, got hosts=%s domains=%s" % (hosts, domains))
    rng = random.Random("%s/%s/%s/%s" % (kind, hosts, domains, seed))
    shape = _SHAPES[kind](rng, hosts)
    cluster = []
    counts = _split(rng, domains, [s["cpus"] for s in shape])
    serial = 0
    for index, (spec, count) in enumerate(zip(shape, counts)):
        host = {
            "name": "xen%04d" % index,
            "cpus": spec["cpus"],
            "maintenance": False,
            "domains": [],
        }
        weights = [rng.lognormvariate(0, 0.8) for _domain in range(count)]
        total = sum(weights)
        for weight in weights:
            cpu = round(spec["load"] * spec["cpus"] * weight / total, 3)
            host["domains"].append(_domain(rng, serial, cpu, spec.get("big_memory", False)))
            serial += 1
        used_mb = sum(d["memory_mb"] for d in host["domains"])
        host["memory_free_mb"] = _free_mb(rng, spec["free"], used_mb)
        host["memory_mb"] = used_mb + DOM0_MB + host["memory_free_mb"]
        cluster.append(host)
    _mark_recent_migrations(rng, cluster, now)
    for host in cluster:
        host["samples"] = _samples(rng, _load(host), now)
    if kind == "anti_affinity":
        _tag_anti_affinity(rng, cluster)
    if kind == "constrained":
        _tag_pins_and_exclusions(rng, cluster)
    return cluster


def policy_for(cluster, **overrides):
    """The benchmark policy for a generated cluster: contract defaults, the cluster's
    anti-affinity groups, the fixed clock, and no cap on migrations per plan (a cap would make
    every planner leave overload behind on large scenarios and hide the differences)."""
    groups, pins, excluded = {}, {}, []
    for host in cluster:
        for dom in host["domains"]:
            for tag in dom.get("tags", ()):
                if tag.startswith("aa:"):
                    groups.setdefault(tag, []).append(dom["name"])
                elif tag.startswith("pin:"):
                    pins[dom["name"]] = tag[len("pin:"):].split(",")
                elif tag == "exclude":
                    excluded.append(dom["name"])
    policy = {
        "load_threshold": THRESHOLD,
        "max_over": MAX_OVER,
        "max_load_candidate": 0.65,
        "max_vm_per_host": None,
        "max_migrations": sum(len(h["domains"]) for h in cluster),
        "cooldown": 60,
        "memory_reserve_mb": 512,
        "anti_affinity": [sorted(groups[tag]) for tag in sorted(groups)],
        "pin": pins,
        "exclude": sorted(excluded),
        "maintenance": [],
        "interval": INTERVAL,
        "now": NOW,
    }
    policy.update(overrides)
    return policy


def _load(host):
    return sum(d["cpu"] for d in host["domains"]) / host["cpus"]


def _split(rng, domains, cpus):
    """Domain counts per host: one each, the rest in proportion to host cores."""
    counts = [1] * len(cpus)
    for index in rng.choices(range(len(cpus)), weights=cpus, k=domains - len(cpus)):
        counts[index] += 1
    return counts


def _domain(rng, serial, cpu, big_memory):
    vcpus = 1
    while vcpus < cpu * 1.25:
        vcpus *= 2
    memory = rng.choices(VM_MEMORY_MB, weights=(1, 2, 4, 4, 3) if big_memory else (3, 4, 3, 1, 0.3))[0]
    return {
        "name": "vm%05d" % serial,
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "vcpus": vcpus,
        "memory_mb": memory,
        "cpu": cpu,
        "state": "running",
    }


def _samples(rng, load, now):
    """History reaching back past max_over, every sample on the same side of the threshold."""
    steps = MAX_OVER // INTERVAL + 3
    samples = []
    for step in range(steps):
        value = load + rng.gauss(0, 0.02)
        value = max(value, THRESHOLD + 0.002) if load > THRESHOLD else min(value, THRESHOLD - 0.002)
        samples.append([now - (steps - 1 - step) * INTERVAL * 60, round(min(max(value, 0.0), 1.0), 4)])
    return samples


def _mark_recent_migrations(rng, cluster, now):
    names = [h["name"] for h in cluster]
    for host in cluster:
        for dom in host["domains"]:
            if rng.random() < RECENTLY_MIGRATED:
                source = rng.choice([n for n in names if n != host["name"]])
                dom["last_migration"] = {"time": now - rng.randint(5, 50) * 60, "source": source,
                                         "destination": host["name"]}


def _tag_anti_affinity(rng, cluster):
    """Put 40% of the domains into groups of 2-4 whose members all sit on different hosts."""
    queues = {h["name"]: rng.sample(h["domains"], len(h["domains"])) for h in cluster}
    wanted = int(sum(len(q) for q in queues.values()) * 0.4)
    tagged = group = 0
    while tagged < wanted:
        live = [name for name, queue in queues.items() if queue]
        if len(live) < 2:
            break
        for host_name in rng.sample(live, min(rng.randint(2, 4), len(live))):
            queues[host_name].pop()["tags"] = ["aa:group%04d" % group]
            tagged += 1
        group += 1


def _free_mb(rng, free, used_mb):
    """Free memory from a shape's ``free``: ("share", lo, hi) of the guests' memory plus 8 GiB,
    or ("mb", lo, hi) absolute."""
    how, low, high = free
    if how == "share":
        return int(used_mb * rng.uniform(low, high)) + 8192
    return rng.randint(low, high)


def _tag_pins_and_exclusions(rng, cluster):
    """Exclude 10% of the domains and pin 15% to their own host plus one or two others, biased to
    the biggest CPU users, which a planner would otherwise pick first."""
    names = [h["name"] for h in cluster]
    for host in cluster:
        for dom in sorted(host["domains"], key=lambda d: -d["cpu"])[:len(host["domains"]) // 2]:
            draw = rng.random()
            if draw < 0.2:
                dom["tags"] = ["exclude"]
            elif draw < 0.5:
                others = rng.sample([n for n in names if n != host["name"]], min(len(names) - 1, rng.randint(1, 2)))
                dom["tags"] = ["pin:" + ",".join(sorted([host["name"]] + others))]


# Shapes: per host, cores, target load and how much memory is left free.
ROOMY = ("share", 0.4, 1.0)


def _uniform(rng, hosts):
    return [{"cpus": 32, "load": rng.uniform(0.3, 0.8), "free": ROOMY} for _host in range(hosts)]


def _skewed(rng, hosts):
    # Mixed host sizes; loads from a right-skewed distribution (most hosts calm, a long hot tail).
    return [{"cpus": rng.choice((8, 16, 32, 64)), "load": min(0.98, 0.15 + rng.betavariate(1.2, 2.2)),
             "free": ROOMY} for _host in range(hosts)]


def _one_hot(rng, hosts):
    shape = [{"cpus": 32, "load": rng.uniform(0.3, 0.5), "free": ROOMY} for _host in range(hosts)]
    shape[rng.randrange(hosts)]["load"] = 0.97
    return shape


def _hot_spots(rng, hosts):
    hot = set(rng.sample(range(hosts), max(1, math.ceil(hosts * 0.05))))
    return [{"cpus": 32, "load": rng.uniform(0.8, 0.95) if i in hot else rng.uniform(0.25, 0.55),
             "free": ROOMY} for i in range(hosts)]


def _memory_bound(rng, hosts):
    # The calmest hosts are nearly out of memory, so "least loaded" is usually not a valid answer.
    shape = []
    hot = set(rng.sample(range(hosts), max(1, math.ceil(hosts * 0.1))))
    for i in range(hosts):
        if i in hot:
            load, free = rng.uniform(0.8, 0.95), ("mb", 2048, 16384)
        else:
            load = rng.uniform(0.2, 0.6)
            free = ("mb", 512, 6144) if load < 0.45 else ("mb", 12288, 65536)
        shape.append({"cpus": 32, "load": load, "free": free, "big_memory": True})
    return shape


def _anti_affinity(rng, hosts):
    return _hot_spots(rng, hosts)


def _constrained(rng, hosts):
    return _hot_spots(rng, hosts)


_SHAPES = {
    "uniform": _uniform,
    "skewed": _skewed,
    "one_hot": _one_hot,
    "hot_spots": _hot_spots,
    "memory_bound": _memory_bound,
    "anti_affinity": _anti_affinity,
    "constrained": _constrained,
}
