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
from aiokafka.errors import KafkaTimeoutError, UnknownError

from controller.settings import KafkaSettings, Settings
from streams.worker.kafka import JsonPublisher


class _Producer:
    """Hands out one future per message and acknowledges them when the test says."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, asyncio.Future[Any]]] = []
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if value == b"refused":  # as aiokafka's send raises when the broker is away
            raise KafkaTimeoutError()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((value.decode(), fut))
        return fut

    async def stop(self) -> None:
        self.stopped = True

    def ack(self, value: str, exc: BaseException | None = None) -> None:
        (fut,) = [f for v, f in self.sent if v == value]
        if fut.done():  # cancelled by a waiter: aiokafka skips it too
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


async def _publisher() -> tuple[JsonPublisher, _Producer]:
    pub = JsonPublisher(Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")))
    await pub._producer.stop()  # the real one, never started: closed, nothing left open
    producer = _Producer()
    pub._producer = producer  # type: ignore[assignment]
    return pub, producer


async def _turn() -> None:
    for _ in range(5):  # let the other tasks run up to their next wait
        await asyncio.sleep(0)


async def _until(pred: Any, what: str) -> None:
    """Let the other tasks run (no time passes) until ``pred()`` holds."""
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


@pytest.mark.asyncio
async def test_a_failure_is_raised_once_every_message_of_the_flush_is_settled() -> None:
    pub, producer = await _publisher()

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
    pub, producer = await _publisher()
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
    # both wait in their flush (each took its own messages), then the dead letter's write
    # fails while the flip's is still in flight
    await _until(lambda: len(producer.sent) == 2 and not pub._pending, "both in flush")
    producer.ack("dead letter", UnknownError())
    await _turn()
    assert order == ["dead letter failed"]  # the flip's flush did not take it, nor return
    assert not flip.done()
    producer.ack("flip")
    await asyncio.gather(flip, batch)
    assert order == ["dead letter failed", "flip flushed"]


@pytest.mark.asyncio
async def test_a_send_that_raises_lets_the_caller_s_messages_settle_first() -> None:
    pub, producer = await _publisher()

    async def caller() -> None:
        await pub.send("t", b"a", key="a")
        await pub.send("t", b"refused", key="r")

    task = asyncio.ensure_future(caller())
    await _until(lambda: len(producer.sent) == 1, "'a' sent")
    await _turn()
    assert not task.done()  # the send raised, but "a" is still being sent
    producer.ack("a", UnknownError())  # its own failure does not replace the send's error
    with pytest.raises(KafkaTimeoutError):
        await task


@pytest.mark.asyncio
async def test_flush_all_waits_for_the_messages_other_tasks_sent() -> None:
    pub, producer = await _publisher()

    async def source() -> None:
        await pub.send("t", b"sale", key="s")  # a driver's stream, flushed by nobody here

    src = asyncio.ensure_future(source())
    await src
    waiter = asyncio.ensure_future(pub.flush_all())
    await _turn()
    assert not waiter.done()
    producer.ack("sale")
    await waiter


@pytest.mark.asyncio
async def test_stop_raises_a_failure_of_a_task_that_ended_without_flushing() -> None:
    pub, producer = await _publisher()

    async def sender(value: str) -> None:
        await pub.send("t", value.encode(), key=value)

    await asyncio.ensure_future(sender("lost"))
    await _turn()  # its end is noted (its done callbacks run after its awaiter's)
    producer.ack("lost", UnknownError())
    await asyncio.ensure_future(sender("later"))  # another task ends with its own left over
    await _turn()
    producer.ack("later")
    with pytest.raises(UnknownError):
        await pub.stop()
    assert producer.stopped


@pytest.mark.asyncio
async def test_stop_waits_for_every_task_s_messages() -> None:
    pub, producer = await _publisher()

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


@pytest.mark.asyncio
async def test_a_cancelled_flush_all_leaves_the_sender_s_messages_alone() -> None:
    """A driver's wait cancelled (its own shutdown, a timeout) must not cancel the broker's
    answers another task waits for: that task's flush would raise CancelledError, and a
    timer would stop for good."""
    pub, producer = await _publisher()
    go = asyncio.Event()

    async def sender() -> str:
        await pub.send("t", b"m", key="m")
        await go.wait()
        await pub.flush()
        return "flushed"

    task = asyncio.ensure_future(sender())
    await _until(lambda: len(producer.sent) == 1, "'m' sent")
    waiter = asyncio.ensure_future(pub.flush_all())
    await _turn()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    producer.ack("m")
    go.set()
    assert await task == "flushed"


@pytest.mark.asyncio
async def test_flush_all_also_waits_for_messages_another_task_is_flushing() -> None:
    pub, producer = await _publisher()

    async def sender() -> None:
        await pub.send("t", b"m", key="m")
        await pub.flush()

    task = asyncio.ensure_future(sender())
    await _until(lambda: len(producer.sent) == 1 and not pub._pending, "the sender in flush")
    waiter = asyncio.ensure_future(pub.flush_all())
    await _turn()
    assert not waiter.done()  # "m" is in the sender's flush, and still being sent
    producer.ack("m")
    await asyncio.gather(task, waiter)


@pytest.mark.asyncio
async def test_every_failure_of_a_flush_is_read_and_the_first_raised() -> None:
    pub, producer = await _publisher()
    failures = [UnknownError(), KafkaTimeoutError()]

    async def caller() -> None:
        for v in ("a", "b"):
            await pub.send("t", v.encode(), key=v)
        await pub.flush()

    task = asyncio.ensure_future(caller())
    await _until(lambda: len(producer.sent) == 2, "both sent")
    producer.ack("a", failures[0])
    producer.ack("b", failures[1])
    with pytest.raises(UnknownError):
        await task
    # the second was read too: asyncio would log it as "never retrieved" otherwise
    (_, fut_b) = producer.sent[1]
    assert fut_b._log_traceback is False  # type: ignore[attr-defined]
