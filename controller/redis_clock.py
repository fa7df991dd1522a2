"""Simulated time shared by every process through one Redis key (clock mode 'simulated')."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis


class SharedSimulatedClock:
    """Reads simulated time from Redis on ``sync()``; the demo driver moves it with ``set()``."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._now: datetime | None = None

    def now(self) -> datetime:
        if self._now is None:
            raise RuntimeError("simulated clock not synced yet: the driver has not set it")
        return self._now

    @property
    def ready(self) -> bool:
        return self._now is not None

    async def sync(self) -> None:
        raw = await self._redis.get(self._key)
        if raw is not None:
            self._now = datetime.fromtimestamp(int(raw) / 1000.0, UTC)

    async def set(self, t: datetime) -> None:
        """Move simulated time forward (never backwards)."""
        ms = int(t.timestamp() * 1000)
        # max(old, new) atomically, so a late writer cannot move time back
        await self._redis.eval(
            "local c = tonumber(redis.call('GET', KEYS[1]) or '0') "
            "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end return 1",
            1,
            self._key,
            ms,
        )
        self._now = datetime.fromtimestamp(ms / 1000.0, UTC)
