"""The flip's Redis write: records read back exactly, whatever the product names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from controller.designs import PeriodAssignments, assign_period, period_assignments
from controller.spec import load_spec
from controller.store import Store, encode_record, keys

pytestmark = pytest.mark.integration

ODD = ["plain", "ünïcødé-€", "with space", "crlf\r\ninside", "$3\r\nfoo", "*1", "日本語", "x" * 300]


def _spec(products: list[str]):  # type: ignore[no-untyped-def]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    return load_spec(
        {
            "id": "odd",
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": start.isoformat(),
            "end": (start + timedelta(days=3)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 3,
        }
    )


@pytest.mark.parametrize("chunk", [1, 3, 5000])
async def test_written_records_read_back_exactly(settings, chunk: int) -> None:
    products = ODD + [f"p{i}" for i in range(60)]
    spec = _spec(products)
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    try:
        whole = period_assignments(spec, 2)
        assert isinstance(whole, PeriodAssignments)
        expected = {a.product: encode_record(a) for a in assign_period(spec, 2)}
        assert await store.write_assignments(spec.id, 2, whole, chunk=chunk) == len(products)
        assert await store.assignment_records(spec.id, 2) == expected
        # a plain list of assignments takes the same route; a rewrite overwrites
        flipped = [replace(a, probability=0.25) for a in assign_period(spec, 3)]
        assert await store.write_assignments(spec.id, 3, flipped, chunk=chunk) == len(products)
        assert await store.assignment_records(spec.id, 3) == {
            a.product: encode_record(a) for a in flipped
        }
        # the connection is still usable for ordinary commands afterwards
        assert await redis.ping()
    finally:
        await redis.aclose()


async def test_a_failed_write_leaves_the_client_usable(settings) -> None:
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    spec = _spec(["a", "b", "c"])
    try:
        await redis.set(f"{keys.experiment(settings.key_prefix, 'odd')}:a:1", "not a hash")
        with pytest.raises(Exception, match="WRONGTYPE"):
            await store.write_assignments(spec.id, 1, period_assignments(spec, 1), chunk=1)
        assert await redis.get(f"{keys.experiment(settings.key_prefix, 'odd')}:a:1") == "not a hash"
        assert await store.write_assignments(spec.id, 2, period_assignments(spec, 2)) == 3
    finally:
        await redis.aclose()


async def test_the_turn_is_one_holders_and_a_decision_is_compare_and_set(settings) -> None:
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    try:
        state = f"{store.exp('race')}:state"
        await redis.hset(state, mapping={"status": "running", "flipped_period": -1, "seq": 0})
        assert await store.take_turn("race", "worker-a", 30_000)
        assert not await store.take_turn("race", "worker-b", 30_000)  # busy, not an error
        assert await store.take_turn("race", "worker-a", 30_000)  # renewed by its holder
        before = ("running", False, -1, 0)
        # not the holder: nothing written
        assert (
            await store.decide("race", "worker-b", before, ("running", False, 0), publish=True)
            == -1
        )
        seq = await store.decide("race", "worker-a", before, ("running", False, 0), publish=True)
        assert seq >= 1
        # decided from a state that has moved since: nothing written, no number taken
        assert (
            await store.decide("race", "worker-a", before, ("paused", False, 0), publish=True) == -1
        )
        paused = await store.decide(
            "race", "worker-a", ("running", False, 0, seq), ("paused", False, 0), publish=True
        )
        assert paused == seq + 1
        got = await redis.hmget(state, "status", "flipped_period", "seq", "flips")
        assert got == ["paused", "0", str(paused), None]
        await store.mark_published("race", paused)
        await store.mark_published("race", seq)  # never down
        assert await redis.hget(state, "published") == str(paused)
        await store.end_turn("race", "worker-b")  # not its turn: still worker-a's
        assert not await store.take_turn("race", "worker-b", 30_000)
        await store.end_turn("race", "worker-a")
        assert await store.take_turn("race", "worker-b", 30_000)
    finally:
        await redis.aclose()


async def test_the_turn_is_a_lease(settings) -> None:
    # a dead holder's turn ends with its lease (PX), so the next tick of another worker goes on
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    try:
        assert await store.take_turn("lease", "dead-worker", 30_000)
        assert 0 < await redis.pttl(f"{store.exp('lease')}:turn") <= 30_000
    finally:
        await redis.aclose()
