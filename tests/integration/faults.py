"""What the fault tests (tests/integration/test_faults*.py) share: the experiment, the sales
and their ground truth, and the conditions they wait on.

The ground truth is computed here from the events themselves, not by pricelab: every sale
falls in the second half of an hour-long period (after any washout or head), so each one is
'ok' and lands in its (period, product) cell. Revenues are multiples of 0.25, so float sums
are exact and the panel must match to the last bit.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.exceptions import ConnectionError as RedisConnectionError

from controller.settings import Settings
from controller.spec import ExperimentSpec, load_spec
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.app import group_ids
from streams.worker.runtime import Runtime
from tests.integration.conftest import (
    committed_offsets,
    wait_until,
)

START = datetime(2026, 6, 1, tzinfo=UTC)
PERIODS = 6
# a stream that still flows for ~10 s after the worker is up: its sales consumer takes one
# batch of up to 2,000 events, so a stream produced all at once could be ingested before any
# fault, in a single batch
FLOW: dict[str, Any] = {"chunk": 25, "pace": 0.1}
N_PRODUCTS = 40


def _spec(n_products: int = N_PRODUCTS, exp_id: str = "faults") -> ExperimentSpec:
    return load_spec(
        {
            "id": exp_id,
            "products": [f"p{i}" for i in range(n_products)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=2)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
        }
    )


class Truth:
    """Sales and the panel they must produce."""

    def __init__(self, n: int, seed: int, tag: str = "s") -> None:
        rng = random.Random(seed)
        self.payloads: list[bytes] = []
        self.cells: dict[str, float] = {}
        for i in range(n):
            k = rng.randrange(PERIODS)
            product = f"p{rng.randrange(N_PRODUCTS)}"
            at = START + timedelta(
                hours=k, minutes=30 + rng.randrange(29), seconds=rng.randrange(60)
            )
            # sales, returns (negative) and goods by weight: eighths and multiples of 0.25
            # for prices keep every float sum exact
            units = rng.choice([rng.randint(1, 4), -rng.randint(1, 2), rng.randint(1, 31) / 8])
            price = rng.randint(4, 200) / 4
            self.payloads.append(
                json.dumps(
                    {
                        "v": 1,
                        "event_id": f"{tag}{i}",
                        "product": product,
                        "units": units,
                        "revenue": units * price,
                        "unit_price": price,
                        "occurred_at": at.isoformat(),
                    }
                ).encode()
            )
            for f, v in (("u", units), ("r", units * price), ("n", int(units > 0))):
                key = f"{k}|{product}|{f}"
                self.cells[key] = self.cells.get(key, 0) + v  # a return is no order
        self.cells = {c: v for c, v in self.cells.items() if v != 0}  # as the store lists them
        self.units = sum(v for c, v in self.cells.items() if c.endswith("|u"))
        self.n = n


async def produce(
    settings: Settings,
    payloads: list[bytes],
    topic: str | None = None,
    pace: float = 0.0,
    chunk: int = 200,
) -> None:
    prod = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
    )
    await prod.start()
    try:
        for i in range(0, len(payloads), chunk):
            futs = [
                await prod.send(topic or settings.topics.sales, p) for p in payloads[i : i + chunk]
            ]
            await asyncio.gather(*futs)
            if pace:
                await asyncio.sleep(pace)
    finally:
        await prod.stop()


async def counted(rt: Runtime, exp_id: str = "faults") -> int:
    totals = await rt.store.totals(exp_id)
    return sum(v for k, v in totals.items() if k.startswith("events:"))


# our own view of Redis may fail while it restarts: that is "not yet", not a failure
wait_for = partial(wait_until, tolerate=(RedisConnectionError, OSError))


async def settled(settings: Settings, produced: int) -> None:
    """Wait until the worker group has committed every sale produced: nothing more will be
    processed, so a panel checked now would show any double count."""
    group = group_ids(settings, ("controller",))["sales"]

    async def done() -> bool:
        return await committed_offsets(settings, group, settings.topics.sales) >= produced

    await wait_for(done, 60, f"the workers to commit all {produced} sales")


async def assert_panel(rt: Runtime, truth: Truth, exp_id: str = "faults") -> None:
    cells = {k: float(v) for k, v in (await rt.store.cells(exp_id)).items()}
    assert cells == truth.cells
    assert await rt.store.excluded(exp_id) == {}
    assert await rt.store.totals(exp_id) == {"units:ok": truth.units, "events:ok": truth.n}


async def start_experiment(rt: Runtime, spec: ExperimentSpec) -> None:
    """Create the experiment and flip periods 0..PERIODS-1; the clock ends in period PERIODS."""
    at = START + timedelta(seconds=1)
    await rt.clock.set(at)  # type: ignore[attr-defined]
    await rt.flipper.create(spec, backfill=True)
    for k in range(1, PERIODS + 1):
        await rt.clock.set(START + timedelta(hours=k, seconds=1))  # type: ignore[attr-defined]
        await rt.flipper.tick()


def _worker(settings: Settings) -> WorkerProcess:
    return WorkerProcess(settings)


async def _between(rt: Runtime, lo: int, hi: int) -> bool:
    return lo <= await counted(rt) <= hi


async def _at_least(rt: Runtime, n: int) -> bool:
    return await counted(rt) >= n


async def _metric_at_least(w: WorkerProcess, name: str, n: float, **labels: str) -> bool:
    try:
        return metric_value(w.metrics(), name, **labels) >= n
    except OSError:
        return False


def _merge(a: Truth, b: Truth) -> Truth:
    out = Truth(0, seed=0)
    out.payloads = a.payloads + b.payloads
    for src in (a, b):
        for k, v in src.cells.items():
            out.cells[k] = out.cells.get(k, 0) + v
    # a return in one truth can net a sale of the other to zero: the store lists no such cell
    out.cells = {c: v for c, v in out.cells.items() if v != 0}
    out.units, out.n = a.units + b.units, a.n + b.n
    return out


def _ready(w: WorkerProcess) -> dict[str, Any]:
    """The worker's /ready answer (503 when not ready)."""
    url = f"http://127.0.0.1:{w.web_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return dict(json.load(r))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))


def _retries(w: WorkerProcess) -> float:
    return metric_value(w.metrics(), "pricelab_redis_retries_total", component="sales")


def _http(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
