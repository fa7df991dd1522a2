"""Confidence sequences with few clusters: the plain normal-mixture boundary against the one at
the estimate's t reference (analysis.confseq.ConfidenceSequence.radius(se, df)).

    .venv/bin/python -m lab.studies cs [--runs 400]     # 5-12 minutes (100 runs: one or two)

Offline, with the worker's own functions (analysis.worker.metric_panels, fit_metric,
sequence_target): experiments of the live coverage study's size (40 products x 14 days,
Europe/Berlin) on their own simulated markets (run r: market seed 7000 + r), looked at after
every period from the second, each look's truth the market's over the cells analysed by then.
Saves docs/figures/cs-study.csv and renders the ``cs-study`` section of
docs/analysis-advanced.md (template ``cs.md.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd

from analysis.confseq import ConfidenceSequence
from analysis.errors import AnalysisError
from analysis.worker import fit_metric, metric_panels, sequence_target
from controller.designs import get_design
from lab.compare import make_spec, market_classes
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec
from lab.studies.harness import Case, Page, Results, Row, Run, Study, grid

T = 14
FIRST_SEED = 7000


def looks_of(
    design: str, estimator: str, seed: int
) -> list[tuple[int, float, float, float, float]]:
    """(look, estimate, se, df, truth) of units at each look of one experiment."""
    cfg = MarketConfig(n_products=40, start_date=date(2026, 3, 2), timezone="Europe/Berlin")
    market = Market(cfg, seed=seed)
    classes = market_classes(market) if design == "cluster" else None
    spec = make_spec(design, market, days=T, seed=seed, classes=classes)
    sim = run_spec(spec, market)
    df = sim.panel
    # the plan the worker fits for this design (its clustering: by product for the triggered
    # design, by class x period for the cluster switchback's fe, by class for its dm)
    (plan,) = [p for p in get_design(design).estimators(spec) if p.name == estimator]
    out = []
    for k in range(2, T + 1):
        part = df[df["period"] < k]
        try:
            x = fit_metric(plan, metric_panels(part), "units")
        except (AnalysisError, ValueError):
            continue
        cells = sim.matrices.analysed[:, :k]
        if not (math.isfinite(x.se) and x.se > 0 and cells.any()):
            continue
        ordered = part.sort_values(["product", "period"])
        y0, te = (
            ordered[c].to_numpy(float).reshape(cells.shape) * sim.window_share[None, :k]
            for c in ("y0_expected", "true_effect")
        )
        truth = market.metric_truth(cells, y0, te, "units")
        df_k = x.df if x.df is not None else math.inf
        out.append((k, x.effect, x.se, df_k, truth))
    return out


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """One experiment: whether each boundary ever missed, and the last look's widening."""
    looks = looks_of(case["design"], case["estimator"], FIRST_SEED + run)
    if not looks:
        return []  # no look could be fitted: not an experiment of the table
    k0, _, se0, _, _ = looks[0]
    cs = ConfidenceSequence(target_se=sequence_target(se0, k0, T), intersect=False)
    missed = {
        name: any(
            abs(e - t) > float(cs.radius(se, df if use_df else None)) for _, e, se, df, t in looks
        )
        for name, use_df in (("plain", False), ("t", True))
    }
    _, _, se, df, _ = looks[-1]
    return [
        {"missed_plain": missed["plain"], "missed_t": missed["t"], "final_df": df,
         "widening": float(cs.radius(se, df)) / float(cs.radius(se))}
    ]  # fmt: skip


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    out = (
        rows.groupby(["design", "estimator"], sort=False)
        .agg(
            experiments=("run", "size"),
            final_df=("final_df", "median"),
            missed_plain=("missed_plain", "mean"),
            missed_t=("missed_t", "mean"),
            widening=("widening", "median"),
        )
        .reset_index()
    )
    return out.assign(runs=run.runs, seconds=sum(run.seconds))


def context(results: Results) -> dict[str, Any]:
    assert isinstance(results, pd.DataFrame)
    return {
        "rows": results.to_dict("records"),
        "runs": int(results["runs"].iloc[0]),
        "seconds": float(results["seconds"].iloc[0]),
    }


STUDY = Study(
    name="cs",
    cases=grid(design=("triggered",), estimator=("cuped", "dm"))
    + grid(design=("cluster",), estimator=("fe", "dm")),
    run_one=run_one,
    summarise=summarise,
    results="cs-study.csv",
    runs=400,
    page=Page("docs/analysis-advanced.md", "cs.md.j2", section="cs-study"),
    context=context,
    hash_seed=True,  # the cluster design's classes depend on string hashing
)
