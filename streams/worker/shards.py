"""Which shards of one experiment's chunks this analysis worker computes: the partitions of a
shard topic assigned to it by Kafka's consumer-group coordination (issue #42,
``analysis.sharded``).

The analysis workers of a deployment join one consumer group (``<app_id>-analysis-shards``)
on one topic (``<app_id>.analysis-shards``, ``PRICELAB_ANALYSIS__SHARDS`` partitions, created
when missing; after a restart of a broker that keeps topics in memory, made again by the
members or by the broker itself at their metadata request, with its default count, which the
members then use). No message is ever written to it: the group's assignment of its partitions is
the only thing used. A worker that joins, leaves or dies (its session times out: 10 s) makes
the group rebalance and the broker's assignor hands its shards to the others; a worker beyond
the partitions' count owns none and waits as a standby.

The workers look in rounds (:func:`aligned_ticks`): round n starts at n times the analysis
interval on the wall clock, on every worker at once, and names the parts of its looks, so that
the worker that merges a look waits only for the others' reads of the same round and never
merges a part read a round earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from controller.settings import Settings

log = logging.getLogger("pricelab.worker.shards")


def shard_topic(settings: Settings) -> str:
    return f"{settings.app_id}.analysis-shards"


def shard_group(settings: Settings) -> str:
    return f"{settings.app_id}-analysis-shards"


async def aligned_ticks(
    interval: float,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[int]:
    """The rounds of looks of a group's analysis workers: round n starts when the wall clock
    (``wall``, UNIX seconds) reaches ``n * interval``, the same instant on every worker whose
    clock is set by NTP, whenever each started. Yields n at its start. A round whose looks ran
    past the next start skips the rounds it missed; a round never comes twice."""
    if not interval > 0:
        raise ValueError(f"the analysis interval must be above 0 s, not {interval}")
    last: int | None = None
    while True:
        now = wall()
        n = math.floor(now / interval) + 1
        if last is not None:
            n = max(n, last + 1)
        await sleep(max(0.0, n * interval - now))
        last = n
        yield n


class KafkaShardMembership:
    """This worker's shards (``core.ports.ShardOwnership``), as its consumer group assigns them."""

    def __init__(self, settings: Settings, partitions: int | None = None) -> None:
        self.settings = settings
        self.topic = shard_topic(settings)
        self.group = shard_group(settings)
        self._partitions = partitions or settings.analysis.shards
        self._owned: frozenset[int] | None = None
        self._generation = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._topic_gone = False

    @property
    def partitions(self) -> int:
        return self._partitions

    def owned(self) -> frozenset[int] | None:
        return self._owned

    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        """Join the group in the background (retrying while the broker is away)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="analysis shards")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()  # leaves the group: the others rebalance at once
            self._consumer = None
        self._owned = None

    async def _ensure_topic(self) -> None:
        kafka = self.settings.kafka
        admin = AIOKafkaAdminClient(**kafka.client_kwargs())  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(admin.start(), 30)
            if self.topic not in set(await admin.list_topics()):
                topic = NewTopic(self.topic, self._partitions, kafka.replication_factor)
                with contextlib.suppress(TopicAlreadyExistsError):
                    await asyncio.wait_for(admin.create_topics([topic]), 30)
        finally:
            await admin.close()

    async def _run(self) -> None:
        delay = 0.5
        while self._consumer is None:
            try:
                await self._ensure_topic()
                consumer = AIOKafkaConsumer(
                    **self.settings.kafka.client_kwargs(),  # type: ignore[arg-type]
                    group_id=self.group,
                    enable_auto_commit=False,
                    session_timeout_ms=10_000,
                    rebalance_timeout_ms=10_000,
                    heartbeat_interval_ms=1_000,
                    # a recreated topic is seen within seconds, not the default 5 minutes
                    metadata_max_age_ms=5_000,
                )
                await consumer.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("cannot join the analysis shards' group (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            self._consumer = consumer
            consumer.subscribe([self.topic], listener=_Listener(self))
        while True:  # polls keep the member alive and let rebalances complete
            try:
                if self._topic_gone:
                    # a broker that keeps topics in memory restarted without it, and
                    # pricelab's ensure_topics does not know it (the broker may also make it
                    # by itself: TopicAlreadyExists is then ignored)
                    await self._ensure_topic()
                    self._topic_gone = False
                    log.warning("the analysis shards' topic was gone; created it again")
                await self._consumer.getmany(timeout_ms=1_000)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("analysis shards' group: %s", exc)
                await asyncio.sleep(1.0)

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        known = consumer.partitions_for_topic(self.topic) if consumer is not None else None
        if known:
            # the topic's own count: a broker that lost the topic may have made it again by
            # itself (aiokafka's metadata requests allow it) with its default count. Each
            # member reads its own cached metadata (refreshed every 5 s): just after the topic
            # is made again, one may still map chunks by the old count, and for a round an
            # experiment may be merged by two workers or by none
            self._partitions = len(known)
        else:
            self._topic_gone = True
        self._owned = frozenset(tp.partition for tp in assigned if tp.topic == self.topic)
        self._generation += 1
        log.info("analysis shards owned: %s of %d", sorted(self._owned), self._partitions)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: KafkaShardMembership) -> None:
        self.membership = membership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.membership._owned = None
        self.membership._generation += 1

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.membership._assigned(assigned)
