"""Simulated time shared by every process through one Redis key (clock mode 'simulated')."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from controller.store.base import lua


class SharedSimulatedClock:
    """Reads simulated time from Redis on ``sync()``; a driver moves it with ``set()``."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._now: datetime | None = None
        self._set = redis.register_script(lua("clock_set"))

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
        await self._set(keys=[self._key], args=[ms])
        self._now = datetime.fromtimestamp(ms / 1000.0, UTC)
