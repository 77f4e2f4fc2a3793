# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.host_mapping: read the host_mapping CSV into host -> migration address (docs: host_mapping.yml)."""

from __future__ import annotations

import csv
import io
import ipaddress
import re

from ansible.errors import AnsibleFilterError

HEADER = ["host", "address"]
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_address(text):
    """An IPv4 or IPv6 address or an RFC 1123 host name whose last label is not all digits."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    # an all-digit last label is no host name (RFC 3696 2): 10.1.0.300 is a mistyped address
    return (0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


def parse(text, path, hosts):
    """{host: address} from the CSV ``text`` read from ``path``; ``hosts`` are the pool's hypervisors.

    Blank lines and lines starting with # are skipped; the first other line must be the header."""
    where = f"host_mapping {path}"
    rows = csv.reader(io.StringIO(text), strict=True)
    mapping, line_of, header = {}, {}, False
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            raise ValueError(f"{where} line {rows.line_num}: not CSV ({error})") from None
        number = rows.line_num
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not header:
            if cells != HEADER:
                raise ValueError(f"{where} line {number}: the first line must be the header 'host,address', "
                                 f"got {','.join(row)!r}")
            header = True
            continue
        if len(cells) != 2:
            raise ValueError(f"{where} line {number}: expected 2 fields (host,address), got {len(cells)}: "
                             f"{','.join(row)!r}")
        host, address = cells
        if host not in hosts:
            raise ValueError(f"{where} line {number}: host {host!r} is not in the group 'hypervisors' "
                             f"({', '.join(sorted(hosts))})")
        if host in mapping:
            raise ValueError(f"{where} line {number}: host {host!r} is mapped twice (first on line {line_of[host]})")
        if not is_address(address):
            raise ValueError(f"{where} line {number}: address {address!r} of {host} is neither an IP address "
                             "nor a host name")
        mapping[host] = address
        line_of[host] = number
    if not header:
        raise ValueError(f"{where}: the file is empty; it needs at least the header line 'host,address'")
    return mapping


def host_mapping(text, path, hosts):
    if not isinstance(text, str):
        raise AnsibleFilterError(f"host_mapping: expected the file's text, got {type(text).__name__}")
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
        raise AnsibleFilterError(f"host_mapping: hosts must be a list of host names, got {hosts!r}")
    try:
        return parse(text, path, set(hosts))
    except ValueError as error:
        raise AnsibleFilterError(f"host_mapping: {error}") from None  # the message says it all


class FilterModule:
    """xen.drs host mapping filter."""

    def filters(self):
        return {"host_mapping": host_mapping}
