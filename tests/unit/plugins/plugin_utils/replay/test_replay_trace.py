# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replay.trace: the CSV of per-VM demand, and every malformed input it refuses."""

import io

import pytest

from ansible_collections.xen.drs.plugins.plugin_utils.replay import TraceError, parse_trace, read_trace


def parse(text, source="day.csv"):
    return parse_trace(io.StringIO(text, newline=""), source=source)


def test_planetlab_layout_reads_each_row_in_file_order():
    trace = parse("vm,t0,t1,t2\nweb,10,20.5,0\ndb,100,150,3\n")
    assert [vm.name for vm in trace.vms] == ["web", "db"]
    assert trace.vms[0].percent == (10.0, 20.5, 0.0)
    assert trace.vms[1].percent == (100.0, 150.0, 3.0)
    assert [vm.line for vm in trace.vms] == [2, 3]
    assert trace.steps == 3 and not trace.has_memory and not trace.has_host
    assert trace.vms[0].memory_mb is None and trace.vms[0].host is None


def test_optional_columns_anywhere_after_vm_and_blank_lines_skipped():
    trace = parse("vm,host,t0,memory_mb,t1\r\nweb,hv2,10,4096,20\r\n\r\ndb,hv1,5,512.5,0\r\n")
    assert trace.has_memory and trace.has_host and trace.steps == 2
    assert [(vm.name, vm.host, vm.memory_mb, vm.percent, vm.line) for vm in trace.vms] == [
        ("web", "hv2", 4096.0, (10.0, 20.0), 2), ("db", "hv1", 512.5, (5.0, 0.0), 4)]


def test_read_trace_names_the_file_and_ignores_a_byte_order_mark(tmp_path):
    path = tmp_path / "20110303.csv"
    path.write_bytes(b"\xef\xbb\xbfvm,t0\nweb,7\n")
    trace = read_trace(path)
    assert trace.name == "20110303" and trace.vms[0].percent == (7.0,)
    path.write_text("vm,t0\nweb,-1\n", encoding="utf-8")
    with pytest.raises(TraceError) as error:
        read_trace(path)
    assert str(path) in str(error.value) and error.value.source == str(path)


# One row per malformed input: (id, csv text, line, field, words of the message, offending value).
MALFORMED = [
    ("empty file", "", 1, "header", "empty file", None),
    ("blank header", "\n\n", 1, "header", "empty file", None),
    ("header without rows", "vm,t0,t1\n", 2, "vm", "no VM rows", None),
    ("first column not vm", "name,t0\nweb,1\n", 1, "column 1", "first column must be 'vm'", "name"),
    ("unknown column", "vm,t0,cpu,t1\nweb,1,2,3\n", 1, "column 3", "unknown column", "cpu"),
    ("step out of order", "vm,t0,t2\nweb,1,2\n", 1, "column 3", "expected memory_mb, host or t1", "t2"),
    ("repeated optional column", "vm,host,t0,host\nweb,a,1,a\n", 1, "column 4", "repeated column", "host"),
    ("no demand columns", "vm,host\nweb,a\n", 1, "header", "no demand columns", "vm,host"),
    ("ragged row, short", "vm,t0,t1\nweb,1\n", 2, "t1", "ragged row: 2 fields, the header has 3", None),
    ("ragged row, long", "vm,t0,t1\nweb,1,2,3\n", 2, "column 4", "ragged row: 4 fields", None),
    ("not a number", "vm,t0,t1\nweb,1,x\n", 2, "t1", "not a number", "x"),
    ("empty demand", "vm,t0,t1\nweb,1,\n", 2, "t1", "not a number", ""),
    ("not finite", "vm,t0\nweb,nan\n", 2, "t0", "not a finite number", "nan"),
    ("infinite", "vm,t0\nweb,inf\n", 2, "t0", "not a finite number", "inf"),
    ("negative demand", "vm,t0,t1\nweb,1,-5\n", 2, "t1", "negative demand", "-5"),
    ("duplicate VM", "vm,t0\nweb,1\ndb,2\nweb,3\n", 4, "vm", "duplicate VM name (first on line 2)", "web"),
    ("empty VM name", "vm,t0\n ,1\n", 2, "vm", "a VM name is required", " "),
    ("memory zero", "vm,memory_mb,t0\nweb,0,1\n", 2, "memory_mb", "memory must be > 0", "0"),
    ("memory not a number", "vm,memory_mb,t0\nweb,lots,1\n", 2, "memory_mb", "not a number", "lots"),
    ("host empty", "vm,host,t0\nweb,,1\n", 2, "host", "a host name is required", ""),
    ("line counted past blank lines", "vm,t0\nweb,1\n\ndb,x\n", 4, "t0", "not a number", "x"),
]


@pytest.mark.parametrize("text, line, field, words, value", [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_input_names_file_line_field_and_value(text, line, field, words, value):
    with pytest.raises(TraceError) as error:
        parse(text, source="/traces/day.csv")
    assert isinstance(error.value, ValueError)
    assert (error.value.source, error.value.line, error.value.field) == ("/traces/day.csv", line, field)
    message = str(error.value)
    assert message.startswith(f"/traces/day.csv, line {line}, field {field}: ")
    assert words in message
    if value is not None:
        assert error.value.value == value and repr(value) in message
