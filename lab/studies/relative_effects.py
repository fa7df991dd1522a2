"""Relative effects with Fieller intervals, the elasticity, and the decision metrics: what their
intervals cover (docs/relative-effects.md).

    .venv/bin/python -m lab.studies relative-effects [--set seeds=400] [--set metric_runs=200]

1. Relative effects: seeded random-days panels (every product-day an independent draw, a
   multiplicative effect), the difference in means with its arm means' covariance; the
   relative interval by Fieller (analysis.ratio) against the absolute interval divided by the
   control mean (the naive one). Independent cells with the cell-level SE, where the absolute
   interval is exact; and products as clusters with heterogeneous levels.
2. The elasticity: random-days experiments on the market simulator (lab.market, a 5% price
   cut, true elasticities around -2), the within-product Wald estimate (analysis.elasticity)
   against the simulator's truth, pooled as the estimator pools.
3. Decision metrics and variance reduction: every design on the market simulator (the
   demo's market: 200 products, 28 days, unit costs at 70% of the list price), run by the
   controller's own design (lab.simulate.run_spec) and estimated by the worker's own
   functions (analysis.worker.metric_panels, fit_metric) with the design's own estimators;
   per metric the primary estimate (the design's first estimator that measures it) against
   the plain difference in means, and its coverage of the simulator's truth
   (lab.market.Market.metric_truth), absolute and relative.

A run is one seed of one case (a relative case, an elasticity case, or a design's market run);
``seeds`` runs per relative and elasticity case and for random days' metrics, ``metric_runs``
for the other designs. Saves docs/figures/relative-effects.json and renders
docs/relative-effects.md (template ``relative_effects.md.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

from analysis.elasticity import within_product_elasticity
from analysis.errors import AnalysisError
from analysis.estimators.crossover import DifferenceInMeansEstimator
from analysis.estimators.registry import make
from analysis.panel import Panel
from analysis.pricing_dgp import simulate_relative_panel
from analysis.ratio import relative_fields
from analysis.worker import fit_metric, metric_panels
from controller.designs import get_design
from core.ports import EstimatorPlan
from lab.compare import elasticity_experiment, make_spec, market_classes
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec
from lab.studies.harness import Case, Page, Results, Row, Run, Study

RELATIVE_CASES = [
    # cluster, products, days, relative effect, SD of log product levels, mean units a day
    ("cell", 40, 28, 0.08, 0.0, 20.0),
    ("cell", 10, 6, 0.50, 0.0, 20.0),
    ("unit", 40, 28, 0.08, 0.8, 20.0),
    ("unit", 12, 28, 0.50, 1.2, 20.0),
    # where relative intervals fail: few sales, a small and noisy control mean
    ("cell", 10, 6, 0.50, 0.0, 0.3),
    ("unit", 8, 14, 0.08, 1.5, 0.5),
]


ELASTICITY_CASES = [(40, 28), (200, 28), (10, 14)]

METRIC_DESIGNS = (
    "random-days",
    "cluster",
    "crossover",
    "optimal-switchback",
    "triggered",
    "time-bound",
)
METRICS = ("units", "revenue", "profit", "price")


def _fit(plan: EstimatorPlan, panels: dict, metric: str):  # type: ignore[no-untyped-def]
    try:
        return fit_metric(plan, panels, metric)
    except (AnalysisError, ValueError):
        return None


def _with_levels(panel: Panel, level: np.ndarray, k: int = 8) -> Panel:
    """``panel`` with ``k`` noise-free baseline periods before it holding each product's true
    level: the regression adjustment then uses the level itself (no history is better)."""
    n, t = panel.shape
    pre = np.zeros((n, k), dtype=bool)
    assert panel.probability is not None
    return Panel(
        Y=np.hstack([np.repeat(level[:, None], k, axis=1), panel.Y]),
        W=np.hstack([pre, panel.W]),
        units=panel.units,
        times=np.arange(t + k),
        blackout=np.hstack([pre, panel.blackout]),
        probability=np.hstack([np.zeros((n, k)), panel.probability]),
    )


def relative_run(i: int, seed: int) -> list[Row]:
    cluster, n, t, delta, level_sd, level = RELATIVE_CASES[i]
    panel, truth = simulate_relative_panel(seed, n, t, delta, level_sd, level)
    try:
        result = DifferenceInMeansEstimator(cluster=cluster).fit(panel).result
    except AnalysisError:  # no sale in an arm: nothing published, said in one sentence
        return []
    lo, hi = result.conf_int()
    m0 = result.details["mean_control"]
    rel = relative_fields(result)
    low, high = rel["relative_ci_low"], rel["relative_ci_high"]
    bounded = low is not None
    return [
        {"absolute": bool(lo <= truth <= hi),
         "naive": bool(m0 > 0 and lo / m0 <= delta <= hi / m0),
         "bounded": bounded,
         "fieller": bool(bounded and float(cast(float, low)) <= delta <= float(cast(float, high)))}
    ]  # fmt: skip


def elasticity_run(i: int, seed: int) -> list[Row]:
    n, days = ELASTICITY_CASES[i]
    x = elasticity_experiment(seed, n, days)
    result = within_product_elasticity(x.units, x.revenue.Y)
    truth = x.truth()
    ci = result.interval
    hit = result.identified and cast(float, ci.low) <= truth <= cast(float, ci.high)
    return [{"identified": bool(result.identified), "hit": bool(hit),
             "error": result.elasticity - truth}]  # fmt: skip


def metric_run(design: str, r: int, products: int = 200, days: int = 28) -> list[Row]:
    """Run ``r`` of ``design``: a row per metric and published estimator (the primary in bold,
    and for random days' units the oracle bound of a baseline)."""
    market = Market(MarketConfig(n_products=products), seed=0, demand_seed=5000 + r)
    classes = market_classes(market, 10) if design == "cluster" else None
    sim = run_spec(make_spec(design, market, days=days, seed=r, classes=classes), market)
    long = sim.panel
    panels = metric_panels(long)
    plans = get_design(design).estimators(sim.spec)
    level = dict(plans[0].params).get("cluster", "unit") if plans else "unit"
    # the pooled baseline clusters at the design's randomisation unit: a class x period
    # fe's classes (the cluster design's own dm), else the primary's level
    level = {"class_period": "class"}.get(level, level)
    dm = EstimatorPlan("dm", {"cluster": level if level in ("unit", "class") else "unit"})
    rows = []
    for metric in METRICS:
        base = _fit(dm, panels, metric)
        truth, rel_truth = sim.metric_truth(metric), sim.metric_truth(metric, True)
        fits = [(p.label, _fit(p, panels, metric)) for p in plans]
        fits = [(label, x) for label, x in fits if x is not None]
        if fits:
            fits[0] = (f"**{fits[0][0]}**", fits[0][1])
        if design == "random-days" and metric == "units":
            truth_level = long.groupby("product", sort=False)["y0_expected"].mean()
            oracle = _with_levels(
                panels["units"], truth_level.reindex(panels["units"].units).to_numpy()
            )
            fits.append(("cuped on the true levels (oracle)", make("cuped").fit(oracle).result))
        for label, x in fits:
            lo, hi = x.conf_int()
            rel = x.relative()
            bounded = rel["relative_ci_low"] is not None
            rows.append(
                {"metric": metric, "label": label, "err": x.effect - truth, "se": x.se,
                 "dm_se": base.se if base is not None else math.nan,
                 "cov": float(lo <= truth <= hi), "bounded": float(bounded),
                 "rel_cov": float(rel["relative_ci_low"] <= rel_truth <= rel["relative_ci_high"])
                 if bounded else math.nan}
            )  # fmt: skip
    return rows


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    if case["part"] == "relative":
        return relative_run(case["case"], run)
    if case["part"] == "elasticity":
        return elasticity_run(case["case"], run)
    return metric_run(case["design"], run)


CASES: tuple[dict[str, Any], ...] = (
    *({"part": "relative", "case": i, "runs": "seeds"} for i in range(len(RELATIVE_CASES))),
    *({"part": "elasticity", "case": i, "runs": "seeds"} for i in range(len(ELASTICITY_CASES))),
    *({"part": "metric", "design": d, "runs": "seeds" if d == "random-days" else "metric_runs"}
      for d in METRIC_DESIGNS),
)  # fmt: skip


def _relative_table(rows: pd.DataFrame, seeds: int) -> list[dict[str, Any]]:
    out = []
    for i, (cluster, n, t, delta, level_sd, level) in enumerate(RELATIVE_CASES):
        g = rows[(rows["part"] == "relative") & (rows["case"] == i)]
        fitted, bounded = len(g), int(g["bounded"].astype(bool).sum()) if len(g) else 0
        out.append(
            {"cluster": cluster, "products": n, "days": t, "level": level, "delta": delta,
             "level_sd": level_sd, "seeds": seeds, "fitted": fitted, "bounded": bounded,
             "absolute": float(g["absolute"].astype(bool).sum()) / max(fitted, 1),
             "fieller": float(g["fieller"].astype(bool).sum()) / max(bounded, 1),
             "naive": float(g["naive"].astype(bool).sum()) / max(fitted, 1)}
        )  # fmt: skip
    return out


def _elasticity_table(rows: pd.DataFrame, seeds: int) -> list[dict[str, Any]]:
    out = []
    for i, (n, days) in enumerate(ELASTICITY_CASES):
        g = rows[(rows["part"] == "elasticity") & (rows["case"] == i)]
        identified = int(g["identified"].astype(bool).sum())
        e = g["error"].to_numpy(dtype=float)
        out.append(
            {"products": n, "days": days, "seeds": seeds, "identified": identified,
             "coverage": float(g["hit"].astype(bool).sum()) / max(identified, 1),
             "bias": float(e.mean()), "bias_mcse": float(e.std() / np.sqrt(seeds)),
             "sd": float(e.std())}
        )  # fmt: skip
    return out


def _metric_table(rows: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for design in METRIC_DESIGNS:
        g = rows[(rows["part"] == "metric") & (rows["design"] == design)]
        names = list(dict.fromkeys(g["label"]))  # the order they first appeared in
        for metric in METRICS:
            labels = [n for n in names if ((g["metric"] == metric) & (g["label"] == n)).any()]
            if not labels:
                out.append({"design": design, "metric": metric, "label": None})
            for label in labels:
                a = g[(g["metric"] == metric) & (g["label"] == label)]
                err, se, dm_se = (a[k].to_numpy(dtype=float) for k in ("err", "se", "dm_se"))
                n = len(err)
                rel = a["rel_cov"].dropna()
                out.append(
                    {"design": design, "metric": metric, "label": label, "runs": n,
                     "coverage": float(a["cov"].mean()),
                     "relative_coverage": float(rel.mean()) if len(rel) else math.nan,
                     "bounded": int(a["bounded"].sum()), "bias": float(err.mean()),
                     "bias_mcse": float(err.std() / np.sqrt(n)), "mean_se": float(np.mean(se)),
                     "mean_dm_se": float(np.nanmean(dm_se)), "sd": float(err.std()),
                     "se_reduction": float(1 - np.nanmedian(se / dm_se))}
                )  # fmt: skip
    return out


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    seeds = int(run.options["seeds"])
    metric_seconds = sum(
        s for c, s in zip(CASES, run.seconds, strict=True) if c["part"] == "metric"
    )
    return {
        "seeds": seeds,
        "metric_runs": int(run.options["metric_runs"]),
        "seconds": sum(run.seconds),
        "metric_seconds": metric_seconds,
        "relative": _relative_table(rows, seeds),
        "elasticity": _elasticity_table(rows, seeds),
        "metrics": _metric_table(rows),
    }


def context(results: Results) -> dict[str, Any]:
    """The saved tables, and random days' SE reductions on units as the page quotes them
    (rounded to whole percents, as the table shows them)."""
    assert isinstance(results, dict)

    def reduction(label: str) -> float:
        (row,) = [r for r in results["metrics"]
                  if r["design"] == "random-days" and r["metric"] == "units" and r["label"] == label]  # fmt: skip
        return float(format(row["se_reduction"], "+.0%").rstrip("%")) / 100

    units = [
        r for r in results["metrics"] if r["design"] == "random-days" and r["metric"] == "units"
    ]
    return {
        **results,
        "units_rd": reduction(units[0]["label"]),
        "units_oracle": reduction("cuped on the true levels (oracle)"),
    }


STUDY = Study(
    name="relative-effects",
    cases=CASES,
    run_one=run_one,
    summarise=summarise,
    results="relative-effects.json",
    runs=400,
    options={"seeds": 400, "metric_runs": 200},
    page=Page("docs/relative-effects.md", "relative_effects.md.j2"),
    context=context,
    hash_seed=True,  # the cluster design's classes depend on string hashing
)
