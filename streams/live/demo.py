"""`pricelab demo`: a live 28-day random-days switchback on a simulated market.

What runs: the embedded broker and Redis (or the configured ones), a controller worker and
an analysis worker as separate processes, exactly as in production, with the clock in
'simulated' mode. This process plays the rest of the world through
:class:`streams.live.driver.LiveDriver`: it drives simulated time, acts as the pricing system
(reads the assignment topic, prices accordingly), generates the market's sales under those
prices, sends them to the sales topic (plus a few malformed and duplicated events, to show the
dead-letter path and dedupe), and prints the running estimates the analysis worker publishes.

The estimand: the effect of the treatment policy on units sold per product-day, counted in
the analysis window of each period (after the washout-length head; see docs/architecture.md).
The market's true effect is per whole day, so the truth printed is scaled by the expected share
of a day's sales that falls in the analysis window (from the market's intraday profile).

With ``ladder`` (``pricelab demo --ladder``) the experiment is a four-price ladder instead, on
a market whose only treatment is the price (:mod:`streams.live.ladder` says what it prints);
with ``adaptive`` too (``--ladder --adaptive``) its arm probabilities follow the analysis
worker's looks (:mod:`streams.live.adaptive_demo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from controller.arms import ArmSpec
from controller.periods import period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import Store, make_redis
from lab.market import Market, MarketConfig
from streams.client.estimates import render_verdict
from streams.live.adaptive_demo import (
    adaptive_block,
    estimates_command,
    print_adaptive_looks,
    report_adaptive,
    shares_line,
)
from streams.live.driver import (
    DriverConfig,
    LiveDriver,
    LiveRun,
    lockstep_settings,
    primary_estimate,
    print_looks,
    scorecard,
    verdict_at,
)
from streams.live.embedded import EmbeddedStack
from streams.live.ladder import (
    LADDER_ARMS,
    LADDER_COST_SHARE,
    ladder_truths,
    print_ladder_looks,
    report_ladder,
)
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics


@dataclass(frozen=True)
class DemoConfig:
    products: int = 200
    days: int = 28
    seed: int = 7
    external: bool = False
    quiet: bool = False
    washout_hours: int = 2
    timezone: str = "Europe/Berlin"
    # spans the spring DST change (2026-03-29 is a 23-hour day in Berlin)
    start_date: str = "2026-03-16"
    malformed_per_day: int = 3
    duplicates_per_day: int = 20
    report_dir: str | None = None
    #: a four-price ladder (streams.live.ladder) instead of the two-arm switchback
    ladder: bool = False
    #: the ladder with an adaptive allocation (streams.live.adaptive_demo)
    adaptive: bool = False
    #: the web console beside the demo, left up with the stack after it until Ctrl-C
    console: bool = False


class Say:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, msg: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)


def run_demo(settings: Settings, cfg: DemoConfig) -> bool:
    say = Say(cfg.quiet)
    stack = None
    if not cfg.external:
        stack = EmbeddedStack(validate_outputs=settings.embedded_contract_checks).start()
        say(f"embedded stack up: kafka {stack.bootstrap_servers}, redis {stack.redis_url}")
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(
                    update={"bootstrap_servers": stack.bootstrap_servers}
                ),
                "redis": settings.redis.model_copy(
                    update={
                        "url": type(settings.redis.url)(stack.redis_url),
                        "sentinels": None,
                        "sentinel_service": None,
                    }
                ),
            }
        )
    settings = lockstep_settings(settings).model_copy(
        update={"key_prefix": f"demo{cfg.seed}-{uuid.uuid4().hex[:6]}"}
    )
    logdir = Path(tempfile.mkdtemp(prefix="pricelab-demo-"))
    workers = {
        role: WorkerProcess(settings, (role,), log=logdir / f"{role}.log")
        for role in ("controller", "analysis")
    }
    console = None
    try:
        if stack is not None:
            stack.register_contracts(settings)  # validated with PRICELAB_EMBEDDED_CONTRACT_CHECKS
        asyncio.run(ensure_topics(settings))
        for role, w in workers.items():
            w.launch()
            say(f"{role} worker started (pid {w.pid}, metrics :{w.metrics_port}, log {w.log})")
        for w in workers.values():
            w.wait_healthy()
        say("workers healthy")
        if cfg.console:
            from streams.console.launch import ConsoleProcess

            console = ConsoleProcess(settings, log=logdir / "console.log").start()
            say(
                f"console up at {console.url}/ : sign in as admin with the one-time password "
                f"{console.password} (log {console.log})",
                always=True,
            )
        ok = asyncio.run(_drive(settings, cfg, say, workers))
        if console is not None:
            say(
                f"the stack, the workers and the console stay up: {console.url}/ (admin, "
                f"{console.password}); Ctrl-C stops them",
                always=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()  # until Ctrl-C
        return ok
    finally:
        if console is not None:
            console.stop()
        for w in workers.values():
            w.stop()
        if stack is not None:
            stack.stop()
        say(
            f"stopped workers and stack ({time.monotonic() - say.t0:.1f}s in all); worker logs in {logdir}"
        )


def demo_market(cfg: DemoConfig) -> Market:
    """The demo's market; a ladder's has the price as its only treatment (no effect
    modifiers) and unit costs at :data:`LADDER_COST_SHARE` of the list price."""
    ladder: dict[str, Any] = (
        {"effect_modifiers": {}, "unit_cost_share": LADDER_COST_SHARE} if cfg.ladder else {}
    )
    return Market(
        MarketConfig(
            n_products=cfg.products,
            timezone=cfg.timezone,
            start_date=date.fromisoformat(cfg.start_date),  # weekdays line up with the calendar
            **ladder,
        ),
        seed=cfg.seed,
    )


def demo_spec(
    cfg: DemoConfig, market: Market, ladder: Sequence[ArmSpec] = LADDER_ARMS
) -> ExperimentSpec:
    """The demo's experiment on ``market``; with ``cfg.ladder`` the price ladder ``ladder``
    (the demo's four prices unless given: the live adaptive study's worlds give theirs)."""
    zone = ZoneInfo(cfg.timezone)
    start = datetime.fromisoformat(cfg.start_date + "T00:00:00")
    adaptive: dict[str, Any] = (
        {"adaptive": adaptive_block(cfg.products, len(ladder))} if cfg.adaptive else {}
    )
    name = "demo-adaptive" if cfg.adaptive else "demo-ladder"
    arms: dict[str, Any] = (
        {"id": f"{name}-{cfg.seed}", "arms": tuple(ladder), **adaptive}
        if cfg.ladder
        else {
            "id": f"demo-{cfg.seed}",  # the same seed gives the same assignments and sales
            "treatment_policy": "price-minus-5pct",
            "control_policy": "list-price",
        }
    )
    return ExperimentSpec(
        **arms,
        design="random-days",
        products=tuple(market.product_ids),
        start=start.replace(tzinfo=zone),
        end=(start + timedelta(days=cfg.days)).replace(tzinfo=zone),
        timezone=cfg.timezone,
        washout=timedelta(hours=cfg.washout_hours),
        seed=cfg.seed,
        # the market's costs: profit is estimated (a spec without them gets no profit)
        unit_costs=dict(zip(market.product_ids, market.unit_cost.tolist(), strict=True)),
        # the verdict's keep running says the days still needed for 80% power at this effect
        mde_pct=5.0,
    )


async def _drive(
    settings: Settings, cfg: DemoConfig, say: Say, workers: dict[str, WorkerProcess]
) -> bool:
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    run = LiveRun(spec, market, sales_seed=cfg.seed + 1)
    driver_cfg = DriverConfig(
        duplicates_per_day=cfg.duplicates_per_day, malformed_per_day=cfg.malformed_per_day
    )
    printed: set[tuple[str, int]] = set()

    async def each_day(d: int) -> None:
        p_start, p_end = period_bounds(spec, d)
        hours = (p_end - p_start).total_seconds() / 3600
        day = (
            f"day {d + 1:>2}/{cfg.days} {p_start.astimezone(spec.zone):%a %Y-%m-%d} ({hours:.0f}h)"
        )
        if cfg.ladder:
            counts = np.bincount(run.arm_index[:, d], minlength=spec.n_arms)
            arms = ", ".join(f"{a.name} {n}" for a, n in zip(spec.arm_list(), counts, strict=True))
            shares = shares_line(run, d) if cfg.adaptive else None
            drawn = f" (drawn with {shares})" if shares else ""
            say(f"{day}: products by arm {arms}{drawn}; sales sent")
            print_ladder_looks(say, run, printed)
            if cfg.adaptive:
                print_adaptive_looks(say, run, printed)
            return
        say(f"{day}: {int(run.arms[:, d].sum())} of {cfg.products} treated, sales sent")
        print_looks(say, run, printed)

    try:
        async with LiveDriver(
            settings, store, [workers["controller"]], workers["analysis"], driver_cfg
        ) as driver:
            what = (
                "a price ladder of "
                + ", ".join(f"{a.name} x{a.price_ratio:g}" for a in spec.arm_list())
                + f" (control {spec.control_arm.name}) on random days"
                if cfg.ladder
                else "random days"
            )
            if cfg.adaptive:
                a = spec.adaptive
                assert a is not None
                what += (
                    f", adaptive ({a.rule} on {spec.adaptive_metric()}, warmup {a.warmup} "
                    f"periods, floor {a.floor:.2f})"
                )
            say(
                f"creating experiment {spec.id}: {what}, {cfg.products} products, "
                f"{cfg.days} days from {cfg.start_date} ({cfg.timezone}), washout {cfg.washout_hours}h"
            )
            await driver.create([run])
            t0 = time.monotonic()
            await driver.run([run], after_look=each_day)
            elapsed = time.monotonic() - t0
        (print_ladder_looks if cfg.ladder else print_looks)(say, run, printed)
        if cfg.adaptive:
            print_adaptive_looks(say, run, printed)
        sent = run.events_sent + cfg.days * (cfg.duplicates_per_day + cfg.malformed_per_day)
        say(
            f"pipeline absorbed {sent} events ({run.units_sent} units) in {elapsed:.1f}s of wall "
            f"time: {sent / elapsed:,.0f} events/s end to end, lock-step with simulated time",
            always=True,
        )
        totals = await store.totals(spec.id)
        counted = sum(v for k, v in totals.items() if k.startswith("units:"))
        shown = f"{counted:.0f}" if counted == int(counted) else f"{counted}"  # thousandths
        if counted != run.units_sent:
            say(f"ERROR: {shown} units in Redis, {run.units_sent} sent", always=True)
            return False
        if cfg.ladder:
            say(f"every unit sent was counted in Redis: {shown} units", always=True)
            if cfg.adaptive:
                text = estimates_command(settings, spec.id)
                covered = report_adaptive(say, run, cfg.days, text)
            else:
                covered = report_ladder(say, run, cfg.days)
            if cfg.report_dir:
                await _write_report(
                    say, settings, spec.id, cfg.report_dir,
                    arm_truths=ladder_truths(run, cfg.days),
                    true_optimum=run.optimal_ratio_truth(cfg.days),
                )  # fmt: skip
            return covered
        final = primary_estimate(run, run.decision_metric, cfg.days)
        if final is None:
            say("ERROR: no final estimate published", always=True)
            return False
        verdict = verdict_at(run, cfg.days)
        say("", always=True)
        if verdict is None:
            say("ERROR: no verdict published at the last look", always=True)
            return False
        say(render_verdict(verdict), always=True)
        covered = _report(say, final, run.truth(metric=run.decision_metric))
        say("", always=True)
        say(
            f"SCORECARD after {cfg.days} days (95% intervals; truth from the simulated market):",
            always=True,
        )
        lines, _ = scorecard(run, cfg.days)
        for line in lines:
            say("  " + line, always=True)
        if cfg.report_dir:
            await _write_report(
                say, settings, spec.id, cfg.report_dir,
                truth=run.truth(), truths=run.truths(cfg.days),
            )  # fmt: skip
        return covered
    finally:
        await redis.aclose()


async def _write_report(
    say: Say, settings: Settings, experiment: str, out: str, **truths: Any
) -> None:
    """The analyst report of the live experiment (``pricelab report``'s page), with the
    truths the simulated market knows."""
    from streams.client.report import live_report

    index = await live_report(settings, experiment, Path(out), **truths)
    say(f"analyst report of the live experiment: {index}", always=True)


def _report(say: Say, final: dict[str, Any], truth: float) -> bool:
    covered = final["ci_low"] <= truth <= final["ci_high"]
    say("", always=True)
    say(
        f"FINAL {final.get('metric') or 'units'}, the decision metric ({final['estimator']}, "
        f"{final['n_units']} products x {final['n_periods']} days, se by {final['se_method']}):",
        always=True,
    )
    metric = str(final.get("metric") or "units")
    say(
        f"  estimated effect  {final['effect']:+.3f} {metric} per product-day (analysis window)",
        always=True,
    )
    say(f"  95% interval      [{final['ci_low']:+.3f}, {final['ci_high']:+.3f}]", always=True)
    if final.get("cs_low") is not None:
        say(f"  anytime-valid CS  [{final['cs_low']:+.3f}, {final['cs_high']:+.3f}]", always=True)
    say(
        f"  true effect       {truth:+.3f}  (market truth over the analysed cells, scaled to the "
        "analysis window)",
        always=True,
    )
    say(f"  the interval {'COVERS' if covered else 'MISSES'} the true effect", always=True)
    return covered
