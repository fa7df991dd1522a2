"""Fault tests with real processes, on the ingestion path: kill -9, SIGTERM and duplicate
delivery while sales flow, a rebalance mid-stream, and bad input through the worker.

The faults of Redis, of the broker and of several controllers are in test_faults_redis.py,
test_faults_broker.py and test_faults_controllers.py (one file each, so that the suite's
processes run them side by side: a file's tests stay on one process). The ground truth and
the helpers they share are in tests/integration/faults.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import psutil
import pytest

from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.runtime import Runtime
from tests.integration.conftest import (
    read_topic,
)
from tests.integration.faults import (
    FLOW,
    START,
    Truth,
    _at_least,
    _between,
    _http,
    _merge,
    _metric_at_least,
    _spec,
    _worker,
    assert_panel,
    counted,
    produce,
    settled,
    start_experiment,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def ready(runtime: Runtime) -> Runtime:
    await start_experiment(runtime, _spec())
    return runtime


async def test_kill9_and_sigterm_during_ingestion_then_duplicate_delivery(ready, settings):
    """kill -9 mid-stream and restart; SIGTERM mid-stream (graceful: in-flight batches finish,
    exit 0) and restart; then the whole stream again. The panel is exact after each step."""
    first = Truth(2500, seed=1, tag="a")
    w = _worker(settings).start()
    try:
        flow = asyncio.create_task(produce(settings, first.payloads, **FLOW))
        await wait_for(lambda: _between(ready, 1, first.n - 1), 90, "ingestion to start")
        w.kill9()
        assert await counted(ready) < first.n
        w.start()
        await flow
        await wait_for(lambda: _at_least(ready, first.n), 120, "all sales after kill -9")
        await assert_panel(ready, first)

        second = Truth(2500, seed=2, tag="b")
        both = _merge(first, second)
        flow = asyncio.create_task(produce(settings, second.payloads, **FLOW))
        await wait_for(lambda: _between(ready, first.n + 1, both.n - 1), 90, "more ingestion")
        w.stop()  # SIGTERM
        assert w.proc is not None and w.proc.returncode == 0
        w.start()
        await flow
        await wait_for(lambda: _at_least(ready, both.n), 120, "all sales after SIGTERM")
        await assert_panel(ready, both)

        # duplicate delivery: everything again; nothing may change
        await produce(settings, both.payloads)
        await wait_for(
            lambda: _metric_at_least(w, "pricelab_sales_total", both.n, status="dup"),
            120,
            "the redelivered sales to be seen as duplicates",
        )
        await assert_panel(ready, both)
    finally:
        w.stop()


async def test_two_workers_rebalance_mid_stream(ready, settings):
    truth = Truth(2500, seed=6)
    a = _worker(settings).start()
    b = _worker(settings)
    try:
        flow = asyncio.create_task(produce(settings, truth.payloads, **FLOW))
        await wait_for(lambda: _between(ready, 1, truth.n - 1), 90, "ingestion to start")
        b.start()  # joins the group: partitions are rebalanced mid-stream
        await flow
        await wait_for(lambda: _at_least(ready, truth.n), 120, "all sales")
        await settled(settings, truth.n)
        await assert_panel(ready, truth)
        sales = settings.topics.sales
        seen = [
            metric_value(x.metrics(), "pricelab_events_consumed_total", topic=sales) for x in (a, b)
        ]
        # the rebalance happened: the worker that joined mid-stream took a share of the sales
        assert seen[0] > 0 and seen[1] > 0, seen
        assert sum(seen) >= truth.n
    finally:
        b.stop()
        a.stop()


async def test_bad_input_through_the_worker_health_ready_and_loopback(ready, stack):
    """Junk sales and oversized or invalid commands go to the dead-letter topic with a reason
    and a metric label; the agents keep going; /health and /ready answer; every listening
    socket of the worker and of the embedded stack is on loopback."""
    settings = ready.settings.model_copy(update={"max_command_bytes": 2000})
    junk = [
        b"{not json",
        b"",
        b"\xff\xfe\x00junk",
        json.dumps(
            {
                "v": 1,
                "event_id": "n1",
                "product": "p1",
                "units": -3,
                "revenue": 1,
                "unit_price": 1,
                "occurred_at": START.isoformat(),
            }
        ).encode(),
        json.dumps(
            {
                "v": 1,
                "event_id": "n2",
                "product": "p1",
                "units": 1,
                "revenue": 1,
                "unit_price": float("nan"),
                "occurred_at": START.isoformat(),
            }
        ).encode(),
        b'{"v": 1, "event_id": "' + b"x" * 70_000 + b'"}',
        json.dumps(
            {
                "v": 1,
                "event_id": "far",
                "product": "p1",
                "units": 1,
                "revenue": 1.0,
                "unit_price": 1.0,
                "occurred_at": "2999-01-01T00:00:00+00:00",
            }
        ).encode(),
        json.dumps(
            {
                "v": 1,
                "event_id": "who",
                "product": "nope",
                "units": 1,
                "revenue": 1.0,
                "unit_price": 1.0,
                "occurred_at": (START + timedelta(hours=1, minutes=40)).isoformat(),
            }
        ).encode(),
    ]
    expected_sales = [
        "malformed_json",
        "empty",
        "malformed_json",
        "invalid_field",
        "invalid_field",
        "too_large",
        "future",
        "unknown_product",
    ]
    commands = [
        json.dumps(
            {"v": 1, "command_id": "big", "kind": "create", "spec": {"pad": "y" * 5000}}
        ).encode(),
        b"[1, 2",
        json.dumps({"v": 1, "command_id": "c2", "kind": "explode"}).encode(),
    ]
    good = Truth(50, seed=9, tag="g")
    w = WorkerProcess(settings).start()
    try:
        await produce(settings, junk + good.payloads)
        await produce(settings, commands, topic=settings.topics.commands)
        await wait_for(lambda: _at_least(ready, good.n), 90, "the good sales")
        dead = await read_topic(
            settings, settings.topics.dead_letter, expect=len(junk) + len(commands), timeout=60
        )
        by_topic: dict[str, list[str]] = {}
        for d in dead:
            by_topic.setdefault(d["source_topic"], []).append(d["reason"])
        assert sorted(by_topic[settings.topics.sales]) == sorted(expected_sales)
        assert sorted(by_topic[settings.topics.commands]) == sorted(
            ["too_large", "malformed_json", "invalid_field"]
        )
        text = w.metrics()
        for reason in set(expected_sales):
            assert metric_value(
                text, "pricelab_dead_letter_total", topic=settings.topics.sales, reason=reason
            ) == expected_sales.count(reason)
        await assert_panel(ready, good)
        # still alive: a later sale is counted
        later = Truth(10, seed=10, tag="h")
        await produce(settings, later.payloads)
        await wait_for(lambda: _at_least(ready, good.n + later.n), 60, "sales after junk")

        assert _http(w.web_port, "/health")[0] == 200
        status, body = _http(w.web_port, "/ready")
        assert status == 200 and json.loads(body)["ready"] is True

        assert w.proc is not None
        pids = [w.proc.pid, stack.broker.proc.pid, stack.redis.proc.pid]
        for pid in pids:
            listening = [
                c.laddr
                for c in psutil.Process(pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
            assert listening, pid
            assert {addr.ip for addr in listening} == {"127.0.0.1"}, (pid, listening)
    finally:
        w.stop()
