"""Validation of ``pricelab plan`` (lab/plan.py): does the power it plans come true?

    .venv/bin/python -m lab.studies planning [--jobs J] [--set realised_runs=200]
        [--set sims=200] [--set aa_sims=1000] [--set plan_jobs=1]

On the simulator's market (lab.market: products with their own levels, trends, weekly profile,
AR(1) and negative-binomial noise, a price effect through each product's elasticity):

1. **Calibration** (a case per price change, -1% and -2%). The realised power is that of each
   design's 28-day experiment run ``realised_runs`` times through the simulator on fresh
   demand draws and assignments (``lab.compare.run_comparison``: ``simulate`` then the
   worker's ``fit_plan``, as ``compare-designs`` does). ``plan`` plans the same experiment at
   the market's true effect on the same 28 days of ten other demand draws under the control
   policy (matched), and on one 180-day history (as an analyst has it), in outcome units and
   as a share.
2. **Type-I error** (a case per design). ``plan`` with no effect (A/A) over ``aa_sims``
   simulations: the share of rejections at 5% for every default estimator of the design.
3. **The MDE.** ``plan`` again at its own reported MDE, with fresh starts and draws: the power
   should be 0.8.
4. **A worked example**: the demo market's MDE for random days, crossover (7-day phases, 2-day
   blackouts) and the optimal switchback at 14, 28 and 56 days.

Each case runs once (its simulations are ``plan``'s and ``compare-designs``' own, on
``plan_jobs`` processes; ``--jobs`` runs the cases side by side). Saves
docs/figures/planning.json (the three tables, and the figures of the 180-day history the page
quotes) and renders docs/planning.md (template ``planning.md.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from controller.spec import CrossoverSettings, ExperimentSpec, OptimalSwitchbackSettings
from lab.compare import CompareConfig, make_spec, market_classes, run_comparison
from lab.config import MarketConfig
from lab.failed_fits import MAX_FAILED_SHARE
from lab.market import Market
from lab.plan import PlanConfig, read_history, run_plan
from lab.simulate import market_facts
from lab.studies.harness import Case, Page, Results, Row, Run, Study
from lab.studies.planning_market import (
    DAYS,
    HISTORIES,
    HISTORY_DAYS,
    SEED,
    history_of,
    market_config,
)

DESIGNS = ("random-days", "crossover", "optimal-switchback", "time-bound", "cluster")
PRICE_CHANGES = (-0.01, -0.02)


def specs_for(
    cfg: MarketConfig, designs: tuple[str, ...] = DESIGNS
) -> list[tuple[str, ExperimentSpec]]:
    market = Market(cfg, seed=SEED)
    classes = market_classes(market)
    return [(d, make_spec(d, market, days=DAYS, seed=1, classes=classes)) for d in designs]


def calibration(change: float, runs: int, sims: int, jobs: int) -> list[Row]:
    """Planned against realised power at a price change of ``change``."""
    cfg = market_config(change)
    real = run_comparison(
        CompareConfig(market=cfg, designs=DESIGNS, runs=runs, seed=SEED, days=DAYS, jobs=jobs)
    )
    # matched: the experiment's own 28 days (the realised runs start at the market's day 0),
    # on demand draws of their own; and one 180-day history, as an analyst has it
    matched = [
        read_history(history_of(cfg, days=DAYS, draw=i + 1), "product", "day", "units")
        for i in range(HISTORIES)
    ]
    long_history = history_of(cfg)
    long_h = read_history(long_history, "product", "day", "units")
    mean_y = float(long_history["units"].mean())
    rows = []
    for design, spec in specs_for(cfg):
        g = real[real["design"] == design]
        truth = float(g["truth"].mean())
        plans: list[pd.DataFrame] = []
        for i, h in enumerate(matched):
            _, table, _ = run_plan(
                [(design, spec)], h, PlanConfig(effect=truth, sims=sims // 2, seed=3 + i, jobs=jobs)
            )
            plans.append(table.set_index("estimator").assign(kind="matched"))
        for relative in (False, True):
            effect = truth / mean_y if relative else truth
            _, table, _ = run_plan(
                [(design, spec)],
                long_h,
                PlanConfig(effect=effect, relative=relative, sims=sims, seed=3, jobs=jobs),
            )
            kind = "long-relative" if relative else "long"
            plans.append(table.set_index("estimator").assign(kind=kind))
        planned = pd.concat(plans)
        for est, ge in g.groupby("estimator", sort=False):
            ok = ge[np.isfinite(ge["pvalue"])]
            mine = planned.loc[[est]]
            m = mine[mine["kind"] == "matched"]
            per_history = m["power"].to_numpy(dtype=float)
            one = mine[mine["kind"] == "long"].iloc[0]
            rel = mine[mine["kind"] == "long-relative"].iloc[0]
            p = float((ok["pvalue"] < 0.05).mean())
            # the planned power's Monte-Carlo SE from its spread over histories
            planned_mcse = float(per_history.std(ddof=1) / math.sqrt(len(per_history)))
            rows.append(
                {
                    "price_change": change,
                    "design": design,
                    "estimator": est,
                    "truth": truth,
                    "realised_power": p,
                    "realised_runs": len(ok),
                    "realised_se": float(ok["se"].mean()),
                    "planned_power": float(m["power"].mean()),
                    "planned_se": float(m["se"].mean()),
                    "planned_power_first": float(one["power"]),
                    "planned_se_first": float(one["se"]),
                    "planned_power_relative_first": float(rel["power"]),
                    "planned_sims": (sims // 2) * HISTORIES,
                    "planned_mcse": planned_mcse,
                    # Monte-Carlo SE of the difference of two independent binomial shares
                    "mc_se": math.sqrt(p * (1 - p) / len(ok) + planned_mcse**2),
                }
            )
    return rows


def type1_and_mde(design: str, aa_sims: int, jobs: int) -> list[Row]:
    """``plan``'s type-I error for ``design`` and its power at its own MDE."""
    cfg = market_config()
    h = read_history(history_of(cfg), "product", "day", "units")
    ((_, spec),) = specs_for(cfg, (design,))
    _, aa, _ = run_plan([(design, spec)], h, PlanConfig(sims=aa_sims, seed=11, jobs=jobs))
    rows = []
    for r in aa.itertuples():
        _, again, _ = run_plan(
            [(design, spec)], h, PlanConfig(effect=r.mde, sims=aa_sims, seed=12, jobs=jobs)
        )
        rows.append(
            {
                "design": design,
                "estimator": r.estimator,
                "sims": r.sims,
                "failed": r.failed,
                "type1": r.type1,
                "mde": r.mde,
                "se": r.se,
                "power_at_mde": float(again.set_index("estimator").loc[r.estimator, "power"]),
            }
        )
    return rows


def worked_example(sims: int, jobs: int) -> list[Row]:
    """The demo market (pricelab demo's defaults: 200 products, -5% price)."""
    cfg = market_config()
    hist = history_of(cfg)
    h = read_history(hist, "product", "day", "units")
    market = Market(cfg, seed=SEED)
    zone = ZoneInfo(cfg.timezone)
    start = datetime.combine(cfg.start_date, dtime(0)).replace(tzinfo=zone)
    base: dict[str, Any] = {
        "treatment_policy": "new",
        "control_policy": "old",
        "start": start,
        "end": start + timedelta(days=28),
        "timezone": cfg.timezone,
        "seed": 1,
    }
    facts = market_facts(market, DAYS)
    products, categories = facts.products, dict(facts.categories)
    specs = [
        ("random-days", ExperimentSpec(id="rd", design="random-days", products=products, **base)),
        (
            "crossover",
            ExperimentSpec(
                id="xo",
                design="crossover",
                clusters=categories,
                crossover=CrossoverSettings(phase_periods=7, blackout_periods=2),
                **base,
            ),
        ),
        (
            "optimal-switchback",
            ExperimentSpec(
                id="os",
                design="optimal-switchback",
                products=products,
                optimal_switchback=OptimalSwitchbackSettings(carryover_order=1),
                **base,
            ),
        ),
    ]
    _, table, _ = run_plan(
        specs, h, PlanConfig(durations=(14, 28, 56), sims=sims, seed=5, jobs=jobs)
    )
    table["mean_units"] = float(hist["units"].mean())
    return table.to_dict("records")  # type: ignore[return-value]


def history_facts() -> dict[str, float]:
    """What the page says of the 180-day history's first draw: its largest demand spike and
    the spread of the products' mean sales over its first and last 28 days."""
    first = Market(market_config(), seed=SEED, demand_seed=10_000 + SEED).simulate_panel(
        np.zeros((200, HISTORY_DAYS), dtype=bool)
    )
    spikes = first[first["outlier"]]
    spike = spikes.loc[spikes["units"].idxmax()]
    wide = first.pivot(index="product", columns="day", values="units").to_numpy()
    return {
        "spike_units": float(spike["units"]),
        "spike_expected": float(spike["y0_expected"]),
        "spread_first": float(wide[:, :DAYS].mean(axis=1).std()),
        "spread_last": float(wide[:, -DAYS:].mean(axis=1).std()),
    }


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row:
    """A case's whole table (its simulations are plan's and compare-designs' own)."""
    jobs = int(settings["plan_jobs"])
    if case["part"] == "example":
        rows = worked_example(settings["sims"], jobs)
    elif case["part"] == "type1-mde":
        rows = type1_and_mde(case["design"], settings["aa_sims"], jobs)
    else:
        rows = calibration(case["price_change"], settings["realised_runs"], settings["sims"], jobs)
    return {"rows": rows}


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    def table(part: str) -> list[Row]:
        return [r for got in rows.loc[rows["part"] == part, "rows"] for r in got]

    return {
        "calibration": table("calibration"),
        "type1_mde": table("type1-mde"),
        "example": table("example"),
        "history": history_facts(),
        "seconds": sum(run.seconds),
    }


def context(results: Results) -> dict[str, Any]:
    """The template's variables: the three tables and the figures drawn from them."""
    assert isinstance(results, dict)
    cal = pd.DataFrame(results["calibration"])
    aa = pd.DataFrame(results["type1_mde"])
    ex = pd.DataFrame(results["example"])
    history = results["history"]
    pooled = cal[(cal["estimator"] == "dm") & (cal["design"] != "crossover")]
    within = cal[cal["design"].isin(["crossover", "time-bound"])]

    def ratio(part: pd.DataFrame) -> str:
        r = part["planned_se_first"] / part["planned_se"]
        return f"{r.min():.2f}-{r.max():.2f}"

    n_within = int(
        (
            (cal["realised_power"] - cal["planned_power"]).abs()
            <= 2 * cal["mc_se"].where(cal["mc_se"] > 0, 1e-9)
        ).sum()
    )
    n = int(aa["sims"].iloc[0])
    calibrated = cal.assign(
        z=[
            abs(r.realised_power - r.planned_power) / r.mc_se if r.mc_se > 0 else 0.0
            for r in cal.itertuples()
        ]
    )
    example = [
        {"design": design, "estimator": est,
         "mde": [float(g.set_index("duration")["mde"].get(d, math.nan)) for d in (14, 28, 56)]}
        for (design, est), g in ex.groupby(["design", "estimator"], sort=False)
    ]  # fmt: skip
    return {
        "HISTORIES": HISTORIES,
        "MAX_FAILED_SHARE": MAX_FAILED_SHARE,
        "cal": calibrated.to_dict("records"),
        "aa": aa.to_dict("records"),
        "cal_frame": cal,
        "aa_frame": aa,
        "ex": ex,
        "example": example,
        "pooled": pooled,
        "within": within,
        "ratio": ratio,
        "n_within": n_within,
        "n": n,
        "half": 1.96 * math.sqrt(0.05 * 0.95 / n),
        "spread": (history["spread_first"], history["spread_last"]),
        "spike": {"units": history["spike_units"], "y0_expected": history["spike_expected"]},
        "math": math,
        "int": int,
        "len": len,
        # section 5, the k-arm plan's own study (lab.studies.planning_arms), as it last ran
        "arms_section": arms_section(),
    }


def arms_section() -> str:
    """Section 5 of the page: the k-arm study's rendered section, or its empty markers while it
    has saved nothing."""
    from lab.studies import planning_arms
    from lab.studies.harness import fragment
    from lab.studies.render import markers

    return fragment(planning_arms.STUDY) or "\n".join(markers("planning-arms"))


STUDY = Study(
    name="planning",
    cases=(
        {"part": "example", "runs": 1},
        *({"part": "type1-mde", "design": d, "runs": 1} for d in DESIGNS),
        *({"part": "calibration", "price_change": c, "runs": 1} for c in PRICE_CHANGES),
    ),
    run_one=run_one,
    summarise=summarise,
    results="planning.json",
    runs=1,
    options={"realised_runs": 200, "sims": 200, "aa_sims": 1000, "plan_jobs": 1},
    page=Page("docs/planning.md", "planning.md.j2"),
    context=context,
    hash_seed=True,  # the cluster design's classes depend on string hashing
)
