"""Build the analyst report of a demo-like experiment offline and screenshot it.

    .venv/bin/python -m lab.report_screenshot [--out DIR] [--products 60] [--days 14]
    .venv/bin/python -m lab.report_screenshot --live   # the demo's live report
    .venv/bin/python -m lab.report_screenshot --ladder # the live report of demo --ladder

The experiment is the demo's (streams/live/demo.py): a random-days switchback with a 2-hour
washout, Europe/Berlin days from 2026-03-16, seed 7, on the simulator's market. The panel is
produced by the simulator under the assignment that controller.designs draws for that spec,
and the running estimates by the real analysis worker (analysis.worker.AnalysisWorker) run
once after each day on the days completed so far (analysis.report.replay_estimates), verdicts
included (the spec plans for a 5% MDE, as the demo's). The page is one self-contained HTML
file (docs/report-demo/index.html), rendered by headless Chromium into
docs/report-screenshot.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from PIL import Image

from analysis.report import build_report, replay_estimates
from controller.designs import get_design
from controller.spec import ExperimentSpec
from lab.market import Market, MarketConfig
from lab.simulate import SimulatedExperiment, run_spec

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def demo_panel(products: int, days: int, seed: int = 7) -> SimulatedExperiment:
    zone = "Europe/Berlin"
    market = Market(
        MarketConfig(n_products=products, timezone=zone, start_date=date(2026, 3, 16)), seed=seed
    )
    start = datetime(2026, 3, 16, tzinfo=ZoneInfo(zone))
    spec = ExperimentSpec(
        id=f"demo-{seed}",
        design="random-days",
        products=tuple(market.product_ids),
        treatment_policy="price-minus-5pct",
        control_policy="list-price",
        start=start,
        end=start + timedelta(days=days),
        timezone=zone,
        washout=timedelta(hours=2),
        seed=seed,
        unit_costs=dict(zip(market.product_ids, market.unit_cost.tolist(), strict=True)),
        mde_pct=5.0,  # as the demo plans (streams/live/demo.py)
    )
    return run_spec(spec, market)


def screenshot(index: Path, png: Path, size: str = "1400,6000") -> None:
    """The whole page as Chromium paints it: a window taller than the page, cut below the
    page's last ink."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size}",
                "--force-device-scale-factor=1",
                index.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    image = Image.open(png).convert("RGB")
    ink = np.flatnonzero((np.asarray(image) < 200).any(axis=(1, 2)))
    image.crop((0, 0, image.width, min(image.height, int(ink.max()) + 24))).save(png)


def live(out: Path, png: Path, *demo: str) -> None:
    """The demo's own live report (``pricelab demo --report``: the real stack, workers and
    estimates topic; ``demo``: more of the demo's options, e.g. ``--ladder``) and its
    screenshot."""
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", *demo, "--quiet", "--report", str(out)],
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    screenshot(out / "index.html", png)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.report_screenshot", description=__doc__)
    ap.add_argument(
        "--live",
        action="store_true",
        help="instead: run the demo with --report into docs/report-demo-live and screenshot it",
    )
    ap.add_argument(
        "--ladder",
        action="store_true",
        help="instead: run the demo --ladder with --report into docs/report-demo-ladder and "
        "screenshot it",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report-demo")
    ap.add_argument("--products", type=int, default=60)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    args = ap.parse_args(argv)
    if args.live:
        live(ROOT / "docs" / "report-demo-live", ROOT / "docs" / "report-demo-live.png")
        return
    if args.ladder:
        docs = ROOT / "docs"
        live(docs / "report-demo-ladder", docs / "report-demo-ladder.png", "--ladder")
        return
    sim = demo_panel(args.products, args.days)
    spec, df = sim.spec, sim.panel
    plans = get_design(spec.design).estimators(spec)
    est = replay_estimates(
        df, experiment=spec.id, design=spec.design, estimators=plans,
        params=spec.model_dump(mode="json"), start=spec.start,
    )  # fmt: skip
    truths = {
        m: (sim.metric_truth(m), sim.metric_truth(m, relative=True))
        for m in ("units", "revenue", "profit", "price")
    }
    truths["elasticity"] = (sim.metric_truth("elasticity"),) * 2
    report = build_report(
        df,
        est,
        title=f"pricelab report: {spec.id} (demo-like, offline)",
        design=spec.design,
        truth=sim.truth,
        truths=truths,
        source_note="Built offline: simulator panel under the demo's design; running estimates "
        "and verdicts by the analysis worker replayed day by day.",
    )
    index = report.write(args.out)
    print(f"wrote {index}")
    screenshot(index, args.screenshot)
    print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
