"""Fault tests with real processes, of the broker and the flip: a broker restart, a broker that
fails an analysis worker's writes, and a kill -9 in the middle of a large flip (the ground
truth and helpers: tests/integration/faults.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from streams.live.embedded import EmbeddedStack
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime
from tests.integration.conftest import (
    make_settings,
    read_topic,
    wait_until,
)
from tests.integration.faults import (
    START,
    Truth,
    _at_least,
    _merge,
    _spec,
    _worker,
    assert_panel,
    produce,
    start_experiment,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_broker_restart_workers_reconnect():
    """Tansu keeps data in memory only: a restarted broker has no topics, offsets or groups.
    The honest claim is that a worker reconnects and consumes the recreated topics."""
    with EmbeddedStack(validate_outputs=True) as stack:
        settings = make_settings(stack)
        await ensure_topics(settings)
        rt = Runtime(settings)
        await rt.ensure_started()
        w = _worker(settings)
        try:
            await start_experiment(rt, _spec())
            before = Truth(300, seed=7, tag="x")
            w.start()
            await produce(settings, before.payloads)
            await wait_for(lambda: _at_least(rt, before.n), 90, "sales before the restart")
            stack.restart_broker()
            await ensure_topics(settings)
            after = Truth(300, seed=8, tag="y")
            await produce(settings, after.payloads)
            both = _merge(before, after)
            await wait_for(lambda: _at_least(rt, both.n), 150, "sales after the broker restart")
            await assert_panel(rt, both)
        finally:
            w.stop()
            await rt.stop()


async def test_an_analysis_worker_rides_out_a_broker_that_fails_its_writes():
    """The soak's broker restart once made an analysis worker exit (status 70): the restarted
    embedded broker answered one of its estimate writes with UNKNOWN_SERVER_ERROR (-1), which
    aiokafka does not retry, and the timer took it for a bug. Here the real broker fails every
    estimate write the same way (its schema registry refuses them), for several ticks: the
    worker stays up and counts each skipped tick; once the broker is back with the topic's
    true contract, the same process publishes the experiment's estimates again."""

    from controller.store import Store
    from controller.store.clock import SharedSimulatedClock
    from controller.store.keys import clock as clock_key
    from tests.integration.test_chunked_analysis import START as T0
    from tests.integration.test_chunked_analysis import _period
    from tests.integration.test_chunked_analysis import _spec as _panel_spec

    with EmbeddedStack(validate_outputs=True) as stack:
        settings = make_settings(stack, analysis_interval=1.0)
        estimates = settings.topics.estimates
        contract = stack.schema_dir / f"{estimates}.json"
        true_contract = contract.read_text()
        # a contract no message meets: the broker answers every estimate write with -1
        refuse = {"type": "object", "properties": {"value": {"required": ["no such field"]}}}
        contract.write_text(json.dumps(refuse))
        await ensure_topics(settings)
        redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
        w = WorkerProcess(settings, ("analysis",))
        try:
            store = Store(redis, settings.key_prefix)
            spec = _panel_spec("rides-out")
            await store.create_experiment(spec, T0)
            for k in range(6):
                await _period(store, spec, k)
            await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(
                T0 + timedelta(hours=6, minutes=5)
            )
            w.start()

            def skipped() -> float:
                w.check_alive()  # an exit fails the test at once, with the log's tail
                text = w.metrics()
                return metric_value(text, "pricelab_broker_retries_total", component="analysis")

            # the fault happened, tick after tick, and the worker went on
            await wait_until(lambda: skipped() >= 3, 90, "three analysis ticks the broker failed")
            assert "UnknownError" in w.tail(20_000)
            assert await read_topic(settings, estimates, expect=1, timeout=3) == []

            contract.write_text(true_contract)  # read again when the new broker's topic is
            stack.restart_broker()  # first written (its topics are lost: docs/broker.md)
            await ensure_topics(settings)
            got = await read_topic(
                settings,
                estimates,
                expect=10**6,
                timeout=90,
                until=lambda docs: any(d.get("experiment") == spec.id for d in docs),
            )
            assert any(d.get("experiment") == spec.id for d in got), w.tail()
            w.check_alive()  # the same process: it was never restarted
        finally:
            w.stop()
            await redis.aclose()


async def test_kill9_during_a_large_flip(stack):
    """Kill the worker part-way through flipping a 10,000-product experiment: after its
    decision took a sequence number, before all its messages were out. The restarted worker
    redoes the flip with the same sequence number; no product is missing."""
    n = 10_000
    settings = make_settings(stack, flip_lease=timedelta(seconds=3), tick_interval=0.5)
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    spec = _spec(n, exp_id="bigflip")
    w = _worker(settings)

    async def flipped(k: int) -> bool:
        return (await rt.store.get_experiment(spec.id)).published_through(k)

    try:
        await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
        await rt.flipper.create(spec, backfill=True)
        w.start()
        await rt.clock.set(START + timedelta(hours=1, seconds=1))  # type: ignore[attr-defined]
        await wait_for(lambda: flipped(1), 60, "the first flip")
        await rt.clock.set(START + timedelta(hours=2, seconds=1))  # type: ignore[attr-defined]

        async def decided_not_out() -> bool:
            st = await rt.store.get_experiment(spec.id)
            return st.flipped_period == 2 and st.published < st.seq

        # between the decision (its seq taken) and the last of its 10,000 messages: poll
        # tightly, then kill there
        await wait_for(decided_not_out, 60, "the flip's decision", every=0.001)
        w.kill9()
        cut = await rt.store.get_experiment(spec.id)
        assert cut.published < cut.seq, "the flip finished before the kill"  # the fault happened
        w.start()
        await wait_for(lambda: flipped(2), 120, "the restarted worker to complete the flip")
        state = await rt.store.get_experiment(spec.id)
        assert state.seq == cut.seq == state.published  # redone with the same number
        seq = state.seq
        assert len(await rt.store.assignment_records(spec.id, 2)) == n

        def period2(msgs: list[dict[str, Any]]) -> set[str]:
            return {m["product"] for m in msgs if m["period"] == 2 and m["seq"] == seq}

        msgs = await read_topic(
            settings,
            settings.topics.assignments,
            expect=5 * n,  # more than can come: the redone flip's messages decide
            timeout=60,
            until=lambda got: len(period2(got)) == n,
        )
        assert period2(msgs) == set(spec.all_products())
    finally:
        w.stop()
        await rt.stop()
