"""What waiting for a replica (``PRICELAB_REDIS__WAIT_REPLICAS=1``) costs the sales path: the
same batches through the real ``SalesIngestor`` and store, on a redis-server with one replica
on the same host, without and with ``WAIT``, alternated.

Per repetition and mode, on an emptied Redis (the replica follows the flush), the experiment
of ``bench_ingest.py`` (2,000 products, hourly periods) is created and flipped through its
first 13 periods; its sales (a new seed each repetition) are decoded and routed in batches of
2,000, then the first quarter is sent again (duplicates). Figures: wall-clock milliseconds per
batch (the ingestor's ``process``, which is what holds a batch's commit back) and
redis-server's CPU per sale. A one-host replica is the cheapest case: over a network each
batch waits a round trip more.

Usage: .venv/bin/python benchmarks/bench_ingest_wait.py [--sales 40000] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import NOW, START, experiment, sale_payloads  # noqa: E402
from controller.clock import ManualClock  # noqa: E402
from controller.designs import period_assignments  # noqa: E402
from controller.sales import SalesIngestor  # noqa: E402
from controller.settings import Settings  # noqa: E402
from controller.store import Store  # noqa: E402
from streams.live.embedded import (  # noqa: E402
    EmbeddedStackError,
    ManagedProcess,
    free_port,
    redis_binary,
)
from streams.worker.sale_decoder import decode_sale  # noqa: E402

N_PRODUCTS = 2000
BATCH = 2000
MODES = {
    "no wait": Settings(),
    "WAIT 1": Settings.model_validate({"redis": {"wait_replicas": 1, "wait_timeout_ms": 5000}}),
}


async def one_run(
    redis: Redis, redis_pid: int, settings: Settings, sales: list[bytes]
) -> tuple[float, float, dict[str, int]]:
    """(ms per batch, redis-server CPU µs per sale, the experiment's totals)."""
    await redis.flushall()
    store = Store(redis, f"s{uuid.uuid4().hex[:8]}")
    spec = experiment(N_PRODUCTS)
    await store.create_experiment(spec, START)
    for k in range(13):
        await store.write_assignments(spec.id, k, period_assignments(spec, k))
        await store.mark_flipped(spec.id, k)
    ingestor = SalesIngestor(store, ManualClock(NOW + timedelta(seconds=1)), settings)
    decoded = [decode_sale(p) for p in sales]
    batches = [decoded[i : i + BATCH] for i in range(0, len(decoded), BATCH)]
    batches += batches[: max(1, len(batches) // 4)]
    proc = psutil.Process(redis_pid)
    t = proc.cpu_times()
    cpu0, t0, n = t.user + t.system, time.perf_counter(), 0
    for batch in batches:
        n += len(await ingestor.process(batch))
    wall = time.perf_counter() - t0
    t = proc.cpu_times()
    cpu_us = (t.user + t.system - cpu0) / n * 1e6
    return wall / len(batches) * 1000, cpu_us, await store.totals(spec.id)


def _server(tmp: str, name: str, *extra: str) -> ManagedProcess:
    port = free_port("127.0.0.1")
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", tmp, "--dbfilename", f"{name}.rdb"]
    server = ManagedProcess(name, [*argv, *extra], "127.0.0.1", port, Path(tmp) / f"{name}.log")
    server.start()
    return server


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sales", type=int, default=40_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.sales < 1 or args.reps < 1:
        ap.exit(2, "--sales and --reps must be at least 1\n")
    with tempfile.TemporaryDirectory(prefix="pricelab-bench-wait-") as tmp:
        try:
            primary = _server(tmp, "primary")
            replica = _server(tmp, "replica", "--replicaof", "127.0.0.1", str(primary.port))
        except EmbeddedStackError as exc:
            ap.exit(2, f"redis-server did not start: {str(exc).splitlines()[0]}\n")
        assert primary.proc is not None
        redis = Redis(host="127.0.0.1", port=primary.port, decode_responses=True)
        ms: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        try:
            deadline = time.monotonic() + 30
            while (await redis.info("replication"))["connected_slaves"] < 1:
                if time.monotonic() > deadline:
                    ap.exit(2, "the replica did not connect within 30 s\n")
                await asyncio.sleep(0.1)
            for rep in range(args.reps):
                sales = sale_payloads(args.sales, N_PRODUCTS, seed=rep)
                first = None
                for mode in list(MODES)[:: 1 if rep % 2 == 0 else -1]:
                    per_batch, us, totals = await one_run(
                        redis, primary.proc.pid, MODES[mode], sales
                    )
                    ms[mode].append(per_batch)
                    cpu[mode].append(us)
                    print(f"rep {rep + 1} {mode}: {per_batch:.1f} ms a batch, {us:.2f} µs a sale")
                    if first is None:
                        first = totals
                    elif totals != first:
                        raise SystemExit("the two modes gave other totals")
        finally:
            await redis.aclose()
            replica.stop()
            primary.stop()
    print(f"\n{args.sales:,} sales + {args.sales // 4:,} duplicates in batches of {BATCH:,}")
    for mode in MODES:
        runs = ", ".join(f"{x:.1f}" for x in ms[mode])
        print(
            f"{mode}: median {statistics.median(ms[mode]):.1f} ms a batch ({runs}); "
            f"redis-server {statistics.median(cpu[mode]):.2f} µs a sale"
        )


if __name__ == "__main__":
    asyncio.run(main())
