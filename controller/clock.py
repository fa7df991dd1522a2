"""Injected time. Only ``WallClock`` reads the system clock.

Every component asks a ``Clock`` for ``now()``. Before each tick a worker calls
``await clock.sync()``: a no-op for the wall clock, a read of the shared simulated time for
``SharedSimulatedClock`` (controller/redis_clock.py). The demo and tests drive simulated time
through exactly the code path production uses with the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sync(self) -> None: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sync(self) -> None:
        return None


class ManualClock:
    """A simulated clock owned by one process (unit tests, offline backfills)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    async def sync(self) -> None:
        return None

    def set(self, t: datetime) -> None:
        self._now = t.astimezone(UTC)

    def advance(self, dt: timedelta) -> None:
        self._now += dt
