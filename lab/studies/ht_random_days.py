"""Finding 1 of #27: does random days' Horvitz-Thompson interval (lag 0) under-cover?

    .venv/bin/python -m lab.studies ht-random-days [--runs 2000] [--set paths=40 --set draws=500]

The validation study's table and earlier notes put the coverage of the worker's ``ht`` on random
days at 0.915-0.93 over its first 100-400 runs. This study separates the two sources of
randomness in those runs, always through the path the worker runs (``lab.compare.fit_choice``:
the design's own estimator plan and panel):

1. **Unconditional**, exactly the validation study's runs: products seed 0, run r's demand
   path and design seed as ``lab.compare`` draws them, on the default market over 28 days.
   Run r here is run r there, so the first 100 and 400 rows are the table's own runs; the study
   goes on to ``--runs`` to tell chance from a defect (Monte-Carlo SE about 0.5 points at 2,000).
2. **Conditional on the outcomes**: ``paths`` demand paths, each with its potential outcomes
   fixed (the market run all-treated and all-control; a check asserts that the observed panel is
   ``where(W, Y1, Y0)``, i.e. no carryover or spillover on this market), and ``draws`` fresh
   assignments of the design's own keyed coins per path. The target is then the sample's own
   effect ``mean(Y1 - Y0)``, and the variance bound is the design variance it bounds.

Saves docs/figures/ht-random-days.json, which lab/studies/validation.py renders into
docs/validation.md ("The four open findings"). ``--set products=20`` runs a smaller market.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from controller.designs import design_matrices
from controller.spec import ExperimentSpec
from lab.compare import CompareConfig, EstimatorChoice, fit_choice, make_spec
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import Market
from lab.simulate import experiment_slots, run_spec
from lab.studies.harness import (
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage,
    mean_mcse,
    run_seed,
)

DESIGN = "random-days"
DAYS = 28
SEED = 0  # the validation study's


def market_config(settings: Mapping[str, Any]) -> MarketConfig:
    products = settings["products"]
    return MarketConfig(n_products=products, n_categories=2) if products else MarketConfig()


def _ht_choice(market_cfg: MarketConfig, spec: ExperimentSpec) -> EstimatorChoice:
    cfg = CompareConfig(market=market_cfg, runs=1, seed=SEED, days=DAYS)
    (choice,) = [c for c in cfg.estimators_for(DESIGN, spec) if c.label == "ht"]
    return choice


def _covered(r: Mapping[str, Any], target: float) -> bool:
    return bool(r["ci_low"] <= target <= r["ci_high"])


def unconditional(market_cfg: MarketConfig, run: int) -> Row:
    market = Market(market_cfg, seed=SEED, demand_seed=run_seed(SEED, run))
    spec = make_spec(DESIGN, market, days=DAYS, seed=run_seed(SEED + 1, run))
    sim = run_spec(spec, market)
    r = fit_choice(_ht_choice(market_cfg, spec), sim.panel, seed=run)
    return {"effect": r["effect"], "se": r["se"], "truth": sim.truth,
            "covered": _covered(r, sim.truth)}  # fmt: skip


def conditional(market_cfg: MarketConfig, path: int, draws: int) -> list[Row]:
    market = Market(market_cfg, seed=SEED, demand_seed=run_seed(SEED, path))
    spec = make_spec(DESIGN, market, days=DAYS, seed=run_seed(SEED + 1, path))
    sim = run_spec(spec, market)
    units = list(market.product_ids)
    slots = experiment_slots(spec, market)
    N, T = sim.matrices.treated.shape
    ones = np.ones((N, T), dtype=bool)
    y1 = np.array([o.units for o in market.run_slots(ones, slots)], dtype=float).T
    y0 = np.array([o.units for o in market.run_slots(~ones, slots)], dtype=float).T
    observed = sim.panel["units"].to_numpy(dtype=float).reshape(N, T)
    if not np.array_equal(np.where(sim.matrices.treated, y1, y0), observed):
        raise LabError("a cell's outcome depends on more than its own arm on this market")
    sample_effect = float((y1 - y0).mean())
    choice = _ht_choice(market_cfg, spec)
    rows = []
    for d in range(draws):
        redraw = spec.model_copy(update={"seed": 1_000_000 + path * draws + d})
        m = design_matrices(redraw, units)
        panel = sim.panel.copy()
        panel["treated"] = m.treated.ravel()
        panel["probability"] = m.probability.ravel()
        panel["units"] = np.where(m.treated, y1, y0).ravel()
        r = fit_choice(choice, panel, seed=d)
        rows.append(
            {"draw": d, "effect": r["effect"], "se": r["se"], "sample_effect": sample_effect,
             "covered": _covered(r, sample_effect)}
        )  # fmt: skip
    return rows


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row | list[Row]:
    if case["part"] == "unconditional":
        return unconditional(market_config(settings), run)
    return conditional(market_config(settings), run, int(settings["draws"]))


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    unc = rows[rows["part"] == "unconditional"].reset_index(drop=True)
    cond = rows[rows["part"] == "conditional"].rename(columns={"run": "path"})
    out: dict[str, Any] = {"unconditional": [], "conditional": {}}
    n = len(unc)
    blocks = [(0, 100), (0, 400), (400, n), (0, n)]
    for lo, hi in dict.fromkeys(b for b in blocks if b[1] <= n and b[1] - b[0] >= 10):
        part = unc.iloc[lo:hi]
        c, mcse = coverage(part["covered"])
        e = part["effect"] - part["truth"]
        bias, bias_mcse = mean_mcse(e)
        out["unconditional"].append(
            {"runs": f"{lo}-{hi - 1}", "n": len(part), "coverage": c, "mcse": mcse,
             "bias": bias, "bias_mcse": bias_mcse,
             "se_over_sd": float(part["se"].mean() / e.std(ddof=1))}
        )  # fmt: skip
    out["z_excess_kurtosis"] = float(stats.kurtosis((unc["effect"] - unc["truth"]) / unc["se"]))
    c, mcse = coverage(cond["covered"])
    per_path = cond.groupby("path").apply(
        lambda g: g["se"].mean() / g["effect"].std(ddof=1), include_groups=False
    )
    cov_path = cond.groupby("path")["covered"].mean()
    bias, bias_mcse = mean_mcse(cond["effect"] - cond["sample_effect"])
    out["conditional"] = {
        "paths": int(cond["path"].nunique()),
        "draws": int(len(cond) // max(1, cond["path"].nunique())),
        "coverage": c,
        "mcse": mcse,
        "se_over_sd_median": float(per_path.median()),
        "se_over_sd_min": float(per_path.min()),
        "path_coverage_min": float(cov_path.min()),
        "path_coverage_max": float(cov_path.max()),
        "bias": bias,
        "bias_mcse": bias_mcse,
    }
    out["minutes"] = sum(run.seconds) / 60
    out["products"] = market_config(run.options).n_products
    return out


def context(results: Results) -> dict[str, Any]:
    """The saved figures, and whether all runs' coverage is within 2 MC SE of 95%."""
    assert isinstance(results, dict)
    last = results["unconditional"][-1]
    return {
        **results,
        "c": results["conditional"],
        "last": last,
        "mcse_from_95": abs(last["coverage"] - 0.95) / last["mcse"],
        "chance": abs(last["coverage"] - 0.95) < 2 * last["mcse"],
    }


STUDY = Study(
    name="ht-random-days",
    cases=({"part": "unconditional"}, {"part": "conditional", "runs": "paths"}),
    run_one=run_one,
    summarise=summarise,
    results="ht-random-days.json",
    runs=2000,
    options={"paths": 40, "draws": 500, "products": None},
    page=Page("docs/validation.md", "ht_random_days.md.j2", section="ht-random-days"),
    context=context,
)
