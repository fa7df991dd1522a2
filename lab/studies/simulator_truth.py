"""Checks that the simulator's reported ground truth is what randomised experiments recover
(docs/simulator.md, "Figures").

    .venv/bin/python -m lab.studies simulator-truth [--runs 200] [--set markets=100]
        [--set first_seed=0]

A run is a seed (``first_seed + run``; a fresh market and assignment per seed):

1. Horvitz-Thompson z-scores (estimate - true effect) / SE for the lag-0 effect in the default
   market and for the lag-1 effect with carryover m = 1 (Bojinov, Simchi-Levi & Zhao 2023), 400
   products x 40 days, one Bernoulli(0.5) assignment per seed: the mean should be near 0 and
   the SD near (or below: the SE is conservative) 1.
2. With fixed potential outcomes (a market's counts are inverse-CDF draws from per-cell
   uniforms), over ``markets`` markets: the realised all-treated minus all-control mean
   against the reported truth, and the HT error over 20 assignments per market, so the mean
   error is measured precisely.
3. The spread of the switchback difference in means on the default 200-product, 28-day market
   next to a time-bound design (half of each category from day 14; both the controller's own
   designs), to show the default market has a clear answer.

Saves docs/figures/simulator-truth.json and renders the ``simulator-truth`` section of
docs/simulator.md (template ``simulator_truth.md.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lab.compare import make_spec
from lab.market import Market, MarketConfig
from lab.simulate import run_spec
from lab.studies.harness import Case, Page, Results, Row, Run, Study, mean_mcse

N, T = 400, 40  # the HT checks' market: products x days
ASSIGNMENTS = 20  # per market, with fixed potential outcomes
HT_CASES = {
    "ht-lag0": (0, MarketConfig(n_products=N)),
    "ht-lag1": (1, MarketConfig(n_products=N, carryover_order=1, carryover_decay=0.6)),
}


def ht(panel: pd.DataFrame, lags: int, p: float = 0.5) -> tuple[float, float, float]:
    """The HT estimate of the lag-``lags`` effect, its SE (the spread of the per-product
    means) and the panel's true effect over the same cells."""
    W = panel.pivot(index="product", columns="day", values="treated").to_numpy()
    R = (panel["units"] - panel["y0_expected"]).to_numpy().reshape(W.shape)
    truth = panel.pivot(index="product", columns="day", values="true_effect").to_numpy()
    all_t = np.ones_like(W[:, lags:], dtype=bool)
    all_c = all_t.copy()
    for lag in range(lags + 1):
        window = W[:, lags - lag : W.shape[1] - lag]
        all_t &= window
        all_c &= ~window
    k = lags + 1
    terms = all_t * R[:, lags:] / p**k - all_c * R[:, lags:] / (1 - p) ** k
    per_product = terms.mean(axis=1)
    return (
        float(terms.mean()),
        float(per_product.std(ddof=1) / np.sqrt(len(per_product))),
        float(truth[:, lags:].mean()),
    )


def fixed_outcomes(s: int) -> list[Row]:
    """Market ``s`` with every cell's both potential outcomes: the realised effect's gap to
    the reported one, and the HT error over 20 assignments."""
    m = Market(MarketConfig(n_products=N), seed=50_000 + s)
    p1, p0 = m.simulate_panel(np.ones((N, T), bool)), m.simulate_panel(np.zeros((N, T), bool))
    Y1 = p1["units"].to_numpy().reshape(N, T)
    Y0 = p0["units"].to_numpy().reshape(N, T)
    R1 = Y1 - p0["y0_expected"].to_numpy().reshape(N, T)
    R0 = Y0 - p0["y0_expected"].to_numpy().reshape(N, T)
    truth = p0["true_effect"].mean()
    gap = float((Y1 - Y0).mean() - truth)
    rng = np.random.default_rng([7, s])
    rows = []
    for a in range(ASSIGNMENTS):
        terms = np.where(rng.random((N, T)) < 0.5, 2 * R1, -2 * R0)
        se = terms.mean(axis=1).std(ddof=1) / np.sqrt(N)
        error = float(terms.mean() - truth)
        rows.append({"assignment": a, "gap": gap, "error": error, "z": error / se})
    return rows


def difference_in_means(design: str, s: int) -> Row:
    """The difference in means of ``design`` on the default market (time-bound: days 14-27)."""
    m = Market(MarketConfig(), seed=s)
    panel = run_spec(make_spec(design, m, days=28, seed=10_000 + s), m).panel
    if design == "time-bound":
        panel = panel[panel["period"] >= 14]
    y, w = panel["units"].to_numpy(), panel["treated"].to_numpy().astype(bool)
    truth = float(panel["true_effect"].mean())
    return {"truth": truth, "error": float(y[w].mean() - y[~w].mean()) - truth}


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row | list[Row]:
    s = int(settings["first_seed"]) + run
    check = case["check"]
    if check in HT_CASES:
        lags, cfg = HT_CASES[check]
        W = np.random.default_rng(5000 + s).random((N, T)) < 0.5
        est, se, truth = ht(Market(cfg, seed=1000 + s).simulate_panel(W), lags)
        return {"error": est - truth, "z": (est - truth) / se}
    if check == "fixed":
        return fixed_outcomes(s)
    return difference_in_means(check.removeprefix("dim-"), s)


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"first_seed": run.options["first_seed"], "seconds": sum(run.seconds)}
    for check in HT_CASES:
        g = rows[rows["check"] == check]
        err, err_mcse = mean_mcse(g["error"])
        out[check] = {
            "seeds": len(g),
            "mean_error": err,
            "mean_error_mcse": err_mcse,
            "mean_z": float(g["z"].mean()),
            "sd_z": float(g["z"].std(ddof=1)),
            "share_z_beyond_1_96": float((g["z"].abs() > 1.96).mean()),
        }
    g = rows[rows["check"] == "fixed"]
    gap = g.groupby("run")["gap"].first()
    per_market = g.groupby("run")["error"].mean()
    markets = len(gap)
    out["fixed"] = {
        "markets": markets,
        "assignments": ASSIGNMENTS,
        "gap": float(gap.mean()),
        "gap_se": float(gap.std(ddof=1) / math.sqrt(markets)),
        "mean_error": float(g["error"].mean()),
        "mean_error_se": float(per_market.std(ddof=1) / math.sqrt(markets)),
        "mean_z": float(g["z"].mean()),
        "sd_z": float(g["z"].std(ddof=1)),
    }
    for design in ("random-days", "time-bound"):
        g = rows[rows["check"] == f"dim-{design}"]
        out[f"dim-{design}"] = {
            "seeds": len(g),
            "mean_truth": float(g["truth"].mean()),
            "bias": float(g["error"].mean()),
            "sd": float(g["error"].std(ddof=1)),
        }
    return out


def context(results: Results) -> dict[str, Any]:
    return {"results": results}


STUDY = Study(
    name="simulator-truth",
    cases=(
        *({"check": c} for c in HT_CASES),
        {"check": "fixed", "runs": "markets"},
        {"check": "dim-random-days"},
        {"check": "dim-time-bound"},
    ),
    run_one=run_one,
    summarise=summarise,
    results="simulator-truth.json",
    runs=200,
    options={"markets": 100, "first_seed": 0},
    page=Page("docs/simulator.md", "simulator_truth.md.j2", section="simulator-truth"),
    context=context,
)
