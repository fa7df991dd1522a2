"""Probe what a controller worker's memory keeps after it catches up a backlog of sales
(issue #56, "the 60-minute soak's RSS is flat"): figures for docs/operations.md.

In the soak, a controller that lives the whole run grows its RSS in steps of 4-16 MB right
after each fault, while malloc in use stays flat and the interpreter's blocks rise during the
catch-up and fall back after. The hypothesis: the catch-up's working set (the sales consumer's
``depth`` batches of up to ``sales_batch_size`` decoded events, and aiokafka's fetch buffer)
sets the step, and pymalloc's arenas stay pinned by the few objects that outlive it.

One embedded stack (Tansu, redis-server). Per leg (one ``--batch-size``; several are run one
after another, each on fresh topics and key prefix, alternated when given as ``2000 500 2000``):
an experiment of ``--products`` products made with the controller's own code
(``Flipper.create``), one ``pricelab worker --role controller`` process with
benchmarks/memtrace on (its RSS, RssAnon, malloc in use and ``sys.getallocatedblocks`` every
second), and a producer sending distinct sales at ``--rate`` a second throughout. After
``--warmup`` seconds, ``--rounds`` rounds of: the fault (``redis-pause``, as the soak's: Redis
SIGSTOPped; or ``controller-stop``: the worker SIGSTOPped) for ``--backlog-seconds`` while the
producer goes on, then SIGCONT; the catch-up, until Redis has counted every sale sent but the
last second's; then ``--quiet`` seconds at the steady rate.

Per round: the worker's trough (the minimum over the last ``--tail`` seconds of the quiet
period) before the fault, its peak from the fault to a few seconds after the catch-up, and
its trough after; the retained step is after - before. RSS and RssAnon are also read from
/proc by this process five times a second (the peak between memtrace's samples).

Run (heavy: a broker, Redis, a worker and this producer):
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.probe_catchup_memory \
        [--batch-size 2000 500] [--rounds 3] [--backlog-seconds 20] [--rate 15000] \
        [--products 3000] [--depth N] [--fault redis-pause] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import NOW, START, bench_settings, experiment, start_experiment
from controller.settings import Settings
from controller.store import Store, make_redis
from streams.live.embedded import EmbeddedStack
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import JsonPublisher, ensure_topics
from streams.worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
MEMTRACE = ROOT / "benchmarks" / "memtrace"
#: a sitecustomize that loads memtrace's and, with PRICELAB_PROBE_SALES_DEPTH, sets the sales
#: consumer's ``depth`` (its default; the competitor consumer passes its own)
DEPTH_SITE = ROOT / "benchmarks" / "probe_catchup_site"
FIELDS = ("rss", "anon", "blocks", "malloc_in_use")
EXP_ID = "bench"  # benchmarks._common.experiment's default id


# ---------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    """One reading of the worker's memory at ``at`` (this probe's seconds): from memtrace
    (every field) or from /proc by this probe (rss and anon only)."""

    at: float
    rss: int | None = None
    anon: int | None = None
    blocks: int | None = None
    malloc_in_use: int | None = None


def parse_memtrace(lines: Iterable[str], at: float) -> list[Sample]:
    """memtrace's JSON lines (benchmarks/memtrace/sitecustomize.py), stamped ``at``: the
    moment this probe read them (it reads the file every quarter second)."""
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        out.append(
            Sample(at, row.get("rss"), row.get("anon"), row.get("blocks"), row.get("malloc_in_use"))
        )
    return out


def parse_status(text: str, at: float) -> Sample:
    """VmRSS and RssAnon of a /proc/<pid>/status text, in bytes."""
    vals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            vals[key] = int(rest.split()[0]) * 1024
    return Sample(at, rss=vals.get("VmRSS"), anon=vals.get("RssAnon"))


def within(samples: Sequence[Sample], lo: float, hi: float) -> list[Sample]:
    """The samples taken in [lo, hi]."""
    return [s for s in samples if lo <= s.at <= hi]


def extreme(samples: Sequence[Sample], pick: str) -> dict[str, int | None]:
    """Per field, the lowest (``pick="min"``) or highest (``"max"``) value among the samples
    that have it (None when none has)."""
    fn = min if pick == "min" else max
    out: dict[str, int | None] = {}
    for f in FIELDS:
        vals = [v for s in samples if (v := getattr(s, f)) is not None]
        out[f] = fn(vals) if vals else None
    return out


@dataclass
class Marks:
    """One round's moments, in this probe's seconds."""

    quiet_from: float  # the steady period before the fault began (warm-up or last quiet)
    fault: float  # SIGSTOP
    resumed: float  # SIGCONT
    caught_up: float  # Redis counted all but the last second's sales
    quiet_to: float  # the end of the steady period after


def round_figures(
    samples: Sequence[Sample], m: Marks, tail: float, settle: float
) -> dict[str, Any]:
    """Trough before (min over the last ``tail`` s before the fault), peak (max from the fault
    to ``settle`` s after the catch-up) and trough after (min over the last ``tail`` s of the
    quiet period after); the retained step (after - before) per field."""
    before = extreme(within(samples, max(m.quiet_from, m.fault - tail), m.fault), "min")
    peak = extreme(within(samples, m.fault, m.caught_up + settle), "max")
    after = extreme(
        within(samples, max(m.caught_up + settle, m.quiet_to - tail), m.quiet_to), "min"
    )
    step = {
        f: (after[f] - before[f]) if after[f] is not None and before[f] is not None else None  # type: ignore[operator]
        for f in FIELDS
    }
    return {"before": before, "peak": peak, "after": after, "step": step}


def caught_up(sent: int, counted: int, slack: int) -> bool:
    """Redis has counted every sale sent but at most ``slack`` (the last second's, still in
    flight at the steady rate)."""
    return counted >= sent - slack


# ---------------------------------------------------------------------------- the sales
_STAMPS = [
    (START + timedelta(seconds=s)).isoformat()
    for s in random.Random(5).sample(range(int((NOW - START).total_seconds())), 997)
]


def sale(tag: str, n: int, rng: random.Random, products: int) -> tuple[str, bytes]:
    """Distinct sale ``n`` (its product, its JSON): of one of the experiment's products, at a
    time in its flipped periods (so every one is counted), prices in quarters (exact sums)."""
    product = f"p{rng.randrange(products)}"
    units = rng.randint(1, 4)
    price = rng.randint(20, 400) / 4
    body = (
        f'{{"v": 1, "event_id": "{tag}-{n}", "product": "{product}", "units": {units}, '
        f'"revenue": {units * price}, "unit_price": {price}, '
        f'"occurred_at": "{_STAMPS[n % len(_STAMPS)]}"}}'
    )
    return product, body.encode()


class Producer:
    """Distinct sales at ``rate`` a second, a 50 ms tick's at a time (record batches, as the
    soak's source); ``sent`` counts those the broker acknowledged."""

    def __init__(self, settings: Settings, rate: float, products: int, tag: str) -> None:
        self.settings = settings
        self.rate = rate
        self.products = products
        self.tag = tag
        self.rng = random.Random(7)
        self.sent = 0
        self.made = 0

    async def run(self, stop: asyncio.Event) -> None:
        pub = JsonPublisher(self.settings, linger_ms=20)
        await pub.start()
        try:
            due = 0.0
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.05)
                t = time.monotonic()
                due += self.rate * min(t - last, 0.5)  # a late tick drops what it missed
                last = t
                items = []
                while due >= 1:
                    due -= 1
                    items.append(sale(self.tag, self.made, self.rng, self.products))
                    self.made += 1
                if items:
                    await pub.send_keyed_many(self.settings.topics.sales, items)
                    await pub.flush()
                    self.sent += len(items)
        finally:
            await pub.stop()


# ---------------------------------------------------------------------------- one leg
@dataclass
class Leg:
    batch_size: int
    depth: int | None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    counted: int = 0
    seconds: float = 0.0
    #: why the leg ended early (the worker exited, a catch-up ran out of time), or None
    error: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Sales a second the producer achieved over the leg."""
        return self.sent / self.seconds if self.seconds else 0.0


class Watch:
    """Reads the worker's memory as the leg runs: memtrace's new lines every quarter second,
    /proc/<pid>/status five times a second."""

    def __init__(self, pid: int, trace: Path, t0: float) -> None:
        self.pid = pid
        self.trace = trace
        self.t0 = t0
        self.samples: list[Sample] = []
        self._pos = 0
        self._rest = ""

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _read_trace(self) -> None:
        try:
            with self.trace.open() as fh:
                fh.seek(self._pos)
                chunk = fh.read()
                self._pos = fh.tell()
        except FileNotFoundError:
            return
        text = self._rest + chunk
        complete, _, self._rest = text.rpartition("\n")
        self.samples.extend(parse_memtrace(complete.splitlines(), self.now()))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{self.pid}/status").read_text()
                self.samples.append(parse_status(text, self.now()))
            self._read_trace()
            await asyncio.sleep(0.2)  # a sampling interval, not synchronisation


async def _counted(store: Store) -> int:
    totals = await store.totals(EXP_ID)
    return int(sum(v for k, v in totals.items() if k.startswith("events:")))


async def _wait_counted(
    store: Store, prod: Producer, worker: WorkerProcess, slack: int, timeout: float
) -> int:
    """Poll Redis until :func:`caught_up`; the count then."""
    deadline = time.monotonic() + timeout
    while True:
        worker.check_alive()
        counted = await asyncio.wait_for(_counted(store), 10)
        if caught_up(prod.sent, counted, slack):
            return counted
        if time.monotonic() > deadline:
            raise TimeoutError(f"counted {counted:,} of {prod.sent:,} sales after {timeout:g} s")
        await asyncio.sleep(0.1)  # polling Redis: the worker gives no other signal


async def _quiet(seconds: float, worker: WorkerProcess) -> None:
    """The steady period: the producer goes on; the worker must stay up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.check_alive()
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


async def run_leg(stack: EmbeddedStack, args: argparse.Namespace, batch_size: int, n: int) -> Leg:
    settings = bench_settings(stack, args.partitions, sales_batch_size=batch_size)
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    await start_experiment(rt, experiment(args.products))
    await rt.stop()
    trace = Path(args.workdir) / f"memtrace-leg{n}-b{batch_size}.jsonl"
    trace.unlink(missing_ok=True)
    site = DEPTH_SITE if args.depth else MEMTRACE
    env = {
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PRICELAB_MEMTRACE_OUT": str(trace),
        "PRICELAB_MEMTRACE_EVERY": str(args.every),
        "PRICELAB_LOG_LEVEL": "WARNING",
    }
    if args.depth:
        env["PRICELAB_PROBE_SALES_DEPTH"] = str(args.depth)
    worker = WorkerProcess(settings, env=env, log=Path(args.workdir) / f"worker-leg{n}.log")
    worker.start()
    store = Store(make_redis(settings), settings.key_prefix)
    prod = Producer(settings, args.rate, args.products, f"l{n}")
    stop = asyncio.Event()
    t0 = time.monotonic()
    watch = Watch(worker.pid, trace, t0)
    tasks = [asyncio.create_task(prod.run(stop)), asyncio.create_task(watch.run(stop))]
    leg = Leg(batch_size, args.depth)
    assert stack.redis is not None and stack.redis.proc is not None
    stopped = stack.redis.proc.pid if args.fault == "redis-pause" else worker.pid
    slack = int(args.rate)
    try:
        await _quiet(args.warmup, worker)
        quiet_from = 0.0
        for r in range(1, args.rounds + 1):
            counted0 = await _counted(store)
            fault = watch.now()
            os.kill(stopped, signal.SIGSTOP)
            try:
                await asyncio.sleep(args.backlog_seconds)  # the fault itself: its length
            finally:
                os.kill(stopped, signal.SIGCONT)
            resumed = watch.now()
            backlog = prod.sent - counted0
            await _wait_counted(store, prod, worker, slack, args.catchup_timeout)
            done = watch.now()
            await _quiet(args.quiet, worker)
            m = Marks(quiet_from, fault, resumed, done, watch.now())
            fig = round_figures(watch.samples, m, args.tail, args.settle)
            fig |= {"round": r, "backlog": backlog, "catchup_s": round(done - resumed, 2),
                    "marks": asdict(m)}  # fmt: skip
            leg.rounds.append(fig)
            print(_row(batch_size, fig), flush=True)
            quiet_from = done + args.settle
    except (RuntimeError, TimeoutError) as exc:  # the worker exited, or never caught up
        leg.error = f"{type(exc).__name__}: {str(exc)[-2000:]}"
        print(f"leg ended early: {leg.error}", flush=True)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        worker.stop()
        leg.sent = prod.sent
        with contextlib.suppress(Exception):
            leg.counted = await asyncio.wait_for(_counted(store), 10)
        leg.seconds = round(watch.now(), 1)
        leg.samples = [asdict(s) for s in watch.samples]
        with contextlib.suppress(Exception):
            await store.redis.aclose()
    return leg


# ---------------------------------------------------------------------------- report
def _mb(v: int | None) -> str:
    return "-" if v is None else f"{v / 2**20:.1f}"


def _k(v: int | None) -> str:
    return "-" if v is None else f"{v / 1000:.0f}k"


def _signed_mb(v: int | None) -> str:
    return "-" if v is None else f"{v / 2**20:+.1f}"


HEADER = (
    f"{'batch':>5} {'rnd':>3} {'backlog':>8} {'catch s':>7} | "
    f"{'RSS MB before/peak/after':>26} {'step':>6} | {'anon MB before/peak/after':>26} "
    f"{'step':>6} | {'blocks before/peak/after':>24} {'step':>6}"
)


def _row(batch: int, fig: dict[str, Any]) -> str:
    b, p, a, s = fig["before"], fig["peak"], fig["after"], fig["step"]
    blocks_step = "-" if s["blocks"] is None else f"{s['blocks'] / 1000:+.0f}k"

    def three(f: str, fmt: Any) -> str:
        return f"{fmt(b[f])}/{fmt(p[f])}/{fmt(a[f])}"

    return (
        f"{batch:>5} {fig['round']:>3} {fig['backlog']:>8,} {fig['catchup_s']:>7.1f} | "
        f"{three('rss', _mb):>26} {_signed_mb(s['rss']):>6} | {three('anon', _mb):>26} "
        f"{_signed_mb(s['anon']):>6} | {three('blocks', _k):>24} "
        f"{blocks_step:>6}"
    )


def summary(legs: Sequence[Leg]) -> list[str]:
    """Per batch size: the retained anon step per round (all legs of that size), its sum and
    median, and the peak blocks' median."""
    out = []
    for size in sorted({leg.batch_size for leg in legs}, reverse=True):
        rounds = [f for leg in legs if leg.batch_size == size for f in leg.rounds]
        steps = [f["step"]["anon"] for f in rounds if f["step"]["anon"] is not None]
        peaks = [f["peak"]["blocks"] for f in rounds if f["peak"]["blocks"] is not None]
        if not steps:
            continue
        out.append(
            f"batch {size}: anon step per round {', '.join(_signed_mb(x) for x in steps)} MB "
            f"(sum {_signed_mb(sum(steps))}, median {_signed_mb(int(statistics.median(steps)))}); "
            f"peak blocks median {_k(int(statistics.median(peaks))) if peaks else '-'}"
        )
    return out


def write_figures(path: Path, args: argparse.Namespace, legs: Sequence[Leg]) -> None:
    doc = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "python": sys.version.split()[0],
        "legs": [asdict(leg) | {"rate": round(leg.rate)} for leg in legs],
    }
    path.write_text(json.dumps(doc, indent=1))


async def probe(args: argparse.Namespace, legs: list[Leg]) -> None:
    """Each leg in turn on one stack; the figures written after each (an interrupted run keeps
    the legs it finished)."""
    with EmbeddedStack(workdir=Path(args.workdir) / "stack") as stack:
        for n, size in enumerate(args.batch_size, 1):
            print(f"{time.strftime('%H:%M:%S')} leg {n}: batch {size}, depth "
                  f"{args.depth or 'default (2)'}\n" + HEADER, flush=True)  # fmt: skip
            legs.append(await run_leg(stack, args, size, n))
            if args.out:
                write_figures(args.out, args, legs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[2000],
                    help="sales_batch_size of each leg, run in this order")  # fmt: skip
    ap.add_argument(
        "--depth", type=int, default=None, help="the sales consumer's depth (default 2)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backlog-seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=15_000.0, help="sales a second")
    ap.add_argument("--products", type=int, default=3000)
    ap.add_argument("--partitions", type=int, default=6, help="of the sales topic (the soak's 6)")
    ap.add_argument("--fault", choices=("redis-pause", "controller-stop"), default="redis-pause")
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--quiet", type=float, default=60.0, help="steady seconds after a catch-up")
    ap.add_argument("--tail", type=float, default=30.0, help="seconds a trough is taken over")
    ap.add_argument(
        "--settle", type=float, default=5.0, help="seconds after a catch-up in its peak"
    )
    ap.add_argument("--every", type=float, default=1.0, help="memtrace's sampling interval")
    ap.add_argument("--catchup-timeout", type=float, default=300.0)
    ap.add_argument("--workdir", default=None, help="logs and traces (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.tail > args.quiet or args.tail > args.warmup:
        ap.error("--tail must not be longer than --quiet or --warmup")
    legs: list[Leg] = []
    with tempfile.TemporaryDirectory(prefix="probe-catchup-") as tmp:
        args.workdir = args.workdir or tmp
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        try:
            asyncio.run(probe(args, legs))
        except KeyboardInterrupt:  # SIGINT: the stack and worker were stopped on the way out
            print(f"interrupted after {len(legs)} legs")
    print()
    for leg in legs:
        print(f"leg batch {leg.batch_size}: sent {leg.sent:,} ({leg.rate:,.0f} a second), "
              f"counted {leg.counted:,}, {leg.seconds:.0f} s"
              + (f"; ended early: {leg.error[:200]}" if leg.error else ""))  # fmt: skip
    for line in summary(legs):
        print(line)
    if args.out:
        print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
