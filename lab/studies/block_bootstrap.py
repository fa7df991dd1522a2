"""Coverage of the block estimators' bootstrap (``se="bootstrap"``) over seeded panels.

    .venv/bin/python -m lab.studies block-bootstrap [--runs 500] [--set reps=200]

Run s is ``analysis.pricing_dgp.factor_panel(s)``: 30 units x 20 periods, 3 treated from period
15, rank-2 random-walk factors, N(0, 1) noise, tau = 1 (the random scenario of
lab/studies/panel_core.py), fitted by ``make(method, se="bootstrap", seed=s,
replications=reps)`` through the public API. Saves docs/figures/block-bootstrap.csv: per method
the bias with its MC SE, the SD, the mean SE, the median df, the coverage of the reported
interval (Student t with the bootstrap's Welch-Satterthwaite df, with its MC SE) and of a normal
one, and the share of |z| > 3; renders the sentence of docs/analysis-core.md that quotes DID's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimators.registry import make
from analysis.pricing_dgp import factor_panel
from lab.studies.harness import (
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage,
    error_summary,
    grid,
)

TAU = 1.0
Z = 1.959964  # the normal interval's multiplier, as the study has always used


def run_one(case: Case, seed: int, settings: Mapping[str, Any]) -> Row:
    est = make(case["method"], se="bootstrap", seed=seed, replications=int(settings["reps"]))
    res = est.fit(factor_panel(seed)).result_
    lo, hi = res.conf_int()
    return {"effect": res.effect, "se": res.se, "df": res.df, "ci_low": lo, "ci_high": hi}


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    out = []
    for (method,), g in rows.groupby(["method"], sort=False):
        s = error_summary(g["effect"], g["se"], [TAU] * len(g), g["ci_low"], g["ci_high"])
        z = (g["effect"] - TAU) / g["se"]
        normal, normal_mcse = coverage(np.abs(z) <= Z)
        out.append(
            {"method": method, "reps": run.options["reps"], **s,
             "median_df": float(np.median(g["df"])),
             "coverage_normal": normal, "coverage_normal_mcse": normal_mcse,
             "z_over_3": float(np.mean(np.abs(z) > 3))}
        )  # fmt: skip
    return pd.DataFrame(out).assign(seconds=sum(run.seconds))


def context(results: Results) -> dict[str, Any]:
    """DID's row, which docs/analysis-core.md quotes."""
    assert isinstance(results, pd.DataFrame)
    row: dict[str, Any] = results[results["method"] == "did"].iloc[0].to_dict()
    return row


STUDY = Study(
    name="block-bootstrap",
    cases=grid(method=("did",)),
    run_one=run_one,
    summarise=summarise,
    results="block-bootstrap.csv",
    runs=500,
    options={"reps": 200},
    chunk=25,
    page=Page("docs/analysis-core.md", "block_bootstrap.md.j2", section="block-bootstrap"),
    context=context,
)
