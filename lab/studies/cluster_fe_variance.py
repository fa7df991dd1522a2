"""The variance of `fe` on the cluster switchback: class x period clusters (published since
issue #27) against the class clusters published before.

docs/validation.md: on the cluster design at PT4H `fe`'s class-clustered SE is 1.11-1.12 times
its estimate's SD (coverage 0.973 over 2,000 runs), and the conservative-se study traces the
excess to the spread of the classes' own effects (the Neyman term). Each class is in both arms,
so its own effect is estimable: this study removes it from the residuals and, since the design
draws the classes' arms afresh every period, independently of the other periods, clusters by
class x period:

    psi_gt = sum_{i in g} wt_it (yt_it - tau_g wt_it) / sum wt^2,   V = c * sum_gt psi_gt^2

(``wt``, ``yt``: W and Y two-way demeaned over the randomised cells as `fe` does; ``tau_g`` the
class's own coefficient; ``c`` CR1's factor, C/(C-p) for C class-periods and p the effects fitted at their level:
the class and period effects, which class x period clusters do not nest, and the effects). Beside it: `fe` with class clusters (published before), and class x period
clusters without removing the classes' effects, which the worker now publishes
(``WithinProductEstimator(cluster="class_period")``; each run checks that its SE is this
formula's). Same runs as the validation study (its market, seeds and classes); normal intervals
here (1,400 or 4,200 clusters), the published `fe` uses t on its class-periods' df.

    .venv/bin/python -m lab.studies cluster-fe-variance [--runs 400]

Saves docs/figures/cluster-fe-variance.csv (a row per period length and variance), which
lab/studies/validation.py renders into docs/validation.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimators.crossover import two_way_demean
from analysis.panel import Panel
from analysis.worker import panel_from_cells
from controller.designs import get_design
from core.ports import EstimatorPlan
from lab.compare import EstimatorChoice, fit_choice, make_spec, market_classes
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import Market
from lab.simulate import run_spec
from lab.studies.harness import Case, Row, Run, Study, run_seed

SEED = 0  # the validation study's
PERIODS = {"P1D": (timedelta(days=1), 28), "PT4H": (timedelta(hours=4), 14)}
Z = float(stats.norm.ppf(0.975))


def variances(panel: Panel) -> dict[str, float]:
    """tau and the three SEs of one cluster-design panel (cells: the randomised ones)."""
    use = panel.randomised
    Y = np.where(use, panel.Y, 0.0)
    wt = two_way_demean(panel.W.astype(float), use)
    yt = two_way_demean(Y, use)
    sww = float((wt**2).sum())
    tau = float((wt * yt).sum() / sww)
    assert panel.groups is not None
    _, g = np.unique(panel.groups, return_inverse=True)
    g = g.ravel()
    G, T = int(g.max()) + 1, Y.shape[1]
    tau_g = np.bincount(g, weights=(wt * yt).sum(axis=1), minlength=G) / np.maximum(
        np.bincount(g, weights=(wt**2).sum(axis=1), minlength=G), 1e-300
    )
    cell = (g[:, None] * T + np.arange(T)[None, :])[use]
    n_clusters = int(np.unique(cell).size)
    n_periods = int(use.any(axis=0).sum())

    def clustered(resid: np.ndarray, params: int) -> float:
        """CR1 over C class x period clusters with C / (C - p), p the effects fitted at the
        clusters' own level (the class and period effects and tau): the class and period
        effects are not nested in these clusters (HC1 on the class-periods)."""
        psi = np.bincount(cell, weights=(wt * resid)[use], minlength=G * T) / sww
        f = n_clusters / (n_clusters - params)
        return float(f * psi @ psi)

    n_classes = int(np.unique(g[use.any(axis=1)]).size)
    k = n_classes + n_periods  # class and period effects (one of them redundant) and tau
    return {
        "tau": tau,
        "se_class_period": math.sqrt(clustered(yt - tau * wt, k)),
        # each class's own effect replaces tau: n_classes - 1 more effects at their level
        "se_class_effects": math.sqrt(
            clustered(yt - tau_g[g][:, None] * wt, k + n_classes - 1)
        ),
    }


@lru_cache(maxsize=1)
def _classes() -> dict[str, tuple[str, ...]]:
    return market_classes(Market(MarketConfig(), seed=SEED), 12)


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    period, days = PERIODS[case["period"]]
    market = Market(MarketConfig(), seed=SEED, demand_seed=run_seed(SEED, run))
    spec = make_spec(
        "cluster", market, days=days, period=period,
        seed=run_seed(SEED + 1, run), classes=_classes(),
    )  # fmt: skip
    sim = run_spec(spec, market)
    before = fit_choice(
        EstimatorChoice(EstimatorPlan("fe", {"cluster": "class"})), sim.panel, seed=run
    )
    (plan,) = [p for p in get_design("cluster").estimators(spec) if p.name == "fe"]
    published = fit_choice(EstimatorChoice(plan), sim.panel, seed=run)
    v = variances(panel_from_cells(sim.panel, "units"))
    if abs(v["tau"] - before["effect"]) > 1e-9:
        raise LabError(f"run {run}: the panel is not the one fe fitted")
    if abs(published["se"] / v["se_class_period"] - 1.0) > 1e-9:
        raise LabError(f"run {run}: the published fe's SE is not class x period CR1")
    truth = sim.metric_truth("units")
    return [
        {"variance": label, "error": v["tau"] - truth, "se": se, "covered": bool(covered)}
        for label, se, covered in (
            ("fe, class clusters (published before)", before["se"],
             before["ci_low"] <= truth <= before["ci_high"]),
            ("fe, class x period clusters (published)", published["se"],
             published["ci_low"] <= truth <= published["ci_high"]),
            ("class effects removed, class x period clusters", v["se_class_effects"],
             abs(v["tau"] - truth) <= Z * v["se_class_effects"]),
        )
    ]  # fmt: skip


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    out = (
        rows.groupby(["period", "variance"], sort=False)
        .agg(
            runs=("run", "size"),
            mean_se=("se", "mean"),
            emp_sd=("error", "std"),
            bias=("error", "mean"),
            coverage=("covered", "mean"),
        )  # fmt: skip
        .reset_index()
    )
    out["se_ratio"] = out["mean_se"] / out["emp_sd"]
    return out


STUDY = Study(
    name="cluster-fe-variance",
    cases=tuple({"period": p} for p in PERIODS),
    run_one=run_one,
    summarise=summarise,
    results="cluster-fe-variance.csv",
    runs=400,
    hash_seed=True,  # the cluster design's classes depend on string hashing
)
