"""Headless Chromium as the analyst's browser: it opens a report page from its file and says
what a reader would see there (shared by the report tests)."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lab.report_screenshot import CHROMIUM_FLAGS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: the docs' screenshots' flags (lab.report_screenshot) but its hidden scrollbars, and a
#: page laid out and drawn completely before it is read
FLAGS = [
    *(f for f in CHROMIUM_FLAGS if f != "--hide-scrollbars"),
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=10000",
]


def require_chromium() -> str:
    """Chromium's path; an outside client this suite relies on: missing, the test fails (never
    skips)."""
    assert Path(CHROMIUM).exists(), (
        "chromium is not installed: apt-get install -y chromium (./run test does it as root)"
    )
    return CHROMIUM


def open_page(
    page: Path, tmp: Path, script: str = "", size: tuple[int, int] = (1400, 3000)
) -> tuple[str, list[str]]:
    """The page's DOM once loaded in a ``size`` window, with ``script`` added before
    ``</body>`` (a copy of the page is opened; the file stays as written), and every line
    the page wrote to the console (errors included)."""
    shown = tmp / f"shown-{page.name}"
    shown.write_text(page.read_text().replace("</body>", script + "</body>"))
    profile = tmp / f"profile-{page.stem}"
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", shown.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out.stdout, console


#: reads a report page as laid out: its images, the verdict band, the per-arm scorecard's
#: rows and, in each curve's SVG, every arm's point and label, the fitted line and band, the
#: recommended price with its interval and the edge flag, each with its box on the page
LADDER_CHECK = """<script>
window.addEventListener('load', function () {
  var box = function (e) {
    if (!e) return null;
    var r = e.getBoundingClientRect();
    return [r.left, r.top, r.width, r.height];
  };
  var imgs = Array.prototype.slice.call(document.images);
  var out = {
    images: imgs.length,
    broken: imgs.filter(function (i) {
      var r = i.getBoundingClientRect();
      return !(i.complete && i.naturalWidth > 0 && r.width > 0 && r.height > 0);
    }).map(function (i) { return i.dataset.figure; }),
    verdict: box(document.getElementById('verdict')),
    word: (document.querySelector('#verdict .word') || {}).textContent,
    rows: Array.prototype.slice.call(document.querySelectorAll('table.arms tr[data-arm]'))
      .map(function (r) { return [r.dataset.metric, r.dataset.arm]; }),
    recommendation: (document.querySelector('p.recommendation') || {}).textContent,
    curves: {}
  };
  ['demand', 'profit'].forEach(function (kind) {
    var svg = document.getElementById(kind + '-curve');
    if (!svg) return;
    var c = {box: box(svg), points: []};
    svg.querySelectorAll('g.point').forEach(function (g) {
      var t = g.querySelector('text');
      c.points.push({arm: g.dataset.arm, ratio: parseFloat(g.dataset.priceRatio),
                     label: t.textContent, labelBox: box(t), dot: box(g.querySelector('circle')),
                     bar: box(g.querySelector('line.interval'))});
    });
    c.fit = box(svg.querySelector('path.fit'));
    c.band = box(svg.querySelector('path.band'));
    var rec = svg.querySelector('g.recommended');
    if (rec) {
      var line = rec.querySelector('line');
      c.recommended = {ratio: parseFloat(rec.dataset.priceRatio), text: rec.querySelector('text').textContent,
                       textBox: box(rec.querySelector('text')), line: box(line),
                       interval: box(svg.querySelector('rect.recommended-interval'))};
    }
    var edge = svg.querySelector('text.edge-flag');
    c.edge = edge ? {text: edge.textContent, box: box(edge)} : null;
    var truth = svg.querySelector('g.true-optimum');
    c.truth = truth ? {ratio: parseFloat(truth.dataset.priceRatio), line: box(truth.querySelector('line'))} : null;
    out.curves[kind] = c;
  });
  var m = document.createElement('div');
  m.id = 'ladder-check';
  m.textContent = JSON.stringify(out);
  document.body.appendChild(m);
});
</script>"""


def ladder_view(dom: str) -> dict[str, Any]:
    """What :data:`LADDER_CHECK` wrote into the page."""
    at = dom.index('<div id="ladder-check">') + len('<div id="ladder-check">')
    text = dom[at : dom.index("</div>", at)]
    return json.loads(html.unescape(text))


def _inside(inner: list[float], outer: list[float]) -> bool:
    return (
        inner[0] >= outer[0] - 0.5
        and inner[1] >= outer[1] - 0.5
        and inner[0] + inner[2] <= outer[0] + outer[2] + 0.5
        and inner[1] + inner[3] <= outer[1] + outer[3] + 0.5
    )


def _apart(a: list[float], b: list[float]) -> bool:
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def assert_ladder_page(view: dict[str, Any], arms: list[str], control: str) -> None:
    """What an analyst must see on a price ladder's report: every image drawn, the verdict on
    top, each arm's rows in the scorecard, and both curves with every arm's point labelled
    with its name (inside the figure, above its point, no two labels overlapping), the fitted
    line, the demand curve's band, and the recommended price drawn inside its interval, its
    label legible inside the figure."""
    assert view["images"] >= 3 and view["broken"] == [], view["broken"]
    top, height = view["verdict"][1], view["verdict"][3]
    assert top < 120 and height > 80, view["verdict"]
    for metric in ("units", "revenue", "profit"):
        assert [a for m, a in view["rows"] if m == metric] == arms, view["rows"]
    for kind in ("demand", "profit"):
        c = view["curves"][kind]
        assert c["box"][2] > 300 and c["box"][3] > 200, (kind, c["box"])
        assert sorted(p["arm"] for p in c["points"]) == sorted([*arms, control]), kind
        labels = []
        for p in c["points"]:
            assert p["label"] == p["arm"], p
            assert _inside(p["labelBox"], c["box"]) and _inside(p["dot"], c["box"]), (kind, p)
            assert p["labelBox"][1] + p["labelBox"][3] <= p["dot"][1] + 1, (kind, p)  # above
            if p["bar"] is not None:  # the label clears the interval's top as well
                assert p["labelBox"][1] + p["labelBox"][3] <= p["bar"][1] + 1, (kind, p)
            labels.append(p["labelBox"])
        assert all(_apart(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]), kind
        # further right at a higher price
        xs = [p["dot"][0] for p in sorted(c["points"], key=lambda p: p["ratio"])]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), kind
        assert c["fit"] is not None and c["fit"][2] > 200, kind
    assert view["curves"]["demand"]["band"] is not None
    rec = view["curves"]["profit"]["recommended"]
    x = rec["line"][0] + rec["line"][2] / 2
    lo, width = rec["interval"][0], rec["interval"][2]
    assert lo - 1 <= x <= lo + width + 1, rec
    assert rec["text"].startswith(f"curve peaks at x{rec['ratio']:.3f}"), rec
    assert _inside(rec["textBox"], view["curves"]["profit"]["box"]), rec
    assert all(_apart(rec["textBox"], p["labelBox"]) for p in view["curves"]["profit"]["points"])
    assert f"x{rec['ratio']:.3f}" in view["recommendation"]
