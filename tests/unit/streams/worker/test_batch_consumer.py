"""BatchConsumer's commit discipline, against a scripted consumer: offsets are committed only
after their batch was handled, in fetch order even when a later batch finishes first; a
failed batch exits unacknowledged; stop() finishes what is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from controller.settings import Settings
from streams.worker.consumer import BatchConsumer
from streams.worker.handlers import EXIT_UNSAFE_TO_ACK, RawEvent

TP0, TP1 = TopicPartition("sales", 0), TopicPartition("sales", 1)


@dataclass
class _Record:
    """The fields of aiokafka's ConsumerRecord that the consumer and its handlers read."""

    value: bytes
    offset: int
    partition: int


class _Consumer:
    """getmany() hands out scripted fetches, then blocks (as a quiet topic does)."""

    def __init__(self, fetches: list[dict[TopicPartition, list[_Record]]]) -> None:
        self.fetches: Iterator[dict[TopicPartition, list[_Record]]] = iter(fetches)
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned = {TP0, TP1}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        for f in self.fetches:
            return f
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int | None:
        return {TP0: 10, TP1: None}[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def stop(self) -> None:
        return None


def _records(tp: TopicPartition, start: int, n: int) -> dict[TopicPartition, list[_Record]]:
    return {
        tp: [
            _Record(f"{tp.partition}:{i}".encode(), i, tp.partition)
            for i in range(start, start + n)
        ]
    }


def _consumer_for(
    fake: _Consumer,
    handle: Any,
    exits: list[int],
    depth: int = 2,
    on_commit: Callable[[float], None] | None = None,
) -> BatchConsumer:
    bc = BatchConsumer(
        Settings(),
        "sales",
        "g",
        handle,
        batch_size=100,
        within=0.01,
        depth=depth,
        grace=2.0,
        exit=exits.append,
        on_commit=on_commit,
    )
    bc._consumer = fake  # type: ignore[assignment]
    bc._task = asyncio.ensure_future(bc._run())
    return bc


async def _until(pred: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_commits_follow_the_handled_batches_in_fetch_order() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 3), _records(TP1, 0, 2), _records(TP0, 3, 4)])
        release = {0: asyncio.Event(), 1: asyncio.Event(), 2: asyncio.Event()}
        seen: list[list[RawEvent]] = []

        async def handle(batch: list[RawEvent]) -> None:
            k = len(seen)
            seen.append(batch)
            await release[k].wait()

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        await _until(lambda: len(seen) == 2)  # two batches in flight at once
        release[1].set()  # the second finishes first: nothing may be committed yet
        await _until(lambda: bc._inflight[1][0].done())
        for _ in range(20):  # let the consumer loop see the finished batch (no time passes)
            await asyncio.sleep(0)
        assert fake.commits == []
        release[0].set()
        await _until(lambda: len(fake.commits) == 2)
        assert fake.commits == [{TP0: 3}, {TP1: 2}]
        await _until(lambda: len(seen) == 3)
        assert fake.commits == [{TP0: 3}, {TP1: 2}]  # the third is still in flight
        release[2].set()
        await _until(lambda: len(fake.commits) == 3)
        assert fake.commits[-1] == {TP0: 7}
        assert [e.offset for e in seen[2]] == [3, 4, 5, 6]
        assert bc.committed == {TP0: 7, TP1: 2}
        await bc.stop()
        assert exits == []

    asyncio.run(main())


def test_a_failed_batch_exits_without_committing() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 3)])

        async def handle(batch: list[RawEvent]) -> None:
            raise RuntimeError("bug")

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        await _until(lambda: exits != [])
        assert exits == [EXIT_UNSAFE_TO_ACK]
        assert fake.commits == []
        with pytest.raises(RuntimeError):
            await bc._task  # type: ignore[misc]

    asyncio.run(main())


def test_stop_finishes_and_commits_the_batches_in_flight() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 5)])
        started = asyncio.Event()

        async def handle(batch: list[RawEvent]) -> None:
            started.set()
            await asyncio.sleep(0.2)

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        await started.wait()
        await bc.stop()
        assert fake.commits == [{TP0: 5}]
        assert exits == []

    asyncio.run(main())


def test_stop_with_a_batch_that_cannot_finish_exits_unacknowledged() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 5)])
        started = asyncio.Event()

        async def handle(batch: list[RawEvent]) -> None:
            started.set()
            await asyncio.sleep(60)  # Redis down

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        bc.grace = 0.2
        await started.wait()
        await bc.stop()
        assert exits == [EXIT_UNSAFE_TO_ACK]
        assert fake.commits == []

    asyncio.run(main())


def test_records_of_a_revoked_partition_are_not_handled() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 2) | _records(TP1, 0, 2)])
        fake.assigned = {TP1}
        seen: list[RawEvent] = []

        async def handle(batch: list[RawEvent]) -> None:
            seen.extend(batch)

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        await _until(lambda: len(fake.commits) == 1)
        assert {e.partition for e in seen} == {1}
        assert fake.commits == [{TP1: 2}]
        await bc.stop()

    asyncio.run(main())


def test_lag_counts_partitions_with_a_commit_and_a_known_high_watermark() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 4), _records(TP1, 0, 2)])

        async def handle(batch: list[RawEvent]) -> None:
            return None

        exits: list[int] = []
        bc = _consumer_for(fake, handle, exits)
        assert bc.lag() == 0  # nothing committed yet: unknown, not 10
        await _until(lambda: len(fake.commits) == 2)
        assert bc.lag() == 10 - 4  # TP1's high watermark is not known yet
        await bc.stop()

    asyncio.run(main())


def test_each_commit_reports_its_duration() -> None:
    async def main() -> None:
        fake = _Consumer([_records(TP0, 0, 3), _records(TP1, 0, 2)])

        async def handle(batch: list[RawEvent]) -> None:
            return None

        exits: list[int] = []
        durations: list[float] = []
        bc = _consumer_for(fake, handle, exits, on_commit=durations.append)
        await _until(lambda: len(fake.commits) == 2)
        await bc.stop()
        assert len(durations) == 2 and all(d >= 0 for d in durations)

    asyncio.run(main())
