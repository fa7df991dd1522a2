"""``pricelab estimates EXPERIMENT [--follow]``: the latest estimates, read from the topic.

The estimates topic is read from the beginning "until idle": until no message arrived for
``idle`` seconds. It does not stop at the partitions' end offsets, because the embedded broker
(Tansu) reports a high watermark that lags the data after batched writes (docs/broker.md): a
reader that stops there misses the last messages.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.settings import Settings
from streams.errors import services_answer

COLUMNS = (
    ("estimator", "{}"),
    ("as_of", "{}"),
    ("n_periods", "{}"),
    ("effect", "{:+.4g}"),
    ("se", "{:.4g}"),
    ("df", "{:.4g}"),
    ("ci_low", "{:+.4g}"),
    ("ci_high", "{:+.4g}"),
    ("cs_low", "{:+.4g}"),
    ("cs_high", "{:+.4g}"),
    ("pvalue", "{:.3g}"),
)


async def _consumer(settings: Settings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
        topic = settings.topics.estimates
        await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def _mine(record: Any, experiment: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(record.value)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("experiment") == experiment and "estimator" in doc:
        return doc
    return None


async def all_estimates(
    settings: Settings, experiment: str, idle: float = 2.0
) -> list[dict[str, Any]]:
    """Every estimate message of ``experiment`` so far, read until ``idle`` seconds pass
    quietly (not to the end offsets, which lag the data on the embedded broker)."""
    async with services_answer(bootstrap_servers=settings.kafka.bootstrap_servers):
        consumer = await _consumer(settings)
        out: list[dict[str, Any]] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                if not batch:
                    return out
                for records in batch.values():
                    for r in records:
                        doc = _mine(r, experiment)
                        if doc is not None:
                            out.append(doc)
        finally:
            await consumer.stop()


async def latest_estimates(
    settings: Settings, experiment: str, idle: float = 2.0
) -> dict[str, dict[str, Any]]:
    """estimator -> its latest estimate message (see :func:`all_estimates`)."""
    latest: dict[str, dict[str, Any]] = {}
    for doc in await all_estimates(settings, experiment, idle):
        latest[doc["estimator"]] = doc
    return latest


async def follow_estimates(
    settings: Settings, experiment: str, emit: Callable[[dict[str, Any]], None]
) -> None:
    """Emit every new estimate of ``experiment`` as it arrives (until cancelled)."""
    async with services_answer(bootstrap_servers=settings.kafka.bootstrap_servers):
        consumer = await _consumer(settings)
        try:
            await consumer.seek_to_end()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        doc = _mine(r, experiment)
                        if doc is not None:
                            emit(doc)
                await asyncio.sleep(0)
        finally:
            await consumer.stop()


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt != "{}" and isinstance(value, int | float):
        return fmt.format(value)
    return str(value)


def render(rows: list[dict[str, Any]], as_json: bool = False) -> str:
    """A table of estimates (or JSON lines)."""
    if as_json:
        return "\n".join(json.dumps(r) for r in rows)
    table = [[name for name, _ in COLUMNS]]
    table += [[_cell(r.get(name), fmt) for name, fmt in COLUMNS] for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)) for row in table)
