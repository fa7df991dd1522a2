"""Thin Kafka edges: topic creation and a batching JSON publisher on aiokafka.

Works the same against Apache Kafka and the embedded Tansu broker: no idempotent producer
or transactions (Tansu lacks them); at-least-once delivery plus consumer-side dedupe
(sales by event_id, assignments by (experiment, product, seq)).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel

from controller.settings import Settings
from streams.worker import record_batch

#: the largest record batch the publisher writes (a record larger than that goes alone)
MAX_BATCH_BYTES = 512 * 1024

_T = TypeVar("_T")


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every pricelab topic and its configuration: assignments compacted (the last assignment
    of each product is kept for good), event topics kept ``event_retention``, record topics
    (estimates, experiment events, dead letters) ``record_retention``."""
    t, k = settings.topics, settings.kafka

    def keep(d: Any) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(int(d.total_seconds() * 1000))}

    events, records = keep(k.event_retention), keep(k.record_retention)
    return {
        t.competitor_prices: events,
        t.sales: events,
        t.commands: events,
        t.command_replies: events,
        t.assignments: {"cleanup.policy": "compact", "retention.ms": "-1"},
        t.estimates: records,
        t.experiment_events: records,
        t.dead_letter: records,
    }


@contextlib.asynccontextmanager
async def _admin(settings: Settings, timeout: float) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(admin.start(), timeout)
        yield admin
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient, settings: Settings, timeout: float
) -> list[str]:
    existing = set(await admin.list_topics())
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            topic_configs=configs,
        )
        for name, configs in topic_configs(settings).items()
        if name not in existing
    ]
    if wanted:
        with contextlib.suppress(TopicAlreadyExistsError):
            await asyncio.wait_for(admin.create_topics(wanted), timeout)
    return [t.name for t in wanted]


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create pricelab's topics that are missing, with their partitions and configuration
    (:func:`topic_configs`); idempotent. Returns the topics it created."""
    async with _admin(settings, timeout) as admin:
        return await _create_missing(admin, settings, timeout)


async def ensure_and_describe_topics(
    settings: Settings, timeout: float = 30.0
) -> tuple[list[str], dict[str, int]]:
    """:func:`ensure_topics`, then each topic's partitions as the broker has them (0: no such
    topic), over one admin connection."""
    async with _admin(settings, timeout) as admin:
        created = await _create_missing(admin, settings, timeout)
        names = settings.topics.all()
        meta = await asyncio.wait_for(admin.describe_topics(names), timeout)
        found = {
            m["topic"]: len(m.get("partitions") or []) for m in meta if not m.get("error_code")
        }
        return created, {n: found.get(n, 0) for n in names}


class UndeclaredTopic(RuntimeError):
    """A publisher was asked to write a topic its role does not declare: a bug (the role's
    Kafka ACLs, generated from the declarations, would refuse it too)."""


class JsonPublisher:
    """Publishes pydantic messages as JSON. ``flush()`` waits until the broker has every
    message the calling task sent (its failures raised once all are settled), ``flush_all()``
    every message any task sent: a worker's sinks share one publisher, each in its own task.

    ``topics``: the only topics it may write (a role's declared writes, which its Kafka ACLs
    are generated from: streams/cli/kafka_acl.py); None for any (drivers, tests, benchmarks).
    """

    def __init__(
        self, settings: Settings, *, linger_ms: int = 5, topics: Iterable[str] | None = None
    ) -> None:
        self.topics = None if topics is None else frozenset(topics)
        self._compression = settings.kafka.producer_compression
        self._producer = AIOKafkaProducer(
            **settings.kafka.client_kwargs(),  # type: ignore[arg-type]
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=MAX_BATCH_BYTES,
            enable_idempotence=False,
            compression_type=self._compression,
        )
        #: each task's messages not yet flushed, by the task that sent them: the publisher is
        #: shared by a worker's sinks, and a caller must wait for (and hear the failures of)
        #: its own messages, not return because another caller's flush took them
        self._pending: dict[asyncio.Task[Any], list[asyncio.Future[Any]]] = {}
        #: the messages of tasks that ended without flushing them (``stop`` waits for them)
        self._orphans: list[asyncio.Future[Any]] = []
        #: the lists a task's ``flush`` is waiting for, by id (``flush_all`` waits for them too)
        self._flushing: dict[int, list[asyncio.Future[Any]]] = {}
        self._watched: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._partitioner = DefaultPartitioner()
        self._partition_cache_for: tuple[str, tuple[int, ...]] | None = None
        self._partition_of: dict[str, int] = {}
        #: (topic, partitions, keys, the keys packed, each key's partition) of the last
        #: ``send_templated``: a flip publishes the same products every period
        self._laid_out: tuple[str, list[int], list[str], record_batch.Keys, np.ndarray] | None
        self._laid_out = None
        #: the buffers ``send_templated``'s batches are made and compressed in, reused
        self._scratch = record_batch.Scratch()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Wait for every message sent (by any task, also while it waits), then stop the
        producer; raise the first failure."""
        try:
            await self.flush_all()
        finally:
            await self._producer.stop()

    async def flush_all(self) -> None:
        """Wait until the broker has every message any task sent (those sent while it waits,
        and those a task's own ``flush`` is waiting for, included). For a driver that sends
        from one task and waits from another, and for ``stop``. It takes no message from its
        sender, whose own ``flush`` raises that message's failure; what it raises is the
        first failure of a task that ended without flushing, once."""
        seen: set[asyncio.Future[Any]] = set()
        while True:
            lists = (*self._pending.values(), *self._flushing.values(), self._orphans)
            pending = [f for fs in lists for f in fs if f not in seen]
            if not pending:
                break
            seen.update(pending)
            await asyncio.wait(pending)  # unlike gather, a cancelled wait cancels none of them
        # every one seen is settled: no await from here, so no orphan's failure is lost
        orphans = [f for f in self._orphans if f in seen]
        self._orphans = [f for f in self._orphans if f not in seen]
        failure = _first_failure(orphans)  # the live tasks' own flushes raise theirs
        if failure is not None:
            raise failure

    def _mine(self) -> list[asyncio.Future[Any]]:
        """The calling task's messages not yet flushed."""
        task = asyncio.current_task()
        assert task is not None, "a publisher is used from a task"
        mine = self._pending.get(task)
        if mine is None:
            mine = self._pending[task] = []
            if task not in self._watched:  # once per task: timers' tasks live for good
                self._watched.add(task)
                task.add_done_callback(self._task_done)
        return mine

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        left = self._pending.pop(task, None)
        if left:  # kept until settled, and a failure until ``flush_all`` raises it
            self._orphans = [f for f in self._orphans if not _succeeded(f)] + left

    async def _settling(self, sending: Coroutine[Any, Any, _T]) -> _T:
        """Run one of the private senders; if it raises, let the calling task's messages
        already sent settle before the error goes on."""
        try:
            return await sending
        except Exception:
            await self._settle_mine()
            raise

    async def _settle_mine(self) -> None:
        """After a send raised: let the calling task's messages already sent settle before
        the error goes on (a caller that gives its turn back then has none in flight); their
        own failures are not raised over it."""
        task = asyncio.current_task()
        pending = self._pending.pop(task, None) if task is not None else None
        if pending:
            await self._wait_out(pending)
            _first_failure(pending)  # read, so none is logged as never retrieved

    async def _wait_out(self, pending: list[asyncio.Future[Any]]) -> None:
        """Wait for ``pending``, a task's messages taken from ``_pending``, keeping them
        where ``flush_all`` sees them meanwhile."""
        self._flushing[id(pending)] = pending
        try:
            await asyncio.wait(pending)  # unlike gather, a cancelled wait cancels none of them
        finally:
            del self._flushing[id(pending)]

    def _check(self, topic: str) -> None:
        if self.topics is not None and topic not in self.topics:
            raise UndeclaredTopic(
                f"{topic} is not among the topics this role writes ({', '.join(sorted(self.topics))})"
            )

    async def send(self, topic: str, msg: BaseModel | bytes, key: str | None = None) -> None:
        await self._settling(self._send(topic, msg, key))

    async def _send(self, topic: str, msg: BaseModel | bytes, key: str | None) -> None:
        self._check(topic)
        value = msg if isinstance(msg, bytes) else msg.model_dump_json().encode()
        fut = await self._producer.send(topic, value=value, key=key.encode() if key else None)
        mine = self._mine()
        mine.append(fut)
        if len(mine) >= 10_000:
            await self.flush()

    async def send_many(
        self, topic: str, items: Iterable[tuple[str | None, BaseModel | bytes]]
    ) -> None:
        for key, msg in items:
            await self.send(topic, msg, key)

    async def prime_partitions(self, topic: str, keys: Sequence[str]) -> None:
        """Compute the partitions of many keys at once (vectorised murmur2) before a
        ``send_keyed_many`` of them: the producer's pure-Python murmur2 costs ~3-7 us a key."""
        self._check(topic)
        parts = sorted(await self._producer.partitions_for(topic))
        if self._partition_cache_for != (topic, tuple(parts)):
            self._partition_cache_for = (topic, tuple(parts))
            self._partition_of = {}
        known = self._partition_of
        new = [k for k in keys if k not in known]
        if new:
            known.update(zip(new, partitions_of([k.encode() for k in new], parts), strict=True))

    async def send_keyed_many(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        """Publish many keyed values fast: one record batch per partition at a time.

        Partitions are chosen exactly as the producer's default partitioner does for a keyed
        ``send`` (murmur2 of the key), so a product's messages keep one partition and their
        order whichever method sent them. Returns the number of messages.
        """
        return await self._settling(self._send_keyed_many(topic, items))

    async def _send_keyed_many(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        self._check(topic)
        producer = self._producer
        parts = sorted(await producer.partitions_for(topic))
        if self._partition_cache_for != (topic, tuple(parts)):
            self._partition_cache_for = (topic, tuple(parts))
            self._partition_of = {}
        partition_of = self._partition_of
        batches: dict[int, Any] = {}
        mine = self._mine()
        n = 0
        for key, value in items:
            p = partition_of.get(key)
            if p is None:
                p = partition_of[key] = self._partitioner(key.encode(), parts, parts)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            kb = key.encode()
            if batch.append(timestamp=None, key=kb, value=value) is None:  # batch full
                mine.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(timestamp=None, key=kb, value=value)
                if len(mine) >= 64:
                    await self.flush()
                    mine = self._mine()
            n += 1
        for p, batch in batches.items():
            if batch.record_count():
                mine.append(await producer.send_batch(batch, topic, partition=p))
        return n

    async def send_templated(
        self,
        topic: str,
        keys: Sequence[str],
        codes: Sequence[int],
        templates: Sequence[tuple[bytes, bytes]],
    ) -> int:
        """Publish, for every i, the value ``head + keys[i] + tail`` of
        ``templates[codes[i]]`` keyed by ``keys[i]``: what ``send_keyed_many`` publishes for
        those values, to the same partitions, but built a record batch at a time
        (streams/worker/record_batch.py) instead of a record at a time. ``keys``: distinct
        ASCII ids. Within a partition the messages go by template, then key length; each
        key's own messages keep their order across calls. Returns the number of messages."""
        return await self._settling(self._send_templated(topic, keys, codes, templates))

    async def _send_templated(
        self,
        topic: str,
        keys: Sequence[str],
        codes: Sequence[int],
        templates: Sequence[tuple[bytes, bytes]],
    ) -> int:
        self._check(topic)
        producer = self._producer
        parts = sorted(await producer.partitions_for(topic))
        keys = keys if isinstance(keys, list) else list(keys)
        laid = self._laid_out
        if laid is None or laid[0] != topic or laid[1] != parts or laid[2] != keys:
            packed = record_batch.Keys(keys)
            where = partition_indices([k.encode() for k in keys], len(parts))
            laid = self._laid_out = (topic, parts, list(keys), packed, where)
        packed, where = laid[3], laid[4]
        code = np.asarray(codes, dtype=np.int64)
        by_partition = np.argsort(where, kind="stable")
        cuts = np.searchsorted(where[by_partition], np.arange(1, len(parts)))
        queues = [
            (parts[i], record_batch.split(
                packed, code, templates, record_batch.batch_order(packed, code, idx),
                MAX_BATCH_BYTES,
            ))
            for i, idx in enumerate(np.split(by_partition, cuts))
        ]  # fmt: skip
        # a batch per partition in turn: the producer holds one batch of a partition at a
        # time, so the partitions' batches go out together
        while queues:
            for entry in list(queues):
                p, batches = entry
                idx = next(batches, None)
                if idx is None:
                    queues.remove(entry)
                    continue
                batch = record_batch.build(
                    packed, code, templates, idx, compression=self._compression,
                    scratch=self._scratch,
                )  # fmt: skip
                built = record_batch.BuiltBatch(batch, len(idx))
                mine = self._mine()
                mine.append(await producer.send_batch(built, topic, partition=p))
                if len(mine) >= 64:
                    await self.flush()
        return len(keys)

    async def flush(self) -> None:
        """Wait until the broker has acknowledged every message the calling task sent since
        its last flush. If any failed, raise the first failure once all of them are settled:
        a caller that then gives its turn back, or commits its offsets, has nothing of its own
        still being sent (aiokafka retries a failed batch's neighbours for up to its request
        timeout)."""
        task = asyncio.current_task()
        pending = self._pending.pop(task, None) if task is not None else None
        if pending:
            await self._wait_out(pending)
            failure = _first_failure(pending)
            if failure is not None:
                raise failure


def _succeeded(f: asyncio.Future[Any]) -> bool:
    return f.done() and not f.cancelled() and f.exception() is None


def _first_failure(futures: Sequence[asyncio.Future[Any]]) -> BaseException | None:
    """The first failure of settled ``futures`` (a cancelled one as CancelledError), every
    one's read so that none is logged as never retrieved (aiokafka gives each message's
    future its own copy of a batch's error)."""
    first: BaseException | None = None
    for f in futures:
        if not f.done():
            continue
        exc: BaseException | None = asyncio.CancelledError() if f.cancelled() else f.exception()
        if first is None:
            first = exc
    return first


def murmur2_many(keys: Sequence[bytes]) -> np.ndarray:
    """Kafka's murmur2 (as ``aiokafka.partitioner.murmur2``) of every key, with numpy: keys
    of one length are hashed together, four bytes a step, in wrapping uint32 arithmetic."""
    out = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    m = np.uint32(0x5BD1E995)
    for length, idx in by_length.items():
        data = np.frombuffer(b"".join([keys[i] for i in idx]), dtype=np.uint8)
        b = data.reshape(len(idx), length).astype(np.uint32)
        h = np.full(len(idx), (0x9747B28C ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        for i in range(0, length - length % 4, 4):
            k = b[:, i] | (b[:, i + 1] << 8) | (b[:, i + 2] << 16) | (b[:, i + 3] << 24)
            k *= m
            k ^= k >> 24
            k *= m
            h *= m
            h ^= k
        tail = length & ~3
        extra = length % 4
        if extra >= 3:
            h ^= b[:, tail + 2] << 16
        if extra >= 2:
            h ^= b[:, tail + 1] << 8
        if extra >= 1:
            h ^= b[:, tail]
            h *= m
        h ^= h >> 13
        h *= m
        h ^= h >> 15
        out[idx] = h
    return out


def partition_indices(keys: Sequence[bytes], n_partitions: int) -> np.ndarray:
    """The index, among the sorted partitions, of the partition aiokafka's default
    partitioner picks for each key."""
    return (murmur2_many(keys) & np.uint32(0x7FFFFFFF)) % n_partitions


def partitions_of(keys: Sequence[bytes], partitions: Sequence[int]) -> list[int]:
    """The partition aiokafka's default partitioner picks for each key (``partitions``
    sorted, as the producer passes them)."""
    return [partitions[i] for i in partition_indices(keys, len(partitions)).tolist()]


def consumer_lag(consumer: Any, topics: Iterable[str] | None = None) -> dict[str, int]:
    """Per topic: events up to the broker's high watermark not yet committed by this consumer.

    ``consumer`` is a faust consumer (``assignment()``, ``highwater(tp)`` and the committed
    offsets it tracks, where the committed offset is that of the last processed event). The
    high watermark comes with each fetch response. Tansu's ``end_offsets()`` bug (last batch's
    base offset + 1) can make a broker under-report the end of a partition by up to one
    producer batch, so the gauge is clipped at zero and reads as "at least this far behind";
    against Apache Kafka it is exact. See docs/broker.md.
    """
    wanted = None if topics is None else set(topics)
    committed = getattr(consumer, "_committed_offset", {})
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        if wanted is not None and tp.topic not in wanted:
            continue
        try:
            hw = consumer.highwater(tp)
        except Exception:  # partition not fetched yet
            hw = None
        if hw is None:
            continue
        done = committed.get(tp)
        behind = hw if done is None else hw - (done + 1)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, int(behind))
    if wanted is not None:
        for topic in wanted:
            lag.setdefault(topic, 0)
    return lag
