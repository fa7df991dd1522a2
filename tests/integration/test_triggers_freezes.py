"""Triggered starts from competitor events, operator freezes and guardrails, on real processes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from controller.spec import ExperimentSpec, load_spec
from controller.store import Store, make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.launcher import WorkerProcess
from streams.worker.handlers import RawEvent
from streams.worker.kafka import JsonPublisher
from tests.integration.conftest import command_ok, read_topic, wait_until

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


def _daily_spec(exp_id: str, products: list[str], days: int, seed: int) -> ExperimentSpec:
    """A plain experiment of daily periods from START, with an hour's washout."""
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=days)).isoformat(),
            "washout": "PT1H",
            "seed": seed,
        }
    )


def triggered_doc(exp_id: str = "trig"):
    return {
        "id": exp_id,
        "design": "triggered",
        "clusters": {"tv55": ["a", "b", "c", "d"], "tv65": ["e", "f", "g", "h"]},
        "treatment_policy": "match",
        "control_policy": "rule",
        "start": START.isoformat(),
        "end": (START + timedelta(days=20)).isoformat(),
        "timezone": "UTC",
        "washout": "PT1H",
        "seed": 4,
        "triggered": {
            "undercut_pct": 5,
            "sustained_minutes": 30,
            "window_periods": 3,
            "matched_control": True,
            "reference_prices": {p: 100.0 for p in "abcdefgh"},
        },
    }


def price(product: str, p: float, at: datetime, competitor: str = "shop-x") -> bytes:
    return json.dumps(
        {
            "v": 1,
            "product": product,
            "competitor": competitor,
            "price": p,
            "observed_at": at.isoformat(),
        }
    ).encode()


async def test_competitor_undercut_triggers_a_staggered_start(settings):
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    clock = SharedSimulatedClock(redis, clock_key(settings.key_prefix))
    await clock.set(START + timedelta(hours=1))
    # events in this test arrive up to an hour after they were observed
    settings = settings.model_copy(
        update={"tick_interval": 0.1, "trigger_watermark_lag": timedelta(hours=2)}
    )
    w = WorkerProcess(settings).start()
    pub = JsonPublisher(settings)
    await pub.start()
    try:
        command_ok(
            await send_command_async(
                settings, "create", timeout=60, backfill=True, spec=triggered_doc()
            )
        )
        day2 = START + timedelta(days=2, hours=10)
        await clock.set(day2 + timedelta(minutes=52))
        # b: undercut 10% sustained 40 minutes -> fires; c: 3% only -> never; d: 10% for 10 min
        for product, p, minutes in (
            ("b", 90.0, 0),
            ("b", 90.0, 40),
            ("c", 97.0, 0),
            ("c", 97.0, 50),
            ("b", 91.0, 51),
            ("d", 90.0, 0),
            ("d", 100.0, 10),
        ):
            await pub.send(
                settings.topics.competitor_prices,
                price(product, p, day2 + timedelta(minutes=minutes)),
                product,
            )
        await pub.flush()

        async def b_fired() -> bool:
            return "b" in await store.triggers("trig")

        await wait_until(b_fired, 30, "the trigger of b")
        triggers = await store.triggers("trig")
        assert triggers == {"b": 3}  # the window opens at the next day boundary
        events = await read_topic(settings, settings.topics.experiment_events, expect=2)
        fired = [e for e in events if e["kind"] == "triggered"]
        assert [e["detail"]["product"] for e in fired] == ["b"]
        msgs = await read_topic(settings, settings.topics.assignments, expect=10)
        scheduled = [m for m in msgs if m["period"] == 3]
        assert {m["product"] for m in scheduled} >= {"b"}
        b = next(m for m in scheduled if m["product"] == "b")
        if b["arm"] == "treatment":  # a matched control from b's class is held for its window
            assert any(m["product"] in {"a", "c", "d"} and m["arm"] == "control" for m in scheduled)
        # at the boundary the flip applies the window
        await clock.set(START + timedelta(days=3, minutes=5))

        async def flipped() -> bool:
            return (await store.get_experiment("trig")).published_through(3)

        await wait_until(flipped, 30, "the flip into period 3")
        rec = await store.assignment_record("trig", 3, "b")
        assert rec is not None and rec[0] == ("T" if b["arm"] == "treatment" else "C")
    finally:
        await pub.stop()
        w.stop()
        await redis.aclose()


async def test_freeze_sends_products_to_control_and_excludes_their_sales(runtime, settings):
    spec = _daily_spec("fz", ["x", "y", "z"], days=4, seed=1)
    await runtime.clock.set(START + timedelta(hours=2))
    await runtime.flipper.create(spec, backfill=True)
    f_start, f_end = START + timedelta(hours=4), START + timedelta(hours=8)
    await runtime.flipper.freeze(
        "storm",
        {
            "start": f_start.isoformat(),
            "end": f_end.isoformat(),
            "reason": "holiday",
            "experiments": ["fz"],
        },
    )
    await runtime.clock.set(START + timedelta(hours=5))
    await runtime.flipper.tick()
    assert (await runtime.store.get_experiment("fz")).frozen
    msgs = await read_topic(settings, settings.topics.assignments, expect=6)
    frozen = [m for m in msgs if m["status"] == "frozen"]
    assert len(frozen) == 3 and {m["policy"] for m in frozen} == {"old"}
    sale = json.dumps(
        {
            "v": 1,
            "event_id": "fz1",
            "product": "x",
            "units": 1,
            "revenue": 1.0,
            "unit_price": 1.0,
            "occurred_at": (START + timedelta(hours=4, minutes=30)).isoformat(),
        }
    )
    assert await runtime.sales.handle([RawEvent(sale.encode())]) == {"freeze": 1}
    await runtime.clock.set(START + timedelta(hours=9))
    await runtime.flipper.tick()
    assert not (await runtime.store.get_experiment("fz")).frozen


async def test_bad_freeze_is_refused_naming_the_field(runtime):
    with pytest.raises(ValueError, match="end"):
        await runtime.flipper.freeze("bad", {"start": START.isoformat(), "end": START.isoformat()})


async def test_ticks_at_once_in_one_worker_flip_a_boundary_once(runtime, settings):
    """A worker ticks from its flip timer and from commands (create, freeze) at once: the two
    ticks share its flip claim (the same owner), and before ticks were serialised both
    flipped the boundary (its assignments published twice, two flips counted)."""
    spec = _daily_spec("twice", ["a", "b", "c"], days=2, seed=2)
    await runtime.clock.set(START + timedelta(minutes=1))
    await runtime.flipper.create(spec, backfill=True)
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    assert await asyncio.gather(runtime.flipper.tick(), runtime.flipper.tick()) in ([1, 0], [0, 1])
    state = await runtime.store.get_experiment("twice")
    assert state.flipped_period == 1 and state.flips == 2
    # a second publication would be there by now: read until a 7th message, or 3 s
    msgs = await read_topic(settings, settings.topics.assignments, expect=7, timeout=3)
    assert Counter(m["period"] for m in msgs if m["experiment"] == "twice") == {0: 3, 1: 3}


async def test_a_start_triggered_under_a_freeze_is_announced_on_control(settings):
    """A fire announces the product's next period; a freeze that covers that period's start
    holds it on control (status frozen), as the flip at the boundary will: a pricing system
    that applies the announcement at the boundary never charges the treatment price during
    the freeze."""
    from streams.worker.runtime import Runtime

    settings = settings.model_copy(update={"trigger_watermark_lag": timedelta(hours=2)})
    rt = Runtime(settings)
    await rt.ensure_started()
    try:
        spec = load_spec(triggered_doc("trigfz"))
        await rt.clock.set(START + timedelta(hours=1))  # type: ignore[attr-defined]
        await rt.flipper.create(spec, backfill=True)
        hold = (START + timedelta(days=2, hours=20), START + timedelta(days=3, hours=12))
        await rt.flipper.freeze(
            "hold",
            {"start": hold[0].isoformat(), "end": hold[1].isoformat(), "experiments": ["trigfz"]},
        )
        day2 = START + timedelta(days=2, hours=10)
        await rt.clock.set(day2 + timedelta(minutes=52))  # type: ignore[attr-defined]
        batch = [
            RawEvent(price("b", 90.0, day2)),
            RawEvent(price("b", 90.0, day2 + timedelta(minutes=40))),
        ]
        assert await rt.competitor.handle(batch) == 2
        assert await rt.store.triggers("trigfz") == {"b": 3}

        def announced(msgs: list[dict]) -> list[dict]:
            return [m for m in msgs if m["product"] == "b" and m["period"] == 3]

        msgs = await read_topic(
            settings,
            settings.topics.assignments,
            expect=100,
            until=lambda got: bool(announced(got)),
        )
        b = announced(msgs)
        assert [(m["status"], m["policy"]) for m in b] == [("frozen", "rule")]
        assert datetime.fromisoformat(b[0]["period_start"]) == START + timedelta(days=3)
    finally:
        await rt.stop()
