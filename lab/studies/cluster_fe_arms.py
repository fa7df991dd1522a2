"""The cluster design's per-arm `fe` at a ladder's first looks: how many class-periods its
class x period SE needs.

The live ladders (docs/validation.md, "Live coverage: three-arm price ladders") found the
cluster design's per-arm `fe` sequences excluding their truths in 38-46% of experiments: with
three arms an arm holds about a third of the classes each period, and at the first looks its
SE was far too small (at some, numerically zero). This study runs the live study's three-arm
cluster ladder (``lab.studies.live_ladder``, as ``streams.live.coverage_arms`` runs it: its
market, classes and spec, 60 products) on fresh seeds, over ``days`` days, and analyses each
through the analysis worker's ``run_once``
(as ``lab.studies.ladder`` does): every per-arm `fe` and `dm` estimate of units and revenue is
scored against the simulator's per-arm truth. An experiment of ``days`` days is a look after
``days`` periods.

    .venv/bin/python -m lab.studies cluster-fe-arms [--runs 200] [--jobs 2]

Saves docs/figures/cluster-fe-arms.json; renders docs/cluster-fe-arms.md, beside
docs/figures/cluster-fe-arms-before.json: this study run on the estimator before its class x
period factor changed (commit 128b2fa with this module copied in, as
``git worktree add /tmp/before 128b2fa`` then ``python -m lab.studies cluster-fe-arms`` there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import NotIdentified
from lab.compare import market_classes
from lab.simulate import run_spec
from lab.studies.harness import (
    FIGURES,
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage_clustered,
    grid,
    run_seed,
)
from lab.studies.ladder import analyse
from lab.studies.live_ladder import ladder_market, ladder_spec

SEED = 5_000_000  # not the live study's seeds (900,000 + ...): fresh experiments
PRODUCTS = 60  # the live study's
METRICS = ("units", "revenue")
ESTIMATORS = ("fe", "dm")


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    seed = run_seed(SEED, run)
    market = ladder_market(PRODUCTS, seed, "x-")
    spec = ladder_spec("cluster", market, int(case["days"]), seed, market_classes(market))
    sim = run_spec(spec, market)
    sink, _, _ = analyse(sim)
    rows: list[Row] = []
    for r in sink.estimates:
        if r.method not in ESTIMATORS or r.metric not in METRICS:
            continue
        if isinstance(r, NotIdentified):
            rows.append({"estimator": r.method, "metric": r.metric, "published": False})
            continue
        truth = sim.metric_truth(r.metric, arm=r.arm)
        lo, hi = r.conf_int(0.05)
        rows.append(
            {"estimator": r.method, "metric": r.metric, "arm": r.arm, "published": True,
             "error": r.effect - truth, "se": r.se, "df": r.df,
             "covered": bool(lo <= truth <= hi), "z": (r.effect - truth) / r.se}
        )  # fmt: skip
    return rows


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    table = []
    for (days, est), g in rows.groupby(["days", "estimator"], sort=True):
        pub = g[g["published"].astype(bool)]
        cov, mcse = coverage_clustered(pub["covered"], pub["run"]) if len(pub) else (np.nan, np.nan)
        # SE over the spread of the errors within each (metric, arm), averaged over them
        ratios = [
            float(h["se"].mean() / h["error"].std(ddof=1))
            for _, h in pub.groupby(["metric", "arm"])
            if len(h) > 1
        ]
        table.append(
            {"days": int(days), "estimator": est, "experiments": run.runs,
             "published": int(pub["run"].nunique()), "estimates": len(pub),
             "coverage": cov, "coverage_mcse": mcse,
             "mean_df": float(pub["df"].mean()) if len(pub) else np.nan,
             "beyond_196": float((pub["z"].abs() > 1.96).mean()) if len(pub) else np.nan,
             "se_sd": float(np.mean(ratios)) if ratios else np.nan}
        )  # fmt: skip
    return {"runs": run.runs, "products": PRODUCTS, "table": table, "seconds": sum(run.seconds)}


BEFORE = "cluster-fe-arms-before.json"


def context(results: Results) -> dict[str, Any]:
    """The saved figures, and the same study's on the estimator before (None if not saved)."""
    assert isinstance(results, dict)
    path = FIGURES / BEFORE
    return {**results, "before": json.loads(path.read_text()) if path.exists() else None}


STUDY = Study(
    name="cluster-fe-arms",
    cases=grid(days=(2, 3, 4, 6, 14)),
    run_one=run_one,
    summarise=summarise,
    results="cluster-fe-arms.json",
    runs=200,
    chunk=10,
    hash_seed=True,  # the classes are Louvain communities (string hashing)
    page=Page("docs/cluster-fe-arms.md", "cluster_fe_arms.md.j2"),
    context=context,
)
