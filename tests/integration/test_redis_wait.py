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

Decisions and command replies wait the same way (the second test): nothing of a decision is
published, and no command replied to, before the replica has it; after the failover the lost
ones are made afresh on the new primary, replied to once, by the doer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from controller.settings import RedisSettings, Settings
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.app import group_ids
from streams.worker.kafka import JsonPublisher, ensure_topics
from tests.integration.conftest import (
    command_ok,
    committed_offsets,
    make_settings,
)
from tests.integration.faults import (
    N_PRODUCTS,
    PERIODS,
    START,
    Truth,
    _spec,
    produce,
    settled,
    wait_for,
)
from tests.integration.test_redis_sentinel import (
    SERVICE,
    _flipped,
    _replica,
    _sentinel,
)

pytestmark = pytest.mark.integration

#: more than the loopback socket buffers of the replica link hold (tcp_rmem's 32 MB at most
#: grows only while the reader reads; the replica is stopped)
JUNK_BYTES = 48 * 1024 * 1024


@dataclass
class Deployment:
    """The embedded stack's redis-server as the primary, a replica, one sentinel and a
    controller worker that knows only the sentinel, waiting for one replica (``WAIT 1``, 300
    ms); its experiment ``faults`` created and flipped through every period."""

    stack: EmbeddedStack
    settings: Settings
    store: Store
    clock: SharedSimulatedClock
    worker: WorkerProcess
    primary: Redis
    promoted: Redis
    watcher: Redis
    replica_port: int
    replica_pid: int


async def deployment(
    done: contextlib.AsyncExitStack, tmp_path: Path, **extra: Any
) -> Deployment:
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
        **extra,
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
    command_ok(
        await send_command_async(
            settings, "create", timeout=60, backfill=True, spec=_spec().model_dump(mode="json")
        )
    )
    return Deployment(
        stack, settings, store, clock, w, primary, promoted, watcher, replica_port, replica_pid
    )


async def stop_the_replica(primary: Redis, replica_pid: int) -> str:
    """From now on the replica acknowledges nothing, and every write that follows stays on
    the primary (in its output buffer, unlimited here, behind a value larger than the
    loopback socket buffers hold: its key is returned)."""
    await primary.config_set("client-output-buffer-limit", "replica 0 0 0")
    os.kill(replica_pid, signal.SIGSTOP)
    junk = f"pricelab-wait-junk-{time.monotonic_ns()}"
    await primary.set(junk, b"x" * JUNK_BYTES)
    assert await primary.execute_command("WAIT", 1, 300) == 0
    info = await primary.info("replication")
    assert int(info["slave0"]["offset"]) < int(info["master_repl_offset"])
    return junk


async def fail_over_to_the_stopped_replica(d: Deployment, junk: str) -> None:
    """Kill the primary for good (SIGKILL), resume the replica and wait for the sentinel to
    promote it; it lacks everything written since :func:`stop_the_replica` wrote ``junk``."""
    assert d.stack.redis is not None
    d.stack.redis.kill()  # SIGKILL, and never started again
    os.kill(d.replica_pid, signal.SIGCONT)
    host = d.stack.host

    async def switched() -> bool:
        got = await d.watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        state = await d.watcher.sentinel_master(SERVICE)
        return (
            (str(got[0]), int(got[1])) == (host, d.replica_port)
            and (state["ip"], int(state["port"])) == (host, d.replica_port)
            and not (state["is_sdown"] or state["is_odown"])
        )

    await wait_for(switched, 60, "the sentinel to promote the replica", every=0.2)
    assert (await d.promoted.info("replication"))["role"] == "master"
    # it never got the large value, so none of what followed it on the old primary either (a
    # replica applies the primary's stream in order)
    assert await d.promoted.exists(junk) == 0


def second_replica(d: Deployment, tmp_path: Path) -> ManagedProcess:
    """A replica of the promoted one, not started: WAIT 1 is met again once it is."""
    host = d.stack.host
    return _replica(
        "second", host, free_port(host), d.replica_port, tmp_path, "dbfilename second.rdb\n"
    )


async def test_a_batch_its_replica_lacks_is_not_committed_and_survives_the_failover(
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    async with contextlib.AsyncExitStack() as done:
        d = await deployment(done, tmp_path)
        settings, store, clock, w, primary, promoted = (
            d.settings, d.store, d.clock, d.worker, d.primary, d.promoted
        )  # fmt: skip
        pid = w.pid
        for k in range(1, PERIODS + 1):
            await clock.set(START + timedelta(hours=k, seconds=1))
            await wait_for(lambda k=k: _flipped(store, k), 30, f"period {k}'s flip")
        # the experiment and its flips are on the replica
        await primary.set("pricelab-wait-probe", 1)
        assert await primary.execute_command("WAIT", 1, 10_000) == 1

        junk = await stop_the_replica(d.primary, d.replica_pid)

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

        await fail_over_to_the_stopped_replica(d, junk)

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
        second = second_replica(d, tmp_path)
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


async def test_a_decision_and_a_reply_wait_for_the_replica_and_survive_the_failover(
    tmp_path: Path,
) -> None:
    """Before, only sales batches waited for the replica: a flip and a pause were published
    and the pause replied to while the replica lacked them, and the primary died. The
    promoted replica had neither: the experiment ran on, unpaused, after its operator was
    told it was paused, and its next decisions took the lost ones' sequence numbers again,
    with other content (the pricing system's ``seq`` no longer names one decision). Now
    nothing of a decision is published, and no command is replied to, before the replica has
    it; the pause waits, is carried out on the new primary once it has a replica, and is
    replied to once."""
    async with contextlib.AsyncExitStack() as done:
        d = await deployment(done, tmp_path)
        settings, store, clock, w = d.settings, d.store, d.clock, d.worker
        pid = w.pid
        for k in (1, 2):
            await clock.set(START + timedelta(hours=k, seconds=1))
            await wait_for(lambda k=k: _flipped(store, k), 30, f"period {k}'s flip")
        await d.primary.set("pricelab-wait-probe", 1)
        assert await d.primary.execute_command("WAIT", 1, 10_000) == 1

        # a flip whose replica is short waits where it is, and goes on once the replica is
        # back: told once, with its flipped event (a redo would have told it without)
        await stop_the_replica(d.primary, d.replica_pid)
        await clock.set(START + timedelta(hours=3, seconds=1))
        await wait_for(lambda: _short(w) >= 2, 30, "period 3's barrier to fall short")
        msgs = await _read_all(settings, settings.topics.assignments, _told_all(2))
        assert not [m for m in msgs if m["period"] == 3], "period 3 told before replicated"
        os.kill(d.replica_pid, signal.SIGCONT)
        await wait_for(lambda: _flipped(store, 3), 30, "period 3's flip once replicated")

        def flipped_3(got: list[dict[str, Any]]) -> bool:
            return any(e["kind"] == "flipped" and e["detail"]["period"] == 3 for e in got)

        events = await _read_all(settings, settings.topics.experiment_events, flipped_3)
        assert [e["detail"]["period"] for e in events if e["kind"] == "flipped"].count(3) == 1
        before = (await store.get_experiment("faults")).seq
        await d.primary.set("pricelab-wait-probe", 2)
        assert await d.primary.execute_command("WAIT", 1, 10_000) == 1

        # then the same, but the primary dies while the replica lacks the decision
        junk = await stop_the_replica(d.primary, d.replica_pid)
        short = _short(w)
        await clock.set(START + timedelta(hours=4, seconds=1))

        async def decided_on_the_primary() -> bool:
            return (await store.get_experiment("faults")).seq > before

        await wait_for(decided_on_the_primary, 30, "period 4's decision on the primary")
        await wait_for(lambda: _short(w) >= short + 2, 30, "period 4's barrier to fall short")
        # period 3's messages are on the topic; nothing of period 4 beside them
        msgs = await _read_all(settings, settings.topics.assignments, _told_all(3))
        assert not [m for m in msgs if m["period"] == 4], "period 4 told before replicated"
        state = await store.get_experiment("faults")
        assert state.published == before < state.seq

        pause = asyncio.create_task(
            send_command_async(
                settings, "pause", timeout=180, experiment="faults", reason="a price check"
            )
        )
        done.callback(pause.cancel)

        # the worker's tick waits at period 4's decision, the pause behind it: three more
        # barriers short, and still no reply (then the assert below says what came)
        short = _short(w)
        await wait_for(lambda: _short(w) >= short + 3 or pause.done(), 30, "more short waits")
        assert not pause.done(), pause.result()  # no reply while the replica lacks it

        await fail_over_to_the_stopped_replica(d, junk)
        lost = await store.get_experiment("faults")  # the new primary: period 4 was never kept
        assert (lost.seq, lost.flipped_period) == (before, 3)
        # so was the simulated clock's move (kept in Redis): the time goes on, as a wall's would
        await clock.set(START + timedelta(hours=4, seconds=2))
        second = second_replica(d, tmp_path)
        done.callback(second.stop)
        second.start()

        reply = command_ok(await asyncio.wait_for(pause, 90))
        # the doer's reply: made on the new primary, where it waited for the second replica
        assert reply["detail"]["state"] == "paused" and not reply["detail"].get("already"), reply
        state = await store.get_experiment("faults")
        assert state.phase == "paused" and state.published == state.seq > before, state

        # what a pricing system reads (librdkafka): per product, seq never falls, one seq is
        # one content, and the last message is the decision in force, paused
        def paused_everywhere(got: list[dict[str, Any]]) -> bool:
            return len({m["product"] for m in got if m["seq"] == state.seq}) == N_PRODUCTS

        msgs = await _read_all(settings, settings.topics.assignments, paused_everywhere)
        by_product: dict[str, list[dict[str, Any]]] = {}
        for m in msgs:
            by_product.setdefault(m["product"], []).append(m)
        assert len(by_product) == N_PRODUCTS
        for product, seen in by_product.items():
            seqs = [m["seq"] for m in seen]
            assert seqs == sorted(seqs), (product, seqs)
            contents = {m["seq"]: m for m in seen}
            assert all(contents[m["seq"]] == m for m in seen), (product, "a seq, two contents")
            last = seen[-1]
            assert (last["seq"], last["status"]) == (state.seq, "paused"), (product, last)
        replies = await _read_all(
            settings,
            settings.topics.command_replies,
            lambda got: any(r["command_id"] == reply["command_id"] for r in got),
        )
        assert [r["command_id"] for r in replies].count(reply["command_id"]) == 1
        await _told_once("faults", "paused", reply["command_id"], settings)

        # a creation while the new primary's replica is stopped: kept, but neither its
        # ``created`` event nor its reply is sent before the replica has it (a repeat of the
        # command would find it there, and send no event); it waits where it is
        assert second.proc is not None
        second_pid = second.proc.pid
        done.callback(lambda: _resume(second_pid))
        await stop_the_replica(d.promoted, second_pid)
        spec = _spec(8, "later").model_copy(
            update={
                "products": tuple(f"q{i}" for i in range(8)),
                "start": START + timedelta(days=1),
            }
        )
        short = _short(w)
        create = asyncio.create_task(
            send_command_async(settings, "create", timeout=120, spec=spec.model_dump(mode="json"))
        )
        done.callback(create.cancel)

        async def kept() -> bool:  # or answered (then the assert below says how)
            return "later" in await store.experiment_ids() and _short(w) > short or create.done()

        await wait_for(kept, 30, "the creation on the primary, and its barrier short")
        assert not create.done(), create.result()
        await _told_nothing_of("later", settings)
        assert not create.done(), create.result()
        os.kill(second_pid, signal.SIGCONT)
        created = command_ok(await asyncio.wait_for(create, 60))
        assert not created["detail"].get("already"), created
        await _told_once("later", "created", created["command_id"], settings)

        # a pause of it, before its start: a decision that publishes nothing (no period is in
        # force), so no redo would tell it later; its event and reply wait where they are
        await stop_the_replica(d.promoted, second_pid)
        short = _short(w)
        pause = asyncio.create_task(
            send_command_async(settings, "pause", timeout=120, experiment="later", reason="x")
        )
        done.callback(pause.cancel)

        async def paused() -> bool:  # or answered (then the assert below says how)
            status = (await store.get_experiment("later")).phase
            return status == "paused" and _short(w) > short or pause.done()

        await wait_for(paused, 30, "the pause on the primary, and its barrier short")
        assert not pause.done(), pause.result()
        assert (await store.get_experiment("later")).seq == 0  # it publishes nothing
        await _told_nothing_of("later", settings, but=("created", "command"))
        assert not pause.done(), pause.result()
        os.kill(second_pid, signal.SIGCONT)
        reply = command_ok(await asyncio.wait_for(pause, 60))
        assert reply["detail"]["state"] == "paused" and not reply["detail"].get("already"), reply
        await _told_once("later", "paused", reply["command_id"], settings)
        assert w.alive() and w.pid == pid, w.tail()


def _short(w: WorkerProcess) -> float:
    """Barriers that fell short in the worker: sales batches, decisions, replies."""
    return metric_value(w.metrics(), "pricelab_redis_waits_short_total")


def _resume(pid: int) -> None:  # a stopped replica would not heed its SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _told_all(period: int) -> Callable[[list[dict[str, Any]]], bool]:
    """Whether every product of ``faults`` has a message of ``period`` among those read."""
    return lambda got: len({m["product"] for m in got if m["period"] == period}) == N_PRODUCTS


async def _told_nothing_of(experiment: str, settings: Settings, but: tuple[str, ...] = ()) -> None:
    """No event of ``experiment`` on the events topic but ``but``'s, read beyond ``faults``'s
    ``created`` (there since the start: the read has reached the topic's present)."""
    events = await _read_all(
        settings,
        settings.topics.experiment_events,
        lambda got: any(e["experiment"] == "faults" and e["kind"] == "created" for e in got),
    )
    told = [e["kind"] for e in events if e["experiment"] == experiment]
    assert told == list(but), f"{experiment}: {told} told before replicated"


async def _told_once(experiment: str, kind: str, command_id: str, settings: Settings) -> None:
    """``experiment``'s ``kind`` event and the command's reply, each once on its topic."""
    events = await _read_all(
        settings,
        settings.topics.experiment_events,
        lambda got: any(e["experiment"] == experiment and e["kind"] == kind for e in got),
    )
    assert [(e["experiment"], e["kind"]) for e in events].count((experiment, kind)) == 1
    replies = await _read_all(
        settings,
        settings.topics.command_replies,
        lambda got: any(r["command_id"] == command_id for r in got),
    )
    assert [r["command_id"] for r in replies].count(command_id) == 1


async def _read_all(
    settings: Settings, topic: str, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The messages of ``topic`` from its beginning, read as a pricing system reads them:
    librdkafka (confluent-kafka), until ``until`` holds for those read and then what else is
    there (up to a poll that finds nothing)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"wait-{time.monotonic_ns()}",  # never joined: assigned, not subscribed
            "enable.auto.commit": False,
        }
    )
    # every partition from its beginning, without a group join (seconds on the embedded broker)
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)]
    )
    try:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not until(out):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: what was awaited not among {len(out)} messages")
            m = await asyncio.to_thread(consumer.poll, 0.5)
            if m is not None and m.error() is None:
                out.append(json.loads(m.value()))
        while (m := await asyncio.to_thread(consumer.poll, 1.0)) is not None:
            if m.error() is None:
                out.append(json.loads(m.value()))
        return out
    finally:
        consumer.close()


async def test_a_freeze_waits_for_the_replica_and_is_made_again_after_the_failover(
    tmp_path: Path,
) -> None:
    """A freeze recorded on a primary whose replica lacks it, and the primary dies. Before,
    only the reply's own barrier waited, unguarded: it passed on the promoted replica once
    that had a replica of its own, and the operator was told "recorded" of a freeze the new
    primary did not have (the experiment would run on unfrozen through the window). Now the
    freeze's barrier reads its entry on the primary it reaches: a failover that lost it ends
    the command, which is carried out again whole on the new primary and replied to once, as
    its doer's (not "already")."""
    from streams.client.commands import freeze_document

    async with contextlib.AsyncExitStack() as done:
        d = await deployment(done, tmp_path)
        settings, store, w = d.settings, d.store, d.worker
        await wait_for(lambda: _flipped(store, 0), 30, "period 0's flip")
        await d.primary.set("pricelab-wait-probe", 1)
        assert await d.primary.execute_command("WAIT", 1, 10_000) == 1

        junk = await stop_the_replica(d.primary, d.replica_pid)
        short = _short(w)
        at = START + timedelta(days=1)
        freeze = freeze_document(at, at + timedelta(hours=2), ["faults"], "stock count")
        frozen = asyncio.create_task(
            send_command_async(settings, "freeze", timeout=180, freeze=freeze, reason="count")
        )
        done.callback(frozen.cancel)
        key = store.cat("freezes")

        async def kept() -> bool:  # or answered (then the assert below says how)
            on_primary = await d.primary.hexists(key, freeze["id"])
            return bool(on_primary) and _short(w) > short or frozen.done()

        await wait_for(kept, 30, "the freeze on the primary, and its barrier short")
        assert not frozen.done(), frozen.result()  # no reply while the replica lacks it

        await fail_over_to_the_stopped_replica(d, junk)
        assert not await d.promoted.hexists(key, freeze["id"])  # lost with the old primary
        second = second_replica(d, tmp_path)
        done.callback(second.stop)
        second.start()

        reply = command_ok(await asyncio.wait_for(frozen, 90))
        assert reply["detail"]["freeze"]["id"] == freeze["id"], reply
        assert not reply["detail"]["freeze"].get("already"), reply  # the doer's reply
        # what the operator was told is what the new primary holds
        assert freeze["id"] in [f["id"] for f in await store.freezes()]
        assert await d.promoted.hexists(key, freeze["id"])
        replies = await _read_all(
            settings,
            settings.topics.command_replies,
            lambda got: any(r["command_id"] == reply["command_id"] for r in got),
        )
        assert [r["command_id"] for r in replies].count(reply["command_id"]) == 1
        assert w.alive(), w.tail()


async def test_a_trigger_fire_is_told_and_its_batch_committed_only_once_replicated(
    tmp_path: Path,
) -> None:
    """A competitor batch that fires while the replica lacks its save. Before, the fire was
    announced at once (its ``triggered`` event and its assignments, under a new ``seq``) and
    the batch committed; the primary died, and the promoted replica had neither the fire nor
    that ``seq``: the fire was lost for good (its batch committed), and the ``seq`` already
    told was free to be given to another decision. Now the announcement goes out only once the
    replicas have its ``seq`` (else it is left to the flip at the window's start), and the
    batch returns, its offsets committed, only once they have its save: after the failover
    its events are applied again on the new primary, which fires and announces once."""
    from tests.integration.test_triggers_freezes import START as T_START
    from tests.integration.test_triggers_freezes import price, triggered_doc

    assert T_START == START  # the two experiments share the clock
    async with contextlib.AsyncExitStack() as done:
        # the batch's events were observed up to 52 minutes before they are read
        d = await deployment(done, tmp_path, trigger_watermark_lag=timedelta(hours=2))
        settings, store, clock, w = d.settings, d.store, d.clock, d.worker
        pid = w.pid
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=triggered_doc()
            )
        )
        day2 = START + timedelta(days=2, hours=10)
        await clock.set(day2 + timedelta(minutes=52))
        await wait_for(lambda: _flipped(store, 2, "trig"), 30, "trig's flip into day 2")
        await d.primary.set("pricelab-wait-probe", 1)
        assert await d.primary.execute_command("WAIT", 1, 10_000) == 1

        junk = await stop_the_replica(d.primary, d.replica_pid)
        short = _short(w)
        pub = JsonPublisher(settings)
        await pub.start()
        done.push_async_callback(pub.stop)
        # b undercut 10% for 40 minutes: the rule (5% for 30 minutes) fires at the second
        for minutes in (0, 40):
            at = day2 + timedelta(minutes=minutes)
            await pub.send(settings.topics.competitor_prices, price("b", 90.0, at), "b")
        await pub.flush()
        state_key = f"{store.exp('trig')}:trigger_state"

        async def saved_on_the_primary() -> bool:
            return bool(await d.primary.hexists(state_key, "f:b"))

        await wait_for(saved_on_the_primary, 30, "b's fire on the primary")
        group = group_ids(settings, {"controller"})["competitor"]

        async def short_or_committed() -> bool:  # committed: the assert below says so
            return _short(w) >= short + 2 or await _committed(settings, group, 1)

        await wait_for(short_or_committed, 30, "the batch's barriers short")
        assert await committed_offsets(settings, group, settings.topics.competitor_prices) == 0
        events = await _read_all(
            settings,
            settings.topics.experiment_events,
            lambda got: any(e["experiment"] == "trig" and e["kind"] == "flipped" for e in got),
        )
        assert not [e for e in events if e["kind"] == "triggered"], "told before replicated"
        msgs = await _read_all(
            settings,
            settings.topics.assignments,
            lambda got: any(m["experiment"] == "trig" and m["period"] == 2 for m in got),
        )
        assert not [m for m in msgs if m["experiment"] == "trig" and m["period"] == 3]

        await fail_over_to_the_stopped_replica(d, junk)
        assert not await d.promoted.hexists(state_key, "f:b")  # lost with the old primary
        second = second_replica(d, tmp_path)
        done.callback(second.stop)
        second.start()

        async def fired_again() -> bool:
            return "b" in await store.triggers("trig")

        await wait_for(fired_again, 60, "b's fire made again on the new primary")
        assert await store.triggers("trig") == {"b": 3}  # the window opens at day 3
        await wait_for(
            lambda: _committed(settings, group, 2), 60, "the competitor batch committed"
        )
        events = await _read_all(
            settings,
            settings.topics.experiment_events,
            lambda got: any(e["kind"] == "triggered" for e in got),
        )
        told = [e["detail"]["product"] for e in events if e["kind"] == "triggered"]
        assert told == ["b"], told  # once, from the new primary
        taken = int(await d.promoted.hget(f"{store.exp('trig')}:state", "seq_counter"))
        msgs = await _read_all(
            settings,
            settings.topics.assignments,
            lambda got: any(m["product"] == "b" and m["period"] == 3 for m in got),
        )
        # what a pricing system reads (librdkafka): per product, seq never falls, one seq is
        # one content, and no seq beyond what the new primary has taken (the fire's, told once
        # it was there)
        by_product: dict[str, list[dict[str, Any]]] = {}
        for m in msgs:
            by_product.setdefault(m["product"], []).append(m)
        for product, seen in by_product.items():
            seqs = [m["seq"] for m in seen]
            assert seqs == sorted(seqs), (product, seqs)
            contents = {m["seq"]: m for m in seen}
            assert all(contents[m["seq"]] == m for m in seen), (product, "a seq, two contents")
        trig_seqs = {m["seq"] for m in msgs if m["experiment"] == "trig"}
        assert max(trig_seqs) == taken, (trig_seqs, taken)
        fired = [m for m in msgs if m["experiment"] == "trig" and m["seq"] == taken]
        assert {m["period"] for m in fired} == {3} and "b" in {m["product"] for m in fired}
        assert w.alive() and w.pid == pid, w.tail()  # applied again in place, no restart


async def _committed(settings: Settings, group: str, n: int) -> bool:
    return await committed_offsets(settings, group, settings.topics.competitor_prices) >= n
