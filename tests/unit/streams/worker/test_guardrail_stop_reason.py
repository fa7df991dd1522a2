"""A k-arm guardrail's stop command names the arm that breached it.

One arm's breach stops the whole experiment (the kill switch). The stop command's reason is
what the operator's trail and ``pricelab show`` say; it named the metric alone, so with three
arms it could not tell which arm lost the sales (only the event's detail did).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.settings import Settings
from streams.worker.sinks import KafkaGuardrailSink


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []

    async def send(self, topic: str, msg: Any, key: str) -> None:
        self.sent.append((topic, msg, key))

    async def flush(self) -> None:
        pass


def _sink(publisher: _Publisher) -> KafkaGuardrailSink:
    return KafkaGuardrailSink(publisher, Settings(), lambda: datetime(2026, 6, 1, tzinfo=UTC))  # type: ignore[arg-type]


async def test_the_stop_reason_names_the_arm_of_a_k_arm_breach() -> None:
    publisher = _Publisher()
    await _sink(publisher).trip("e1", "units", {"arm": "p110", "max_drop_pct": 5.0})
    stop = publisher.sent[0][1]
    assert stop.reason == "guardrail units (arm p110): drop beyond 5.0%"


async def test_a_two_arm_stop_reason_is_unchanged() -> None:
    publisher = _Publisher()
    await _sink(publisher).trip("e1", "units", {"max_drop_pct": 5.0})
    assert publisher.sent[0][1].reason == "guardrail units: drop beyond 5.0%"
