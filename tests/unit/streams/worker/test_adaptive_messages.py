"""An adaptive ladder's messages on the estimates topic (issue #57): its AIPW estimates, its
look (``kind: adaptive``) and its verdict, as the Kafka sink writes them from what the worker
published, each valid as exactly one kind of the topic's contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import pytest

from controller.settings import Settings
from streams.worker.contracts import TOPICS, topic_schema
from streams.worker.sinks import KafkaEstimateSink
from tests.unit.analysis.test_worker_adaptive import DAYS, _look

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object, str]] = []

    async def send(self, topic: str, msg: object, key: str) -> None:
        self.sent.append((topic, msg, key))

    async def flush(self) -> None:
        pass


@pytest.mark.asyncio
async def test_an_adaptive_ladders_messages_meet_the_estimates_contract() -> None:
    got = await _look()
    capture = Capture()
    sink = KafkaEstimateSink(capture, Settings())  # type: ignore[arg-type]
    for result, cs in got.estimates:
        await sink.publish("e1", result, AS_OF, cs)
    (look,) = got.adaptive
    await sink.publish_adaptive("e1", look, AS_OF)
    (verdict,) = got.verdicts
    await sink.publish_verdict("e1", verdict, AS_OF)
    (estimates,) = [c for c in TOPICS if c.field == "estimates"]
    topic = jsonschema.Draft202012Validator(topic_schema(estimates))
    wires = [json.loads(msg.model_dump_json()) for _, msg, _ in capture.sent]  # type: ignore[attr-defined]
    for wire in wires:
        topic.validate(wire)
    *arms, adaptive, said = wires
    assert {w["estimator"] for w in arms} == {"aipw_adaptive"}
    assert all(w["ci_low"] == w["cs_low"] and w["pvalue"] is None for w in arms)
    assert adaptive["kind"] == "adaptive" and len(adaptive["allocation"]) == DAYS
    assert adaptive["allocation"][0]["probabilities"] == [0.25] * 4
    assert said["kind"] == "verdict" and said["estimator"] == "aipw_adaptive"
    with pytest.raises(jsonschema.ValidationError):  # a look without its allocation
        topic.validate({k: v for k, v in adaptive.items() if k != "allocation"})
