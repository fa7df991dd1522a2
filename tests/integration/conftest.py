"""Real processes for integration tests: one Tansu broker and one redis-server per session.

Each test gets its own topic names and Redis key prefix, so tests never see each other's
data. Processes are stopped at the end of the session.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from controller.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from streams.live.embedded import EmbeddedStack
from streams.worker.kafka import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def contract_checks() -> Iterator[None]:
    """Every stack the tests start checks what pricelab writes against its contracts: the
    session's broker, and ``pricelab up`` and the demo in child processes (they read
    PRICELAB_EMBEDDED_CONTRACT_CHECKS, off by default for its cost: docs/broker.md)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRICELAB_EMBEDDED_CONTRACT_CHECKS", "true")
        yield


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    s = EmbeddedStack(validate_outputs=True).start()
    try:
        yield s
    finally:
        s.stop()


def make_settings(stack: EmbeddedStack, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = TopicSettings(**{k: f"t{tag}.{v}" for k, v in TopicSettings().model_dump().items()})
    base: dict[str, Any] = {
        "kafka": KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=2),
        "redis": RedisSettings(url=SecretStr(stack.redis_url)),
        "topics": topics,
        "key_prefix": f"t{tag}",
        # a consumer group per test: a worker killed by an earlier test stays a member of its
        # group until its session times out, and would hold up this test's rebalance
        "app_id": f"t{tag}",
        "clock": "simulated",
        # the consumers' batch windows, which are their fetch max wait: an idle controller
        # worker at the defaults (10 ms competitor, 50 ms sales) uses 6.5% of a core and keeps
        # the broker 6.4% busy; at 100 ms 1.4% and 2.4%. The suite runs several workers at a
        # time on few cores, and no test here times an event's latency (the benchmarks do,
        # at the defaults): a test that needs the defaults passes them as overrides
        "sales_batch_within": 0.1,
        "competitor_batch_within": 0.1,
    }
    base.update(overrides)
    settings = Settings(**base)
    # the broker validates what pricelab writes to its output topics against their contracts
    stack.register_contracts(settings)
    return settings


@pytest.fixture
async def settings(stack: EmbeddedStack) -> Settings:
    s = make_settings(stack)
    await ensure_topics(s)
    return s


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    expect: int,
    timeout: float = 20.0,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
    with_position: bool = False,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning until ``expect`` messages arrived, or ``until`` holds
    for the messages read so far (or time out: the caller checks what it got). With
    ``with_position`` each message also carries ``_partition`` and ``_offset``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    doc = json.loads(r.value)
                    if with_position:
                        doc |= {"_partition": r.partition, "_offset": r.offset}
                    out.append(doc)
            if until is not None and until(out):
                break
        return out
    finally:
        await consumer.stop()


def outside_reader(settings: Settings, topic: str, group: str) -> Any:
    """A librdkafka consumer (confluent-kafka, as a pricing system's own software) of
    ``topic`` from its beginning, in the fresh consumer group ``group``, committing nothing.
    The caller closes it."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    return consumer


async def wait_until(
    pred: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "a condition",
    every: float = 0.1,
    tolerate: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll ``pred`` (plain or async) until it is true; fail naming ``what`` after ``timeout``.

    ``tolerate`` lists exceptions that mean "not yet" (our own view of a service that is
    restarting), not a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
        except tolerate:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


def command_ok(reply: dict[str, Any]) -> dict[str, Any]:
    """A command reply that must have succeeded; a failure shows the worker's error."""
    assert reply.get("ok"), f"command failed: {reply.get('error', reply)}"
    return reply


async def committed_offsets(settings: Settings, group: str, topic: str) -> int:
    """The sum over the topic's partitions of the offsets the group has committed.

    Once this equals the number of messages produced to the topic, the group has handled and
    acknowledged every one of them, and nothing more will be processed: a condition to wait
    for before checking that nothing was counted twice. (Committed offsets, unlike the end
    offsets, do not lag on the embedded broker.)
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        total = 0
        for p in range(settings.kafka.partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


ROOT = Path(__file__).resolve().parents[2]


def pricelab(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed entry point, as an operator runs it, configured by the environment."""
    return run_pricelab(cli_env(settings), *args, timeout=timeout)


def run_pricelab(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The installed entry point with exactly this environment (a test that changes one
    setting of :func:`cli_env`'s, or removes one)."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def cli_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings as PRICELAB_ variables, and no others."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")}
    return base | settings.to_env()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Any]:
    from streams.worker.runtime import Runtime

    rt = Runtime(settings)
    await rt.ensure_started()
    try:
        yield rt
    finally:
        await rt.stop()
