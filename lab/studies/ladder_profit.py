"""The profit change at a ladder's recommended price: what its interval covers (issue #54).

    .venv/bin/python -m lab.studies ladder_profit [--runs 500] [--jobs 1] [--set products=100]

The ladder of :mod:`lab.studies.ladder` (list 1.0 the control, p90, p95 and p105, a quarter
each) on the same simulated market (products seed 0, the run's demand path and design seed),
assigned by the design's own draw and sold at each arm's price (:func:`lab.simulate.run_spec`).
The cells the live panel source would hand the analysis worker go to the worker's own demand
fit, :func:`analysis.demand.fit_ladder_cells`, and what it publishes is scored: the profit
change per product-period at the recommended ratio ``r*`` against the control's price
(``profit_change_at_optimum`` and its interval) against the simulator's true change at that
same ``r*``, :meth:`lab.simulate.SimulatedExperiment.profit_change_truth`. The target is a
random one (``r*`` is the data's); the interval is for the change at the price the analyst is
shown.

Worlds, by where the true profit curve peaks:

- ``peak-1.00``: the best price is the control's. Every product's unit cost is one share
  ``kappa`` of its base price, the share at which the market's expected profit over the
  experiment's cells, every product listed at one ratio, is stationary at 1
  (:func:`peak_cost_share`): there the true change at any ``r*`` is at most 0 (over the
  analysed cells: a design that blacks out periods weighs the products a little otherwise);
- ``peak-0.97``: the same at 0.97, inside the tested range and between two tested prices;
- ``cost-48``: the ladder study's world, unit costs at 48% of the base price (its optimum near
  the bottom of the ladder).

Designs: random days in every world, and the four-phase crossover
(:func:`lab.studies.ladder_world.design_settings`) where the best price is the control's, over
``days`` days; early looks (4 days) count how often a look publishes no interval
(``identified`` false) and why. Saves docs/figures/ladder-profit.json and renders the section
``ladder-profit`` of docs/ladder-validation.md (template ``ladder_profit.md.j2``; the ladder
study's own template includes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.demand import fit_ladder_cells
from controller.spec import ExperimentSpec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import SimulatedExperiment, experiment_slots, market_for_spec, run_spec
from lab.studies.harness import (
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage,
    grid,
    mean_mcse,
    run_seed,
)
from lab.studies.ladder_world import CONTROL, RATIOS, SEED, ladder_spec, live_cells

#: each world's true best ratio (None: the cost share of ``SHARES``)
PEAKS = {"peak-1.00": 1.00, "peak-0.97": 0.97}
SHARES = {"cost-48": 0.48}
#: the issue's target for the interval's coverage
TARGET = (0.93, 0.97)
CASES: tuple[Case, ...] = (
    *grid(world=("peak-1.00", "peak-0.97", "cost-48"), design=("random-days",), days=(40,)),
    *grid(world=("peak-1.00",), design=("crossover",), days=(40,)),
    *grid(world=("peak-1.00", "peak-0.97"), design=("random-days",), days=(4,)),
)


def peak_cost_share(market: Market, spec: ExperimentSpec, peak: float) -> float:
    """The unit cost share ``kappa`` of every product's base price at which the market's true
    expected profit with every product listed at one ratio r
    (:meth:`lab.market.Market.expected_profit`: each product's untreated means summed over
    every period of ``spec``, the spikes' share of sales included) is stationary at
    ``r = peak``. Profit is linear in the costs, so its slope at ``peak`` is ``D0 - kappa
    (D0 - D1)``, with ``D0`` the slope at costs 0 and ``D1`` at costs equal to the base prices
    (central differences): ``kappa = D0 / (D0 - D1)``."""
    w = market.untreated_means(experiment_slots(spec, market)).sum(axis=1)
    base = market.products["base_price"].to_numpy(dtype=float)
    h = 1e-6

    def slope(cost: np.ndarray) -> float:
        up = market.expected_profit(peak + h, w, cost)
        return (up - market.expected_profit(peak - h, w, cost)) / (2 * h)

    d0, d1 = slope(np.zeros_like(base)), slope(base)
    return float(d0 / (d0 - d1))


def experiment(case: Case, run: int, settings: Mapping[str, Any]) -> SimulatedExperiment:
    """Run ``run`` of ``case``: the ladder study's market and draws (products seed 0), unit
    costs at the world's share of each base price."""
    products, days = int(settings["products"]), int(case["days"])
    design_seed = run_seed(SEED + 1, run)
    plain = ladder_spec(case["design"], products, days, design_seed)
    market = market_for_spec(plain, MarketConfig(), seed=SEED, demand_seed=run_seed(SEED, run))
    world = case["world"]
    share = SHARES[world] if world in SHARES else peak_cost_share(market, plain, PEAKS[world])
    base = market.products["base_price"].to_numpy(dtype=float)
    # the ladder study's world in cents; a peak world's costs unrounded, so that its curve
    # peaks where it says
    cost = np.round(share * base, 2) if world in SHARES else share * base
    costs = dict(zip(market.product_ids, cost.tolist(), strict=True))
    return run_spec(ladder_spec(case["design"], products, days, design_seed, costs), market)


def _kind(reason: str | None) -> str:
    if reason is None:
        return ""
    if "give no profit curve" in reason:
        return "replicates without a curve"
    if "peak below" in reason or "peak above" in reason:
        return "replicates peak beyond the range"
    return reason


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row:
    """One ladder's demand fit, scored against the true profit change at its own ``r*``."""
    sim = experiment(case, run, settings)
    fit = fit_ladder_cells(live_cells(sim), RATIOS, CONTROL)
    row: Row = {"optimum_truth": sim.optimal_ratio_truth(), "identified": fit.identified,
                "reason": _kind(fit.reason)}  # fmt: skip
    r = fit.optimal_price_ratio
    if r is None or fit.profit_change is None:
        return row
    truth = sim.profit_change_truth(r)
    row |= {"ratio": r, "change": fit.profit_change, "truth": truth,
            "at_edge": bool(fit.at_range_edge)}  # fmt: skip
    if fit.profit_change_ci is not None:
        lo, hi = fit.profit_change_ci
        row |= {"ci_low": lo, "ci_high": hi, "covered": bool(lo <= truth <= hi)}
    return row


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    out = []
    keys = ["world", "design", "days"]
    for c, (key, g) in enumerate(rows.groupby(keys, sort=False)):
        shown = g[g["identified"].astype(bool)]
        cov, cov_mcse = coverage(shown["covered"].astype(bool))
        err, err_mcse = mean_mcse(shown["change"] - shown["truth"])
        at_or_below = shown["truth"] <= 0
        below_cov = coverage(shown.loc[at_or_below, "covered"].astype(bool))[0]
        reasons = g.loc[~g["identified"].astype(bool), "reason"].value_counts()
        out.append(
            dict(zip(keys, key, strict=True))
            | {"runs": len(g), "identified": len(shown), "coverage": cov,
               "coverage_mcse": cov_mcse,
               "optimum_mean": float(g["optimum_truth"].mean()),
               "optimum_min": float(g["optimum_truth"].min()),
               "optimum_max": float(g["optimum_truth"].max()),
               "ratio_mean": float(shown["ratio"].mean()),
               "at_edge": float(shown["at_edge"].astype(bool).mean()),
               "truth_mean": float(shown["truth"].mean()),
               "truth_at_or_below_0": float(at_or_below.mean()),
               "coverage_truth_at_or_below_0": below_cov,
               "change_mean": float(shown["change"].mean()),
               "error": err, "error_mcse": err_mcse,
               "reaches_below_0": float((shown["ci_low"] < 0).mean()),
               "width": float((shown["ci_high"] - shown["ci_low"]).mean()),
               "not_identified": {str(k): int(v) for k, v in reasons.items()},
               "seconds_per_run": run.seconds[c] / max(1, len(g))}
        )  # fmt: skip
    return {
        "runs": run.runs,
        "products": int(run.options["products"]),
        "ratios": RATIOS,
        "peaks": PEAKS,
        "shares": SHARES,
        "target": TARGET,
        "seconds": sum(run.seconds),
        "rows": out,
    }


def context(results: Results) -> dict[str, Any]:
    """The saved rows, each with whether it meets the target and how many MC SEs off."""
    assert isinstance(results, dict)
    low, high = results["target"]
    rows = []
    for r in results["rows"]:
        x, n = r["coverage"], max(1, r["identified"])
        edge = low if x < low else high
        mcse = (edge * (1 - edge) / n) ** 0.5
        rows.append(r | {"met": low <= x <= high, "away": max(low - x, x - high, 0.0) / mcse})
    full = [r for r in rows if r["days"] == max(x["days"] for x in rows)]
    return {**results, "rows": rows, "full": full,
            "early": [r for r in rows if r not in full],
            "minutes": results["seconds"] / 60, "low": 100 * low, "high": 100 * high}  # fmt: skip


STUDY = Study(
    name="ladder_profit",
    cases=CASES,
    run_one=run_one,
    summarise=summarise,
    results="ladder-profit.json",
    runs=500,
    options={"products": 100},
    page=Page("docs/ladder-validation.md", "ladder_profit.md.j2", "ladder-profit"),
    context=context,
    chunk=10,
)
