"""The faust app: agents and timers, thin by design (decode -> controller/analysis -> publish).

Roles, which can share one process or run apart:

- ``controller``: commands, competitor prices, the sales path, and the period-flip timer;
- ``analysis``: the periodic analysis worker.

State lives in Redis, never in faust Tables (the embedded broker's end_offsets bug would
lose changelog data; see docs/broker.md). Offsets are acknowledged only after a batch is in
Redis; a redelivered sale is deduplicated by its event id.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import cast

import faust
import mode

from controller.settings import Settings
from controller.store.base import UNAVAILABLE, answers_as_primary
from streams.worker.consumer import BatchConsumer
from streams.worker.handlers import (
    Event,
    OutageTolerated,
    RawEvent,
    with_redis_retry,
)
from streams.worker.kafka import consumer_lag
from streams.worker.logging import worker_logging_config
from streams.worker.memory import controller_malloc_at_start, trim_for
from streams.worker.metrics import Metrics
from streams.worker.readiness import Readiness
from streams.worker.runtime import Runtime
from streams.worker.shards import aligned_ticks

log = logging.getLogger("pricelab.app")


def faust_credentials(settings: Settings) -> object | None:
    k = settings.kafka
    if k.sasl_mechanism:
        ssl_ctx = cast("ssl.SSLContext | None", k.client_kwargs().get("ssl_context"))
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism,
            ssl_context=ssl_ctx,
        )
    if k.security_protocol == "SSL":
        return faust.SSLCredentials(cast("ssl.SSLContext", k.client_kwargs()["ssl_context"]))
    return None


def group_ids(settings: Settings, roles: Iterable[str]) -> dict[str, str]:
    """The consumer groups of a worker with these roles: faust's own (commands, and the app's
    id) and the batch consumers of sales and competitor prices. Replicas share them."""
    app_id = f"{settings.app_id}-" + "-".join(sorted(roles))
    return {"app": app_id, "sales": f"{app_id}-sales", "competitor": f"{app_id}-competitor"}


#: the longest wait between two tries of a command while Redis does not answer (seconds)
COMMAND_RETRY_MAX = 5.0


async def _handle_command(rt: Runtime, event: faust.EventT) -> None:
    """Handle one command; while Redis does not answer (a restart, a failover), try it again
    with backoff, as the sales path does, rather than let the error crash the agent: a
    crashed command agent left its partitions' commands with no reply until the worker was
    restarted (the model-based contract test found it: kill -9 of Redis, then a command). A
    try cut short is taken again whole: the controller's commands are safe to repeat."""
    delay = 0.1
    while True:
        try:
            await rt.commands.handle(_raw(event))
            return
        except UNAVAILABLE as exc:
            rt.metrics.redis_retries.labels("commands").inc()
            log.warning("redis unavailable while handling a command (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, COMMAND_RETRY_MAX)


def build_app(
    settings: Settings, roles: set[str], metrics: Metrics | None = None
) -> tuple[faust.App, Runtime]:
    groups = group_ids(settings, roles)
    app_id = groups["app"]
    app = faust.App(
        app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        # tables live in memory (state is in Redis); faust still makes its data directory, so
        # keep it out of the working directory
        # (faust makes it without its parents: it must sit directly in an existing directory)
        datadir=str(Path(tempfile.gettempdir()) / "pricelab-faust-{conf.name}-data"),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_rebalance_timeout=10,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        logging_config=None,
    )
    rt = Runtime(settings, metrics, roles)
    t = settings.topics
    consumers = rt.consumers
    readiness = Readiness(grace=settings.ready_group_grace.total_seconds())

    async def check_ready() -> tuple[bool, dict[str, object]]:
        """Redis answers, the clock is set, every consumer group holds its assignment."""
        detail: dict[str, object] = {"groups": readiness.describe()}
        try:
            await rt.ensure_started()
            await rt.redis.ping()
            # a demoted primary answers PING and reads, and refuses writes
            primary = await answers_as_primary(rt.redis)
            clock_ok = await rt.clock_ready()
        except Exception as exc:  # readiness reports, never raises
            detail["error"] = type(exc).__name__
            ok = False
        else:
            unready = readiness.unready_groups()
            ok = primary and clock_ok and not unready
            detail |= {"clock": clock_ok, "unassigned": unready}
            if not primary:
                detail["redis"] = (
                    "answers as a replica: a failover demoted it, or the URL names a replica "
                    "(docs/operations.md, Shutdown and restarts)"
                )
        rt.metrics.ready.set(1 if ok else 0)
        for group, m in readiness.groups.items():
            rt.metrics.group_assigned.labels(group).set(1 if m.assigned else 0)
        return ok, detail

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _drain(app: faust.App, **kwargs: object) -> None:
        for c in consumers:  # in-flight batches finish and commit while Redis is still open
            await c.stop()
        await rt.stop()

    @app.page("/health")  # type: ignore[arg-type]
    async def health(web: object, request: object) -> object:
        return app.web.json({"status": "ok", "roles": sorted(roles)})  # type: ignore[attr-defined]

    @app.page("/ready")  # type: ignore[arg-type]
    async def ready(web: object, request: object) -> object:
        ok, detail = await check_ready()
        return app.web.json({"ready": ok} | detail, status=200 if ok else 503)  # type: ignore[attr-defined]

    @app.timer(interval=5.0, name="readiness")
    async def readiness_timer() -> None:
        await check_ready()  # keeps pricelab_ready current for the alert

    trim = trim_for(roles)  # a controller gives freed heap pages back; analysis keeps them

    @app.timer(interval=FULL_GC_INTERVAL, name="full-gc")
    async def full_gc_timer() -> None:
        rt.metrics.gc_full_seconds.observe(collect_cycles(trim))

    if "controller" in roles:
        cmd_topic = app.topic(t.commands, value_type=bytes, value_serializer="raw")
        faust_group = readiness.track(app_id)

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(app: faust.App, assigned: object, **kwargs: object) -> None:
            faust_group.on_assigned()

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(app: faust.App, revoked: object, **kwargs: object) -> None:
            faust_group.on_revoked()

        # sales bypass faust's per-event stream machinery: a plain aiokafka consumer hands whole
        # fetched batches to the handler and commits after the Redis write (streams/worker/consumer.py)
        async def _sales_batch(batch: list[Event]) -> None:
            while not await with_redis_retry(
                rt.clock_ready, "clock", on_retry=rt.sales.note_redis_retry
            ):
                await asyncio.sleep(0.1)
            await rt.sales.handle(batch)

        sales_consumer = BatchConsumer(
            settings,
            t.sales,
            groups["sales"],
            _sales_batch,
            batch_size=settings.sales_batch_size,
            within=settings.sales_batch_within,
            membership=readiness.track(groups["sales"]),
        )
        consumers.append(sales_consumer)
        # a dependency of the app, not an app.task: it joins its group while faust joins its
        # own, instead of after faust has started (each join takes ~5 s on Tansu)
        app.add_dependency(_ConsumerService(rt, sales_consumer))

        # competitor prices too: with faust's agent ~70% of the worker's samples were faust and
        # aiokafka machinery and trigger latency was queueing (p99 ~5 s at 1,000 events/s).
        # depth=2: trigger state is order-sensitive (a product's first trigger wins), so the
        # runner applies batches one at a time in fetch order, but a batch's publish overlaps
        # the next batch's turn (offsets are still committed in fetch order, after both)
        async def _competitor_batch(batch: list[Event]) -> None:
            await rt.competitor.handle(batch)  # rt.competitor exists once the runtime started

        comp_consumer = BatchConsumer(
            settings,
            t.competitor_prices,
            groups["competitor"],
            _competitor_batch,
            batch_size=500,
            within=settings.competitor_batch_within,
            depth=2,
            on_commit=lambda seconds: rt.metrics.trigger_stage("commit", seconds),
            membership=readiness.track(groups["competitor"]),
        )
        consumers.append(comp_consumer)
        app.add_dependency(_ConsumerService(rt, comp_consumer))

        @app.timer(interval=5.0, name="consumer-lag")
        async def lag_timer() -> None:
            lag = consumer_lag(app.consumer, [t.commands])
            lag[t.sales] = sales_consumer.lag()
            lag[t.competitor_prices] = comp_consumer.lag()
            rt.metrics.lag(lag)

        @app.agent(cmd_topic, name="commands")
        async def command_agent(stream: faust.StreamT) -> None:
            await rt.ensure_started()
            async for event in stream.events():
                await _handle_command(rt, event)
                # its offset committed now, not at faust's next commit (every 2.8 s): a
                # worker killed in between had the command handled again by the next owner
                # of its partition, and the operator got two replies (the model-based
                # contract test found it). A kill between the reply and this commit still
                # repeats it: delivery is at least once, and a reader keeps the first reply
                event.ack()
                await app.consumer.commit()

        async def _flip() -> None:
            await rt.triggers.advance()
            await rt.flipper.tick()

        @app.timer(interval=settings.tick_interval, name="period-flip")
        async def flip_timer() -> None:
            await _timer_step(rt, settings, "period flip", "controller", _flip)

    if "analysis" in roles and settings.analysis.shards > 0:
        # the workers of the group look in rounds that start together (their parts meet)

        @app.task
        async def analysis_rounds() -> None:
            async for tick in aligned_ticks(settings.analysis_interval):
                # rt.analysis exists once the runtime has started (inside the step)
                step = functools.partial(_run_round, rt, tick)
                await _timer_step(rt, settings, "analysis", "analysis", step)

    elif "analysis" in roles:

        @app.timer(interval=settings.analysis_interval, name="analysis")
        async def analysis_timer() -> None:
            await _timer_step(rt, settings, "analysis", "analysis", lambda: rt.analysis.run_once())

    return app, rt


class _ConsumerService(mode.Service):
    """Starts a :class:`BatchConsumer` with the app; stops it (batch finished) with the app."""

    def __init__(self, rt: Runtime, consumer: BatchConsumer) -> None:
        super().__init__()
        self.rt = rt
        self.consumer = consumer

    async def on_start(self) -> None:
        await self.rt.ensure_started()
        await self.consumer.start()

    async def on_stop(self) -> None:
        await self.consumer.stop()


async def _timer_step(
    rt: Runtime, settings: Settings, what: str, role: str, step: Callable[[], Awaitable[object]]
) -> None:
    """A timer's body: once the runtime has started and the clock is ready, ``step``; a Redis
    outage, or the broker failing a request, skips the tick (:class:`OutageTolerated`, naming
    the role's Redis user when Redis refuses a permission)."""
    await rt.ensure_started()
    user = settings.redis.username
    async with OutageTolerated(what, rt.metrics, role=role, user=user):
        if await rt.clock_ready():
            await step()


async def _run_round(rt: Runtime, tick: int) -> None:
    await rt.analysis.run_once(tick)


def _raw(event: faust.EventT) -> RawEvent:
    msg = event.message
    return RawEvent(value=event.value, partition=msg.partition, offset=msg.offset)


#: wall seconds between full collections of cyclic garbage (:func:`collect_cycles`)
FULL_GC_INTERVAL = 60.0


def tune_gc() -> None:
    """Fewer, cheaper cyclic garbage collections for a worker that allocates per event.

    A sales batch allocates ~10,000 GC-tracked objects that stay alive until the batch is
    done, so with the default thresholds (700, 10, 10) the collector runs ~14 times per batch
    and keeps promoting the batch into older generations, whose collections also walk
    everything faust and the imports allocated. Measured on the sales handler: ~12 -> ~9 µs
    of client CPU per sale, the same as with the collector off. Objects that exist at start
    are frozen (never walked again); the young generations are collected every 50,000
    allocations, the oldest at most once in 100 million (and only once the objects that
    reached it since its last collection exceed a quarter of those it holds), and every
    ``FULL_GC_INTERVAL`` seconds by :func:`collect_cycles`.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def collect_cycles(trim: Callable[[], object] | None = None) -> float:
    """One full collection, then ``trim`` (malloc's freed pages given back, if given); its
    seconds (the event loop waits for it).

    With the thresholds of :func:`tune_gc` the oldest generation is collected at most once
    in 100 million allocations, and cyclic garbage that lived long enough to reach it stayed
    until then: every closed connection's asyncio transport (a transport refers to its own bound
    methods), one per /ready probe, and exceptions with their tracebacks, whose frames hold
    the batch they were handling. In the soak a controller's interpreter blocks grew ~200 a
    second for minutes; one probed 1,424 times held 1,179 closed transports, 9 after a full
    collection (benchmarks/memtrace). Cycles that hold a consumed batch matter most: until
    2026-11-29 every batch with a malformed event was one (the handler kept the raised
    DecodeError, whose traceback holds the handler's frame; ``core.errors.kept``), up to
    16,000 records at a time waiting here (``PRICELAB_MEMTRACE_GARBAGE``).
    """
    t = time.perf_counter()
    gc.collect()
    if trim is not None:
        trim()
    return time.perf_counter() - t


def faust_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """The faust worker that runs ``app``, logging JSON lines at ``settings.log_level``.

    Without its terminal spinner: at WARNING and above faust's worker sets the root logger to
    DEBUG so that the spinner turns on every record, and every library's debug calls then
    built a record (aiokafka's, per fetch and commit: ~3% of a worker's time ingesting).
    """
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        logging_config=worker_logging_config(settings),  # JSON lines, secrets scrubbed
    )
    worker.spinner = None
    return worker


async def preflight(settings: Settings, roles: Iterable[str] = ()) -> None:
    """Wait (up to ``settings.start_timeout``) until the broker and Redis answer; else raise
    :class:`streams.errors.ServiceUnavailable` naming the one that does not and the setting
    to fix (a worker then exits 2 with that one line, instead of faust's traceback). Then
    check that Redis lets the user run every read the ``roles`` need (a missing one raises
    :class:`streams.errors.PermissionDenied` naming it and the role, exit 2). A controller
    then records the clock it runs on, which the CLI follows (streams.client.stack_clock)."""
    from aiokafka import AIOKafkaClient

    from controller.store import make_redis
    from controller.store.acl import missing_permission
    from controller.store.clock import record_clock_mode
    from controller.store.keys import clock_mode as clock_mode_key
    from streams.errors import (
        PermissionDenied,
        ServiceUnavailable,
        permission_sentence,
        services_answer,
    )
    from streams.net.probe import redis_address, sentinels_named

    roles = tuple(sorted(roles))

    loop = asyncio.get_running_loop()
    timeout = settings.start_timeout.total_seconds()
    deadline = loop.time() + timeout

    async def answers(probe, what: str, **where: str) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                async with services_answer(
                    bootstrap_servers=where.get("bootstrap_servers"),
                    redis_url=where.get("redis_url"),
                    acl=(settings, roles),
                ):
                    await asyncio.wait_for(probe(), max(0.1, deadline - loop.time()))
                return
            except (ServiceUnavailable, TimeoutError) as exc:
                if loop.time() < deadline:
                    await asyncio.sleep(0.5)  # a service starting up beside us: ask again
                    continue
                if isinstance(exc, ServiceUnavailable):
                    raise
                raise ServiceUnavailable(f"{what} did not answer within {timeout:g} s") from None

    async def kafka() -> None:
        client = AIOKafkaClient(**settings.kafka.client_kwargs())  # type: ignore[arg-type]
        try:
            await client.bootstrap()
        finally:
            await client.close()

    async def redis() -> None:
        r = make_redis(settings)
        try:
            await r.ping()
            for role in roles:
                missing = await missing_permission(r, role, settings.key_prefix)
                if missing is not None:
                    user = settings.redis.username
                    raise PermissionDenied(permission_sentence(role, user, missing, ""))
            if "controller" in roles:  # the stack's clock, which the CLI follows
                await record_clock_mode(r, clock_mode_key(settings.key_prefix), settings.clock)
        finally:
            await r.aclose()

    servers = settings.kafka.bootstrap_servers
    url = settings.redis.url.get_secret_value()
    await answers(
        kafka,
        f"the Kafka broker at {servers} (PRICELAB_KAFKA__BOOTSTRAP_SERVERS)",
        bootstrap_servers=servers,
    )
    sentinels = sentinels_named(settings)
    where = (
        f"Redis, {sentinels} (PRICELAB_REDIS__SENTINELS),"
        if sentinels
        else f"Redis at {redis_address(url)} (PRICELAB_REDIS__URL)"
    )
    await answers(redis, where, redis_url=url)


def run_worker(settings: Settings, roles: set[str]) -> None:
    """Run a faust worker for the given roles until SIGINT/SIGTERM (graceful shutdown). A
    broker or Redis that does not answer at start raises ServiceUnavailable first."""
    controller_malloc_at_start(roles, os.environ)  # started by hand: a controller's malloc
    asyncio.run(preflight(settings, roles))
    app, rt = build_app(settings, roles)
    tune_gc()
    rt.metrics.serve(settings.metrics_host, settings.metrics_port)
    faust_worker(app, settings).execute_from_commandline()
