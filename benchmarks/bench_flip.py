"""Period flip of a 1,000,000-product experiment on the real embedded broker and Redis.

Per run (fresh topics and key prefix): create the experiment (the flip of period 0 happens
in ``create``), then move the simulated clock over the next boundary and time
``Flipper.tick()``: compute the design's assignments, write them to Redis, publish one
message per product to the assignments topic (acks=all, flushed), and mark the period done.
Stage times come from a profile-free split (design / Redis write / publish). The timed flip
is the second of the process, as in a running worker: the partition of each product (the
producer's murmur2) and the previous period's draws (for the washout) are cached from the
first one.

Baseline in the same run: ``redis-benchmark -t set -n N -P 1000`` (pipelined SET, from the
Debian package redis-tools) against the same Redis; if it is missing, a redis-py pipelined
SET loop (said in the output). Peak RSS of this process is reported (it is the worker's
flip path, run in-process).

Usage: .venv/bin/python benchmarks/bench_flip.py [--products 1000000] [--runs 3]
Target: <= 10 s per flip of 1M products.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streams.runtime  # noqa: E402
from benchmarks._common import START, bench_settings, experiment, median_report  # noqa: E402
from controller.store import make_redis as _make_redis  # noqa: E402
from streams.embedded import EmbeddedStack  # noqa: E402
from streams.kafka import ensure_topics  # noqa: E402
from streams.runtime import Runtime  # noqa: E402


def redis_benchmark_set(stack: EmbeddedStack, n: int) -> tuple[float, str]:
    """Pipelined SETs per second against the stack's Redis."""
    exe = shutil.which("redis-benchmark")
    if exe:
        out = subprocess.run(
            [
                exe,
                "-h",
                stack.host,
                "-p",
                str(stack.redis_port),
                "-t",
                "set",
                "-n",
                str(n),
                "-P",
                "1000",
                "-q",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        m = re.findall(r"SET: ([\d.]+) requests per second", out)
        return float(m[-1]), "redis-benchmark -t set -P 1000"
    return asyncio.run(_py_set(stack, n)), "redis-py pipelined SET (no redis-benchmark)"


async def _py_set(stack: EmbeddedStack, n: int) -> float:
    from redis.asyncio import Redis

    r = Redis.from_url(stack.redis_url)
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.set(f"bench:set:{i}", "x")
        await pipe.execute()
    await r.aclose()
    return n / (time.perf_counter() - t0)


class _Stages:
    """Wraps the store and sink to time the flip's stages without a profiler."""

    def __init__(self, rt: Runtime) -> None:
        self.write = self.publish = 0.0
        store_write, sink_publish = (
            rt.store.write_assignments,
            rt.assignment_sink.publish_assignments,
        )

        async def write(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return await store_write(*a, **kw)
            finally:
                self.write += time.perf_counter() - t0

        async def publish(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return await sink_publish(*a, **kw)
            finally:
                self.publish += time.perf_counter() - t0

        rt.store.write_assignments = write  # type: ignore[method-assign]
        rt.assignment_sink.publish_assignments = publish  # type: ignore[method-assign]


def _patient_redis(settings):  # type: ignore[no-untyped-def]
    """make_redis with a long socket timeout: creating a 1M-product experiment is one Lua
    call holding 1M arguments, longer than redis-py's default read timeout here."""
    r = _make_redis(settings)
    r.connection_pool.connection_kwargs["socket_timeout"] = 300
    return r


streams.runtime.make_redis = _patient_redis  # type: ignore[assignment]


async def one_flip(stack: EmbeddedStack, n: int) -> dict[str, float]:
    settings = bench_settings(stack, partitions=4, flip_lease=timedelta(minutes=10))
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    try:
        spec = experiment(n)
        await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        await rt.flipper.create(spec)
        create_s = time.perf_counter() - t0
        stages = _Stages(rt)
        await rt.clock.set(START + spec.period + timedelta(seconds=1))  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        flips = await rt.flipper.tick()
        flip_s = time.perf_counter() - t0
        assert flips == 1, flips
        state = await rt.store.get_experiment(spec.id)
        assert state.flipped_period == 1
        written = len(await rt.store.assignment_records(spec.id, 1))
        assert written == n, written
        await rt.redis.flushdb()  # free the 1M-product state before the next run
        return {
            "flip_s": flip_s,
            "write_s": stages.write,
            "publish_s": stages.publish,
            "design_s": flip_s - stages.write - stages.publish,
            "create_s": create_s,
            "rss_mb": psutil.Process().memory_info().rss / 2**20,
        }
    finally:
        await rt.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.products
    with EmbeddedStack() as stack:
        runs, base = [], []
        for i in range(args.runs):
            r = asyncio.run(one_flip(stack, n))
            rate, how = redis_benchmark_set(stack, n)
            r["baseline_s"] = n / rate
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"run {i + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()),
                f"(load average {load})",
                flush=True,
            )
            runs.append(r)
            base.append(rate)
    f2 = "{:.2f}".format
    print(f"\nflip of {n:,} products, 4 partitions, {args.runs} runs")
    print(median_report("flip + publish (s)", [r["flip_s"] for r in runs], f2))
    for k in ("design_s", "write_s", "publish_s", "create_s"):
        print(median_report(f"  {k}", [r[k] for r in runs], f2))
    print(median_report(f"baseline {how} (SET/s)", base))
    print(median_report(f"baseline: {n:,} pipelined SETs (s)", [r["baseline_s"] for r in runs], f2))
    print(median_report("flip / baseline", [r["flip_s"] / r["baseline_s"] for r in runs], f2))
    print(median_report("process RSS after the flip (MB)", [r["rss_mb"] for r in runs]))
    med = sorted(r["flip_s"] for r in runs)[len(runs) // 2]
    print(f"target <= 10 s: {'met' if med <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
