# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.drs.whatif action: its argument spec is its documentation, bad input fails naming what is wrong, and
the document it returns is the library's for the same trace."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import yaml
from ansible.errors import AnsibleActionFail

from ansible_collections.xen.drs.plugins.action import whatif as action
from ansible_collections.xen.drs.plugins.modules import whatif as docs
from ansible_collections.xen.drs.plugins.plugin_utils import placement, replay
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.replay.planetlab import write_slice

TIMINGS = ("plan_seconds_mean", "plan_seconds_max", "wall_seconds")


def run_action(check_mode=False, **args):
    task = SimpleNamespace(args=args, async_val=0, check_mode=check_mode, action="xen.drs.whatif")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    plugin = action.ActionModule(task, connection, play_context=None, loader=None, templar=None)
    return plugin.run(task_vars={})


def spec_of(options):
    """An argument spec in the shape of ARGUMENT_SPEC from documented options."""
    spec = {}
    for name, doc in options.items():
        entry = {"type": doc.get("type", "str")}
        for key in ("required", "default", "choices", "elements"):
            if key in doc:
                entry[key] = doc[key]
        if "suboptions" in doc:
            entry["options"] = spec_of(doc["suboptions"])
        spec[name] = entry
    return spec


def test_argument_spec_is_the_documented_options():
    documented = yaml.safe_load(docs.DOCUMENTATION)["options"]
    assert spec_of(documented) == action.ARGUMENT_SPEC
    assert documented["preset"]["choices"] == sorted(replay.PRESETS)
    for text in (docs.EXAMPLES, docs.RETURN):
        assert yaml.safe_load(text)


@pytest.fixture
def hand_csv(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text("vm,host,t0,t1,t2,t3\nhot1,hvA,400,400,400,400\nhot2,hvA,350,350,350,350\n"
                    "calm,hvB,50,50,50,50\n", encoding="utf-8")
    return path


def test_returns_the_library_document_and_changes_nothing(tmp_path, capsys):
    path = write_slice(tmp_path / "20110303-slice.csv", vms=200, steps=24)
    variants = [{"name": "balance 0", "policy": {"balance": 0}}, {"name": "balance 5", "policy": {"balance": 5}}]
    result = run_action(trace=str(path), preset="reference", variants=variants, progress_seconds=0)
    assert not result.get("failed") and result["changed"] is False
    doc = result["whatif"]
    trace = replay.read_trace(path)
    ref = replay.preset("reference")
    assert doc["trace"]["path"] == str(path) and doc["trace"]["vms"] == 200 and doc["trace"]["steps"] == 24
    for variant, overrides in zip(doc["variants"], [{}, {"balance": 0}, {"balance": 5}]):
        direct = replay.replay(ref.scenario(trace), placement.plan, ref.policy(placement.DEFAULTS, overrides))
        got = {k: v for k, v in variant["metrics"].items() if k not in TIMINGS}
        assert got == {k: v for k, v in dataclasses.asdict(direct.metrics).items() if k not in TIMINGS}
        assert len(variant["migrations"]) == len(direct.migrations)
    # a progress line after each variant (progress_seconds 0: no lines in between)
    lines = [line for line in capsys.readouterr().out.splitlines() if "steps (" in line]
    assert [line.split(" steps")[0] for line in lines] == ["whatif: 24/72", "whatif: 48/72", "whatif: 72/72"]
    assert "done variant 'balance 5'" in lines[-1]


def test_check_mode_replays_as_usual(hand_csv):
    result = run_action(check_mode=True, trace=str(hand_csv), policy={"load_threshold": 0.6, "max_load_candidate": 0.5, "max_over": 5})
    assert result["changed"] is False and result["whatif"]["variants"][0]["policy"]["load_threshold"] == 0.6


@pytest.mark.parametrize("text, words", [
    ("", "line 1, field header: empty file: expected a header 'vm,t0,t1,...'"),
    ("vm,t0,t1\nweb,1\n", "line 2, field t1: ragged row: 2 fields, the header has 3"),
    ("vm,t0,t1\nweb,1,lots\n", "line 2, field t1: not a number, got 'lots'"),
    ("vm,t0,t1\nweb,1,2\ndb,3,-4\n", "line 3, field t1: negative demand, got '-4'"),
    ("vm,t0,cpu\nweb,1,2\n", "line 1, field column 3: unknown column (expected memory_mb, host or t1), got 'cpu'"),
    ("vm,memory_mb,t0\nweb,0,1\n", "line 2, field memory_mb: memory must be > 0 MiB, got '0'"),
])
def test_a_malformed_trace_fails_naming_file_line_field_and_value(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    result = run_action(trace=str(path))
    assert result["failed"] and "whatif" not in result
    assert result["msg"] == f"whatif: {path}, {words}"


def test_a_missing_trace_fails_naming_the_path(tmp_path):
    result = run_action(trace=str(tmp_path / "nowhere.csv"))
    assert result["failed"] and result["msg"].startswith(f"whatif: trace {tmp_path / 'nowhere.csv'}: cannot read it")


@pytest.mark.parametrize("args, words", [
    ({"policy": {"balance": 9}}, "whatif: variant 'inventory': policy: field 'balance'"),
    ({"variants": [{"name": "x", "policy": {"load_treshold": 1}}]}, "whatif: variants[0] (x): unknown policy key 'load_treshold'"),
    ({"variants": [{"name": "inventory"}]}, "whatif: variants: the name 'inventory' is the base run's"),
])
def test_a_bad_policy_or_variant_fails_naming_it(hand_csv, args, words):
    result = run_action(trace=str(hand_csv), **args)
    assert result["failed"] and words in result["msg"]


@pytest.mark.parametrize("args, words", [
    ({"preset": "biggest"}, "value of preset must be one of: placed, reference, got: biggest"),
    ({"variants": "balance 0"}, "Elements value for option 'variants' is of type str"),
    ({"variants": [{"policy": {}}]}, "missing required arguments: name found in variants"),
    ({"progress_seconds": "often"}, "argument 'progress_seconds' is of type str"),
    ({"policy": "balance"}, "argument 'policy' is of type str"),
    ({"tracee": "x.csv"}, "Invalid options for xen.drs.whatif: tracee"),
])
def test_bad_arguments_fail_before_anything_is_read(hand_csv, args, words):
    with pytest.raises(AnsibleActionFail) as error:
        run_action(**{"trace": str(hand_csv), **args})
    assert words in str(error.value)


def test_progress_lines_are_rate_limited_but_every_variant_end_is_printed():
    said, now = [], [0.0]
    progress = action.Progress(said.append, every=10, steps_per_variant=4, clock=lambda: now[0])
    for done in range(1, 9):
        now[0] += 3  # a step every 3 s: a line at most every 10 s, and after steps 4 and 8
        progress(done, 8, "a" if done <= 4 else "b", now[0])
    assert said == ["whatif: 4/8 steps (done variant 'a'), 12.0 s elapsed",
                    "whatif: 8/8 steps (done variant 'b'), 24.0 s elapsed"]
    said.clear()
    progress = action.Progress(said.append, every=5, steps_per_variant=100, clock=lambda: now[0])
    for done in range(1, 4):
        now[0] += 3
        progress(done, 100, "a", 3.0 * done)
    assert said == ["whatif: 2/100 steps (at variant 'a'), 6.0 s elapsed"]
