"""Timer bodies: a Redis outage skips a tick; any other error ends the process (exit 70)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.handlers import EXIT_TIMER_FAILED, RedisOutageTolerated
from streams.metrics import Metrics


async def _run(exc: BaseException, exits: list[int], metrics: Metrics) -> None:
    async with RedisOutageTolerated("period flip", metrics, exit=exits.append):
        raise exc


@pytest.mark.asyncio
async def test_redis_outage_is_counted_and_the_tick_skipped() -> None:
    metrics, exits = Metrics(), []
    await _run(RedisConnectionError("refused"), exits, metrics)  # swallowed
    assert exits == []
    retries = metrics.registry.get_sample_value(
        "pricelab_redis_retries_total", {"component": "period flip"}
    )
    assert retries == 1.0


@pytest.mark.asyncio
async def test_unexpected_error_exits_with_its_own_status() -> None:
    metrics, exits = Metrics(), []
    with pytest.raises(KeyError):
        await _run(KeyError("bug"), exits, metrics)
    assert exits == [EXIT_TIMER_FAILED] and EXIT_TIMER_FAILED == 70


@pytest.mark.asyncio
async def test_cancellation_is_shutdown_not_a_failure() -> None:
    metrics, exits = Metrics(), []
    with pytest.raises(asyncio.CancelledError):
        await _run(asyncio.CancelledError(), exits, metrics)
    assert exits == []
