"""A failover that kills Redis's primary for good, followed through Redis Sentinel
(``PRICELAB_REDIS__SENTINELS``): real processes, no mocks.

The embedded stack's redis-server is the primary, a second one its replica, and one sentinel
(quorum 1) watches them. A controller worker process, configured with the sentinel only (its
URL names a port where nothing listens), creates an experiment and flips its first periods;
then the primary is killed with SIGKILL and never started again. Once the sentinel names the
replica as the new primary, the same worker process must go on: flip every later period and
publish it, answer a command (a creation, whose Lua scripts the new primary was made to have
forgotten: NOSCRIPT, reloaded), count a sales batch sent after the failover exactly once, and
be ready again.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from controller.settings import RedisSettings, Settings
from controller.store import Store, make_redis
from controller.store.base import lua
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port, redis_binary
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import command_ok, make_settings, read_topic
from tests.integration.faults import (
    FLOW,
    N_PRODUCTS,
    PERIODS,
    START,
    Truth,
    _ready,
    _spec,
    produce,
    settled,
    wait_for,
)

pytestmark = pytest.mark.integration

SERVICE = "pricelab-primary"


def _sentinel(host: str, port: int, primary_port: int, workdir: Path) -> ManagedProcess:
    """One sentinel (quorum 1) of the primary at ``primary_port``: it calls the primary down
    after 1 s without an answer and promotes a replica at once."""
    conf = workdir / "sentinel.conf"  # the sentinel rewrites it: a file of its own
    conf.write_text(
        f"port {port}\nbind {host}\ndir {workdir}\n"
        f"sentinel monitor {SERVICE} {host} {primary_port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    return ManagedProcess(
        "sentinel",
        [str(redis_binary()), str(conf), "--sentinel"],
        host,
        port,
        workdir / "sentinel.log",
    )


def _replica(
    name: str, host: str, port: int, of_port: int, workdir: Path, extra: str = ""
) -> ManagedProcess:
    """A redis-server replicating the one at ``of_port``, from a config file of its own (a
    sentinel rewrites it when it promotes the replica); not started."""
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f'port {port}\nbind {host}\nsave ""\nappendonly no\ndir {workdir}\n{extra}'
        f"replicaof {host} {of_port}\n"
    )
    return ManagedProcess(
        f"redis-{name}", [str(redis_binary()), str(conf)], host, port, workdir / f"{name}.log"
    )


async def _flipped(store: Store, k: int, exp_id: str = "faults") -> bool:
    return (await store.get_experiment(exp_id)).published_through(k)


def _told(msgs: list[dict[str, Any]], period: int) -> bool:
    """Every product of the experiment has a message for ``period`` among ``msgs``."""
    return len({m["product"] for m in msgs if m["period"] == period}) == N_PRODUCTS


async def _published(settings: Settings, period: int, timeout: float = 5) -> bool:
    """Every product's assignment for ``period`` is on the assignments topic."""
    msgs = await read_topic(
        settings,
        settings.topics.assignments,
        expect=100 * N_PRODUCTS * (PERIODS + 1),  # read until told (a message may repeat)
        timeout=timeout,
        until=lambda got: _told(got, period),
    )
    return _told(msgs, period)


async def test_a_worker_follows_the_sentinels_after_its_primary_dies_for_good(
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
        sentinel = _sentinel(host, sentinel_port, primary_port, tmp_path)
        done.callback(sentinel.stop)
        sentinel.start()
        primary = Redis(host=host, port=primary_port, decode_responses=True)
        done.push_async_callback(primary.aclose)
        promoted = Redis(host=host, port=replica_port, decode_responses=True)
        done.push_async_callback(promoted.aclose)
        watcher = Redis(host=host, port=sentinel_port, decode_responses=True)
        done.push_async_callback(watcher.aclose)

        async def primary_named() -> tuple[str, int]:
            got = await watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return str(got[0]), int(got[1])

        async def sentinel_knows_the_replica() -> bool:
            replicas = await watcher.sentinel_slaves(SERVICE)
            return any(
                int(r["port"]) == replica_port
                and not r["is_sdown"]
                and r.get("master-link-status") == "ok"
                for r in replicas
            )

        await wait_for(sentinel_knows_the_replica, 30, "the sentinel to find the replica")
        assert await primary_named() == (host, primary_port)

        # the worker knows Redis only through the sentinel: its URL names a dead port
        nowhere = free_port(host)
        settings = make_settings(
            stack,
            redis=RedisSettings(
                url=SecretStr(f"redis://{host}:{nowhere}/0"),
                sentinels=f"{host}:{sentinel_port}",
                sentinel_service=SERVICE,
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
        await clock.set(START + timedelta(hours=1, seconds=1))
        await wait_for(lambda: _flipped(store, 1), 30, "period 1's flip before the failover")
        # what the worker wrote so far is on the replica (replication is asynchronous: a
        # write acknowledged after this may be lost with the primary, as in any failover)
        await primary.set("pricelab-sentinel-probe", 1)
        assert await primary.execute_command("WAIT", 1, 10_000) == 1
        retried = metric_value(w.metrics(), "pricelab_redis_retries_total")

        assert stack.redis is not None
        stack.redis.kill()  # SIGKILL, and never started again
        assert not stack.redis.running
        killed_at = time.monotonic()

        async def switched() -> bool:
            # named as the primary, and in the state a client takes it from (SENTINEL
            # MASTERS: up, no failover under way), which follows the name a moment later
            state = await watcher.sentinel_master(SERVICE)
            return (
                await primary_named() == (host, replica_port)
                and (state["ip"], int(state["port"])) == (host, replica_port)
                and not (state["is_sdown"] or state["is_odown"])
            )

        await wait_for(switched, 60, "the sentinel to promote the replica", every=0.2)
        failover_s = time.monotonic() - killed_at
        assert (await promoted.info("replication"))["role"] == "master"
        assert not stack.redis.running  # the old primary stayed dead
        # the fault reached the worker: its ticks met the dead primary, and were skipped
        # and retried (a client's call is not retried inside redis-py: UNAVAILABLE is)
        await wait_for(
            lambda: metric_value(w.metrics(), "pricelab_redis_retries_total") > retried,
            10,
            "the worker's retries of the dead primary",
        )
        # a new primary that never ran pricelab's scripts (a Redis 7 replica is not sent
        # SCRIPT LOAD): each script's first call meets NOSCRIPT and loads it
        sha = promoted.register_script(lua("create_begin")).sha
        await promoted.script_flush()
        assert await promoted.script_exists(sha) == [False]

        # what was written before the failover is on the new primary: the experiment, its
        # flips; and the same worker process flips every later period and publishes it
        await wait_for(lambda: _flipped(store, 1), 30, "period 1's flip on the new primary")

        async def move_clock(k: int) -> bool:
            await clock.set(START + timedelta(hours=k, seconds=1))
            return True

        for k in range(2, PERIODS + 1):
            # our own client follows the sentinel too (a stale pooled connection may fail once)
            await wait_for(lambda k=k: move_clock(k), 30, f"the clock to move to period {k}")
            await wait_for(lambda k=k: _flipped(store, k), 30, f"period {k}'s flip")
            await wait_for(lambda k=k: _published(settings, k), 30, f"period {k}'s messages")
        msgs = await read_topic(
            settings,
            settings.topics.assignments,
            expect=100 * N_PRODUCTS * (PERIODS + 1),
            until=lambda got: _told(got, PERIODS),
        )
        # every product was told each period's arm, in order (a message sent again after an
        # outage repeats its version; none goes back)
        per_product: dict[str, list[tuple[int, int]]] = {}
        for m in msgs:
            if m["experiment"] == "faults":
                per_product.setdefault(m["product"], []).append((m["period"], m["seq"]))
        assert len(per_product) == N_PRODUCTS
        for got in per_product.values():
            assert got == sorted(got) and got[-1][0] == PERIODS
            assert {period for period, _ in got} == set(range(PERIODS + 1))
        state = await store.get_experiment("faults")
        assert state.flips == PERIODS + 1 and state.missed_flips == 0

        # a command after the failover gets its reply: a creation, whose scripts run on
        # the new primary
        after = _spec(exp_id="after-failover").model_dump(mode="json")
        after["products"] = [f"q{i}" for i in range(10)]
        reply = await send_command_async(settings, "create", timeout=60, backfill=True, spec=after)
        command_ok(reply)
        assert await promoted.script_exists(sha) == [True]  # reloaded on the new primary
        await wait_for(
            lambda: _flipped(store, PERIODS, "after-failover"), 30, "the new experiment's flip"
        )

        # a sales batch sent after the failover is counted once
        truth = Truth(600, seed=31, tag="after")
        await produce(settings, truth.payloads, **FLOW)
        await settled(settings, truth.n)
        cells = {k: float(v) for k, v in (await store.cells("faults")).items()}
        assert cells == truth.cells
        assert await store.excluded("faults") == {}
        assert await store.totals("faults") == {"units:ok": truth.units, "events:ok": truth.n}

        await wait_for(lambda: _ready(w).get("ready"), 30, "the worker to be ready again")
        assert w.alive() and w.pid == pid, w.tail()  # ridden out, never restarted
    elapsed = time.monotonic() - t0
    print(f"sentinel failover: promoted in {failover_s:.1f} s; test {elapsed:.1f} s")
