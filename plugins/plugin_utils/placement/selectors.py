# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules whose members are chosen by JMESPath expressions over the domains' facts, at each run.

The facts are one mapping per domain of the pool (running or not):
  {name, uuid, host, vcpus, memory_mb, cpu, state, tags}
with `tags` the domain's own tags (from its libvirt metadata, as hypervisor_info reads them) and
those policy.tags gives it (the inventory's xen_drs_tags), sorted and unique. An expression must
return a list of domain names, for example "[?contains(tags, 'db')].name" or
"[?memory_mb > `16384`].name". Expressions are compiled when the policy is parsed (a malformed one
is an error naming the rule and the expression); one that selects nothing is a warning.
"""

import dataclasses

from .model import PlacementError, derive, knob_values


def facts(hosts, policy):
    """The domains' facts, sorted by host and name (so the same pool gives the same list)."""
    entries = []
    for host in hosts:
        for domain in sorted(host.domains, key=lambda d: (d.name, d.uuid)):
            tags = sorted(set(domain.tags) | set(policy.tags.get(domain.name, ())))
            entries.append({"name": domain.name, "uuid": domain.uuid, "host": host.name, "vcpus": domain.vcpus,
                            "memory_mb": domain.memory_mb, "cpu": domain.cpu, "state": domain.state, "tags": tags})
    return entries


def expressions(policy):
    """(rule label, expression) for every selection in the policy."""
    found = [(f"anti_affinity[{i}].select", g.select) for i, g in enumerate(policy.anti_affinity)
             if g.select is not None]
    found += [(f"affinity_hosts[{i}].select", r.select) for i, r in enumerate(policy.affinity_hosts)
              if r.select is not None]
    found += [("exclude.select", expression) for expression in policy.exclude.selects]
    return found


def resolve(policy, hosts):
    """(policy with every selection resolved for this pool, warnings)."""
    found = expressions(policy)
    if not found:
        return policy, []
    import jmespath  # pylint: disable=import-outside-toplevel
    from jmespath.exceptions import JMESPathError  # pylint: disable=import-outside-toplevel

    data = facts(hosts, policy)
    selected, warnings = {}, []
    for label, expression in found:
        if expression in selected:
            continue
        try:
            result = jmespath.search(expression, data)
        except JMESPathError as error:
            raise PlacementError(f"policy: field '{label}' {expression!r} failed on the pool's domains:"
                                 f" {str(error).splitlines()[0]}") from error
        if result is None:
            result = []
        if not isinstance(result, list) or not all(isinstance(n, str) for n in result):
            raise PlacementError(f"policy: field '{label}' {expression!r} must select a list of domain names,"
                                 f" got {result!r}")
        selected[expression] = tuple(sorted(set(result)))
        if not result:
            warnings.append(f"{label} {expression!r} selects no domain")
    return dataclasses.replace(policy, **derive(knob_values(policy), selected)), warnings
