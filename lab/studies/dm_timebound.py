"""Why the time-bound design's difference in means looked biased in validation.md.

    .venv/bin/python -m lab.studies dm-timebound      # about a minute

validation.md's A/A section (no treatment effect) found `dm` on the time-bound post-period at
+0.446, 3.4 Monte-Carlo SEs from 0, over its 100 runs; the main section, on the same seeds,
at +0.460. On this design almost all of dm's variance is the design's draw: which products
fell in the treated half, products whose levels differ 2.5-fold. This study separates that
part (:func:`lab.compare.design_imbalance`: the difference in means of each product-day's
expected control units, no outcome noise) on the validation study's own design seeds (case
``study``: run r's market and design seed as the comparison draws them) and on 4,000 fresh
draws on run 0's market (case ``fresh``), and saves docs/figures/validation-dm-timebound.json,
which lab/studies/validation.py reads into the A/A findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from lab.compare import design_imbalance, make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec
from lab.studies.harness import Case, Page, Run, Study, mean_mcse, run_seed

SEED, DAYS, FRESH = 0, 28, 4000  # the validation study's SEED and DAYS
CFG = MarketConfig(price_change=0.0)


def expected_control(market: Market) -> np.ndarray:
    """Each product-day's expected control units on ``market`` (no effect: any assignment)."""
    sim = run_spec(make_spec("time-bound", market, days=DAYS), market)
    return sim.panel["y0_expected"].to_numpy(dtype=float).reshape(market.cfg.n_products, DAYS)


@lru_cache(maxsize=1)
def _first_market() -> tuple[Market, np.ndarray]:
    market = Market(CFG, seed=SEED, demand_seed=run_seed(SEED, 0))
    return market, expected_control(market)


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    if case["part"] == "study":  # the validation study's run r: its demand path and design seed
        m = Market(CFG, seed=SEED, demand_seed=run_seed(SEED, run))
        seeds = [run_seed(SEED + 1, run)]
        y0 = expected_control(m)
    else:  # a fresh draw of the design on run 0's market
        m, y0 = _first_market()
        seeds = [10_000 + run]
    return {"imbalance": float(design_imbalance(m, "time-bound", seeds, y0)[0])}


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    study = rows.loc[rows["part"] == "study", "imbalance"]
    fresh = rows.loc[rows["part"] == "fresh", "imbalance"]
    study_mean, study_mcse = mean_mcse(study)
    fresh_mean, fresh_mcse = mean_mcse(fresh)
    return {
        "runs": len(study),
        "study_mean": study_mean,
        "study_mcse": study_mcse,
        "fresh_draws": len(fresh),
        "fresh_mean": fresh_mean,
        "fresh_mcse": fresh_mcse,
        "design_sd": float(fresh.std(ddof=1)),
        "seconds": sum(run.seconds),
    }


STUDY = Study(
    name="dm-timebound",
    cases=({"part": "study"}, {"part": "fresh", "runs": FRESH}),
    run_one=run_one,
    summarise=summarise,
    results="validation-dm-timebound.json",
    runs=400,  # the validation study's runs
    chunk=50,
    page=Page("docs/validation.md", "dm_timebound.md.j2", section="dm-timebound"),
)
