"""A plain aiokafka consumer for the sales topic: whole fetched batches, commits after Redis.

faust moves every event through its stream machinery one at a time (consumer thread ->
conductor -> channel queue -> stream iterator -> ``take_events``), about a dozen coroutine
hops per event before a batch reaches our code; measured, the worker then ingested at ~5% of
a raw consumer's rate (benchmarks/README.md). This consumer hands each ``getmany`` result to
the sales handler as it is, and commits its offsets itself, only after the handler returned,
that is after the batch is in Redis. Two batches are in flight at once (``depth``): while
Redis runs one batch's ingest script, the next is decoded and routed in Python. Offsets are
committed in fetch order, so a committed offset always means that every earlier event of its
partition is in Redis, whichever batch finished first. Batches are independent in Redis
(sums, and a dedupe marker set atomically per event), so their order there does not matter.

- a handler that raises (a bug; Redis outages are retried inside it) makes the process exit
  with :data:`~streams.worker.handlers.EXIT_UNSAFE_TO_ACK`, nothing committed;
- a rebalance waits for the batches in flight and their commits before the partitions are
  given up (``on_partitions_revoked``); records fetched for a partition lost meanwhile are
  dropped unhandled (the new owner reads them from the committed offset);
- ``stop()`` (graceful shutdown) finishes the batches in flight, commits them and leaves the
  group; batches that cannot finish within the grace period (Redis down) make the process
  exit with ``EXIT_UNSAFE_TO_ACK``, as the faust agents do;
- a failed commit (the group rebalanced under us) is logged and ignored: the events are in
  Redis, a redelivery is deduplicated by event id.

It uses its own consumer group (``<app id>-sales``), apart from faust's, whose partition
assignor expects every member to be a faust worker. Group timings are those of the faust
app (see docs/broker.md: Tansu's group joins are slow with the client defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from controller.settings import Settings
from streams.worker.handlers import EXIT_UNSAFE_TO_ACK, Event, exit_on_permission, hard_exit
from streams.worker.readiness import GroupMembership

log = logging.getLogger("pricelab.consumer")

BatchHandler = Callable[[list[Event]], Awaitable[object]]


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        if self.owner.membership is not None:
            self.owner.membership.on_revoked()
        # the batches in flight finish and commit before the group moves the partitions
        consumer = self.owner.consumer
        if consumer is not None:
            await self.owner._drain(consumer)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        if self.owner.membership is not None:
            self.owner.membership.on_assigned()


class BatchConsumer:
    """Consume ``topic`` in batches of up to ``batch_size`` with ``handle``; commit after it."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        handle: BatchHandler,
        *,
        batch_size: int,
        within: float,
        depth: int = 2,
        grace: float = 10.0,
        exit: Callable[[int], None] = hard_exit,
        on_commit: Callable[[float], None] | None = None,
        membership: GroupMembership | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.handle = handle
        self.batch_size = batch_size
        self.within_ms = max(1, int(within * 1000))
        self.grace = grace
        self._exit = exit
        #: called with each offset commit's duration in seconds (a metric)
        self._on_commit = on_commit
        #: told when the group assigns or revokes this member's partitions (readiness)
        self.membership = membership
        self.depth = depth
        self._order = asyncio.Lock()
        self._inflight: deque[tuple[asyncio.Future[object], dict[TopicPartition, int]]] = deque()
        self._fetching = False
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        #: next offset to read, per partition, as committed by this consumer
        self.committed: dict[TopicPartition, int] = {}

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        return self._consumer

    async def start(self) -> None:
        """Connect (retrying while the broker is away), subscribe, and start consuming."""
        delay = 0.5
        while not self._stopping:
            consumer = AIOKafkaConsumer(
                **self.settings.kafka.client_kwargs(),  # type: ignore[arg-type]
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.batch_size,
                max_partition_fetch_bytes=self.settings.sales_fetch_partition_bytes,
                # the batch window: Tansu answers a fetch some time after data arrives, not at
                # once (docs/broker.md), so up to this wait adds to an event's latency
                fetch_max_wait_ms=self.within_ms,
                session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000,
                heartbeat_interval_ms=1_000,
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                log.warning("cannot reach the broker for %s (%s); retrying", self.topic, exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            self._consumer = consumer
            consumer.subscribe([self.topic], listener=_WaitForBatch(self))
            self._task = asyncio.create_task(self._run(), name=f"consume {self.topic}")
            return

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping:
                self._fetching = True
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=0 if self._inflight else self.within_ms,
                        max_records=self.batch_size,
                    )
                except KafkaError as exc:  # broker away: the client reconnects; try again
                    log.warning("fetch from %s failed (%s); retrying", self.topic, exc)
                    await asyncio.sleep(1.0)
                    continue
                finally:
                    self._fetching = False
                self._launch(consumer, fetched)
                # at most `depth` batches in flight; with nothing new to start, finish the oldest
                while self._inflight and (
                    len(self._inflight) >= self.depth or not fetched or self._inflight[0][0].done()
                ):
                    await self._finish_oldest(consumer)
        except asyncio.CancelledError:
            pass  # stop() while fetching
        # stopping: what is in flight finishes and commits (a failed batch exited above)
        await self._drain(consumer)

    def _launch(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, Any]) -> None:
        """Start handling a fetched batch; it runs while the next one is fetched and decoded."""
        assigned = consumer.assignment()
        batch: list[Event] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            if tp not in assigned or not records:
                continue  # revoked since the fetch: its new owner reads it
            batch.extend(records)  # ConsumerRecords: value, partition and offset, as handlers read
            offsets[tp] = records[-1].offset + 1
        if batch:
            self._inflight.append((asyncio.ensure_future(self.handle(batch)), offsets))

    async def _finish_oldest(self, consumer: AIOKafkaConsumer) -> None:
        """Wait for the oldest batch in flight, then commit its offsets (commits stay in order:
        a committed offset means every earlier event of its partition is in Redis)."""
        async with self._order:
            if not self._inflight:
                return
            task, offsets = self._inflight[0]
            try:
                await asyncio.shield(task)  # a cancelled waiter never cancels the batch
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                user = self.settings.redis.username
                # NOPERM: one sentence, exit 2 (both batch consumers are the controller's)
                if not exit_on_permission(exc, "controller", user, self._exit):
                    log.critical(
                        "batch of %s failed; exiting without committing it",
                        self.topic,
                        exc_info=True,
                    )
                    self._exit(EXIT_UNSAFE_TO_ACK)
                raise
            self._inflight.popleft()
            await self._commit(consumer, offsets)

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        while self._inflight:
            await self._finish_oldest(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        t = time.perf_counter()
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # the batch is in Redis; whoever reads these events again deduplicates them
            log.warning("commit of %s failed (%s); events will be redelivered", offsets, exc)
            return
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - t)
        self.committed.update(offsets)

    async def stop(self) -> None:
        """Finish and commit the in-flight batch, then leave the group."""
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            if self._fetching:
                task.cancel()  # waiting in getmany: the batches in flight still finish
            done, _ = await asyncio.wait({task}, timeout=self.grace)
            if not done:
                log.critical(
                    "stopping during batches of %s that could not finish within %.1fs: "
                    "exiting without committing them (they will be redelivered)",
                    self.topic,
                    self.grace,
                )
                self._exit(EXIT_UNSAFE_TO_ACK)
                task.cancel()
            elif not task.cancelled() and task.exception() is None:
                log.info("finished the in-flight batches of %s before stopping", self.topic)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    def lag(self) -> int:
        """Events up to the high watermark not yet committed, over the assigned partitions.

        A partition counts once this consumer has committed on it and a fetch has told the
        high watermark: before that, the group's committed offset is not known here, and
        counting from 0 would raise a false alarm after every restart.
        """
        consumer = self._consumer
        if consumer is None:
            return 0
        behind = 0
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            done = self.committed.get(tp)
            if hw is None or done is None:
                continue
            behind += max(0, hw - done)
        return behind
