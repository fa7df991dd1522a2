"""The console's one reader of the audit trail (``streams.client.history.TrailFollower``) gives
each experiment the trail ``pricelab experiment history`` reads from the topic's start, and
after new records, the trail with them, read on from where it stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.settings import Settings
from controller.spec import load_spec
from streams.client.history import TrailFollower, read_trail

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


def _spec(exp_id: str, start: Any) -> Any:
    return load_spec(
        {
            "id": exp_id,
            "products": [f"{exp_id}-{i}" for i in range(4)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": start.isoformat(),
            "end": (start + timedelta(days=3)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "seed": 3,
        }
    )


async def test_the_followers_trail_is_the_topics_from_its_start(
    settings: Settings, runtime: Any
) -> None:
    start = START
    await runtime.clock.set(start + timedelta(seconds=1))
    for exp_id in ("tea", "cup"):
        await runtime.flipper.create(_spec(exp_id, start), backfill=True)
    follower = TrailFollower(settings, timeout=30)
    try:
        first = await follower.trail("tea")
        assert first.records, "the creation's records are on the topic"
        assert first.records == (await read_trail(settings, "tea")).records
        assert (await follower.trail("cup")).records == (await read_trail(settings, "cup")).records

        await runtime.clock.set(start + timedelta(hours=1, seconds=1))  # the next period: flips
        assert await runtime.flipper.tick() == 2
        again = await follower.trail("tea")
        assert len(again.records) > len(first.records)
        assert again.records[: len(first.records)] == first.records
        topic = await read_trail(settings, "tea")
        assert again.records == topic.records
        assert again.log_start == topic.log_start
    finally:
        await follower.close()
