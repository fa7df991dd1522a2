"""Builds one process's objects from settings: clients, store, controller, handlers, sinks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from controller.clock import Clock, WallClock
from controller.flipper import Flipper
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from controller.trigger_runner import TriggerRunner
from streams.worker.control import CommandHandler, CompetitorHandler
from streams.worker.handlers import SalesHandler
from streams.worker.kafka import JsonPublisher
from streams.worker.metrics import Metrics
from streams.worker.sinks import (
    DeadLetterSink,
    KafkaAssignmentSink,
    KafkaEstimateSink,
    KafkaGuardrailSink,
)

if TYPE_CHECKING:
    from analysis.worker import AnalysisWorker
    from streams.worker.consumer import BatchConsumer
    from streams.worker.shards import KafkaShardMembership

log = logging.getLogger("pricelab.runtime")

#: the topics (``TopicSettings`` fields) each worker role writes: the controller its
#: assignments, command replies, audit events and dead letters; the analysis worker its
#: estimates and, when a guardrail trips, a stop command and its event. A role's publisher
#: refuses any other topic, and its Kafka ACLs are generated from these
#: (``pricelab acl --kafka``, streams/cli/kafka_acl.py)
WRITES: dict[str, tuple[str, ...]] = {
    "controller": ("assignments", "command_replies", "experiment_events", "dead_letter"),
    "analysis": ("estimates", "commands", "experiment_events"),
}


def make_clock(settings: Settings, store: Store) -> Clock:
    if settings.clock == "simulated":
        return SharedSimulatedClock(store.redis, clock_key(settings.key_prefix))
    return WallClock()


class Runtime:
    """Everything one worker needs, created inside its event loop and started once."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        roles: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        #: the worker roles it serves (None: both); its publisher writes only their topics
        self.roles = frozenset(WRITES if roles is None else roles)
        #: the batch consumers the worker's app runs (streams/worker/app.py), with their topics
        self.consumers: list[BatchConsumer] = []
        self.metrics = metrics or Metrics(now=lambda: self.clock.now())
        self._started = False
        self._lock: asyncio.Lock | None = None

    def _build(self) -> None:
        """Create clients and components; must run inside the worker's event loop."""
        settings = self.settings
        self.redis = make_redis(settings)
        self.store = Store(self.redis, settings.key_prefix)
        self.clock = make_clock(settings, self.store)
        t = settings.topics
        # control-plane messages go out at once; batching happens while a request is in flight
        writes = {getattr(t, name) for role in self.roles for name in WRITES[role]}
        self.publisher = JsonPublisher(settings, linger_ms=0, topics=writes)
        self.dlq = DeadLetterSink(self.publisher, settings, self.metrics)
        self.assignment_sink = KafkaAssignmentSink(self.publisher, settings, self.metrics)
        self.flipper = Flipper(self.store, self.assignment_sink, self.clock, settings, self.metrics)
        self.ingestor = SalesIngestor(self.store, self.clock, settings)
        self.sales = SalesHandler(self.ingestor, self.dlq, self.metrics, self.clock, t.sales)
        self.triggers = TriggerRunner(
            self.store,
            self.assignment_sink,
            self.clock,
            settings.trigger_watermark_lag,
            observer=self.metrics,
            lease_ms=int(settings.flip_lease.total_seconds() * 1000),
            replicas=self.flipper,
        )
        held = self.metrics.experiments_held  # read at each scrape, never on a hot path
        held.labels("store").set_function(lambda: self.store.specs_held)
        held.labels("routing").set_function(lambda: self.ingestor.routes.experiments)
        held.labels("triggers").set_function(lambda: len(self.triggers._specs))
        self.competitor = CompetitorHandler(
            self.dlq, self.metrics, self.clock, t.competitor_prices, self.triggers.on_prices
        )
        self.commands = CommandHandler(
            self.flipper,
            self.publisher,
            self.dlq,
            self.metrics,
            self.clock,
            t.commands,
            t.command_replies,
            settings.max_command_bytes,
            events_topic=t.experiment_events,
            actors=settings.actors,
        )
        self.estimate_sink = KafkaEstimateSink(self.publisher, settings)
        self.shards: KafkaShardMembership | None = None
        if settings.analysis.shards and "analysis" in self.roles:
            from streams.worker.shards import KafkaShardMembership

            self.shards = KafkaShardMembership(settings)
        self._analysis: AnalysisWorker | None = None
        if "analysis" not in self.roles:
            return
        # the analysis tools (scipy, the estimators) are imported by the role that uses them:
        # a controller worker starts without them (about 1.3 s of CPU less at each start)
        from analysis.chunked import Chunking
        from analysis.worker import AnalysisWorker, load_solvers
        from controller.panel_source import (  # pandas: the analysis role's too
            RedisAdaptiveLooks,
            RedisPanelSource,
            RedisPartialStore,
            RedisSequenceTuning,
        )

        load_solvers()  # before the first look (~0.5 s)
        self._analysis = AnalysisWorker(
            RedisPanelSource(self.store, self.clock, settings.allowed_lateness),
            self.estimate_sink,
            self.clock,
            self.metrics,
            guardrails=KafkaGuardrailSink(self.publisher, settings, self.clock.now),
            verdicts=self.estimate_sink,
            demand=self.estimate_sink,
            adaptive=self.estimate_sink,
            looks=RedisAdaptiveLooks(self.store),
            tuning=RedisSequenceTuning(self.store),
            chunking=Chunking(
                settings.analysis.chunked_above,
                settings.analysis.chunk_products,
                settings.analysis.sample_products,
            ),
            shards=self.shards,
            partials=RedisPartialStore(self.store) if self.shards is not None else None,
            shard_wait=settings.analysis.shard_wait_s,
        )

    @property
    def analysis(self) -> AnalysisWorker:
        """The analysis worker, on a runtime that serves the analysis role."""
        if self._analysis is None:
            raise RuntimeError(f"this worker serves {sorted(self.roles)}, not the analysis role")
        return self._analysis

    async def ensure_started(self) -> Runtime:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                self._build()
                await self.publisher.start()
                if self.shards is not None:
                    self.shards.start()
                self._started = True
        return self

    async def clock_ready(self) -> bool:
        """False while a simulated clock has not been set by its driver. Once set it stays
        set, so only the wait for its first setting reads Redis: the sales path asks before
        every batch, and a read then would wait behind the script of the batch in flight."""
        if not isinstance(self.clock, SharedSimulatedClock):
            return True
        if not self.clock.ready:
            await self.clock.sync()
        return self.clock.ready

    async def stop(self) -> None:
        if self._started:
            if self.shards is not None:
                await self.shards.stop()
            await self.publisher.stop()
            await self.redis.aclose()
            self._started = False
