"""playbooks/whatif.yml for real (no lab: it runs on the control node only), and the HTML pages in a browser.

* The playbook replays a short slice of a real PlanetLab day with two variants; whatif.json carries the
  figures replay.replay gives for the same preset and slice, and whatif.html shows them.
* Bad input stops the playbook with the file, the line and the field.
* Headless chromium opens whatif.html and a sample run report (rendered by
  playbooks/templates/report*.j2 from a real plan, no lab): no console message or script error, no
  network request, every plot present, sized and drawn; screenshots go to tests/output/ for a person.
  Skipped only when chromium is not installed (scripts/setup installs it).
"""

from __future__ import annotations

import dataclasses
import html.parser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1].parent
sys.path.insert(0, str(REPO / ".venv" / "collections"))

# pylint: disable=wrong-import-position
from ansible_collections.xen.drs.plugins.plugin_utils import placement, replay  # noqa: E402
from ansible_collections.xen.drs.tests.unit.plugins.plugin_utils.replay.planetlab import write_slice  # noqa: E402

OUTPUT = REPO / "tests" / "output"
VARIANTS = [{"name": "balance 0", "policy": {"balance": 0}}, {"name": "balance 5", "policy": {"balance": 5}}]
TIMINGS = ("plan_seconds_mean", "plan_seconds_max", "wall_seconds")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def ansible_playbook(*args, timeout=600):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".venv" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="default")
    binary = Path(sys.executable).with_name("ansible-playbook")
    started = time.monotonic()
    done = subprocess.run([str(binary if binary.exists() else "ansible-playbook"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def whatif_run(tmp_path_factory):
    """The playbook on the first 300 VMs and 36 steps of a PlanetLab day, reference preset, two variants."""
    work = tmp_path_factory.mktemp("whatif")
    trace = write_slice(work / "20110303-slice.csv", vms=300, steps=36)
    rc, out, seconds = ansible_playbook(
        "playbooks/whatif.yml", "-e", f"xen_drs_whatif_trace={trace}", "-e", f"xen_drs_whatif_report_dir={work / 'report'}",
        "-e", "xen_drs_whatif_preset=reference", "-e", json.dumps({"xen_drs_whatif_variants": VARIANTS}))
    print(f"\nwhatif.yml on {trace.name}: rc {rc} in {seconds:.1f} s")
    assert rc == 0, out
    assert stat.S_IMODE((work / "report").stat().st_mode) == 0o750  # created by the playbook: not world-readable
    assert {stat.S_IMODE(f.stat().st_mode) for f in (work / "report").iterdir()} == {0o640}
    return trace, work / "report", out


def test_whatif_json_carries_the_figures_of_the_engine_for_each_variant(whatif_run):
    trace_path, report, out = whatif_run
    doc = json.loads((report / "whatif.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in doc["variants"]] == ["reference", "balance 0", "balance 5"]
    trace = replay.read_trace(trace_path)
    ref = replay.preset("reference")
    for variant, overrides in zip(doc["variants"], [{}] + [v["policy"] for v in VARIANTS]):
        direct = replay.replay(ref.scenario(trace), placement.plan, ref.policy(placement.DEFAULTS, overrides))
        assert {k: v for k, v in variant["metrics"].items() if k not in TIMINGS} == {
            k: v for k, v in dataclasses.asdict(direct.metrics).items() if k not in TIMINGS}
        assert variant["migrations"] == [dataclasses.asdict(m) for m in direct.migrations]
    by_name = {v["name"]: v["metrics"]["migrations"] for v in doc["variants"]}
    assert by_name["balance 5"] > by_name["balance 0"]  # the variants' policies differ, so do their figures
    # the progress lines (one per variant at least) and the printed table
    assert re.search(r"whatif: 108/108 steps \(done variant 'balance 5'\), [\d.]+ s elapsed", out)
    for variant in doc["variants"]:
        assert re.search(rf"{re.escape(variant['name'])} +{variant['metrics']['migrations']} ", out)


class Page(html.parser.HTMLParser):
    """The elements of a page that the tests look at: tags with attributes, and the text of table cells."""

    def __init__(self):
        super().__init__()
        self.tags, self.cells, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def test_whatif_html_shows_every_variant_and_fetches_nothing(whatif_run):
    _trace, report, _out = whatif_run
    doc = json.loads((report / "whatif.json").read_text(encoding="utf-8"))
    text = (report / "whatif.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    hosts = len(doc["scenario"]["hosts"])
    for index, variant in enumerate(doc["variants"]):
        metrics = variant["metrics"]
        row = page.find("tr", **{"data-variant": variant["name"]})
        assert row, variant["name"]
        assert f"{100 * metrics['over_share']:.3f}" in page.cells and str(metrics["migrations"]) in page.cells
        lane = page.find("g", **{"class": "lane", "data-variant": variant["name"]})
        assert lane and lane[0]["data-migrations"] == str(metrics["migrations"])
        assert page.find("g", **{"class": "point", "data-variant": variant["name"]})
        heatmap = page.find("canvas", **{"class": "plot heatmap", "data-variant": str(index)})
        assert heatmap and int(heatmap[0]["height"]) == int(heatmap[0]["data-row"]) * hosts + 24
    ticks = len(re.findall(r'<line class="tick', text))
    assert ticks == sum(v["metrics"]["migrations"] for v in doc["variants"])
    assert_self_contained(text)


def assert_self_contained(text):
    """No external script, style, image, font or link: nothing a browser would fetch."""
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?!#|data:)[^"'\s>]""", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?!data:)", text, re.I)
    assert "<link" not in text.lower()


@pytest.mark.parametrize("content, words", [
    ("vm,t0,t1\nweb,1,2\ndb,3\n", "line 3, field t1: ragged row: 2 fields, the header has 3"),
    ("vm,t0,t1\nweb,1,2\ndb,3,-1\n", "line 3, field t1: negative demand, got '-1'"),
])
def test_a_malformed_trace_stops_the_playbook_naming_file_line_and_field(tmp_path, content, words):
    trace = tmp_path / "bad.csv"
    trace.write_text(content, encoding="utf-8")
    rc, out, _seconds = ansible_playbook("playbooks/whatif.yml", "-e", f"xen_drs_whatif_trace={trace}",
                                         "-e", f"xen_drs_whatif_report_dir={tmp_path / 'report'}")
    assert rc != 0 and f"whatif: {trace}, {words}" in out
    assert not (tmp_path / "report").exists()


def test_the_inventorys_policy_is_the_base_and_a_missing_trace_is_named(tmp_path):
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n", encoding="utf-8")
    (inventory / "group_vars" / "all.yml").write_text(
        "xen_drs_policy:\n  load_threshold: 0.7\n  max_load_candidate: 0.6\n  balance: 0\n", encoding="utf-8")
    trace = tmp_path / "pool.csv"
    trace.write_text("vm,host,memory_mb,t0,t1,t2,t3\nhot1,hvA,4096,400,400,400,400\nhot2,hvA,4096,350,350,350,350\n"
                     "calm,hvB,2048,50,50,50,50\n", encoding="utf-8")
    (tmp_path / "report").mkdir()
    (tmp_path / "report").chmod(0o1777)  # a directory like /tmp: the playbook must not chmod it
    rc, out, _seconds = ansible_playbook("-i", str(inventory), "playbooks/whatif.yml",
                                         "-e", f"xen_drs_whatif_trace={trace}",
                                         "-e", f"xen_drs_whatif_report_dir={tmp_path / 'report'}")
    assert rc == 0, out
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "report" / "whatif.json").stat().st_mode) == 0o640
    doc = json.loads((tmp_path / "report" / "whatif.json").read_text(encoding="utf-8"))
    base = doc["variants"][0]
    assert doc["policy_from"] == "inventory" and base["name"] == "inventory"
    assert (base["policy"]["load_threshold"], base["policy"]["max_load_candidate"], base["policy"]["balance"]) == (
        0.7, 0.6, 0)
    assert [h["name"] for h in doc["scenario"]["hosts"]] == ["hvA", "hvB"]
    assert base["migrations"] and base["migrations"][0]["source"] == "hvA"

    rc, out, _seconds = ansible_playbook("playbooks/whatif.yml")
    assert rc != 0 and "xen_drs_whatif_trace: give the CSV trace to replay" in out


# ---------------------------------------------------------------------------------------------- browser

PROBE_HEAD = """<script>window.__xenDrsErrors = [];
window.addEventListener("error", function (e) {
  __xenDrsErrors.push(String(e.message || ("failed to load " + (e.target && (e.target.src || e.target.href)))));
}, true);
window.addEventListener("unhandledrejection", function (e) { __xenDrsErrors.push("unhandled rejection: " + e.reason); });
</script>"""
PROBE_TAIL = """<script>window.addEventListener("load", function () {
  var plots = Array.prototype.map.call(document.querySelectorAll(".plot, .bar"), function (el) {
    var box = el.getBoundingClientRect(), inked = null;
    if (el.tagName === "CANVAS") {
      var pixels = el.getContext("2d").getImageData(0, 0, el.width, el.height).data;
      inked = 0;
      for (var i = 0; i < pixels.length; i += 4) { if (pixels[i] < 235 || pixels[i + 1] < 235 || pixels[i + 2] < 235) inked++; }
    }
    return {tag: el.tagName.toLowerCase(), cls: el.getAttribute("class"), id: el.id, width: box.width, height: box.height,
            drawn: el.dataset ? el.dataset.drawn || null : null, inked: inked, children: el.childElementCount};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (el) {
    var box = el.getBoundingClientRect();
    return {cls: el.getAttribute("class"), width: box.width, height: box.height,
            rows: Array.prototype.map.call(el.rows, function (row) { return row.innerText; })};
  });
  var probe = document.createElement("pre");
  probe.id = "xen-drs-probe";
  probe.textContent = JSON.stringify({errors: window.__xenDrsErrors, plots: plots, tables: tables,
    requests: performance.getEntriesByType("resource").map(function (r) { return r.name; }),
    height: Math.ceil(document.body.getBoundingClientRect().bottom + window.scrollY)});
  document.body.appendChild(probe);
});</script>"""


def chromium_binary():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args, timeout=120):
    with tempfile.TemporaryDirectory(prefix="xen-drs-chromium-") as profile:
        done = subprocess.run([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
    return done


def open_in_browser(page, screenshot):
    """Load ``page`` in headless chromium with a probe; return its findings. Then screenshot the page itself."""
    text = page.read_text(encoding="utf-8")
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>", 1),
                      encoding="utf-8")
    done = chromium("--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--window-size=1280,2000",
                    "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="xen-drs-probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no probe in the dumped DOM (rc {done.returncode}):\n{done.stderr[-3000:]}"
    findings = json.loads(html.unescape(match.group(1)))
    # every console message of the page (chromium logs them as INFO:CONSOLE); the page itself logs nothing
    findings["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    height = min(max(int(findings["height"]) + 40, 600), 8000)
    shot = chromium(f"--window-size=1280,{height}", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, shot.stderr[-3000:]
    print(f"\nscreenshot: {screenshot} (1280 x {height})")
    return findings


needs_chromium = pytest.mark.skipif(not chromium_binary(), reason="chromium is not installed (bash scripts/setup "
                                                                  "installs Debian's chromium for this test)")


def assert_clean(findings):
    assert findings["errors"] == [], findings["errors"]
    assert findings["console"] == [], findings["console"]
    assert findings["requests"] == [], f"the page fetched {findings['requests']}"


@needs_chromium
def test_whatif_html_in_a_browser(whatif_run):
    _trace, report, _out = whatif_run
    doc = json.loads((report / "whatif.json").read_text(encoding="utf-8"))
    findings = open_in_browser(report / "whatif.html", OUTPUT / "whatif.png")
    assert_clean(findings)
    plots = findings["plots"]
    heatmaps = [p for p in plots if p["cls"] == "plot heatmap"]
    legends = [p for p in plots if p["cls"] == "plot legend"]
    assert len(heatmaps) == len(legends) == len(doc["variants"])
    for plot in heatmaps + legends:
        assert plot["drawn"] == "true" and plot["width"] >= 300 and plot["height"] >= 30, plot
        assert plot["inked"] > 0.5 * plot["width"] * (plot["height"] - 30), plot  # painted, not blank
    svgs = {p["id"]: p for p in plots if p["tag"] == "svg"}
    assert set(svgs) == {"tradeoff", "timeline"}
    assert all(p["width"] >= 400 and p["height"] >= 60 and p["children"] > 10 for p in svgs.values()), svgs


@needs_chromium
def test_run_report_html_in_a_browser(tmp_path):
    rc, out, _seconds = ansible_playbook("tests/integration/playbooks/render_report.yml", "-e", f"report_dir={tmp_path}")
    assert rc == 0, out
    assert_self_contained((tmp_path / "report.html").read_text(encoding="utf-8"))
    findings = open_in_browser(tmp_path / "report.html", OUTPUT / "report.png")
    assert_clean(findings)
    bars = [p for p in findings["plots"] if "bar" in (p["cls"] or "").split()]
    assert len(bars) == 2 * 3  # before and after, for each of the sample's three hosts
    assert all(p["width"] > 100 and p["height"] > 10 for p in bars), bars
