"""The variance of `fe` on the cluster switchback: class x period clusters (published since
issue #27) against the class clusters published before.

docs/validation.md: on the cluster design at PT4H `fe`'s class-clustered SE is 1.11-1.12 times
its estimate's SD (coverage 0.973 over 2,000 runs), and docs/studies/conservative_se_study.py
traces the excess to the spread of the classes' own effects (the Neyman term). Each class is in
both arms, so its own effect is estimable: this study removes it from the residuals and, since
the design draws the classes' arms afresh every period, independently of the other periods,
clusters by class x period:

    psi_gt = sum_{i in g} wt_it (yt_it - tau_g wt_it) / sum wt^2,   V = c * sum_gt psi_gt^2

(``wt``, ``yt``: W and Y two-way demeaned over the randomised cells as `fe` does; ``tau_g`` the
class's own coefficient; ``c`` CR1's factor, C/(C-1) (n-1)/(n-k) for C class-periods, n cells
and k parameters: the product and period effects, which class x period clusters do not nest,
and the effects). Beside it: `fe` with class clusters (published before), and class x period
clusters without removing the classes' effects, which the worker now publishes
(``WithinProductEstimator(cluster="class_period")``; the script checks that its SE is this
formula's). Same runs as validation_study (its market, seeds and classes); normal intervals
here (1,400 or 4,200 clusters), the published `fe` uses t on its class-periods' df.

    PYTHONHASHSEED=0 .venv/bin/python docs/studies/cluster_fe_variance_study.py --runs 400

Writes docs/figures/cluster-fe-variance.csv (a row per period length and variance).

Result (2026-11-25, 3.4 minutes beside another study): the class-clustered rows reproduce the
tables' earlier ones (P1D 0.970, SE / SD 1.07; PT4H 0.973, 1.11); the published class x period
clusters (CR1's factor, t on min(C, K(T-1)) - 1 df) give SE / SD 0.975 and 0.978, coverage
0.950 and 0.948; removing the classes' own effects first lowers the SE by 2.3% (P1D) and 0.7%
(PT4H) more. So the class clusters' excess is the classes' own effects counted once per class;
class x period clusters count them once per class-period, where they are small next to the
noise.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analysis.estimators.crossover import two_way_demean  # noqa: E402
from analysis.panel import Panel  # noqa: E402
from analysis.worker import panel_from_cells  # noqa: E402
from controller.designs import get_design  # noqa: E402
from core.ports import EstimatorPlan  # noqa: E402
from lab.compare import EstimatorChoice, _run_seed, fit_choice, make_spec, market_classes  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.hashseed import pin_hash_seed  # noqa: E402
from lab.market import Market  # noqa: E402
from lab.simulate import run_spec  # noqa: E402

SEED = 0  # validation_study's
CASES = {"P1D": (timedelta(days=1), 28), "PT4H": (timedelta(hours=4), 14)}
OUT = ROOT / "docs" / "figures" / "cluster-fe-variance.csv"


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
    n_cells, n_clusters = int(use.sum()), int(np.unique(cell).size)
    n_units, n_periods = int(use.any(axis=1).sum()), int(use.any(axis=0).sum())

    def clustered(resid: np.ndarray, params: int) -> float:
        """CR1: the clusters' G/(G-1) and the regression's (n-1)/(n-k); the product and
        period effects are not nested in class x period clusters, so k counts them."""
        psi = np.bincount(cell, weights=(wt * resid)[use], minlength=G * T) / sww
        f = n_clusters / (n_clusters - 1) * (n_cells - 1) / (n_cells - params)
        return float(f * psi @ psi)

    k = n_units + n_periods  # unit and period effects (one of them redundant) and tau
    return {
        "tau": tau,
        "se_class_period": math.sqrt(clustered(yt - tau * wt, k)),
        # each class's own effect replaces tau: G - 1 more parameters
        "se_class_effects": math.sqrt(clustered(yt - tau_g[g][:, None] * wt, k + G - 1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (an SD needs two runs)")
    pin_hash_seed()  # the cluster design's classes depend on string hashing
    market_cfg = MarketConfig()
    classes = market_classes(Market(market_cfg, seed=SEED), 12)
    z = float(stats.norm.ppf(0.975))
    rows = []
    for name, (period, days) in CASES.items():
        for run in range(args.runs):
            market = Market(market_cfg, seed=SEED, demand_seed=_run_seed(SEED, run))
            spec = make_spec(
                "cluster", market, days=days, period=period,
                seed=_run_seed(SEED + 1, run), classes=classes,
            )  # fmt: skip
            sim = run_spec(spec, market)
            before = fit_choice(
                EstimatorChoice(EstimatorPlan("fe", {"cluster": "class"})), sim.panel, seed=run
            )
            (plan,) = [p for p in get_design("cluster").estimators(spec) if p.name == "fe"]
            published = fit_choice(EstimatorChoice(plan), sim.panel, seed=run)
            v = variances(panel_from_cells(sim.panel, "units"))
            if abs(v["tau"] - before["effect"]) > 1e-9:
                raise SystemExit(f"run {run}: the panel is not the one fe fitted")
            if abs(published["se"] / v["se_class_period"] - 1.0) > 1e-9:
                raise SystemExit(f"run {run}: the published fe's SE is not class x period CR1")
            truth = sim.metric_truth("units")
            for label, se, covered in (
                ("fe, class clusters (published before)", before["se"],
                 before["ci_low"] <= truth <= before["ci_high"]),
                ("fe, class x period clusters (published)", published["se"],
                 published["ci_low"] <= truth <= published["ci_high"]),
                ("class effects removed, class x period clusters", v["se_class_effects"],
                 abs(v["tau"] - truth) <= z * v["se_class_effects"]),
            ):  # fmt: skip
                rows.append(
                    {"period": name, "variance": label, "run": run, "error": v["tau"] - truth,
                     "se": se, "covered": bool(covered)}
                )  # fmt: skip
    df = pd.DataFrame(rows)
    out = (
        df.groupby(["period", "variance"], sort=False)
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    print(out.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
