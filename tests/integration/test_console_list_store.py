"""The list's read of every experiment (``Store.listed_experiments``, one pipelined HMGET
each) gives the fields a list shows as ``Store.experiments`` does, for experiments in
different states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.spec import load_spec
from streams.client.commands import _overview, read_overviews

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


async def test_the_lists_read_gives_what_the_full_read_gives(runtime: Any) -> None:
    await runtime.clock.set(START + timedelta(seconds=1))
    for i, (exp_id, offset) in enumerate((("now", 0), ("later", 2), ("halted", 0))):
        start = START + timedelta(days=offset)
        spec = load_spec(
            {
                "id": exp_id,
                "products": [f"{exp_id}-{j}" for j in range(3)],
                "treatment_policy": "new",
                "control_policy": "old",
                "start": start.isoformat(),
                "end": (start + timedelta(days=3)).isoformat(),
                "timezone": "UTC",
                "period": "PT1H",
                "seed": i,
            }
        )
        await runtime.flipper.create(spec, backfill=True)
    await runtime.store.set_status("halted", "paused")
    full = await runtime.store.experiments()
    listed = await runtime.store.listed_experiments()
    assert [s.spec.id for s in listed] == [s.spec.id for s in full]
    assert {s.phase for s in full} == {"running", "created", "paused"}
    for a, b in zip(full, listed, strict=True):
        assert [getattr(a, f) for f in ("status", "frozen", "flipped_period", "seq")] == [
            getattr(b, f) for f in ("status", "frozen", "flipped_period", "seq")
        ]
        assert a.created_ms == b.created_ms > 0
        assert _overview(a) == _overview(b)
    assert await read_overviews(runtime.store) == [_overview(s) for s in full]
