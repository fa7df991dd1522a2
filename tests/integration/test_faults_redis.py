"""Fault tests with real processes, of Redis: a shutdown during an outage, a restart from its
AOF while sales flow, and a failover that demotes the worker's Redis (the ground truth and
helpers: tests/integration/faults.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from controller.store.base import answers_as_primary, make_redis
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port, redis_binary
from streams.worker.handlers import EXIT_UNSAFE_TO_ACK
from streams.worker.kafka import ensure_topics
from streams.worker.runtime import Runtime
from tests.integration.conftest import (
    make_settings,
)
from tests.integration.faults import (
    FLOW,
    Truth,
    _at_least,
    _between,
    _merge,
    _metric_at_least,
    _ready,
    _retries,
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
