"""Seeded scenario generator: clusters in the xen.drs data contract, from 3 hosts to 1,000 hosts.

``generate(kind, hosts, domains, seed)`` returns a cluster (list of host dicts). The same arguments
always give the same cluster. Every host's sample history reaches back further than ``max_over``
minutes and stays on one side of ``load_threshold``: a host is sustained-overloaded exactly when
its planning load (sum of guest CPU over cores) is above the threshold, so every planner sees the
same overload. Policy rules travel as domain tags, which ``policy_for`` turns into the policy:
``aa:<group>`` (anti-affinity group), ``pin:<host>,<host>`` (pin) and ``exclude``.

The hard kinds (``HARD_KINDS``) are shaped like measured planner failures and sized for the exact
solver (``SIZES``: at most 16 hosts); with ``domains=None`` they carry their own density (about
10 domains per 16 cores), and some come with policy overrides (``KIND_POLICY``) that
``policy_for(cluster, kind)`` applies.
"""
import math
import random
import uuid

HARD_KINDS = ("scarce_headroom", "memory_tight", "mixed")
KINDS = ("uniform", "skewed", "one_hot", "hot_spots", "memory_bound", "anti_affinity", "constrained") + HARD_KINDS
SIZES = {"scarce_headroom": 14, "memory_tight": 10, "mixed": 16}  # hosts of a hard kind's exact-solvable size
KIND_POLICY = {  # per-kind policy overrides, applied by policy_for(cluster, kind)
    "scarce_headroom": {"max_load_candidate": 0.60},
    "mixed": {"max_load_candidate": 0.60},
}
NOW = 1_767_225_600  # 2026-01-01 00:00 UTC: a fixed clock keeps runs reproducible
THRESHOLD = 0.75
MAX_OVER = 10
INTERVAL = 5
DOM0_MB = 4096  # memory the hypervisor keeps for itself
VM_MEMORY_MB = (1024, 2048, 4096, 8192, 16384)
GIB = 1024
DOMAINS_PER_CORE = 10 / 16  # density of the hard kinds when generate() is given domains=None
MAX_VCPUS = 8  # hard kinds: 1-8 vCPUs per domain
RECENTLY_MIGRATED = 0.03  # share of domains still in cooldown from an earlier migration


def generate(kind, hosts, domains, seed, now=NOW):
    """A cluster of ``hosts`` hosts and ``domains`` running domains of the given ``kind``.

    ``domains=None`` (hard kinds only): about ``DOMAINS_PER_CORE`` domains per core on each host."""
    if kind not in KINDS:
        raise ValueError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    if domains is None and kind not in HARD_KINDS:
        raise ValueError("kind %r needs a domain count" % kind)
    if hosts < 2 or (domains is not None and domains < hosts):
        raise ValueError("need at least 2 hosts and one domain per host, got hosts=%s domains=%s" % (hosts, domains))
    rng = random.Random("%s/%s/%s/%s" % (kind, hosts, domains, seed))
    if kind in HARD_KINDS:
        return _generate_hard(rng, kind, hosts, domains, now)
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


def policy_for(cluster, kind=None, **overrides):
    """The benchmark policy for a generated cluster: contract defaults, the cluster's
    anti-affinity groups, the fixed clock, no cap on migrations per plan (a cap would make
    every planner leave overload behind on large scenarios and hide the differences), and no
    balancing or prediction (judged on the trace replay); then the overrides of ``kind``
    (``KIND_POLICY``), then ``overrides``."""
    if kind is not None and kind not in KINDS:
        raise ValueError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
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
        # The static scenarios judge the plan for what must be fixed (maintenance, rules, sustained
        # overload) against the exact minimum of migrations; headroom below the threshold, balancing
        # healthy hosts and prediction move domains for the measure's lower terms and are judged on
        # the trace replay instead.
        "balance": 0,
        "predictive": False,
        "headroom": False,
    }
    policy.update(KIND_POLICY.get(kind, {}))
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


def _tag_anti_affinity(rng, cluster, share=0.4, sizes=(2, 4)):
    """Put ``share`` of the domains into groups of ``sizes`` (2-4) whose members all sit on different hosts."""
    queues = {h["name"]: rng.sample(h["domains"], len(h["domains"])) for h in cluster}
    wanted = int(sum(len(q) for q in queues.values()) * share)
    tagged = group = 0
    while tagged < wanted:
        live = [name for name, queue in queues.items() if queue]
        if len(live) < 2:
            break
        for host_name in rng.sample(live, min(rng.randint(*sizes), len(live))):
            queues[host_name].pop().setdefault("tags", []).append("aa:group%04d" % group)
            tagged += 1
        group += 1


def _free_mb(rng, free, used_mb):
    """Free memory from a shape's ``free``: ("share", lo, hi) of the guests' memory plus 8 GiB,
    or ("mb", lo, hi) absolute."""
    how, low, high = free
    if how == "share":
        return int(used_mb * rng.uniform(low, high)) + 8192
    return rng.randint(low, high)


def _tag_pins_and_exclusions(rng, cluster, exclude=0.2, pin=0.3):
    """Among each host's bigger half of domains by CPU (which a planner would otherwise pick
    first), exclude ``exclude`` (20%) and pin ``pin`` (30%) to their own host plus one or two
    others: about 10% and 15% of all domains."""
    names = [h["name"] for h in cluster]
    for host in cluster:
        for dom in sorted(host["domains"], key=lambda d: -d["cpu"])[:len(host["domains"]) // 2]:
            draw = rng.random()
            if draw < exclude:
                dom.setdefault("tags", []).append("exclude")
            elif draw < exclude + pin:
                others = rng.sample([n for n in names if n != host["name"]], min(len(names) - 1, rng.randint(1, 2)))
                dom.setdefault("tags", []).append("pin:" + ",".join(sorted([host["name"]] + others)))


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


# Hard kinds: shaped like measured planner failures, small enough for the exact solver. Each shape
# gives per host: cores, target load, domain memory sizes (with weights), how host memory is set
# ("per_core": cores x 4 GiB; ("free", lo, hi): that much left free; ("share", lo, hi): as ROOMY),
# and the CPU weight of the 16 GiB domains (>1: the hot hosts' CPU sits in their big domains).
SMALL_VMS = ([GIB * n for n in range(1, 9)], [1] * 8)  # 1-8 GiB, uniform
TIGHT_FREE = ("free", 3 * GIB, 17 * GIB)  # the memory-tight destinations: 3-17 GiB free


def _scarce_headroom(rng, hosts):
    """6 of 14 hosts sustained-hot at 0.78-0.84, the rest already at 0.50-0.56 with
    max_load_candidate 0.60: little room, spread over many hosts, so the choice of which domains
    go where decides how many migrations it takes (or whether it can be done at all)."""
    hot = set(rng.sample(range(hosts), max(1, round(hosts * 6 / 14))))
    return [{"cpus": rng.choice((8, 16, 32, 64)),
             "load": rng.uniform(0.78, 0.84) if i in hot else rng.uniform(0.50, 0.56),
             "vms": SMALL_VMS, "memory": ("per_core", 4 * GIB)} for i in range(hosts)]


def _memory_tight(rng, hosts):
    """3 of 10 hosts hot (0.82-0.92) and carrying 16 GiB domains that hold most of their CPU; the
    destinations are calm (0.30-0.55) but have only 3-17 GiB free, so a big domain fits almost
    nowhere without first making room, and the small ones must be chosen well."""
    hot = set(rng.sample(range(hosts), max(1, round(hosts * 0.3))))
    shape = []
    for i in range(hosts):
        if i in hot:
            shape.append({"cpus": rng.choice((16, 32, 32)), "load": rng.uniform(0.82, 0.92),
                          "vms": ([2 * GIB, 4 * GIB, 8 * GIB, 16 * GIB], [1, 1, 1, 5]), "big_weight": 3.0,
                          "memory": ("free", 2 * GIB, 8 * GIB)})
        else:
            shape.append({"cpus": rng.choice((16, 32, 32)), "load": rng.uniform(0.30, 0.55),
                          "vms": ([GIB, 2 * GIB, 4 * GIB, 8 * GIB], [2, 3, 3, 1]), "memory": TIGHT_FREE})
    return shape


def _mixed(rng, hosts):
    """A blend: 8-64-core hosts, 30% hot (0.78-0.92, some 16 GiB domains carrying much of the CPU),
    the rest at 0.40-0.56 under max_load_candidate 0.60, 40% of them memory-tight (3-17 GiB free);
    generate() adds anti-affinity groups (25% of domains), exclusions and pins."""
    hot = set(rng.sample(range(hosts), max(1, round(hosts * 0.3))))
    shape = []
    for i in range(hosts):
        cpus = rng.choice((8, 16, 32, 64))
        if i in hot:
            shape.append({"cpus": cpus, "load": rng.uniform(0.78, 0.92),
                          "vms": ([GIB, 2 * GIB, 4 * GIB, 8 * GIB, 16 * GIB], [2, 3, 3, 2, 2]), "big_weight": 1.5,
                          "memory": ("free", 2 * GIB, 12 * GIB)})
        else:
            shape.append({"cpus": cpus, "load": rng.uniform(0.40, 0.56), "vms": SMALL_VMS,
                          "memory": TIGHT_FREE if rng.random() < 0.4 else ("share", 0.2, 0.6)})
    return shape


_HARD_SHAPES = {"scarce_headroom": _scarce_headroom, "memory_tight": _memory_tight, "mixed": _mixed}


def _generate_hard(rng, kind, hosts, domains, now):
    shape = _HARD_SHAPES[kind](rng, hosts)
    if domains is None:
        counts = [max(1, round(s["cpus"] * DOMAINS_PER_CORE * rng.uniform(0.85, 1.15))) for s in shape]
    else:
        counts = _split(rng, domains, [s["cpus"] for s in shape])
    cluster = []
    serial = 0
    for index, (spec, count) in enumerate(zip(shape, counts)):
        sizes = rng.choices(spec["vms"][0], weights=spec["vms"][1], k=count)
        weights = [rng.lognormvariate(0, 0.8) * (spec.get("big_weight", 1.0) if size >= 16 * GIB else 1.0)
                   for size in sizes]
        cpus = _capped_split(spec["load"] * spec["cpus"], weights, cap=MAX_VCPUS * 0.95)
        how = spec["memory"][0]
        if how == "per_core":
            memory_mb = spec["cpus"] * spec["memory"][1]
            sizes = _fit_memory(sizes, memory_mb - DOM0_MB - GIB)  # keep at least 1 GiB free
        host = {"name": "xen%04d" % index, "cpus": spec["cpus"], "maintenance": False, "domains": []}
        for cpu, size in zip(cpus, sizes):
            cpu = round(cpu, 3)
            host["domains"].append({
                "name": "vm%05d" % serial,
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "vcpus": rng.randint(max(1, math.ceil(cpu)), MAX_VCPUS),
                "memory_mb": size,
                "cpu": cpu,
                "state": "running",
            })
            serial += 1
        used_mb = sum(sizes)
        if how == "per_core":
            host["memory_mb"] = memory_mb
            host["memory_free_mb"] = memory_mb - DOM0_MB - used_mb
        else:
            host["memory_free_mb"] = (_free_mb(rng, spec["memory"], used_mb) if how == "share"
                                      else rng.randint(spec["memory"][1], spec["memory"][2]))
            host["memory_mb"] = used_mb + DOM0_MB + host["memory_free_mb"]
        cluster.append(host)
    _mark_recent_migrations(rng, cluster, now)
    for host in cluster:
        host["samples"] = _samples(rng, _load(host), now)
    if kind == "mixed":
        _tag_pins_and_exclusions(rng, cluster, exclude=0.1, pin=0.2)
        _tag_anti_affinity(rng, cluster, share=0.25, sizes=(2, 3))
    return cluster


def _capped_split(total, weights, cap):
    """``total`` split in proportion to ``weights``, no part above ``cap`` (the excess goes to the
    others in proportion)."""
    cap = max(cap, total / len(weights))
    parts = [None] * len(weights)
    free = list(range(len(weights)))
    left = total
    while free:
        scale = left / sum(weights[i] for i in free)
        over = [i for i in free if weights[i] * scale > cap]
        if not over:
            for i in free:
                parts[i] = weights[i] * scale
            break
        for i in over:
            parts[i] = cap
            left -= cap
            free.remove(i)
    return parts


def _fit_memory(sizes, budget_mb):
    """Shrink the biggest domains 1 GiB at a time (not below 1 GiB) until ``sizes`` fit ``budget_mb``."""
    sizes = list(sizes)
    while sum(sizes) > budget_mb and max(sizes) > GIB:
        biggest = max(range(len(sizes)), key=lambda i: (sizes[i], -i))
        sizes[biggest] -= GIB
    return sizes
