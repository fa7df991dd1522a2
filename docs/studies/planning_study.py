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


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def write_markdown(cal: pd.DataFrame, aa: pd.DataFrame, ex: pd.DataFrame) -> None:
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
    lines = [
        "# Planning an experiment: `pricelab plan`",
        "",
        "<!-- generated by docs/studies/planning_study.py from docs/figures/planning-*.csv;"
        " edit the script, not this file -->",
        "",
        "```",
        "pricelab plan SPEC [SPEC ...] --history PANEL --unit COL --time COL --outcome COL",
        "    [--effect E] [--relative] [--durations 14,28,56] [--sims N] [--seed S]",
        "    [--carryover M] [--json] [--out DIR] [--jobs N]",
        "```",
        "",
        "For each spec, duration and default estimator of the spec's design, `plan` reports the",
        "type-I error (rejections at 5% with no effect), the power at `--effect`, the MDE (the",
        "smallest effect with 80% power at 5%) and the mean standard error, simulated on the",
        "analyst's own history with the designs and estimators that run live:",
        "",
        "- the units are the spec's products found in the history (all of the history's units",
        "  when the spec names none of them, which `plan` says; a spec with data of its own",
        "  products, such as `unit_costs`, is then refused in one sentence: none of its",
        "  products is in the history);",
        "- each simulation places the experiment at a random start inside the history and draws",
        "  its assignment with the controller's code under a fresh seed (arms, probabilities and",
        "  whole-period blackouts, as `pricelab schedule` shows them);",
        "- the effect is added to treated cells, in outcome units or (`--relative`) as a share of",
        "  the cell's outcome; `--carryover M` lets it reach the M periods after a unit leaves",
        "  treatment at a linearly decaying share;",
        "- the estimators are fitted by the analysis worker's own `fit_plan`, twice per",
        "  simulation: on the history as it was (A/A) and with the effect.",
        "",
        "The MDE comes from the two fits: the estimators are linear in the outcome, so each",
        "simulation's estimate at effect e is its A/A estimate plus e times its response to the",
        "effect, and its SE is taken as moving linearly between the two fits (dm's does not",
        "move; HT's variance bound grows with the outcome). The MDE is the smallest e at which",
        "80% of the simulations reject; section 3 checks it by planning again at the MDE.",
        "",
        "Triggered designs are refused: their starts come from competitor undercuts, which a",
        "sales history does not hold. A washout shorter than a period scales every cell by the",
        "share of the period the live panel counts (the outcome after the washout); the",
        "thinning noise of dropping those sales is not modelled.",
        "",
        "`plan` models an effect on the history's outcomes, not a price: a spec's `price_ratio`",
        "is not used, and `plan` says so on its first line (stderr). Give the effect you expect",
        "at that price as `--effect` (e.g. `--relative --effect -0.17` for a 10% rise at an",
        "elasticity of -2). It does not turn a price into an effect with the simulator's demand",
        "model: the simulator's elasticities are made up, not your products'.",
        "",
        "A fit that raises is counted, not fatal, but when more than"
        f" {MAX_FAILED_SHARE:.0%} (`lab.failed_fits.MAX_FAILED_SHARE`) of one spec's,",
        "duration's and estimator's fits fail, `plan` prints no table: it exits 2 with one",
        "sentence naming them, how many failed and the first failure's reason. Fewer failures",
        "are listed below the table. A history of 14 days a month apart (the issue's day-first",
        "dates as they were read month-first: most periods empty) gives:",
        "",
        "```",
        "error: 197 of 200 fits of spec 'myspec' (random-days) with estimator fe at 7 periods"
        " failed, more than the 5% tolerated, so its figures are not shown; the first failed"
        " with PanelError: The within-product difference needs both treated and control cells"
        " among the usable, randomised cells.",
        "```",
        "",
        "All figures below: the simulator's market of 200 products (lab.market; product levels,",
        "trends, weekly profile, AR(1) and negative-binomial noise), a 180-day history under the",
        "control policy on a demand draw of its own, 28-day experiments built by each design's",
        "`example_spec` (as `compare-designs` runs them).",
        "",
        "## 1. Planned power against realised power",
        "",
        "The realised power is that of the design run through the simulator (`simulate`, then",
        "the worker's estimators, as `compare-designs` does) on fresh demand draws; each run",
        "starts at the market's first day. **planned** is `plan`'s on the same 28 days of",
        f"{HISTORIES} other demand draws (the matched comparison: one placement, fresh",
        "assignments), at the market's true effect over the analysed cells, in units.",
        "`|diff| / mc_se` compares the two in Monte-Carlo SEs of the difference (the planned",
        "power's from its spread over the histories). SEs are the A/A fits' (planned) and the",
        "fits with the effect (realised). The last",
        "three columns plan on one 180-day history instead, as an analyst would (in units, and",
        "as a share of each cell's outcome), with its SE.",
        "",
        "| price change | design | estimator | true effect | realised | planned | \\|diff\\| / mc_se | realised SE | planned SE | 180-day history | same, relative | its SE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cal.itertuples():
        z = abs(r.realised_power - r.planned_power) / r.mc_se if r.mc_se > 0 else 0.0
        lines.append(
            f"| {r.price_change:+.0%} | {r.design} | {r.estimator} | {r.truth:.3f} | "
            f"{r.realised_power:.3f} | {r.planned_power:.3f} | {z:.1f} | {r.realised_se:.3f} | "
            f"{r.planned_se:.3f} | {r.planned_power_first:.3f} | "
            f"{r.planned_power_relative_first:.3f} | {r.planned_se_first:.3f} |"
        )
    n_within = int(
        (
            (cal["realised_power"] - cal["planned_power"]).abs()
            <= 2 * cal["mc_se"].where(cal["mc_se"] > 0, 1e-9)
        ).sum()
    )
    lines += [
        "",
        f"Within two Monte-Carlo SEs: {n_within} of {len(cal)} rows "
        f"({int(cal['realised_runs'].min())}-{int(cal['realised_runs'].max())} realised runs and "
        f"{int(cal['planned_sims'].iloc[0])} planned simulations per row).",
        "",
        "A plan is conditional on the history it is given. The 180-day history's SE is",
        f"{ratio(pooled)} times the matched one for the difference in means pooled over cells",
        "(the `dm` of random days and of the cluster design), and",
        f"{ratio(within)} times for the estimators that compare a product with itself",
        "(crossover, time-bound). The pooled difference in means carries the spread between",
        "products, which the market's random-walk trends widen: the SD of the products' mean",
        f"sales is {spread[0]:.1f} over the history's first 28 days and {spread[1]:.1f} over its",
        f"last 28; its largest demand spike is {spike['units']:.0f} units on one product-day",
        f"(expected {spike['y0_expected']:.0f}). Plan on a stretch of history like the one",
        "the experiment will run in; `plan` does not detrend or remove outliers itself.",
        "",
        "## 2. Type-I error and 3. power at the reported MDE",
        "",
        "| design | estimator | sims | type-I error | MDE (units) | mean SE | power at the MDE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in aa.itertuples():
        lines.append(
            f"| {r.design} | {r.estimator} | {r.sims} | {r.type1:.3f} | {_fmt(r.mde, '.3f')} | "
            f"{r.se:.3f} | {r.power_at_mde:.3f} |"
        )
    n = int(aa["sims"].iloc[0])
    half = 1.96 * math.sqrt(0.05 * 0.95 / n)
    lines += [
        "",
        f"With {n} simulations a true 5% rate falls within {0.05 - half:.3f}-{0.05 + half:.3f}"
        " 95% of the time. The power at the MDE varies more than a binomial share of "
        f"{n} (+-{1.96 * math.sqrt(0.16 / n):.3f}): the MDE is itself estimated from {n} "
        "A/A simulations. The target is 0.8 +- 0.05; measured: "
        f"{aa['power_at_mde'].min():.3f}-{aa['power_at_mde'].max():.3f}.",
        "",
        "## 4. Worked example: the demo market",
        "",
        f"MDE in units per product-day (the history's mean is {ex['mean_units'].iloc[0]:.1f}"
        " units per product-day), at 80% power and 5%:",
        "",
        "| design | estimator | 14 days | 28 days | 56 days |",
        "|---|---|---|---|---|",
    ]
    for (design, est), g in ex.groupby(["design", "estimator"], sort=False):
        by = g.set_index("duration")["mde"]
        cells = " | ".join(_fmt(float(by.get(d, math.nan)), ".3f") for d in (14, 28, 56))
        lines.append(f"| {design} | {est} | {cells} |")
    lines += [
        "",
        "Regenerate: `.venv/bin/python docs/studies/planning_study.py`;",
        "`benchmarks/bench_plan.py` times `plan` at 5,000 products x 180 days.",
        "",
    ]
    (ROOT / "docs" / "planning.md").write_text("\n".join(lines))


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
