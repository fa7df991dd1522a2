"""Live coverage: seeded experiments of every design through real worker processes.

    .venv/bin/python -m streams.live.coverage                  # the study: both parts below
    .venv/bin/python -m streams.live.coverage --only two-arm   # two arms (about 75 min)
    .venv/bin/python -m streams.live.coverage --only arms      # three-arm price ladders
    .venv/bin/python -m streams.live.coverage --quick --out /tmp/lc   # a smoke run

Not a :class:`lab.studies.harness.Study`: the harness runs independent (case, run) pairs in a
pool of processes, each a function of its seed; here the unit is a *batch*, a set of
experiments driven together in lock-step through one controller and one analysis worker
process on the one embedded broker and Redis the whole study shares, with a kill of the
analysis worker drawn for every other batch from one stream (seed 20261123) over the batches.
So this module runs its batches itself, one after another, and takes its statistics from the
harness (:func:`~lab.studies.harness.coverage`, :func:`~lab.studies.harness.mean_mcse`). It
lives in ``streams.live``, beside the driver and the embedded stack it runs, not in
``lab.studies``: the tools layer may not import the edge (tests/unit/project/test_boundaries.py), and
the edge may use the tools.

What runs: the embedded stack (Tansu and redis-server), and for each batch a controller worker
and an analysis worker as separate processes, as in production. A batch is a set of
experiments that share one calendar (every design, ``--copies`` times), each on its own
simulated market of its own products; :class:`streams.live.driver.LiveDriver` drives them in
lock-step: flips read from
the assignment topic, sales (and competitor prices for the triggered design) sent to the
broker, and one look of the analysis worker per period, recorded from the estimates topic. In
every other batch the analysis worker is killed with SIGKILL at a seeded period and restarted.

Nothing here re-implements a design or an estimator: what is measured is what the live worker
published. The truth of a look is the market's true effect over the cells the experiment had
analysed by then, scaled to the analysis window (see streams/live/driver.py).

Reported per design and published estimator: the coverage of the final 95% interval, mean SE
against the empirical SD of the final errors, and the share of runs whose anytime-valid
confidence sequence excluded the truth at any look. The figures are saved under
docs/figures/live-coverage-* and docs/validation.md is re-rendered from every saved table.

The three-arm price ladders (:mod:`streams.live.coverage_arms`: what they are and how each arm,
both arms together and the recommended price are scored) run in batches of their own through
the same :func:`run_batch`, with kills drawn from their own stream, so that ``--only arms``
runs them alone with the kills of the full study; their figures are
docs/figures/live-coverage-arms*.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controller import design_registry
from controller.designs import get_design
from controller.periods import is_empty
from controller.settings import Settings
from controller.store import Store, make_redis
from lab.compare import make_spec, market_classes
from lab.config import MarketConfig
from lab.hashseed import pin_hash_seed
from lab.market import Market
from lab.studies.harness import FIGURES, coverage, interval_summary
from lab.studies.live_ladder import crossover_phases
from lab.studies.spillover_worker import refresh_validation
from streams.live import coverage_arms as arms
from streams.live import coverage_arms_tables as arm_tables
from streams.live.driver import (
    DriverConfig,
    LiveDriver,
    LiveRun,
    lockstep_settings,
    metric_of,
)
from streams.live.embedded import EmbeddedStack
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics

START = date(2026, 3, 2)  # a Monday
TIMEZONE = "Europe/Berlin"
#: the sub-daily experiments: hourly, from a Saturday whose night is the spring-forward one
#: (a 23-hour Sunday: its 02:00 hour does not exist, no flip, no sale); per design the
#: market's carryover in periods (the optimal switchback's example takes it as its order)
HOURLY_START = date(2026, 3, 28)
HOURLY = (("random-days", 0), ("optimal-switchback", 2))
#: the three-arm ladders (streams.live.coverage_arms): batches, ladders of each design in a
#: batch, products (a third in each arm: 20 a comparison's side, as the two-arm batches'
#: 40 products in two halves) and days
ARM_BATCHES, ARM_COPIES, ARM_PRODUCTS, ARM_DAYS = 8, 3, 60, 14


def design_label(run: LiveRun) -> str:
    """The design as the tables name it: with its period when shorter than a day."""
    p = run.spec.period
    return (
        run.spec.design
        if p >= timedelta(days=1)
        else f"{run.spec.design} PT{p // timedelta(hours=1)}H"
    )


def make_hourly_runs(batch: int, copies: int, products: int, days: int) -> list[LiveRun]:
    runs = []
    for c in range(copies):
        for j, (design, carry) in enumerate(HOURLY):
            seed = 500_000 + 10_000 * (batch + 1) + 100 * c + j
            prefix = f"h{batch}c{c}{design[:2]}-"
            cfg = MarketConfig(
                n_products=products,
                start_date=HOURLY_START,
                timezone=TIMEZONE,
                carryover_order=carry,
            )
            market = Market(
                cfg, seed=seed, product_ids=[f"{prefix}{i:03d}" for i in range(products)]
            )
            spec = make_spec(design, market, days=days, seed=seed, period=timedelta(hours=1))
            spec = spec.model_copy(update={"id": f"lc-h{batch}-c{c}-{design}"})
            runs.append(LiveRun(spec, market, sales_seed=seed + 7))
    return runs


def make_runs(
    batch: int, designs: list[str], copies: int, products: int, days: int
) -> list[LiveRun]:
    runs = []
    for c in range(copies):
        for j, design in enumerate(designs):
            seed = 10_000 * (batch + 1) + 100 * c + j
            prefix = f"b{batch}c{c}{design[:2]}-"
            cfg = MarketConfig(n_products=products, start_date=START, timezone=TIMEZONE)
            market = Market(
                cfg, seed=seed, product_ids=[f"{prefix}{i:03d}" for i in range(products)]
            )
            classes = market_classes(market) if design == "cluster" else None
            spec = make_spec(design, market, days=days, seed=seed, classes=classes)
            spec = spec.model_copy(update={"id": f"lc-b{batch}-c{c}-{design}"})
            runs.append(LiveRun(spec, market, sales_seed=seed + 7))
    return runs


def stack_settings(stack: EmbeddedStack, key_prefix: str) -> Settings:
    """Lock-step settings (:func:`lockstep_settings`) for workers of one batch on ``stack``:
    its broker (two partitions a topic) and Redis, keys under ``key_prefix`` and topics named
    ``{key_prefix}.{topic}``, so that the batches of one stack never meet."""
    base = Settings()
    return lockstep_settings(base).model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"bootstrap_servers": stack.bootstrap_servers, "partitions": 2}
            ),
            "redis": base.redis.model_copy(
                update={
                    "url": type(base.redis.url)(stack.redis_url),
                    "sentinels": None,
                    "sentinel_service": None,
                }
            ),
            "key_prefix": key_prefix,
            "topics": base.topics.model_copy(
                update={k: f"{key_prefix}.{v}" for k, v in base.topics.model_dump().items()}
            ),
            "log_level": "WARNING",
        }
    )


async def run_batch(
    stack: EmbeddedStack,
    batch: int,
    runs: list[LiveRun],
    kill_at: int | None,
    prefix: str = "lc",
    timeout: float = DriverConfig.timeout,
) -> dict[str, Any]:
    """Drive ``runs`` through a controller and an analysis worker of their own (keys and topics
    under ``{prefix}{batch}``), the analysis worker killed with SIGKILL and restarted before
    look ``kill_at``; what happened (the kill confirmed by exit status -9, any unit sent and
    not counted in Redis, the waits). ``timeout``: the seconds any one wait (a flip, a look)
    may take."""
    settings = stack_settings(stack, f"{prefix}{batch}")
    await ensure_topics(settings)
    controller = WorkerProcess(settings, ("controller",)).launch()
    analysis = [WorkerProcess(settings, ("analysis",)).launch()]
    redis = make_redis(settings)
    info: dict[str, Any] = {"batch": batch, "kill_at": kill_at, "killed": False}
    t0 = time.monotonic()
    try:
        controller.wait_healthy()
        analysis[0].wait_healthy()
        store = Store(redis, settings.key_prefix)
        async with LiveDriver(
            settings, store, [controller], analysis[0], cfg=DriverConfig(timeout=timeout)
        ) as driver:

            async def restart(d: int) -> None:
                if d != kill_at:
                    return
                new, code = await driver.restart_analysis()
                info["killed"] = code == -9
                analysis.append(new)

            await driver.create(runs)
            await driver.run(runs, before_look=restart)
            info["wait_seconds"] = dict(driver.wall)
        lost = []
        for run in runs:
            totals = await store.totals(run.id)
            counted = sum(v for k, v in totals.items() if k.startswith("units:"))
            if counted != run.units_sent:
                lost.append((run.id, run.units_sent, counted))
        info["units_mismatch"] = lost
    finally:
        await redis.aclose()
        controller.stop()
        for w in analysis:
            w.stop()
    info["seconds"] = time.monotonic() - t0
    return info


#: what the worker publishes of each experiment, checked against the market's truth
METRICS = ("units", "revenue", "profit", "price", "elasticity")


def _row(
    run: LiveRun, batch: int, restarted: bool, name: str, metric: str, form: str, primary: bool
) -> dict[str, Any]:
    """One (estimator, metric, form) of one experiment: its final interval against the truth,
    and whether its anytime-valid sequence ever excluded the truth at a look."""
    days = run.arms.shape[1]
    looks = run.looks(name, metric=metric)
    rel = form == "relative"
    keys = (
        ("relative_effect", "relative_ci_low", "relative_ci_high", "relative_cs_low", "relative_cs_high")
        if rel
        else ("effect", "ci_low", "ci_high", "cs_low", "cs_high")
    )  # fmt: skip
    misses = sequenced = 0
    for k, e in looks.items():
        truth_k = run.truth(k, metric, relative=rel)
        lo, hi = e.get(keys[3]), e.get(keys[4])
        if lo is not None and hi is not None:
            sequenced += 1
            misses += not (lo <= truth_k <= hi)
    truth = run.truth(days, metric, relative=rel)
    final = looks.get(days) or {}
    value, lo, hi = (final.get(k) for k in keys[:3])
    bounded = lo is not None and hi is not None
    return {
        "batch": batch,
        "experiment": run.id,
        "design": design_label(run),
        "metric": metric,
        "form": form,
        "estimator": name,
        "restarted": restarted,
        "looks": len(looks),
        "truth": truth,
        "effect": np.nan if value is None else value,
        "se": np.nan if rel or final.get("se") is None else final["se"],
        "ci_low": lo if bounded else np.nan,
        "ci_high": hi if bounded else np.nan,
        # no bounded interval (Fieller's g >= 1; an elasticity not identified): said, not scored
        "unbounded": bool(final) and not bounded,
        "covered": bool(lo <= truth <= hi) if lo is not None and hi is not None else None,
        "cs_looks": sequenced,
        "cs_looks_missed": misses,
        # no sequence at any look (the elasticity; no relative one for ht, did, sdid): not scored
        "cs_ever_missed": (misses > 0) if sequenced else None,
        "primary": primary,
    }


def experiment_rows(run: LiveRun, batch: int, restarted: bool) -> list[dict[str, Any]]:
    rows = []
    order = [p.label for p in get_design(run.spec.design).estimators(run.spec)]
    for metric in METRICS:
        names = sorted({e["estimator"] for e in run.estimates if metric_of(e) == metric})
        if not names:
            continue
        # the primary estimate of a metric: the design's first estimator that publishes it
        primary = min(names, key=lambda n: order.index(n) if n in order else len(order))
        for name in names:
            forms = ("absolute",) if metric == "elasticity" else ("absolute", "relative")
            for form in forms:
                rows.append(_row(run, batch, restarted, name, metric, form, name == primary))
    return rows


def share(flags: pd.Series) -> float:
    """The share of True among the rows that were scored (None: no sequence, not scored)."""
    scored = pd.to_numeric(flags, errors="coerce").dropna()
    return coverage(scored.astype(bool))[0]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    keys = ["design", "metric", "form", "estimator"]
    for (design, metric, form, est), g in rows.groupby(keys, sort=True):
        ok = g[g["covered"].notna()]
        fig = interval_summary(ok["effect"], ok["truth"], ok["se"], ok["covered"].astype(bool))
        out.append(
            {
                "design": design,
                "metric": metric,
                "form": form,
                "estimator": est,
                "runs": len(g),
                "unbounded": int(g["unbounded"].sum()),
                "final": len(ok),
                "coverage": fig["coverage"],
                "coverage_mcse": fig["coverage_mcse"],
                "bias": fig["bias"],
                "mean_se": fig["mean_se"],
                "emp_sd": fig["emp_sd"],
                "cs_ever_missed": share(g["cs_ever_missed"]),
                "restarted": int(g["restarted"].sum()),
                "primary": bool(g["primary"].any()),
            }
        )
    return pd.DataFrame(out)


def by_metric(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Pooled per metric and form: every published estimator, and each design's primary."""
    out = []
    for (metric, form), g in table.groupby(["metric", "form"], sort=False):
        fin = g[g["covered"].notna()]
        prim = fin[fin["primary"]]
        out.append(
            {
                "metric": metric,
                "form": form,
                "experiments": int(g["experiment"].nunique()),
                "coverage_all": coverage(fin["covered"].astype(bool))[0],
                "intervals_all": int(len(fin)),
                "coverage_primary": coverage(prim["covered"].astype(bool))[0],
                "intervals_primary": int(len(prim)),
                "unbounded": int(g["unbounded"].sum()),
                "cs_ever_missed_all": share(g["cs_ever_missed"]),
                "cs_ever_missed_primary": share(g.loc[g["primary"], "cs_ever_missed"]),
            }
        )
    return out


def plan_texts(run: LiveRun) -> list[str]:
    """The estimators the run's design asks the worker for, each with its parameters (e.g.
    ``fe {"cluster": "class_period"}``): saved, so that a render can tell what was measured."""
    return [
        f"{p.label} {json.dumps(dict(p.params), sort_keys=True, default=str)}"
        for p in get_design(run.spec.design).estimators(run.spec)
    ]


def two_arm_study(stack: EmbeddedStack, args: argparse.Namespace, figdir: Path) -> None:
    """The two-arm batches (every design, daily and hourly): live-coverage{,-runs}.csv and
    live-coverage.json."""
    designs = design_registry.names()[:6]
    t_start = time.monotonic()
    rng = np.random.default_rng(20261123)
    rows: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    plans: dict[str, list[str]] = {}  # what each design asked the worker to fit, with params
    for b in range(args.batches):
        runs = make_runs(b, designs, args.copies, args.products, args.days)
        kill_at = int(rng.integers(3, args.days - 2)) if b % 2 == 1 else None
        info = asyncio.run(run_batch(stack, b, runs, kill_at))
        batches.append(info)
        for run in runs:
            rows += experiment_rows(run, b, bool(info["killed"]))
            plans.setdefault(run.spec.design, plan_texts(run))
        print(
            f"[batch {b + 1}/{args.batches}] {len(runs)} experiments in {info['seconds']:.0f}s"
            + (f", analysis worker killed at period {kill_at}" if kill_at is not None else ""),
            flush=True,
        )
    hourly_periods = 24 * args.hourly_days
    for h in range(args.hourly_batches):
        b = args.batches + h  # its own keys and topics
        runs = make_hourly_runs(h, args.hourly_copies, args.products, args.hourly_days)
        # a kill at a look that happens: not the hour the spring-forward night skips
        kill_at = int(rng.integers(3, hourly_periods - 2)) if h % 2 == 1 else None
        if kill_at is not None and is_empty(runs[0].spec, kill_at):
            kill_at += 1
        info = asyncio.run(run_batch(stack, b, runs, kill_at))
        batches.append(info | {"hourly": True})
        for run in runs:
            rows += experiment_rows(run, b, bool(info["killed"]))
        print(
            f"[hourly batch {h + 1}/{args.hourly_batches}] {len(runs)} experiments in "
            f"{info['seconds']:.0f}s"
            + (f", analysis worker killed at period {kill_at}" if kill_at is not None else ""),
            flush=True,
        )
    elapsed = time.monotonic() - t_start
    table = pd.DataFrame(rows)
    summary = summarise(table)
    table.to_csv(figdir / "live-coverage-runs.csv", index=False)
    summary.to_csv(figdir / "live-coverage.csv", index=False)
    finals = table[table["covered"].notna()]
    prim = finals[finals["primary"]]
    result = {
        "quick": args.quick,
        "experiments": int(table["experiment"].nunique()),
        "restarted_experiments": int(table.loc[table["restarted"], "experiment"].nunique()),
        "batches": batches,
        "products": args.products,
        "days": args.days,
        "copies": args.copies,
        "hourly": {
            "batches": args.hourly_batches,
            "copies": args.hourly_copies,
            "days": args.hourly_days,
            "start": HOURLY_START.isoformat(),
            "designs": [f"{d} (market carryover {c} periods)" for d, c in HOURLY],
            "experiments": int(
                table.loc[table["design"].str.contains(" PT"), "experiment"].nunique()
            ),
        },
        "elapsed_minutes": elapsed / 60,
        "coverage_all": coverage(finals["covered"].astype(bool))[0],
        "intervals_all": int(len(finals)),
        "coverage_primary": coverage(prim["covered"].astype(bool))[0],
        "intervals_primary": int(len(prim)),
        "cs_ever_missed_all": share(table["cs_ever_missed"]),
        "cs_ever_missed_primary": share(table.loc[table["primary"], "cs_ever_missed"]),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "units_mismatch": [m for b in batches for m in b["units_mismatch"]],
        "kills_confirmed": sum(1 for b in batches if b["killed"]),
        "by_metric": by_metric(table),
        "plans": plans,
    }
    (figdir / "live-coverage.json").write_text(json.dumps(result, indent=1, default=float))
    print(summary.to_string(index=False))
    print(json.dumps({k: v for k, v in result.items() if k != "batches"}, indent=1, default=float))


def arms_study(stack: EmbeddedStack, args: argparse.Namespace, figdir: Path) -> None:
    """The three-arm ladders' batches (streams.live.coverage_arms): live-coverage-arms{,-runs}.csv
    and live-coverage-arms.json."""
    t_start = time.monotonic()
    rng = np.random.default_rng(arms.KILL_SEED)
    rows: list[dict[str, Any]] = []
    demand: list[dict[str, Any]] = []
    looks: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    plans: dict[str, list[str]] = {}
    for b in range(args.arm_batches):
        runs = arms.make_arm_runs(
            b, arms.ARM_DESIGNS, args.arm_copies, args.arm_products, args.arm_days
        )
        kill_at = arms.kill_look(rng, b, args.arm_days)
        info = asyncio.run(
            run_batch(stack, b, runs, kill_at, prefix="lca", timeout=args.look_timeout)
        )
        batches.append(info)
        for run in runs:
            rows += arms.arm_rows(run, b, bool(info["killed"]))
            demand.append(arms.demand_row(run, b, bool(info["killed"])))
            looks += arms.look_rows(run)
            plans.setdefault(run.spec.design, plan_texts(run))
        print(
            f"[ladder batch {b + 1}/{args.arm_batches}] {len(runs)} three-arm experiments in "
            f"{info['seconds']:.0f}s"
            + (f", analysis worker killed at period {kill_at}" if kill_at is not None else ""),
            flush=True,
        )
    table, dem = pd.DataFrame(rows), pd.DataFrame(demand)
    summary, result = arm_tables.arms_result(
        table,
        dem,
        pd.DataFrame(looks),
        batches,
        {
            "quick": args.quick,
            "batches_run": args.arm_batches,
            "copies": args.arm_copies,
            "products": args.arm_products,
            "days": args.arm_days,
            "crossover": crossover_phases(args.arm_days),
            "experiments_run": len(dem),
            "elapsed_minutes": (time.monotonic() - t_start) / 60,
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "plans": plans,
        },
    )
    table.to_csv(figdir / "live-coverage-arms-runs.csv", index=False)
    summary.to_csv(figdir / "live-coverage-arms.csv", index=False)
    (figdir / "live-coverage-arms.json").write_text(json.dumps(result, indent=1, default=float))
    print(summary.to_string(index=False))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("batches", "demand_runs")},
            indent=1,
            default=float,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batches (a smoke test)")
    ap.add_argument(
        "--only",
        choices=("two-arm", "arms"),
        help="run only the two-arm batches, or only the three-arm ladders' (default: both)",
    )
    ap.add_argument("--batches", type=int, default=17)
    ap.add_argument("--copies", type=int, default=6, help="experiments of each design per batch")
    ap.add_argument("--products", type=int, default=40)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--hourly-batches", type=int, default=6, help="batches of hourly experiments")
    ap.add_argument("--hourly-copies", type=int, default=4, help="of each hourly design a batch")
    ap.add_argument("--hourly-days", type=int, default=2, help="days of the hourly experiments")
    ap.add_argument("--arm-batches", type=int, default=ARM_BATCHES, help="batches of ladders")
    ap.add_argument(
        "--arm-copies", type=int, default=ARM_COPIES, help="ladders of each design per batch"
    )
    ap.add_argument(
        "--arm-products", type=int, default=ARM_PRODUCTS, help="products of each ladder"
    )
    ap.add_argument("--arm-days", type=int, default=ARM_DAYS, help="days of each ladder")
    ap.add_argument("--out", type=Path, default=FIGURES.parent, help="docs: its figures/")
    ap.add_argument(
        "--look-timeout",
        type=float,
        default=DriverConfig.timeout,
        help="seconds a ladder's look (or flip) may take before the study stops",
    )
    args = ap.parse_args()
    # the cluster design's classes depend on string hashing
    pin_hash_seed(["-m", "streams.live.coverage", *sys.argv[1:]])
    if args.quick:
        args.batches, args.copies, args.products, args.days = 2, 1, 20, 8
        args.hourly_batches, args.hourly_copies, args.hourly_days = 1, 1, 2  # the DST night
        args.arm_batches, args.arm_copies, args.arm_products, args.arm_days = 2, 1, 30, 9
    figdir = args.out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    stack = EmbeddedStack().start()
    try:
        if args.only in (None, "two-arm"):
            two_arm_study(stack, args, figdir)
        if args.only in (None, "arms"):
            arms_study(stack, args, figdir)
    finally:
        stack.stop()
    if args.out.resolve() == FIGURES.parent:
        refresh_validation()


if __name__ == "__main__":
    main()
