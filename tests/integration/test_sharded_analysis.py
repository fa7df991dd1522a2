"""One experiment's chunked analysis spread over two analysis workers (issue #42,
``analysis.sharded``), on the real broker and redis-server: the workers join one Kafka consumer
group on the shard topic, its assignment splits the chunks, the parts meet in Redis, and the
worker that merges publishes what one worker alone publishes (to 1e-9), each message once. A
worker killed while it holds shards does not stop the other from publishing a complete look,
and a part read at an earlier round of looks is never merged into a later one."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis.chunked import Chunking
from analysis.sharded import chunks_of, merging_shard
from analysis.worker import AnalysisWorker, InMemorySequenceTuning
from controller.clock import ManualClock
from controller.panel_source import RedisPanelSource, RedisPartialStore
from controller.settings import AnalysisSettings, Settings
from controller.store import Store
from streams.worker.shards import KafkaShardMembership
from tests.integration.conftest import ROOT, cli_env, make_settings, outside_reader, wait_until
from tests.integration.test_chunked_analysis import (
    ALL,
    HOUR,
    START,
    Sink,
    _period,
    _same,
    _spec,
    _worker,
)

pytestmark = pytest.mark.integration

CHUNKS = Chunking(above=0, products=5, sample=ALL)  # 25 products: 5 chunks over 4 shards


@pytest.fixture
async def sharded(stack: Any) -> AsyncIterator[tuple[Settings, Store]]:
    from redis.asyncio import Redis

    settings = make_settings(stack, analysis=AnalysisSettings(shards=4))
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    try:
        yield settings, Store(redis, settings.key_prefix)
    finally:
        await redis.aclose()


def _sharded_worker(
    store: Store, clock: ManualClock, shards: KafkaShardMembership, wait: float = 60.0
) -> tuple[AnalysisWorker, Sink]:
    sink = Sink()
    worker = AnalysisWorker(
        RedisPanelSource(store, clock, lateness=HOUR),
        sink,
        clock,
        verdicts=sink,
        tuning=InMemorySequenceTuning(),
        chunking=CHUNKS,
        shards=shards,
        partials=RedisPartialStore(store),
        shard_wait=wait,
    )
    return worker, sink


def _split(*members: KafkaShardMembership) -> bool:
    """Every member owns some shards, and together each shard exactly once."""
    owned = [m.owned() for m in members]
    if any(not o for o in owned):
        return False
    together = sorted(s for o in owned for s in o or ())
    return together == list(range(members[0].partitions))


async def test_two_workers_publish_what_one_publishes(sharded: tuple[Settings, Store]) -> None:
    settings, store = sharded
    spec = _spec("sharded")
    await store.create_experiment(spec, START)
    for k in range(7):
        await _period(store, spec, k)
    await _period(store, spec, 7, sold=False)
    clock = ManualClock(START + timedelta(hours=7, minutes=5))
    a, b = KafkaShardMembership(settings), KafkaShardMembership(settings)
    a.start(), b.start()
    try:
        await wait_until(lambda: _split(a, b), 60, "the group to split the shards over both")
        assert a.partitions == b.partitions == 4
        one, one_sink = _worker(store, clock, CHUNKS)
        wa, sa = _sharded_worker(store, clock, a)
        wb, sb = _sharded_worker(store, clock, b)
        for step in ("first look", "after one new period"):
            if step != "first look":
                await _period(store, spec, 7, flip=False)
                await _period(store, spec, 8, sold=False)
                clock.set(START + timedelta(hours=8, minutes=5))
            for s in (one_sink, sa, sb):
                s.messages.clear(), s.verdicts.clear()
            await one.run_once()
            await asyncio.gather(wa.run_once(), wb.run_once())
            merger, other = (sa, sb) if wa._sharded and wa._sharded.merges(spec.id) else (sb, sa)
            # only the worker that merges publishes: each message once
            assert other.messages == {} and other.verdicts == []
            assert {("dm", "units", None, None), ("ht", "revenue", None, None),
                    ("fe", "units", None, None), ("fe", "revenue", "first", None)
                    } <= one_sink.messages.keys()  # fmt: skip
            assert merger.messages.keys() == one_sink.messages.keys(), step
            for key, fields in one_sink.messages.items():
                _same(merger.messages[key], fields, f"{step} {key}")
            assert len(merger.verdicts) == len(one_sink.verdicts) == 1
            _same(merger.verdicts[0], one_sink.verdicts[0], f"{step} verdict")
        # the other worker computed its shards' chunks: their parts (only theirs) are in Redis
        other_owned = (b if merger is sa else a).owned() or frozenset()
        assert other_owned
        stored = {
            int(k.rsplit(":", 1)[1])
            async for k in store.redis.scan_iter(f"{store.exp(spec.id)}:part:*")
        }
        assert stored == set(chunks_of(5, 4, other_owned, merging_shard(spec.id, 4)))
    finally:
        await a.stop()
        await b.stop()


async def test_a_part_read_at_an_earlier_round_is_not_merged(
    sharded: tuple[Settings, Store],
) -> None:
    """Issue #42's sharding defect (1): the other worker's parts of round 1 are still in Redis
    when late sales of the open period arrive; at round 2 the merging worker looks alone (the
    other has not read round 2 yet). It must not merge the round-1 parts, whose open period
    lacks those sales: it waits for round 2's, then computes the missing chunks itself, and
    publishes what one worker publishes on the sales of round 2."""
    settings, store = sharded
    spec = _spec("stale")
    await store.create_experiment(spec, START)
    for k in range(7):
        await _period(store, spec, k)
    await _period(store, spec, 7, sold=False)  # flipped; its sales come in late
    await _period(store, spec, 8, sold=False)
    clock = ManualClock(START + timedelta(hours=8, minutes=5))  # period 7 done, still open
    a, b = KafkaShardMembership(settings), KafkaShardMembership(settings)
    a.start(), b.start()
    try:
        await wait_until(lambda: _split(a, b), 60, "the group to split the shards over both")
        one, one_sink = _worker(store, clock, CHUNKS)
        wa, sa = _sharded_worker(store, clock, a, wait=2.0)
        wb, sb = _sharded_worker(store, clock, b, wait=2.0)
        await one.run_once()
        await asyncio.gather(wa.run_once(1), wb.run_once(1))
        merging, sink, other = (wa, sa, b) if sa.messages else (wb, sb, a)
        first = dict(one_sink.messages)
        for key, fields in first.items():
            _same(sink.messages[key], fields, f"round 1 {key}")
        stale = {
            int(k.rsplit(":", 1)[1])
            async for k in store.redis.scan_iter(f"{store.exp(spec.id)}:part:*")
        }
        assert stale == set(chunks_of(5, 4, other.owned() or (), merging_shard(spec.id, 4)))
        await _period(store, spec, 7, flip=False)  # the open period's late sales
        for s in (one_sink, sink):
            s.messages.clear(), s.verdicts.clear()
        await one.run_once()
        late = one_sink.messages[("dm", "units", None, None)]
        assert late["effect"] != first[("dm", "units", None, None)]["effect"]
        await merging.run_once(2)
        assert sink.messages.keys() == one_sink.messages.keys()
        for key, fields in one_sink.messages.items():
            _same(sink.messages[key], fields, f"round 2 {key}")
    finally:
        await a.stop()
        await b.stop()


def _owned_in_log(log: Path) -> frozenset[int] | None:
    """The shards a worker process last said it owns (its log's "analysis shards owned")."""
    found = re.findall(r"analysis shards owned: \[([\d, ]*)\] of \d+", log.read_text("utf-8"))
    return frozenset(int(x) for x in found[-1].split(",") if x.strip()) if found else None


def _estimates_by_round(settings: Settings, exp: str, interval: float, rounds: int) -> list[Any]:
    """The experiment's estimates on the topic, read by librdkafka from the beginning, each as
    (round, its JSON), until ``rounds`` rounds are seen (a round: the message's timestamp over
    the interval, floored)."""
    consumer = outside_reader(settings, settings.topics.estimates, f"{settings.app_id}-rounds")
    got: list[Any] = []
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            doc = json.loads(msg.value())
            if doc.get("experiment") != exp or doc.get("kind") is not None:
                continue
            got.append((math.floor(msg.timestamp()[1] / 1000 / interval), doc))
            if len({r for r, _ in got}) > rounds:  # the last round read in full
                return got
    finally:
        consumer.close()
    raise AssertionError(f"fewer than {rounds} rounds of estimates of {exp}: {len(got)} messages")


async def test_two_worker_processes_publish_each_series_once_a_round(stack: Any) -> None:
    """Two analysis workers as an operator runs them (``pricelab worker``, the analysis role,
    ``PRICELAB_ANALYSIS__SHARDS=4``) share one experiment read in chunks. A pricing analyst's
    own client (librdkafka) reads each series of the look at most once a round (round n: the
    wall clock's n-th interval), every one with the figures one worker computes alone; the
    other worker's parts are in Redis: it computed its chunks."""
    from redis.asyncio import Redis

    from controller.store.clock import SharedSimulatedClock
    from controller.store.keys import clock as clock_key
    from streams.live.launcher import WorkerProcess
    from streams.worker.kafka import ensure_topics

    interval = 4.0
    settings = make_settings(
        stack,
        analysis=AnalysisSettings(
            shards=4, chunked_above=0, chunk_products=5, sample_products=ALL, shard_wait_s=3.0
        ),
        analysis_interval=interval,
    )
    await ensure_topics(settings)
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    as_of = START + timedelta(hours=7, minutes=5)
    await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(as_of)
    workers = [WorkerProcess(settings, ("analysis",)) for _ in range(2)]
    try:
        for w in workers:
            w.start()

        def split() -> bool:
            owned = [_owned_in_log(w.log) for w in workers]
            if any(not o for o in owned):
                return False
            together = sorted(s for o in owned for s in o or ())
            return together == [0, 1, 2, 3]

        # the experiment appears once the group has split the shards over both
        await wait_until(split, 120, "the two worker processes to split the shards")
        spec = _spec("rounds")
        await store.create_experiment(spec, START)
        for k in range(7):
            await _period(store, spec, k)
        await _period(store, spec, 7, sold=False)
        one, one_sink = _worker(store, ManualClock(as_of), CHUNKS)
        await one.run_once()
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, _estimates_by_round, settings, spec.id, interval, 2)
        for w in workers:
            w.check_alive()  # both took part throughout: no rebalance moved the merge
        parts = [k async for k in redis.scan_iter(f"{store.exp(spec.id)}:part:*")]
    finally:
        for w in workers:
            w.stop()
        await redis.aclose()
    series: dict[tuple[Any, ...], list[int]] = {}
    for rnd, doc in got:
        key = (doc["estimator"], doc["metric"], doc.get("segment"), doc.get("arm"))
        series.setdefault(key, []).append(rnd)
        want = one_sink.messages[key]
        for field in ("effect", "se", "ci_low", "ci_high"):
            _same(doc[field], want[field], f"{key} {field}")
    assert series.keys() == one_sink.messages.keys()
    for key, rounds in series.items():
        assert len(rounds) == len(set(rounds)), f"{key} published twice in a round: {rounds}"
    assert len({r for r, _ in got}) >= 2
    assert parts, "the worker that does not merge stored no part: it computed nothing"


_CHILD = """
import asyncio, os
from datetime import datetime, timedelta
from analysis.chunked import Chunking
from analysis.sharded import chunks_of, merging_shard
from analysis.worker import AnalysisWorker
from controller.clock import ManualClock
from controller.panel_source import RedisPanelSource, RedisPartialStore
from controller.settings import load_settings
from controller.store import Store, make_redis
from streams.worker.shards import KafkaShardMembership


class Drop:
    async def publish(self, *args):
        pass

    async def publish_verdict(self, *args):
        pass


async def main():
    settings = load_settings()
    store = Store(make_redis(settings), settings.key_prefix)
    clock = ManualClock(datetime.fromisoformat(os.environ["SHARD_TEST_AS_OF"]))
    shards = KafkaShardMembership(settings)
    shards.start()
    worker = AnalysisWorker(
        RedisPanelSource(store, clock, lateness=timedelta(hours=1)), Drop(), clock,
        verdicts=Drop(), chunking=Chunking(above=0, products=5, sample=10**9),
        shards=shards, partials=RedisPartialStore(store), shard_wait=60.0,
    )
    while True:
        await worker.run_once()
        await asyncio.sleep(0.05)


asyncio.run(main())
"""


@pytest.mark.parametrize("merger", ["survivor", "dead"])
async def test_a_worker_killed_while_holding_shards_does_not_stop_the_look(
    sharded: tuple[Settings, Store], merger: str
) -> None:
    """The other worker joins the group and takes shards, then dies (SIGKILL) before it stored
    any part of the look. The survivor publishes the complete look: when it merges the
    experiment, after its wait for the missing parts runs out (it computes them itself); when
    the dead worker held the merging shard, once the group gave it every shard (the dead one's
    session timed out)."""
    settings, store = sharded
    as_of = START + timedelta(hours=7, minutes=5)
    clock = ManualClock(as_of)
    mine = KafkaShardMembership(settings)
    mine.start()
    env = cli_env(settings) | {"SHARD_TEST_AS_OF": as_of.isoformat()}
    child = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=ROOT, env=env)
    try:
        await wait_until(
            lambda: child.poll() is None and bool(mine.owned()) and mine.owned() != set(range(4)),
            90,
            "both workers to be in the group, each with shards",
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        owned = mine.owned() or frozenset()
        exp_id = next(
            e
            for e in (f"killed{i}" for i in range(100))
            if (merging_shard(e, 4) in owned) == (merger == "survivor")
        )
        spec = _spec(exp_id)
        await store.create_experiment(spec, START)
        # the look's cells arrive after it died: none of its parts exists
        for k in range(7):
            await _period(store, spec, k)
        await _period(store, spec, 7, sold=False)
        one, one_sink = _worker(store, clock, CHUNKS)
        await one.run_once()
        survivor, sink = _sharded_worker(store, clock, mine, wait=3.0)

        async def published() -> bool:
            await survivor.run_once()
            return bool(sink.messages)

        await wait_until(published, 90, "the survivor to publish a look", every=0.2)
        assert sink.messages.keys() == one_sink.messages.keys()
        for key, fields in one_sink.messages.items():
            _same(sink.messages[key], fields, str(key))
        assert len(sink.verdicts) == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        await mine.stop()


async def test_the_worker_runtime_joins_the_shard_group_when_sharding_is_on(
    stack: Any,
) -> None:
    """``PRICELAB_ANALYSIS__SHARDS`` reaches the analysis worker as the worker builds it: its
    runtime joins the group and, alone in it, owns every shard; stopped, it leaves."""
    from streams.worker.kafka import ensure_topics
    from streams.worker.runtime import Runtime

    settings = make_settings(stack, analysis=AnalysisSettings(shards=3))
    await ensure_topics(settings)
    rt = Runtime(settings, roles={"analysis"})
    await rt.ensure_started()
    try:
        assert rt.shards is not None and rt.analysis._sharded is not None
        shards = rt.shards
        await wait_until(lambda: shards.owned() == {0, 1, 2}, 60, "the runtime to own every shard")
        assert shards.partitions == 3
    finally:
        await rt.stop()
    assert rt.shards.owned() is None
    off = Runtime(make_settings(stack), roles={"analysis"})
    await off.ensure_started()
    try:
        assert off.shards is None and off.analysis._sharded is None
    finally:
        await off.stop()


async def test_the_shards_are_split_again_after_a_broker_restart() -> None:
    """The embedded broker keeps its topics in memory (docs/broker.md): a restarted broker has
    no shard topic and no group. The topic comes back within seconds with nobody creating
    pricelab's topics (the members make it, or the broker does by itself at their metadata
    request, with its default count of partitions: the 20-minute soak found 4 for 2 shards),
    and the members split its partitions again, each once. Without the members' 5-second
    metadata refresh the topic stays gone for up to 5 minutes."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.live.embedded import EmbeddedStack
    from streams.worker.shards import shard_topic

    async def topics(settings: Settings) -> set[str]:
        admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    with EmbeddedStack() as stack:
        settings = make_settings(stack, analysis=AnalysisSettings(shards=3))
        a, b = KafkaShardMembership(settings), KafkaShardMembership(settings)
        a.start(), b.start()
        try:
            await wait_until(lambda: _split(a, b), 60, "the group to split the shards over both")
            assert shard_topic(settings) in await topics(settings)
            assert a.partitions == b.partitions == 3
            pid = stack.broker.proc.pid
            before = (a.generation(), b.generation())
            await asyncio.get_running_loop().run_in_executor(None, stack.restart_broker)
            assert stack.broker.proc.pid != pid  # the fault happened: a new broker process
            await wait_until(
                lambda: a.generation() > before[0] and b.generation() > before[1] and _split(a, b),
                120,
                "the shards to be split over both members again after the restart",
            )
            assert a.partitions == b.partitions >= 1  # the count the topic has now
            assert shard_topic(settings) in await topics(settings)
        finally:
            await a.stop()
            await b.stop()
