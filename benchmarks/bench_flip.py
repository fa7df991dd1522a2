"""Period flip of a 1,000,000-product experiment on the real embedded broker and Redis.

Per run (fresh topics and key prefix): create the experiment (the flip of period 0 happens
in ``create``), then move the simulated clock over the next boundary and time
``Flipper.tick()``: compute the design's assignments, write them to Redis, publish one
message per product to the assignments topic (acks=all, flushed), and mark the period done.
Stage times come from a profile-free split (design / Redis write / publish). While ``create``
and the flip run, another process PINGs Redis every ~1 ms: its slowest PING, and the longest
command in Redis's SLOWLOG, say how long the stage blocked every other client. The timed flip
is the second of the process, as in a running worker: the partition of each product (the
producer's murmur2) and the previous period's draws (for the washout) are cached from the
first one.

Baseline in the same run: ``redis-benchmark -t set -n N -P 1000`` (pipelined SET, from the
Debian package redis-tools) against the same Redis; if it is missing, a redis-py pipelined
SET loop (said in the output). Peak RSS of this process is reported (it is the worker's
flip path, run in-process). It runs with a controller worker's malloc setting
(``benchmarks._common.controller_malloc``), or glibc's defaults with ``--malloc-defaults``.

The stack is the default one (``EmbeddedStack()``, as ``pricelab up`` starts it): the broker does
not check the output contracts (``--contract-checks`` turns that on, as the integration tests
do) and the producer compresses with the default codec (zstd; ``--compression`` sets another).

Usage: .venv/bin/python benchmarks/bench_flip.py [--products 1000000] [--runs 3]
Target (issue #42): <= 3 s per flip of 1M products.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    START,
    bench_settings,
    controller_malloc,
    experiment,
    median_report,
)
from controller.settings import KafkaSettings  # noqa: E402
from streams.live.embedded import EmbeddedStack  # noqa: E402
from streams.worker.kafka import ensure_topics  # noqa: E402
from streams.worker.runtime import Runtime  # noqa: E402


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


_PROBE = r"""
import signal, sys, time, redis
r = redis.Redis.from_url(sys.argv[1], socket_timeout=300)  # the default 5 s is too short
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
r.ping()
print("ready", flush=True)
lat, busy = [], 0
while not stop:
    t0 = time.perf_counter()
    while True:  # a script past lua-time-limit (5 s) gets every other client BUSY replies
        try:
            r.ping()
            break
        except redis.exceptions.BusyLoadingError:
            raise
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSY"):
                raise
            busy += 1
            time.sleep(0.001)
    lat.append(time.perf_counter() - t0)
    time.sleep(0.001)
lat.sort()
print(len(lat), lat[-1] * 1000, lat[int(0.99 * (len(lat) - 1))] * 1000, busy, flush=True)
"""


class RedisProbe:
    """Another Redis client, in its own process: a PING every ~1 ms while a stage runs. Its
    slowest PING is how long that stage kept every other client (sales, flips) waiting."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROBE, url], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> tuple[float, float, int]:
        """(slowest PING, p99 PING) in ms (a PING answered BUSY is retried and counts as one
        slow PING), and the number of BUSY replies."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        _, worst, p99, busy = out.split()
        return float(worst), float(p99), int(busy)


def _cpu_seconds(stack: EmbeddedStack) -> tuple[float, float, float]:
    """CPU seconds (user + system) so far of this process, redis-server and the broker."""
    assert stack.redis is not None and stack.broker is not None
    procs = [psutil.Process(), *(psutil.Process(p.proc.pid) for p in (stack.redis, stack.broker))]
    times = [p.cpu_times() for p in procs]
    return times[0].user + times[0].system, *(t.user + t.system for t in times[1:])  # type: ignore[return-value]


async def _slowest_command_ms(rt: Runtime) -> float:
    """The longest command Redis logged since the last reset (SLOWLOG, >= 1 ms)."""
    log = await rt.redis.slowlog_get(1_000_000)
    return max((e["duration"] for e in log), default=0) / 1000


@contextlib.asynccontextmanager
async def _runtime(stack: EmbeddedStack, compression: str | None = None) -> AsyncIterator[Runtime]:
    """A started worker runtime on fresh topics and key prefix, every command >= 1 ms in the
    SLOWLOG (a flip's HSETs alone fill the default 128 entries)."""
    settings = bench_settings(stack, partitions=4, flip_lease=timedelta(minutes=10))
    if compression is not None:
        kafka = settings.kafka.model_copy(update={"compression_type": compression})
        settings = settings.model_copy(update={"kafka": kafka})
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    try:
        await rt.redis.config_set("slowlog-log-slower-than", 1000)
        await rt.redis.config_set("slowlog-max-len", 1_000_000)
        yield rt
    finally:
        await rt.stop()


async def _watched(rt: Runtime, url: str, stage: Awaitable[Any]) -> tuple[Any, dict[str, float]]:
    """Run ``stage`` while another client PINGs Redis: its result, and its seconds, the
    slowest and p99 PING (ms), the BUSY replies and Redis's longest command (ms)."""
    await rt.redis.slowlog_reset()
    probe = RedisProbe(url)
    t0 = time.perf_counter()
    result = await stage
    seconds = time.perf_counter() - t0
    worst, p99, busy = probe.stop()
    return result, {
        "s": seconds,
        "ping_max_ms": worst,
        "ping_p99_ms": p99,
        "busy_replies": busy,
        "cmd_max_ms": await _slowest_command_ms(rt),
    }


async def one_flip(
    stack: EmbeddedStack, n: int, compression: str | None = None
) -> dict[str, float]:
    async with _runtime(stack, compression) as rt:
        spec = experiment(n)
        await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
        _, create = await _watched(rt, stack.redis_url, rt.flipper.create(spec, backfill=True))
        stages = _Stages(rt)
        await rt.clock.set(START + spec.period + timedelta(seconds=1))  # type: ignore[attr-defined]
        cpu0 = _cpu_seconds(stack)
        flips, flip = await _watched(rt, stack.redis_url, rt.flipper.tick())
        cpu = [b - a for a, b in zip(cpu0, _cpu_seconds(stack), strict=True)]
        assert flips == 1, flips
        state = await rt.store.get_experiment(spec.id)
        assert state.flipped_period == 1
        written = len(await rt.store.assignment_records(spec.id, 1))
        assert written == n, written
        await rt.redis.flushdb()  # free the 1M-product state before the next run
        return {
            "flip_s": flip["s"],
            "write_s": stages.write,
            "publish_s": stages.publish,
            "design_s": flip["s"] - stages.write - stages.publish,
            "create_s": create["s"],
            "create_ping_max_ms": create["ping_max_ms"],
            "create_ping_p99_ms": create["ping_p99_ms"],
            "create_cmd_max_ms": create["cmd_max_ms"],
            "create_busy_replies": create["busy_replies"],
            "flip_ping_max_ms": flip["ping_max_ms"],
            "flip_cmd_max_ms": flip["cmd_max_ms"],
            "flip_busy_replies": flip["busy_replies"],
            "rss_mb": psutil.Process().memory_info().rss / 2**20,
            "flip_cpu_self_s": cpu[0],
            "flip_cpu_redis_s": cpu[1],
            "flip_cpu_broker_s": cpu[2],
        }


async def many_flips(stack: EmbeddedStack, n_exps: int, n: int) -> dict[str, float]:
    """``n_exps`` experiments of ``n`` products each (disjoint products) flip at the same
    boundary: one ``tick`` flips them all, as a worker's tick does. Times the tick until the
    last assignment is acknowledged (acks=all, flushed) and the last flip marked done, and
    what another client's PINGs see meanwhile."""
    async with _runtime(stack) as rt:
        specs = [experiment(n, exp_id=f"x{j}", prefix=f"x{j}p") for j in range(n_exps)]
        await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
        for spec in specs:
            await rt.flipper.create(spec, backfill=True)
        await rt.clock.set(START + specs[0].period + timedelta(seconds=1))  # type: ignore[attr-defined]
        flips, seen = await _watched(rt, stack.redis_url, rt.flipper.tick())
        assert flips == n_exps, flips
        for spec in specs:
            assert (await rt.store.get_experiment(spec.id)).flipped_period == 1
            assert len(await rt.store.assignment_records(spec.id, 1)) == n
        await rt.redis.flushdb()
        return {"all_s": seen.pop("s"), **seen}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--compression",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        help="the producer's codec (default: PRICELAB_KAFKA__COMPRESSION_TYPE's default)",
    )
    ap.add_argument(
        "--contract-checks",
        action="store_true",
        help="the broker checks every output message against its contract, as in the "
        "integration tests (PRICELAB_EMBEDDED_CONTRACT_CHECKS)",
    )
    ap.add_argument(
        "--experiments",
        type=int,
        default=1,
        help="flip this many experiments of --products each at the same boundary instead "
        "(issue #17: 10 x 10,000); the baseline is one experiment of the same total size",
    )
    ap.add_argument(
        "--malloc-defaults",
        action="store_true",
        help="flip with glibc's malloc defaults instead of a controller worker's fixed mmap "
        "threshold (streams/worker/memory.py CONTROLLER_MMAP_THRESHOLD)",
    )
    args = ap.parse_args()
    malloc = controller_malloc(not args.malloc_defaults)
    print(f"malloc: {malloc}", flush=True)
    n = args.products
    if args.experiments > 1:
        many(args.experiments, n, args.runs)
        return
    with EmbeddedStack(validate_outputs=args.contract_checks) as stack:
        runs, base = [], []
        for i in range(args.runs):
            r = asyncio.run(one_flip(stack, n, args.compression))
            rate, how = redis_benchmark_set(stack, n)
            r["baseline_s"] = n / rate
            _print_run(i, r)
            runs.append(r)
            base.append(rate)
    f2 = "{:.2f}".format
    codec = args.compression or KafkaSettings().compression_type
    checks = "on" if args.contract_checks else "off"
    print(
        f"\nflip of {n:,} products, 4 partitions, {args.runs} runs; compression {codec}, "
        f"the broker's contract checks {checks}"
    )
    print(median_report("flip + publish (s)", [r["flip_s"] for r in runs], f2))
    for k in ("design_s", "write_s", "publish_s", "create_s"):
        print(median_report(f"  {k}", [r[k] for r in runs], f2))
    print("CPU seconds spent during the flip (less bound to the machine's load than its time):")
    for k in ("flip_cpu_self_s", "flip_cpu_redis_s", "flip_cpu_broker_s"):
        print(median_report(f"  {k}", [r[k] for r in runs], f2))
    print("another client's slowest PING (ms) and Redis's longest command (SLOWLOG, ms):")
    for k in (
        "create_ping_max_ms",
        "create_ping_p99_ms",
        "create_cmd_max_ms",
        "create_busy_replies",
        "flip_ping_max_ms",
        "flip_cmd_max_ms",
        "flip_busy_replies",
    ):
        print(median_report(f"  {k}", [r[k] for r in runs], f2))
    print(median_report(f"baseline {how} (SET/s)", base))
    print(median_report(f"baseline: {n:,} pipelined SETs (s)", [r["baseline_s"] for r in runs], f2))
    print(median_report("flip / baseline", [r["flip_s"] / r["baseline_s"] for r in runs], f2))
    print(median_report("process RSS after the flip (MB)", [r["rss_mb"] for r in runs]))
    med = sorted(r["flip_s"] for r in runs)[len(runs) // 2]
    print(f"target <= 3 s: {'met' if med <= 3 else 'NOT met'}")


def _print_run(i: int, r: dict[str, float]) -> None:
    """One run's figures and the machine's load average, as they come."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"run {i + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()),
        f"(load average {load})",
        flush=True,
    )


def many(n_exps: int, n: int, runs_n: int) -> None:
    """Ten experiments at once against one experiment of the same total size, same stack."""
    f2 = "{:.2f}".format
    with EmbeddedStack() as stack:
        runs, base = [], []
        for i in range(runs_n):
            r = asyncio.run(many_flips(stack, n_exps, n))
            one = asyncio.run(one_flip(stack, n_exps * n))
            r["one_s"] = one["flip_s"]
            _print_run(i, r)
            runs.append(r)
            base.append(one["flip_s"])
    print(f"\n{n_exps} experiments x {n:,} products flipping at one boundary, {runs_n} runs")
    print(
        median_report(
            "time to the last acknowledged assignment (s)", [r["all_s"] for r in runs], f2
        )
    )
    print(median_report(f"baseline: one experiment of {n_exps * n:,} (s)", base, f2))
    print(median_report("ratio", [r["all_s"] / r["one_s"] for r in runs], f2))
    for k in ("ping_max_ms", "ping_p99_ms", "cmd_max_ms", "busy_replies"):
        print(median_report(f"  another client: {k}", [r[k] for r in runs], f2))


if __name__ == "__main__":
    main()
