"""The state layout at scale: one experiment of N products x D days, filled directly in Redis.

Issue #17's baseline: what today's layout costs as an experiment grows, measured on a real
redis-server with the store's own code (``Store.create_experiment``, ``write_assignments`` of
the controller's own period draws, ``Store.ingest`` for sales) and the analysis worker's own
read path (``RedisPanelSource.panel``) and estimators (``fit_plan``: ``dm`` and ``ht``).

For each size it prints:

- Redis bytes per product-day, from ``INFO memory`` (``used_memory``) before and after: the
  panel cells (``pl:exp:{<id>}:sums:<k>`` while live, ``...:col:<k>`` once compacted) and
  the per-period assignment records, separately;
- bytes per remembered sale: ``--sales`` sales through the real ingest script into cells that
  already exist, so the growth is the dedupe markers (by ``INFO``, and the dedupe sets alone
  by ``MEMORY USAGE``, for the first live period and the one after it);
- the analysis cycle: read (panel source) and estimate (``dm`` + ``ht`` on units, revenue and
  the price paid: what the worker publishes for the two), in a fresh process, by one of two
  paths: ``whole``, the long cell table and its panels (``RedisPanelSource.panel``,
  ``analysis.worker.metric_panels``, ``fit_metric``), and ``chunked``, the worker's path for
  an experiment above ``PRICELAB_ANALYSIS__CHUNKED_ABOVE`` products (``analysis.chunked``:
  chunks of 65,536 products, the estimators' partial sums, the rows of a 20,000-product
  sample read beside them); the chunked path's read and estimate are interleaved, and its
  "estimate" is the time inside the estimators' partials and finishes;
- the cycle after one new period arrives (its records and cells written, the clock moved on;
  the chunked path keeps each chunk's sums over the compacted periods between the two);
- that process's peak RSS (``ru_maxrss``).

Each path of a size runs on its own fill of Redis (the cycle after a new period moves the
state on), the whole path up to ``--whole-max`` products, the chunked one from
``--chunked-min``.

The cycle process gets the environment an analysis worker is started with
(``streams.live.launcher.role_env``: glibc malloc settings), unless ``--malloc-defaults``.

``--workers N`` (N > 1) times instead one experiment's full cycle spread over N analysis
workers (``analysis.sharded``): N fresh processes join one consumer group on the shard topic of
an embedded broker (``streams.worker.shards``, N partitions), and once the group has split the
partitions over them all, each computes its chunks and the merging one merges; the cycle is
the time until the last of them ends its look. One worker alone (the unsharded chunked path,
the same chunks) runs in the same run on the same fill, alternated, ``--reps`` times each;
medians, and each process's CPU seconds (on a machine shared with other jobs the wall time
measures the share of the cores the processes got as much as the work).

The cells are filled with realistic sums (Poisson units, revenue at a price, orders, head
units), packed as the ingest script's BITFIELDs leave them; no broker is needed but for
``--workers``. Usage:

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,50000,100000] [--days 90]
        [--sales 200000] [--cycle-max N] [--whole-max 100000] [--chunked-min 100000]
        [--workers 2 --reps 3 --chunk-products 65536]

Targets (issue #17, at 100,000 x 90, for the new layout): closed periods <= 24 B per
product-day, dedupe <= 24 B per remembered sale, full cycle <= 15 s, cycle after one new
period <= 3 s, analysis worker RSS <= 2 GB. Issue #42, at 1,000,000 x 90 (chunked): peak RSS
<= 3 GB, full cycle <= 30 s, cycle after one new period <= 5 s; two workers on one experiment
finish a full cycle in <= 0.7 of one worker's time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.designs import period_assignments  # noqa: E402
from controller.periods import period_start  # noqa: E402
from controller.settings import load_settings  # noqa: E402
from controller.spec import ExperimentSpec  # noqa: E402
from controller.store import SaleRow, Store, make_redis  # noqa: E402
from controller.store.columns import pack_sums  # noqa: E402
from streams.live.embedded import ManagedProcess, free_port, redis_binary  # noqa: E402
from streams.live.launcher import role_env  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=UTC)
EXP = "scale"


def spec_for(n: int, days: int) -> ExperimentSpec:
    """A random-days experiment two periods longer than the filled history: the new period,
    and the one whose flip closes it."""
    return ExperimentSpec(
        id=EXP,
        design="random-days",
        products=tuple(f"P{i:06d}" for i in range(n)),
        treatment_policy="new",
        control_policy="old",
        start=START,
        end=START + timedelta(days=days + 2),
        seed=3,
    )


def cell_sums(n: int, rng: np.random.Generator) -> bytes:
    """Realistic sums of n products, packed as the ingest script's BITFIELDs leave them."""
    units = rng.poisson(6.0, n)
    return pack_sums(units, units * 9.99, np.maximum(1, units // 2), rng.binomial(units, 0.05))


async def flip(store: Store, spec: ExperimentSpec, k: int) -> None:
    """Period k's flip as the controller leaves it: its records written, the flip completed
    (period k - 1 is then complete for the panel source)."""
    await store.write_assignments(EXP, k, period_assignments(spec, k))
    await store.mark_flipped(EXP, k)


async def add_cells(store: Store, spec: ExperimentSpec, k: int, rng: np.random.Generator) -> None:
    """Period k's live cell sums ({p}:exp:{id}:sums:{k}), as the ingest script leaves them."""
    await store.redis.set(f"{store.exp(EXP)}:sums:{k}", cell_sums(len(spec.all_products()), rng))


def worker_redis(url: str) -> Any:
    """The client a worker makes (``make_redis``: its timeouts and decoding) for ``url``."""
    os.environ["PRICELAB_REDIS__URL"] = url
    return make_redis(load_settings())


async def used_memory(store: Store) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


def sales_into(spec: ExperimentSpec, k: int, count: int, tag: str) -> list[SaleRow]:
    """``count`` sales of period k after its head, round the products (cells that exist)."""
    start = int(period_start(spec, k).timestamp() * 1000)
    products = sorted(spec.all_products())
    return [
        SaleRow(
            f"{tag}{i:09d}",
            EXP,
            k,
            products[i % len(products)],
            i % len(products),  # its position among the sorted products
            start + 3_600_000,
            start,
            1,
            9.99,
            "",
            3 * 86400,
        )  # fmt: skip
        for i in range(count)
    ]


async def ingest_all(store: Store, rows: list[SaleRow]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(rows), 2000):
        statuses = await store.ingest(rows[i : i + 2000])
        assert set(statuses) == {"ok"}, set(statuses)
    return time.perf_counter() - t0


async def fill(url: str, n: int, days: int, sales: int) -> dict[str, float]:
    """Create the experiment; periods 0..days-3 flipped, filled and compacted (closed: their
    end + 2 days lateness has passed at ``days``), periods days-2 and days-1 live, period
    ``days`` flipped and in progress; then sales into the two live periods."""
    redis = worker_redis(url)
    store = Store(redis)
    try:
        await redis.flushall()
        spec = spec_for(n, days)
        index = pd.Index(sorted(spec.all_products()), dtype=object)
        rng = np.random.default_rng(n)
        closed = days - 2
        before = await used_memory(store)
        await store.create_experiment(spec, START)
        after_create = await used_memory(store)
        t0 = time.perf_counter()
        for k in range(closed):
            await flip(store, spec, k)
            await add_cells(store, spec, k, rng)
            await store.compact_period(EXP, k, index)
        compact_s = time.perf_counter() - t0
        after_closed = await used_memory(store)
        for k in range(closed, days):
            await flip(store, spec, k)
            await add_cells(store, spec, k, rng)
        after_live = await used_memory(store)
        await flip(store, spec, days)  # closes period days-1 for the panel
        after_flip = await used_memory(store)  # that flip's records are not dedupe memory
        # sales into the live periods' existing cells: the growth is the dedupe markers. The
        # first live period's bucket count is the default (no sales remembered before it);
        # the second's follows the first's volume, as every period after the first does
        first = await ingest_all(store, sales_into(spec, days - 2, sales, "a"))
        after_first = await used_memory(store)
        second = await ingest_all(store, sales_into(spec, days - 1, sales, "b"))
        after_second = await used_memory(store)
        # each period's dedupe sets alone (MEMORY USAGE): INFO's growth also holds what Redis
        # frees or allocates meanwhile (a flip's query buffer: at 100,000 products the first
        # period's growth by INFO came out negative)
        sets_first, sets = await sets_bytes(store, days - 2), await sets_bytes(store, days - 1)
        return {
            "create_b": after_create - before,
            "closed_b": after_closed - after_create,
            "closed_periods": closed,
            "compact_s": compact_s / closed,
            "live_b": (after_live - after_closed) / 2,
            "sales_first_b": after_first - after_flip,
            "sales_b": after_second - after_first,
            "sets_b": sets,
            "sets_first_b": sets_first,
            "ingest_s": (first + second) / 2,
        }
    finally:
        await redis.aclose()


async def sets_bytes(store: Store, k: int) -> int:
    """Bytes of period k's dedupe sets (``MEMORY USAGE`` of each, every element counted)."""
    total = 0
    async for key in store.redis.scan_iter(f"{store.exp(EXP)}:seen:{k}:*", count=1000):
        total += int(await store.redis.memory_usage(key, samples=0) or 0)
    return total


#: the estimators the cycle fits (what the bench has always timed), and their metrics
PLANS = (("dm", {"cluster": "unit"}), ("ht", {"p": 0}))
METRICS = ("units", "revenue", "price")


def cycle_child(
    url: str,
    n: int,
    days: int,
    out: Any,
    profile: bool = False,
    path: str = "whole",
    chunk: int = 65_536,
    steps: tuple[str, ...] = ("full", "new"),
) -> None:
    """One analysis cycle as of the end of ``days`` periods, then (``steps``) one after a new
    period, in this (fresh) process, by ``path`` (chunks of ``chunk`` products); sends timings
    and the process's peak RSS."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from analysis.chunked import ChunkedLooks, Chunking
    from analysis.errors import NotEstimable
    from analysis.worker import fit_metric, metric_panels
    from controller.clock import ManualClock
    from controller.panel_source import RedisPanelSource
    from core.ports import EstimatorPlan

    plans = [EstimatorPlan(name, params) for name, params in PLANS]

    def whole(df: pd.DataFrame) -> None:
        panels = metric_panels(df)
        for plan in plans:
            for metric in METRICS:
                with contextlib.suppress(NotEstimable):  # ht has no price paid
                    fit_metric(plan, panels, metric)

    async def run() -> dict[str, float]:
        redis = worker_redis(url)  # the worker's client: its 120 s read timeout
        store = Store(redis)
        spec = spec_for(n, days)
        clock = ManualClock(START + timedelta(days=days, minutes=1))
        source = RedisPanelSource(store, clock, lateness=timedelta(days=2))
        looks = ChunkedLooks(Chunking(above=0, products=chunk))  # default sample
        res: dict[str, float] = {}
        try:
            for tag in steps:
                if tag == "new":  # one more period arrives (untimed), the clock moves on
                    await add_cells(store, spec, days, np.random.default_rng(0))
                    await flip(store, spec, days + 1)
                    clock.set(START + timedelta(days=days + 1, minutes=1))
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    if path == "whole":
                        df = await source.panel(EXP, clock.now())
                        t1 = time.perf_counter()
                        whole(df)
                        cells = float(len(df))
                        del df
                        estimate = time.perf_counter() - t1
                    else:
                        look = await looks.look(source, EXP, clock.now(), plans)
                        assert look is not None
                        population, _ = look
                        bad = [k for k, r in population.results.items() if isinstance(r, Exception)]
                        assert bad == [("ht", "price")], bad  # ht has no price paid
                        estimate = sum(population.seconds.values())
                        cells = float(population.n_products * population.n_periods)
                        del look, population
                except RedisTimeout:  # the worker's client gives up: the cycle fails
                    res[f"{tag}_read_s"] = math.inf
                    res[f"{tag}_estimate_s"] = math.nan
                    res["timeout_s"] = time.perf_counter() - t0
                    break
                total = time.perf_counter() - t0
                res[f"{tag}_cpu_s"] = time.process_time() - c0
                res[f"{tag}_read_s"], res[f"{tag}_estimate_s"] = total - estimate, estimate
                res[f"{tag}_cells"] = cells
        finally:
            await redis.aclose()
        res["peak_rss_b"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        return res

    if not profile:
        out.put(asyncio.run(run()))
        return
    import cProfile
    import pstats

    prof = cProfile.Profile()
    res = prof.runcall(asyncio.run, run())
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    out.put(res)


def shard_child(
    url: str,
    bootstrap: str,
    app_id: str,
    partitions: int,
    n: int,
    days: int,
    chunk: int,
    status: Any,
    go: Any,
    out: Any,
) -> None:
    """One of the workers of a sharded full cycle (``analysis.sharded``): joins the shard
    topic's consumer group (``streams.worker.shards``, real group coordination on the broker),
    reports its shards until ``go``, then computes its part of the look; the worker that merges
    also waits for the others' parts, merges and finishes. Sends its time from ``go`` to the
    end of its look, whether it merged, and its peak RSS."""

    async def run() -> dict[str, float]:
        from analysis.chunked import Chunking
        from analysis.sharded import ShardedLooks
        from controller.clock import ManualClock
        from controller.panel_source import RedisPanelSource, RedisPartialStore
        from core.ports import EstimatorPlan
        from streams.worker.shards import KafkaShardMembership

        os.environ.update(
            {
                "PRICELAB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "PRICELAB_APP_ID": app_id,
                "PRICELAB_ANALYSIS__SHARDS": str(partitions),
            }
        )
        redis = worker_redis(url)
        settings = load_settings()
        store = Store(redis)
        clock = ManualClock(START + timedelta(days=days, minutes=1))
        source = RedisPanelSource(store, clock, lateness=timedelta(days=2))
        shards = KafkaShardMembership(settings)
        shards.start()
        looks = ShardedLooks(
            Chunking(above=0, products=chunk), shards, RedisPartialStore(store), wait=600.0
        )
        plans = [EstimatorPlan(name, params) for name, params in PLANS]
        try:
            while not go.is_set():
                status.put((os.getpid(), shards.generation(), sorted(shards.owned() or ())))
                await asyncio.sleep(0.2)
            t0, c0 = time.perf_counter(), time.process_time()
            look = await looks.look(source, EXP, clock.now(), plans)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            if look is not None:
                bad = [k for k, r in look[0].results.items() if isinstance(r, Exception)]
                assert bad == [("ht", "price")], bad
        finally:
            await shards.stop()
            await redis.aclose()
        return {
            "seconds": elapsed,
            "cpu_s": cpu,
            "merged": float(look is not None),
            "peak_rss_b": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0,
        }

    out.put(asyncio.run(run()))


def sharded_cycle(
    url: str,
    bootstrap: str,
    workers: int,
    n: int,
    days: int,
    chunk: int,
    rep: int,
    worker_env: dict[str, str],
) -> list[dict[str, float]]:
    """One full cycle of ``workers`` processes on one experiment (their own consumer group
    per run), timed from the moment the group has split the shards over all of them."""
    ctx = mp.get_context("spawn")
    status, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    app_id = f"scale{os.getpid()}r{rep}"
    procs = [
        ctx.Process(
            target=shard_child,
            args=(url, bootstrap, app_id, workers, n, days, chunk, status, go, out),
        )
        for _ in range(workers)
    ]
    saved = dict(os.environ)
    os.environ.update(worker_env)
    try:
        for proc in procs:
            proc.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    latest: dict[int, tuple[int, list[int]]] = {}
    deadline = time.monotonic() + 120
    try:
        while True:  # until every worker owns shards and together each exactly once
            pid, generation, owned = status.get(timeout=120)
            latest[pid] = (generation, owned)
            split = sorted(s for _, o in latest.values() for s in o)
            owned = [o for _, o in latest.values()]
            if len(latest) == workers and all(owned) and split == list(range(workers)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the group did not split the shards: {latest}")
        go.set()
        got = []
        while len(got) < workers:
            try:
                got.append(out.get(timeout=1.0))
            except queue.Empty:
                if any(not p.is_alive() and p.exitcode for p in procs):
                    raise RuntimeError("a shard worker died") from None
        return got
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


async def _drop_parts(url: str) -> None:
    """Every stored part of a look (a run must not find the previous run's)."""
    redis = worker_redis(url)
    try:
        keys = [k async for k in redis.scan_iter(f"{Store(redis).exp(EXP)}:part:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def compare_workers(args: argparse.Namespace, url: str, worker_env: dict[str, str]) -> None:
    """``--workers N``: for each size, one fill; then ``--reps`` pairs of full cycles, one
    worker alone (the unsharded chunked path) and N workers on the experiment, alternated;
    medians."""
    from streams.live.embedded import EmbeddedStack

    stack = EmbeddedStack().start()  # the broker whose consumer group assigns the shards
    try:
        print(
            f"| products x {args.days} d | chunk | one worker full cycle (s), runs | "
            f"{args.workers} workers full cycle (s), runs | ratio (median) | "
            "CPU s: one worker / the merging worker / each other (medians) | "
            "peak RSS one / each of N |"
        )
        print("|---|---|---|---|---|---|---|")
        for n in [int(x) for x in args.sizes.split(",")]:
            asyncio.run(fill(url, n, args.days, args.sales))
            one, many, rss_one, rss_many = [], [], 0.0, 0.0
            cpu_one: list[float] = []
            cpu_merge: list[float] = []
            cpu_other: list[float] = []
            for rep in range(args.reps):
                ctx = mp.get_context("spawn")
                q: Any = ctx.Queue()
                proc = ctx.Process(
                    target=cycle_child,
                    args=(url, n, args.days, q, False, "chunked", args.chunk_products, ("full",)),
                )
                saved = dict(os.environ)
                os.environ.update(worker_env)
                try:
                    proc.start()
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                r = q.get(timeout=3600)
                proc.join()
                one.append(r["full_read_s"] + r["full_estimate_s"])
                cpu_one.append(r["full_cpu_s"])
                rss_one = max(rss_one, r["peak_rss_b"])
                asyncio.run(_drop_parts(url))
                got = sharded_cycle(
                    url, stack.bootstrap_servers, args.workers, n, args.days,
                    args.chunk_products, rep, worker_env,
                )  # fmt: skip
                assert sum(g["merged"] for g in got) == 1, got
                many.append(max(g["seconds"] for g in got))
                cpu_merge.extend(g["cpu_s"] for g in got if g["merged"])
                cpu_other.extend(g["cpu_s"] for g in got if not g["merged"])
                rss_many = max(rss_many, *(g["peak_rss_b"] for g in got))
                print(f"  run {rep + 1}: one {one[-1]:.2f} s ({cpu_one[-1]:.2f} CPU), "
                      f"{args.workers} workers {many[-1]:.2f} s ({cpu_merge[-1]:.2f} CPU merging), "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            m1, mn = float(np.median(one)), float(np.median(many))
            print(
                f"| {n:,} | {args.chunk_products:,} | {m1:.2f} ({', '.join(f'{x:.2f}' for x in one)})"
                f" | {mn:.2f} ({', '.join(f'{x:.2f}' for x in many)}) | {mn / m1:.2f}"
                f" | {np.median(cpu_one):.2f} / {np.median(cpu_merge):.2f}"
                f" / {np.median(cpu_other):.2f} | {rss(rss_one)} / {rss(rss_many)} |",
                flush=True,
            )
    finally:
        stack.stop()


def measure(
    url: str,
    n: int,
    days: int,
    sales: int,
    cycle: bool = True,
    profile: bool = False,
    worker_env: dict[str, str] | None = None,
    path: str = "whole",
) -> dict[str, float]:
    res = asyncio.run(fill(url, n, days, sales))
    if not cycle:
        nan = float("nan")
        return res | dict.fromkeys(
            ("full_read_s", "full_estimate_s", "new_read_s", "new_estimate_s", "peak_rss_b"), nan
        )
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    proc = ctx.Process(target=cycle_child, args=(url, n, days, q, profile, path))
    saved = dict(os.environ)
    os.environ.update(worker_env or {})  # read by glibc when the child execs
    try:
        proc.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    while True:  # a child that dies sends nothing: do not wait for it forever
        try:
            res |= q.get(timeout=1.0)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the cycle process died (exit {proc.exitcode})") from None
    proc.join()
    return res


def cycle(r: dict[str, float], tag: str) -> str:
    read = r.get(f"{tag}_read_s", math.nan)
    if math.isnan(read):
        return "not timed (--cycle-max)"
    if read == math.inf:
        return f"fails: the read timed out after {r['timeout_s']:.0f} s"
    return f"{read:.2f} + {r.get(f'{tag}_estimate_s', math.nan):.2f}"


def rss(b: float) -> str:
    return "-" if math.isnan(b) else f"{b / 2**30:.2f} GB"


def scratch_redis(tmp: str) -> tuple[ManagedProcess, str]:
    """A redis-server of its own on a free loopback port, no persistence, its files in
    ``tmp``: started, with its URL (the caller stops it)."""
    port = free_port("127.0.0.1")
    server = ManagedProcess(
        "redis",
        [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        "127.0.0.1",
        port,
        Path(tmp) / "redis.log",
    )  # fmt: skip
    server.start()
    return server, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--sales", type=int, default=200_000)
    ap.add_argument(
        "--cycle-max",
        type=int,
        default=10**9,
        help="Time the analysis cycle only up to this many products (today's layout reads "
        "every cell field on every cycle: ~20 us each through redis-py, minutes at 100k x 90).",
    )
    ap.add_argument(
        "--whole-max",
        type=int,
        default=100_000,
        help="Time the whole-panel cycle up to this many products (at 1,000,000 x 90 it would "
        "hold ~15 GB).",
    )
    ap.add_argument(
        "--chunked-min",
        type=int,
        default=100_000,
        help="Time the chunked cycle (the worker's path above chunked_above) from this many "
        "products.",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="With N > 1: time a full cycle of N analysis workers sharing the experiment "
        "(analysis.sharded, a consumer group on an embedded broker) against one worker alone, "
        "on one fill per size, --reps times each (medians).",
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--chunk-products",
        type=int,
        default=65_536,
        help="Products per chunk in --workers mode (the settings' default: 65,536).",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the cycles (to stderr)")
    ap.add_argument(
        "--malloc-defaults",
        action="store_true",
        help="Run the cycle with glibc's malloc defaults, not the analysis worker's settings "
        "(streams.live.launcher.role_env).",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="pricelab-scale-") as tmp:
        server, url = scratch_redis(tmp)
        try:
            worker_env = {} if args.malloc_defaults else role_env(("analysis",), os.environ)
            print(f"cycle process environment beyond the parent's: {worker_env or 'none'}")
            if args.workers > 1:
                print(f"load average at start: {os.getloadavg()}")
                compare_workers(args, url, worker_env)
                print(f"load average at end: {os.getloadavg()}")
                return
            print(
                f"layout: closed periods compacted to columns, open ones packed sums + record hashes; "
                f"{args.days} days; {args.sales:,} sales per live period"
            )
            head = (
                "| products | path | closed B/product-day | live B/product-day | B/remembered sale "
                "by INFO, steady (first period) | dedupe sets alone, steady / first period "
                "| compaction s/period | full cycle read + estimate (s) "
                "| after one new period (s) | peak RSS |"
            )
            print(head)
            print("|" + "---|" * 10)
            for n in sizes:
                paths = [p for p, ok in (("whole", n <= args.whole_max),
                                         ("chunked", n >= args.chunked_min)) if ok]  # fmt: skip
                for path in paths or ["whole"]:
                    r = measure(
                        url, n, args.days, args.sales, n <= args.cycle_max and bool(paths),
                        args.profile, worker_env, path,
                    )  # fmt: skip
                    closed = n * r["closed_periods"]
                    print(
                        f"| {n:,} | {path} | {r['closed_b'] / closed:.1f} | {r['live_b'] / n:.0f}"
                        f" | {r['sales_b'] / args.sales:.1f} ({r['sales_first_b'] / args.sales:.1f})"
                        f" | {r['sets_b'] / args.sales:.1f} / {r['sets_first_b'] / args.sales:.1f}"
                        f" | {r['compact_s']:.2f} | {cycle(r, 'full')} | {cycle(r, 'new')}"
                        f" | {rss(r['peak_rss_b'])} |",
                        flush=True,
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
