"""The console's performance (issue #55): the list, the page of a 1,000,000-product experiment,
a look's way to the browser, and what open live pages cost the analysis worker.

One embedded stack (Tansu and redis-server); ``--experiments`` experiments created by the
controller's own code (``Flipper.create``: the store's writes, period 0 flipped and published,
its events in the trail), of 10 products each but one of ``--products`` (1,000,000); each given
looks on the estimates topic through the worker's publisher (estimates of three metrics and a
verdict, as the analysis worker publishes them). ``pricelab console`` runs in its own process
(``streams.console.launch.ConsoleProcess``) and is asked over HTTP (httpx), signed in as the
lab's one-time admin.

1. **The list** (target 300 ms): ``GET /api/experiments`` and the page ``/experiments``, timed
   at the client over loopback (server time and ~1 ms of HTTP). Baseline: the same overviews
   read by the CLI's view function alone (``streams.client.commands.read_overviews`` on a
   store whose specs are already parsed, as the console's are), in this process.
2. **The experiment page of the big experiment** (target 1 s): ``GET /api/experiments/{id}``,
   the page and its live parts (``/results``, what a look redraws), whatever they build
   today. Baseline: ``pricelab experiment show``'s view (``read_experiment``) of it.
3. **A look to the browser** (target 2 s at the p99): a look published, then the time until
   its ``look`` event arrives on an SSE client of ``/api/experiments/{id}/events``; ``--looks``
   looks, p50/p99. The console gathers a look's messages for 0.2 s before it sends the event,
   by design. Baseline: a raw aiokafka consumer of the estimates topic receiving the same
   look, in the same run.
4. **100 open live pages against the analysis worker's cycle** (target +5%): one analysis
   cycle (``AnalysisWorker.run_once``, as ``bench_verdict.py`` benches it) timed with the
   console process up and ``--streams`` live pages open on it, and without the console
   process, alternated, ``--cycles`` cycles each way a set, ``--sets`` sets; medians. In both,
   another process publishes a look a second (round robin over the watched experiments) and,
   with the console up, plays the open pages: each loads its page, then holds its event
   stream and, on each look, redraws as htmx does (twice ``/experiments/{id}/results`` on an experiment page, the list
   on a list page). The console process's CPU while the cycles run (user and system
   seconds over wall seconds) is printed beside it: a steadier figure than the cycle's
   wall time on a shared machine. ``--against DIR``: the console of another checkout (the
   commit before a change) as a third arm, alternated in the same run on the same stack.

    .venv/bin/python benchmarks/bench_console.py [--experiments 1000] [--products 1000000]
        [--runs 15] [--looks 200] [--streams 100] [--sets 5] [--parts list,page,live,worker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from benchmarks._common import START, bench_settings, experiment  # noqa: E402
from controller.settings import ConsoleSettings, Settings  # noqa: E402
from controller.store import Store, make_redis  # noqa: E402
from streams.client.commands import read_experiment, read_overviews  # noqa: E402
from streams.console.launch import ConsoleProcess  # noqa: E402
from streams.live.embedded import EmbeddedStack, free_port  # noqa: E402
from streams.worker.kafka import ensure_topics  # noqa: E402
from streams.worker.runtime import Runtime  # noqa: E402
from streams.worker.schemas import EstimateMessage, Metric, VerdictMessage  # noqa: E402

BIG = "big"
LIST_TARGET, PAGE_TARGET, LIVE_TARGET, WORKER_TARGET = 0.3, 1.0, 2.0, 1.05


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def q(values: list[float], p: float) -> float:
    """The p-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p * len(s) + 0.5)) - 1))]


# ------------------------------------------------------------------ looks, as the worker's
async def publish_look(rt: Runtime, exp_id: str, n: int) -> str:
    """Look ``n`` of ``exp_id``: three metrics' estimates and the verdict, through the
    worker's publisher (acks as the worker's, flushed); its ``as_of``."""
    as_of = START + timedelta(days=1, hours=n)
    topic = rt.settings.topics.estimates
    metrics: tuple[tuple[Metric, float], ...] = (("units", 0.8), ("revenue", 12.5), ("profit", 3.1))
    for metric, effect in metrics:
        msg = EstimateMessage(
            experiment=exp_id, estimator="did", metric=metric, effect=effect, se=effect / 3,
            ci_low=effect / 3, ci_high=effect * 5 / 3, cs_low=-effect, cs_high=effect * 3,
            pvalue=0.01, se_method="cluster", n_units=10, n_periods=n + 1, as_of=as_of,
        )  # fmt: skip
        await rt.publisher.send(topic, msg, exp_id)
    verdict = VerdictMessage(
        experiment=exp_id, as_of=as_of, verdict="keep_running", metric="revenue",
        estimator="did", rule="ship when the anytime-valid interval clears zero",
        reason="the anytime-valid interval still spans zero", effect=12.5, cs_low=-12.5,
        cs_high=37.5, n_units=10, n_periods=n + 1, mde_pct=5.0, more_days=3.0,
    )  # fmt: skip
    await rt.publisher.send(topic, verdict, exp_id)
    await rt.publisher.flush()
    return as_of.isoformat()


def _instant(text: str) -> str:
    """An ISO 8601 instant as ``publish_look`` returns it (the wire may write ``Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).isoformat()


async def seed(rt: Runtime, n_exps: int, n_big: int, looks: int) -> dict[str, float]:
    """``n_exps`` experiments (one of them BIG, of ``n_big`` products) created as the
    controller creates them, each with ``looks`` looks; the seconds each step took."""
    await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for j in range(n_exps - 1):
        await rt.flipper.create(experiment(10, exp_id=f"x{j:04d}", prefix=f"x{j}p"), backfill=True)
    small = time.perf_counter() - t0
    t0 = time.perf_counter()
    await rt.flipper.create(experiment(n_big, exp_id=BIG, prefix="b"), backfill=True)
    big = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in range(looks):
        for j in range(n_exps - 1):
            await publish_look(rt, f"x{j:04d}", n)
        await publish_look(rt, BIG, n)
    return {"create_small_s": small, "create_big_s": big, "looks_s": time.perf_counter() - t0}


# ------------------------------------------------------------------ the console
@contextlib.contextmanager
def console_up(settings: Settings, log: Path) -> Any:
    served = settings.model_copy(
        update={"console": ConsoleSettings(port=free_port(), estimates_idle=0.5)}
    )
    console = ConsoleProcess(served, log=log).start(timeout=60)
    try:
        yield console
    finally:
        console.stop()


async def signed_in(url: str, password: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        base_url=url,
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )
    r = await client.post("/api/login", json={"user": "admin", "password": password})
    r.raise_for_status()
    return client


async def timed_get(client: httpx.AsyncClient, path: str) -> float:
    t0 = time.perf_counter()
    r = await client.get(path)
    seconds = time.perf_counter() - t0
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return seconds


def report(name: str, times: list[float], base: list[float] | None, target: float) -> None:
    m = statistics.median(times)
    ratio = f", x{m / statistics.median(base):.1f} the baseline" if base else ""
    print(
        f"  {name}: median {m * 1000:.0f} ms (min {min(times) * 1000:.0f}, max "
        f"{max(times) * 1000:.0f}){ratio}; target {target * 1000:.0f} ms {met(m <= target)}",
        flush=True,
    )


# ------------------------------------------------------------------ 1, 2: the list and the page
async def list_and_page(
    settings: Settings, url: str, password: str, runs: int, parts: set[str]
) -> None:
    client = await signed_in(url, password)
    store = Store(make_redis(settings), settings.key_prefix)
    try:
        t0 = time.perf_counter()
        first = await client.get("/api/experiments")
        cold = time.perf_counter() - t0
        n = len(first.json()["experiments"])
        with_verdict = sum(1 for e in first.json()["experiments"] if e["verdict"])
        print(
            f"the list: {n} experiments, {with_verdict} with a verdict; the console's first "
            f"request {cold * 1000:.0f} ms (its estimates reader catches up with the topic)",
            flush=True,
        )
        await read_overviews(store)  # the specs parsed once, as the console's store keeps them
        if "list" in parts:
            base, api, page = [], [], []
            for _ in range(runs):  # alternated
                t0 = time.perf_counter()
                await read_overviews(store)
                base.append(time.perf_counter() - t0)
                api.append(await timed_get(client, "/api/experiments"))
                page.append(await timed_get(client, "/experiments"))
            print(f"1. the list of {n} experiments, {runs} runs alternated:")
            report("baseline: read_overviews alone (in this process)", base, None, LIST_TARGET)
            report("GET /api/experiments", api, base, LIST_TARGET)
            report("GET /experiments (the page)", page, base, LIST_TARGET)
        if "page" in parts:
            base, api, page, live = [], [], [], []
            await timed_get(client, f"/api/experiments/{BIG}")  # its spec parsed once
            for _ in range(runs):
                t0 = time.perf_counter()
                await asyncio.to_thread(read_experiment, settings, BIG)
                base.append(time.perf_counter() - t0)
                api.append(await timed_get(client, f"/api/experiments/{BIG}"))
                page.append(await timed_get(client, f"/experiments/{BIG}"))
                live.append(await timed_get(client, f"/experiments/{BIG}/results"))
            n_big = (await client.get(f"/api/experiments/{BIG}")).json()["overview"]["products"]
            print(f"2. the page of the {n_big:,}-product experiment, {runs} runs alternated:")
            report(
                "baseline: read_experiment (pricelab experiment show's view)",
                base,
                None,
                PAGE_TARGET,
            )
            report(f"GET /api/experiments/{BIG}", api, base, PAGE_TARGET)
            report(f"GET /experiments/{BIG} (the page)", page, base, PAGE_TARGET)
            report(f"GET /experiments/{BIG}/results (a look's redraw)", live, base, PAGE_TARGET)
    finally:
        await client.aclose()
        await store.redis.aclose()


# ------------------------------------------------------------------ 3: a look to the browser
async def _raw_arrivals(settings: Settings, seen: dict[str, float], ready: asyncio.Event) -> None:
    """A raw consumer of the estimates topic from its end: when each verdict arrives."""
    import json

    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    await consumer.start()
    try:
        topic = settings.topics.estimates
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        ready.set()
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    doc = json.loads(r.value)
                    if doc.get("kind") == "verdict":
                        seen.setdefault(_instant(doc["as_of"]), now)
    finally:
        await consumer.stop()


async def live(rt: Runtime, url: str, password: str, looks: int, exp_id: str) -> None:
    import json

    client = await signed_in(url, password)
    raw: dict[str, float] = {}
    raw_ready = asyncio.Event()
    raw_task = asyncio.create_task(_raw_arrivals(rt.settings, raw, raw_ready))
    await raw_ready.wait()
    sse, base = [], []
    try:
        # the page first, as a browser opens it: the console's reader has caught up with the
        # topic before the page's event stream opens (a look published while it catches up
        # is in the page it draws, not an event)
        await timed_get(client, f"/experiments/{exp_id}")
        async with client.stream("GET", f"/api/experiments/{exp_id}/events") as resp:
            lines = resp.aiter_lines()
            async for line in lines:
                if line.startswith(": live"):
                    break
            for n in range(1000, 1000 + looks):
                t0 = time.perf_counter()
                as_of = await publish_look(rt, exp_id, n)
                async for line in lines:
                    if line.startswith("data:"):
                        arrived = time.perf_counter()
                        if _instant(json.loads(line[5:])["as_of"]) == as_of:
                            break
                sse.append(arrived - t0)
                while as_of not in raw:
                    await asyncio.sleep(0.01)  # the raw consumer's arrival, already stamped
                base.append(raw[as_of] - t0)
    finally:
        raw_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await raw_task
        await client.aclose()
    print(f"3. a look to the browser (SSE), {looks} looks one after another:")
    print(
        f"  to the SSE client: p50 {q(sse, 0.5) * 1000:.0f} ms, p99 {q(sse, 0.99) * 1000:.0f} ms, "
        f"max {max(sse) * 1000:.0f} ms (0.2 s of it the console's gathering of a look's "
        f"messages); target p99 <= 2 s {met(q(sse, 0.99) <= LIVE_TARGET)}"
    )
    print(
        f"  baseline, a raw consumer of the topic: p50 {q(base, 0.5) * 1000:.0f} ms, "
        f"p99 {q(base, 0.99) * 1000:.0f} ms, max {max(base) * 1000:.0f} ms",
        flush=True,
    )


# ------------------------------------------------------------------ 4: pages against the worker
def helper_cmd(url: str, password: str, streams: int, watch: list[str]) -> list[str]:
    return [sys.executable, __file__, "--helper", "--url", url, "--password", password,
            "--streams", str(streams), "--watch", ",".join(watch)]  # fmt: skip


async def helper(url: str, password: str, streams: int, watch: list[str]) -> None:
    """The other process of part 4: a look a second round robin over ``watch``; with a
    console (``url``), ``streams`` open live pages that redraw on each look as htmx does."""
    settings = Settings()
    rt = Runtime(settings, roles=("analysis",))
    await rt.ensure_started()
    redraws = 0

    async def page(i: int, client: httpx.AsyncClient, opened: asyncio.Queue[int]) -> None:
        nonlocal redraws
        lists = max(1, streams // 10)  # one open page in ten is the list
        exp_id = None if i < lists else watch[i % len(watch)]
        path = "/api/events" if exp_id is None else f"/api/experiments/{exp_id}/events"
        # the page first, as a browser opens it (and as a console that has served pages for
        # a while stands: each spec parsed, the readers caught up), then its event stream
        r = await client.get("/experiments" if exp_id is None else f"/experiments/{exp_id}")
        assert r.status_code == 200, (r.status_code, r.text[:300])
        async with client.stream("GET", path) as resp:
            async for line in resp.aiter_lines():
                if line.startswith(": live"):
                    opened.put_nowait(i)
                elif line.startswith("event: look"):
                    gets = (
                        ["/experiments"]
                        if exp_id is None
                        else [f"/experiments/{exp_id}/results"] * 2
                    )
                    await asyncio.gather(*(client.get(p) for p in gets))
                    redraws += len(gets)

    pages: list[asyncio.Task[None]] = []  # held, so they run until the process ends
    if url:
        client = await signed_in(url, password)
        opened: asyncio.Queue[int] = asyncio.Queue()
        pages += [asyncio.create_task(page(i, client, opened)) for i in range(streams)]
        for _ in range(streams):
            await opened.get()
    print("ready", flush=True)
    n = 2000
    while True:
        for exp_id in watch:
            t0 = time.monotonic()
            await publish_look(rt, exp_id, n)
            n += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))


def worker_cycles(
    settings: Settings,
    products: int,
    cycles: int,
    sets: int,
    streams: int,
    log: Path,
    against: Path | None = None,
) -> None:
    from analysis.worker import AnalysisWorker, InMemorySequenceTuning
    from benchmarks.bench_verdict import COLUMNS, _Sink, _Source
    from controller.clock import ManualClock
    from controller.panel_source import experiment_info
    from lab.compare import make_spec
    from lab.config import MarketConfig
    from lab.market import Market
    from lab.simulate import run_spec

    market = Market(MarketConfig(n_products=products), seed=0)
    spec = make_spec("random-days", market, days=28, seed=1)
    spec = type(spec).model_validate(
        spec.model_dump()
        | {"mde_pct": 5.0, "guardrails": [{"metric": "units", "max_drop_pct": 2.0}]}
    )
    sim = run_spec(spec, market)
    cells = sim.panel[list(COLUMNS)]
    info = experiment_info(spec, "running", sim.triggers)

    async def cycle() -> float:
        sink = _Sink()
        worker = AnalysisWorker(
            _Source(info, cells), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
            verdicts=sink, guardrails=sink, tuning=InMemorySequenceTuning(),
        )  # fmt: skip
        t0 = time.perf_counter()
        await worker.run_once()
        return time.perf_counter() - t0

    asyncio.run(cycle())  # warm
    watch = [f"x{j:04d}" for j in range(9)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")} | settings.to_env()

    @contextlib.contextmanager
    def other(url: str, password: str) -> Any:
        proc = subprocess.Popen(
            helper_cmd(url, password, streams if url else 0, watch), env=env,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", line
            yield
        finally:
            proc.terminate()
            proc.wait(10)

    def cpu(pid: int) -> float:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)

    @contextlib.contextmanager
    def checkout(tree: Path | None) -> Any:
        """The console of ``tree`` (None: this checkout): ``-m streams.cli`` imports from
        the working directory first."""
        if tree is None:
            yield
            return
        here, path = os.getcwd(), os.environ.get("PYTHONPATH")
        os.chdir(tree)
        os.environ["PYTHONPATH"] = str(tree)
        try:
            yield
        finally:
            os.chdir(here)
            if path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = path

    arms = ["without", "with"] + (["against"] if against is not None else [])
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    busy: dict[str, list[float]] = {arm: [] for arm in arms}
    for s in range(sets):
        for arm in arms[s % len(arms) :] + arms[: s % len(arms)]:  # each arm first in turn
            if arm == "without":
                with other("", ""):
                    times[arm].append(
                        statistics.median(asyncio.run(cycle()) for _ in range(cycles))
                    )
                continue
            with checkout(against if arm == "against" else None):
                served = console_up(settings, log)
                c = served.__enter__()
            try:
                with other(c.url, c.password or ""):
                    assert c.proc is not None
                    cpu0, t0 = cpu(c.proc.pid), time.perf_counter()
                    times[arm].append(
                        statistics.median(asyncio.run(cycle()) for _ in range(cycles))
                    )
                    busy[arm].append((cpu(c.proc.pid) - cpu0) / (time.perf_counter() - t0))
            finally:
                served.__exit__(None, None, None)
        print(
            f"  set {s + 1} (load {os.getloadavg()[0]:.1f}): "
            + ", ".join(
                f"{arm} {times[arm][-1]:.3f} s"
                + (
                    f" (the console's CPU meanwhile: {busy[arm][-1]:.2f} of a core)"
                    if busy[arm]
                    else ""
                )
                for arm in arms
            ),
            flush=True,
        )
    b = statistics.median(times["without"])
    for arm in arms[1:]:
        a = statistics.median(times[arm])
        who = "this checkout's console" if arm == "with" else f"the console of {against}"
        print(
            f"4. the analysis cycle ({products} products x 28 days, random days, a verdict and "
            f"a guardrail), median of {sets} sets of {cycles} cycles, alternated: with {who} "
            f"and {streams} open live pages {a:.3f} s, without the console (baseline) "
            f"{b:.3f} s: ratio {a / b:.3f}; target <= {WORKER_TARGET:.2f} "
            f"{met(a / b <= WORKER_TARGET)}; the console's CPU while the cycles ran: median "
            f"{statistics.median(busy[arm]):.2f} of a core",
            flush=True,
        )


# ------------------------------------------------------------------ main
@contextlib.asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    try:
        yield rt
    finally:
        await rt.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--experiments", type=int, default=1000)
    ap.add_argument("--products", type=int, default=1_000_000, help="of the big experiment")
    ap.add_argument("--seed-looks", type=int, default=3, help="looks of each experiment before")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--looks", type=int, default=200)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--cycle-products", type=int, default=5000)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--sets", type=int, default=5)
    ap.add_argument("--parts", default="list,page,live,worker")
    ap.add_argument(
        "--against",
        default="",
        help="part 4: another checkout (a directory) whose console is timed too, alternated",
    )
    ap.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--password", default="", help=argparse.SUPPRESS)
    ap.add_argument("--watch", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.helper:
        asyncio.run(helper(args.url, args.password, args.streams, args.watch.split(",")))
        return
    parts = set(args.parts.split(","))
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_console.{os.getpid()}.log"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}")
    with EmbeddedStack() as stack:
        settings = bench_settings(stack, partitions=2)

        async def setup() -> None:
            async with runtime(settings) as rt:
                took = await seed(rt, args.experiments, args.products, args.seed_looks)
            print(
                f"seeded {args.experiments} experiments ({args.experiments - 1} of 10 products "
                f"in {took['create_small_s']:.1f} s, one of {args.products:,} in "
                f"{took['create_big_s']:.1f} s), {args.seed_looks} looks each in "
                f"{took['looks_s']:.1f} s",
                flush=True,
            )

        asyncio.run(setup())
        if parts & {"list", "page", "live"}:
            with console_up(settings, log) as c:
                pw = c.password or ""
                if parts & {"list", "page"}:
                    asyncio.run(list_and_page(settings, c.url, pw, args.runs, parts))
                if "live" in parts:

                    async def go() -> None:
                        async with runtime(settings) as rt:
                            await live(rt, c.url, pw, args.looks, "x0000")

                    asyncio.run(go())
        if "worker" in parts:
            worker_cycles(
                settings, args.cycle_products, args.cycles, args.sets, args.streams, log,
                Path(args.against).resolve() if args.against else None,
            )  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
