# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decision log and the plan's explanations built from it.

The engines write to the log when they decide (a domain found no destination, a chain did not fit
the budget); `hosts` and `skipped` are built from the log and the final state, never by planning
again.
"""

from . import rules
from .history import NOT_OVER, figure
from .state import plain, rounded

OK = "ok"
OVERLOADED = "overloaded"
UNRESOLVED = "unresolved"
MAINTENANCE = "maintenance"
NOT_SUSTAINED = "overload-not-sustained"


class DecisionLog:
    def __init__(self):
        self.refusals = {}  # domain name -> why it found no destination, as of the latest refusal
        self.unaffordable = set()  # domains a make-room chain would move, had the budget two migrations left
        self.soft_kept = {}  # domain name -> why its should-rule break was not repaired, when repair_soft tried
        self.warnings = []

    def no_destination(self, domain, why):
        self.refusals[domain.name] = why

    def soft_unrepaired(self, name, why):
        self.soft_kept[name] = why

    def too_costly(self, domain):
        self.unaffordable.add(domain.name)

    def warn(self, text):
        if text not in self.warnings:
            self.warnings.append(text)


def skipped(state, verdicts, policy, log, breaks_now, out_of_budget, budget):
    """Domains on maintenance or sustained-overloaded hosts that stay, and domains still breaking a rule."""
    entries = []
    threshold = policy.load_threshold
    for host in state.hosts:
        current, verdict = state[host.name], verdicts[host.name]
        resolved = (not current.maintenance and current.load <= threshold
                    and not (verdict.memory_sustained and current.memory_load > policy.memory_threshold))
        acting = current.maintenance or verdict.sustained or verdict.memory_sustained
        for domain in sorted(host.running, key=lambda d: d.name):
            broken = breaks_now.get(domain.name)
            if domain.name in state.moved or not (acting or broken):
                continue
            reason = rules.blocker(domain, policy)
            if reason is None and resolved and broken is None:
                if domain.name not in log.refusals:
                    continue  # not needed: the host is under the threshold without it
                reason = log.refusals[domain.name]
            if (reason is None and not current.maintenance and domain.cpu <= 0 and broken is None
                    and not verdict.memory_sustained):
                reason = "uses no CPU: moving it would not lower the load"
            if reason is None and domain.name in log.unaffordable:
                reason = (f"needs room made for it first (2 migrations) but max_migrations"
                          f" {policy.max_migrations} leaves {budget}")
            if reason is None and domain.name in log.refusals:
                reason = log.refusals[domain.name]
            if reason is None and out_of_budget:
                reason = f"max_migrations {policy.max_migrations} reached"
            if reason is None:
                reason = "not needed: the plan reaches the same result without moving it"
            if broken is not None:
                reason = f"rule break stays ({broken}): {reason}"
            entries.append({"vm": domain.name, "uuid": domain.uuid, "host": host.name, "reason": reason})
    return entries


def host_entry(host, current, verdict, policy, initial_breaks, moved, out_of_budget):
    threshold = policy.load_threshold
    reasons = []
    if current.maintenance:
        status = MAINTENANCE
        reasons.append(f"in maintenance: {current.initial_running} running domain(s),"
                       f" {len(current.left)} planned to leave, {current.running} stay")
    elif verdict.sustained:
        reasons.append(f"load {current.initial_load:.2f} > threshold {threshold}; {verdict.judgment.reason}")
        if current.load <= threshold:
            status = OVERLOADED
            reasons.append(f"plan moves {', '.join(current.left)}: predicted load {current.load:.2f}"
                           f" <= threshold {threshold}")
        else:
            status = UNRESOLVED
            left = f"after moving {', '.join(current.left)}" if current.left else "with no valid move"
            cause = (f"max_migrations {policy.max_migrations} reached" if out_of_budget
                     else "no further valid move (see skipped)")
            reasons.append(f"predicted load {current.load:.2f} still > threshold {threshold} {left}: {cause}")
    elif current.initial_load > threshold:
        status = verdict.judgment.verdict if verdict.judgment.verdict != NOT_OVER else NOT_SUSTAINED
        reasons.append(f"load {current.initial_load:.2f} > threshold {threshold} but {verdict.judgment.reason}:"
                       " sheds nothing for load")
    else:
        status = OK
        reasons.append(f"load {current.initial_load:.2f} <= threshold {threshold}")
    for domain in sorted(host.running, key=lambda d: d.name):
        if domain.name in initial_breaks:
            repair = f": plan moves {domain.name}" if domain.name in moved else ""
            reasons.append(f"rule break, {initial_breaks[domain.name]}{repair}")
    if verdict.memory_sustained:
        memory_threshold = policy.memory_threshold
        reasons.append(f"memory load {figure(current.initial_memory_load, memory_threshold)} > memory_threshold"
                       f" {memory_threshold}; {verdict.memory.reason}")
        done = "<=" if current.memory_load <= memory_threshold else "still >"
        reasons.append(f"predicted memory load {figure(current.memory_load, memory_threshold)} {done}"
                       f" memory_threshold {memory_threshold}")
    if current.arrived:
        reasons.append(f"receives {', '.join(current.arrived)}: predicted load {current.load:.2f}")
    return {
        "name": current.name,
        "cpus": plain(current.cpus),
        "load": rounded(current.initial_load),
        "predicted_load": rounded(current.load),
        "overloaded": verdict.sustained,
        "maintenance": current.maintenance,
        "status": status,
        "reasons": reasons,
        "running": current.initial_running,
        "predicted_running": current.running,
        "memory_free_mb": plain(current.initial_free_mb),
        "predicted_memory_free_mb": plain(current.free_mb),
        "memory_load": rounded(current.initial_memory_load),
        "predicted_memory_load": rounded(current.memory_load),
        "memory_overloaded": verdict.memory_sustained,
    }
