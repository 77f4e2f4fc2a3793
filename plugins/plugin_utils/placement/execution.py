# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run does with its plan: the evacuation policy, which moves may run, their outcomes, the loads after.

Pure Python (stdlib only, relative imports, no I/O), like the rest of the placement package. The
playbooks reach it through the filters in plugins/filter/execution.py; templates only print.

An outcome is a mapping with at least C(vm), C(uuid) and C(status), one per migration the Migrate
stage ran or skipped. Its status is one of STATUSES, and every status is either succeeded (the domain
is, or in check mode would be, where the plan put it) or failed (the domain stays on its source).
Of the succeeded ones, MOVED are those where the domain left its source in this run.

Every error is an ExecutionError whose message names the entry, the field and the value.
"""

from collections.abc import Mapping, Sequence

from .model import DEFAULTS, RUNNING

MIGRATED = "migrated"
WOULD_MIGRATE = "would migrate"
ALREADY_THERE = "already there"
FAILED = "failed"
UNREACHABLE = "unreachable"
NOT_RUN = "not run"

STATUSES = (MIGRATED, WOULD_MIGRATE, ALREADY_THERE, FAILED, UNREACHABLE, NOT_RUN)
MOVED = frozenset((MIGRATED, WOULD_MIGRATE))
SUCCEEDED_STATUSES = MOVED | {ALREADY_THERE}
FAILED_STATUSES = frozenset((FAILED, UNREACHABLE, NOT_RUN))

SUCCEEDED = "succeeded"
FAILURE = "failed"


class ExecutionError(ValueError):
    """Bad input to the execution helpers; the message names where and what."""


def _is_list(value):
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _mapping(where, value):
    if not isinstance(value, Mapping):
        raise ExecutionError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def _list(where, value):
    if not _is_list(value):
        raise ExecutionError(f"{where} must be a list, got {type(value).__name__}: {value!r}")
    return value


def _status(where, outcome):
    status = _mapping(where, outcome).get("status")
    if status not in STATUSES:
        raise ExecutionError(f"{where}: status must be one of {', '.join(map(repr, STATUSES))}, got {status!r}")
    return status


def classify(outcome, where="outcome"):
    """SUCCEEDED or FAILURE for one outcome; an unknown status is an error."""
    return SUCCEEDED if _status(where, outcome) in SUCCEEDED_STATUSES else FAILURE


def succeeded(outcome, where="outcome"):
    """The domain is (or in check mode would be) where the plan put it."""
    return classify(outcome, where) == SUCCEEDED


def failed(outcome, where="outcome"):
    """The domain stays on its source: the migration failed, its source was unreachable, or it did not run."""
    return classify(outcome, where) == FAILURE


def moved(outcome, where="outcome"):
    """The domain left its source in this run (or would have, in check mode)."""
    return _status(where, outcome) in MOVED


def _select(outcomes, keep):
    _list("outcomes", outcomes)
    return [outcome for index, outcome in enumerate(outcomes) if keep(outcome, f"outcomes[{index}]")]


def succeeded_outcomes(outcomes):
    return _select(outcomes, succeeded)


def failed_outcomes(outcomes):
    return _select(outcomes, failed)


def moved_outcomes(outcomes):
    return _select(outcomes, moved)


def outcome_status(result, check_mode=False):
    """The status of one migration from the task result registered for it (as ansible's tests read it).

    Unreachable source, skipped (its requirements did not succeed), failed, would migrate (check
    mode), migrated (changed), or already there (the domain already ran on the destination).
    """
    _mapping("result", result)
    if not isinstance(check_mode, bool):
        raise ExecutionError(f"check_mode must be a boolean, got {type(check_mode).__name__}: {check_mode!r}")
    if result.get("unreachable"):
        return UNREACHABLE
    if result.get("skipped"):
        return NOT_RUN
    if result.get("failed"):
        return FAILED
    if check_mode:
        return WOULD_MIGRATE
    return MIGRATED if result.get("changed") else ALREADY_THERE


def requirements(move, where="move"):
    """The VM names a move requires, as a list: C(requires) may be missing, null, one name or a list."""
    required = _mapping(where, move).get("requires")
    if required is None:
        return []
    names = [required] if isinstance(required, str) else required
    if not _is_list(names) or not all(isinstance(name, str) and name for name in names):
        raise ExecutionError(
            f"{where} {move.get('vm', '?')!r}: requires must be null, a VM name or a list of VM names, got {required!r}")
    return list(dict.fromkeys(names))


def unmet_requirements(move, outcomes):
    """The VMs this move requires whose migration has not succeeded (no outcome, or a failed one)."""
    required = requirements(move)
    if not required:
        return []
    done = {outcome.get("vm") for outcome in succeeded_outcomes(outcomes)}
    return [name for name in required if name not in done]


def runnable(move, outcomes, heartbeats=None):
    """A move may run only if every migration it requires succeeded (an earlier wave) and the heartbeat
    before its wave failed on neither its source nor its destination (lost_lock_reason)."""
    return not unmet_requirements(move, outcomes) and lost_lock_reason(_mapping("move", move), heartbeats or {}) is None


def not_run_reason(unmet):
    """Why a move did not run, given the required VMs whose migration did not succeed."""
    plural = "s" if len(unmet) > 1 else ""
    return f"the make-room migration{plural} of {', '.join(unmet)} did not succeed"


def lost_lock_reason(move, heartbeats):
    """Why a move was not sent because the heartbeat before its wave failed on its source or destination
    (the host stopped answering, or another run took its lock), or None. ``heartbeats``: host name ->
    the registered result of that host's heartbeat (hosts without one are left out)."""
    parts = []
    for role in ("source", "destination"):
        name = move.get(role)
        beat = _mapping("heartbeats", heartbeats).get(name)
        if beat is None:
            continue
        _mapping(f"heartbeats[{name!r}]", beat)
        if beat.get("unreachable") or beat.get("failed"):
            parts.append(f"the run lock on {role} {name} could not be renewed before the wave "
                         f"({beat.get('msg') or 'no message'})")
    return "not sent: " + "; ".join(parts) if parts else None


def outcome_msg(result, move, outcomes, heartbeats=None):
    """The message of one outcome: why it did not run if skipped (a required migration that did not
    succeed, a heartbeat that failed on its source or destination, or the module's reason), else the
    migration's own message."""
    _mapping("result", result)
    if result.get("skipped"):
        unmet = unmet_requirements(move, outcomes)
        if unmet:
            return not_run_reason(unmet)
        lost = lost_lock_reason(_mapping("move", move), heartbeats or {})
        # a move the module skipped says why (the domain is no longer running on its source)
        return lost or result.get("msg") or result.get("skip_reason", "")
    return result.get("msg", "")


def loads_after(plan, outcomes):
    """Each planned host's load after the moves that really happened (in check mode, would happen).

    Starts from the plan's loads before and applies, in plan order, the change of each migration
    whose outcome (by uuid) moved its domain; so it equals the plan's prediction only when every
    migration succeeded, and a host's load stays as it was when its migrations failed.
    """
    _mapping("plan", plan)
    after = {}
    for index, host in enumerate(_list("plan.hosts", plan.get("hosts", []))):
        where = f"plan.hosts[{index}]"
        _mapping(where, host)
        if "name" not in host or "load" not in host:
            raise ExecutionError(f"{where} needs 'name' and 'load', got {host!r}")
        after[host["name"]] = host["load"]
    done = {outcome.get("uuid") for outcome in moved_outcomes(outcomes)}
    keys = ("uuid", "source", "destination", "source_load_before", "source_load_after",
            "destination_load_before", "destination_load_after")
    for index, move in enumerate(_list("plan.migrations", plan.get("migrations", []))):
        where = f"plan.migrations[{index}]"
        missing = [key for key in keys if key not in _mapping(where, move)]
        if missing:
            raise ExecutionError(f"{where} {move.get('vm', '?')!r} needs {', '.join(map(repr, missing))}")
        if move["uuid"] not in done:
            continue
        for end in ("source", "destination"):
            if move[end] not in after:
                raise ExecutionError(f"{where} {move.get('vm', '?')!r}: {end} {move[end]!r} is not in plan.hosts")
        source, destination = move["source"], move["destination"]
        after[source], after[destination] = (
            after[source] - move["source_load_before"] + move["source_load_after"],
            after[destination] - move["destination_load_before"] + move["destination_load_after"])
    return after


def evacuation_policy(policy, cluster, host):
    """The policy of a run that empties ``host``: it joins the maintenance list, and max_migrations is
    at least twice its running domains (each may need a make-room migration elsewhere first).

    ``policy`` is the user's (None for none), ``cluster`` the hosts as gathered (the evacuee may be
    missing from it when it could not be measured). With ``host`` None (a rebalance) the policy is
    returned unchanged. Unset keys keep the planner's DEFAULTS.
    """
    policy = {} if policy is None else dict(_mapping("policy", policy))
    if host is None:
        return policy
    if not isinstance(host, str) or not host:
        raise ExecutionError(f"host must be a host name, got {host!r}")
    maintenance = policy.get("maintenance")
    maintenance = [] if maintenance is None else list(_list("policy.maintenance", maintenance))
    budget = policy.get("max_migrations")
    if budget is None:
        budget = DEFAULTS["max_migrations"]
    elif isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise ExecutionError(f"policy.max_migrations must be a whole number or null, got {budget!r}")
    running = 0
    for index, entry in enumerate(_list("cluster", cluster)):
        entry = _mapping(f"cluster[{index}]", entry)
        if entry.get("name") != host:
            continue
        for number, domain in enumerate(_list(f"host {host!r}: domains", entry.get("domains", []))):
            running += _mapping(f"host {host!r}: domains[{number}]", domain).get("state") == RUNNING
    policy["maintenance"] = maintenance + ([] if host in maintenance else [host])
    policy["max_migrations"] = max(budget, 2 * running)
    return policy


RECORD_KEYS = ("time", "vm", "uuid", "source", "destination")


def _record(where, record):
    _mapping(where, record)
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ExecutionError(f"{where} needs {', '.join(missing)}, got {record!r}")
    if isinstance(record["time"], bool) or not isinstance(record["time"], (int, float)):
        raise ExecutionError(f"{where}.time must be a number, got {record['time']!r}")
    for key in RECORD_KEYS[1:]:
        if not isinstance(record[key], str):
            raise ExecutionError(f"{where}.{key} must be a string, got {record[key]!r}")
    return {key: record[key] for key in RECORD_KEYS}


def reconcile_records(infos):
    """The pool's migration records made whole: what each answered host lacks, and the hosts as the plan reads them.

    ``infos`` maps each host that answered to what hypervisor_info returned there (``hypervisor`` and
    ``migrations``, the records of the last history window that name it). A migration is recorded on its
    source by domain_migrate and on its destination by the next task; a run that died in between (its
    controller killed) leaves the destination without the record, so the domain's cooldown would be
    forgotten there. Returns ``missing``: [{host, record}] for each record one of its two hosts lacks
    (when that host answered), and ``hypervisors``: {host: hypervisor} with each domain's ``last_migration``
    the newest record of its uuid anywhere in the pool.
    """
    _mapping("infos", infos)
    records, held = {}, {}
    for host, info in infos.items():
        _mapping(f"infos[{host!r}]", info)
        _mapping(f"infos[{host!r}].hypervisor", info.get("hypervisor"))
        for index, raw in enumerate(_list(f"infos[{host!r}].migrations", info.get("migrations", []))):
            record = _record(f"infos[{host!r}].migrations[{index}]", raw)
            key = tuple(record[k] for k in RECORD_KEYS)
            records[key] = record
            held.setdefault(host, set()).add(key)
    missing = [{"host": side, "record": records[key]}
               for key in sorted(records, key=lambda k: (k[0], k[1]))
               for side in (records[key]["source"], records[key]["destination"])
               if side in infos and key not in held.get(side, set())]
    newest = {}
    for record in sorted(records.values(), key=lambda r: r["time"]):
        newest[record["uuid"]] = record
    hypervisors = {}
    for host, info in infos.items():
        hypervisor = dict(info["hypervisor"])
        domains = []
        for domain in _list(f"infos[{host!r}].hypervisor.domains", hypervisor.get("domains", [])):
            record = newest.get(_mapping(f"infos[{host!r}] domain", domain).get("uuid"))
            known = domain.get("last_migration") or {}
            if record is not None and record["time"] > known.get("time", float("-inf")):
                domain = dict(domain, last_migration={k: record[k] for k in ("time", "source", "destination")})
            domains.append(domain)
        hypervisors[host] = dict(hypervisor, domains=domains)
    return {"missing": missing, "hypervisors": hypervisors}
