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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiokafka import TopicPartition

from controller.settings import Settings
from streams.client.dead_letters import letter_of
from streams.client.follower import TopicFollower
from streams.client.health import tally
from streams.errors import ServiceUnavailable

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


class LetterFollower(TopicFollower):
    """The dead-letter counts from one long-lived reader (see the module and
    :class:`streams.client.follower.TopicFollower`). ``consumer`` makes the reader (a test's
    stand-in)."""

    topic = "dead_letter"

    def __init__(
        self,
        settings: Settings,
        timeout: float = 30.0,
        consumer: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(settings, timeout, consumer)
        self._counts: Counts = {}

    async def counts(self) -> Counts:
        """Every letter on the topic, counted; a broker that does not answer raises
        :class:`streams.errors.ServiceUnavailable`."""
        async with self._lock:
            await self._follow()
            return dict(self._counts)

    def _reset(self) -> None:
        self._counts = {}

    async def _expired(self, consumer: Any, start: dict[TopicPartition, int]) -> None:
        # letters counted here have expired: counted again from the topic's start
        self._counts = {}
        await consumer.seek_to_beginning(*self._parts)

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
