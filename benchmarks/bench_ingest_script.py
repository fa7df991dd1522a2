"""redis-server CPU per sale of the ingest script, as the sales path runs it, and optionally of
another version of the script, alternated on the same batches.

``bench_ingest.py`` measures the whole path (broker, worker, Redis), where the machine's load
moves every figure; this one isolates the script. Per run, on a real redis-server with a fresh
key prefix: the experiment of ``bench_ingest.py`` (2,000 products, hourly periods, 10-minute
washout) is created and flipped through its first 13 periods with the store's own code; its
sales (``benchmarks._common.sale_payloads``, a new seed each repetition) are decoded and routed
by the real ``SalesIngestor`` in batches of 2,000, then the first quarter of them is sent
again (duplicates). The figure is redis-server's CPU time (user + system) over those calls,
per sale sent. With ``--against``, each repetition runs the other script on the same sales
right before or after this one (alternately), each on an emptied Redis, and the statuses
and totals of the two must agree.

Usage: .venv/bin/python benchmarks/bench_ingest_script.py [--sales 40000] [--reps 3]
       [--against OLD.lua]
e.g.   git show HEAD~1:controller/store/lua/ingest.lua > /tmp/old.lua
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
from redis.asyncio import Redis
from redis.exceptions import ResponseError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import NOW, START, experiment, sale_payloads  # noqa: E402
from controller.clock import ManualClock  # noqa: E402
from controller.designs import period_assignments  # noqa: E402
from controller.sales import SalesIngestor  # noqa: E402
from controller.settings import Settings  # noqa: E402
from controller.store import Store, lua  # noqa: E402
from streams.live.embedded import (  # noqa: E402
    EmbeddedStackError,
    ManagedProcess,
    free_port,
    redis_binary,
)
from streams.worker.sale_decoder import decode_sale  # noqa: E402

N_PRODUCTS = 2000
BATCH = 2000


async def one_run(
    redis: Redis, redis_pid: int, script: str, sales: list[bytes]
) -> tuple[float, list[str], dict[str, int]]:
    """(redis-server CPU µs per sale sent, the statuses, the experiment's totals)."""
    await redis.flushall()  # each run starts from an empty Redis
    store = Store(redis, f"s{uuid.uuid4().hex[:8]}")
    store._scripts["ingest"] = redis.register_script(script)
    spec = experiment(N_PRODUCTS)
    await store.create_experiment(spec, START)
    for k in range(13):  # every sale of the first 12 hours has its period's arm
        await store.write_assignments(spec.id, k, period_assignments(spec, k))
        await store.mark_flipped(spec.id, k)
    clock = ManualClock(NOW + timedelta(seconds=1))
    ingestor = SalesIngestor(store, clock, Settings())
    decoded = [decode_sale(p) for p in sales]
    batches = [decoded[i : i + BATCH] for i in range(0, len(decoded), BATCH)]
    batches += batches[: max(1, len(batches) // 4)]  # the first quarter again: duplicates
    proc = psutil.Process(redis_pid)
    t = proc.cpu_times()
    cpu0 = t.user + t.system
    statuses: list[str] = []
    for batch in batches:
        statuses += [v.status for v in await ingestor.process(batch)]
    t = proc.cpu_times()
    per_sale = (t.user + t.system - cpu0) / len(statuses) * 1e6
    return per_sale, statuses, await store.totals(spec.id)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sales", type=int, default=40_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--against", type=Path, help="another ingest script, run alternately")
    args = ap.parse_args()
    scripts = {"current": lua("ingest")}
    if args.against is not None:
        try:
            scripts[f"against {args.against}"] = args.against.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            ap.exit(2, f"cannot read the script to run against, {args.against}: {exc}\n")
    if args.sales < 1 or args.reps < 1:
        ap.exit(2, "--sales and --reps must be at least 1\n")
    with tempfile.TemporaryDirectory(prefix="pricelab-bench-script-") as tmp:
        port = free_port("127.0.0.1")
        try:
            argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--save", "", "--appendonly", "no", "--dir", tmp]
            server = ManagedProcess("redis", argv, "127.0.0.1", port, Path(tmp) / "redis.log")
            server.start()
        except EmbeddedStackError as exc:  # no binary, or it did not start
            ap.exit(2, f"redis-server did not start: {str(exc).splitlines()[0]}\n")
        assert server.proc is not None
        redis = Redis(host="127.0.0.1", port=port, decode_responses=True)
        figures: dict[str, list[float]] = {name: [] for name in scripts}
        try:
            for rep in range(args.reps):
                sales = sale_payloads(args.sales, N_PRODUCTS, seed=rep)
                first = None
                # alternated: each script runs first in every other repetition
                for name, text in list(scripts.items())[:: 1 if rep % 2 == 0 else -1]:
                    try:
                        us, statuses, totals = await one_run(redis, server.proc.pid, text, sales)
                    except ResponseError as exc:  # e.g. --against a file that is not the script
                        ap.exit(2, f"the {name} script failed in Redis: {exc}\n")
                    figures[name].append(us)
                    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
                    print(f"rep {rep + 1} {name}: {us:.2f} µs a sale; statuses {counts}")
                    if first is None:
                        first = (statuses, totals)
                    elif (statuses, totals) != first:
                        raise SystemExit("the two scripts gave other statuses or totals")
        finally:
            await redis.aclose()
            server.stop()
    print(f"\n{args.sales:,} sales + {args.sales // 4:,} duplicates, {args.reps} repetitions")
    for name, xs in figures.items():
        runs = ", ".join(f"{x:.2f}" for x in xs)
        print(f"redis-server CPU per sale, {name}: median {statistics.median(xs):.2f} µs ({runs})")


if __name__ == "__main__":
    asyncio.run(main())
