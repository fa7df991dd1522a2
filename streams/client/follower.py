"""One long-lived reader of a whole topic that, at each request, reads only what was written
since the last one, up to the end offsets taken when it is asked: the console's readers of the
audit trail (:class:`streams.client.history.TrailFollower`) and of the dead letters
(:class:`streams.client.letter_follower.LetterFollower`).

The reader joins no group: it assigns itself every partition of the topic and seeks to their
start the first time. Between requests its partitions are paused, so no fetch is in flight
when the next request asks for the offsets (a ListOffsets request queues behind a fetch on
the connection), and its fetches wait on the broker at most 20 ms. When the topic's start
moves past records already read (retention), the subclass is told (:meth:`_expired`). A read
that fails closes the reader; the next request starts again from the topic's start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.settings import Settings
from streams.errors import services_answer


class TopicFollower:
    """The skeleton of a follower (see the module). A subclass names its ``topic`` (a
    ``TopicSettings`` field), forgets what it holds in :meth:`_reset`, reacts to expired
    records in :meth:`_expired` and reads ``todo`` to ``end`` in :meth:`_read_to`.
    ``consumer`` makes the reader (a test's stand-in; default: a consumer of the settings'
    broker with no group)."""

    topic: str

    def __init__(
        self,
        settings: Settings,
        timeout: float = 30.0,
        consumer: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._make = consumer or self._kafka
        self._consumer: Any = None
        self._parts: list[TopicPartition] = []
        self._start: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()

    def _kafka(self) -> AIOKafkaConsumer:
        # a fetch waits on the broker at most this long for new records: a request for the
        # offsets queues behind it on the connection
        return AIOKafkaConsumer(
            **self.settings.kafka.client_kwargs(),  # type: ignore[arg-type]
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )

    async def _follow(self) -> dict[TopicPartition, int]:
        """Read what was written since the last call, under the lock; the topic's start
        offsets. A broker that does not answer raises
        :class:`streams.errors.ServiceUnavailable`, and the reader is closed."""
        try:
            async with services_answer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                settings=self.settings,
            ):
                await self._catch_up()
        except BaseException:
            await self.close()
            raise
        return dict(self._start)

    async def _catch_up(self) -> None:
        topic = getattr(self.settings.topics, self.topic)
        if self._consumer is None:
            consumer = self._make()
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer, self._parts, self._start = consumer, [], {}
            self._reset()
        consumer = self._consumer
        if not self._parts:  # no topic yet, or not read yet
            await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
            self._parts = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not self._parts:
                return
            consumer.assign(self._parts)
            await consumer.seek_to_beginning(*self._parts)
        start = await consumer.beginning_offsets(self._parts)
        end = await consumer.end_offsets(self._parts)
        if any(start[tp] > self._start.get(tp, 0) for tp in self._parts):  # records expired
            await self._expired(consumer, start)
        self._start = start
        todo = {tp for tp in self._parts if await consumer.position(tp) < end[tp]}
        if todo:
            consumer.resume(*todo)
            await self._read_to(consumer, todo, end)
        # no fetches between requests: the next one's offsets are answered at once
        consumer.pause(*self._parts)

    def _reset(self) -> None:
        """Forget what was read: a new reader starts from the topic's start."""
        raise NotImplementedError

    async def _expired(self, consumer: Any, start: dict[TopicPartition, int]) -> None:
        """The topic's start moved to ``start``, past records read before."""
        raise NotImplementedError

    async def _read_to(
        self, consumer: Any, todo: set[TopicPartition], end: dict[TopicPartition, int]
    ) -> None:
        """Read ``todo`` from their positions to ``end``."""
        raise NotImplementedError

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer, self._parts = self._consumer, None, []
            with contextlib.suppress(Exception):
                await consumer.stop()
