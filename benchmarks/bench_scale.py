"""The state layout at scale: one experiment of N products x D days, filled directly in Redis.

Issue #17's baseline: what today's layout costs as an experiment grows, measured on a real
redis-server with the store's own code (``Store.create_experiment``, ``write_assignments`` of
the controller's own period draws, ``Store.ingest`` for sales) and the analysis worker's own
read path (``RedisPanelSource.panel``) and estimators (``fit_plan``: ``dm`` and ``ht``).

For each size it prints:

- Redis bytes per product-day, from ``INFO memory`` (``used_memory``) before and after: the
  panel cells (``{p}:exp:{id}:cells``, four fields per cell: units, revenue, orders, head
  units) and the per-period assignment records, separately;
- bytes per remembered sale: ``--sales`` sales through the real ingest script into cells that
  already exist, so the growth is the dedupe markers;
- the analysis cycle: read (panel source) and estimate (``dm`` + ``ht``), in a fresh process;
- the cycle after one new period arrives (its records and cells written, the clock moved on);
- that process's peak RSS (``ru_maxrss``).

The cells are filled with packed HSETs of realistic sums (Poisson units, revenue at a price,
orders, head units); no broker is needed. Usage:

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,50000,100000] [--days 90]
        [--sales 200000] [--cycle-max N]

Targets (issue #17, at 100,000 x 90, for the new layout): closed periods <= 24 B per
product-day, dedupe <= 24 B per remembered sale, full cycle <= 15 s, cycle after one new
period <= 3 s, analysis worker RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.designs import period_assignments  # noqa: E402
from controller.settings import load_settings  # noqa: E402
from controller.spec import ExperimentSpec  # noqa: E402
from controller.store import SaleRow, Store, make_redis  # noqa: E402
from controller.store.resp import packed_hsets  # noqa: E402
from streams.embedded import ManagedProcess, free_port, redis_binary  # noqa: E402

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


def cell_pairs(products: Sequence[str], k: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    units = rng.poisson(6.0, len(products))
    head = rng.binomial(units, 0.05)
    orders = np.maximum(1, units // 2)
    pairs: list[tuple[str, str]] = []
    for p, u, h, o in zip(products, units.tolist(), head.tolist(), orders.tolist(), strict=True):
        pairs += [
            (f"{k}|{p}|u", str(u)),
            (f"{k}|{p}|r", repr(u * 9.99)),
            (f"{k}|{p}|n", str(o)),
            (f"{k}|{p}|h", str(h)),
        ]
    return pairs


async def send_packed(store: Store, commands: Any) -> None:
    pool = store.redis.connection_pool
    conn = await pool.get_connection()
    try:
        while group := list(islice(commands, 20)):
            await conn.send_packed_command([cmd for cmd, _ in group], check_health=False)
            for _ in group:
                await conn.read_response()
    finally:
        await pool.release(conn)


async def flip(store: Store, spec: ExperimentSpec, k: int) -> None:
    """Period k's flip as the controller leaves it: its records written, the flip completed
    (period k - 1 is then complete for the panel source)."""
    await store.write_assignments(EXP, k, period_assignments(spec, k))
    await store.complete_flip(EXP, k, k + 1, 0, "bench")


async def add_cells(store: Store, spec: ExperimentSpec, k: int, rng: np.random.Generator) -> None:
    key = f"{store.p}:exp:{EXP}:cells"
    await send_packed(store, packed_hsets(key, cell_pairs(spec.all_products(), k, rng), 4000))


def worker_redis(url: str) -> Any:
    """The client a worker makes (``make_redis``: its timeouts and decoding) for ``url``."""
    os.environ["PRICELAB_REDIS__URL"] = url
    return make_redis(load_settings())


async def used_memory(store: Store) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


async def fill(url: str, n: int, days: int, sales: int) -> dict[str, float]:
    redis = worker_redis(url)
    store = Store(redis)
    try:
        await redis.flushall()
        spec = spec_for(n, days)
        rng = np.random.default_rng(n)
        before = await used_memory(store)
        await store.create_experiment(spec, START)
        after_create = await used_memory(store)
        for k in range(days + 1):  # flip `days` closes the last filled period
            await flip(store, spec, k)
        after_records = await used_memory(store)
        for k in range(days):
            await add_cells(store, spec, k, rng)
        after_cells = await used_memory(store)
        key = f"{store.p}:exp:{EXP}:cells"
        # sales into period 0's existing cells: the growth is what remembering a sale costs
        day0 = int(START.timestamp() * 1000)
        rows = [
            SaleRow(
                f"s{i:09d}", EXP, 0, spec.all_products()[i % n], day0 + 3_600_000, day0, 1, 9.99
            )
            for i in range(sales)
        ]
        t0 = time.perf_counter()
        for i in range(0, sales, 2000):
            statuses = await store.ingest(rows[i : i + 2000], ttl_s=8 * 86400)
            assert set(statuses) == {"ok"}, set(statuses)
        ingest_s = time.perf_counter() - t0
        after_sales = await used_memory(store)
        cells_fields = await redis.hlen(key)
        return {
            "create_b": after_create - before,
            "records_b": (after_records - after_create) * days / (days + 1),
            "cells_b": after_cells - after_records,
            "cells_fields": cells_fields,
            "sales_b": after_sales - after_cells,
            "ingest_s": ingest_s,
        }
    finally:
        await redis.aclose()


def cycle_child(url: str, n: int, days: int, out: Any) -> None:
    """One analysis cycle as of the end of ``days`` periods, then one after a new period, in
    this (fresh) process; sends timings and the process's peak RSS."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from analysis.worker import fit_plan, panel_from_cells
    from controller.clock import ManualClock
    from controller.panel_source import RedisPanelSource
    from core.ports import EstimatorPlan

    async def run() -> dict[str, float]:
        redis = worker_redis(url)  # the worker's client: its 120 s read timeout
        store = Store(redis)
        spec = spec_for(n, days)
        clock = ManualClock(START + timedelta(days=days, minutes=1))
        source = RedisPanelSource(store, clock)
        res: dict[str, float] = {}
        try:
            for tag in ("full", "new"):
                if tag == "new":  # one more period arrives (untimed), the clock moves on
                    await add_cells(store, spec, days, np.random.default_rng(0))
                    await flip(store, spec, days + 1)
                    clock.set(START + timedelta(days=days + 1, minutes=1))
                t0 = time.perf_counter()
                try:
                    df = await source.panel(EXP, clock.now())
                except RedisTimeout:  # the worker's client gives up: the cycle fails
                    res[f"{tag}_read_s"] = math.inf
                    res[f"{tag}_estimate_s"] = math.nan
                    res["timeout_s"] = time.perf_counter() - t0
                    break
                t1 = time.perf_counter()
                panel = panel_from_cells(df)
                for name in ("dm", "ht"):
                    fit_plan(EstimatorPlan(name), panel)
                t2 = time.perf_counter()
                res[f"{tag}_read_s"], res[f"{tag}_estimate_s"] = t1 - t0, t2 - t1
                res[f"{tag}_cells"] = float(len(df))
                del df, panel
        finally:
            await redis.aclose()
        res["peak_rss_b"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        return res

    out.put(asyncio.run(run()))


def measure(url: str, n: int, days: int, sales: int, cycle: bool = True) -> dict[str, float]:
    res = asyncio.run(fill(url, n, days, sales))
    if not cycle:
        nan = float("nan")
        return res | dict.fromkeys(
            ("full_read_s", "full_estimate_s", "new_read_s", "new_estimate_s", "peak_rss_b"), nan
        )
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    proc = ctx.Process(target=cycle_child, args=(url, n, days, q))
    proc.start()
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
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="pricelab-scale-") as tmp:
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
        try:
            url = f"redis://127.0.0.1:{port}/0"
            print(f"layout: one hash field per cell field; {args.days} days; {args.sales:,} sales")
            head = (
                "| products | cells B/product-day | records B/product-day | B/remembered sale "
                "| full cycle read + estimate (s) | after one new period (s) | peak RSS |"
            )
            print(head)
            print("|" + "---|" * 7)
            for n in sizes:
                r = measure(url, n, args.days, args.sales, cycle=n <= args.cycle_max)
                pd_ = n * args.days
                print(
                    f"| {n:,} | {r['cells_b'] / pd_:.0f} ({r['cells_b'] / r['cells_fields']:.0f}"
                    f" per field) | {r['records_b'] / pd_:.0f} | {r['sales_b'] / args.sales:.0f}"
                    f" | {cycle(r, 'full')} | {cycle(r, 'new')}"
                    f" | {rss(r['peak_rss_b'])} |",
                    flush=True,
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
