"""A controller's memory is bounded by the experiments in force, not by those ever run
(issue #56, "the 60-minute soak's RSS is flat"; controller/retirement.py).

In the soak each slot runs its experiments one after another over the same products. Before,
a controller worker's store kept the parsed spec of every experiment ever created, its flip
tick read every state, and its sales routing held every experiment's grid, so each product's
candidates grew by one per generation. An experiment over for the controller (final, its
messages out, its sales window closed) is now retired: recorded once, and neither read nor
kept by the flip tick, the sales routing or the trigger routes. What must not change: every
sale's verdict (``unknown_product`` included, also for a worker started after), every command's
reply, a new experiment's claim of the products.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.spec import load_spec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess, metric_value
from streams.worker.kafka import JsonPublisher, ensure_topics
from tests.integration.conftest import command_ok, make_settings, read_topic, wait_until

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
PRODUCTS = [f"P{i:02d}" for i in range(30)]
LATENESS, MARGIN = timedelta(hours=2), timedelta(hours=1)


def _doc(exp_id: str, products: list[str], start: datetime, days: int = 1) -> dict[str, Any]:
    return {
        "id": exp_id,
        "products": products,
        "treatment_policy": "new",
        "control_policy": "old",
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "timezone": "UTC",
        "period": "P1D",
        "washout": "PT1H",
        "seed": 7,
    }


async def test_the_store_retires_once_and_keeps_no_retired_spec(settings: Any) -> None:
    redis = make_redis(settings)
    one, two = Store(redis, settings.key_prefix), Store(redis, settings.key_prefix)
    try:
        now = START + timedelta(hours=1)
        specs = {
            "a": load_spec(_doc("a", PRODUCTS[:5], START)),
            "b": load_spec(_doc("b", PRODUCTS[5:10], START)),
            "c": load_spec(_doc("c", ["Q0", "Q1"], START, days=5)),
        }
        for spec in specs.values():
            await one.create_experiment(spec, now)
        await one.set_status("a", "ended")
        await one.set_status("b", "ended")
        assert [s.spec.id for s in await one.experiments_unretired()] == ["a", "b", "c"]
        assert one.specs_held == 3

        # once, whichever controller comes first; the version moves once (routing caches)
        v = await one.version()
        assert await one.retire(specs["a"]) is True
        # a second controller's call adds none of its products again (with a million
        # products, every controller's tick would send them all): one taken out stays out
        kept = one.cat("exp:retired-products")
        assert await redis.srem(kept, PRODUCTS[0]) == 1
        assert await two.retire(specs["a"]) is False
        assert not await redis.sismember(kept, PRODUCTS[0])
        await redis.sadd(kept, PRODUCTS[0])
        assert await one.version() == v + 1
        # refused while the holders hash says its last messages are not all out (its claims
        # still count: lua/holds.lua); a tick's reconcile brings the holder to its state
        held = await redis.hget(one.cat("holders"), "b")
        await redis.hset(one.cat("holders"), "b", f"{held}|releasing")
        assert await one.retire(specs["b"]) is False
        # and while it says the experiment is not final (a stale holder a lapsed turn wrote):
        # no reconcile sees a retired experiment again, so its claims would count for good
        gen = held.split("|")[1]
        await redis.hset(one.cat("holders"), "b", f"running|{gen}")
        assert await one.retire(specs["b"]) is False
        assert "b" in {s.spec.id for s in await one.experiments_unretired()}
        await one.sync_holder("b")
        assert await one.retire(specs["b"]) is True

        # the controller's readers: neither parsed nor kept
        assert [s.spec.id for s in await one.experiments_unretired()] == ["c"]
        assert one.specs_held == 1
        # every experiment for the readers that list them all (CLI, console, in_force)...
        assert [s.spec.id for s in await one.experiments()] == ["a", "b", "c"]
        assert (await one.get_experiment("a")).phase == "ended"  # a command's read
        # ...and the next read of the controller's drops them again
        assert [s.spec.id for s in await one.experiments_unretired()] == ["c"]
        assert one.specs_held == 1
        # another process (a restart) parses none of them
        assert [s.spec.id for s in await two.experiments_unretired()] == ["c"]
        assert two.specs_held == 1
        assert await one.retired_count() == 2
        assert await one.retired_products() == set(PRODUCTS[:10])
        # what a routing table keeps: only those no experiment it holds covers
        held = {p: [] for p in PRODUCTS[2:7]}
        assert await one.retired_products(excluding=held) == {
            *PRODUCTS[:2],
            *PRODUCTS[7:10],
        }
        # a new experiment claims a retired one's products as before (lua/holds.lua)
        await one.create_experiment(load_spec(_doc("d", PRODUCTS[:5], START)), now)
        assert (await one.get_experiment("d")).status == "running"
    finally:
        await redis.aclose()


async def test_the_analysis_keeps_no_spec_of_an_experiment_stopped_before_it_ran(
    settings: Any,
) -> None:
    """An experiment stopped before its first period never gets a look, so no final look
    ever marks it: the analysis worker's reader neither lists nor keeps it (before, its
    spec stayed parsed in every analysis worker for good)."""
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        now = START - timedelta(days=3)
        for exp_id, products in (("early", PRODUCTS[:3]), ("later", PRODUCTS[3:6])):
            await store.create_experiment(load_spec(_doc(exp_id, products, START)), now)
            assert (await store.get_experiment(exp_id)).flipped_period == -1
        await store.set_status("early", "stopped")
        fresh = Store(redis, settings.key_prefix)  # a worker's store: nothing parsed yet
        assert [s.spec.id for s in await fresh.experiments_unmarked("final_look")] == ["later"]
        assert fresh.specs_held == 1
        # the controller's and the CLI's readers still list it
        assert [s.spec.id for s in await fresh.experiments()] == ["early", "later"]
    finally:
        await redis.aclose()


def _sale(event_id: str, product: str, at: datetime) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "event_id": event_id,
            "product": product,
            "units": 1,
            "revenue": 2.5,
            "unit_price": 2.5,
            "occurred_at": at.isoformat(),
        }
    ).encode()


def _held(m: str, by: str) -> float | None:
    """The worker's ``pricelab_experiments_held{by}``, None while it does not export it."""
    line = f'pricelab_experiments_held{{by="{by}"}}'
    return metric_value(m, "pricelab_experiments_held", by=by) if line in m else None


async def test_generations_over_the_same_products_keep_a_controller_bounded(stack: Any) -> None:
    """Five experiments one after another over the same 30 products (the first also over
    ``ONLY0``, which no later one holds), each day, the clock moved past each one's sales
    window: the controller worker keeps one experiment (the one in force) in its store,
    routing and metrics, whatever the generation; every sale is counted once and gets the
    verdict it got before; a command to a retired experiment gets the reply it got before it
    was retired; a worker started afterwards routes as the first did."""
    settings = make_settings(
        stack, allowed_lateness=LATENESS, dedupe_margin=MARGIN, tick_interval=0.1
    )
    await ensure_topics(settings)
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    pub = JsonPublisher(settings)
    await pub.start()
    generations = 5
    w = WorkerProcess(settings).start()
    workers = [w]
    try:
        sent = 0
        refused: dict[str, str] = {}
        for g in range(generations):
            exp, prev = f"gen{g}", f"gen{g - 1}"
            start = START + timedelta(days=g)
            await clock.set(start + timedelta(minutes=1))
            if g:  # the one before ends at this start, and its products are free
                await wait_until(
                    lambda prev=prev: _over(store, prev),
                    timeout=30,
                    what=f"{prev} ended, its messages out",
                )
            products = PRODUCTS + (["ONLY0"] if g == 0 else [])
            command_ok(
                await send_command_async(
                    settings, "create", timeout=60, backfill=True, spec=_doc(exp, products, start)
                )
            )
            await wait_until(
                lambda exp=exp: _published(store, exp), timeout=30, what=f"{exp}'s first period"
            )
            if g == generations - 1:  # ended, not retired yet: the reply a command gets
                refused["ended"] = await _refusal(settings, prev)
            # the one before's sales window closes: end + lateness + margin
            await clock.set(start + LATENESS + MARGIN)

            def one_held() -> bool:
                m = w.metrics()
                return _held(m, "store") == 1 and _held(m, "triggers") == 0

            await wait_until(one_held, timeout=30, what=f"{prev} retired (one spec held)")
            assert [s.spec.id for s in await store.experiments_unretired()] == [exp]
            if g == generations - 1:
                refused["retired"] = await _refusal(settings, prev)
                refused["long retired"] = await _refusal(settings, "gen0")

            at = start + timedelta(hours=2)
            batch = [_sale(f"{exp}-{p}", p, at) for p in PRODUCTS]
            batch += batch  # each sale twice: counted once
            batch.append(_sale(f"{exp}-only0", "ONLY0", at))  # gen0's: ok, then outside
            batch.append(_sale(f"{exp}-never", "NEVER", at))  # in no experiment, ever
            batch.append(_sale(f"{exp}-late", PRODUCTS[0], start - timedelta(hours=1)))
            for raw in batch:
                await pub.send(settings.topics.sales, raw, None)
            await pub.flush()
            sent += len(batch)
            await wait_until(
                lambda n=sent: metric_value(w.metrics(), "pricelab_sales_total") >= n,
                timeout=40,
                what=f"{exp}'s sales counted",
            )
            totals = await store.totals(exp)
            assert totals.get("events:ok") == len(PRODUCTS) + (g == 0), totals
            # the batch routed with the retirement seen: one experiment in its table
            assert _held(w.metrics(), "routing") == 1

        m = w.metrics()
        by_status = {
            s: metric_value(m, "pricelab_sales_total", status=s)
            for s in ("ok", "dup", "outside_experiment", "unknown_product", "late")
        }
        assert by_status == {
            "ok": len(PRODUCTS) * generations + 1,
            "dup": len(PRODUCTS) * generations,
            "outside_experiment": generations - 1,  # ONLY0 once gen0 had ended: as before
            "unknown_product": generations,
            "late": generations,
        }
        assert metric_value(m, "pricelab_sales_total") == sent
        # no series of a retired experiment is left (the one in force has its own): the tick
        # after the one that retired it removes them
        await wait_until(
            lambda: _series(w.metrics()) == {f"gen{generations - 1}"},
            what="the series of the retired experiments removed",
        )
        # a command to a retired experiment gets the reply it got while it was only ended
        assert refused["retired"] == refused["ended"]
        assert refused["long retired"] == refused["ended"].replace(f"gen{generations - 2}", "gen0")
        assert "final" in refused["ended"]

        # a worker started after the retirements routes the same: ONLY0 outside, NEVER unknown
        w.stop()
        w = WorkerProcess(settings).start()
        workers.append(w)
        at = START + timedelta(days=generations - 1, hours=2, minutes=30)
        for raw in (_sale("again-only0", "ONLY0", at), _sale("again-never", "NEVER", at)):
            await pub.send(settings.topics.sales, raw, None)
        await pub.flush()
        await wait_until(
            lambda: metric_value(w.metrics(), "pricelab_sales_total") >= 2,
            timeout=40,
            what="the restarted worker's sales",
        )
        m = w.metrics()
        assert metric_value(m, "pricelab_sales_total", status="outside_experiment") == 1
        assert metric_value(m, "pricelab_sales_total", status="unknown_product") == 1
        await wait_until(lambda: _held(w.metrics(), "store") == 1, what="one spec held")
        assert _held(w.metrics(), "routing") == 1
        dead = await read_topic(
            settings, settings.topics.dead_letter, expect=2 * generations + 1, timeout=30
        )
        assert Counter(d["reason"] for d in dead) == {
            "late": generations,
            "unknown_product": generations + 1,
        }
    finally:
        await pub.stop()
        for worker in workers:
            worker.stop()
        await redis.aclose()


async def _over(store: Store, exp: str) -> bool:
    st = await store.get_experiment(exp)
    return st.lifecycle.final and st.seq <= st.published


async def _published(store: Store, exp: str) -> bool:
    return (await store.get_experiment(exp)).published_through(0)


async def _refusal(settings: Any, exp: str) -> str:
    reply = await send_command_async(settings, "pause", timeout=30, experiment=exp, reason="x")
    assert not reply["ok"], reply
    return str(reply["error"])


def _series(m: str) -> set[str]:
    """The experiments that label a series of the worker's."""
    out = set()
    for line in m.splitlines():
        if not line.startswith("#") and 'experiment="' in line:
            out.add(line.split('experiment="', 1)[1].split('"', 1)[0])
    return out
