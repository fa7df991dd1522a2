"""``pricelab plan`` at scale: a 5,000-product x 180-day history, 4 designs, 200 simulations each.

The history is a gamma-Poisson sales panel (each product its own mean, weekly seasonality,
day-to-day noise). Four 28-day specs - random days, crossover (7-day phases, 2-day blackouts),
optimal switchback (carryover order 1) and time-bound (14-day pre-period) - are planned with
their default estimators, as ``pricelab plan`` runs them (every CPU this process may use).

Baseline in the same run, when it is installed (``pip install cluster-experiments==0.31.0``;
not a pricelab dependency): cluster-experiments' simulation power analysis on the same data -
the same products over one 28-day window, each product-day randomised (the random-days design)
and analysed by OLS clustered by product, which is what pricelab's random-days ``dm`` fits. It
is timed over fewer simulations (``--ce-sims``); the ratio compares seconds per simulation of
one design with one estimator.

With ``--ladder``, each run also plans a four-arm random-days ladder (list price and three
prices, a quarter of the cells each) on the same history: fe and dm for each of the three arms
against the control, with the simultaneous critical values (issue #41), timed apart from the
four designs. With ``--cpu-sims N``, the CPU seconds of each design's plan (and the ladder's)
in this process alone (``jobs=1``, N simulations, seed 0): on a shared machine wall time is
mostly the other jobs' load, CPU time much less so.

Usage: .venv/bin/python benchmarks/bench_plan.py [--products 5000] [--days 180] [--sims 200]
       [--runs 3] [--ce-sims 20] [--ladder] [--cpu-sims 30]
Target: <= 60 s per run of the four designs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import median_report  # noqa: E402
from controller.spec import ExperimentSpec  # noqa: E402
from lab.plan import History, PlanConfig, default_jobs, run_plan  # noqa: E402

START = datetime(2026, 6, 1, tzinfo=UTC)
DAYS = 28


def history(n: int, days: int, seed: int = 0) -> History:
    rng = np.random.default_rng(seed)
    mean = rng.gamma(1.5, 4.0, n)
    week = 1.0 + 0.25 * np.sin(2 * np.pi * np.arange(days) / 7)
    lam = mean[:, None] * week[None, :] * rng.gamma(8.0, 1 / 8.0, (n, days))
    units = tuple(f"P{i:05d}" for i in range(n))
    return History(rng.poisson(lam).astype(float), units, tuple(range(days)))


def specs(units: tuple[str, ...]) -> list[tuple[str, ExperimentSpec]]:
    classes = {f"c{j:02d}": units[j::50] for j in range(50)}
    base = {
        "treatment_policy": "new",
        "control_policy": "old",
        "start": START,
        "end": START + timedelta(days=DAYS),
        "seed": 1,
    }
    return [
        ("random-days", ExperimentSpec(id="rd", design="random-days", products=units, **base)),
        (
            "crossover",
            ExperimentSpec(
                id="xo",
                design="crossover",
                clusters=classes,
                crossover={"phase_periods": 7, "blackout_periods": 2},
                **base,
            ),
        ),
        (
            "optimal-switchback",
            ExperimentSpec(
                id="os",
                design="optimal-switchback",
                products=units,
                optimal_switchback={"carryover_order": 1},
                **base,
            ),
        ),
        (
            "time-bound",
            ExperimentSpec(
                id="tb",
                design="time-bound",
                clusters=classes,
                time_bound={"start_period": 14},
                **base,
            ),
        ),
    ]


def ladder(units: tuple[str, ...]) -> ExperimentSpec:
    """A four-arm random-days price ladder on ``units``."""
    arms = [
        {"name": "list", "policy": "list", "price_ratio": 1.0, "allocation": 0.25, "control": True},
        *(
            {"name": f"p{round(r * 100)}", "policy": f"p{r}", "price_ratio": r, "allocation": 0.25}
            for r in (0.90, 0.95, 1.05)
        ),
    ]
    return ExperimentSpec(
        id="ladder",
        design="random-days",
        products=units,
        arms=arms,
        start=START,
        end=START + timedelta(days=DAYS),
        seed=1,
    )


def cluster_experiments_seconds_per_sim(h: History, sims: int) -> float | None:
    try:
        from cluster_experiments import PowerAnalysis
    except ImportError:
        return None
    n = len(h.units)
    df = pd.DataFrame(
        {
            "product": np.repeat(np.array(h.units), DAYS),
            "day": np.tile(np.arange(DAYS), n),
            "target": h.Y[:, :DAYS].ravel(),
        }
    )
    pw = PowerAnalysis.from_dict(
        {
            "analysis": "clustered_ols",
            "perturbator": "constant",
            "splitter": "clustered",
            "cluster_cols": ["product", "day"],
            "n_simulations": sims,
            "seed": 0,
        }
    )
    # clustered_ols clusters by cluster_cols; by product, as pricelab's dm does
    pw.analysis.cluster_cols = ["product"]
    t0 = time.perf_counter()
    pw.power_analysis(df, average_effect=0.1)
    return (time.perf_counter() - t0) / sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ce-sims", type=int, default=20)
    ap.add_argument("--ladder", action="store_true", help="also time a four-arm ladder")
    ap.add_argument("--cpu-sims", type=int, default=0, help="CPU seconds, one process")
    args = ap.parse_args()

    h = history(args.products, args.days)
    planned = specs(h.units)
    jobs = default_jobs()
    print(
        f"history {args.products:,} products x {args.days} days; 4 designs x {args.sims} "
        f"simulations of {DAYS} days; {jobs} worker processes"
    )
    totals: list[float] = []
    per_design: dict[str, list[float]] = {name: [] for name, _ in planned}
    rd_per_sim: list[float] = []
    ce: list[float] = []
    ladder_seconds: list[float] = []
    for run in range(args.runs):
        t_run = time.perf_counter()
        for name, spec in planned:
            t0 = time.perf_counter()
            _, table, _ = run_plan(
                [(name, spec)], h, PlanConfig(sims=args.sims, seed=run, jobs=jobs)
            )
            per_design[name].append(time.perf_counter() - t0)
            if run == 0:
                for r in table.itertuples():
                    print(
                        f"  {name:>18} {r.estimator:>9}: type1 {r.type1:.3f}  mde {r.mde:.3f}  "
                        f"se {r.se:.4f}  failed {r.failed}"
                    )
        totals.append(time.perf_counter() - t_run)
        # random days (dm and ht), one process: the per-simulation cost next to the baseline's
        rd = planned[0][1]
        t0 = time.perf_counter()
        run_plan([("rd", rd)], h, PlanConfig(sims=20, seed=run, jobs=1))
        rd_per_sim.append((time.perf_counter() - t0) / 20)
        got = cluster_experiments_seconds_per_sim(h, args.ce_sims)
        if got is not None:
            ce.append(got)
        print(f"run {run + 1}: {totals[-1]:.1f} s for the four designs")
        if args.ladder:
            t0 = time.perf_counter()
            _, table, _ = run_plan(
                [("ladder", ladder(h.units))], h, PlanConfig(sims=args.sims, seed=run, jobs=jobs)
            )
            ladder_seconds.append(time.perf_counter() - t0)
            if run == 0:
                for r in table.itertuples():
                    print(
                        f"  {'ladder':>18} {r.estimator:>4} {r.arm:>4}: type1 {r.type1:.3f}  "
                        f"family {r.type1_family:.3f}  mde {r.mde:.3f}  se {r.se:.4f}  "
                        f"{r.sim_method}"
                    )
            print(f"run {run + 1}: {ladder_seconds[-1]:.1f} s for the four-arm ladder")
    print(median_report("four designs, seconds", totals, "{:.1f}".format))
    for name, values in per_design.items():
        print(median_report(f"  {name}, seconds", values, "{:.1f}".format))
    if ladder_seconds:
        print(
            median_report(
                "  four-arm ladder (fe, dm x 3 arms), seconds", ladder_seconds, "{:.1f}".format
            )
        )
    print(
        median_report(
            "random days (dm and ht, both fits), one process, seconds per simulation",
            rd_per_sim,
            "{:.3f}".format,
        )
    )
    if ce:
        print(median_report("cluster-experiments, seconds per simulation", ce, "{:.3f}".format))
        ratio = statistics.median(ce) / statistics.median(rd_per_sim)
        print(
            f"ratio: cluster-experiments takes {ratio:.1f}x pricelab's time per random-days "
            "simulation (pricelab's also fits ht and an A/A and an effect fit per simulation)"
        )
    else:
        print("cluster-experiments is not installed: pip install cluster-experiments==0.31.0")
    median = statistics.median(totals)
    verdict = "met" if median <= 60.0 else "NOT met"
    print(f"target: <= 60 s for the four designs; median {median:.1f} s: {verdict}")
    if args.cpu_sims:
        timed = planned + ([("ladder", ladder(h.units))] if args.ladder else [])
        for name, spec in timed:
            t0 = time.process_time()
            run_plan([(name, spec)], h, PlanConfig(sims=args.cpu_sims, seed=0, jobs=1))
            print(f"CPU seconds, one process, {args.cpu_sims} simulations: {name} "
                  f"{time.process_time() - t0:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
