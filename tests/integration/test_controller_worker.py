"""A real controller worker process (faust agents on Tansu, state in Redis)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import JsonPublisher
from tests.integration.conftest import command_ok, read_topic, wait_until

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
PRODUCTS = [f"P{i:03d}" for i in range(40)]


def spec_doc(exp_id: str = "live-1", **kw):
    doc = dict(
        id=exp_id,
        products=PRODUCTS,
        treatment_policy="new",
        control_policy="old",
        start=START.isoformat(),
        end=(START + timedelta(days=10)).isoformat(),
        timezone="UTC",
        washout="PT1H",
        seed=5,
    )
    doc.update(kw)
    return doc


@pytest.fixture
async def store_and_clock(settings):
    redis = make_redis(settings)
    try:
        yield (
            Store(redis, settings.key_prefix),
            SharedSimulatedClock(redis, clock_key(settings.key_prefix)),
        )
    finally:
        await redis.aclose()


async def test_two_workers_flip_each_boundary_exactly_once(settings, store_and_clock):
    store, clock = store_and_clock
    await clock.set(START + timedelta(minutes=5))
    settings = settings.model_copy(update={"tick_interval": 0.1})
    workers = [WorkerProcess(settings).start(), WorkerProcess(settings).start()]
    try:
        command_ok(
            await send_command_async(settings, "create", timeout=60, backfill=True, spec=spec_doc())
        )
        for day in (1, 2, 3):
            await clock.set(START + timedelta(days=day, minutes=1))
            await wait_until(lambda d=day: _flipped(store, "live-1", d), what=f"flip {day}")
        msgs = await read_topic(settings, settings.topics.assignments, expect=4 * len(PRODUCTS))
        per_period = Counter(m["period"] for m in msgs if m["experiment"] == "live-1")
        assert per_period == {0: 40, 1: 40, 2: 40, 3: 40}
        seqs = {m["period"]: m["seq"] for m in msgs}
        assert sorted(seqs.values()) == sorted(set(seqs.values()))  # one version per flip
        state = await store.get_experiment("live-1")
        assert state.flips == 4 and state.missed_flips == 0
        # both workers ran the timer; the flips were split between them, never doubled
        total = sum(metric_value(w.metrics(), "pricelab_flips_total") for w in workers)
        assert total == 4
    finally:
        for w in workers:
            w.stop()


async def _flipped(store: Store, exp: str, k: int) -> bool:
    return (await store.get_experiment(exp)).published_through(k)


async def test_catch_up_after_downtime_records_missed_flips(settings, store_and_clock):
    store, clock = store_and_clock
    await clock.set(START + timedelta(minutes=5))
    w = WorkerProcess(settings).start()
    try:
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=spec_doc("cu")
            )
        )
        await wait_until(lambda: _flipped(store, "cu", 0), what="first flip")
    finally:
        w.kill9()
    await clock.set(START + timedelta(days=3, hours=5))  # three boundaries pass while down
    w = WorkerProcess(settings).start()
    try:
        await wait_until(lambda: _flipped(store, "cu", 3), timeout=90, what="catch-up flip")
        state = await store.get_experiment("cu")
        assert state.missed_flips == 2  # periods 1 and 2 were never in force
        events = await read_topic(settings, settings.topics.experiment_events, expect=2)
        missed = [e for e in events if e["kind"] == "missed_flips"]
        assert missed and missed[0]["detail"]["missed"] == 2
    finally:
        w.stop()


async def test_kill_switch_returns_products_to_control_within_a_second(settings, store_and_clock):
    store, clock = store_and_clock
    await clock.set(START + timedelta(hours=6))
    w = WorkerProcess(settings).start()
    try:
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=spec_doc("ks")
            )
        )
        t0 = time.monotonic()
        reply = await send_command_async(
            settings, "stop", timeout=30, experiment="ks", reason="guardrail"
        )
        elapsed = time.monotonic() - t0
        command_ok(reply)
        msgs = await read_topic(settings, settings.topics.assignments, expect=2 * len(PRODUCTS))
        stopped = [m for m in msgs if m["status"] == "stopped"]
        assert len(stopped) == len(PRODUCTS)
        assert {m["policy"] for m in stopped} == {"old"}
        assert elapsed < 1.0, f"stop took {elapsed:.2f}s from command to reply"
        # the products are free again: a new experiment may take them
        command_ok(
            await send_command_async(
                settings, "create", timeout=30, backfill=True, spec=spec_doc("ks2")
            )
        )
    finally:
        w.stop()


async def test_overlapping_experiment_is_refused_with_a_reason(settings, store_and_clock):
    store, clock = store_and_clock
    await clock.set(START + timedelta(hours=6))
    w = WorkerProcess(settings).start()
    try:
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=spec_doc("ov1")
            )
        )
        reply = await send_command_async(
            settings,
            "create",
            timeout=30,
            backfill=True,
            spec=spec_doc("ov2", products=["P001", "X9"]),
        )
        assert not reply["ok"]
        assert "P001" in reply["error"] and "ov1" in reply["error"]
        bad = await send_command_async(
            settings, "create", timeout=30, backfill=True, spec=spec_doc("bad", washout="P3D")
        )
        assert not bad["ok"] and bad["error"].startswith("washout")
    finally:
        w.stop()


async def _positions(settings, topic: str, n: int) -> dict[bytes, tuple[int, int]]:
    """Each of a topic's first ``n`` messages (values distinct) -> (partition, offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: dict[bytes, tuple[int, int]] = {}
        deadline = time.monotonic() + 20
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.update({r.value: (r.partition, r.offset) for r in records})
        return out
    finally:
        await consumer.stop()


async def test_agent_survives_bad_input_and_counts_good_sales(settings, store_and_clock):
    store, clock = store_and_clock
    await clock.set(START + timedelta(hours=20))
    w = WorkerProcess(settings).start()
    pub = JsonPublisher(settings)
    await pub.start()
    try:
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=spec_doc("bi")
            )
        )
        at = START + timedelta(hours=12)
        raw = [b"\xff\xfe", b'{"v": 3}', b"[1,2,3]" * 20000]
        for i in range(30):
            raw.append(
                json.dumps(
                    {
                        "v": 1,
                        "event_id": f"s{i}",
                        "product": PRODUCTS[i],
                        "units": 1,
                        "revenue": 2.5,
                        "unit_price": 2.5,
                        "occurred_at": at.isoformat(),
                    }
                ).encode()
            )
        for r in raw:
            await pub.send(settings.topics.sales, r, None)
        await pub.flush()

        async def all_counted() -> bool:
            t = await store.totals("bi")
            return sum(v for k, v in t.items() if k.startswith("events:")) >= 30

        await wait_until(all_counted, timeout=40, what="sales counted")
        dead = await read_topic(settings, settings.topics.dead_letter, expect=3)
        assert sorted(d["reason"] for d in dead) == [
            "malformed_json",
            "too_large",
            "unsupported_version",
        ]
        # each names where its original sits on the sales topic (the worker's consumer hands
        # aiokafka's records to the handler as they are)
        where = await _positions(settings, settings.topics.sales, len(raw))
        for d in dead:
            original = base64.b64decode(d["original_b64"])
            assert (d["partition"], d["offset"]) == where[original]
        m = w.metrics()
        assert metric_value(m, "pricelab_dead_letter_total") == 3
        assert metric_value(m, "pricelab_sales_total", status="ok") == 30
    finally:
        await pub.stop()
        w.stop()


async def test_ready_needs_every_consumer_group_and_the_next_flip_is_exported(
    settings, store_and_clock
):
    import urllib.request

    from controller.periods import period_start
    from controller.spec import load_spec

    store, clock = store_and_clock
    await clock.set(START + timedelta(hours=3))
    w = WorkerProcess(settings).start()
    try:
        reply = await send_command_async(
            settings, "create", timeout=60, backfill=True, spec=spec_doc("rd")
        )
        command_ok(reply)

        def ready() -> dict:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/ready", timeout=5) as r:
                    return json.loads(r.read()) | {"status": r.status}
            except urllib.error.HTTPError as exc:  # 503 while not ready
                return json.loads(exc.read()) | {"status": exc.code}

        async def is_ready() -> bool:
            return (await asyncio.to_thread(ready))["status"] == 200

        await wait_until(is_ready, timeout=60, what="/ready")
        doc = await asyncio.to_thread(ready)
        groups = doc["groups"]
        app_id = f"{settings.app_id}-controller"
        assert set(groups) == {app_id, f"{app_id}-sales", f"{app_id}-competitor"}
        assert all(g["assigned"] for g in groups.values()) and doc["unassigned"] == []

        async def exported() -> bool:
            return metric_value(w.metrics(), "pricelab_ready") == 1.0

        await wait_until(exported, timeout=20, what="pricelab_ready = 1")
        spec = load_spec(spec_doc("rd"))
        due = metric_value(w.metrics(), "pricelab_next_flip_due_timestamp_seconds", experiment="rd")
        assert due == period_start(spec, 1).timestamp()  # period 0 flipped; period 1 next
        m = w.metrics()
        for g in groups:
            assert metric_value(m, "pricelab_consumer_group_assigned", group=g) == 1.0
    finally:
        w.stop()
