"""The analysis workers' shard group (streams/worker/shards.py): its names follow the app id,
with sharding on the analysis role's Kafka grants include its topic and group, and the
workers' rounds of looks start together on the wall clock."""

from __future__ import annotations

import asyncio

import pytest

from controller.settings import AnalysisSettings, Settings
from streams.cli.kafka_acl import kafka_roles
from streams.worker.shards import KafkaShardMembership, aligned_ticks, shard_group, shard_topic


def _analysis_grants(settings: Settings) -> dict[str, set[str]]:
    role = next(r for r in kafka_roles(settings) if r.name == "analysis")
    return {f"{kind}:{name}": set(ops) for kind, name, ops in role.grants()}


def test_the_shard_topic_and_group_follow_the_app_id() -> None:
    s = Settings(app_id="shop7", clock="wall", analysis=AnalysisSettings(shards=4))
    assert shard_topic(s) == "shop7.analysis-shards"
    assert shard_group(s) == "shop7-analysis-shards"
    m = KafkaShardMembership(s)
    assert m.partitions == 4 and m.owned() is None and m.generation() == 0


def test_the_analysis_role_may_join_the_shard_group_only_when_sharding_is_on() -> None:
    off = _analysis_grants(Settings(app_id="acl", clock="wall"))
    assert not any("analysis-shards" in k for k in off)
    on = _analysis_grants(Settings(app_id="acl", clock="wall", analysis=AnalysisSettings(shards=2)))
    assert on["topic:acl.analysis-shards"] == {"Create", "Read"}
    assert on["group:acl-analysis-shards"] == {"Read"}
    assert {k: v for k, v in on.items() if "analysis-shards" not in k} == off


class _Wall:
    """A wall clock that the fake sleep moves: no real time passes in these tests."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def _rounds(wall: _Wall, interval: float, n: int, work: float = 0.0) -> list[int]:
    got = []
    ticks = aligned_ticks(interval, wall, wall.sleep)
    async for tick in ticks:
        assert wall.now == pytest.approx(tick * interval)  # each round starts on its boundary
        got.append(tick)
        wall.now += work  # the round's looks
        if len(got) == n:
            break
    await ticks.aclose()
    return got


async def test_workers_started_apart_start_their_rounds_together() -> None:
    # interval 60 s; round 16,668 starts at 1,000,080 s
    a, b = _Wall(1_000_021.25), _Wall(1_000_059.5)  # started 38 s apart, in one interval
    assert await _rounds(a, 60.0, 3) == await _rounds(b, 60.0, 3) == [16668, 16669, 16670]
    assert a.slept[0] == pytest.approx(58.75) and b.slept[0] == pytest.approx(20.5)
    # one started after the next boundary joins from the round after: the same instants
    c = _Wall(1_000_081.0)
    assert await _rounds(c, 60.0, 2) == [16669, 16670]


async def test_a_round_that_ran_long_skips_the_rounds_it_missed_and_none_comes_twice() -> None:
    wall = _Wall(95.0)
    # each round's looks take 130 s of a 60 s interval: rounds 2, then 5 (3 and 4 missed), 8
    assert await _rounds(wall, 60.0, 3, work=130.0) == [2, 5, 8]
    on_time = _Wall(120.0)  # on a boundary: the next round, not this one again
    assert await _rounds(on_time, 60.0, 2) == [3, 4]


async def test_an_interval_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="above 0 s"):
        await anext(aiter(aligned_ticks(0.0)))


async def test_a_member_assigned_a_topic_it_cannot_see_makes_the_topic_again() -> None:
    """After a restart of a broker that keeps topics in memory the group can assign a member
    nothing of a topic its metadata no longer has: the member owns no shard and, at its next
    poll, makes the topic again (the broker may also make it by itself, TopicAlreadyExists is
    then ignored)."""
    from aiokafka import TopicPartition

    s = Settings(app_id="gone", clock="wall", analysis=AnalysisSettings(shards=2))
    m = KafkaShardMembership(s)
    made: list[str] = []

    class Consumer:
        def __init__(self, known: set[int] | None) -> None:
            self.known = known

        def partitions_for_topic(self, topic: str) -> set[int] | None:
            return self.known

    async def ensure() -> None:
        made.append(m.topic)

    m._ensure_topic = ensure  # type: ignore[method-assign]
    m._consumer = Consumer({0, 1})  # type: ignore[assignment]
    m._assigned({TopicPartition(m.topic, 1)})
    assert m.owned() == {1} and not m._topic_gone
    m._consumer = Consumer(None)  # type: ignore[assignment]
    m._assigned(set())
    assert m.owned() == frozenset() and m._topic_gone and m.partitions == 2
    # the poll loop (_run, with the consumer it made) makes the topic before its next poll

    class Polled:
        def __init__(self) -> None:
            self.polls = 0

        async def getmany(self, timeout_ms: int) -> dict[object, object]:
            self.polls += 1
            if self.polls == 2:
                raise asyncio.CancelledError
            return {}

    polled = Polled()
    m._consumer = polled  # type: ignore[assignment]
    with pytest.raises(asyncio.CancelledError):
        await m._run()
    assert made == [m.topic] and not m._topic_gone
