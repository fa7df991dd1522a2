"""The sales path against the real broker and Redis: routing, washout, dedupe, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from controller.spec import load_spec
from streams.worker.handlers import RawEvent
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


def _spec(**kw):
    base = dict(
        id="exp-sales",
        products=["A", "B", "C", "D"],
        treatment_policy="new",
        control_policy="old",
        start=START.isoformat(),
        end=(START + timedelta(days=5)).isoformat(),
        timezone="UTC",
        washout="PT2H",
        seed=11,
    )
    base.update(kw)
    return load_spec(base)


def sale(eid: str, product: str, at: datetime, units: int = 2, price: float = 5.0) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "event_id": eid,
            "product": product,
            "units": units,
            "revenue": units * price,
            "unit_price": price,
            "occurred_at": at.isoformat(),
        }
    ).encode()


async def _started(runtime, spec, at: datetime):
    await runtime.clock.set(at)
    await runtime.flipper.create(spec, backfill=True)
    state = await runtime.store.get_experiment(spec.id)
    assert state.flipped_period == 0
    return state


async def test_duplicates_are_counted_once(runtime):
    spec = _spec()
    await _started(runtime, spec, START + timedelta(hours=12))
    at = START + timedelta(hours=10)  # after the washout: always analysed
    batch = [RawEvent(sale(f"e{i}", "A", at)) for i in range(5)]
    first = await runtime.sales.handle(batch)
    again = await runtime.sales.handle(batch + batch[:2])  # redelivery and a duplicate in-batch
    assert first == {"ok": 5}
    assert again == {"dup": 7}
    cells = await runtime.store.cells(spec.id)
    assert cells["0|A|u"] == "10"
    assert cells["0|A|n"] == "5"


async def test_washout_sales_are_kept_for_audit_but_not_analysed(runtime):
    spec = _spec()
    await _started(runtime, spec, START + timedelta(hours=12))
    early = START + timedelta(minutes=30)  # period 0 is a switch for everyone: washout
    late = START + timedelta(hours=3)
    counts = await runtime.sales.handle(
        [RawEvent(sale("w1", "B", early, 3)), RawEvent(sale("w2", "B", late, 4))]
    )
    assert counts == {"washout": 1, "ok": 1}
    assert await runtime.store.excluded(spec.id) == {"0|B|washout": "3"}
    assert (await runtime.store.cells(spec.id))["0|B|u"] == "4"
    assert await runtime.store.remembered(spec.id, 0, "w1")
    assert not await runtime.store.remembered(spec.id, 0, "never-sent")


async def test_malformed_events_go_to_dead_letter_and_processing_continues(runtime, settings):
    spec = _spec()
    await _started(runtime, spec, START + timedelta(hours=12))
    at = START + timedelta(hours=6)
    bad = [
        b"{not json",
        json.dumps(
            {
                "v": 1,
                "event_id": "n1",
                "product": "A",
                "units": -1,
                "revenue": 1,
                "unit_price": 1,
                "occurred_at": at.isoformat(),
            }
        ).encode(),
        sale("z1", "NOT-IN-ANY-EXPERIMENT", at),
        sale("old", "A", at - timedelta(days=30)),
        b"",
    ]
    good = [RawEvent(sale("g1", "C", at)), RawEvent(sale("g2", "D", at))]
    counts = await runtime.sales.handle(
        [RawEvent(b, partition=0, offset=i) for i, b in enumerate(bad)] + good
    )
    assert counts["ok"] == 2
    dead = await read_topic(settings, settings.topics.dead_letter, expect=5)
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted(
        ["malformed_json", "invalid_field", "unknown_product", "late", "empty"]
    )
    originals = {base64.b64decode(d["original_b64"]) for d in dead}
    assert b"{not json" in originals
    assert all(d["source_topic"] == settings.topics.sales for d in dead)


async def test_sales_in_a_paused_window_are_excluded(runtime):
    spec = _spec()
    await _started(runtime, spec, START + timedelta(hours=12))
    await runtime.flipper.pause(spec.id)
    at = START + timedelta(hours=13)
    await runtime.clock.set(at + timedelta(minutes=1))
    counts = await runtime.sales.handle([RawEvent(sale("p1", "A", at))])
    assert counts == {"paused": 1}


async def test_the_clock_check_reads_redis_only_until_the_clock_is_set(runtime, settings):
    """The sales path asks before every batch whether the simulated clock is set; once it is,
    the answer comes without a Redis read (a read would wait behind the script in flight)."""
    from streams.worker.runtime import Runtime

    async def gets() -> int:
        stats = await runtime.redis.info("commandstats")
        return int(stats.get("cmdstat_get", {}).get("calls", 0))

    other = Runtime(settings)  # another process's view: its clock not read yet
    await other.ensure_started()
    try:
        before = await gets()
        assert not await other.clock_ready()  # no driver has set it
        assert await gets() == before + 1
        await runtime.clock.set(START)  # the driver sets it (its script reads the key too)
        before = await gets()
        assert await other.clock_ready()
        assert await gets() == before + 1
        for _ in range(5):
            assert await other.clock_ready()
        assert await gets() == before + 1
        assert other.clock.now() == START
    finally:
        await other.stop()
