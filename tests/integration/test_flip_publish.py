"""A flip's assignments, published a record batch at a time (``JsonPublisher.send_templated``),
reach the real broker as the model's own messages, one per product, on the partition the
producer's default partitioner picks, each product's messages in their order (the bytes are
aiokafka's own batch's: tests/unit/streams/worker/test_record_batch.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from controller.designs import forced_control, period_assignments
from controller.settings import Settings
from controller.spec import load_spec
from streams.worker.kafka import JsonPublisher
from streams.worker.metrics import Metrics
from streams.worker.schemas import encode
from streams.worker.sinks import KafkaAssignmentSink, assignment_message
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


async def test_a_whole_period_goes_out_as_the_models_messages_on_the_producers_partitions(
    settings: Settings,
) -> None:
    spec = load_spec(
        {
            "id": "pub",
            "products": [f"sku-{i}" for i in range(2500)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=6)).isoformat(),
            "timezone": "Europe/Berlin",
            "period": "PT6H",
            "washout": "PT1H",
            "seed": 5,
        }
    )
    running = period_assignments(spec, 2)
    paused = running.map(lambda a: forced_control(spec, a, "paused"))
    assert len(running.templates) > 1
    pub = JsonPublisher(settings)
    sink = KafkaAssignmentSink(pub, settings, Metrics())
    await pub.start()
    try:
        # the second publish of the same products reuses their partitions
        await sink.publish_assignments(running, 5, "running")
        await sink.publish_assignments(paused, 6, "paused")
    finally:
        await pub.stop()
    topic = settings.topics.assignments
    got = await read_topic(settings, topic, expect=2 * len(running), with_position=True)
    assert len(got) == 2 * len(running)
    want = {
        **{(a.product, 5): encode(assignment_message(a, 5, "running")) for a in running},
        **{(a.product, 6): encode(assignment_message(a, 6, "paused")) for a in paused},
    }
    parts = list(range(settings.kafka.partitions))
    pick = DefaultPartitioner()
    seqs: dict[str, list[int]] = {}
    for doc in got:
        partition = doc.pop("_partition")
        doc.pop("_offset")
        product = doc["product"]
        assert doc == json.loads(want.pop((product, doc["seq"])))
        assert partition == pick(product.encode(), parts, parts), product
        seqs.setdefault(product, []).append(doc["seq"])
    assert not want
    # a product's messages in the order they were published (one partition each)
    assert all(s == [5, 6] for s in seqs.values())
