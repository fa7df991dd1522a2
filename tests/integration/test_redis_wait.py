"""A sales batch waits for its replica (``PRICELAB_REDIS__WAIT_REPLICAS=1``) before its
offsets are committed, so a failover that kills the primary for good loses none of its sales:
real processes, no mocks (the deployment of tests/integration/test_redis_sentinel.py).

The replica is stopped (SIGSTOP) and a large value is written to the primary first, more than
the kernel's socket buffers hold, so the writes that follow stay in the primary's output
buffer and never reach the replica. A sales batch sent then is applied on the primary, but its
WAIT falls short: the worker retries it and commits nothing. The primary is then killed with
SIGKILL and never started again, the replica resumed and promoted by the sentinel: the batch,
never committed, is delivered again, but the new primary has no replica: its WAITs fall short
too, and nothing is committed until a replica of it is started. Then every sale is counted
on the new primary exactly once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from controller.settings import RedisSettings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, free_port
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.app import group_ids
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import command_ok, committed_offsets, make_settings
from tests.integration.faults import PERIODS, START, Truth, _spec, produce, settled, wait_for
from tests.integration.test_redis_sentinel import SERVICE, _flipped, _replica, _sentinel

pytestmark = pytest.mark.integration

#: more than the loopback socket buffers of the replica link hold (tcp_rmem's 32 MB at most
#: grows only while the reader reads; the replica is stopped)
JUNK_BYTES = 48 * 1024 * 1024


async def test_a_batch_its_replica_lacks_is_not_committed_and_survives_the_failover(
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    async with contextlib.AsyncExitStack() as done:
        stack = done.enter_context(EmbeddedStack(validate_outputs=True))
        host, primary_port = stack.host, stack.redis_port
        replica_port, sentinel_port = free_port(host), free_port(host)
        replica = _replica("replica", host, replica_port, primary_port, tmp_path)
        done.callback(replica.stop)
        replica.start()
        assert replica.proc is not None
        replica_pid = replica.proc.pid

        def resume() -> None:  # a stopped replica would not heed its SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica_pid, signal.SIGCONT)

        done.callback(resume)
        sentinel = _sentinel(host, sentinel_port, primary_port, tmp_path)
        done.callback(sentinel.stop)
        sentinel.start()
        primary = Redis(host=host, port=primary_port, decode_responses=True)
        done.push_async_callback(primary.aclose)
        promoted = Redis(host=host, port=replica_port, decode_responses=True)
        done.push_async_callback(promoted.aclose)
        watcher = Redis(host=host, port=sentinel_port, decode_responses=True)
        done.push_async_callback(watcher.aclose)

        async def sentinel_knows_the_replica() -> bool:
            replicas = await watcher.sentinel_slaves(SERVICE)
            return any(
                int(r["port"]) == replica_port
                and not r["is_sdown"]
                and r.get("master-link-status") == "ok"
                for r in replicas
            )

        await wait_for(sentinel_knows_the_replica, 30, "the sentinel to find the replica")

        nowhere = free_port(host)
        settings = make_settings(
            stack,
            redis=RedisSettings(
                url=SecretStr(f"redis://{host}:{nowhere}/0"),
                sentinels=f"{host}:{sentinel_port}",
                sentinel_service=SERVICE,
                wait_replicas=1,
                wait_timeout_ms=300,
            ),
            tick_interval=0.2,
        )
        await ensure_topics(settings)
        redis = make_redis(settings)
        done.push_async_callback(redis.aclose)
        store = Store(redis, settings.key_prefix)
        clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
        await clock.set(START + timedelta(seconds=1))
        w = WorkerProcess(settings)
        done.callback(w.stop)
        w.start()
        pid = w.pid
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=_spec().model_dump(mode="json")
            )
        )
        for k in range(1, PERIODS + 1):
            await clock.set(START + timedelta(hours=k, seconds=1))
            await wait_for(lambda k=k: _flipped(store, k), 30, f"period {k}'s flip")
        # the experiment and its flips are on the replica
        await primary.set("pricelab-wait-probe", 1)
        assert await primary.execute_command("WAIT", 1, 10_000) == 1

        # the replica stops: it acknowledges nothing more, and what follows stays on the
        # primary (in its output buffer, unlimited here, behind the large value)
        await primary.config_set("client-output-buffer-limit", "replica 0 0 0")
        os.kill(replica_pid, signal.SIGSTOP)
        await primary.set("pricelab-wait-junk", b"x" * JUNK_BYTES)
        assert await primary.execute_command("WAIT", 1, 300) == 0
        info = await primary.info("replication")
        assert int(info["slave0"]["offset"]) < int(info["master_repl_offset"])

        truth = Truth(600, seed=37, tag="w")
        await produce(settings, truth.payloads)  # at once: one or a few batches
        group = group_ids(settings, ("controller",))["sales"]

        async def applied_but_unacknowledged() -> bool:
            # a batch's script ran on the primary, and its WAITs fell short, more than once
            # (the batches after it wait: the consumer commits in order)
            totals = await store.totals("faults")
            short = metric_value(w.metrics(), "pricelab_redis_waits_short_total")
            return totals.get("events:ok", 0) > 0 and short >= 3

        await wait_for(applied_but_unacknowledged, 60, "the batch's WAITs to fall short")
        assert await committed_offsets(settings, group, settings.topics.sales) == 0
        assert metric_value(w.metrics(), "pricelab_sales_total") == 0  # none handled yet
        assert metric_value(w.metrics(), "pricelab_redis_retries_total", component="sales") >= 3
        info = await primary.info("replication")
        assert int(info["slave0"]["offset"]) < int(info["master_repl_offset"])  # still stopped

        assert stack.redis is not None
        stack.redis.kill()  # SIGKILL, and never started again
        os.kill(replica_pid, signal.SIGCONT)

        async def switched() -> bool:
            got = await watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            state = await watcher.sentinel_master(SERVICE)
            return (
                (str(got[0]), int(got[1])) == (host, replica_port)
                and (state["ip"], int(state["port"])) == (host, replica_port)
                and not (state["is_sdown"] or state["is_odown"])
            )

        await wait_for(switched, 60, "the sentinel to promote the replica", every=0.2)
        assert (await promoted.info("replication"))["role"] == "master"
        # it never got the large value, so none of the sales scripts that followed it on
        # the old primary either (a replica applies the primary's stream in order): the
        # batch's sales are not on the new primary
        assert await promoted.exists("pricelab-wait-junk") == 0

        # the new primary has no replica yet: WAIT 1 cannot be met, so still nothing is
        # committed (the cost of the setting: sales stop while fewer replicas are up)
        short = metric_value(w.metrics(), "pricelab_redis_waits_short_total")

        async def short_on_the_new_primary() -> bool:
            now = metric_value(w.metrics(), "pricelab_redis_waits_short_total")
            return now > short and (await promoted.info("replication"))["connected_slaves"] == 0

        await wait_for(short_on_the_new_primary, 30, "a short WAIT on the new primary")
        assert await committed_offsets(settings, group, settings.topics.sales) == 0
        # a replica of the new primary: never committed, the batch is delivered again and
        # counted on the new primary once it has the replica's acknowledgement
        second_port = free_port(host)
        second = _replica(
            "second", host, second_port, replica_port, tmp_path, "dbfilename second.rdb\n"
        )
        done.callback(second.stop)
        second.start()
        await settled(settings, truth.n)
        cells = {k: float(v) for k, v in (await store.cells("faults")).items()}
        assert cells == truth.cells
        assert await store.excluded("faults") == {}
        assert await store.totals("faults") == {"units:ok": truth.units, "events:ok": truth.n}
        # each sale handled once, by the try that was acknowledged (a 'dup' there: an
        # earlier try on the new primary applied it, and its WAIT fell short)
        sales = w.metrics()
        assert metric_value(sales, "pricelab_sales_total") == truth.n
        assert w.alive() and w.pid == pid, w.tail()
        short = metric_value(sales, "pricelab_redis_waits_short_total")
    print(f"wait for replicas: {short:.0f} short waits; test {time.monotonic() - t0:.1f} s")
