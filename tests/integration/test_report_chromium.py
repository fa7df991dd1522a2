"""The analyst report renders in headless Chromium as one self-contained page: the verdict on
top, no broken image, the heatmap legend inside its figure, and a screenshot with ink."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report, replay_estimates
from streams.live.embedded import EmbeddedStack
from tests.integration.chromium import (
    CHROMIUM,
    FLAGS,
    LADDER_CHECK,
    assert_ladder_page,
    ladder_view,
    open_page,
    require_chromium,
)

# writes the image check into the DOM once everything has loaded: every image decoded and
# drawn at a non-zero size; the verdict band's box; and, read back through a canvas, whether
# the heatmap has ink on its outermost pixels (a legend or label cut off at the figure's edge)
# and in its bottom tenth (where its legend belongs)
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) {
    var r = i.getBoundingClientRect();
    return !(i.complete && i.naturalWidth > 0 && r.width > 0 && r.height > 0);
  });
  var out = [(imgs.length > 0 && bad.length === 0)
    ? 'IMAGES-OK ' + imgs.length
    : 'IMAGES-BROKEN ' + bad.map(function (i) { return i.dataset.figure; }).join(',')];
  var v = document.getElementById('verdict');
  if (v) {
    var r = v.getBoundingClientRect();
    out.push('VERDICT ' + Math.round(r.top) + ' ' + Math.round(r.bottom));
  }
  var heat = document.querySelector('img[data-figure="assignment.png"]');
  if (heat && heat.naturalWidth > 0) {
    var c = document.createElement('canvas');
    c.width = heat.naturalWidth; c.height = heat.naturalHeight;
    var g = c.getContext('2d');
    g.drawImage(heat, 0, 0);
    var d = g.getImageData(0, 0, c.width, c.height).data;
    var ink = function (x, y) {
      var k = 4 * (y * c.width + x);
      return d[k] < 200 || d[k + 1] < 200 || d[k + 2] < 200;
    };
    var edge = 0, bottom = 0;
    for (var y = 0; y < c.height; y++) {
      for (var x = 0; x < c.width; x++) {
        var outer = x < 2 || y < 2 || x >= c.width - 2 || y >= c.height - 2;
        if (outer && ink(x, y)) edge++;
        if (y >= 0.9 * c.height && ink(x, y)) bottom++;
      }
    }
    out.push('HEATMAP edge-ink ' + edge + ' legend-ink ' + bottom);
  }
  var m = document.createElement('div');
  m.id = 'img-check';
  m.textContent = out.join(' | ');
  document.body.appendChild(m);
});
</script>"""

VERDICT = {
    "v": 1,
    "kind": "verdict",
    "experiment": "exp",
    "as_of": "2026-01-09T00:00:00+00:00",
    "verdict": "keep_running",
    "metric": "profit",
    "estimator": "did",
    "rule": "ship when the 95% anytime-valid confidence sequence of profit's relative effect "
    "lies wholly above 0% and no guardrail is breached; do not ship when it lies wholly below "
    "0% or a guardrail is breached; otherwise keep running",
    "reason": "profit +1.2% [-3.0%, +5.1%] includes 0%",
    "relative_effect": 0.012,
    "relative_cs_low": -0.03,
    "relative_cs_high": 0.051,
    "effect": 0.4,
    "cs_low": -1.0,
    "cs_high": 1.7,
    "guardrails": [{"metric": "units", "max_drop_pct": 2.0, "relative_effect": 0.1,
                    "relative_cs_low": 0.02, "relative_cs_high": 0.18, "status": "ok"}],
    "mde_pct": 2.0,
    "more_days": 12.5,
    "more_days_note": None,
    "n_units": 16,
    "n_periods": 8,
}  # fmt: skip


def _panel() -> pd.DataFrame:
    n, T = 16, 8
    rng = np.random.default_rng(0)
    W = np.zeros((n, T), bool)
    W[:8, 4:] = True
    B = np.zeros((n, T), bool)
    B[:, 4] = True
    Y = rng.uniform(20, 40, n)[:, None] + rng.normal(0, 2, (n, T)) + 3 * W
    price = np.where(W, 9.5, 10.0)
    return pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], T),
            "period": np.tile(np.arange(T), n),
            "units": Y.ravel(),
            "revenue": (Y * price).ravel(),
            "profit": (Y * (price - 7.0)).ravel(),
            "treated": W.ravel().astype(int),
            "probability": np.tile(np.where(np.arange(T) >= 4, 0.5, 0.0), n),
            "blackout": B.ravel(),
        }
    )


def _dump_dom(page: Path, tmp: Path) -> str:
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


def _check_line(dom: str) -> str:
    at = dom.index('<div id="img-check">') + len('<div id="img-check">')
    return dom[at:].split("<")[0]


def _screenshot(chromium: str, page: Path, tmp: Path, size: tuple[int, int]) -> np.ndarray:
    """The page as Chromium paints it, one pixel a CSS pixel: an H x W x 3 array of 0..255."""
    from PIL import Image

    shot = tmp / "shot.png"
    subprocess.run(
        [chromium, *FLAGS[:8], f"--user-data-dir={tmp / 'profile2'}", f"--screenshot={shot}",
         f"--window-size={size[0]},{size[1]}", "--force-device-scale-factor=1",
         "--hide-scrollbars", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:4] == b"\x89PNG"
    return np.asarray(Image.open(shot).convert("RGB"), dtype=int)


def test_report_renders_as_one_page_verdict_on_top(chromium: str, tmp_path: Path) -> None:
    """Chromium lays the report out from its single file: every figure decodes and is drawn,
    the verdict band sits at the top and is painted in its colour, the heatmap's legend lies
    inside its figure, and the screenshot is no blank page."""
    df = _panel()
    est = replay_estimates(df, experiment="exp", design="time-bound", estimators=["did"])
    assert set(est["metric"]) >= {"units", "revenue", "profit"}
    messages = pd.concat([est, pd.DataFrame([VERDICT])], ignore_index=True)
    report = build_report(df, messages, title="chromium check", design="time-bound")
    index = report.write(tmp_path / "rep")
    assert [p.name for p in index.parent.iterdir()] == ["index.html"]  # nothing beside it
    index.write_text(index.read_text().replace("</body>", CHECK + "</body>"))
    dom = _dump_dom(index, tmp_path)
    assert "chromium check" in dom and "Inconclusive: about 13 more days needed" in dom
    line = _check_line(dom)
    parts = dict(p.split(" ", 1) for p in line.split(" | "))
    assert parts["IMAGES-OK"] == str(len(report.figures)), line
    top, bottom = (int(v) for v in parts["VERDICT"].split())
    assert top < 120 and bottom - top > 80, line  # right under the title, and drawn
    edge, legend = (int(v) for v in parts["HEATMAP"].split()[1::2])
    assert edge == 0, line  # nothing runs off the figure's edge
    assert legend > 200, line  # the legend is drawn at the figure's foot
    # every metric's running estimates are on the page
    running = dom.split("<h2>Running estimates</h2>")[1].split("</table>")[0]
    for metric in ("units", "revenue", "profit"):
        assert f"<td>{metric}</td><td>did</td>" in running
    width, height = 1400, 2400
    shot = _screenshot(chromium, index, tmp_path, (width, height))
    assert shot.shape == (height, width, 3)
    ink = np.asarray((shot < 200).any(axis=2))
    assert 0.03 < ink.mean() < 0.9, ink.mean()  # neither blank nor one colour
    band = shot[top:bottom]
    # keep running's amber: the band's left border (#9a6700) and its word
    amber = (np.abs(band - np.array([0x9A, 0x67, 0x00])) < 40).all(axis=2)
    assert amber.sum() > 500, amber.sum()
    assert ink[top:bottom].mean() > 0.02  # the band carries text


def test_the_check_catches_a_broken_image(chromium: str, tmp_path: Path) -> None:
    df = _panel()
    report = build_report(df, None, title="broken", design="time-bound")
    index = report.write(tmp_path / "rep")
    page = index.read_text()
    # the balance figure's data replaced by bytes that are no PNG
    at = page.index('data-figure="balance.png"')
    src = page.rindex('src="data:image/png;base64,', 0, at) + len('src="data:image/png;base64,')
    page = page[:src] + "bm90IGEgcG5n" + page[page.index('"', src) :]
    index.write_text(page.replace("</body>", CHECK + "</body>"))
    assert "IMAGES-BROKEN balance.png" in _check_line(_dump_dom(index, tmp_path))


def test_a_legend_cut_off_at_the_edge_is_caught(chromium: str, tmp_path: Path) -> None:
    """The heatmap check sees ink on a figure's edge: a figure whose legend runs off it (as
    the heatmap's did before its legend moved into the layout) is reported."""
    import base64
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(np.eye(4))
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, label="a label far too long " * 3)],
              loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=4)  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    cut = base64.b64encode(buf.getvalue()).decode()
    report = build_report(_panel(), None, title="cut", design="time-bound")
    index = report.write(tmp_path / "rep")
    page = index.read_text()
    at = page.index('data-figure="assignment.png"')
    src = page.rindex('src="data:image/png;base64,', 0, at) + len('src="data:image/png;base64,')
    page = page[:src] + cut + page[page.index('"', src) :]
    index.write_text(page.replace("</body>", CHECK + "</body>"))
    line = _check_line(_dump_dom(index, tmp_path))
    assert int(line.split("HEATMAP edge-ink ")[1].split()[0]) > 0, line


def test_report_from_the_live_state(stack: EmbeddedStack, tmp_path: Path) -> None:
    """`pricelab report EXPERIMENT` reads the panel from Redis and the estimates topic."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from typer.testing import CliRunner

    from analysis.results import EstimateResult
    from controller import designs
    from controller.spec import ExperimentSpec
    from controller.store import Store, make_redis
    from controller.store.clock import SharedSimulatedClock
    from controller.store.keys import clock as clock_key
    from streams.cli import app
    from streams.worker.kafka import JsonPublisher, ensure_topics
    from streams.worker.schemas import VerdictMessage
    from streams.worker.sinks import KafkaEstimateSink
    from tests.integration.conftest import make_settings

    settings = make_settings(stack)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    spec = ExperimentSpec(
        id="live-report",
        products=tuple(f"p{i}" for i in range(8)),
        treatment_policy="t",
        control_policy="c",
        start=start,
        end=start + timedelta(days=4),
        seed=3,
    )

    async def setup() -> None:
        await ensure_topics(settings)
        redis = make_redis(settings)
        store = Store(redis, settings.key_prefix)
        await store.create_experiment(spec, start)
        for k in range(4):
            await store.write_assignments(spec.id, k, designs.assign_period(spec, k))
            assert await store.mark_flipped(spec.id, k)
        await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(
            spec.end + timedelta(hours=1)
        )
        await redis.aclose()
        pub = JsonPublisher(settings)
        await pub.start()
        sink = KafkaEstimateSink(pub, settings)
        for n, exp in ((2, spec.id), (3, spec.id), (4, spec.id), (4, "other")):
            res = EstimateResult(
                "dm", effect=1.0 + n, se=0.5, n_units=8, n_periods=n, metric="units"
            )
            await sink.publish(exp, res, start + timedelta(days=n), (n - 1.0, n + 3.0))
        # verdicts as the analysis worker publishes them (kind: verdict), this experiment's
        # and another's: the report shows its own latest and never reads one as an estimate
        words: list[tuple[str, Literal["do_not_ship", "ship"]]] = [
            (spec.id, "do_not_ship"),
            ("other", "ship"),
        ]
        for exp, word in words:
            verdict = VerdictMessage(
                experiment=exp, as_of=start + timedelta(days=4), verdict=word, metric="units",
                estimator="dm", rule="ship when ...",
                reason="units -40.0% [-50.0%, -30.0%] lies wholly below 0%",
                effect=-9.0, cs_low=-11.0, cs_high=-7.0, relative_effect=-0.4,
                relative_cs_low=-0.5, relative_cs_high=-0.3, n_units=8, n_periods=4,
            )  # fmt: skip
            await pub.send(settings.topics.estimates, verdict, exp)
        await pub.stop()

    asyncio.run(setup())
    out = tmp_path / "live"
    res = CliRunner().invoke(app, ["report", spec.id, "--out", str(out)], env=settings.to_env())
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text()
    # the source leaves out the last flipped period of a running experiment (not complete yet)
    assert "live state" in html and "8 products x 3 periods" in html
    assert "+5.000" in html  # the last published dm estimate (n_periods 4) of this experiment
    assert "+1.000" not in html.split("Running estimates")[1].split("<img")[0]
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert 'data-figure="running_estimates.png"' in html
    # the verdict published on the topic leads the page; the other experiment's does not
    band = html.split('id="verdict">')[1].split("</section>")[0]
    assert html.index('id="verdict"') < html.index("<h2>Scorecard</h2>")
    assert '<p class="word">Do not ship</p>' in band
    assert "units -40.0% [-50.0%, -30.0%] lies wholly below 0%" in band


def test_plan_page_renders_its_table_and_power_curves(chromium: str, tmp_path: Path) -> None:
    """`pricelab plan --out DIR` writes a page whose summary table and curve figure render."""
    import json
    import sys

    rng = np.random.default_rng(1)
    units = [f"p{i:02d}" for i in range(12)]
    history = tmp_path / "history.csv"
    pd.DataFrame(
        {
            "sku": np.repeat(units, 40),
            "day": np.tile(np.arange(40), 12),
            "units": rng.poisson(20, 12 * 40),
        }
    ).to_csv(history, index=False)
    spec = tmp_path / "rd.yaml"
    spec.write_text(
        "id: rd\ndesign: random-days\nproducts: [" + ", ".join(units) + "]\n"
        "treatment_policy: a\ncontrol_policy: b\n"
        "start: 2026-03-02T00:00:00+00:00\nend: 2026-03-16T00:00:00+00:00\n"
    )
    out = tmp_path / "plan"
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "plan", str(spec), "--history", str(history),
         "--unit", "sku", "--time", "day", "--outcome", "units", "--effect", "2", "--sims", "20",
         "--json", "--out", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    index = out / "index.html"
    assert f"wrote {index}" in done.stderr
    index.write_text(index.read_text().replace("</body>", CHECK + "</body>"))
    dom = _dump_dom(index, tmp_path)
    assert "IMAGES-OK 1" in dom, dom[-600:]
    # the page's table shows the rows --json printed
    for r in rows:
        assert f"<td>{r['estimator']}</td>" in dom
        assert f"<td>{r['mde']:.4g}</td>" in dom


# reads the laid-out scorecard: each row's metric, its bar's drawn width and colour, and where
# the scorecard sits against the assignment heading
CARD_CHECK = """<script>
window.addEventListener('load', function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('table.scorecard tr')).slice(1);
  var out = rows.map(function (r) {
    var rect = r.querySelector('svg rect');
    var w = rect ? rect.getBoundingClientRect().width : 0;
    return r.cells[0].textContent + ':' + Math.round(w) + ':' + (rect ? rect.getAttribute('fill') : '-');
  });
  var hs = Array.prototype.slice.call(document.querySelectorAll('h2'));
  var top = function (t) { return hs.filter(function (h) { return h.textContent === t; })[0].getBoundingClientRect().top; };
  var m = document.createElement('div');
  m.id = 'card-check';
  m.textContent = 'CARD ' + out.join(' ') + ' ORDER ' + (top('Scorecard') < top('Assignment'));
  document.body.appendChild(m);
});
</script>"""


def test_the_scorecard_leads_the_page_with_a_bar_per_metric(chromium: str, tmp_path: Path) -> None:
    """An analyst opening the report sees the decision first: one row per metric, the relative
    interval drawn as a bar (green above zero, red below), the elasticity, then the heatmap."""
    rng = np.random.default_rng(4)
    n, T = 30, 14
    price = rng.uniform(5, 50, n)[:, None]
    W = rng.random((n, T)) < 0.5
    units = rng.poisson(rng.uniform(5, 30, n)[:, None] * np.where(W, 1.25, 1.0))
    paid = price * np.where(W, 0.95, 1.0)
    df = pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], T),
            "period": np.tile(np.arange(T), n),
            "units": units.ravel().astype(float),
            "revenue": (units * paid).ravel(),
            # a cost at 90% of the list price: the 5% cut halves the margin, profit falls
            "profit": (units * (paid - 0.9 * price)).ravel(),
            "treated": W.ravel().astype(int),
            "probability": 0.5,
            "blackout": False,
        }
    )
    plans = ["fe", "dm"]
    est = replay_estimates(df, experiment="card", design="random-days", estimators=plans)
    report = build_report(df, est, title="scorecard check", design="random-days")
    index = report.write(tmp_path / "rep")
    index.write_text(index.read_text().replace("</body>", CARD_CHECK + "</body>"))
    dom = _dump_dom(index, tmp_path)
    at = dom.index('<div id="card-check">') + len('<div id="card-check">')
    line = dom[at:].split("<")[0]
    cells = dict(item.split(":", 1) for item in line.split()[1:-2])
    assert list(cells) == ["units", "revenue", "profit", "price", "elasticity"], line
    widths = {m: int(v.split(":")[0]) for m, v in cells.items()}
    colours = {m: v.split(":")[1] for m, v in cells.items()}
    assert all(widths[m] > 2 for m in ("units", "revenue", "profit", "price")), line
    assert colours["units"] == "#1a7f37" and colours["profit"] == "#b42318", (
        line
    )  # +25%; margin halved
    assert colours["elasticity"] == "-", line  # no relative bar: it is a ratio already
    assert line.endswith("ORDER true"), line


def test_a_ladder_report_draws_each_arm_and_the_recommended_price(
    chromium: str, tmp_path: Path
) -> None:
    """The report of a price ladder (the demo's, simulated and replayed through the analysis
    worker with its spec), as Chromium lays it out: the verdict naming an arm on top, each
    arm's rows in the scorecard, both curves with every arm's point labelled, the demand
    curve's band, the recommended price inside its interval and the true optimum, and no
    console error."""
    from lab.simulate import run_spec
    from streams.live.demo import DemoConfig, demo_market, demo_spec
    from streams.live.ladder import ARM_METRICS

    cfg = DemoConfig(products=40, days=8, seed=3, ladder=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    sim = run_spec(spec, market)
    est = replay_estimates(
        sim.panel, experiment=spec.id, design=spec.design, estimators=["fe", "dm"],
        params=spec.model_dump(mode="json"), start=spec.start,
    )  # fmt: skip
    arms = ["p90", "p95", "p105"]
    truths = {
        (m, a): (sim.metric_truth(m, arm=a), sim.metric_truth(m, relative=True, arm=a))
        for m in ARM_METRICS
        for a in arms
    }
    optimum = sim.optimal_ratio_truth()
    report = build_report(
        sim.panel, est, title="ladder", design=spec.design, arm_truths=truths,
        true_optimum=optimum,
    )  # fmt: skip
    index = report.write(tmp_path / "rep")
    dom, console = open_page(index, tmp_path, LADDER_CHECK)
    assert console == [], console
    view = ladder_view(dom)
    assert_ladder_page(view, arms, "list")
    assert view["images"] == len(report.figures)
    verdict = est[est["kind"] == "verdict"].iloc[-1]
    assert verdict["arm"] in arms
    words = {"ship": f"Ship {verdict['arm']}", "keep_running": "Keep running",
             "do_not_ship": "Do not ship"}  # fmt: skip
    assert view["word"] == words[verdict["verdict"]]
    profit = view["curves"]["profit"]
    assert profit["truth"]["ratio"] == pytest.approx(optimum, abs=1e-5)
    # the true optimum's line sits where its ratio lies between the tested prices
    at = {p["arm"]: p["dot"][0] + p["dot"][2] / 2 for p in profit["points"]}
    x = profit["truth"]["line"][0]
    assert (at["p95"] < x < at["list"]) == (0.95 < optimum < 1.0)
    demand = est[est["kind"] == "demand"].iloc[-1]
    assert (profit["edge"] is not None) == bool(demand["at_range_edge"])
    # the page's figures are the demand message's: the recommendation and its interval
    lo, hi = demand["optimal_price_ratio_ci_low"], demand["optimal_price_ratio_ci_high"]
    assert profit["recommended"]["text"] == (
        f"curve peaks at x{demand['optimal_price_ratio']:.3f} [{lo:.3f}, {hi:.3f}]"
    )


def test_the_console_check_catches_an_error(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "err.html"
    page.write_text("<html><body><p>x</p></body></html>")
    _, console = open_page(page, tmp_path, "<script>console.error('planted')</script>")
    assert len(console) == 1 and "planted" in console[0], console
