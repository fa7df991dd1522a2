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


async def test_a_flip_claimed_by_another_worker_is_busy_not_an_error(settings) -> None:
    # regression: 'busy' returned the holder's whole claim ("owner|seq") and int() raised in
    # the losing worker's flip timer (found when timer errors started to end the process)
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    try:
        state = f"{store.exp('race')}:state"
        await redis.hset(state, "status", "running")
        status, seq = await store.claim_flip("race", 1, "worker-a", 30_000)
        assert status == "claimed" and seq >= 1
        assert await store.claim_flip("race", 1, "worker-b", 30_000) == ("busy", seq)
        assert await store.claim_flip("race", 1, "worker-a", 30_000) == ("mine", seq)
        # a stop moves the status before its kill switch takes a later sequence number: no
        # flip is claimed after it, not even the redo of a claim taken before
        await redis.hset(state, "status", "stopped")
        assert await store.claim_flip("race", 1, "worker-a", 30_000) == ("done", -1)
        assert await store.claim_flip("race", 2, "worker-b", 30_000) == ("done", -1)
        await redis.hset(state, "status", "paused")  # a paused experiment flips (to control)
        assert (await store.claim_flip("race", 2, "worker-b", 30_000))[0] == "claimed"
    finally:
        await redis.aclose()
