"""Shared set-up for the streaming benchmarks (an embedded stack, an experiment, and sales) and
the benchmarks' medians."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from controller.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from controller.spec import ExperimentSpec, load_spec
from streams.live.embedded import EmbeddedStack

START = datetime(2026, 6, 1, tzinfo=UTC)
NOW = START + timedelta(hours=12)


def controller_malloc(fixed: bool) -> str:
    """Give this process the malloc setting a controller worker runs with
    (``streams.worker.memory.CONTROLLER_MMAP_THRESHOLD``, by ``mallopt``: the variable itself
    would reach the broker and redis-server this process starts) when ``fixed``; glibc's
    defaults otherwise. What it runs with, for the report."""
    from streams.worker.memory import CONTROLLER_MMAP_THRESHOLD, set_mmap_threshold

    if not fixed:
        return "glibc's defaults"
    if not set_mmap_threshold(CONTROLLER_MMAP_THRESHOLD):
        raise SystemExit("mallopt refused the controller's mmap threshold")
    return f"a controller's (mmap threshold {CONTROLLER_MMAP_THRESHOLD:,} bytes)"


def bench_settings(stack: EmbeddedStack, partitions: int = 2, **kw: Any) -> Settings:
    """Fresh topics and key prefix, so each run starts from nothing."""
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(**{k: f"b{tag}.{v}" for k, v in TopicSettings().model_dump().items()})
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=partitions),
        redis=RedisSettings(url=SecretStr(stack.redis_url)),
        topics=topics,
        key_prefix=f"b{tag}",
        clock="simulated",
        **kw,
    )


def experiment(n_products: int, exp_id: str = "bench", prefix: str = "p") -> ExperimentSpec:
    return load_spec(
        {
            "id": exp_id,
            "products": [f"{prefix}{i}" for i in range(n_products)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=7)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 11,
        }
    )


def sale_payloads(n: int, n_products: int, seed: int = 0, tag: str = "") -> list[bytes]:
    """Valid sales spread over the experiment's first three days (ok, head and washout mix)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = START + timedelta(seconds=rng.randrange(0, int((NOW - START).total_seconds())))
        units = rng.randint(1, 5)
        price = round(rng.uniform(1, 50), 2)
        out.append(
            json.dumps(
                {
                    "v": 1,
                    "event_id": f"{tag}e{i}",
                    "product": f"p{rng.randrange(n_products)}",
                    "units": units,
                    "revenue": round(units * price, 2),
                    "unit_price": price,
                    "occurred_at": at.isoformat(),
                }
            ).encode()
        )
    return out


async def start_experiment(rt: Any, spec: ExperimentSpec, until: datetime = NOW) -> None:
    """Create the experiment and flip every period up to ``until`` (so every sale has an arm)."""
    at = START + timedelta(seconds=1)
    await rt.clock.set(at)
    await rt.flipper.create(spec, backfill=True)
    while at < until:
        at += spec.period
        await rt.clock.set(min(at, until))
        await rt.flipper.tick()


async def produce(settings: Settings, topic: str, payloads: list[bytes]) -> None:
    prod = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        acks=1,
        enable_idempotence=False,
    )
    await prod.start()
    try:
        futs = []
        for i, p in enumerate(payloads):
            futs.append(await prod.send(topic, p, partition=i % settings.kafka.partitions))
            if len(futs) >= 20_000:
                await asyncio.gather(*futs)
                futs = []
        await asyncio.gather(*futs)
    finally:
        await prod.stop()


class PeakRss:
    """Polls a process's RSS in a thread-free way: call ``sample()`` from a loop."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0

    def sample(self) -> int:
        try:
            rss = int(self.proc.memory_info().rss)
        except psutil.Error:
            return self.peak
        self.peak = max(self.peak, rss)
        return rss


async def sample_rss(rss: PeakRss, stop: asyncio.Event, every: float = 0.05) -> None:
    while not stop.is_set():
        rss.sample()
        await asyncio.sleep(every)


def median_time(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    """The median wall time of ``repeat`` calls of ``fn``, and the value of the last."""
    times, value = [], float("nan")
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def median_report(
    name: str, values: list[float], fmt: Callable[[float], str] = "{:,.0f}".format
) -> str:
    return f"{name}: median {fmt(statistics.median(values))} (runs: {', '.join(fmt(v) for v in values)})"


# ---------------------------------------------------------------- a worker's histograms

#: one histogram series: cumulative counts per upper bound (ascending, ending at +Inf), sum
Histo = tuple[list[tuple[float, float]], float]


def scrape_histograms(text: str, name: str, label: str | None = None) -> dict[str, Histo]:
    """The series of histogram ``name`` in a Prometheus text exposition, keyed by the value
    of ``label`` (or "" when the histogram has no such label)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != name:
            continue
        for s in fam.samples:
            key = s.labels.get(label, "") if label else ""
            if s.name == f"{name}_bucket":
                buckets.setdefault(key, {})[float(s.labels["le"])] = s.value
            elif s.name == f"{name}_sum":
                sums[key] = s.value
    return {k: (sorted(b.items()), sums.get(k, 0.0)) for k, b in buckets.items()}


def histo_delta(after: Histo, before: Histo | None) -> Histo:
    """What was observed between two scrapes of the same series."""
    if before is None:
        return after
    old = dict(before[0])
    return [(le, c - old.get(le, 0.0)) for le, c in after[0]], after[1] - before[1]


def histo_add(a: Histo, b: Histo | None) -> Histo:
    """Two series of the same histogram pooled (e.g. several runs)."""
    if b is None:
        return a
    return [(le, c + oc) for (le, c), (_, oc) in zip(a[0], b[0], strict=True)], a[1] + b[1]


def histo_count(h: Histo) -> float:
    return h[0][-1][1] if h[0] else 0.0


def histo_quantile(h: Histo, q: float) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket holding rank q * count;
    the highest finite bound when that is the +Inf bucket; NaN when nothing was observed."""
    n = histo_count(h)
    if n <= 0:
        return float("nan")
    rank = q * n
    lo_bound, lo_count = 0.0, 0.0
    for le, c in h[0]:
        if c >= rank:
            if le == float("inf"):
                return lo_bound
            if c == lo_count:
                return le
            return lo_bound + (le - lo_bound) * (rank - lo_count) / (c - lo_count)
        lo_bound, lo_count = le, c
    return lo_bound
