"""Validation of ``pricelab plan`` (lab/plan.py): does the power it plans come true?

    .venv/bin/python docs/studies/planning_study.py [--runs 200] [--sims 200] [--aa-sims 1000]

On the simulator's market (lab.market: products with their own levels, trends, weekly profile,
AR(1) and negative-binomial noise, a price effect through each product's elasticity):

1. **Calibration.** The realised power is that of each design's 28-day experiment run
   ``--runs`` times through the simulator on fresh demand draws and assignments
   (``lab.compare.run_comparison``: ``simulate`` then the worker's ``fit_plan``, as
   ``compare-designs`` does), at two price changes (-1% and -2%). ``plan`` plans the same
   experiment at the market's true effect on the same 28 days of ten other demand draws under
   the control policy (matched), and on one 180-day history (as an analyst has it), in
   outcome units and as a share.
2. **Type-I error.** ``plan`` with no effect (A/A) over ``--aa-sims`` simulations: the share of
   rejections at 5% for every default estimator of every design.
3. **The MDE.** ``plan`` again at its own reported MDE, with fresh starts and draws: the power
   should be 0.8.
4. **A worked example**: the demo market's MDE for random days, crossover (7-day phases, 2-day
   blackouts) and the optimal switchback at 14, 28 and 56 days.

Writes docs/figures/planning-*.csv and regenerates docs/planning.md from them.
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

from controller.spec import ExperimentSpec  # noqa: E402
from lab.compare import CompareConfig, make_spec, market_classes, run_comparison  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.failed_fits import MAX_FAILED_SHARE  # noqa: E402
from lab.hashseed import pin_hash_seed  # noqa: E402
from lab.market import Market  # noqa: E402
from lab.plan import PlanConfig, default_jobs, read_history, run_plan  # noqa: E402
from lab.simulate import market_facts  # noqa: E402
from lab.studies.render import render_text  # noqa: E402

FIG = ROOT / "docs" / "figures"
DESIGNS = ("random-days", "crossover", "optimal-switchback", "time-bound", "cluster")
HISTORY_DAYS = 180
DAYS = 28
SEED = 7
PRICE_CHANGES = (-0.01, -0.02)
#: 28-day histories (demand draws of their own) the calibration plans on
HISTORIES = 10


def market_config(price_change: float = -0.05) -> MarketConfig:
    return MarketConfig(n_products=200, price_change=price_change)


def history_of(cfg: MarketConfig, days: int = HISTORY_DAYS, draw: int = 0) -> pd.DataFrame:
    """The market under the control policy, on a demand draw no realised run uses."""
    market = Market(cfg, seed=SEED, demand_seed=10_000 + SEED + draw)
    W = np.zeros((cfg.n_products, days), dtype=bool)
    return market.simulate_panel(W)[["product", "day", "units"]]


def specs_for(
    cfg: MarketConfig, designs: tuple[str, ...] = DESIGNS
) -> list[tuple[str, ExperimentSpec]]:
    market = Market(cfg, seed=SEED)
    classes = market_classes(market)
    return [(d, make_spec(d, market, days=DAYS, seed=1, classes=classes)) for d in designs]


def calibration(runs: int, sims: int, jobs: int) -> pd.DataFrame:
    rows = []
    for change in PRICE_CHANGES:
        cfg = market_config(change)
        t0 = time.perf_counter()
        real = run_comparison(
            CompareConfig(market=cfg, designs=DESIGNS, runs=runs, seed=SEED, days=DAYS, jobs=jobs)
        )
        print(f"realised runs at {change:+.0%}: {time.perf_counter() - t0:.0f} s", flush=True)
        # matched: the experiment's own 28 days (the realised runs start at the market's day
        # 0), on demand draws of their own; and one 180-day history, as an analyst has it
        matched = [
            read_history(history_of(cfg, days=DAYS, draw=i + 1), "product", "day", "units")
            for i in range(HISTORIES)
        ]
        long_history = history_of(cfg)
        long_h = read_history(long_history, "product", "day", "units")
        mean_y = float(long_history["units"].mean())
        for design, spec in specs_for(cfg):
            g = real[real["design"] == design]
            truth = float(g["truth"].mean())
            plans: list[pd.DataFrame] = []
            for i, h in enumerate(matched):
                _, table, _ = run_plan(
                    [(design, spec)],
                    h,
                    PlanConfig(effect=truth, sims=sims // 2, seed=3 + i, jobs=jobs),
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
                rows.append(
                    {
                        "price_change": change,
                        "design": design,
                        "estimator": est,
                        "truth": truth,
                        "realised_power": float((ok["pvalue"] < 0.05).mean()),
                        "realised_runs": len(ok),
                        "realised_se": float(ok["se"].mean()),
                        "planned_power": float(m["power"].mean()),
                        "planned_se": float(m["se"].mean()),
                        "planned_power_first": float(one["power"]),
                        "planned_se_first": float(one["se"]),
                        "planned_power_relative_first": float(rel["power"]),
                        "planned_sims": (sims // 2) * HISTORIES,
                        # the planned power's Monte-Carlo SE from its spread over histories
                        "planned_mcse": float(
                            per_history.std(ddof=1) / math.sqrt(len(per_history))
                        ),
                    }
                )
        print(f"planned at {change:+.0%}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = pd.DataFrame(rows)
    # Monte-Carlo SE of the difference of two independent binomial shares
    p = out["realised_power"]
    out["mc_se"] = np.sqrt(p * (1 - p) / out["realised_runs"] + out["planned_mcse"] ** 2)
    return out


def type1_and_mde(aa_sims: int, jobs: int) -> pd.DataFrame:
    cfg = market_config()
    h = read_history(history_of(cfg), "product", "day", "units")
    rows = []
    for design, spec in specs_for(cfg):
        _, aa, _ = run_plan([(design, spec)], h, PlanConfig(sims=aa_sims, seed=11, jobs=jobs))
        for r in aa.itertuples():
            _, again, _ = run_plan(
                [(design, spec)], h, PlanConfig(effect=r.mde, sims=aa_sims, seed=12, jobs=jobs)
            )
            power = float(again.set_index("estimator").loc[r.estimator, "power"])
            rows.append(
                {
                    "design": design,
                    "estimator": r.estimator,
                    "sims": r.sims,
                    "failed": r.failed,
                    "type1": r.type1,
                    "mde": r.mde,
                    "se": r.se,
                    "power_at_mde": power,
                }
            )
        print(f"type-I and MDE: {design} done", flush=True)
    return pd.DataFrame(rows)


def worked_example(sims: int, jobs: int) -> pd.DataFrame:
    """The demo market (pricelab demo's defaults: 200 products, -5% price)."""
    cfg = market_config()
    hist = history_of(cfg)
    h = read_history(hist, "product", "day", "units")
    market = Market(cfg, seed=SEED)
    zone = ZoneInfo(cfg.timezone)
    start = datetime.combine(cfg.start_date, dtime(0)).replace(tzinfo=zone)
    base = {
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
                crossover={"phase_periods": 7, "blackout_periods": 2},
                **base,
            ),
        ),
        (
            "optimal-switchback",
            ExperimentSpec(
                id="os",
                design="optimal-switchback",
                products=products,
                optimal_switchback={"carryover_order": 1},
                **base,
            ),
        ),
    ]
    _, table, _ = run_plan(
        specs, h, PlanConfig(durations=(14, 28, 56), sims=sims, seed=5, jobs=jobs)
    )
    table["mean_units"] = float(hist["units"].mean())
    return table


def markdown(cal: pd.DataFrame, aa: pd.DataFrame, ex: pd.DataFrame) -> str:
    """docs/planning.md from the saved tables (and the history's first draw, re-simulated)."""
    first = Market(market_config(), seed=SEED, demand_seed=10_000 + SEED).simulate_panel(
        np.zeros((200, HISTORY_DAYS), dtype=bool)
    )
    spikes = first[first["outlier"]]
    spike = spikes.loc[spikes["units"].idxmax()]
    wide = first.pivot(index="product", columns="day", values="units").to_numpy()
    pooled = cal[(cal["estimator"] == "dm") & (cal["design"] != "crossover")]
    within = cal[cal["design"].isin(["crossover", "time-bound"])]

    def ratio(rows: pd.DataFrame) -> str:
        r = rows["planned_se_first"] / rows["planned_se"]
        return f"{r.min():.2f}-{r.max():.2f}"

    spread = (float(wide[:, :DAYS].mean(axis=1).std()), float(wide[:, -DAYS:].mean(axis=1).std()))
    n_within = int(
        (
            (cal["realised_power"] - cal["planned_power"]).abs()
            <= 2 * cal["mc_se"].where(cal["mc_se"] > 0, 1e-9)
        ).sum()
    )
    n = int(aa["sims"].iloc[0])
    half = 1.96 * math.sqrt(0.05 * 0.95 / n)
    calibration = cal.assign(
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
    # the page's prose is a template (lab/studies/templates/planning.md.j2)
    names = {
        **globals(),
        **locals(),
        "cal": calibration.to_dict("records"),
        "aa": aa.to_dict("records"),
        "cal_frame": cal,
        "aa_frame": aa,
        "int": int,
        "len": len,
        "MAX_FAILED_SHARE": MAX_FAILED_SHARE,
    }
    return render_text("planning.md.j2", names)


def write_markdown(cal: pd.DataFrame, aa: pd.DataFrame, ex: pd.DataFrame) -> None:
    (ROOT / "docs" / "planning.md").write_text(markdown(cal, aa, ex))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--aa-sims", type=int, default=1000)
    ap.add_argument("--only-markdown", action="store_true", help="Rewrite planning.md from CSVs.")
    args = ap.parse_args()
    pin_hash_seed()  # the cluster design's classes depend on string hashing
    FIG.mkdir(parents=True, exist_ok=True)
    paths = [FIG / f"planning-{n}.csv" for n in ("calibration", "type1-mde", "example")]
    if not args.only_markdown:
        jobs = default_jobs()
        t0 = time.perf_counter()
        ex = worked_example(args.sims, jobs)
        ex.to_csv(paths[2], index=False)
        aa = type1_and_mde(args.aa_sims, jobs)
        aa.to_csv(paths[1], index=False)
        cal = calibration(args.runs, args.sims, jobs)
        cal.to_csv(paths[0], index=False)
        print(f"done in {time.perf_counter() - t0:.0f} s")
    write_markdown(*(pd.read_csv(p) for p in paths))
    print(f"wrote {ROOT / 'docs' / 'planning.md'}")


if __name__ == "__main__":
    main()
