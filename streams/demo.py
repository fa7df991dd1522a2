"""`pricelab demo`: a live 28-day random-days switchback on a simulated market.

What runs: the embedded broker and Redis (or the configured ones), a controller worker and
an analysis worker as separate processes, exactly as in production, with the clock in
'simulated' mode. This process plays the rest of the world: it drives simulated time,
acts as the pricing system (reads the assignment topic, prices accordingly), generates the
market's sales under those prices, sends them to the sales topic (plus a few malformed and
duplicated events, to show the dead-letter path and dedupe), and prints the running
estimates the analysis worker publishes.

The estimand: the effect of the treatment policy on units sold per product-day, counted in
the analysis window of each period (after the washout-length head; see docs/architecture.md).
The market's true effect is per whole day, so the truth printed is scaled by the share of
sales that fall in the analysis window (measured from the generated sales).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from analysis.simulation.market import Market, MarketConfig
from controller.periods import period_bounds
from controller.redis_clock import SharedSimulatedClock
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import Store, make_redis
from streams.commands import send_command_async
from streams.embedded import EmbeddedStack, free_port
from streams.kafka import JsonPublisher, ensure_topics


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
        stack = EmbeddedStack().start()
        say(f"embedded stack up: kafka {stack.bootstrap_servers}, redis {stack.redis_url}")
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(
                    update={"bootstrap_servers": stack.bootstrap_servers}
                ),
                "redis": settings.redis.model_copy(
                    update={"url": type(settings.redis.url)(stack.redis_url)}
                ),
            }
        )
    settings = settings.model_copy(
        update={
            "clock": "simulated",
            "tick_interval": 0.2,
            "analysis_interval": 1.0,
            "key_prefix": f"demo{cfg.seed}-{uuid.uuid4().hex[:6]}",
        }
    )
    logdir = Path(tempfile.mkdtemp(prefix="pricelab-demo-"))
    workers: list[subprocess.Popen[bytes]] = []
    web_ports: list[int] = []
    metrics_ports: list[int] = []
    try:
        asyncio.run(ensure_topics(settings))
        for role in ("controller", "analysis"):
            web_ports.append(free_port())
            metrics_ports.append(free_port())
            env = (
                os.environ
                | settings.to_env()
                | {
                    "PRICELAB_METRICS_PORT": str(metrics_ports[-1]),
                    "PRICELAB_WEB_PORT": str(web_ports[-1]),
                }
            )
            log = (logdir / f"{role}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", "worker", "--role", role],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            say(
                f"{role} worker started (pid {workers[-1].pid}, metrics :{env['PRICELAB_METRICS_PORT']}, log {logdir / (role + '.log')})"
            )
        asyncio.run(_await_healthy(web_ports, workers))
        say("workers healthy")
        return asyncio.run(_drive(settings, cfg, say, workers, metrics_ports))
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
        if stack is not None:
            stack.stop()
        say(
            f"stopped workers and stack ({time.monotonic() - say.t0:.1f}s in all); worker logs in {logdir}"
        )


def _scrape(port: int, prefix: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith(prefix))


async def _drive(
    settings: Settings,
    cfg: DemoConfig,
    say: Say,
    workers: list[subprocess.Popen[bytes]],
    metrics_ports: list[int],
) -> bool:
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, f"{settings.key_prefix}:clock")
    market = Market(
        MarketConfig(
            n_products=cfg.products,
            timezone=cfg.timezone,
            start_date=date.fromisoformat(cfg.start_date),  # weekdays line up with the calendar
        ),
        seed=cfg.seed,
    )
    zone_start = datetime.fromisoformat(cfg.start_date + "T00:00:00")
    from zoneinfo import ZoneInfo

    start = zone_start.replace(tzinfo=ZoneInfo(cfg.timezone))
    end_local = (zone_start + timedelta(days=cfg.days)).replace(tzinfo=ZoneInfo(cfg.timezone))
    spec = ExperimentSpec(
        id=f"demo-{cfg.seed}",  # the same seed gives the same assignments and sales
        design="random-days",
        products=tuple(market.product_ids),
        treatment_policy="price-minus-5pct",
        control_policy="list-price",
        start=start,
        end=end_local,
        timezone=cfg.timezone,
        washout=timedelta(hours=cfg.washout_hours),
        seed=cfg.seed,
    )
    await clock.set(start - timedelta(hours=1))
    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    await consumer.start()
    pub = JsonPublisher(settings, linger_ms=20)
    await pub.start()
    rng = np.random.default_rng(cfg.seed + 1)
    try:
        topics = [settings.topics.assignments, settings.topics.estimates]
        parts = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)

        say(
            f"creating experiment {spec.id}: random days, {cfg.products} products, {cfg.days} days "
            f"from {cfg.start_date} ({cfg.timezone}), washout {cfg.washout_hours}h"
        )
        reply = await send_command_async(
            settings, "create", timeout=90.0, spec=spec.model_dump(mode="json")
        )
        if not reply.get("ok"):
            say(f"create refused: {reply.get('error')}", always=True)
            return False
        n = cfg.products
        index = {p: i for i, p in enumerate(market.product_ids)}
        arms_history = np.zeros((n, cfg.days), dtype=bool)
        sent = 0
        units_total = 0
        units_window = 0
        t_ingest = time.monotonic()
        estimates: list[dict[str, Any]] = []
        for d in range(cfg.days):
            p_start, p_end = period_bounds(spec, d)
            await clock.set(p_start + timedelta(seconds=1))
            arms = await _await_assignments(consumer, spec.id, d, n, estimates, workers)
            for product, arm in arms.items():
                arms_history[index[product], d] = arm == "treatment"
            out = market.day_outcomes(d, arms_history[:, : d + 1])
            events = market.sale_events(d, p_start, p_end, out, rng)
            await clock.set(p_end - timedelta(milliseconds=1))
            head_end = p_start + spec.washout
            for e in events:
                raw = _sale_bytes(e)
                await pub.send(settings.topics.sales, raw, e["product"])
                units_total += e["units"]
                if e["occurred_at"] >= head_end:
                    units_window += e["units"]
            for e in events[: cfg.duplicates_per_day]:  # redelivered: must not be counted twice
                await pub.send(settings.topics.sales, _sale_bytes(e), e["product"])
            for j in range(cfg.malformed_per_day):
                await pub.send(settings.topics.sales, _malformed(j, p_start), None)
            await pub.flush()
            sent += len(events) + cfg.duplicates_per_day + cfg.malformed_per_day
            # lock-step: the day's sales must be in Redis before simulated time moves on
            await _await_accounted(store, spec.id, units_total, workers)
            _print_estimates(say, estimates, spec)
            say(
                f"day {d + 1:>2}/{cfg.days} {p_start.astimezone(spec.zone):%a %Y-%m-%d} "
                f"({(p_end - p_start).total_seconds() / 3600:.0f}h): {int(arms_history[:, d].sum())} of {n} treated, "
                f"{len(events)} sales sent"
            )
        await clock.set(spec.end + timedelta(minutes=1))
        counted = await _units_accounted(store, spec.id)
        elapsed = time.monotonic() - t_ingest
        say(
            f"pipeline absorbed {sent} events ({units_total} units) in {elapsed:.1f}s of wall time: "
            f"{sent / elapsed:,.0f} events/s end to end, lock-step with simulated time",
            always=True,
        )
        if counted != units_total:
            say(f"ERROR: {counted} units in Redis, {units_total} sent", always=True)
            for port in metrics_ports:
                say(_scrape(port, "pricelab_sales_total"), always=True)
            return False
        final = await _await_final(consumer, spec, cfg.days, estimates, workers)
        share = units_window / max(units_total, 1)
        truth = market.true_effect(days=range(cfg.days)) * share
        covered = _report(say, final, truth, share, market, cfg)
        if cfg.report_dir:
            from streams.report_cli import live_report

            index = await live_report(settings, spec.id, Path(cfg.report_dir), truth=truth)
            say(f"analyst report of the live experiment: {index}", always=True)
        return covered
    finally:
        await pub.stop()
        await consumer.stop()
        await redis.aclose()


def _sale_bytes(e: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "event_id": e["event_id"],
            "product": e["product"],
            "units": e["units"],
            "revenue": round(e["revenue"], 6),
            "unit_price": e["unit_price"],
            "occurred_at": e["occurred_at"].astimezone(UTC).isoformat(),
        }
    ).encode()


def _malformed(j: int, at: datetime) -> bytes:
    bad = [
        b'{"v": 1, "event_id": "x", "product": "P0001", "units": -3',
        json.dumps(
            {
                "v": 1,
                "event_id": f"bad-{uuid.uuid4().hex}",
                "product": "P0001",
                "units": 2,
                "revenue": 10.0,
                "unit_price": "NaN",
                "occurred_at": at.isoformat(),
            }
        ).encode(),
        "\u00ff\u00fe not json at all \u2603".encode(),
    ]
    return bad[j % len(bad)]


async def _poll(
    consumer: AIOKafkaConsumer, estimates: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Read what is there; estimates go to their list, assignment messages are returned."""
    out = []
    batch = await consumer.getmany(timeout_ms=50)
    for _tp, records in batch.items():
        for r in records:
            doc = json.loads(r.value)
            if "estimator" in doc:
                estimates.append(doc)
            else:
                out.append(doc)
    return out


async def _await_healthy(
    ports: list[int], workers: list[subprocess.Popen[bytes]], timeout: float = 60.0
) -> None:
    """Wait until every worker's web server answers /health (its consumers are then starting)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            _check_workers(workers)
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker on port {port} not healthy within {timeout}s")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /health HTTP/1.0\r\n\r\n")
                await writer.drain()
                head = await reader.read(64)
                writer.close()
                if b" 200 " in head:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.2)


def _check_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is not None:
            raise RuntimeError(f"worker {w.args} exited with {w.returncode}; see its log")


async def _await_assignments(
    consumer: AIOKafkaConsumer,
    exp: str,
    period: int,
    n: int,
    estimates: list[dict[str, Any]],
    workers: list[subprocess.Popen[bytes]],
    timeout: float = 60.0,
) -> dict[str, str]:
    arms: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(arms) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"assignments for period {period} not published within {timeout}s")
        _check_workers(workers)
        for doc in await _poll(consumer, estimates):
            if doc.get("experiment") == exp and doc.get("period") == period:
                arms[doc["product"]] = doc["arm"]
    return arms


async def _await_accounted(
    store: Store,
    exp: str,
    units: int,
    workers: list[subprocess.Popen[bytes]],
    timeout: float = 120.0,
) -> None:
    deadline = time.monotonic() + timeout
    while await _units_accounted(store, exp) < units:
        _check_workers(workers)
        if time.monotonic() > deadline:
            return  # reported as a mismatch at the end
        await asyncio.sleep(0.02)


async def _units_accounted(store: Store, exp: str) -> int:
    totals = await store.totals(exp)
    return sum(v for k, v in totals.items() if k.startswith("units:"))


async def _await_final(
    consumer: AIOKafkaConsumer,
    spec: ExperimentSpec,
    days: int,
    estimates: list[dict[str, Any]],
    workers: list[subprocess.Popen[bytes]],
    timeout: float = 90.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_workers(workers)
        await _poll(consumer, estimates)
        finals = [
            e
            for e in estimates
            if e["experiment"] == spec.id
            and e["estimator"] == "dm"
            and e["n_periods"] == days
            and datetime.fromisoformat(e["as_of"]) >= spec.end
        ]
        if finals:
            return finals[-1]
    raise TimeoutError("no final estimate published")


_printed: set[tuple[str, int, str]] = set()


def _print_estimates(say: Say, estimates: list[dict[str, Any]], spec: ExperimentSpec) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for e in estimates:
        if e["experiment"] == spec.id:
            latest[e["estimator"]] = e
    for name, e in sorted(latest.items()):
        key = (name, e["n_periods"], e["as_of"][:13])
        if key in _printed:
            continue
        _printed.add(key)
        cs = (
            ""
            if e.get("cs_low") is None
            else f"  anytime CS [{e['cs_low']:+.2f}, {e['cs_high']:+.2f}]"
        )
        say(
            f"   estimate {name:<4} after {e['n_periods']:>2} days: {e['effect']:+.2f} units/product-day "
            f"(se {e['se']:.2f}, 95% CI [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]){cs}"
        )


def _report(
    say: Say, final: dict[str, Any], truth: float, share: float, market: Market, cfg: DemoConfig
) -> bool:
    covered = final["ci_low"] <= truth <= final["ci_high"]
    say("", always=True)
    say(
        f"FINAL ({final['estimator']}, {final['n_units']} products x {final['n_periods']} days, se by {final['se_method']}):",
        always=True,
    )
    say(
        f"  estimated effect  {final['effect']:+.3f} units per product-day (analysis window)",
        always=True,
    )
    say(f"  95% interval      [{final['ci_low']:+.3f}, {final['ci_high']:+.3f}]", always=True)
    if final.get("cs_low") is not None:
        say(f"  anytime-valid CS  [{final['cs_low']:+.3f}, {final['cs_high']:+.3f}]", always=True)
    say(
        f"  true effect       {truth:+.3f}  (market truth x {share:.3f}, the share of sales in the window)",
        always=True,
    )
    say(f"  the interval {'COVERS' if covered else 'MISSES'} the true effect", always=True)
    return covered
