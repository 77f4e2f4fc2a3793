# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_mapping filter: the CSV cases of host_mapping.yaml, and its argument checks."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.drs.plugins.filter.host_mapping import FilterModule, host_mapping

CASES = yaml.safe_load(pathlib.Path(__file__).with_name("host_mapping.yaml").read_text())
HOSTS = ["hv1", "hv2"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_host_mapping_csv(case):
    if "error" in case:
        with pytest.raises(AnsibleFilterError) as error:
            host_mapping(case["text"], "/etc/m.csv", HOSTS)
        assert case["error"] in str(error.value)
        assert str(error.value).startswith("host_mapping: host_mapping /etc/m.csv")
        assert str(error.value).count("host_mapping /etc/m.csv") == 1  # said once, not again by a chained cause
    else:
        assert host_mapping(case["text"], "/etc/m.csv", HOSTS) == case["mapping"]


@pytest.mark.parametrize("text, hosts, words", [
    (None, HOSTS, "expected the file's text, got NoneType"),
    ("host,address\n", "hv1", "hosts must be a list of host names, got 'hv1'"),
    ("host,address\n", [1], "hosts must be a list of host names, got [1]"),
])
def test_bad_arguments(text, hosts, words):
    with pytest.raises(AnsibleFilterError, match="^host_mapping: ") as error:
        host_mapping(text, "/etc/m.csv", hosts)
    assert words in str(error.value)


def test_filter_is_registered():
    assert FilterModule().filters() == {"host_mapping": host_mapping}


def test_the_inventory_examples_mapping_reads():
    example = pathlib.Path(__file__).resolve().parents[4] / "inventory.example"
    hosts = list(yaml.safe_load((example / "hosts.yml").read_text())["all"]["children"]["hypervisors"]["hosts"])
    mapping = host_mapping((example / "host_mapping.csv").read_text(), "host_mapping.csv", hosts)
    assert mapping and set(mapping) <= set(hosts)
