"""Finding 1 of #27: does random days' Horvitz-Thompson interval (lag 0) under-cover?

    .venv/bin/python docs/studies/ht_random_days_study.py [--runs 2000] [--paths 40] [--draws 500]

The validation study's table and earlier notes put the coverage of the worker's ``ht`` on random
days at 0.915-0.93 over its first 100-400 runs. This study separates the two sources of
randomness in those runs, always through the path the worker runs (``lab.compare.fit_choice``:
the design's own estimator plan and panel):

1. **Unconditional**, exactly the validation study's runs: products seed 0, run r's demand
   path and design seed as ``lab.compare`` draws them, on the default market over 28 days.
   Run r here is run r there, so the first 100 and 400 rows are the table's own runs; the study
   goes on to ``--runs`` to tell chance from a defect (Monte-Carlo SE about 0.5 points at 2,000).
2. **Conditional on the outcomes**: ``--paths`` demand paths, each with its potential outcomes
   fixed (the market run all-treated and all-control; a check asserts that the observed panel is
   ``where(W, Y1, Y0)``, i.e. no carryover or spillover on this market), and ``--draws`` fresh
   assignments of the design's own keyed coins per path. The target is then the sample's own
   effect ``mean(Y1 - Y0)``, and the variance bound is the design variance it bounds.

Writes docs/figures/ht-random-days.json, which docs/studies/validation_study.py renders into
docs/validation.md ("The four open findings").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from controller.designs import design_matrices  # noqa: E402
from lab.compare import CompareConfig, _run_seed, fit_choice, make_spec  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.market import Market  # noqa: E402
from lab.simulate import experiment_slots, run_spec  # noqa: E402

DESIGN = "random-days"
DAYS = 28
SEED = 0  # the validation study's


def _ht_choice(cfg: CompareConfig, spec):  # type: ignore[no-untyped-def]
    (choice,) = [c for c in cfg.estimators_for(DESIGN, spec) if c.label == "ht"]
    return choice


def _covered(r: dict, target: float) -> bool:
    return bool(r["ci_low"] <= target <= r["ci_high"])


def unconditional(market_cfg: MarketConfig, runs: int) -> pd.DataFrame:
    cfg = CompareConfig(market=market_cfg, runs=runs, seed=SEED, days=DAYS)
    rows = []
    for run in range(runs):
        market = Market(market_cfg, seed=SEED, demand_seed=_run_seed(SEED, run))
        spec = make_spec(DESIGN, market, days=DAYS, seed=_run_seed(SEED + 1, run))
        sim = run_spec(spec, market)
        r = fit_choice(_ht_choice(cfg, spec), sim.panel, seed=run)
        rows.append(
            {"run": run, "effect": r["effect"], "se": r["se"], "truth": sim.truth,
             "covered": _covered(r, sim.truth)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def conditional(market_cfg: MarketConfig, paths: int, draws: int) -> pd.DataFrame:
    cfg = CompareConfig(market=market_cfg, runs=1, seed=SEED, days=DAYS)
    rows = []
    for path in range(paths):
        market = Market(market_cfg, seed=SEED, demand_seed=_run_seed(SEED, path))
        spec = make_spec(DESIGN, market, days=DAYS, seed=_run_seed(SEED + 1, path))
        sim = run_spec(spec, market)
        units = list(market.product_ids)
        slots = experiment_slots(spec, market)
        N, T = sim.matrices.treated.shape
        ones = np.ones((N, T), dtype=bool)
        y1 = np.array([o.units for o in market.run_slots(ones, slots)], dtype=float).T
        y0 = np.array([o.units for o in market.run_slots(~ones, slots)], dtype=float).T
        observed = sim.panel["units"].to_numpy(dtype=float).reshape(N, T)
        if not np.array_equal(np.where(sim.matrices.treated, y1, y0), observed):
            raise SystemExit("a cell's outcome depends on more than its own arm on this market")
        sample_effect = float((y1 - y0).mean())
        choice = _ht_choice(cfg, spec)
        for d in range(draws):
            redraw = spec.model_copy(update={"seed": 1_000_000 + path * draws + d})
            m = design_matrices(redraw, units)
            panel = sim.panel.copy()
            panel["treated"] = m.treated.ravel()
            panel["probability"] = m.probability.ravel()
            panel["units"] = np.where(m.treated, y1, y0).ravel()
            r = fit_choice(choice, panel, seed=d)
            rows.append(
                {"path": path, "draw": d, "effect": r["effect"], "se": r["se"],
                 "sample_effect": sample_effect, "covered": _covered(r, sample_effect)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _cov(x: pd.Series) -> tuple[float, float]:
    c = float(x.astype(bool).mean())
    return c, math.sqrt(c * (1 - c) / len(x))


def summarise(unc: pd.DataFrame, cond: pd.DataFrame) -> dict:
    out: dict = {"unconditional": [], "conditional": {}}
    err = unc["effect"] - unc["truth"]
    n = len(unc)
    blocks = [(0, 100), (0, 400), (400, n), (0, n)]
    for lo, hi in dict.fromkeys(b for b in blocks if b[1] <= n and b[1] - b[0] >= 10):
        part = unc.iloc[lo:hi]
        c, mcse = _cov(part["covered"])
        e = part["effect"] - part["truth"]
        out["unconditional"].append(
            {"runs": f"{lo}-{hi - 1}", "n": len(part), "coverage": c, "mcse": mcse,
             "bias": float(e.mean()), "bias_mcse": float(e.std(ddof=1) / math.sqrt(len(e))),
             "se_over_sd": float(part["se"].mean() / e.std(ddof=1))}
        )  # fmt: skip
    z = err / unc["se"]
    out["z_excess_kurtosis"] = float(stats.kurtosis(z))
    c, mcse = _cov(cond["covered"])
    per_path = cond.groupby("path").apply(
        lambda g: g["se"].mean() / g["effect"].std(ddof=1), include_groups=False
    )
    cov_path = cond.groupby("path")["covered"].mean()
    out["conditional"] = {
        "paths": int(cond["path"].nunique()),
        "draws": int(len(cond) // max(1, cond["path"].nunique())),
        "coverage": c,
        "mcse": mcse,
        "se_over_sd_median": float(per_path.median()),
        "se_over_sd_min": float(per_path.min()),
        "path_coverage_min": float(cov_path.min()),
        "path_coverage_max": float(cov_path.max()),
        "bias": float((cond["effect"] - cond["sample_effect"]).mean()),
        "bias_mcse": float(
            (cond["effect"] - cond["sample_effect"]).std(ddof=1) / math.sqrt(len(cond))
        ),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--paths", type=int, default=40)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--products", type=int, default=None, help="a smaller market (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "ht-random-days.json")
    args = ap.parse_args()
    market_cfg = MarketConfig()
    if args.products:
        market_cfg = MarketConfig(n_products=args.products, n_categories=2)
    t0 = time.monotonic()
    unc = unconditional(market_cfg, args.runs)
    cond = conditional(market_cfg, args.paths, args.draws)
    result = summarise(unc, cond)
    result["minutes"] = (time.monotonic() - t0) / 60
    result["products"] = market_cfg.n_products
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
