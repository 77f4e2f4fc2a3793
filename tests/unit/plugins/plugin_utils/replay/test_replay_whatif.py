# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replay.whatif: variants and policies checked before any replay, and a document whose figures are the engine's."""

import dataclasses
import io
import json

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils import placement
from ansible_collections.xen.drs.plugins.plugin_utils.replay import (
    PresetError, WhatifError, parse_trace, preset, replay, run_whatif)
from ansible_collections.xen.drs.plugins.plugin_utils.replay.whatif import BASE_NAME, FORMAT
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.replay.planetlab import slice_text

TIMINGS = ("plan_seconds_mean", "plan_seconds_max", "wall_seconds")  # wall clock: differ between two runs
VARIANTS = [{"name": "balance 0", "policy": {"balance": 0}}, {"name": "balance 5", "policy": {"balance": 5}}]


def parse(text, source="hand.csv"):
    return parse_trace(io.StringIO(text, newline=""), source=source)


def hand_trace():
    """Two hosts named by the trace, one of them hot for the whole trace."""
    return parse("vm,host,memory_mb,t0,t1,t2,t3,t4,t5\n"
                 "hot1,hvA,1024,400,400,400,400,400,400\n"
                 "hot2,hvA,2048,350,350,350,350,350,350\n"
                 "calm,hvB,512,50,50,50,50,50,50\n")


def run(trace=None, **kwargs):
    return run_whatif(trace or hand_trace(), placement.plan, placement.DEFAULTS, **kwargs)


def figures(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMINGS}


@pytest.fixture(scope="module")
def planetlab():
    """The first 300 VMs and 36 steps (3 h) of a real PlanetLab day, and its what-if on the reference preset."""
    trace = parse(slice_text(vms=300, steps=36), source="20110303-slice.csv")
    return trace, run(trace, preset="reference", variants=VARIANTS)


def test_figures_equal_the_engine_called_directly_for_the_same_preset_and_trace(planetlab):
    trace, doc = planetlab
    ref = preset("reference")
    assert [v["name"] for v in doc["variants"]] == ["reference", "balance 0", "balance 5"]
    for variant, overrides in zip(doc["variants"], [{}] + [v["policy"] for v in VARIANTS]):
        direct = replay(ref.scenario(trace), placement.plan, ref.policy(placement.DEFAULTS, overrides))
        assert figures(variant["metrics"]) == figures(dataclasses.asdict(direct.metrics))
        assert variant["migrations"] == [dataclasses.asdict(m) for m in direct.migrations]
        assert variant["host_loads"] == {host: list(loads) for host, loads in direct.host_loads.items()}
        assert variant["policy"] == {k: v for k, v in direct.policy.items() if k != "now"}
        assert variant["overrides"] == overrides


def test_variants_that_differ_in_policy_give_their_own_figures(planetlab):
    _trace, doc = planetlab
    by_name = {v["name"]: v for v in doc["variants"]}
    calm, eager = by_name["balance 0"], by_name["balance 5"]
    assert (calm["policy"]["balance"], eager["policy"]["balance"]) == (0, 5)
    assert {k for k in calm["policy"] if calm["policy"][k] != eager["policy"][k]} == {"balance"}
    # level 5 balances a spread that level 0 leaves alone: more moves, and every one of them a balancing move
    assert eager["metrics"]["migrations"] > calm["metrics"]["migrations"]
    extra = [m for m in eager["migrations"] if m not in calm["migrations"]]
    assert extra and all("balanc" in m["reason"] for m in extra)


def test_document_is_plain_json_with_trace_scenario_and_every_migration(planetlab):
    trace, doc = planetlab
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert doc["format"] == FORMAT and doc["preset"] == "reference" and doc["policy_from"] == "preset reference"
    assert doc["trace"] == {"path": "20110303-slice.csv", "name": "20110303-slice", "vms": 300, "steps": 36,
                            "memory_mb_column": False, "host_column": False}
    assert doc["scenario"]["steps"] == 36 and doc["scenario"]["vms"] == 300
    assert len(doc["scenario"]["hosts"]) == doc["variants"][0]["metrics"]["hosts"]
    for variant in doc["variants"]:
        assert len(variant["migrations"]) == variant["metrics"]["migrations"]
        assert all(set(m) == {"step", "time", "vm", "source", "destination", "reason", "memory_mb", "ping_pong"}
                   and m["reason"] for m in variant["migrations"])
        assert all(len(loads) == trace.steps for loads in variant["host_loads"].values())


def test_without_a_preset_the_trace_places_the_vms_and_the_given_policy_is_the_base():
    doc = run(policy={"load_threshold": 0.6, "max_load_candidate": 0.5, "max_over": 5, "balance": 0,
                      "predictive": False},
              variants=[{"name": "strict", "policy": {"max_over": 20}}])
    assert doc["preset"] is None and doc["policy_from"] == "inventory"
    assert [h["name"] for h in doc["scenario"]["hosts"]] == ["hvA", "hvB"]
    base, strict = doc["variants"]
    assert base["name"] == BASE_NAME and base["policy"]["load_threshold"] == 0.6 and base["policy"]["max_over"] == 5
    assert strict["policy"]["max_over"] == 20 and strict["policy"]["load_threshold"] == 0.6
    # hvA carries 7.5 cores of 8: over 0.6 from the start; without prediction (which would act on the
    # domains' level at the second step in both) the base sheds after 5 minutes, the strict variant
    # never within the trace's 30 minutes (max_over 20 needs 5 samples over)
    assert base["host_loads"]["hvA"][0] == pytest.approx(7.5 / 8)
    assert base["migrations"] and base["migrations"][0]["source"] == "hvA"
    assert base["migrations"][0]["step"] < (strict["migrations"] or [{"step": 99}])[0]["step"]


def test_progress_counts_steps_over_all_variants():
    calls = []
    run(variants=VARIANTS, progress=lambda done, total, name, elapsed: calls.append((done, total, name)))
    assert [c[0] for c in calls] == list(range(1, 19))
    assert {c[1] for c in calls} == {18}
    assert [c[2] for c in calls[5::6]] == [BASE_NAME, "balance 0", "balance 5"]


# (id, variants, words of the message): each bad variant list is refused before any replay.
BAD_VARIANTS = [
    ("not a list", "balance 0", "variants: must be a list"),
    ("a mapping", {"name": "x"}, "variants: must be a list"),
    ("item not a mapping", ["x"], "variants[0]: must be a mapping"),
    ("unknown field", [{"name": "x", "overrides": {}}], "variants[0]: unknown field 'overrides'"),
    ("no name", [{"policy": {}}], "variants[0]: field 'name' must be a non-empty string, got None"),
    ("blank name", [{"name": " "}], "variants[0]: field 'name' must be a non-empty string, got ' '"),
    ("repeated name", [{"name": "a"}, {"name": "a"}], "variants[1]: field 'name' repeats an earlier variant's name, got 'a'"),
    ("policy not a mapping", [{"name": "a", "policy": [1]}], "variants[0] (a): field 'policy' must be a mapping"),
    ("unknown policy key", [{"name": "a"}, {"name": "b", "policy": {"balanse": 2}}],
     "variants[1] (b): unknown policy key 'balanse'"),
    ("now", [{"name": "a", "policy": {"now": 5}}], "variants[0] (a): policy key 'now' is set by the replay"),
    ("bad value", [{"name": "hot", "policy": {"load_threshold": 2}}], "variant 'hot': policy: field 'load_threshold'"),
    ("base name", [{"name": BASE_NAME}], f"the name '{BASE_NAME}' is the base run's"),
]


@pytest.mark.parametrize("variants, words", [c[1:] for c in BAD_VARIANTS], ids=[c[0] for c in BAD_VARIANTS])
def test_bad_variants_are_refused_naming_the_variant_and_field(variants, words):
    replays = []

    def planner(cluster, policy):
        if cluster:
            replays.append(policy["now"])
        return placement.plan(cluster, policy)
    with pytest.raises(WhatifError) as error:
        run_whatif(hand_trace(), planner, placement.DEFAULTS, variants=variants)
    assert words in str(error.value)
    assert not replays  # nothing was replayed


@pytest.mark.parametrize("policy, words", [
    ({"load_treshold": 0.7}, "policy: unknown policy key 'load_treshold'"),
    ({"now": 1}, "policy: policy key 'now' is set by the replay at each step, got 1"),
    ({"max_over": -1}, "variant 'inventory': policy: field 'max_over'"),
])
def test_a_bad_base_policy_is_refused(policy, words):
    with pytest.raises(WhatifError) as error:
        run(policy=policy)
    assert words in str(error.value)


def test_a_preset_fixes_the_policy_and_an_unknown_preset_is_named():
    doc = run(preset="placed", policy={"load_threshold": 0.5})
    assert doc["variants"][0]["name"] == "placed"
    assert doc["variants"][0]["policy"]["load_threshold"] == 0.75  # the preset's, not the given one
    with pytest.raises(PresetError, match="unknown preset 'nope'"):
        run(preset="nope")
