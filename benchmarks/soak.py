"""Soak under faults (issue #42, item 5): the whole stack for a while, with faults, then checks.

    .venv/bin/python -m benchmarks.soak --minutes 60 --seed 1 --out /tmp/soak --save
    .venv/bin/python -m benchmarks.soak --render      # docs/operations.md from docs/figures/soak.json

What runs: the embedded stack (Tansu and redis-server with an append-only file, fsync always),
3 controller workers and 2 analysis workers (``streams.live.launcher``), and a real Prometheus
scraping the five workers with ``deploy/prometheus/alerts.yml`` loaded. The analysis workers
share every experiment's look (``--shards``, 2 by default; ``analysis.sharded``): each
experiment is read in chunks of ``--chunk-products`` products, split between the two by
their consumer group on the shard topic, and merged by one. The soak plays the
rest of the world:

- **the clock**: the shared simulated clock moves at ``--speed`` simulated seconds per wall
  second (2,016 by default: four weeks in 20 minutes) from a Monday at least a week after
  today, so that the rules which compare a timestamp with Prometheus's ``time()`` see a clock
  ahead of the wall's. It stands still while Redis is paused or restarting (the clock lives
  in Redis) and while the broker restarts (see below);
- **10 experiment slots** of six designs, periods of 1, 4, 6, 12 and 24 hours, two of them
  price ladders of four arms, each on its own simulated market, created through the commands
  topic; one is triggered (a 10% undercut sustained for 60 minutes opens a product's window
  of :data:`TRIGGER_WINDOW` periods);
- **in generations**, as a pricing team runs one test after another on the same catalogue:
  each slot's experiment lasts ``--experiment-days`` simulated days (12 by default; slot i's
  that plus i % 3, so the slots hand over at different times). Once its end has passed and
  Redis says it ended (its products released), the soak creates its successor over the same
  products (the next generation: a new id ``soak<slot>-g<n>-...``, a new seed and market)
  through the commands topic, from the first midnight at least 12 clock hours ahead; a
  refused create (the products still held) is tried again. ``--experiment-days 0``: one
  experiment per slot, as long as the run (the runs before 2026-11-28);
- **a competitor-price stream** for each generation of the triggered slot
  (:class:`benchmarks.soak_world.CompetitorSource`), stamped with the simulated time: a
  known third of its products see an undercut that meets the rule, a sixth one too short, a
  sixth one too shallow, early enough that each window ends with its experiment;
- **a steady sales stream** at ``--capacity-share`` (0.5) of the ingest capacity measured at
  the start with ``bench_ingest.worker_rate`` (one controller worker, a backlog of 100,000
  sales; the median of three such measures, each on its own topics: one measure of 30,000
  ranged 97,707-138,293 a second across the runs of 2026-11-29 on one machine), or
  ``--rate``, capped by ``--max-rate`` if given; sent a tick's sales at a time in record
  batches; each sale is stamped with the simulated time and is of a product whose
  experiment is in force then (none between an ended experiment and its successor); a
  share are sent twice, and junk (undecodable, or NaN prices) goes to the dead-letter topic;
- **one fault every** ``--fault-every`` seconds, drawn by the seed: kill -9 of a controller or
  an analysis worker (restarted on the same ports, as a supervisor would), kill -9 and restart
  of Redis (it comes back from its AOF), a broker restart, or Redis paused with SIGSTOP for
  ``--pause`` seconds. Each fault is checked to have happened: the killed pid is gone with
  status -9, Redis answers PING again with the clock it had, the broker's port closed and
  opened again, a paused Redis did not answer and then did. A worker that exits on its own
  is restarted too (a supervisor's job), and is a problem: every outage the soak causes is
  one a worker must ride out.

The embedded broker keeps its data in memory (docs/broker.md): a restart loses every topic.
So before the broker goes down the soak stops its clock and its streams until every sale sent
is counted in Redis, every competitor price is applied to the trigger state and every flip is
read from the topic; events made while it is down wait in their source and are sent once the
topics are back. With Apache Kafka none of that would
be needed; what is measured is pricelab's recovery, not Tansu's storage.

At the end (the pure checks are :mod:`benchmarks.soak_checks`): every sale counted exactly
once; no ``seq`` went backwards on the assignments topic (read with confluent-kafka, an outside
client); every boundary passed flipped exactly once (an end is no flip); every experiment
whose end passed published it (every product ``ended``, one ``seq``, the last of the
experiment's), no message of an old holder came after its successor's for a product, and
no successor was left uncreated; an estimate after each fault of every experiment estimated
before it and not ended by its repair; with sharding on, that both analysis workers shared
the looks; every worker's RSS and live memory flat (the slope per worker slot; a worker's
RSS keeps the peak of its largest look or batches, so each process is judged after its
warm-up, ``--rss-warmup``, by default the wall time the clock took to pass the end of the
longest slot's first experiment, when it has met them: the looks and the experiments are
bounded by the generations; with ``--experiment-days 0`` the looks grow all run, and the
analysis workers' RSS is reported only); the triggers as the rule says, per generation
(each product whose undercut met it announced once and in its window for its periods, no
other product ever triggered, Redis's trigger periods the rule's); and the alerts that
fired against the ones the faults' measured durations call for. ``--save`` writes docs/figures/soak.json
and ``--render`` puts its figures into docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from benchmarks import soak_checks as checks
from benchmarks.soak_render import render_into
from benchmarks.soak_world import CompetitorSource, SalesSource, TopicReader
from controller.errors import StoreError
from controller.periods import is_empty, last_period, period_index, period_start
from controller.settings import AnalysisSettings, Settings
from controller.spec import ExperimentSpec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from core import status as core_status
from core.final_look import FINAL_LOOK
from lab.compare import make_spec, market_classes
from lab.config import MarketConfig
from lab.market import Market
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, free_port
from streams.live.launcher import WorkerProcess, http_ok, metric_value
from streams.worker.kafka import ensure_topics
from streams.worker.shards import shard_topic

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "soak.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
MEMTRACE = ROOT / "benchmarks" / "memtrace"
TIMEZONE = "Europe/Berlin"
#: (design, period in hours, a price ladder's listed ratios or None for two arms)
EXPERIMENTS: tuple[tuple[str, int, tuple[float, ...] | None], ...] = (
    ("random-days", 24, None),
    ("time-bound", 24, None),
    ("crossover", 24, None),
    ("cluster", 24, None),
    ("random-days", 6, None),
    ("time-bound", 4, None),
    ("optimal-switchback", 1, None),
    ("triggered", 12, None),
    ("random-days", 24, (0.9, 0.95, 1.05)),
    ("time-bound", 6, (0.9, 0.95, 1.05)),
)

#: a successor's start is the first midnight at least this far ahead of its create (12 clock
#: hours are 21 wall seconds at 2,016x)
SUCCESSOR_LEAD = timedelta(hours=12)
#: the triggered experiment's window, in periods (of 12 hours: 2 days, so that the short form
#: sees windows open and end)
TRIGGER_WINDOW = 4
#: the trigger rule's watermark lag, in wall seconds of the soak's clock: competitor events
#: delayed by a fault (a consumer group's 10 s session timeout after a kill -9, a broker
#: restart) must not arrive stale. The default 5 minutes is 0.15 s of wall time at 2,016x.
TRIGGER_LAG_WALL = 60.0


@dataclass
class SoakConfig:
    minutes: float = 20.0
    seed: int = 1
    out: Path = Path("/tmp/pricelab-soak")
    speed: float = 2016.0  # simulated seconds per wall second
    products: int = 30
    rate: float | None = None  # sales/s; None: capacity_share of the measured capacity
    capacity_share: float = 0.5
    max_rate: float | None = None  # a cap on that rate (None: none)
    capacity_sales: int = 100_000  # each capacity measure's backlog
    capacity_runs: int = 3  # measures; the capacity is their median
    duplicate_share: float = 0.02
    junk_per_second: float = 0.5
    fault_every: float = 180.0
    warmup: float = 60.0
    pause: float = 20.0
    kinds: tuple[str, ...] | None = None  # a fixed order of faults (the short form)
    controllers: int = 3
    analysts: int = 2
    analysis_interval: float = 2.0
    settle_timeout: float = 240.0
    #: one experiment's look over both analysis workers (analysis.sharded): the shard topic's
    #: partitions (0: off, each analysis worker analyses every experiment alone), and the
    #: chunks of products its looks are read in (an experiment of more products is chunked)
    shards: int = 2
    chunk_products: int = 8
    #: wall seconds the merging worker waits for another's chunks (the default 60 s is for
    #: a look of a million products)
    shard_wait: float = 10.0
    #: a diagnostic: every worker runs with benchmarks/memtrace on its PYTHONPATH, which
    #: writes what its memory is made of into ``out``/memtrace-<slot>.jsonl every 10 s
    trace_memory: bool = False
    #: each experiment's length in simulated days (slot i's: this + i % 3, so that the slots
    #: hand over at different times); when one ends, the soak creates its successor over the
    #: same products (generations). 0: one generation, each experiment as long as the run
    experiment_days: int = 12
    #: minutes of each worker process's life left out before its RSS is judged (its warm-up:
    #: imports, first fits, the look and the batches that set its peak); None: one generation of
    #: the longest slot, as long as the clock took to pass its first experiment's end (a
    #: loaded machine's clock runs slower than ``speed``)
    rss_warmup: float | None = None
    #: the same for each controller process; None: as ``rss_warmup`` (with
    #: ``experiment_days`` 0, its first 30 s)
    controller_rss_warmup: float | None = None

    def slot_days(self, slot: int) -> int:
        """Simulated days of each of ``slot``'s experiments."""
        if not self.experiment_days:
            return math.ceil(self.minutes * 60 * self.speed / 86400) + 7
        return self.experiment_days + slot % 3

    def longest_slot(self) -> int:
        return max(range(len(EXPERIMENTS)), key=self.slot_days)


# ---------------------------------------------------------------------------- the world
def sim_start(today: date) -> datetime:
    """Midnight (the experiments' zone) of the first Monday at least 7 days after ``today``."""
    from zoneinfo import ZoneInfo

    d = today + timedelta(days=7)
    d += timedelta(days=(7 - d.weekday()) % 7)
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(TIMEZONE))


def make_specs(cfg: SoakConfig, start: datetime) -> list[ExperimentSpec]:
    """The first generation: one experiment per slot of :data:`EXPERIMENTS`, from ``start``."""
    return [spec_for(cfg, i, 1, start.date()) for i in range(len(EXPERIMENTS))]


def spec_for(cfg: SoakConfig, slot: int, generation: int, day: date) -> ExperimentSpec:
    """Slot ``slot``'s experiment of ``generation`` (1 on), from midnight of ``day`` for
    :meth:`SoakConfig.slot_days`: the slot's products (``s<slot>-<j>``, the same in every
    generation), its own simulated market and seed, an id of its own."""
    design, hours, ladder = EXPERIMENTS[slot]
    seed = 1000 * cfg.seed + slot + 10 * (generation - 1)
    mcfg = MarketConfig(
        n_products=cfg.products,
        start_date=day,
        timezone=TIMEZONE,
        carryover_order=2 if design == "optimal-switchback" else 0,
    )
    ids = [f"s{slot}-{j:03d}" for j in range(cfg.products)]
    market = Market(mcfg, seed=seed, product_ids=ids)
    classes = market_classes(market) if design == "cluster" else None
    spec = make_spec(
        design, market, days=cfg.slot_days(slot), seed=seed, classes=classes,
        period=timedelta(hours=hours), ladder=ladder,
    )  # fmt: skip
    tag = f"{design}-pt{hours}h" + ("-ladder" if ladder else "")
    gen = f"g{generation}-" if cfg.experiment_days else ""
    update: dict[str, Any] = {"id": f"soak{slot}-{gen}{tag}"}
    if spec.triggered is not None:
        update["triggered"] = spec.triggered.model_copy(update={"window_periods": TRIGGER_WINDOW})
    return spec.model_copy(update=update)


def successor_day(now: datetime) -> date:
    """The day whose midnight (the experiments' zone) a successor created at ``now`` starts
    at: the first at least :data:`SUCCESSOR_LEAD` ahead, so that its create is done before
    its start (a create must not start in the past)."""
    from zoneinfo import ZoneInfo

    t = (now + SUCCESSOR_LEAD).astimezone(ZoneInfo(TIMEZONE))
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.date() if t == midnight else t.date() + timedelta(days=1)


def undercuts_until(cfg: SoakConfig, spec: ExperimentSpec, run_start: datetime) -> datetime:
    """Until when the triggered experiment's undercuts may begin: in generations, early
    enough that a fire's window (:data:`TRIGGER_WINDOW` periods from the next boundary) ends
    with the experiment; in one, within the first half of the run's clock, so that their
    windows open (and the short form's end) before it stops."""
    if cfg.experiment_days:
        return period_start(spec, max(1, last_period(spec) - TRIGGER_WINDOW - 1))
    return run_start + timedelta(seconds=cfg.minutes * 60 * cfg.speed / 2)


def soak_settings(stack: EmbeddedStack, cfg: SoakConfig) -> Settings:
    base = Settings()
    topics = {k: f"soak.{v}" for k, v in base.topics.model_dump().items()}
    return stack.client_settings(base).model_copy(
        update={
            "kafka": stack.client_settings(base).kafka.model_copy(update={"partitions": 6}),
            "topics": base.topics.model_copy(update=topics),
            "key_prefix": "soak",
            "app_id": "soak",
            "clock": "simulated",
            "tick_interval": 0.1,
            # the flip's lease in wall seconds, scaled to the clock: the default 30 s is 17
            # clock hours here, so a controller killed while it held a turn kept an hourly
            # experiment from flipping for 15 boundaries (the 2026-11-26 run); 1 s is 34 clock
            # minutes, less than the shortest period
            "flip_lease": timedelta(seconds=1),
            "analysis_interval": cfg.analysis_interval,
            "analysis": _analysis(base.analysis, cfg),
            "trigger_watermark_lag": timedelta(seconds=TRIGGER_LAG_WALL * cfg.speed),
            "log_level": "WARNING",
        }
    )


def _analysis(base: AnalysisSettings, cfg: SoakConfig) -> AnalysisSettings:
    if not cfg.shards:
        return base
    return base.model_copy(
        update={
            "shards": cfg.shards,
            "chunked_above": cfg.chunk_products,
            "chunk_products": cfg.chunk_products,
            "shard_wait_s": cfg.shard_wait,
        }
    )


# ---------------------------------------------------------------------------- the soak
@dataclass
class Slot:
    name: str
    role: str
    worker: WorkerProcess
    starts: int = 1
    # [seconds, exit status] of each exit nobody caused
    own_exits: list[tuple[float, int]] = field(default_factory=list)


class Soak:
    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.cfg.out.mkdir(parents=True, exist_ok=True)
        # a run's own Redis and Prometheus: the last run's append-only file would be loaded
        # (its experiments already flipped past this run's clock: no flip, nothing read) and
        # its time series scraped again
        for old in ("stack", "prometheus"):
            shutil.rmtree(cfg.out / old, ignore_errors=True)
        self.stack = EmbeddedStack(redis_aof=True, workdir=cfg.out / "stack")
        self.slots: list[Slot] = []
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.prom_port = 0
        self.prom_started = time.monotonic()
        self.t0 = time.monotonic()
        self.frozen = asyncio.Event()  # set: the clock stands still (set it by freeze())
        #: held by a step of the clock while it writes Redis's clock and then ``sim``
        self._clock_step = asyncio.Lock()
        self.sim = datetime.now(UTC)
        self.faults: list[dict[str, Any]] = []
        self.rss: list[tuple[str, int, float, int]] = []
        #: the live memory behind the RSS (streams/worker/memory.py), sampled with it:
        #: (slot, pid, seconds, malloc bytes in use, malloc bytes freed and kept, blocks); the
        #: malloc figures None where the worker does not export them (no mallinfo2)
        self.live: list[tuple[str, int, float, float | None, float | None, float]] = []
        self.health: list[tuple[float, dict[str, tuple[bool, bool]]]] = []
        self.clock_history: list[tuple[float, float]] = []  # (wall since t0, simulated epoch)
        self.supervising = True
        self.missed: list[str] = []  # waits that ran out of time
        self.progress: Callable[[], str] = lambda: ""
        #: per slot of EXPERIMENTS, its experiments in the order created (its generations)
        self.chains: list[list[ExperimentSpec]] = []
        #: every experiment created (acknowledged), in that order
        self.specs: list[ExperimentSpec] = []
        #: the competitor-price source of each generation of the triggered slot
        self.price_sources: list[CompetitorSource] = []
        #: each handover: slot, from, to, wall seconds its predecessor was seen ended and the
        #: successor created, the successor's start, the creates tried and refused
        self.handovers: list[dict[str, Any]] = []
        #: per slot, the handover under way (its predecessor ended, its successor not created)
        self._succession: dict[int, dict[str, Any]] = {}
        self.generating = True
        #: held while a successor is created, and by a broker restart (no create meanwhile)
        self._gen_lock = asyncio.Lock()

    # ------------------------------------------------------------------ processes
    def _launch(self, settings: Settings, name: str, role: str) -> Slot:
        env = {}
        if self.cfg.trace_memory:
            path = os.pathsep.join(filter(None, [str(MEMTRACE), os.environ.get("PYTHONPATH")]))
            env = {"PYTHONPATH": path, "PRICELAB_MEMTRACE_OUT": str(self.cfg.out / f"memtrace-{name}.jsonl")}  # fmt: skip
            (self.cfg.out / f"memtrace-{name}.jsonl").unlink(missing_ok=True)
        w = WorkerProcess(settings, (role,), env=env, log=self.cfg.out / f"{name}.log")
        return Slot(name, role, w.launch())

    def _relaunch(self, slot: Slot) -> None:
        old = slot.worker
        new = WorkerProcess(old.settings, old.roles, env=old.env, log=old.log)
        new.web_port, new.metrics_port = old.web_port, old.metrics_port  # same target
        slot.worker = new.launch()
        slot.starts += 1

    def _start_prometheus(self) -> None:
        d = self.cfg.out / "prometheus"
        d.mkdir(exist_ok=True)
        jobs = defaultdict(list)
        for s in self.slots:
            jobs[f"pricelab-{s.role}"].append(f"127.0.0.1:{s.worker.metrics_port}")
        conf = {
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        (d / "prometheus.yml").write_text(yaml.safe_dump(conf))
        self.prom_port = free_port()
        self.prom_started = time.monotonic()
        log = (d / "prometheus.log").open("ab")
        self.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={d / 'prometheus.yml'}",
             f"--storage.tsdb.path={d / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while not http_ok(self.prom_port, "/-/ready"):
            if self.prometheus.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "prometheus did not start: " + (d / "prometheus.log").read_text()[-2000:]
                )
            time.sleep(0.2)

    def prom_query(self, query: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}
        )
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            return list(json.loads(r.read())["data"]["result"])

    def prom_rules(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/rules"
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            return [rule for g in json.loads(r.read())["data"]["groups"] for rule in g["rules"]]

    def stop_all(self) -> None:
        self.supervising = False
        for s in self.slots:
            with contextlib.suppress(Exception):
                s.worker.stop()
        if self.prometheus is not None and self.prometheus.poll() is None:
            self.prometheus.terminate()
            try:
                self.prometheus.wait(15)
            except subprocess.TimeoutExpired:
                self.prometheus.kill()
                self.prometheus.wait(5)
        # a paused Redis would not stop on SIGTERM
        if self.stack.redis is not None and self.stack.redis.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stack.redis.proc.pid, signal.SIGCONT)
        self.stack.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def end_wall(self, spec: ExperimentSpec) -> float:
        """The wall seconds (since the start) at which the clock passed ``spec``'s end (inf:
        not yet)."""
        return checks.ClockHistory(self.clock_history).wall_when(spec.end.timestamp())

    # ------------------------------------------------------------------ background tasks
    async def clock_task(self, clock: SharedSimulatedClock, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.1)
            t = time.monotonic()
            dt, last = min(t - last, 0.3), t
            async with self._clock_step:
                if self.frozen.is_set():
                    continue
                nxt = self.sim + timedelta(seconds=dt * self.cfg.speed)
                try:
                    await asyncio.wait_for(clock.set(nxt), 2.0)
                except (OSError, TimeoutError, RedisError):
                    continue  # Redis away: the clock waits for it
                self.sim = nxt
                self.clock_history.append((self.elapsed(), nxt.timestamp()))

    async def freeze(self) -> None:
        """Stop the clock, once a step under way has written Redis's clock and ``sim``: a
        step that ended after the freeze began moved the clock past what the soak then read
        as its end (in one short run, a boundary crossed after the flips were all read)."""
        async with self._clock_step:
            self.frozen.set()

    async def monitor_task(self, stop: asyncio.Event) -> None:
        """Every second: each worker's /ready and whether its metrics port answers; every five
        seconds its RSS and its live memory (its metrics' ``pricelab_malloc_bytes`` and
        ``pricelab_python_blocks``). A worker that exited by itself is restarted (a
        supervisor's job)."""
        loop = asyncio.get_running_loop()
        n = 0
        while not stop.is_set():
            await asyncio.sleep(1.0)
            n += 1
            now = self.elapsed()
            state: dict[str, tuple[bool, bool]] = {}
            for s in self.slots:
                w = s.worker
                if self.supervising and w.proc is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    if code != -9 or not self._killed_by_us(w.pid):
                        s.own_exits.append((round(now, 1), int(code)))
                        await loop.run_in_executor(None, self._relaunch, s)
                    continue
                up = await loop.run_in_executor(None, _port_open, w.metrics_port)
                ready = await loop.run_in_executor(None, http_ok, w.web_port, "/ready")
                state[s.name] = (up, ready)
                if n % 5 == 0 and w.alive():
                    with contextlib.suppress(psutil.Error):
                        self.rss.append(
                            (s.name, w.pid, now, psutil.Process(w.pid).memory_info().rss)
                        )
                    with contextlib.suppress(OSError):
                        text = await loop.run_in_executor(None, w.metrics)
                        self.live.append((s.name, w.pid, now, *_live_gauges(text)))
            self.health.append((now, state))
            if n % 60 == 0:
                print(f"[{now:7.1f}s] {self.sim.isoformat()[:16]} {self.progress()}", flush=True)

    def _killed_by_us(self, pid: int) -> bool:
        return any(f.get("pid") == pid for f in self.faults)

    # ------------------------------------------------------------------ faults
    async def inject(self, kind: str, ctx: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        rng: random.Random = ctx["rng"]
        rec: dict[str, Any] = {"kind": kind, "began": self.elapsed(), "sim": self.sim.isoformat()}
        if kind.startswith("kill9-"):
            role = kind.removeprefix("kill9-")
            slot = rng.choice([s for s in self.slots if s.role == role])
            pid = slot.worker.pid
            rec |= {"slot": slot.name, "pid": pid}
            self.faults.append(rec)  # before the kill: the supervisor must not count it
            await loop.run_in_executor(None, slot.worker.kill9)
            code = slot.worker.proc.returncode if slot.worker.proc else None
            rec["verified"] = code == -9 and not psutil.pid_exists(pid)
            rec["detail"] = f"pid {pid} exit status {code}"
            await loop.run_in_executor(None, self._relaunch, slot)
            await loop.run_in_executor(None, slot.worker.wait_healthy)
        elif kind == "redis-restart":
            await self.freeze()
            assert self.stack.redis is not None and self.stack.redis.proc is not None
            old = self.stack.redis.proc.pid
            before = await ctx["redis"].get(ctx["clock_key"])
            await loop.run_in_executor(None, lambda: self.stack.restart_redis(kill=True))
            t_up = time.monotonic()
            new = self.stack.redis.proc.pid
            # a restarted Redis answers LOADING until its dataset is read back, which grows
            # with the run: ~50 minutes in (2026-11-29 01:12, load ~6) it took more than 30 s
            within = self.cfg.settle_timeout
            after = await _retry(lambda: ctx["redis"].get(ctx["clock_key"]), within)
            loaded = time.monotonic() - t_up
            pong = await _retry(lambda: ctx["redis"].ping(), within)
            rec["verified"] = (
                bool(pong) and new != old and not psutil.pid_exists(old) and after == before
            )
            rec["loaded_s"] = round(loaded, 1)
            rec["detail"] = (
                f"pid {old} -> {new}; clock kept: {after == before}; answered after {loaded:.1f}s"
            )
            self.frozen.clear()
        elif kind == "redis-pause":
            await self.freeze()
            assert self.stack.redis is not None and self.stack.redis.proc is not None
            pid = self.stack.redis.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                silent = not await loop.run_in_executor(
                    None, _redis_pings, self.stack.redis_port, 1.0
                )
                await asyncio.sleep(self.cfg.pause)  # the fault itself: its length
            finally:
                os.kill(pid, signal.SIGCONT)
            back = await loop.run_in_executor(None, _redis_pings, self.stack.redis_port, 10.0)
            rec["verified"] = silent and back
            rec["detail"] = (
                f"pid {pid} stopped {self.cfg.pause:g}s; silent {silent}, answered after {back}"
            )
            self.frozen.clear()
        elif kind == "broker-restart":
            async with self._gen_lock:  # no successor created while the broker is away
                rec |= await self._broker_restart(ctx)
        else:
            raise ValueError(kind)
        rec["repaired"] = self.elapsed()
        if rec not in self.faults:
            self.faults.append(rec)
        print(f"[{rec['repaired']:7.1f}s] {kind}: {rec['detail']} (verified {rec['verified']})",
              flush=True)  # fmt: skip
        return rec

    def _fault_failed(self, kind: str, at: float, exc: BaseException) -> None:
        """Record a fault that raised: the record ``inject`` made already (a kill is recorded
        before it is sent), or one begun at its scheduled time, ended now, not verified."""
        rec = next((f for f in self.faults if f["kind"] == kind and "repaired" not in f), None)
        if rec is None:
            rec = {"kind": kind, "began": at, "sim": self.sim.isoformat()}
            self.faults.append(rec)
        rec |= {"verified": False, "detail": f"not repaired: {exc!r}", "repaired": self.elapsed()}
        self.frozen.clear()
        print(f"[{self.elapsed():7.1f}s] {kind}: {rec['detail']} (verified False)", flush=True)

    async def _broker_restart(self, ctx: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        source: SalesSource = ctx["source"]
        reader: TopicReader = ctx["reader"]
        store: Store = ctx["store"]
        await self.freeze()
        streams: list[SalesSource | CompetitorSource] = [source, *self.price_sources]
        for src in streams:
            src.flowing.clear()
            await src.flush_all()
        t_q = time.monotonic()
        pending: list[str] = []
        await _until(
            lambda: _all_counted(store, source, pending),
            self.cfg.settle_timeout,
            "sales counted before the broker restart",
            self.missed,
            pending,
        )
        await _until(
            lambda: _all_prices_applied(store, self.price_sources, pending),
            self.cfg.settle_timeout,
            "competitor prices applied before the broker restart",
            self.missed,
            pending,
        )
        await _until(
            lambda: _flips_read(store, reader, self.specs, pending, self.sim),
            self.cfg.settle_timeout,
            "flips read before the broker restart",
            self.missed,
            pending,
        )
        quiesce = time.monotonic() - t_q
        for src in streams:
            src.broker_up = False
            src.flowing.set()
            await src.close()
        reader.stop()
        broker = self.stack.broker
        assert broker is not None
        await loop.run_in_executor(None, broker.stop)
        closed = not _port_open(self.stack.kafka_port)
        await loop.run_in_executor(None, broker.start)
        opened = _port_open(self.stack.kafka_port)
        await ensure_topics(ctx["settings"])
        held = 0
        for src in streams:
            await src.open()
            src.broker_up = True
            held += await src.release_held()
        reader.start()
        self.frozen.clear()
        return {
            "verified": closed and opened,
            "detail": f"port closed {closed}, open again {opened}; quiesced {quiesce:.1f}s, "
                      f"{held} messages held while down",
        }  # fmt: skip

    # ------------------------------------------------------------------ generations
    async def generations_task(
        self, ctx: dict[str, Any], stop: asyncio.Event, tasks: list[asyncio.Task[Any]]
    ) -> None:
        """Each slot's experiments one after another over its products: when a slot's
        experiment's end has passed and Redis says it ended (its products released), its
        successor is created through the commands topic (:meth:`_succeed`). Not while the
        clock stands still (a fault under way), nor during a broker restart."""
        if not self.cfg.experiment_days:
            return
        while not stop.is_set():
            await asyncio.sleep(0.5)
            for slot, chain in enumerate(self.chains):
                if self.frozen.is_set() or not self.generating:
                    break
                if self.sim < chain[-1].end:
                    continue
                async with self._gen_lock:
                    if not self.frozen.is_set() and self.generating:
                        # Redis away (a fault under way): tried again at the next round
                        with contextlib.suppress(OSError, RedisError, StoreError):
                            await self._succeed(slot, ctx, stop, tasks)

    async def _succeed(
        self, slot: int, ctx: dict[str, Any], stop: asyncio.Event, tasks: list[asyncio.Task[Any]]
    ) -> None:
        """One try at slot ``slot``'s handover: once its experiment is ended in Redis, its
        successor (:func:`spec_for`, the next generation, from :func:`successor_day`) is
        created; a refusal (the products still held while the old holder's last messages
        go out) or no reply is tried again at the next call. A create whose reply was lost
        but which went through is found in Redis and taken as done."""
        store: Store = ctx["store"]
        chain = self.chains[slot]
        old = chain[-1]
        rec = self._succession.setdefault(
            slot, {"slot": slot, "from": old.id, "ended_seen": None, "tries": 0, "refused": [],
                   "errors": [], "spec": None},
        )  # fmt: skip
        try:
            st = await store.get_experiment(old.id)
        except (OSError, RedisError, StoreError):
            return
        if st.status != core_status.ENDED:  # the controllers' tick ends it
            return
        if rec["ended_seen"] is None:
            rec["ended_seen"] = round(self.elapsed(), 1)
        spec: ExperimentSpec | None = rec["spec"]
        if spec is not None:
            with contextlib.suppress(StoreError):  # created, its reply lost: done
                made = await store.get_experiment(spec.id)
                if made.status != core_status.CREATING:
                    await self._adopt(slot, made.spec, ctx, stop, tasks)
                return
        if spec is None or spec.start <= self.sim + timedelta(hours=1):
            spec = rec["spec"] = spec_for(self.cfg, slot, len(chain) + 1, successor_day(self.sim))
        rec["tries"] += 1
        try:
            reply = await send_command_async(
                ctx["settings"], "create", timeout=60.0, spec=spec.model_dump(mode="json")
            )
        except Exception as exc:  # noqa: BLE001 - the broker away, no reply: tried again
            rec["errors"].append(f"{type(exc).__name__}: {exc}"[:160])
            return
        if not reply.get("ok"):
            rec["refused"].append(str(reply.get("error"))[:200])
            return
        # the spec Redis holds: an earlier try, its reply lost, may have gone through with
        # another start (the create is then a repeat, answered ok)
        await self._adopt(slot, (await store.get_experiment(spec.id)).spec, ctx, stop, tasks)

    async def _adopt(
        self,
        slot: int,
        spec: ExperimentSpec,
        ctx: dict[str, Any],
        stop: asyncio.Event,
        tasks: list[asyncio.Task[Any]],
    ) -> None:
        """A successor created: sales for its products while it is in force, and for the
        triggered slot its own competitor-price source."""
        rec = self._succession.pop(slot)
        self.chains[slot].append(spec)
        self.specs.append(spec)
        ctx["source"].add(spec)
        if spec.triggered is not None:
            seed = self.cfg.seed + 100 * (len(self.chains[slot]) - 1)
            prices = CompetitorSource(
                ctx["settings"], spec, seed, undercuts_until(self.cfg, spec, spec.start)
            )
            await prices.open()
            self.price_sources.append(prices)
            tasks.append(asyncio.create_task(prices.run(lambda: self.sim, stop)))
        self.handovers.append({
            "slot": slot, "from": rec["from"], "to": spec.id, "ended_seen": rec["ended_seen"],
            "created": round(self.elapsed(), 1), "start": spec.start.isoformat(),
            "tries": rec["tries"], "refused": rec["refused"][:3], "errors": rec["errors"][:3],
        })  # fmt: skip
        print(f"[{self.elapsed():7.1f}s] handover: {rec['from']} -> {spec.id} from "
              f"{spec.start.isoformat()[:10]} ({rec['tries']} tries)", flush=True)  # fmt: skip

    async def stop_generations(self) -> None:
        """No successor created from now on; one under way is let finish."""
        self.generating = False
        async with self._gen_lock:
            pass

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.stack.start)
        capacity, capacities = None, []
        if cfg.rate is None:
            for _ in range(cfg.capacity_runs):
                capacities.append(await measure_capacity(self.stack, cfg.capacity_sales))
            capacity = statistics.median(capacities)
            target = cfg.capacity_share * capacity
        else:
            target = cfg.rate
        rate = target if cfg.max_rate is None else min(target, cfg.max_rate)
        settings = soak_settings(self.stack, cfg)
        await ensure_topics(settings)
        redis = make_redis(settings)
        store = Store(redis, settings.key_prefix)
        ckey = clock_key(settings.key_prefix)
        clock = SharedSimulatedClock(redis, ckey)
        start = sim_start(datetime.now(UTC).date())
        specs = make_specs(cfg, start)
        self.chains = [[s] for s in specs]
        self.specs = list(specs)
        self.sim = start - timedelta(hours=1)
        await clock.set(self.sim)
        for i in range(cfg.controllers):
            self.slots.append(self._launch(settings, f"controller-{i}", "controller"))
        for i in range(cfg.analysts):
            self.slots.append(self._launch(settings, f"analysis-{i}", "analysis"))
        await loop.run_in_executor(None, lambda: [s.worker.wait_healthy() for s in self.slots])
        await loop.run_in_executor(None, self._start_prometheus)
        for spec in specs:
            reply = await send_command_async(settings, "create", timeout=90.0,
                                             spec=spec.model_dump(mode="json"))  # fmt: skip
            if not reply.get("ok"):
                raise RuntimeError(f"create {spec.id} refused: {reply.get('error')}")
        self.sim = start
        await clock.set(start)
        reader = TopicReader(settings)
        reader.start()
        source = SalesSource(settings, specs, cfg.seed, cfg.duplicate_share, cfg.junk_per_second)
        await source.open()
        tspec = next(s for s in specs if s.triggered is not None)
        prices = CompetitorSource(settings, tspec, cfg.seed, undercuts_until(cfg, tspec, start))
        await prices.open()
        self.price_sources = [prices]
        self.progress = lambda: (
            f"{source.distinct:,} sales sent, {len(reader.assignments):,} assignments and "
            f"{sum(map(len, reader.estimates.values())):,} estimates read"
        )
        stop = asyncio.Event()
        self.t0 = time.monotonic()
        seconds = cfg.minutes * 60
        schedule = checks.fault_schedule(cfg.seed, seconds, cfg.fault_every, cfg.warmup, cfg.kinds)
        ctx = {"rng": random.Random(cfg.seed + 1), "redis": redis, "clock_key": ckey,
               "source": source, "reader": reader, "store": store, "settings": settings}  # fmt: skip
        tasks = [
            asyncio.create_task(self.clock_task(clock, stop)),
            asyncio.create_task(self.monitor_task(stop)),
            asyncio.create_task(source.run(rate, lambda: self.sim, stop)),
            asyncio.create_task(prices.run(lambda: self.sim, stop)),
        ]
        tasks.append(asyncio.create_task(self.generations_task(ctx, stop, tasks)))
        print(f"soak: {len(specs)} experiments, {rate:.0f} sales/s, {len(schedule)} faults, "
              f"{seconds:.0f}s, clock x{cfg.speed:g} from {start.isoformat()}", flush=True)  # fmt: skip
        try:
            for f in schedule:
                await _sleep_until(self.t0 + f.at, tasks)
                try:
                    await self.inject(f.kind, ctx)
                except Exception as exc:
                    # a fault the soak could not carry out or see repaired is a failed fault
                    # (the faults check names it), not the end of the run and its figures
                    self._fault_failed(f.kind, f.at, exc)
            await _sleep_until(self.t0 + seconds, tasks)
            # the end: no more sales, time or successors; everything sent must be counted,
            # every flip read
            await self.stop_generations()
            streams: list[SalesSource | CompetitorSource] = [source, *self.price_sources]
            for src in streams:
                src.flowing.clear()
            await self.freeze()
            for src in streams:
                await src.flush_all()
            t_end = self.elapsed()
            pending: list[str] = []
            await _until(
                lambda: _all_counted(store, source, pending),
                cfg.settle_timeout,
                "every sale counted",
                self.missed,
                pending,
            )
            await _until(
                lambda: _lag_zero(self.slots, settings, pending),
                cfg.settle_timeout,
                "no sales lag",
                self.missed,
                pending,
            )
            await _until(
                lambda: _all_prices_applied(store, self.price_sources, pending),
                cfg.settle_timeout,
                "every competitor price applied",
                self.missed,
                pending,
            )
            await _until(
                lambda: _flips_read(store, reader, self.specs, pending, self.sim),
                cfg.settle_timeout,
                "every flip read",
                self.missed,
                pending,
            )
            if self.faults:
                last = self.faults[-1]
                # an experiment whose end came by the repair is not looked at again
                over = {s.id for s in self.specs if self.end_wall(s) <= last["repaired"]}
                await _until(lambda: _estimated_since(reader, self.t0 + last["began"], self.t0 + last["repaired"], over),
                             cfg.settle_timeout, "estimates after the last fault", self.missed)  # fmt: skip
            stop.set()
            for t in tasks:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks)
            report = await self.report(store, reader, source, self.specs, t_end,
                                       {"rate": rate, "target": target, "capacity": capacity,
                                        "capacities": capacities, "start": start}, settings)  # fmt: skip
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            reader.stop()
            await source.close()
            for p in self.price_sources:
                await p.close()
            await redis.aclose()
        return report

    async def report(
        self, store: Store, reader: TopicReader, source: SalesSource,
        specs: list[ExperimentSpec], t_end: float, rates: dict[str, Any], settings: Settings,
    ) -> dict[str, Any]:  # fmt: skip
        cfg = self.cfg
        totals = {s.id: await store.totals(s.id) for s in specs}
        sent = {e: (v[0], v[1]) for e, v in source.sent.items()}
        with reader.lock:
            msgs = list(reader.assignments)
            received = {k: [t - self.t0 for t in v] for k, v in reader.estimates.items()}
        periods = {}
        state = {}
        for s in specs:
            st = await store.get_experiment(s.id)
            state[s.id] = {"flipped_period": st.flipped_period, "missed_flips": st.missed_flips,
                           "status": st.status}  # fmt: skip
            periods[s.id] = due_periods(s, self.sim)
        by_id = {s.id: s for s in specs}
        products = {s.id: s.all_products() for s in specs}
        triggered = [s.id for s in specs if s.triggered is not None]
        count = checks.count_problems(sent, totals)
        seq = checks.seq_regressions(msgs)
        flips = checks.flip_problems(msgs, products, periods, triggered)
        triggers = await self._triggers(store, msgs, periods)
        flips += [f"{e}: at period {v['flipped_period']}, the clock is in "
                  f"{periods[e][-1] if periods[e] else 'none yet'}"
                  for e, v in state.items()
                  if v["flipped_period"] != (periods[e][-1] if periods[e] else -1)]  # fmt: skip
        ends = {s.id: self.end_wall(s) for s in specs}
        ended = [s.id for s in specs if s.end <= self.sim]
        generation = {s.id: (i, g) for i, chain in enumerate(self.chains)
                      for g, s in enumerate(chain, 1)}  # fmt: skip
        handover = checks.end_problems(msgs, products, ended)
        handover += checks.handover_problems(msgs, generation)
        handover += self._successions_missed()
        resumed = checks.resumed_after(
            self.faults, {s.id: received.get(s.id, []) for s in specs}, ends
        )
        slopes = checks.rss_slopes(self.rss)
        # an analysis worker keeps what it frees (GLIBC_TUNABLES): its RSS is the largest look's
        # peak so far. A controller's climbs in steps to the high-water mark of what its batches
        # and experiments need (malloc's kept heap and the interpreter's arenas, while its live
        # memory stays flat; docs/operations.md, "Reading the last saved run, of 13:02"). Both are
        # bounded by the generations (each experiment lasts its slot's days, then a successor
        # starts over): once a process has lived a generation it has met its largest look and its
        # largest batches, and every worker's RSS is judged from then on (SoakConfig.rss_warmup).
        # Before 2026-11-28's second 60-minute run only the analysis workers were; the report says
        # which ("workers")
        warm = (
            cfg.rss_warmup * 60
            if cfg.rss_warmup is not None
            else min(self.end_wall(self.chains[cfg.longest_slot()][0]), t_end)
        )
        analysts = {s.name for s in self.slots if s.role == "analysis"}
        if cfg.controller_rss_warmup is not None:
            warm_c = cfg.controller_rss_warmup * 60
        else:  # one generation; with experiments as long as the run, the first 30 s
            warm_c = warm if cfg.experiment_days else 30.0
        judged = checks.rss_slopes([r for r in self.rss if r[0] in analysts], settle=warm)
        judged |= checks.rss_slopes([r for r in self.rss if r[0] not in analysts], settle=warm_c)
        roles = {s.name: s.role for s in self.slots}
        if cfg.experiment_days:
            rss = checks.rss_problems(judged, roles=roles)
        else:  # experiments as long as the run: the looks grow by design, reported only
            rss = checks.rss_problems(
                {k: v for k, v in judged.items() if k not in analysts}, roles=roles
            )
        live = await self._live_memory()
        announced = checks.announcements(msgs, products, triggered)
        first_flip: dict[tuple[str, int], float] = {}
        with reader.lock:
            for (e, k, sq), t in reader.first_seen.items():
                if k >= 1 and e in by_id and (e, k, sq) not in announced:
                    first_flip[(e, k)] = min(first_flip.get((e, k), t), t)
            stale = {k: [t - self.t0 for t in v] for k, v in reader.by_estimator.items()}
        flip_times = [
            (period_start(by_id[e], k).timestamp(), t - self.t0) for (e, k), t in first_flip.items()
        ]
        final_looks = await self._final_looks(store, specs)
        alerts = self._alerts(state, flip_times, stale, final_looks)
        sharding = await self._sharding(store, specs, settings)
        own = {s.name: [list(e) for e in s.own_exits] for s in self.slots if s.own_exits}
        verified = [f"{f['kind']} at {f['began']:.0f}s not verified: {f['detail']}"
                    for f in self.faults if not f["verified"]]  # fmt: skip
        problems = {
            "faults_verified": verified,
            "waits_in_time": self.missed,
            "every_sale_counted_once": count,
            "no_seq_backwards": [str(r) for r in seq[:20]],
            "every_boundary_flipped_once": flips[:50],
            "handed_over": handover[:50],
            "estimates_resumed": [
                f"{r['kind']}: no estimate after it for {r['without']}"
                for r in resumed
                if r["seconds"] is None
            ],  # fmt: skip
            "rss_flat": rss,
            "live_memory_flat": live.pop("problems"),
            "triggers_as_the_rule_says": triggers.pop("problems")[:50],
            "alerts_as_expected": alerts["problems"],
            "analysis_shared": sharding.pop("problems"),
            "no_exit_nobody_caused": checks.exit_problems(own),
        }
        return {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_at_end": os.getloadavg(),
            "wall_seconds": t_end,
            "simulated": {
                "start": rates["start"].isoformat(),
                "end": self.sim.isoformat(),
                "days": (self.sim - rates["start"]).total_seconds() / 86400,
            },  # fmt: skip
            "generations": {
                "experiment_days": cfg.experiment_days,
                "per_slot": [len(c) for c in self.chains],
                "handovers": self.handovers,
                "ended": len(ended),
            },
            "experiments": [
                {
                    "id": s.id,
                    "slot": generation[s.id][0],
                    "generation": generation[s.id][1],
                    "start": s.start.isoformat(),
                    "end": s.end.isoformat(),
                    "design": s.design,
                    "period_hours": s.period / timedelta(hours=1),
                    "arms": s.n_arms,
                    "products": len(s.all_products()),
                    "boundaries": len(periods[s.id]),
                }
                for s in specs
            ],  # fmt: skip
            "rate": {
                "capacity_per_s": rates["capacity"],
                "capacity_measures_per_s": rates["capacities"],
                "target_per_s": rates["target"],
                "run_per_s": rates["rate"],
                "distinct": source.distinct,
                "achieved_per_s": source.distinct / t_end,
                "duplicates": source.duplicates,
                "junk": source.junk,
                "dead_letters_read": reader.dead_letters,
            },  # fmt: skip
            "assignments_read": len(msgs),
            "triggers": triggers,
            "estimates_read": {s.id: len(received.get(s.id, [])) for s in specs},
            # all experiments' estimates read in each wall minute of the run
            "estimates_per_minute": checks.per_minute(
                [t for s in specs for t in received.get(s.id, [])], t_end
            ),
            "faults": self.faults,
            "resumed": resumed,
            # each slot's [seconds, exit status] of the exits nobody caused
            "own_exits": own,
            "rss": slopes,
            # every worker's RSS as judged: each process's samples after its warm-up
            "rss_judged": {
                "warmup_s": warm,
                "controller_warmup_s": warm_c,
                "judged": bool(cfg.experiment_days),
                "workers": "every",
                # the slopes are fitted to means over blocks of this many seconds
                "blocks_s": checks.BLOCK_S,
                # only the slots whose RSS is judged (with experiments as long as the run,
                # the analysis workers' is reported, not judged)
                "not_judged": checks.rss_not_judged(
                    judged
                    if cfg.experiment_days
                    else {k: v for k, v in judged.items() if k not in analysts}
                ),
                "slopes": judged,
            },  # fmt: skip
            # the samples behind the slopes, per slot: [seconds, pid, MB]
            "rss_samples": {
                slot: [
                    [round(t, 1), pid, round(rss / 2**20, 1)]
                    for n, pid, t, rss in self.rss
                    if n == slot
                ]
                for slot in sorted({n for n, _, _, _ in self.rss})
            },
            "live_memory": live,
            # the samples behind it, per slot: [seconds, pid, malloc MB in use or None, k blocks]
            "live_samples": {
                slot: [
                    [
                        round(t, 1),
                        pid,
                        None if u is None else round(u / 2**20, 2),
                        round(b / 1000, 1),
                    ]
                    for n, pid, t, u, _, b in self.live
                    if n == slot
                ]
                for slot in sorted({n for n, *_ in self.live})
            },
            "alerts": alerts,
            "sharding": sharding,
            "problems": problems,
            "passed": {k: not v for k, v in problems.items()},
        }

    async def _live_memory(self) -> dict[str, Any]:
        """The live memory's trend per worker slot: the troughs (each minute's lowest value,
        between looks) of malloc's bytes in use and of the interpreter's blocks, with
        :func:`checks.slopes` after a minute of warm-up; a leak raises them, a peak does not.
        Also the largest bytes malloc held (in use and kept): an analysis worker's heap."""
        in_use = checks.troughs([(n, p, t, u) for n, p, t, u, _, _ in self.live if u is not None])
        blocks = checks.troughs([(n, p, t, b) for n, p, t, _, _, b in self.live])
        mb = checks.slopes(in_use, settle=60.0, scale=2**20)
        kb = checks.slopes(blocks, settle=60.0, scale=1000.0)
        problems = checks.growth_problems(mb, "malloc in use (troughs)", "MB")
        problems += checks.growth_problems(kb, "interpreter blocks (troughs)", "k blocks")
        heap: dict[str, float] = {}
        for n, _, _, u, f, _ in self.live:
            if u is not None and f is not None:
                heap[n] = max(heap.get(n, 0.0), (u + f) / 2**20)
        # the full collections each worker ran since its last start, and their mean seconds
        loop = asyncio.get_running_loop()
        gc_full: dict[str, list[float] | None] = {}
        for slot in self.slots:
            try:
                text = await loop.run_in_executor(None, slot.worker.metrics)
            except OSError:
                gc_full[slot.name] = None
                continue
            runs = metric_value(text, "pricelab_gc_full_duration_seconds_count")
            total = metric_value(text, "pricelab_gc_full_duration_seconds_sum")
            gc_full[slot.name] = [runs, total / runs if runs else math.nan]
        return {"malloc_in_use_mb": mb, "python_kblocks": kb, "malloc_held_max_mb": heap,
                "gc_full": gc_full, "problems": problems}  # fmt: skip

    async def _sharding(
        self, store: Store, specs: list[ExperimentSpec], settings: Settings
    ) -> dict[str, Any]:
        """With sharding on, that the analysis workers shared the looks: the chunks' parts
        left in Redis by a worker for another to merge (kept 10 minutes), and the estimates
        each analysis worker published since its last start (each merges the experiments of
        the shards it owns). Also the shard topic's partitions at the end, as the broker
        describes it (after a broker restart it may have made the topic again by itself,
        with its own default count; docs/operations.md)."""
        if not self.cfg.shards:
            return {"shards": 0, "problems": []}
        topic_partitions = await _partitions(settings, shard_topic(settings))
        parts = 0
        for s in specs:
            async for _ in store.redis.scan_iter(match=f"{store.exp(s.id)}:part:*", count=1000):
                parts += 1
        published: dict[str, float | None] = {}
        for slot in self.slots:
            if slot.role == "analysis":
                try:
                    text = slot.worker.metrics()
                except OSError:
                    published[slot.name] = None
                else:
                    published[slot.name] = metric_value(text, "pricelab_estimates_published_total")
        problems = [] if parts else ["no chunk's part in Redis: no look spread over the workers"]
        problems += [f"{n} published no estimate since its last start"
                     for n, v in published.items() if not v]  # fmt: skip
        return {"shards": self.cfg.shards, "chunk_products": self.cfg.chunk_products,
                "topic_partitions": topic_partitions, "parts_in_redis": parts, "published_by": published, "problems": problems}  # fmt: skip

    async def _triggers(
        self, store: Store, msgs: list[dict[str, Any]], periods: dict[str, list[int]]
    ) -> dict[str, Any]:
        """The triggered experiments' check, every generation's (:meth:`_trigger_one`), the
        figures summed and the problems of each."""
        each = [await self._trigger_one(store, msgs, p, periods[p.spec.id])
                for p in self.price_sources]  # fmt: skip
        undercuts: dict[str, int] = defaultdict(int)
        for t in each:
            for k, n in t["undercuts"].items():
                undercuts[k] += n
        return {
            "experiment": ", ".join(t["experiment"] for t in each),
            "competitor_events": sum(t["competitor_events"] for t in each),
            "undercuts": dict(sorted(undercuts.items())),
            "fires_due": sum(t["fires_due"] for t in each),
            "unjudged": [p for t in each for p in t["unjudged"]],
            "recorded": sum(t["recorded"] for t in each),
            "stale": sum(t["stale"] for t in each),
            "generations": [{k: v for k, v in t.items() if k != "problems"} for t in each],
            "problems": [p for t in each for p in t["problems"]],
        }

    async def _trigger_one(
        self, store: Store, msgs: list[dict[str, Any]], prices: CompetitorSource,
        periods: list[int],
    ) -> dict[str, Any]:  # fmt: skip
        """One triggered experiment's check (:func:`checks.trigger_problems`): the fires the
        rule calls for on the undercuts sent, against the assignments read and Redis."""
        spec = prices.spec
        rule = spec.triggered
        assert rule is not None
        sent = {u.product: (u.depth_pct, u.since, u.last) for u in prices.undercuts.values()
                if u.since is not None and u.last is not None}  # fmt: skip
        fire_at = checks.rule_fires(sent, rule.undercut_pct, rule.sustained_minutes)
        fires = {p: period_index(spec, t) + 1 for p, t in fire_at.items()}
        # a fire whose window opens after the clock stopped: its announcement may or may
        # not be out, and no window is in force yet
        unjudged = sorted(p for p, k in fires.items() if not periods or k > periods[-1])
        _, state = await store.trigger_state(spec.id)
        recorded = {p: int(f["period"]) for p, f in (state or {}).get("fired", {}).items()}
        problems = checks.trigger_problems(
            msgs, spec.id, list(spec.products), fires, periods, rule.window_periods,
            recorded=recorded, unjudged=unjudged,
        )  # fmt: skip
        kinds = defaultdict(list)
        for u in prices.undercuts.values():
            kinds[u.kind if u.since is not None else f"{u.kind} (not begun)"].append(u.product)
        return {
            "experiment": spec.id,
            "competitor_events": len(prices.sent),
            "undercuts": {k: len(v) for k, v in sorted(kinds.items())},
            "fires_due": len(fires) - len(unjudged),
            "unjudged": unjudged,
            "recorded": len(recorded),
            "stale": (state or {}).get("stale", 0),
            "problems": problems,
        }

    async def _final_looks(self, store: Store, specs: list[ExperimentSpec]) -> dict[str, float]:
        """Per experiment whose final look is out (the analysis worker's mark in Redis, the
        look's clock time), the wall seconds at which the clock reached it: from then on no
        worker exports its estimates' age."""
        history = checks.ClockHistory(self.clock_history)
        out = {}
        for s in specs:
            mark = await store.redis.hget(f"{store.exp(s.id)}:cs", FINAL_LOOK)
            if mark is not None:
                out[s.id] = history.wall_when(float(mark) / 1000.0)
        return out

    def _successions_missed(self) -> list[str]:
        """A slot whose experiment ended and whose successor was not created within the
        settle timeout (``settle_timeout``) of its end being seen in Redis."""
        now = self.elapsed()
        return [
            f"soak slot {slot}: {rec['from']} ended (seen at {rec['ended_seen']:.0f}s) and its "
            f"successor was not created in {now - rec['ended_seen']:.0f}s ({rec['tries']} "
            f"tries; refused: {'; '.join(rec['refused'][-2:]) or 'never'}; errors: "
            f"{'; '.join(rec['errors'][-2:]) or 'none'})"
            for slot, rec in sorted(self._succession.items())
            if rec["ended_seen"] is not None and now - rec["ended_seen"] > self.cfg.settle_timeout
        ]

    def _alerts(
        self, state: dict[str, dict[str, Any]], flips: list[tuple[float, float]],
        stale: dict[str, list[float]], final_looks: dict[str, float],
    ) -> dict[str, Any]:  # fmt: skip
        waits = checks.rule_waits(yaml.safe_load(ALERTS.read_text()))
        times = [t for t, _ in self.health]
        names = [s.name for s in self.slots]

        def held(pred: Callable[[dict[str, tuple[bool, bool]]], bool]) -> float:
            return checks.longest_run(times, [pred(st) for _, st in self.health], 1.0)

        role = {s.name: s.role for s in self.slots}
        history = checks.ClockHistory(self.clock_history)
        measured = {
            "PricelabControllerDown": held(lambda st: not any(
                st.get(n, (False, False))[0] for n in names if role[n] == "controller")),
            "PricelabAnalysisDown": held(lambda st: not any(
                st.get(n, (False, False))[0] for n in names if role[n] == "analysis")),
            "PricelabWorkerNotReady": max((held(_not_ready(n)) for n in names), default=0.0),
            "PricelabMissedFlips": float(sum(v["missed_flips"] for v in state.values())),
            "PricelabLateFlip": checks.late_flip_held(flips, history, times[-1] if times else 0.0),
            "PricelabEstimateStale": checks.stale_estimate_held(stale, history, times[-1] if times else 0.0,
                                                                watched_until=final_looks),
            # the soak runs no console: no target of its job is up while Prometheus runs
            "PricelabConsoleDown": time.monotonic() - self.prom_started,
        }  # fmt: skip
        expected = checks.expected_alerts(waits, measured, slack=10.0)
        window = f"{int(self.elapsed()) + 60}s"
        fired = {r["metric"]["alertname"] for r in self.prom_query(
            f'max_over_time(ALERTS{{alertstate="firing"}}[{window}])')}  # fmt: skip
        pending = {r["metric"]["alertname"] for r in self.prom_query(
            f'max_over_time(ALERTS{{alertstate="pending"}}[{window}])')}  # fmt: skip
        rules = self.prom_rules()
        targets = self.prom_query(f"count_over_time(up[{window}])")
        # PricelabEstimateStale as the soak saw it, per series (the worker's: estimator, metric,
        # arm or segment): the five that were stale longest (wall seconds), beside the largest
        # age any worker exported of them
        until = times[-1] if times else 0.0
        longest = sorted(((checks.stale_estimate_held({k: v}, history, until, watched_until=final_looks), k)
                          for k, v in stale.items()), reverse=True)[:5]  # fmt: skip
        exported = {
            f"{r['metric'].get('experiment')}|{r['metric'].get('estimator')}": float(r["value"][1])
            for r in self.prom_query(f"max by (experiment, estimator) (max_over_time(pricelab_estimate_age_seconds[{window}]))")
        }  # fmt: skip
        stale_keys = [{"key": k, "held": held_s, "estimates": len(stale[k]),
                       "last_read": max(stale[k]) if stale[k] else None,
                       "max_age_exported": exported.get(k)} for held_s, k in longest]  # fmt: skip
        return {
            "rules_loaded": len(rules),
            "rules_unhealthy": [r["name"] for r in rules if r.get("health") != "ok"],
            "targets_scraped": len(targets),
            "measured": measured,
            "stale_longest": stale_keys,
            "expected": sorted(k for k, v in expected.items() if v),
            "fired": sorted(fired),
            "pending_seen": sorted(pending),
            "problems": checks.alert_problems(expected, fired)
            + (
                [f"Prometheus loaded {len(rules)} rules, alerts.yml has {len(waits)}"]
                if len(rules) != len(waits)
                else []
            ),  # fmt: skip
        }


# ---------------------------------------------------------------------------- helpers
async def measure_capacity(stack: EmbeddedStack, n: int) -> float:
    """Sales per second one controller worker ingests from a backlog (bench_ingest's own
    measure, on this stack, its own topics and keys)."""
    from benchmarks._common import bench_settings, produce, sale_payloads
    from benchmarks.bench_ingest import N_PRODUCTS, worker_rate

    settings = bench_settings(stack)
    await ensure_topics(settings)
    await produce(settings, settings.topics.sales, sale_payloads(n, N_PRODUCTS))
    assert stack.redis is not None and stack.redis.proc is not None
    assert stack.broker is not None and stack.broker.proc is not None
    rate, _, _ = await worker_rate(settings, n, stack.redis.proc.pid, stack.broker.proc.pid)
    return rate


def _not_ready(name: str) -> Callable[[dict[str, tuple[bool, bool]]], bool]:
    return lambda st: not st.get(name, (False, False))[1]


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _redis_pings(port: int, within: float) -> bool:
    """Whether Redis answers PING within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


async def _retry(fn: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return await fn()
        except (OSError, RedisError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _until(
    pred: Callable[[], Any],
    timeout: float,
    what: str,
    missed: list[str] | None = None,
    pending: list[str] | None = None,
) -> bool:
    """Wait until ``pred`` holds; past ``timeout``, raise, or with ``missed`` note ``what``
    there and go on (the checks then say what it left undone). ``pending``: where ``pred``
    says what it still waits for, named in the note."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await pred():
                return True
        except (OSError, RedisError) as exc:
            if pending is not None:  # what it said before failing part-way is not the state
                pending[:] = [f"the last check failed: {type(exc).__name__}"]
        if time.monotonic() > deadline:
            why = f" (waiting for {'; '.join(pending[:5])})" if pending else ""
            if missed is None:
                raise TimeoutError(f"soak: {what} not within {timeout:.0f}s{why}")
            missed.append(f"{what}: not within {timeout:.0f}s{why}")
            print(f"soak: {what} not within {timeout:.0f}s{why}", flush=True)
            return False
        await asyncio.sleep(0.25)


async def _sleep_until(t: float, tasks: list[asyncio.Task[Any]]) -> None:
    while time.monotonic() < t:
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise RuntimeError("a soak task failed") from task.exception()
        await asyncio.sleep(min(0.5, max(0.0, t - time.monotonic())))


def _live_gauges(text: str) -> tuple[float | None, float | None, float]:
    """A worker's live memory from its metrics' text: malloc's bytes in use and freed but
    kept (None when it does not export them), and the interpreter's blocks."""
    blocks = metric_value(text, "pricelab_python_blocks")
    if "pricelab_malloc_bytes{" not in text:
        return None, None, blocks
    return (
        metric_value(text, "pricelab_malloc_bytes", state="in_use"),
        metric_value(text, "pricelab_malloc_bytes", state="free"),
        blocks,
    )


async def _partitions(settings: Settings, topic: str) -> int | None:
    """The topic's partitions as the broker describes it, or None when it has no such topic
    or does not answer within 30 s. Listed first: a metadata request naming a missing topic
    may make the broker create it (auto-creation), which this must not cause."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(admin.start(), 30)
        if topic not in set(await asyncio.wait_for(admin.list_topics(), 30)):
            return None
        described = await asyncio.wait_for(admin.describe_topics([topic]), 30)
        ok = [d for d in described if d.get("topic") == topic and not d.get("error_code")]
        return len(ok[0]["partitions"]) if ok else None
    except (KafkaError, TimeoutError, OSError):
        return None
    finally:
        await admin.close()


async def _all_counted(store: Store, source: SalesSource, pending: list[str]) -> bool:
    pending.clear()
    for exp, (events, _) in source.sent.items():
        totals = await store.totals(exp)
        counted = sum(v for k, v in totals.items() if k.startswith("events:"))
        if counted < events:
            pending.append(f"{exp}: {counted:,} of {events:,} sales counted")
    if source.held:
        pending.append(f"{len(source.held)} sales held back to send")
    return not pending


async def _all_prices_applied(
    store: Store, sources: list[CompetitorSource], pending: list[str]
) -> bool:
    """:func:`_prices_applied` for every source (every generation of the triggered slot)."""
    told: list[str] = []
    for prices in sources:
        if not await _prices_applied(store, prices, pending):
            told += pending
    pending[:] = told
    return not told


async def _prices_applied(store: Store, prices: CompetitorSource, pending: list[str]) -> bool:
    """Every competitor price sent is in the trigger state: each product it named has fired,
    or its state's last event is the last one sent for it."""
    pending.clear()
    if prices.held:
        pending.append(f"{len(prices.held)} competitor prices held back to send")
        return False
    if not prices.last_stamp:
        return True
    _, state = await store.trigger_state(prices.spec.id)
    if state is None:
        pending.append("no trigger state in Redis")
        return False
    for product, stamp in prices.last_stamp.items():
        if product in state["fired"]:
            continue
        last = (state["products"].get(product) or {}).get("last_at")
        if last is None or datetime.fromisoformat(last) < stamp:
            pending.append(f"{product}: last applied {last}, last sent {stamp.isoformat()}")
    return not pending


def due_periods(spec: ExperimentSpec, sim: datetime) -> list[int]:
    """The periods of ``spec`` whose boundary the clock passed by ``sim`` (none empty)."""
    k_now = min(period_index(spec, sim), last_period(spec))
    return [k for k in range(k_now + 1) if not is_empty(spec, k)]


async def _flips_read(
    store: Store,
    reader: TopicReader,
    specs: list[ExperimentSpec],
    pending: list[str],
    sim: datetime,
) -> bool:
    """Every experiment flipped the period the clock is in at ``sim``, and the reader read
    that flip's assignments (a boundary the clock crossed just before it stopped is flipped
    by a controller's next tick: until then Redis names the period before)."""
    pending.clear()
    seen = reader.flipped()
    for s in specs:
        due = due_periods(s, sim)
        if not due:  # created, not begun: nothing to read
            continue
        st = await store.get_experiment(s.id)
        if st.flipped_period < due[-1]:
            pending.append(f"{s.id}: period {due[-1]} not flipped yet (Redis: {st.flipped_period})")
            continue
        if not st.published_through(st.flipped_period):
            pending.append(f"{s.id}: period {st.flipped_period} not published through")
            continue
        got = seen.get(s.id, {}).get(st.flipped_period, 0)
        if got < len(s.all_products()):
            pending.append(f"{s.id}: {got} of {len(s.all_products())} assignments of period "
                           f"{st.flipped_period} read")  # fmt: skip
    return not pending


async def _lag_zero(slots: list[Slot], settings: Settings, pending: list[str]) -> bool:
    pending.clear()
    for s in slots:
        if s.role != "controller":
            continue
        text = await asyncio.get_running_loop().run_in_executor(None, s.worker.metrics)
        lag = metric_value(text, "pricelab_consumer_lag", topic=settings.topics.sales)
        if lag > 0:
            pending.append(f"{s.name}: sales lag {lag:,.0f}")
    return not pending


async def _estimated_since(
    reader: TopicReader, began: float, t: float, over: Collection[str] = ()
) -> bool:
    """Every experiment estimated before ``began`` has an estimate received since ``t``, but
    those ``over`` (ended by ``t``: not looked at again)."""
    with reader.lock:
        return all(any(x >= t for x in v) for e, v in reader.estimates.items()
                   if min(v) < began and e not in over)  # fmt: skip


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a supervisor, ``timeout``, ``kill``) ends the soak as Ctrl-C does: through
    :func:`run_soak`'s ``finally``, which stops the broker, Redis, the workers and Prometheus it
    started (without it they outlived the soak)."""
    raise Terminated


class Terminated(KeyboardInterrupt):
    """The soak was sent SIGTERM (exit status 143, against Ctrl-C's 130)."""


def run_soak(cfg: SoakConfig) -> dict[str, Any]:
    soak = Soak(cfg)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return asyncio.run(soak.run())
    finally:
        # a second signal while stopping would leave the rest behind: stopping is not
        # interrupted (stop_all's own waits are bounded)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        soak.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pricelab-soak"))
    ap.add_argument("--speed", type=float, default=2016.0, help="simulated s per wall s")
    ap.add_argument(
        "--rate", type=float, help="sales/s (default: a share of the measured capacity)"
    )
    ap.add_argument("--capacity-share", type=float, default=0.5)
    ap.add_argument("--max-rate", type=float, help="a cap on the sales rate (default: none)")
    ap.add_argument("--fault-every", type=float, default=180.0, help="seconds between faults")
    ap.add_argument("--pause", type=float, default=20.0, help="seconds Redis stays stopped")
    ap.add_argument("--shards", type=int, default=2, help="the shard topic's partitions (0: off)")
    ap.add_argument("--chunk-products", type=int, default=8, help="products of a chunk")
    ap.add_argument("--trace-memory", action="store_true",
                    help="write what each worker's memory is made of into "
                    "OUT/memtrace-<slot>.jsonl every 10 s (benchmarks/memtrace)")  # fmt: skip
    ap.add_argument("--experiment-days", type=int, default=12,
                    help="simulated days of each experiment (slot i's: this + i %% 3); at its "
                    "end a successor takes over its products (0: one experiment per slot, as "
                    "long as the run)")  # fmt: skip
    ap.add_argument("--rss-warmup", type=float,
                    help="minutes of each worker process left out before its RSS is "
                    "judged (default: as long as the clock took to pass the end of the longest "
                    "slot's first experiment: one generation)")  # fmt: skip
    ap.add_argument(
        "--controller-rss-warmup",
        type=float,
        help="the same for each controller process (default: as --rss-warmup; with "
        "--experiment-days 0, its first 30 s)",
    )
    ap.add_argument("--save", action="store_true", help=f"write {FIGURE.relative_to(ROOT)}")
    ap.add_argument("--render", action="store_true", help="docs/operations.md from the saved JSON")
    args = ap.parse_args()
    if args.shards < 0 or args.chunk_products < 1:
        ap.error("--shards must be 0 or more and --chunk-products 1 or more")
    if args.experiment_days < 0 or any(
        w is not None and w < 0 for w in (args.rss_warmup, args.controller_rss_warmup)
    ):
        ap.error("--experiment-days, --rss-warmup and --controller-rss-warmup must be 0 or more")
    if args.render:
        render_into(ROOT / "docs" / "operations.md", json.loads(FIGURE.read_text()))
        return
    cfg = SoakConfig(minutes=args.minutes, seed=args.seed, out=args.out, speed=args.speed,
                     rate=args.rate, capacity_share=args.capacity_share, max_rate=args.max_rate,
                     fault_every=args.fault_every, pause=args.pause, shards=args.shards,
                     chunk_products=args.chunk_products, trace_memory=args.trace_memory,
                     experiment_days=args.experiment_days, rss_warmup=args.rss_warmup,
                     controller_rss_warmup=args.controller_rss_warmup)  # fmt: skip
    try:
        report = run_soak(cfg)
    except KeyboardInterrupt as stopped:  # Ctrl-C or SIGTERM: what it started is stopped
        print("soak: stopped before its end; every process it started is stopped", file=sys.stderr)
        raise SystemExit(143 if isinstance(stopped, Terminated) else 130) from None
    text = json.dumps(report, indent=1, default=str)
    (args.out / "soak.json").write_text(text)
    if args.save:
        FIGURE.write_text(text)
    print(json.dumps({"passed": report["passed"], "problems": report["problems"],
                      "rss": report["rss"], "alerts": report["alerts"]}, indent=1, default=str))  # fmt: skip
    raise SystemExit(0 if all(report["passed"].values()) else 1)


if __name__ == "__main__":
    main()
