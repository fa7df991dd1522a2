"""The dead letters by reason and the product their sale names, kept by one long-lived reader
of the dead-letter topic (the console's Health section): each :meth:`LetterFollower.counts`
reads only the letters written since the last, up to the end offsets taken when it is asked,
as :class:`streams.client.history.TrailFollower` reads the audit trail. With nothing new, a
count is two offset requests: milliseconds, where reading the topic from its start took
seconds.

The counts are :func:`streams.client.health.read_dead_letters`' (``pricelab dead-letters``'
reader, from the topic's start): the same records are letters (``letter_of``) and the same
function counts them (``tally``). A record that has expired from the topic is not counted
there, so when the topic's start moves past letters counted here (retention), the follower
counts again from the start. A read that fails (or stalls: never a part of the letters) closes
the reader; the next starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.settings import Settings
from streams.client.dead_letters import letter_of
from streams.client.health import tally
from streams.errors import ServiceUnavailable, services_answer

#: what the follower opens on Kafka (``TopicSettings`` fields; no consumer group):
#: streams/cli/kafka_acl.py
KAFKA_READS = ("dead_letter",)
KAFKA_WRITES: tuple[str, ...] = ()

#: the counts: by reason and the product the letter's sale names (None: none)
Counts = dict[tuple[str, str | None], int]


def letters_in(records: Iterable[Any]) -> Iterator[tuple[str, bytes]]:
    """Each dead letter's reason and original bytes among ``records`` (a record that is no
    dead letter, a tombstone too, is skipped, as ``pricelab dead-letters`` skips it)."""
    for r in records:
        letter = letter_of(r)
        if letter is not None:
            yield letter["reason"], letter["original"]


class LetterFollower:
    """The dead-letter counts from one long-lived reader (see the module). ``consumer``
    makes the reader (a test's stand-in; default: a consumer of the settings' broker, with
    no group, that waits on the broker at most 20 ms a fetch, so that a request for the
    offsets does not queue behind a fetch)."""

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
        self._counts: Counts = {}
        self._lock = asyncio.Lock()

    def _kafka(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.settings.kafka.client_kwargs(),  # type: ignore[arg-type]
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )

    async def counts(self) -> Counts:
        """Every letter on the topic, counted; a broker that does not answer raises
        :class:`streams.errors.ServiceUnavailable`."""
        async with self._lock:
            try:
                async with services_answer(
                    bootstrap_servers=self.settings.kafka.bootstrap_servers,
                    settings=self.settings,
                ):
                    await self._catch_up()
            except BaseException:
                await self.close()
                raise
            return dict(self._counts)

    async def _catch_up(self) -> None:
        topic = self.settings.topics.dead_letter
        if self._consumer is None:
            consumer = self._make()
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer, self._parts, self._counts, self._start = consumer, [], {}, {}
        consumer = self._consumer
        if not self._parts:  # no topic yet (nothing dead-lettered), or not read yet
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
        if any(start[tp] > self._start.get(tp, 0) for tp in self._parts):
            # letters counted here have expired: counted again from the topic's start
            self._counts = {}
            await consumer.seek_to_beginning(*self._parts)
        self._start = start
        todo = {tp for tp in self._parts if await consumer.position(tp) < end[tp]}
        if todo:
            consumer.resume(*todo)
            await self._read_to(consumer, todo, end)
        # no fetches between requests: the next one's offsets are answered at once
        consumer.pause(*self._parts)

    async def _read_to(
        self, consumer: Any, todo: set[TopicPartition], end: dict[TopicPartition, int]
    ) -> None:
        """Count ``todo``'s letters from their positions to ``end`` (and those past it that
        a fetch brought too: the position moves past them). Never a part of them: a broker
        that brings no record of a partition still behind for ``timeout`` seconds is a
        service that does not answer (as for ``pricelab dead-letters``' reader), and the next
        count starts again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while todo and loop.time() < deadline:
            batch = await consumer.getmany(*todo, timeout_ms=200)
            for records in batch.values():
                tally(self._counts, letters_in(records))
                if records:
                    deadline = loop.time() + self.timeout
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        if todo:
            raise ServiceUnavailable(
                f"the Kafka broker at {self.settings.kafka.bootstrap_servers} brought no dead "
                f"letter for {self.timeout:g} s while the topic held more"
            )

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer, self._parts = self._consumer, None, []
            with contextlib.suppress(Exception):
                await consumer.stop()
