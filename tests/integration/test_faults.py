"""Fault tests with real processes: kill -9, SIGTERM, duplicate delivery, Redis restarts with
AOF, a broker restart, a rebalance, and a kill in the middle of a large flip.

The ground truth is computed here from the events themselves, not by pricelab: every sale
falls in the second half of an hour-long period (after any washout or head), so each one is
'ok' and lands in its (period, product) cell. Revenues are multiples of 0.25, so float sums
are exact and the panel must match to the last bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from controller.settings import KafkaSettings, Settings
from controller.spec import ExperimentSpec, load_spec
from controller.store.base import answers_as_primary, make_redis
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port, redis_binary
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.app import group_ids
from streams.worker.handlers import EXIT_UNSAFE_TO_ACK
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime
from tests.integration.conftest import (
    command_ok,
    committed_offsets,
    make_settings,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
PERIODS = 6
# a stream that still flows for ~10 s after the worker is up: its sales consumer takes one
# batch of up to 2,000 events, so a stream produced all at once could be ingested before any
# fault, in a single batch
FLOW: dict[str, Any] = {"chunk": 25, "pace": 0.1}
N_PRODUCTS = 40


def _spec(n_products: int = N_PRODUCTS, exp_id: str = "faults") -> ExperimentSpec:
    return load_spec(
        {
            "id": exp_id,
            "products": [f"p{i}" for i in range(n_products)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=2)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
        }
    )


class Truth:
    """Sales and the panel they must produce."""

    def __init__(self, n: int, seed: int, tag: str = "s") -> None:
        rng = random.Random(seed)
        self.payloads: list[bytes] = []
        self.cells: dict[str, float] = {}
        for i in range(n):
            k = rng.randrange(PERIODS)
            product = f"p{rng.randrange(N_PRODUCTS)}"
            at = START + timedelta(
                hours=k, minutes=30 + rng.randrange(29), seconds=rng.randrange(60)
            )
            # sales, returns (negative) and goods by weight: eighths and multiples of 0.25
            # for prices keep every float sum exact
            units = rng.choice([rng.randint(1, 4), -rng.randint(1, 2), rng.randint(1, 31) / 8])
            price = rng.randint(4, 200) / 4
            self.payloads.append(
                json.dumps(
                    {
                        "v": 1,
                        "event_id": f"{tag}{i}",
                        "product": product,
                        "units": units,
                        "revenue": units * price,
                        "unit_price": price,
                        "occurred_at": at.isoformat(),
                    }
                ).encode()
            )
            for f, v in (("u", units), ("r", units * price), ("n", int(units > 0))):
                key = f"{k}|{product}|{f}"
                self.cells[key] = self.cells.get(key, 0) + v  # a return is no order
        self.cells = {c: v for c, v in self.cells.items() if v != 0}  # as the store lists them
        self.units = sum(v for c, v in self.cells.items() if c.endswith("|u"))
        self.n = n


async def produce(
    settings: Settings,
    payloads: list[bytes],
    topic: str | None = None,
    pace: float = 0.0,
    chunk: int = 200,
) -> None:
    prod = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
    )
    await prod.start()
    try:
        for i in range(0, len(payloads), chunk):
            futs = [
                await prod.send(topic or settings.topics.sales, p) for p in payloads[i : i + chunk]
            ]
            await asyncio.gather(*futs)
            if pace:
                await asyncio.sleep(pace)
    finally:
        await prod.stop()


async def counted(rt: Runtime, exp_id: str = "faults") -> int:
    totals = await rt.store.totals(exp_id)
    return sum(v for k, v in totals.items() if k.startswith("events:"))


# our own view of Redis may fail while it restarts: that is "not yet", not a failure
wait_for = partial(wait_until, tolerate=(RedisConnectionError, OSError))


async def settled(settings: Settings, produced: int) -> None:
    """Wait until the worker group has committed every sale produced: nothing more will be
    processed, so a panel checked now would show any double count."""
    group = group_ids(settings, ("controller",))["sales"]

    async def done() -> bool:
        return await committed_offsets(settings, group, settings.topics.sales) >= produced

    await wait_for(done, 60, f"the workers to commit all {produced} sales")


async def assert_panel(rt: Runtime, truth: Truth, exp_id: str = "faults") -> None:
    cells = {k: float(v) for k, v in (await rt.store.cells(exp_id)).items()}
    assert cells == truth.cells
    assert await rt.store.excluded(exp_id) == {}
    assert await rt.store.totals(exp_id) == {"units:ok": truth.units, "events:ok": truth.n}


async def start_experiment(rt: Runtime, spec: ExperimentSpec) -> None:
    """Create the experiment and flip periods 0..PERIODS-1; the clock ends in period PERIODS."""
    at = START + timedelta(seconds=1)
    await rt.clock.set(at)  # type: ignore[attr-defined]
    await rt.flipper.create(spec, backfill=True)
    for k in range(1, PERIODS + 1):
        await rt.clock.set(START + timedelta(hours=k, seconds=1))  # type: ignore[attr-defined]
        await rt.flipper.tick()


@pytest.fixture
async def ready(runtime: Runtime) -> Runtime:
    await start_experiment(runtime, _spec())
    return runtime


def _worker(settings: Settings) -> WorkerProcess:
    return WorkerProcess(settings)


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


async def _between(rt: Runtime, lo: int, hi: int) -> bool:
    return lo <= await counted(rt) <= hi


async def _at_least(rt: Runtime, n: int) -> bool:
    return await counted(rt) >= n


async def _metric_at_least(w: WorkerProcess, name: str, n: float, **labels: str) -> bool:
    try:
        return metric_value(w.metrics(), name, **labels) >= n
    except OSError:
        return False


async def test_shutdown_during_redis_outage_exits_without_acking():
    """Redis down, worker retrying a batch, SIGTERM: it must exit hard (75), not ack."""
    with EmbeddedStack(redis_aof=True, validate_outputs=True) as stack:
        settings = make_settings(stack)
        await ensure_topics(settings)
        rt = Runtime(settings)
        await rt.ensure_started()
        w = _worker(settings)
        try:
            await start_experiment(rt, _spec())
            w.start()
            first = Truth(500, seed=3, tag="a")
            await produce(settings, first.payloads)
            await wait_for(lambda: _at_least(rt, first.n), 90, "the first sales")
            assert stack.redis is not None
            stack.redis.stop()
            second = Truth(500, seed=4, tag="b")
            await produce(settings, second.payloads)
            await wait_for(
                lambda: _metric_at_least(w, "pricelab_redis_retries_total", 1),
                60,
                "the worker to retry Redis",
            )
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
            code = w.proc.wait(60)
            assert code == EXIT_UNSAFE_TO_ACK
            stack.redis.start()
            w.start()
            both = _merge(first, second)
            await wait_for(lambda: _at_least(rt, both.n), 120, "the redelivered batch")
            await assert_panel(rt, both)
        finally:
            w.stop()
            await rt.stop()


def _merge(a: Truth, b: Truth) -> Truth:
    out = Truth(0, seed=0)
    out.payloads = a.payloads + b.payloads
    for src in (a, b):
        for k, v in src.cells.items():
            out.cells[k] = out.cells.get(k, 0) + v
    # a return in one truth can net a sale of the other to zero: the store lists no such cell
    out.cells = {c: v for c, v in out.cells.items() if v != 0}
    out.units, out.n = a.units + b.units, a.n + b.n
    return out


async def test_redis_restart_with_aof_while_events_flow():
    """kill -9 Redis (AOF, fsync always) mid-stream, then kill -9 the worker while Redis is
    still down, so an unwritten batch is in flight. Nothing may be lost (the offsets of the
    unwritten batch were never committed) and nothing doubled (dedupe survives in the AOF)."""
    with EmbeddedStack(redis_aof=True, validate_outputs=True) as stack:
        settings = make_settings(stack)
        await ensure_topics(settings)
        rt = Runtime(settings)
        await rt.ensure_started()
        w = _worker(settings)
        try:
            await start_experiment(rt, _spec())
            truth = Truth(2000, seed=5)
            w.start()
            flow = asyncio.create_task(produce(settings, truth.payloads, **FLOW))
            await wait_for(lambda: _between(rt, 1, truth.n - 1), 90, "ingestion to start")
            at_kill = await counted(rt)
            stack.restart_redis(kill=True)  # comes back at once from the AOF
            # nothing acknowledged before the kill is gone, and the worker writes again
            await wait_for(
                lambda: _at_least(rt, at_kill + 1), 60, "ingestion to resume after the restart"
            )
            assert not flow.done(), "the stream ended before Redis went down again"
            retried = _retries(w)
            assert stack.redis is not None
            stack.redis.kill()
            await wait_for(
                lambda: _retries(w) > retried, 60, "the worker to retry a batch it cannot write"
            )
            w.kill9()
            stack.redis.start()
            await flow
            w.start()
            await wait_for(lambda: _at_least(rt, truth.n), 120, "all sales")
            await settled(settings, truth.n)
            await assert_panel(rt, truth)
        finally:
            w.stop()
            await rt.stop()


async def test_a_worker_rides_out_a_failover_that_demotes_its_redis(tmp_path):
    """A failover as a managed Redis makes one: the primary the worker's URL reaches becomes
    a replica (Redis's own FAILOVER, which leaves its clients connected, so every write of
    theirs meets READONLY), and later fails back. The worker must take READONLY for the
    outage it is (retry, reconnect, say it is not ready) rather than for a bug (exit), and
    count every sale once."""
    async with contextlib.AsyncExitStack() as done:
        stack = done.enter_context(EmbeddedStack(validate_outputs=True))
        host, port = stack.host, stack.redis_port
        replica_port = free_port(host)
        replica = ManagedProcess(
            "redis-replica",
            [str(redis_binary()), "--port", str(replica_port), "--bind", host, "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), "--replicaof", host, str(port)],
            host, replica_port, tmp_path / "replica.log",
        )  # fmt: skip
        done.callback(replica.stop)
        replica.start()
        primary = Redis(host=host, port=port, decode_responses=True)
        done.push_async_callback(primary.aclose)
        other = Redis(host=host, port=replica_port, decode_responses=True)
        done.push_async_callback(other.aclose)
        settings = make_settings(stack)
        ours = make_redis(settings)
        done.push_async_callback(ours.aclose)
        await ensure_topics(settings)
        rt = Runtime(settings)
        done.push_async_callback(rt.stop)
        await rt.ensure_started()
        w = _worker(settings)
        done.callback(w.stop)
        await start_experiment(rt, _spec())

        async def role_of(r: Redis, role: str) -> bool:
            info = await r.info("replication")
            return bool(
                info["role"] == role
                and (role != "master" or info.get("slave0", {}).get("state") == "online")
            )

        async def ids_on(r: Redis) -> set[int]:
            return {int(c["id"]) for c in await r.client_list()}

        await wait_for(lambda: role_of(primary, "master"), 30, "the replica to sync")
        truth = Truth(3000, seed=11, tag="f")
        w.start()
        pid = w.pid
        flow = asyncio.create_task(produce(settings, truth.payloads, **FLOW))
        done.callback(flow.cancel)
        await wait_for(lambda: _between(rt, 1, truth.n - 1), 90, "ingestion to start")
        retried = _retries(w)
        # two connections in pricelab's pool (the refused write below takes one)
        pool = ours.connection_pool

        async def pooled_ids() -> set[int]:
            conns = [await pool.get_connection(), await pool.get_connection()]
            ids = set()
            for conn in conns:
                await conn.send_command("CLIENT", "ID")
                ids.add(int(await conn.read_response()))
            for conn in conns:
                await pool.release(conn)
            return ids

        before_ids = await pooled_ids()
        probe_id = await primary.client_id()
        assert await primary.execute_command("FAILOVER") == "OK"
        await wait_for(lambda: role_of(primary, "slave"), 30, "the failover to demote it")
        # the fault is real: a client keeps its connection, and its writes are refused
        with pytest.raises(ReadOnlyError):
            await primary.set("pricelab-failover-probe", 1)
        assert await primary.client_id() == probe_id
        # pricelab's client takes READONLY for a lost connection, and opens every pooled
        # connection again before its next command, the one the write did not use too
        with pytest.raises(RedisConnectionError, match="answered as a replica"):
            await ours.set("pricelab-failover-probe", 1)
        assert not (await pooled_ids() & before_ids)

        async def old_ones_closed() -> bool:
            return not (before_ids & await ids_on(primary))

        await wait_for(old_ones_closed, 10, "the connections opened before it to be closed")
        assert probe_id in await ids_on(primary)
        await wait_for(
            lambda: _retries(w) > retried, 60, "the worker to retry sales READONLY refused"
        )
        await wait_for(
            lambda: "replica" in _ready(w).get("redis", ""), 30, "/ready to name the replica"
        )
        assert not await answers_as_primary(ours)
        assert w.alive() and w.pid == pid, w.tail()
        await wait_for(lambda: role_of(other, "master"), 30, "the demoted node to follow")
        assert await other.execute_command("FAILOVER") == "OK"  # fail back
        await wait_for(lambda: role_of(primary, "master"), 30, "the failback")
        await flow
        await wait_for(lambda: _at_least(rt, truth.n), 120, "all sales after the failback")
        await settled(settings, truth.n)
        await assert_panel(rt, truth)
        await wait_for(lambda: _ready(w).get("ready"), 60, "the worker to be ready again")
        assert await answers_as_primary(ours)
        # asking leaves the client's answers as they were (a HELLO 2 on a pooled RESP3
        # connection switched the server to RESP2 on it: HGETALL answered a list)
        await ours.hset("pricelab-failover-probe-h", "a", "1")
        assert await ours.hgetall("pricelab-failover-probe-h") == {"a": "1"}
        assert w.alive() and w.pid == pid, w.tail()  # ridden out, never restarted


def _ready(w: WorkerProcess) -> dict[str, Any]:
    """The worker's /ready answer (503 when not ready)."""
    url = f"http://127.0.0.1:{w.web_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return dict(json.load(r))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))


def _retries(w: WorkerProcess) -> float:
    return metric_value(w.metrics(), "pricelab_redis_retries_total", component="sales")


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


def _http(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


SCALE_SEED = 3


async def test_three_controllers_share_the_load_and_survive_a_kill9(stack):
    """Three controller workers share six partitions: the sales are spread across them and
    every flip is done exactly once (by the workers' own counts: one flip and one message per
    product each), with one identical message per product and period on the topic (the
    producer is at-least-once, so a copy may appear). One of them (seeded) is killed with -9 at a seeded
    point of the stream; the other two take over its partitions and a flip that falls due
    while it is dead, and the panel equals the ground truth."""
    settings = make_settings(
        stack,
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=6),
        tick_interval=0.1,
    )
    await ensure_topics(settings)
    rt = Runtime(settings)
    await rt.ensure_started()
    workers = [_worker(settings) for _ in range(3)]
    rng = random.Random(SCALE_SEED)
    victim = rng.randrange(3)
    truth = Truth(3000, seed=9)
    kill_at = int(rng.uniform(0.2, 0.5) * truth.n)
    spec = _spec()
    sales_group = group_ids(settings, ("controller",))["sales"]

    async def flipped(k: int) -> bool:
        return (await rt.store.get_experiment(spec.id)).published_through(k)

    def flips_done(w: WorkerProcess) -> tuple[float, float]:
        """(flips completed, assignment messages the app sent) by one worker."""
        text = w.metrics()
        return (
            metric_value(text, "pricelab_flips_total", experiment=spec.id),
            metric_value(text, "pricelab_assignments_published_total"),
        )

    def consumed(w: WorkerProcess) -> float:
        return metric_value(
            w.metrics(), "pricelab_events_consumed_total", topic=settings.topics.sales
        )

    try:
        for w in workers:
            w.launch()
        for w in workers:
            w.wait_healthy()
        for w in workers:  # all three hold sales partitions before the load starts
            await wait_for(
                lambda w=w: _metric_at_least(
                    w, "pricelab_consumer_group_assigned", 1, group=sales_group
                ),
                60,
                "every worker to be assigned sales partitions",
            )
        await rt.clock.set(START + timedelta(seconds=1))  # type: ignore[attr-defined]
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=spec.model_dump(mode="json")
            )
        )
        await wait_for(lambda: flipped(0), 30, "the first flip")
        for k in range(1, PERIODS + 1):
            await rt.clock.set(START + timedelta(hours=k, seconds=1))  # type: ignore[attr-defined]
            await wait_for(lambda k=k: flipped(k), 30, f"flip {k}")

        flow = asyncio.create_task(produce(settings, truth.payloads, **FLOW))
        await wait_for(lambda: _at_least(rt, kill_at), 90, f"{kill_at} sales counted")
        victim_consumed = consumed(workers[victim])
        # every flip before the kill is complete: what the victim did of them, counted by it
        victim_flips = flips_done(workers[victim])
        workers[victim].kill9()
        counted_at_kill = await counted(rt)
        # the fault happened mid-stream, to a worker that was doing its share
        assert workers[victim].proc is not None and workers[victim].proc.returncode == -9
        assert counted_at_kill < truth.n and victim_consumed > 0
        # a boundary passes while the victim is dead: the survivors flip it, once
        due = PERIODS + 1
        await rt.clock.set(START + timedelta(hours=due, seconds=1))  # type: ignore[attr-defined]
        await wait_for(lambda: flipped(due), 60, f"flip {due} by the survivors")
        await flow
        await wait_for(lambda: _at_least(rt, truth.n), 120, "all sales")
        await settled(settings, truth.n)
        await assert_panel(rt, truth)

        survivors = [w for i, w in enumerate(workers) if i != victim]
        shares = [consumed(w) for w in survivors]
        assert all(s > 0 for s in shares), shares
        assert victim_consumed + sum(shares) >= truth.n
        state = await rt.store.get_experiment(spec.id)
        assert state.flipped_period == due and state.missed_flips == 0
        # each flip was done once by the workers' own count (a redone flip would reuse its seq
        # and records, so the topic alone could not tell it from a producer retry)
        done = [victim_flips] + [flips_done(w) for w in survivors]
        assert sum(f for f, _ in done) == due + 1, done
        assert sum(n for _, n in done) == (due + 1) * N_PRODUCTS, done

        # read for 10 s: every flip completed before this point, so any second publish of
        # one is already on the topic
        msgs = await read_topic(
            settings,
            settings.topics.assignments,
            expect=(due + 2) * N_PRODUCTS,
            timeout=10,
            with_position=True,
        )
        positions = Counter((m["_partition"], m["_offset"]) for m in msgs)
        assert max(positions.values()) == 1, "the reader was handed one record twice"
        # one flip per period: one decision (seq, arm, policy) for every product, one seq per
        # period, rising; the producer is at-least-once (no idempotent producer on Tansu), so a
        # decision may reach the topic more than once, identical
        decisions: dict[tuple[int, str], set[str]] = {}
        for m in msgs:  # the whole message, its position on the topic aside
            whole = json.dumps(
                {k: v for k, v in m.items() if not k.startswith("_")}, sort_keys=True
            )
            decisions.setdefault((m["period"], m["product"]), set()).add(whole)
        expected = {(k, p) for k in range(due + 1) for p in spec.all_products()}
        assert set(decisions) == expected, sorted(Counter(k for k, _ in decisions).items())
        assert all(len(d) == 1 for d in decisions.values()), {
            key: d for key, d in decisions.items() if len(d) > 1
        }
        seqs = [sorted({m["seq"] for m in msgs if m["period"] == k}) for k in range(due + 1)]
        assert all(len(s) == 1 for s in seqs) and [s[0] for s in seqs] == sorted(
            {s[0] for s in seqs}
        ), seqs
        republished = len(msgs) - len(decisions)
        dups = sum(
            metric_value(w.metrics(), "pricelab_sales_total", status="dup") for w in survivors
        )
        print(
            f"scale-out: victim worker {victim} killed at {counted_at_kill}/{truth.n} sales "
            f"counted, having consumed {victim_consumed:.0f}; survivors consumed "
            f"{', '.join(f'{s:.0f}' for s in shares)}; redelivered and deduplicated: {dups:.0f}; "
            f"assignment messages published twice: {republished}"
        )
    finally:
        for w in workers:
            w.stop()
        await rt.stop()


async def test_an_analysis_worker_rides_out_a_broker_that_fails_its_writes():
    """The soak's broker restart once made an analysis worker exit (status 70): the restarted
    embedded broker answered one of its estimate writes with UNKNOWN_SERVER_ERROR (-1), which
    aiokafka does not retry, and the timer took it for a bug. Here the real broker fails every
    estimate write the same way (its schema registry refuses them), for several ticks: the
    worker stays up and counts each skipped tick; once the broker is back with the topic's
    true contract, the same process publishes the experiment's estimates again."""
    from redis.asyncio import Redis

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
