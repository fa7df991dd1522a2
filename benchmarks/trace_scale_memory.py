"""What holds the analysis worker's memory when it reads an experiment whole (issue #42).

Fills a fresh redis-server as ``bench_scale.py`` does (N products x 90 days), then reads the
panel whole (``RedisPanelSource.panel``), builds the panels (``metric_panels``) and fits the
random-days design's estimators on units, printing after each stage the memory Python's
allocators hold (``tracemalloc``: numpy and pandas buffers included), the stage's own peak, the
process's peak RSS, and the largest holders by line. Usage:

    .venv/bin/python benchmarks/trace_scale_memory.py [--products 100000] [--days 90]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale as scale  # noqa: E402


def _mb(b: float) -> str:
    return f"{b / 2**20:8.1f} MB"


async def trace(url: str, days: int) -> None:
    from analysis.worker import fit_plan, metric_panels
    from controller.clock import ManualClock
    from controller.panel_source import RedisPanelSource
    from controller.store import Store
    from core.ports import EstimatorPlan

    store = Store(scale.worker_redis(url))
    clock = ManualClock(scale.START + timedelta(days=days, minutes=1))
    source = RedisPanelSource(store, clock, lateness=timedelta(days=2))
    tracemalloc.start()

    def stage(name: str, top: int = 0) -> None:
        cur, peak = tracemalloc.get_traced_memory()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"| {name} | {_mb(cur)} | {_mb(peak)} | {_mb(rss)} |", flush=True)
        if top:
            for s in tracemalloc.take_snapshot().statistics("lineno")[:top]:
                print(f"|   {s.traceback[0].filename.split('/')[-1]}:{s.traceback[0].lineno} "
                      f"| {_mb(s.size)} | | |")  # fmt: skip
        tracemalloc.reset_peak()

    print("| stage | held after | stage peak | process peak RSS |")
    print("|---|---|---|---|")
    try:
        df = await source.panel(scale.EXP, clock.now())
        stage("read: the long cell table and the kept column buffers", top=4)
        print(
            f"|   the table's columns: {', '.join(f'{c} {t}' for c, t in df.dtypes.items())} | | | |"
        )
        panels = metric_panels(df)
        stage("the panels of units and revenue (metric_panels)", top=4)
        for name, params in (
            ("fe", {"cluster": "unit"}),
            ("dm", {"cluster": "unit"}),
            ("ht", {"p": 0}),
        ):
            t0 = time.perf_counter()
            fit_plan(EstimatorPlan(name, params), panels["units"])
            stage(f"fit {name} on units ({time.perf_counter() - t0:.1f} s)")
    finally:
        await store.redis.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pricelab-trace-") as tmp:
        server, url = scale.scratch_redis(tmp)
        try:
            asyncio.run(scale.fill(url, args.products, args.days, 1000))
            asyncio.run(trace(url, args.days))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
