"""``JsonPublisher.flush``: a caller waits for, and hears the failures of, its own messages.

The publisher is shared by a worker's sinks (flips, trigger announcements, dead letters,
estimates, command replies). A flush used to take every caller's pending messages and return
at the first failure, so (a) a caller whose messages another caller's flush had taken
returned before they were acknowledged (a flip marked published, a batch's offsets
committed), and (b) a timer that tolerates a failed broker request could swallow a failure
that was another caller's. The producer here is a stand-in whose acknowledgements the test
gives by hand; the integration tests run the real one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import UnknownError

from controller.settings import KafkaSettings, Settings
from streams.worker.kafka import JsonPublisher


class _Producer:
    """Hands out one future per message and acknowledges them when the test says."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, asyncio.Future[Any]]] = []
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((value.decode(), fut))
        return fut

    async def stop(self) -> None:
        self.stopped = True

    def ack(self, value: str, exc: BaseException | None = None) -> None:
        (fut,) = [f for v, f in self.sent if v == value]
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


def _publisher() -> tuple[JsonPublisher, _Producer]:
    pub = JsonPublisher(Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")))
    producer = _Producer()
    pub._producer = producer  # type: ignore[assignment]
    return pub, producer


async def _turn() -> None:
    for _ in range(5):  # let the other tasks run up to their next wait
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_failure_is_raised_once_every_message_of_the_flush_is_settled() -> None:
    pub, producer = _publisher()

    async def caller() -> None:
        for v in ("a", "b", "c"):
            await pub.send("t", v.encode(), key=v)
        await pub.flush()

    task = asyncio.ensure_future(caller())
    await _turn()
    producer.ack("a", UnknownError())
    await _turn()
    assert not task.done()  # "b" and "c" are still being sent
    producer.ack("b")
    await _turn()
    assert not task.done()
    producer.ack("c")
    with pytest.raises(UnknownError):
        await task


@pytest.mark.asyncio
async def test_a_flush_waits_for_its_own_messages_and_hears_only_their_failures() -> None:
    pub, producer = _publisher()
    order: list[str] = []

    async def caller(value: str) -> None:
        await pub.send("t", value.encode(), key=value)
        await _turn()  # the other caller sends and flushes meanwhile
        try:
            await pub.flush()
        except UnknownError:
            order.append(f"{value} failed")
        else:
            order.append(f"{value} flushed")

    flip = asyncio.ensure_future(caller("flip"))
    batch = asyncio.ensure_future(caller("dead letter"))
    await _turn()
    # both have flushed; the dead letter's write fails, the flip's is still in flight
    producer.ack("dead letter", UnknownError())
    await _turn()
    assert order == ["dead letter failed"]  # the flip's flush did not take it, nor return
    assert not flip.done()
    producer.ack("flip")
    await asyncio.gather(flip, batch)
    assert order == ["dead letter failed", "flip flushed"]


@pytest.mark.asyncio
async def test_stop_waits_for_every_task_s_messages() -> None:
    pub, producer = _publisher()

    async def sender(value: str) -> None:
        await pub.send("t", value.encode(), key=value)  # sent, never flushed

    await asyncio.gather(sender("x"), sender("y"))
    stop = asyncio.ensure_future(pub.stop())
    await _turn()
    producer.ack("x")
    await _turn()
    assert not stop.done() and not producer.stopped
    producer.ack("y")
    await stop
    assert producer.stopped
