"""Trigger latency: competitor-price event -> published assignment, through a real worker.

Set-up: the embedded broker and Redis, one `pricelab worker --role controller` process, and a
triggered experiment over N products whose rule is "undercut by >= 5% for >= 30 minutes".
Before the clock starts, every product in the measured set is seen undercut 31 minutes ago.
Then events arrive at a steady rate (default 1,000/s): most are ordinary prices of other
products; every tenth is a fresh observation of a still-undercut product, which fires its
trigger. Latency = from handing that event to the producer until its assignment message is
read back from the assignments topic by a separate consumer (both clocks in this process).

Baselines in the same run (same broker, Redis and machine), at the same event rate, with the
same event stream, right after the worker's part: raw aiokafka relays (each its own process,
as the worker is; one after the other, on a source topic of their own) that consume with the
worker's fetch window and produce every firing event straight to a topic of their own with
acks=all, one of them plain and one with a Redis round trip (EVALSHA) per batch between
consume and produce. They commit no offsets (no group). The bench's reader reads their topics exactly as it reads the
assignments, so a relay's latency is the broker hops and the reader's polling alone, and
worker / relay says what the worker adds.

Prints p50/p90/p99/max over the fired products, per run and path, the median over runs, and
the worker's own stage profile (its /metrics histograms, scraped before and after the timed
part of each run: pricelab_trigger_stage_seconds and pricelab_trigger_fire_latency_seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    Histo,
    bench_settings,
    histo_add,
    histo_count,
    histo_delta,
    histo_quantile,
    scrape_histograms,
)
from controller.settings import Settings  # noqa: E402
from controller.store import Store, make_redis  # noqa: E402
from controller.store.clock import SharedSimulatedClock  # noqa: E402
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async  # noqa: E402
from streams.live.embedded import EmbeddedStack  # noqa: E402
from streams.live.launcher import WorkerProcess  # noqa: E402
from streams.worker.kafka import ensure_topics  # noqa: E402

T0 = datetime(2026, 6, 3, 12, tzinfo=UTC)
#: the relays fetch with the worker's competitor consumer's fetch window
WINDOW_MS = max(1, int(Settings.model_fields["competitor_batch_within"].default * 1000))
#: paths measured in every run: the worker and its baselines
PATHS = ("worker", "relay", "relay+redis")
STAGES = ("turn_wait", "apply", "save", "publish", "commit", "timer_turn")

# one Redis round trip per relayed batch, of the same shape as the worker's versioned save
_RELAY_SCRIPT = """
redis.call('HSET', KEYS[1], 'n', ARGV[1])
return redis.call('INCR', KEYS[2])
"""


async def relay(bootstrap: str, src: str, dst: str, redis_url: str | None) -> None:
    """A raw aiokafka relay: competitor events that fire (price under 95) go straight to
    ``dst`` with acks=all; with ``redis_url``, one EVALSHA per batch before producing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=WINDOW_MS
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=False
    )
    rconn = None
    await consumer.start()
    await producer.start()
    parts = [TopicPartition(src, p) for p in sorted(consumer.partitions_for_topic(src) or ())]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    if redis_url is not None:
        import redis.asyncio as aioredis

        rconn = aioredis.from_url(redis_url)
        script = rconn.register_script(_RELAY_SCRIPT)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # product -> (fetched, acknowledged), on the system-wide monotonic clock the bench uses
    stamps: dict[str, tuple[float, float]] = {}
    print("ready", flush=True)
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=WINDOW_MS, max_records=500)
        fetched = time.perf_counter()
        fire = [r for rs in batch.values() for r in rs if json.loads(r.value)["price"] < 95.0]
        if rconn is not None and batch:
            await script(keys=[f"{dst}:h", f"{dst}:v"], args=[len(fire)])
        futs = [await producer.send(dst, r.value, key=r.key) for r in fire]
        if futs:
            await asyncio.gather(*futs)
            acked = time.perf_counter()
            for r in fire:
                stamps[r.key.decode()] = (fetched, acked)
    await consumer.stop()
    await producer.stop()
    if rconn is not None:
        await rconn.aclose()
    print(json.dumps(stamps), flush=True)


class RelayProcess:
    def __init__(self, bootstrap: str, src: str, dst: str, redis_url: str | None) -> None:
        args = [sys.executable, __file__, "--relay", bootstrap, src, dst]
        if redis_url is not None:
            args.append(redis_url)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"relay did not start: {line!r}")

    def stop(self) -> dict[str, tuple[float, float]]:
        """Stop it; its (fetched, acknowledged) stamps per relayed product."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return {}
        lines = out.strip().splitlines()
        return {k: tuple(v) for k, v in json.loads(lines[-1]).items()} if lines else {}


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


def worker_profile(text: str) -> dict[str, Histo]:
    """The worker's trigger histograms, by stage, plus "fire" (handed over -> published)."""
    out = scrape_histograms(text, "pricelab_trigger_stage_seconds", "stage")
    for h in scrape_histograms(text, "pricelab_trigger_fire_latency_seconds").values():
        out["fire"] = h
    for h in scrape_histograms(text, "pricelab_competitor_batch_size").values():
        out["batch_size"] = h
    return out


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


Hops = dict[str, dict[str, list[float]]]


async def one_run(
    stack: EmbeddedStack, rate: float, seconds: float, n_products: int
) -> tuple[dict[str, list[float]], dict[str, Histo], Hops]:
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
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    await clock.set(T0 - timedelta(minutes=40))
    topic = settings.topics.competitor_prices
    # each relay reads a source topic of its own (the worker would otherwise handle its
    # events too) and writes to a topic of its own
    relay_topics = {
        path: (f"{topic}.{tag}", f"{settings.topics.assignments}.{tag}")
        for path, tag in (("relay", "relay"), ("relay+redis", "relay-redis"))
    }
    await create_topics(
        stack.bootstrap_servers, [t for pair in relay_topics.values() for t in pair], 2
    )
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
        assert (await send_command_async(settings, "create", timeout=60, backfill=True, spec=spec))["ok"]
        # every measured product has been undercut since 31 minutes before T0
        for p in firing:
            await producer.send(topic, _price(p, 90.0, T0 - timedelta(minutes=31)), key=p.encode())
        await producer.flush()
        # the seeding must be absorbed before time moves on, or it would be stale
        store = Store(redis, settings.key_prefix)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, state = await store.trigger_state("trig")
            if state is not None and len(state["products"]) >= n_fire:
                break
            await asyncio.sleep(0.2)
        await clock.set(T0)
        outputs = [settings.topics.assignments] + [dst for _, dst in relay_topics.values()]
        parts = [TopicPartition(t, i) for t in outputs for i in range(2)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        await asyncio.sleep(1.0)

        async def drive(src: str, dst: str) -> dict[str, tuple[float, float, float]]:
            """The event stream into ``src``; each firing event's (sent, acknowledged to the
            bench's producer, read back on ``dst``)."""
            sent_at: dict[str, float] = {}
            acked_at: dict[str, float] = {}
            got_at: dict[str, float] = {}

            def acked(p: str) -> Callable[[object], None]:
                return lambda _: acked_at.__setitem__(p, time.perf_counter())

            async def read() -> None:
                while len(got_at) < n_fire:
                    batch = await consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for tp, records in batch.items():
                        if tp.topic != dst:
                            continue
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
                fut = await producer.send(src, payload, key=p.encode())
                if p in sent_at and p not in acked_at:
                    fut.add_done_callback(acked(p))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, timeout=60)
            if len(got_at) < len(sent_at):
                print(f"  warning: {len(sent_at) - len(got_at)} of {len(sent_at)} not read back")
            return {
                p: (sent_at[p], acked_at.get(p, sent_at[p]), got_at[p])
                for p in sent_at
                if p in got_at
            }

        def ms(pairs: dict[str, tuple[float, float]]) -> list[float]:
            return [(b - a) * 1000 for a, b in pairs.values()]

        def sent_hops(seen: dict[str, tuple[float, float, float]]) -> dict[str, list[float]]:
            return {
                "sent -> acked": ms({p: (t[0], t[1]) for p, t in seen.items()}),
                "acked -> read": ms({p: (t[1], t[2]) for p, t in seen.items()}),
            }

        lats: dict[str, list[float]] = {}
        hops: dict[str, dict[str, list[float]]] = {}
        profile_before = worker_profile(await asyncio.to_thread(worker.metrics))
        seen = await drive(topic, settings.topics.assignments)
        lats["worker"] = ms({p: (t[0], t[2]) for p, t in seen.items()})
        hops["worker"] = sent_hops(seen)
        profile_after = worker_profile(await asyncio.to_thread(worker.metrics))
        profile = {k: histo_delta(h, profile_before.get(k)) for k, h in profile_after.items()}
        if len(lats["worker"]) < n_fire:
            _, state = await store.trigger_state("trig")
            print(
                f"  worker: {len(await store.triggers('trig'))} fired in Redis, "
                f"stale {None if state is None else state['stale']}, "
                f"watermark {None if state is None else state['watermark']}"
            )
        # the baselines, one after the other (run side by side, the extra consumers slowed
        # the broker and the worker: worker p50 51 ms instead of 25 in one trial run)
        for path, (src, dst) in relay_topics.items():
            r = RelayProcess(
                stack.bootstrap_servers, src, dst, stack.redis_url if "redis" in path else None
            )
            try:
                r.wait_ready()
                await asyncio.sleep(0.5)
                seen = await drive(src, dst)
            finally:
                stamps = r.stop()
            lats[path] = ms({p: (t[0], t[2]) for p, t in seen.items()})
            both = [p for p in seen if p in stamps]
            hops[path] = {
                "sent -> acked": sent_hops(seen)["sent -> acked"],
                "acked -> fetched": ms({p: (seen[p][1], stamps[p][0]) for p in both}),
                "fetched -> relayed": ms({p: stamps[p] for p in both}),
                "relayed -> read": ms({p: (stamps[p][1], seen[p][2]) for p in both}),
            }
        return lats, profile, hops
    finally:
        await producer.stop()
        await consumer.stop()
        worker.stop()
        await redis.aclose()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs) or [float("nan")]
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def print_profile(profile: dict[str, Histo], indent: str = "  ") -> None:
    """Per-stage count, mean and p50/p90/p99 (estimated from the histogram buckets)."""
    rows = [s for s in (*STAGES, "fire") if s in profile and histo_count(profile[s]) > 0]
    for s in rows:
        h = profile[s]
        n = histo_count(h)
        label = "fire (handed over -> published)" if s == "fire" else s
        print(
            f"{indent}{label:<32} n {n:6.0f}  mean {_ms(h[1] / n):>6} ms  "
            f"p50 {_ms(histo_quantile(h, 0.5)):>6}  p90 {_ms(histo_quantile(h, 0.9)):>6}  "
            f"p99 {_ms(histo_quantile(h, 0.99)):>6} ms"
        )
    b = profile.get("batch_size")
    if b is not None and histo_count(b) > 0:
        n = histo_count(b)
        print(
            f"{indent}competitor batches {n:.0f}, events per batch mean {b[1] / n:.1f}, "
            f"p50 {histo_quantile(b, 0.5):.0f}, p90 {histo_quantile(b, 0.9):.0f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--relay":  # a baseline relay process
        bootstrap, src, dst, *redis_url = sys.argv[2:]
        asyncio.run(relay(bootstrap, src, dst, redis_url[0] if redis_url else None))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    q: dict[str, dict[str, list[float]]] = {
        path: {"p50": [], "p90": [], "p99": []} for path in PATHS
    }
    profiles: list[dict[str, Histo]] = []
    with EmbeddedStack() as stack:
        for run in range(a.runs):
            lats, profile, hops = asyncio.run(one_run(stack, a.rate, a.seconds, a.products))
            profiles.append(profile)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"run {run + 1} (load average {load}):", flush=True)
            for path in PATHS:
                lat = lats[path]
                for name, qq in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                    q[path][name].append(pct(lat, qq))
                print(
                    f"  {path:<12} {len(lat)} triggers at {a.rate:.0f} events/s: "
                    f"p50 {pct(lat, 0.5):.1f} ms  p90 {pct(lat, 0.9):.1f} ms  "
                    f"p99 {pct(lat, 0.99):.1f} ms  max {max(lat, default=float('nan')):.1f} ms",
                    flush=True,
                )
                # Tansu's fetches slow down as a partition fills (see benchmarks/README.md)
                k = max(1, len(lat) // 4)
                fourths = [lat[i * k : (i + 1) * k] for i in range(4)]
                print(
                    f"  {'':<12} by quarter of the run: "
                    f"p50 {' / '.join(f'{pct(x, 0.5):.1f}' for x in fourths)}, "
                    f"p99 {' / '.join(f'{pct(x, 0.99):.1f}' for x in fourths)} ms"
                )
            for path, by_hop in hops.items():
                print(f"  {path} hops (the bench's producer's acks; a relay's own stamps):")
                for hop, xs in by_hop.items():
                    print(
                        f"    {hop:<18} p50 {pct(xs, 0.5):6.1f}  p90 {pct(xs, 0.9):6.1f}  "
                        f"p99 {pct(xs, 0.99):6.1f} ms"
                    )
            print("  worker stages (its /metrics, timed part of the run):")
            print_profile(profile, "    ")
    med = {path: {k: statistics.median(v) for k, v in qs.items()} for path, qs in q.items()}
    print(f"medians over {a.runs} runs:")
    for path in PATHS:
        m = med[path]
        runs = " / ".join(f"{x:.1f}" for x in q[path]["p99"])
        print(
            f"  {path:<12} p50 {m['p50']:.1f} ms, p90 {m['p90']:.1f} ms, p99 {m['p99']:.1f} ms"
            f"  (p99 of the runs: {runs})"
        )
    for base in PATHS[1:]:
        print(
            f"  worker / {base}: p50 {med['worker']['p50'] / med[base]['p50']:.2f}x, "
            f"p99 {med['worker']['p99'] / med[base]['p99']:.2f}x"
        )
    met = med["worker"]["p99"] <= 50.0
    print(
        f"  target p99 <= 50 ms: {'met' if met else 'NOT met'} "
        f"(worker p99 median {med['worker']['p99']:.1f} ms)"
    )
    print("worker stages, all runs pooled:")
    pooled: dict[str, Histo] = {}
    for prof in profiles:
        for k, h in prof.items():
            pooled[k] = histo_add(h, pooled.get(k))
    print_profile(pooled, "  ")


if __name__ == "__main__":
    main()
