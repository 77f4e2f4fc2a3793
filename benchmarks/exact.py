"""Exact minimum number of migrations for small clusters, as a mixed-integer program (HiGHS).

Variables: x[d,h] = 1 if domain d migrates to host h (only movable domains, only hosts the static
rules allow: not its own, not in maintenance, pin respected, fits alone in memory); y[h] = 1 if
host h receives anything; z[s] = 1 if overloaded host s is allowed to stay overloaded.
Constraints, the same rules xen.drs and the baselines obey (rules.py):
  - each domain moves at most once;
  - every host that is overloaded now ends at or under ``load_threshold``, unless z[s] = 1;
  - every host that receives a domain ends at or under ``max_load_candidate``;
  - memory taken in by a receiving host, less memory leaving it, fits in its free memory minus
    ``memory_reserve_mb`` (the plan runs in order, so departures can make room, as in xen.drs);
  - no two members of an anti-affinity group end on the same host;
  - a receiving host holds at most ``max_vm_per_host`` domains.
Objective: minimise migrations + W * (hosts left overloaded), W larger than any migration count,
i.e. first clear as many overloaded hosts as possible, then use as few migrations as possible.
Any domain may move, not only those on overloaded hosts, so chains count: this is the true minimum
under the shared rules, a lower bound for any planner that obeys them. Evacuating maintenance
hosts is not modelled (they are only excluded as destinations): no generated scenario has one.

When some host cannot be cleared, "fewest migrations" alone would stop at zero moves for it, while a
planner that also lowers what it cannot clear (xen.drs does) pays extra migrations for that. So
``reach`` asks the other question: the fewest migrations that leave at most ``overloaded`` hosts
overloaded and at most ``excess`` total load above the threshold (sum over hosts of load minus
threshold), i.e. the minimum cost of a result at least as good as a given planner's.
"""
import os

import highspy
import numpy as np

from rules import Placement


def _quiet_highs():
    """A Highs instance that prints nothing (the banner goes to fd 1 before options apply)."""
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highs = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    highs.setOptionValue("output_flag", False)
    # No `threads` option: HiGHS has one scheduler per process, and an instance asking for another
    # thread count than the first one did (the product's engine runs in the same process) fails.
    return highs


def minimum_migrations(cluster, policy, time_limit=20.0, reach=None, direct_only=False, must_clear=()):
    """Solve; returns ``{migrations, overloaded, status, bound}``.

    ``reach``: optional ``{"overloaded": n, "excess": x}`` the result must be at least as good as.
    ``direct_only``: only domains on overloaded hosts may move (no "make room" chains), the class
    of plans xen.drs searches.
    ``must_clear``: overloaded hosts the plan must bring to or under the threshold (no plan at all,
    ``migrations`` None, if that is impossible); the others are cleared as far as possible as usual.

    ``migrations`` is the optimal plan (list of ``{vm, source, destination}``), ``overloaded`` the
    hosts it leaves overloaded, ``status`` "optimal" or the HiGHS status when the time limit hit
    (then the plan is the best found and ``bound`` the proven lower bound on the objective).
    """
    placement = Placement(cluster, policy)
    pol = placement.policy
    threshold, candidate_max = pol["load_threshold"], pol["max_load_candidate"]
    hosts = list(placement.hosts)
    cores = {h: placement.hosts[h]["cpus"] for h in hosts}
    movable = sorted(vm for vm in placement.domains if placement.why_not_movable(vm) is None)
    home = placement.location
    cpu = {vm: placement.domains[vm]["cpu"] for vm in placement.domains}
    mem = {vm: placement.domains[vm]["memory_mb"] for vm in placement.domains}
    overloaded = [h for h in hosts if h not in placement.maintenance and placement.load(h) > threshold]
    if direct_only:
        movable = [vm for vm in movable if home[vm] in overloaded]

    columns = []  # (kind, key) per variable, in index order
    x = {}
    for vm in movable:
        for dest in hosts:
            if dest == home[vm] or dest in placement.maintenance:
                continue
            if vm in placement.pins and dest not in placement.pins[vm]:
                continue
            if mem[vm] > placement.free_mb(dest) + sum(mem[other] for other in placement.members[dest]):
                continue  # cannot fit even if everything else left
            x[vm, dest] = len(columns)
            columns.append(("x", (vm, dest)))
    y = {}
    for dest in hosts:
        y[dest] = len(columns)
        columns.append(("y", dest))
    z = {}
    for host in overloaded:
        z[host] = len(columns)
        columns.append(("z", host))
    excess = {}  # load above the threshold left on each overloaded host (only they can stay over)
    if reach is not None:
        for host in overloaded:
            excess[host] = len(columns)
            columns.append(("e", host))

    highs = _quiet_highs()
    highs.setOptionValue("time_limit", float(time_limit))
    highs.setOptionValue("mip_rel_gap", 0.0)
    count = len(columns)
    forced = set(must_clear)
    upper = np.array([highspy.kHighsInf if kind == "e" else (0.0 if kind == "z" and key in forced else 1.0)
                      for kind, key in columns])
    highs.addVars(count, np.zeros(count), upper)
    integral = np.array([kind != "e" for kind, _key in columns], dtype=np.uint8)
    highs.changeColsIntegrality(count, np.arange(count, dtype=np.int32), integral)
    weight = 0.0 if reach is not None else len(outgoing_vms(x)) + 1  # more than any migration count
    cost = np.array([1.0 if kind == "x" else (weight if kind == "z" else 0.0) for kind, _key in columns])
    highs.changeColsCost(count, np.arange(count, dtype=np.int32), cost)

    def row(lower, upper, terms):
        if terms:
            highs.addRow(lower, upper, len(terms), np.array([i for i, _value in terms], dtype=np.int32),
                         np.array([v for _index, v in terms], dtype=np.float64))

    outgoing = {}  # vm -> its x columns
    incoming = {h: [] for h in hosts}  # host -> (vm, column)
    for (vm, dest), col in x.items():
        outgoing.setdefault(vm, []).append(col)
        incoming[dest].append((vm, col))
    inf = highspy.kHighsInf

    for vm, cols in outgoing.items():
        row(-inf, 1, [(c, 1.0) for c in cols])
    for dest, pairs in incoming.items():
        for _vm, col in pairs:
            row(-inf, 0, [(col, 1.0), (y[dest], -1.0)])

    for host in hosts:
        # Load after = load now - leaving + arriving, as a linear expression in cores.
        now_cores = placement.cpu_used[host]
        terms = [(col, -cpu[vm]) for vm in sorted(placement.members[host]) for col in outgoing.get(vm, ())]
        terms += [(col, cpu[vm]) for vm, col in incoming[host]]
        # Big-M terms as small as validity allows (a tight relaxation is what lets HiGHS prove
        # optimality in seconds): a host that receives nothing (y = 0) only loses load and memory,
        # and a host that receives ends under max_load_candidate < load_threshold, so z = 1 need
        # only allow the load it has now.
        if host in z:
            big = now_cores - threshold * cores[host]
            row(-inf, threshold * cores[host] - now_cores, terms + [(z[host], -big)])
            # Cover cut: clearing the host takes at least as many departures as its biggest movable
            # domains need to shed the excess (valid since arrivals only add load).
            leaving_cols = [col for vm in sorted(placement.members[host]) for col in outgoing.get(vm, ())]
            sizes = sorted((cpu[vm] for vm in placement.members[host] if vm in outgoing), reverse=True)
            need, shed = 0, 0.0
            while need < len(sizes) and shed < big - 1e-9:
                shed += sizes[need]
                need += 1
            if shed < big - 1e-9:
                row(1, inf, [(z[host], 1.0)])  # cannot be cleared even if every movable domain left
            elif need:
                row(need, inf, [(col, 1.0) for col in leaving_cols] + [(z[host], float(need))])
        if host in excess:
            row(-inf, threshold * cores[host] - now_cores, terms + [(excess[host], -cores[host])])
        if incoming[host]:
            big = max(0.0, now_cores - candidate_max * cores[host])
            row(-inf, candidate_max * cores[host] - now_cores + big, terms + [(y[host], big)])
            leaving = [(col, -float(mem[vm])) for vm in sorted(placement.members[host]) for col in outgoing.get(vm, ())]
            big = max(0.0, -placement.free_mb(host))
            row(-inf, placement.free_mb(host) + big,
                [(col, float(mem[vm])) for vm, col in incoming[host]] + leaving + [(y[host], big)])
            limit = pol["max_vm_per_host"]
            if limit is not None:
                big_n = max(0, len(placement.members[host]) - limit)
                count_terms = [(col, -1.0) for vm in sorted(placement.members[host]) for col in outgoing.get(vm, ())]
                count_terms += [(col, 1.0) for _vm, col in incoming[host]] + [(y[host], big_n)]
                row(-inf, limit - len(placement.members[host]) + big_n, count_terms)

    for group in pol["anti_affinity"]:
        members = [vm for vm in group if vm in placement.domains]
        for host in hosts:
            constant = 0
            terms = []
            for vm in members:
                if home[vm] == host:
                    constant += 1  # stays unless it leaves
                    terms += [(col, -1.0) for col in outgoing.get(vm, ())]
                elif (vm, host) in x:
                    terms.append((x[vm, host], 1.0))
            if terms and constant + sum(1 for _col, v in terms if v > 0) > 1:
                row(-inf, 1 - constant, terms)

    if reach is not None and z:
        row(-inf, reach["overloaded"], [(col, 1.0) for col in z.values()])
        row(-inf, reach["excess"] + 1e-6, [(col, 1.0) for col in excess.values()])

    highs.run()
    status = highs.modelStatusToString(highs.getModelStatus())
    info = highs.getInfo()
    values = highs.getSolution().col_value
    if info.primal_solution_status != 2 or len(values) != count:  # 2: a feasible solution exists
        return {"migrations": None, "overloaded": None, "status": status, "bound": None}
    chosen = [{"vm": vm, "source": home[vm], "destination": dest}
              for (vm, dest), col in sorted(x.items(), key=lambda item: item[1]) if values[col] > 0.5]
    result = Placement(cluster, policy)
    plan = _executable_order(result, chosen)
    return {
        "migrations": plan,
        "overloaded": sum(1 for load in result.loads().values() if load > threshold),
        "status": "optimal" if status == "Optimal" else status,
        "bound": info.mip_dual_bound,
    }


def outgoing_vms(x):
    return {vm for vm, _dest in x}


def _executable_order(placement, moves):
    """Order ``moves`` so each one is allowed when it runs (a domain leaving a host first makes
    the memory room a later arrival counts on); applies them to ``placement``."""
    ordered, pending = [], list(moves)
    while pending:
        ready = next((m for m in pending if placement.why_not_to(m["vm"], m["destination"]) is None), pending[0])
        pending.remove(ready)
        placement.move(ready["vm"], ready["destination"])
        ordered.append(ready)
    return ordered
