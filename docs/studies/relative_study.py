"""Regenerates docs/relative-effects.md: coverage of relative intervals and of the elasticity.

    python docs/studies/relative_study.py [--seeds 400] [--out docs/relative-effects.md]

1. Relative effects: seeded random-days panels (every product-day an independent draw, a
   multiplicative effect), the difference in means with its arm means' covariance; the
   relative interval by Fieller (analysis.ratio) against the absolute interval divided by the
   control mean (the naive one). Independent cells with the cell-level SE, where the absolute
   interval is exact; and products as clusters with heterogeneous levels.
2. The elasticity: random-days experiments on the market simulator (lab.market, a 5% price
   cut, true elasticities around -2), the within-product Wald estimate (analysis.elasticity)
   against the simulator's truth, pooled as the estimator pools.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.elasticity import within_product_elasticity
from analysis.estimators.crossover import DifferenceInMeansEstimator
from analysis.panel import Panel
from analysis.ratio import relative_fields
from lab.compare import make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec

ROOT = Path(__file__).resolve().parents[2]


def switchback(seed: int, n: int, t: int, delta: float, level_sd: float) -> tuple[Panel, float]:
    """A random-days panel and its absolute estimand (delta x the treated cells' expected
    control outcome)."""
    rng = np.random.default_rng(seed)
    level = 20.0 * np.exp(level_sd * rng.normal(size=n))[:, None]
    w = rng.random((n, t)) < 0.5
    y0 = level * np.exp(0.5 * rng.normal(size=(n, t)) - 0.125)
    y = rng.poisson(np.where(w, y0 * (1 + delta), y0)).astype(float)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), t),
            "period": np.tile(np.arange(t), n),
            "y": y.ravel(),
            "w": w.ravel().astype(int),
        }
    )
    panel = Panel.from_long(df, unit="unit", time="period", outcome="y", treated="w")
    return panel, float(delta * np.broadcast_to(level, (n, t))[w].mean())


RELATIVE_CASES = [
    # cluster, products, days, relative effect, SD of log product levels
    ("cell", 40, 28, 0.08, 0.0),
    ("cell", 10, 6, 0.50, 0.0),
    ("unit", 40, 28, 0.08, 0.8),
    ("unit", 12, 28, 0.50, 1.2),
]


def relative_rows(seeds: int) -> list[str]:
    rows = []
    for cluster, n, t, delta, level_sd in RELATIVE_CASES:
        absolute = fieller = naive = bounded = 0
        for seed in range(seeds):
            panel, truth = switchback(seed, n, t, delta, level_sd)
            result = DifferenceInMeansEstimator(cluster=cluster).fit(panel).result
            lo, hi = result.conf_int()
            absolute += lo <= truth <= hi
            m0 = result.details["mean_control"]
            naive += lo / m0 <= delta <= hi / m0
            rel = relative_fields(result)
            if rel["relative_ci_low"] is not None:
                bounded += 1
                fieller += rel["relative_ci_low"] <= delta <= rel["relative_ci_high"]
        rows.append(
            f"| {cluster} | {n} x {t} | {delta:+.0%} | {level_sd} | {absolute / seeds:.3f} | "
            f"{fieller / max(bounded, 1):.3f} ({bounded}) | {naive / seeds:.3f} |"
        )
    return rows


ELASTICITY_CASES = [(40, 28), (200, 28), (10, 14)]


def elasticity_rows(seeds: int) -> list[str]:
    rows = []
    for n, days in ELASTICITY_CASES:
        hits = identified = 0
        errors = []
        for seed in range(seeds):
            market = Market(MarketConfig(n_products=n), seed=seed)
            sim = run_spec(make_spec("random-days", market, days=days, seed=seed), market)
            kw = dict(unit="unit", time="period", treated="treated", blackout="blackout",
                      probability="probability")  # fmt: skip
            units = Panel.from_long(sim.panel, outcome="units", **kw)
            revenue = Panel.from_long(sim.panel, outcome="revenue", **kw)
            price = Panel.from_long(sim.panel, outcome="price", **kw)
            result = within_product_elasticity(units, revenue.Y)
            use = units.usable & (units.probability > 0) & (units.probability < 1)
            t, c = use & units.W, use & ~units.W
            nt, nc = t.sum(axis=1), c.sum(axis=1)
            ok = np.flatnonzero((nt > 0) & (nc > 0))
            index = {p: i for i, p in enumerate(market.product_ids)}
            lift = np.array([market.treatment_log_lift[index[units.units[i]]] for i in ok])
            dp = np.log([price.Y[i][t[i]].mean() / price.Y[i][c[i]].mean() for i in ok])
            weight = (nt * nc / (nt + nc))[ok]
            truth = float(weight @ lift / (weight @ dp))
            errors.append(result.elasticity - truth)
            if result.identified:
                identified += 1
                hits += result.interval.low <= truth <= result.interval.high
        e = np.asarray(errors)
        rows.append(
            f"| {n} x {days} | {identified}/{seeds} | {hits / max(identified, 1):.3f} | "
            f"{e.mean():+.3f} ({e.std() / np.sqrt(seeds):.3f}) | {e.std():.3f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "relative-effects.md")
    args = ap.parse_args()
    t0 = time.time()
    rel = relative_rows(args.seeds)
    ela = elasticity_rows(args.seeds)
    text = f"""# Relative effects and the elasticity: what their intervals cover

Regenerated by `python docs/studies/relative_study.py --seeds {args.seeds}` ({time.time() - t0:.0f} s).

## Relative effects

`relative_effect = effect / control_mean`, the control mean being the counterfactual mean of
the compared cells. Its interval is Fieller's (`analysis/ratio.py`) on the cluster-robust
covariance of the two arm means that the difference in means already estimates (CR2, with the
Satterthwaite df of the pivot `m1 - R m0` at the estimate): it carries the control mean's own
uncertainty and its covariance with the treated mean (the same product sits in both arms of
a switchback). When the control mean is not distinguishable from zero at the level asked
(Fieller's g >= 1) there is no bounded interval: the fields are empty and `relative_note`
says so. The naive interval divides the absolute one by the point control mean.

{args.seeds} seeded random-days panels per row; coverage of the 95% intervals; the bounded
count in brackets. With cluster `cell` every product-day is an independent draw and the
cell-level SE is the exact one; with `unit` products are clusters with heterogeneous levels
(SD of log level), as the live worker clusters.

| cluster | products x days | true relative effect | level SD | absolute | Fieller (bounded) | naive |
|---|---|---|---|---|---|---|
{chr(10).join(rel)}

Reading: where the absolute interval is exact, Fieller's covers at the nominal rate and the
naive one does not, most clearly for a large effect on a small control mean. Where the
product-clustered SE is conservative (heterogeneous levels, random days), both follow it.
With few, very heterogeneous products, the control mean itself is too uncertain for a
bounded interval in some experiments (products treated as a sample), and pricelab says so
rather than publish an absurd width.

## The elasticity

The arc elasticity the price experiment identifies: log change in units over log change in
the price actually paid, the within-product Wald estimate with the arm as the instrument
(`analysis/elasticity.py`), Fieller's interval with products as clusters. The truth is the
simulator's: each product's true log lift in expected units over the log change in its own
price, pooled with the estimator's weights. {args.seeds} seeded random-days experiments per
row (a 5% price cut, true elasticities about -2).

| products x days | identified | coverage | bias (MC SE) | SD |
|---|---|---|---|---|
{chr(10).join(ela)}
"""
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
