"""The console's experiments list over 1,000 experiments: the server time of its document
(``streams.console.views.experiments_view``: every experiment's overview, who created it,
its health flags), on a real redis-server.

Per repetition, a fresh store (a fresh console process: no spec parsed yet) reads the list
twice: the first read parses each spec once, the second is a warm console's. The estimates
feed is a stand-in with no look (its messages are in memory in a running console: no read).
Who created each experiment is kept with its state (the create command's actor), so the list
reads no audit trail.

Baseline in the same run: the same list with the states read one experiment at a time (one
round trip each, as ``Store.experiments`` read them before it pipelined them).

Usage: .venv/bin/python benchmarks/bench_console_list.py [--experiments 1000] [--reps 5]
Target (issue #55): <= 300 ms server time for a list of 1,000 experiments.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import START, experiment  # noqa: E402
from controller.settings import Settings  # noqa: E402
from controller.store import Store  # noqa: E402
from controller.store.experiments import ExperimentState  # noqa: E402
from streams.console.views import experiments_view  # noqa: E402
from streams.live.embedded import (  # noqa: E402
    EmbeddedStackError,
    ManagedProcess,
    free_port,
    redis_binary,
)


class _NoLooks:
    async def many(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {i: [] for i in ids}


class _OneByOne(Store):
    """The baseline: each experiment's state read in a round trip of its own."""

    async def experiments(self) -> list[ExperimentState]:
        return [await self.get_experiment(e) for e in await self.experiment_ids()]


async def _timed(store: Store, settings: Settings) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    await experiments_view(store, _NoLooks(), settings=settings)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    doc = await experiments_view(store, _NoLooks(), settings=settings)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    assert all(r["created_by"] and r["health"] for r in doc["experiments"])
    return t1 - t0, t2 - t1, len(doc["experiments"])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=1000)
    ap.add_argument("--products", type=int, default=20, help="products of each experiment")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.experiments < 1 or args.reps < 1 or args.products < 2:
        ap.exit(2, "--experiments and --reps must be at least 1, --products at least 2\n")
    settings = Settings(clock="wall")
    with tempfile.TemporaryDirectory(prefix="pricelab-bench-console-") as tmp:
        port = free_port("127.0.0.1")
        try:
            argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--save", "", "--appendonly", "no", "--dir", tmp]
            server = ManagedProcess("redis", argv, "127.0.0.1", port, Path(tmp) / "redis.log")
            server.start()
        except EmbeddedStackError as exc:
            ap.exit(2, f"redis-server did not start: {str(exc).splitlines()[0]}\n")
        redis = Redis(host="127.0.0.1", port=port, decode_responses=True)
        figures: dict[str, list[float]] = {}
        try:
            store = Store(redis, settings.key_prefix)
            for i in range(args.experiments):
                spec = experiment(args.products, f"e{i:05d}", prefix=f"e{i}p")
                await store.create_experiment(
                    spec, START - timedelta(hours=1), created_by=f"user{i % 7}"
                )
            for rep in range(args.reps):
                # alternated: each reader goes first in every other repetition
                kinds = [("pipelined", Store), ("one by one", _OneByOne)]
                for name, kind in kinds[:: 1 if rep % 2 == 0 else -1]:
                    fresh = kind(Redis(host="127.0.0.1", port=port, decode_responses=True),
                                 settings.key_prefix)  # fmt: skip
                    try:
                        cold, warm, n = await _timed(fresh, settings)
                    finally:
                        await fresh.redis.aclose()
                    figures.setdefault(f"{name}, first read", []).append(cold)
                    figures.setdefault(f"{name}, warm", []).append(warm)
                    print(f"rep {rep + 1} {name}: {n} rows, first {cold * 1000:.0f} ms, "
                          f"warm {warm * 1000:.0f} ms")  # fmt: skip
        finally:
            await redis.aclose()
            server.stop()
    print(f"\nthe list of {args.experiments:,} experiments, {args.reps} repetitions")
    for name, xs in figures.items():
        runs = ", ".join(f"{x * 1000:.0f}" for x in xs)
        print(f"{name}: median {statistics.median(xs) * 1000:.0f} ms ({runs})")


if __name__ == "__main__":
    asyncio.run(main())
