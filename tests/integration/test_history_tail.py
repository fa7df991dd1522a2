"""``pricelab experiment history`` reads the whole trail when the broker's end offsets lag the
data: Tansu reports the last batch's base offset + 1 after a batched write (docs/broker.md),
and a read that stopped there missed the last batch. In CI of 2026-11-29 the README
walkthrough's ``experiment history walkthrough`` printed "no record of experiment" once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from controller.settings import Settings
from streams.client.history import read_trail

pytestmark = pytest.mark.integration


async def test_a_trail_written_in_one_batch_is_read_whole(settings: Settings) -> None:
    topic = settings.topics.experiment_events
    at = datetime(2026, 6, 1, tzinfo=UTC)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=500, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        sent = [
            producer.send(
                topic,
                json.dumps(
                    {
                        "experiment": "batched",
                        "kind": "flipped",
                        "at": (at + timedelta(hours=k)).isoformat(),
                        "detail": {"period": k, "order": k},
                    }
                ).encode(),
                key=b"batched",
            )
            for k in range(40)
        ]
        done = [await s for s in sent]
        await producer.flush()
    finally:
        await producer.stop()
    # the 40 went out together: one partition, consecutive offsets
    meta = [await d for d in done]
    assert len({m.partition for m in meta}) == 1
    trail = await read_trail(settings, "batched")
    assert [r["detail"]["period"] for r in trail.records] == list(range(40))
