"""What an analysis worker's memory does over many looks, in one process (issue #56, item 5).

The soak's analysis load without the soak: its ten experiments (``benchmarks.soak.make_specs``,
30 products each, periods of 1 to 24 hours) in a redis-server of their own, filled as the
controller leaves them (each period's records at its flip, its cell sums as the ingest script
leaves them), and one ``AnalysisWorker`` built as a worker process builds it (the Redis panel
source, read in chunks of 8 products as the soak reads them, the worker's own ``Metrics`` as
its observer), whose ``run_once`` is called once per ``--step`` of the simulated clock (the
soak's 2 s cycle at 2,016 times the wall is about 67 minutes). After every look it writes one
JSON line: the simulated hours, RSS (anonymous and file pages), glibc malloc's bytes in use
and freed but kept, the heap's resident pages, the interpreter's blocks and object arenas, the look's own seconds, and the periods done
in all; every ``--census`` looks, after a full collection, the live objects by type and
the sizes of what the worker keeps between looks; with ``--trace``, tracemalloc's bytes by
file against the first census; with ``--hold-after N``, the clock stops after N looks and the
same looks repeat, with no new data. Run it as the worker runs, with its malloc settings:

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647 \\
        .venv/bin/python -m benchmarks.trace_analysis_cycles --looks 500 --out /tmp/cycles.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analysis.chunked import Chunking
from analysis.results import published_fields
from analysis.worker import AnalysisWorker, load_solvers
from benchmarks.bench_scale import scratch_redis, worker_redis
from benchmarks.soak import SoakConfig, make_specs, sim_start
from controller.clock import ManualClock
from controller.designs import period_assignments
from controller.designs.base import DesignContext
from controller.panel_source import RedisPanelSource, RedisSequenceTuning
from controller.periods import n_periods, period_bounds
from controller.spec import ExperimentSpec
from controller.store import Store
from controller.store.columns import pack_sums
from streams.worker.memory import libc_mallinfo2, malloc_bytes
from streams.worker.metrics import Metrics


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def _heap_pages() -> int:
    """The resident bytes of malloc's main heap (the ``[heap]`` mapping): the part of the heap
    malloc keeps (in use + free) that has been touched."""
    rss, in_heap = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                in_heap = line.rstrip().endswith("[heap]")
            elif in_heap and line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return rss


def _arenas() -> int:
    """The interpreter's object arenas currently mapped (1 MiB each, outside malloc's heap)."""
    fd, path = tempfile.mkstemp()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    text = Path(path).read_text()
    os.unlink(path)
    found = re.search(r"# arenas allocated current\s+=\s+(\d+)", text)
    return int(found.group(1)) if found else -1


def _census() -> dict[str, int]:
    out: dict[str, int] = {}
    for o in gc.get_objects():
        t = type(o)
        key = f"{getattr(t, '__module__', '?')}.{t.__qualname__}"
        out[key] = out.get(key, 0) + 1
    return out


class _Sink:
    """The estimate sink's work without a broker: each message's fields, as JSON."""

    def __init__(self) -> None:
        self.messages = 0

    async def publish(self, experiment: str, result: Any, as_of: datetime, cs: Any) -> None:
        json.dumps(published_fields(result, cs), default=str)
        self.messages += 1

    async def publish_verdict(self, experiment: str, verdict: Any, as_of: datetime) -> None:
        json.dumps(verdict, default=str)

    async def publish_demand(self, experiment: str, doc: Any, as_of: datetime) -> None:
        json.dumps(doc, default=str)

    async def trip(self, *args: Any) -> None:
        return None


class _World:
    """The controller's side: each period flipped at its start, its sums growing with it."""

    def __init__(self, store: Store, specs: list[ExperimentSpec], seed: int) -> None:
        self.store, self.specs = store, specs
        self.flipped = {s.id: -1 for s in specs}
        self.rng = np.random.default_rng(seed)
        # the triggered experiment: a third of its products fired, in its first days
        self.triggers: dict[str, dict[str, int]] = {}
        for s in specs:
            if s.triggered is not None:
                ids = sorted(s.all_products())
                self.triggers[s.id] = {p: 2 + 3 * i for i, p in enumerate(ids[::3])}

    async def create(self, now: datetime) -> None:
        for s in self.specs:
            await self.store.create_experiment(s, now)
            if s.id in self.triggers:
                await self.store.redis.hset(
                    f"{self.store.exp(s.id)}:triggers", mapping=self.triggers[s.id]
                )

    async def advance(self, now: datetime) -> None:
        for s in self.specs:
            last = n_periods(s) - 1
            k = self.flipped[s.id]
            while k < last and period_bounds(s, k + 1)[0] <= now:
                k += 1
                ctx = DesignContext(triggers=self.triggers.get(s.id, {}))
                await self.store.write_assignments(s.id, k, period_assignments(s, k, ctx))
                assert await self.store.mark_flipped(s.id, k)
                self.flipped[s.id] = k
                await self._sell(s, k)
            if k >= 0:  # the period in force sells on
                await self._sell(s, k)

    async def _sell(self, s: ExperimentSpec, k: int) -> None:
        """Period k's cell sums as the ingest script leaves them."""
        n = len(s.all_products())
        units = self.rng.poisson(6.0, n)
        sums = pack_sums(units, units * 9.99, np.maximum(1, units // 2), np.zeros(n, int))
        await self.store.redis.set(f"{self.store.exp(s.id)}:sums:{k}", sums)


def _kept_sizes(
    worker: AnalysisWorker, source: RedisPanelSource, metrics: Metrics
) -> dict[str, Any]:
    """What the worker keeps between looks, by holder."""
    looks = worker._looks._kept  # noqa: SLF001 - a diagnostic
    known = source._known  # noqa: SLF001
    return {
        "chunked_kept": len(looks),
        "chunked_kept_rows": sum(len(k.rows) for k in looks.values()),
        "chunked_kept_chunks": sum(len(k.chunks) for k in looks.values()),
        "source_known": len(known),
        "source_headers": sum(len(k.headers) for k in known.values()),
        "source_records": sum(len(k.records) for k in known.values()),
        "source_spans": sum(len(k.spans) for k in known.values()),
        "age_series": len(metrics._age.last),  # noqa: SLF001
        "metric_series": sum(len(m.samples) for fam in metrics.registry.collect() for m in [fam]),
    }


async def run(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="pl-cycles-")
    server, url = scratch_redis(tmp)
    out = open(args.out, "w")  # noqa: SIM115
    try:
        # the soak's experiments, long enough for every look (wall minutes at its speed)
        cfg = SoakConfig(minutes=args.looks * args.step / SoakConfig.speed + 1)
        start = sim_start(datetime.now().date())
        specs = make_specs(cfg, start)
        store = Store(worker_redis(url))
        clock = ManualClock(start)
        world = _World(store, specs, args.seed)
        await world.create(start)
        load_solvers()
        metrics = Metrics(now=clock.now)
        source = RedisPanelSource(store, clock, timedelta(days=2))
        sink = _Sink()
        worker = AnalysisWorker(
            source,
            sink,
            clock,
            metrics,
            guardrails=sink,
            verdicts=sink,
            demand=sink,
            tuning=RedisSequenceTuning(store),
            chunking=Chunking(above=8, products=8),
        )
        read = libc_mallinfo2()
        first_census: dict[str, int] = {}
        first_snap: tracemalloc.Snapshot | None = None
        if args.trace:
            tracemalloc.start(1)
        t_run = time.perf_counter()
        for look in range(args.looks):
            # after --hold-after looks the clock stands still: the same looks, no new data
            moved = look + 1 if args.hold_after is None else min(look + 1, args.hold_after)
            now = start + timedelta(minutes=args.step * moved)
            clock.set(now)
            await world.advance(now)
            t0 = time.perf_counter()
            await worker.run_once()
            seconds = time.perf_counter() - t0
            st = _status()
            mi = malloc_bytes(read) or (0, 0)
            row: dict[str, Any] = {
                "look": look,
                "hours": round((now - start).total_seconds() / 3600, 2),
                "periods": sum(max(0, k + 1) for k in world.flipped.values()),
                "seconds": round(seconds, 3),
                "rss": st["VmRSS"],
                "anon": st["RssAnon"],
                "file": st["RssFile"],
                "in_use": mi[0],
                "free": mi[1],
                "blocks": sys.getallocatedblocks(),
                "arenas": _arenas(),
                "heap_pages": _heap_pages(),
                "messages": sink.messages,
            }
            if look % args.census == 0 or look == args.looks - 1:
                gc.collect()
                now_census = _census()
                if not first_census:
                    first_census = dict(now_census)
                grew = sorted(now_census, key=lambda k: first_census.get(k, 0) - now_census[k])
                row["types"] = [[k, first_census.get(k, 0), now_census[k]] for k in grew[:12]]
                row["kept"] = _kept_sizes(worker, source, metrics)
                row["blocks_after_gc"] = sys.getallocatedblocks()
                row["in_use_after_gc"] = (malloc_bytes(read) or (0, 0))[0]
                if args.trace:
                    snap = tracemalloc.take_snapshot()
                    if first_snap is None:
                        first_snap = snap
                    diff = snap.compare_to(first_snap, "lineno")
                    row["traced"] = tracemalloc.get_traced_memory()[0]
                    row["grew"] = [
                        [str(d.traceback[0]), d.size_diff, d.count_diff]
                        for d in sorted(diff, key=lambda d: -d.size_diff)[:12]
                    ]
            out.write(json.dumps(row) + "\n")
            out.flush()
            if look % args.every == 0:
                print(
                    f"look {look} {row['hours']:.0f} h periods {row['periods']} "
                    f"{seconds:.2f} s rss {st['VmRSS'] / 2**20:.1f} anon "
                    f"{st['RssAnon'] / 2**20:.1f} in_use {mi[0] / 2**20:.1f} free "
                    f"{mi[1] / 2**20:.1f} heap pages {row['heap_pages'] / 2**20:.1f} "
                    f"blocks {row['blocks'] / 1e3:.0f}k arenas {row['arenas']} "
                    f"({time.perf_counter() - t_run:.0f} s)",
                    flush=True,
                )
        await store.redis.aclose()
    finally:
        out.close()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--looks", type=int, default=500)
    ap.add_argument("--step", type=float, default=67.2, help="simulated minutes between looks")
    ap.add_argument("--census", type=int, default=50, help="looks between censuses")
    ap.add_argument("--trace", action="store_true", help="tracemalloc by line at each census")
    ap.add_argument(
        "--hold-after", type=int, help="looks after which the clock stops (the looks repeat)"
    )
    ap.add_argument("--every", type=int, default=25, help="looks between printed lines")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pricelab-cycles.jsonl"))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
