"""An analysis worker's memory and cycle time over experiments that end one after another
(issue #56, item 5): with the final look (``core.final_look``) and without it.

Experiments of ``--products`` products and ``--periods`` periods of ``--hours`` hours each
start one after another, ``--stagger`` looks apart, and end after their last period (the
bench plays the controller: it flips each period, fills its cell sums as the ingest script
leaves them, and sets the status to ended). One ``AnalysisWorker`` built as a worker process
builds it (the Redis panel source in a redis-server of its own, ``--lateness`` of allowed
lateness, its own ``Metrics``) looks once per period. So at any time a few experiments run,
and the number of experiments ever run grows by one every ``--stagger`` looks.

*With the fix*, an ended experiment gets its final look once its last period is compacted,
and no look after. *Without it* (the code before), the same worker, but its tuning store
drops the final-look mark, so every ended experiment is listed, read and refitted at every
cycle, as before. Each mode runs in a child process of its own (the same malloc settings as
a worker), the modes alternated ``--pairs`` times in one run of this script. Each child
writes one JSON line per look: the experiments ever started and ended, the ones looked at
and held, the look's seconds and the RSS. The parent prints, per mode, the medians over the
pairs of the slopes after warm-up (``--warm`` experiments ended) of RSS and of the cycle's
seconds against the number of experiments ended:

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647 \\
        .venv/bin/python -m benchmarks.trace_final_looks --experiments 40 --pairs 2
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analysis.chunked import Chunking
from analysis.worker import AnalysisWorker, load_solvers
from benchmarks.bench_scale import scratch_redis, worker_redis
from benchmarks.soak import sim_start
from benchmarks.trace_analysis_cycles import _Sink as _CyclesSink
from controller.clock import ManualClock
from controller.designs import period_assignments
from controller.panel_source import RedisPanelSource, RedisSequenceTuning
from controller.periods import n_periods, period_bounds
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store
from controller.store.columns import pack_sums
from core import status
from core.final_look import FINAL_LOOK
from streams.worker.metrics import Metrics

WORKER_MALLOC = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Sink(_CyclesSink):
    """trace_analysis_cycles' sink (each message as JSON, no broker), counting the verdicts
    too: a final look's verdict is one of its messages."""

    async def publish_verdict(self, experiment: str, verdict: Any, as_of: datetime) -> None:
        await super().publish_verdict(experiment, verdict, as_of)
        self.messages += 1


class _Forgetful(RedisSequenceTuning):
    """The tuning store of the code before the final look: the mark is never kept."""

    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        if key == FINAL_LOOK:
            return target_se
        return await super().fix(experiment, key, target_se)


def _spec(i: int, start: datetime, args: argparse.Namespace) -> ExperimentSpec:
    products = [f"e{i:03d}-{j:04d}" for j in range(args.products)]
    return load_spec(
        {
            "id": f"succ{i:03d}",
            "design": "random-days",
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=args.hours * args.periods)).isoformat(),
            "timezone": "UTC",
            "period": f"PT{args.hours}H",
            "washout": "PT10M",
            "seed": i,
            "guardrails": [{"metric": "units", "max_drop_pct": 30}],
        }
    )


class _World:
    """The controller's side: experiments created one after another, each period flipped
    at its start with its sums, each experiment ended after its last period."""

    def __init__(self, store: Store, args: argparse.Namespace, start: datetime) -> None:
        self.store, self.args, self.start = store, args, start
        #: the experiments running (an ended one is let go: the bench must not hold what
        #: it measures the worker letting go of)
        self.specs: list[ExperimentSpec] = []
        self.started = 0
        self.flipped: dict[str, int] = {}
        self.ended = 0
        self.rng = np.random.default_rng(args.seed)

    async def advance(self, look: int, now: datetime) -> None:
        step = timedelta(hours=self.args.hours)
        while self.started < self.args.experiments and self.started * self.args.stagger <= look:
            at = self.start + step * (self.started * self.args.stagger)
            spec = _spec(self.started, at, self.args)
            await self.store.create_experiment(spec, at)
            self.specs.append(spec)
            self.flipped[spec.id] = -1
            self.started += 1
        for s in list(self.specs):
            last = n_periods(s) - 1
            k = self.flipped[s.id]
            while k < last and period_bounds(s, k + 1)[0] <= now:
                k += 1
                await self.store.write_assignments(s.id, k, period_assignments(s, k))
                assert await self.store.mark_flipped(s.id, k)
                self.flipped[s.id] = k
                await self._sell(s, k)
            if k == last and period_bounds(s, last)[1] <= now:
                await self.store.set_status(s.id, status.ENDED)
                self.ended += 1
                self.specs.remove(s)
                del self.flipped[s.id]

    async def _sell(self, s: ExperimentSpec, k: int) -> None:
        n = len(s.all_products())
        treated = np.array(
            [a.index != s.control_index for a in period_assignments(s, k)], dtype=bool
        )
        units = self.rng.poisson(6.0 * (1 + 0.1 * treated), n)
        sums = pack_sums(units, units * 9.99, np.maximum(1, units // 2), np.zeros(n, int))
        await self.store.redis.set(f"{self.store.exp(s.id)}:sums:{k}", sums)


async def child(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="pl-final-")
    server, url = scratch_redis(tmp)
    out = open(args.out, "w")  # noqa: SIM115
    try:
        start = sim_start(datetime.now().date())
        store = Store(worker_redis(url))
        clock = ManualClock(start)
        world = _World(store, args, start)
        load_solvers()
        metrics = Metrics(now=clock.now)
        source = RedisPanelSource(store, clock, timedelta(hours=args.lateness))
        tuning = (RedisSequenceTuning if args.mode == "with" else _Forgetful)(store)
        sink = _Sink()
        worker = AnalysisWorker(
            source,
            sink,
            clock,
            metrics,
            guardrails=sink,
            verdicts=sink,
            demand=sink,
            tuning=tuning,
            chunking=Chunking(above=10**9),
        )
        first: tracemalloc.Snapshot | None = None
        if args.trace:
            tracemalloc.start(1)
        # every experiment started, and each one's periods and lateness past
        looks = (
            (args.experiments - 1) * args.stagger + args.periods + args.lateness // args.hours + 3
        )
        for look in range(int(looks)):
            now = start + timedelta(hours=args.hours * look, minutes=5)
            clock.set(now)
            await world.advance(look, now)
            t0 = time.perf_counter()
            await worker.run_once()
            seconds = time.perf_counter() - t0
            row = {
                "mode": args.mode,
                "look": look,
                "started": world.started,
                "ended": world.ended,
                "looked": metrics.analysis_last_cycle_experiments._value.get(),  # noqa: SLF001
                "held": len(worker.held()),
                "seconds": round(seconds, 4),
                "rss": _rss(),
                "messages": sink.messages,
            }
            if args.trace and first is None and world.ended >= args.warm:
                gc.collect()
                first = tracemalloc.take_snapshot()
            out.write(json.dumps(row) + "\n")
            out.flush()
        if first is not None:
            # what the package's and its libraries' lines allocated since the warm-up and
            # still hold, after a full collection
            gc.collect()
            diff = tracemalloc.take_snapshot().compare_to(first, "lineno")
            grew = [
                [str(d.traceback[0]), d.size_diff, d.count_diff]
                for d in sorted(diff, key=lambda d: -d.size_diff)[:12]
            ]
            held = sum(d.size_diff for d in diff)
            out.write(json.dumps({"grew": grew, "traced_diff": held}) + "\n")
        await store.redis.aclose()
    finally:
        out.close()
        server.stop()


def _slope(rows: list[dict[str, Any]], key: str, warm: int) -> float:
    """Least-squares slope of ``key`` against the experiments ended, after ``warm`` ended."""
    xs = np.array([r["ended"] for r in rows if r["ended"] >= warm], float)
    ys = np.array([r[key] for r in rows if r["ended"] >= warm], float)
    if len(xs) < 3 or np.ptp(xs) == 0:
        return float("nan")
    return float(np.polyfit(xs, ys, 1)[0])


def parent(args: argparse.Namespace) -> None:
    env = os.environ | {"GLIBC_TUNABLES": WORKER_MALLOC}
    results: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    out_dir = Path(tempfile.mkdtemp(prefix="pl-final-runs-"))
    for pair in range(args.pairs):
        order = ("without", "with") if pair % 2 else ("with", "without")
        for mode in order:
            path = out_dir / f"{mode}-{pair}.jsonl"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "benchmarks.trace_final_looks", "--child", mode,
                   "--out", str(path)] + _passed(args)  # fmt: skip
            subprocess.run(cmd, check=True, env=env)
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            if rows and "grew" in rows[-1]:
                traced = rows.pop()
                print(f"{mode}: traced bytes held since the warm-up {traced['traced_diff']:+,}")
                for where, size, count in traced["grew"][:8]:
                    print(f"    {size:+,} B {count:+} blocks {where}")
            last = rows[-1]
            res = {
                "rss_per_exp_kb": _slope(rows, "rss", args.warm) / 1024,
                "seconds_per_exp_ms": _slope(rows, "seconds", args.warm) * 1000,
                "final_rss_mb": last["rss"] / 2**20,
                "last_look_s": statistics.median(r["seconds"] for r in rows[-5:]),
                "looked": last["looked"],
                "held": last["held"],
                "wall_s": time.perf_counter() - t0,
            }
            results[mode].append(res)
            print(f"pair {pair} {mode:8s} " + " ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()
            ), f"({path})", flush=True)  # fmt: skip
    print(
        f"\n{args.experiments} experiments of {args.products} products x {args.periods} "
        f"periods of {args.hours} h, one started every {args.stagger} looks; slopes after "
        f"{args.warm} ended; medians of {args.pairs} runs per mode"
    )
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{mode:8s} RSS {med['rss_per_exp_kb']:+.1f} KB per experiment ended, "
            f"cycle {med['seconds_per_exp_ms']:+.2f} ms per experiment ended; at the end: "
            f"RSS {med['final_rss_mb']:.1f} MB, a look {med['last_look_s']:.3f} s, "
            f"{med['looked']:.0f} looked at, {med['held']:.0f} held"
        )


def _passed(args: argparse.Namespace) -> list[str]:
    keys = ("experiments", "products", "periods", "hours", "stagger", "lateness", "seed", "warm")
    return [a for k in keys for a in (f"--{k}", str(getattr(args, k)))] + (
        ["--trace"] if args.trace else []
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=40, help="experiments run in all")
    ap.add_argument("--products", type=int, default=200)
    ap.add_argument("--periods", type=int, default=8, help="periods each experiment runs")
    ap.add_argument("--hours", type=int, default=4, help="hours a period")
    ap.add_argument("--stagger", type=int, default=2, help="looks between two starts")
    ap.add_argument("--lateness", type=int, default=4, help="allowed lateness, hours")
    ap.add_argument("--warm", type=int, default=5, help="experiments ended before the fit")
    ap.add_argument("--pairs", type=int, default=2, help="runs of each mode, alternated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="a child's tracemalloc by line, after warm-up against the end (its last line)",
    )
    ap.add_argument("--child", choices=("with", "without"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.mode = args.child
        asyncio.run(child(args))
    else:
        parent(args)


if __name__ == "__main__":
    main()
