"""The consumer-lag gauge: high watermark minus the next offset to process, per topic."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from streams.worker.kafka import consumer_lag
from streams.worker.metrics import Metrics


class _FaustLikeConsumer:
    def __init__(self, hw: dict[TopicPartition, int | None], committed: dict) -> None:
        self._hw = hw
        self._committed_offset = committed

    def assignment(self) -> set[TopicPartition]:
        return set(self._hw)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._hw[tp]


def test_lag_sums_partitions_per_topic_and_clips_at_zero():
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    c = _FaustLikeConsumer({a0: 100, a1: 50, b0: 7}, {a0: 89, a1: 60})  # last processed offsets
    lag = consumer_lag(c, ["a", "b", "c"])
    # a0: 100 - 90 = 10; a1 is "ahead" (stale high watermark): 0; b0 nothing processed: 7
    assert lag == {"a": 10, "b": 7, "c": 0}


def test_partitions_without_a_fetch_yet_are_skipped():
    a0 = TopicPartition("a", 0)
    assert consumer_lag(_FaustLikeConsumer({a0: None}, {}), ["a"]) == {"a": 0}


def test_gauge_exports_per_topic():
    m = Metrics(CollectorRegistry())
    m.lag({"sales": 12, "commands": 0})
    assert m.registry.get_sample_value("pricelab_consumer_lag", {"topic": "sales"}) == 12
    assert m.registry.get_sample_value("pricelab_consumer_lag", {"topic": "commands"}) == 0
