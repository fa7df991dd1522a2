"""The console's dead-letter counts (streams.client.letter_follower): the same counts as
``pricelab dead-letters``' reader gives from the topic's start (by reason and the product the
letter's sale names), kept by one follower that reads only what was written since its last
read: with nothing new it asks the broker for the offsets and fetches nothing. Counted
again from the start when letters counted have expired. The broker is a stand-in here."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

import streams.client.dead_letters as dead_letters
from controller.settings import Settings, TopicSettings
from streams.client.dead_letters import Letter, letter_of
from streams.client.health import read_dead_letters, tally
from streams.client.letter_follower import LetterFollower, letters_in
from streams.errors import ServiceUnavailable
from streams.worker.schemas import DeadLetter

SETTINGS = Settings(topics=TopicSettings(dead_letter="s.dlq"), app_id="dl", clock="wall")


def sale(product: Any) -> bytes:
    return json.dumps({"event_id": "e", "product": product, "units": 1}).encode()


def dead(reason: str, original: bytes) -> bytes:
    """A dead letter's record value, as the workers' sink writes it."""
    return (
        DeadLetter(
            source_topic="s.sales", reason=reason, error="!", at=datetime(2026, 6, 1, tzinfo=UTC),
            original_b64=base64.b64encode(original).decode(),
        )
        .model_dump_json()
        .encode()
    )  # fmt: skip


def test_tally_counts_by_reason_and_the_sale_s_product() -> None:
    letters = [
        ("late", sale("A")),
        ("late", sale("A")),
        ("late", sale("B")),
        ("invalid_field", sale(121)),  # a number for an id: names no product
        ("malformed_json", b"{nope"),  # no JSON: names none
        ("invalid_field", sale("A")),
    ]
    assert tally({}, letters) == {
        ("late", "A"): 2,
        ("late", "B"): 1,
        ("invalid_field", None): 1,
        ("malformed_json", None): 1,
        ("invalid_field", "A"): 1,
    }
    kept: dict[tuple[str, str | None], int] = {("late", "A"): 5}
    assert tally(kept, [("late", sale("A"))]) is kept and kept == {("late", "A"): 6}


def test_only_dead_letters_are_counted() -> None:
    records = [
        SimpleNamespace(partition=0, offset=0, value=dead("late", sale("A"))),
        SimpleNamespace(partition=0, offset=1, value=None),  # a tombstone
        SimpleNamespace(partition=0, offset=2, value=b"not a letter"),
        SimpleNamespace(partition=0, offset=3, value=b'{"reason": "late"}'),  # no original
    ]
    assert list(letters_in(records)) == [("late", sale("A"))]


class _Broker:
    """The dead-letter topic as a stand-in consumer sees it: each partition's values by
    offset from its first held offset; what was fetched."""

    def __init__(self, log: dict[int, list[bytes | None]]) -> None:
        self.log = log
        self.first = dict.fromkeys(log, 0)
        self.fetched: list[tuple[int, int]] = []  # (partition, offset) of each record handed
        self.getmany_calls = 0

    def consumer(self) -> _Consumer:
        return _Consumer(self)


class _Consumer:
    def __init__(self, broker: _Broker) -> None:
        self.b = broker
        self.pos: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.assigned: list[TopicPartition] = []

        async def update() -> None:
            return None

        self._client = SimpleNamespace(force_metadata_update=update)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.b.log) if topic == "s.dlq" and self.b.log else None

    def assign(self, parts: list[TopicPartition]) -> None:
        self.assigned = list(parts)

    async def seek_to_beginning(self, *parts: TopicPartition) -> None:
        for tp in parts:
            self.pos[tp] = self.b.first[tp.partition]

    async def beginning_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.b.first[tp.partition] for tp in parts}

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.b.first[tp.partition] + len(self.b.log[tp.partition]) for tp in parts}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]

    def pause(self, *parts: TopicPartition) -> None:
        self.paused |= set(parts)

    def resume(self, *parts: TopicPartition) -> None:
        self.paused -= set(parts)

    async def getmany(self, *parts: TopicPartition, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        """At most two records of each partition asked for and not paused."""
        self.b.getmany_calls += 1
        out: dict[Any, list[Any]] = {}
        for tp in parts:
            if tp in self.paused:
                continue
            p, at = tp.partition, self.pos[tp]
            held = self.b.log[p][at - self.b.first[p] : at - self.b.first[p] + 2]
            if held:
                out[tp] = [SimpleNamespace(partition=p, offset=at + i, value=v)
                           for i, v in enumerate(held)]  # fmt: skip
                self.b.fetched += [(p, at + i) for i in range(len(held))]
                self.pos[tp] = at + len(held)
        return out


async def test_nothing_dead_lettered_yet_is_no_letter() -> None:
    follower = LetterFollower(SETTINGS, consumer=_Broker({}).consumer)
    assert await follower.counts() == {}


async def test_the_follower_reads_only_what_is_new_and_counts_as_today_s_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = _Broker(
        {
            0: [dead("late", sale("A")), dead("late", sale("A")), None, dead("late", sale("B"))],
            1: [dead("invalid_field", sale(121)), b"junk", dead("malformed_json", b"{nope")],
        }
    )

    async def read_letters(settings: Settings, idle: float = 2.0) -> list[Letter]:
        """``pricelab dead-letters``' reader over the same topic, from its start."""
        records = [
            SimpleNamespace(partition=p, offset=broker.first[p] + i, value=v)
            for p, values in broker.log.items()
            for i, v in enumerate(values)
        ]
        return [Letter(**d) for r in records if (d := letter_of(r)) is not None]

    monkeypatch.setattr(dead_letters, "read_letters", read_letters)
    follower = LetterFollower(SETTINGS, consumer=broker.consumer)
    first = await follower.counts()
    assert first == {("late", "A"): 2, ("late", "B"): 1, ("invalid_field", None): 1,
                     ("malformed_json", None): 1}  # fmt: skip
    assert first == await read_dead_letters(SETTINGS, 1.0)
    assert len(broker.fetched) == 7
    # nothing new: the offsets asked, no fetch
    calls = broker.getmany_calls
    assert await follower.counts() == first and broker.getmany_calls == calls
    # two letters more: only they are fetched
    broker.log[0].append(dead("late", sale("A")))
    broker.log[1].append(dead("currency", sale("C")))
    fetched = len(broker.fetched)
    again = await follower.counts()
    assert sorted(broker.fetched[fetched:]) == [(0, 4), (1, 3)]
    assert again == first | {("late", "A"): 3, ("currency", "C"): 1}
    assert again == await read_dead_letters(SETTINGS, 1.0)
    # retention: partition 0's first two letters expired; counted again from the start
    broker.log[0] = broker.log[0][2:]
    broker.first[0] = 2
    expired = await follower.counts()
    assert expired == {("late", "B"): 1, ("late", "A"): 1, ("invalid_field", None): 1,
                       ("malformed_json", None): 1, ("currency", "C"): 1}  # fmt: skip
    assert expired == await read_dead_letters(SETTINGS, 1.0)


async def test_a_failed_read_closes_the_reader_and_the_next_starts_again() -> None:
    broker = _Broker({0: [dead("late", sale("A"))]})
    made: list[_Consumer] = []

    def consumer() -> _Consumer:
        made.append(broker.consumer())
        return made[-1]

    follower = LetterFollower(SETTINGS, consumer=consumer)
    assert await follower.counts() == {("late", "A"): 1}

    async def down(parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        raise OSError("the broker went away")

    made[0].end_offsets = down  # type: ignore[method-assign]
    with pytest.raises(Exception, match="went away|answer"):
        await follower.counts()
    assert await follower.counts() == {("late", "A"): 1} and len(made) == 2


async def test_a_broker_that_brings_nothing_is_unavailable_never_a_part_of_the_counts() -> None:
    broker = _Broker({0: [dead("late", sale("A")), dead("late", sale("B"))]})
    stalled: list[_Consumer] = []

    def consumer() -> _Consumer:
        c = broker.consumer()
        if not stalled:  # the first reader's fetches bring nothing
            stalled.append(c)

            async def nothing(*parts: TopicPartition, timeout_ms: int = 0) -> dict[Any, Any]:
                return {}

            c.getmany = nothing  # type: ignore[method-assign]
        return c

    follower = LetterFollower(SETTINGS, timeout=0.0, consumer=consumer)
    with pytest.raises(ServiceUnavailable, match="brought no dead letter for 0 s"):
        await follower.counts()
    follower.timeout = 30.0
    assert await follower.counts() == {("late", "A"): 1, ("late", "B"): 1}
