"""Trigger latency: competitor-price event -> published assignment, through a real worker.

Set-up: the embedded broker and Redis, one `pricelab worker --role controller` process, and a
triggered experiment over N products whose rule is "undercut by >= 5% for >= 30 minutes".
Before the clock starts, every product in the measured set is seen undercut 31 minutes ago.
Then events arrive at a steady rate (default 1,000/s): most are ordinary prices of other
products; every tenth is a fresh observation of a still-undercut product, which fires its
trigger. Latency = from handing that event to the producer until its assignment message is
read back from the assignments topic by a separate consumer (both clocks in this process).

Prints p50/p90/p99/max over the fired products, per run, and the median over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import bench_settings  # noqa: E402
from controller.redis_clock import SharedSimulatedClock  # noqa: E402
from controller.store import make_redis  # noqa: E402
from streams.commands import send_command_async  # noqa: E402
from streams.embedded import EmbeddedStack  # noqa: E402
from streams.kafka import ensure_topics  # noqa: E402
from tests.integration.workers import WorkerProcess  # noqa: E402

T0 = datetime(2026, 6, 3, 12, tzinfo=UTC)


def _price(product: str, p: float, at: datetime) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "product": product,
            "competitor": "shop-x",
            "price": p,
            "observed_at": at.isoformat(),
        }
    ).encode()


async def one_run(
    stack: EmbeddedStack, rate: float, seconds: float, n_products: int
) -> list[float]:
    settings = bench_settings(stack, partitions=2, tick_interval=0.5)
    await ensure_topics(settings)
    fire_every = 10
    n_fire = int(rate * seconds / fire_every)
    firing = [f"f{i}" for i in range(n_fire)]
    quiet = [f"q{i}" for i in range(n_products)]
    spec = {
        "id": "trig",
        "design": "triggered",
        "products": firing + quiet,
        "treatment_policy": "match",
        "control_policy": "rule",
        "start": (T0 - timedelta(days=2)).isoformat(),
        "end": (T0 + timedelta(days=20)).isoformat(),
        "timezone": "UTC",
        "seed": 1,
        "triggered": {
            "undercut_pct": 5,
            "sustained_minutes": 30,
            "window_periods": 3,
            "reference_prices": {p: 100.0 for p in firing + quiet},
        },
    }
    redis = make_redis(settings)
    clock = SharedSimulatedClock(redis, f"{settings.key_prefix}:clock")
    await clock.set(T0 - timedelta(minutes=40))
    worker = WorkerProcess(settings).start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, linger_ms=0)
    # the reader polls every 5 ms: Tansu answers a fetch only when its max wait is over (new
    # data does not end the wait early, unlike Kafka), so the client default of 500 ms would
    # add the reader's own polling delay, up to 0.5 s, to every figure
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await producer.start()
    await consumer.start()
    try:
        assert (await send_command_async(settings, "create", timeout=60, spec=spec))["ok"]
        topic = settings.topics.competitor_prices
        # every measured product has been undercut since 31 minutes before T0
        for p in firing:
            await producer.send(topic, _price(p, 90.0, T0 - timedelta(minutes=31)), key=p.encode())
        await producer.flush()
        # the seeding must be absorbed before time moves on, or it would be stale
        from controller.store import Store

        store = Store(redis, settings.key_prefix)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, state = await store.trigger_state("trig")
            if state is not None and len(state["products"]) >= n_fire:
                break
            await asyncio.sleep(0.2)
        await clock.set(T0)
        parts = [TopicPartition(settings.topics.assignments, i) for i in range(2)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        await asyncio.sleep(1.0)
        sent_at: dict[str, float] = {}
        got_at: dict[str, float] = {}

        async def read() -> None:
            while len(got_at) < n_fire:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batch.values():
                    for r in records:
                        doc = json.loads(r.value)
                        if doc["product"] in sent_at and doc["product"] not in got_at:
                            got_at[doc["product"]] = now

        reader = asyncio.create_task(read())
        interval = 1.0 / rate
        t_start = time.perf_counter()
        fi = qi = 0
        for i in range(int(rate * seconds)):
            target = t_start + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = T0 + timedelta(milliseconds=i)
            if i % fire_every == 0 and fi < n_fire:
                p = firing[fi]
                fi += 1
                payload = _price(p, 91.0, at)
                sent_at[p] = time.perf_counter()
            else:
                p = quiet[qi % len(quiet)]
                qi += 1
                payload = _price(p, 99.0, at)  # within 5%: never fires
            await producer.send(topic, payload, key=p.encode())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, timeout=60)
        lat = [(got_at[p] - sent_at[p]) * 1000 for p in sent_at if p in got_at]
        missing = len(sent_at) - len(lat)
        if missing:
            from controller.store import Store

            store = Store(redis, settings.key_prefix)
            _, state = await store.trigger_state("trig")
            print(
                f"  warning: {missing} triggers not seen within the timeout; "
                f"{len(await store.triggers('trig'))} fired in Redis, "
                f"stale {None if state is None else state['stale']}, "
                f"watermark {None if state is None else state['watermark']}"
            )
        return lat
    finally:
        await producer.stop()
        await consumer.stop()
        worker.stop()
        await redis.aclose()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs) or [float("nan")]
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    p50s, p90s, p99s = [], [], []
    with EmbeddedStack() as stack:
        for run in range(a.runs):
            lat = asyncio.run(one_run(stack, a.rate, a.seconds, a.products))
            p50, p90, p99 = pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99)
            p50s.append(p50)
            p90s.append(p90)
            p99s.append(p99)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"run {run + 1}: {len(lat)} triggers at {a.rate:.0f} events/s: "
                f"p50 {p50:.1f} ms  p90 {p90:.1f} ms  p99 {p99:.1f} ms  "
                f"max {max(lat, default=float('nan')):.1f} ms  (load average {load})",
                flush=True,
            )
    print(
        f"median over {a.runs} runs: p50 {statistics.median(p50s):.1f} ms, "
        f"p90 {statistics.median(p90s):.1f} ms, "
        f"p99 {statistics.median(p99s):.1f} ms (target p99 <= 50 ms)"
    )


if __name__ == "__main__":
    main()
