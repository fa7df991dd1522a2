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


#: the clock modes a controller records (controller.settings.Settings.clock)
CLOCK_MODES = ("wall", "simulated")


async def record_clock_mode(redis: Redis, key: str, mode: str) -> None:
    """Say which clock the stack runs on: a controller worker writes it at start."""
    if mode not in CLOCK_MODES:
        raise ValueError(f"clock mode {mode!r} is not one of {CLOCK_MODES}")
    await redis.set(key, mode)


async def recorded_clock_mode(redis: Redis, key: str) -> str | None:
    """The clock the stack's controller recorded at start; None when none has (yet)."""
    raw = await redis.get(key)
    if raw is None:
        return None
    mode = raw.decode() if isinstance(raw, bytes) else str(raw)
    return mode if mode in CLOCK_MODES else None
