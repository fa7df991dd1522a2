"""Validation of ``pricelab plan`` for a price ladder (issue #41 item 6): does each arm's planned
power come true?

    .venv/bin/python -m lab.studies planning_arms [--jobs J] [--set realised_runs=200]
        [--set sims=40] [--set plan_jobs=1]

On the simulator's market of 200 products (as docs/planning.md's other sections, with no
effect modifiers, as a ladder runs), for random days and the crossover (time-bound is left out:
its ``sdid`` per arm is bootstrapped, 200 weight fits a fit, which the study cannot afford):

- **realised**: the design's 28-day example run as the ladder ``LADDER`` beside the list price
  (``compare-designs --ladder``: :func:`lab.compare.run_comparison`), ``realised_runs`` times on
  fresh demand draws and assignments; each arm's realised power is the share of runs whose
  simultaneous interval (as the worker publishes it) excludes 0, its truth the simulator's
  effect of that arm on units over the analysed cells, averaged over the runs;
- **planned**: ``plan`` on the same 28 days of ``HISTORIES`` other demand draws under the
  control policy (lab.studies.planning's matched comparison), once per arm at ``--effect`` that
  arm's truth, ``sims`` simulations per history; the arm's row of each plan. A comparison's
  power depends on its own arm's effect only (a third arm's cells are not in its pair), so the
  plans at the other arms' truths do not enter it. Their A/A fits give the family-wise type-I
  error (``type1_family``) over the histories (each arm's plan on a history has the history's
  seed, so the A/A fits are the same in every arm's plan).

The narrow ladder (1% and 2% steps) keeps the powers off 0 and 1, where a comparison says
something. Saves docs/figures/planning-arms.json and renders the section ``planning-arms`` of
docs/planning.md (template ``planning_arms.md.j2``; docs/planning.md's own template includes
it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lab.compare import CompareConfig, make_spec, run_comparison, summarise
from lab.config import MarketConfig
from lab.market import Market
from lab.plan import PlanConfig, read_history, run_plan
from lab.price import ladder_market
from lab.studies.harness import Page, Results, Row, Run, Study
from lab.studies.planning_market import DAYS, HISTORIES, SEED, history_of

#: the ladder's listed price ratios beside the list price (the control)
LADDER = (0.98, 0.99, 1.01)
#: time-bound is left out: its sdid per arm is bootstrapped (200 weight fits a fit), minutes a run
DESIGNS = ("random-days", "crossover")


def market_config() -> MarketConfig:
    return ladder_market(MarketConfig(n_products=200), "a price ladder")


def design_rows(design: str, runs: int, sims: int, jobs: int) -> list[Row]:
    """Planned against realised power of every arm of ``design``'s ladder."""
    cfg = market_config()
    real = run_comparison(
        CompareConfig(
            market=cfg, designs=(design,), runs=runs, seed=SEED, days=DAYS, jobs=jobs,
            ladder=LADDER,
        )
    )  # fmt: skip
    table = summarise(real)
    spec = make_spec(design, Market(cfg, seed=SEED), days=DAYS, seed=1, ladder=LADDER)
    histories = [
        read_history(history_of(cfg, days=DAYS, draw=i + 1), "product", "day", "units")
        for i in range(HISTORIES)
    ]
    truths = table.groupby("arm", sort=False)["truth"].first()
    plans, own_tests = [], []
    for arm, truth in truths.items():
        for i, h in enumerate(histories):
            fits, planned, _ = run_plan(
                [(design, spec)],
                h,
                PlanConfig(effect=float(truth), sims=sims, seed=3 + i, jobs=jobs),
            )
            plans.append(planned.assign(planned_at=arm, history=i))
            own_tests.append(own_family(fits))
    planned = pd.concat(plans, ignore_index=True)
    own = pd.concat(own_tests).groupby(level=0).mean()
    at_own = planned[planned["arm"] == planned["planned_at"]]
    rows = []
    for r in table.itertuples():
        mine = at_own[(at_own["estimator"] == r.estimator) & (at_own["arm"] == r.arm)]
        per_history = mine["power"].to_numpy(dtype=float)
        same = planned[planned["estimator"] == r.estimator]
        p, n = float(r.sim_power), int(r.runs - r.failed)
        planned_mcse = float(per_history.std(ddof=1) / math.sqrt(len(per_history)))
        rows.append(
            {
                "design": design,
                "estimator": r.estimator,
                "arm": r.arm,
                "primary": bool(r.primary),
                "truth": float(r.truth),
                "realised_power": p,
                "realised_runs": n,
                "realised_coverage": float(r.sim_coverage),
                "family": float(r.family),
                "sim_method": r.sim_method,
                "realised_se": float(r.mean_se),
                "planned_power": float(per_history.mean()),
                "planned_se": float(mine["se"].mean()),
                "planned_mde": float(mine["mde"].mean()),
                "planned_sims": sims * len(per_history),
                "planned_mcse": planned_mcse,
                "type1": float(mine["type1"].mean()),
                "type1_family": float(same["type1_family"].mean()),
                "type1_family_own": float(own[r.estimator]),
                # every arm's plan on a history has the same seed, so the same A/A fits
                "aa_sims": sims * len(histories),
                "mc_se": math.sqrt(p * (1 - p) / n + planned_mcse**2),
            }
        )
    return rows


def own_family(fits: pd.DataFrame) -> pd.Series:
    """Per estimator, the share of a plan's A/A simulations in which some arm's own 95%
    interval (its t or normal quantile, no adjustment) excludes 0: the family-wise rate the
    simultaneous intervals guard against."""
    df = fits["df1"].to_numpy(dtype=float)
    q = np.where(np.isfinite(df), stats.t.ppf(0.975, np.where(np.isfinite(df), df, 1.0)), 1.96)
    rejects = fits.assign(own=np.abs(fits["effect0"]) > q * fits["se0"])
    return rejects.groupby(["estimator", "sim"])["own"].any().groupby(level=0).mean()


def run_one(case: Mapping[str, Any], run: int, settings: Mapping[str, Any]) -> Row:
    """A design's whole table (its simulations are plan's and compare-designs' own)."""
    jobs = int(settings["plan_jobs"])
    return {"rows": design_rows(case["design"], settings["realised_runs"], settings["sims"], jobs)}


def summarise_rows(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    return {
        "rows": [r for got in rows["rows"] for r in got],
        "ladder": list(LADDER),
        "seconds": sum(run.seconds),
    }


def context(results: Results) -> dict[str, Any]:
    assert isinstance(results, dict)
    rows = pd.DataFrame(results["rows"])
    rows["z"] = [
        abs(r.realised_power - r.planned_power) / r.mc_se if r.mc_se > 0 else 0.0
        for r in rows.itertuples()
    ]
    return {
        "rows": rows.to_dict("records"),
        "ladder": results["ladder"],
        "n_within": int((rows["z"] <= 2).sum()),
        "worst": rows.loc[rows["z"].idxmax()].to_dict(),
        "family_max": float(rows["type1_family"].max()),
        "family_range": (float(rows["family"].min()), float(rows["family"].max())),
        "own_range": (float(rows["type1_family_own"].min()), float(rows["type1_family_own"].max())),
        "aa_sims": int(rows["aa_sims"].min()),
        "aa_mcse": math.sqrt(0.05 * 0.95 / int(rows["aa_sims"].min())),
        "minutes": results["seconds"] / 60,
        "runs": int(rows["realised_runs"].max()),
        "sims": int(rows["planned_sims"].max()),
        "HISTORIES": HISTORIES,
        "np": np,
        "len": len,
    }


STUDY = Study(
    name="planning_arms",
    cases=tuple({"design": d, "runs": 1} for d in DESIGNS),
    run_one=run_one,
    summarise=summarise_rows,
    results="planning-arms.json",
    runs=1,
    options={"realised_runs": 200, "sims": 40, "plan_jobs": 1},
    page=Page("docs/planning.md", "planning_arms.md.j2", "planning-arms"),
    context=context,
)
