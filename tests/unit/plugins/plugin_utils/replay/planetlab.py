# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A short slice of a real PlanetLab day (../shared/traces beside the checkout), for tests that must stay fast."""

import csv
import io
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[5]
# beside the checkout, or where benchmarks/traces.py reads them (a mirror such as ansible-test's has no sibling)
TRACE_DIRS = (REPO.parent / "shared" / "traces" / "planetlab", pathlib.Path("/work/shared/traces/planetlab"))
DAY = "20110303"


def day_path(day=DAY):
    """The day's CSV; the test is skipped (with the paths) when the shared traces are not there."""
    for directory in TRACE_DIRS:
        if (directory / f"{day}.csv").is_file():
            return directory / f"{day}.csv"
    return pytest.skip(f"no PlanetLab trace {day}.csv in {' or '.join(map(str, TRACE_DIRS))}")


def slice_text(vms, steps, day=DAY):
    """CSV text of the day's first ``vms`` rows and first ``steps`` steps, in the same layout."""
    with open(day_path(day), newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows[:vms + 1]:
        writer.writerow(row[:steps + 1])
    return out.getvalue()


def write_slice(path, vms, steps, day=DAY):
    """Write the slice to ``path`` and return it."""
    path.write_text(slice_text(vms, steps, day), encoding="utf-8")
    return path
