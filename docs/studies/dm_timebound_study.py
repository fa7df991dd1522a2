"""Why the time-bound design's difference in means looked biased in validation.md.

    python docs/studies/dm_timebound_study.py      # about a minute

validation.md's A/A section (no treatment effect) found `dm` on the time-bound post-period at
+0.446, 3.4 Monte-Carlo SEs from 0, over its 100 runs; the main section, on the same seeds,
at +0.460. On this design almost all of dm's variance is the design's draw: which products
fell in the treated half, products whose levels differ 2.5-fold. This study separates that
part (:func:`lab.compare.design_imbalance`: the difference in means of each product-day's
expected control units, no outcome noise) on the validation study's own 100 design seeds and
on fresh draws, and writes docs/figures/validation-dm-timebound.json, which
validation_study.py reads into the A/A findings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lab.compare import _run_seed, design_imbalance, make_spec  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.market import Market  # noqa: E402
from lab.simulate import run_spec  # noqa: E402

SEED, DAYS, FRESH = 0, 28, 4000  # validation_study.py's SEED and DAYS


def expected_control(market: Market) -> np.ndarray:
    """Each product-day's expected control units on ``market`` (no effect: any assignment)."""
    sim = run_spec(make_spec("time-bound", market, days=DAYS), market)
    return sim.panel["y0_expected"].to_numpy(dtype=float).reshape(market.cfg.n_products, DAYS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=400, help="validation_study.py's --runs")
    runs = ap.parse_args().runs
    t0 = time.time()
    cfg = MarketConfig(price_change=0.0)
    # validation_study.py's run r (lab.compare.simulate_run): its own demand path and design
    # seed
    study = np.concatenate(
        [
            design_imbalance(m, "time-bound", [_run_seed(SEED + 1, r)], expected_control(m))
            for r in range(runs)
            for m in [Market(cfg, seed=SEED, demand_seed=_run_seed(SEED, r))]
        ]
    )
    market = Market(cfg, seed=SEED, demand_seed=_run_seed(SEED, 0))
    y0 = expected_control(market)
    fresh = design_imbalance(market, "time-bound", range(10_000, 10_000 + FRESH), y0)
    out = {
        "runs": runs,
        "study_mean": float(study.mean()),
        "study_mcse": float(study.std(ddof=1) / np.sqrt(runs)),
        "fresh_draws": FRESH,
        "fresh_mean": float(fresh.mean()),
        "fresh_mcse": float(fresh.std(ddof=1) / np.sqrt(FRESH)),
        "design_sd": float(fresh.std(ddof=1)),
        "seconds": time.time() - t0,
    }
    path = ROOT / "docs" / "figures" / "validation-dm-timebound.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
