"""Pauses and stops in the assignments heatmap (issue #55): a layer over the periods, each
column's share that a pause or stop window overlaps (the panel's rule), laid over the kept
schedule at each request, so a pause shows without making the schedule again. shoes: 4
products, 5 daily periods from 2026-06-01 UTC, no washout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.store import to_ms
from streams.client import heatmap
from streams.client.heatmap import pause_layer
from tests.unit.streams.console.test_console_app import START, _sign_in, _state
from tests.unit.streams.console.test_console_charts import DOCS, _client, users_file  # noqa: F401

#: paused from 06:00 of day 1 to 12:00 of day 2: periods 1 and 2
PAUSE = {"start_ms": to_ms(START + timedelta(days=1, hours=6)),
         "end_ms": to_ms(START + timedelta(days=2, hours=12)), "reason": "price war"}  # fmt: skip
#: stopped at 12:00 of day 3 (a window that stays open): periods 3 and 4
STOP = {"start_ms": to_ms(START + timedelta(days=3, hours=12)), "end_ms": None, "reason": "stop"}


def test_the_pause_layer_is_each_period_a_window_overlaps() -> None:
    spec = _state("shoes", 2).spec
    layer = pause_layer(spec, [STOP, PAUSE])
    assert layer["paused"] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert layer["pauses"] == [  # oldest first, in the spec's zone (UTC)
        {"start": "2026-06-02T06:00:00+00:00", "end": "2026-06-03T12:00:00+00:00",
         "reason": "price war", "first_period": 1, "last_period": 2},
        {"start": "2026-06-04T12:00:00+00:00", "end": None, "reason": "stop",
         "first_period": 3, "last_period": 4},
    ]  # fmt: skip
    # a window that ends on a boundary does not reach the next period
    edge = {"start_ms": to_ms(START), "end_ms": to_ms(START + timedelta(days=1))}
    assert pause_layer(spec, [edge])["paused"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert pause_layer(spec, []) == {"paused": [0.0] * 5, "pauses": []}


def test_a_binned_column_holds_the_share_of_its_periods_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _state("shoes", 2).spec
    # 5 periods in at most 2 columns: periods 0-2 and 3-4 (bins: i * 2 // 5)
    monkeypatch.setattr(heatmap, "MAX_COLS", 2)
    assert pause_layer(spec, [PAUSE])["paused"] == [round(2 / 3, 4), 0.0]


def test_a_pause_shows_in_the_heatmap_without_making_the_schedule_again(
    users_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    schedule = heatmap.schedule_heatmap

    def counted(spec: Any, *args: Any, **kw: Any) -> dict[str, Any]:
        made.append(spec.id)
        return schedule(spec, *args, **kw)

    monkeypatch.setattr(heatmap, "schedule_heatmap", counted)
    with _client(users_file, {"shoes": DOCS}) as c:
        _sign_in(c, "vic")
        before = c.get("/api/experiments/shoes/assignments").json()
        assert before["paused"] == [0.0] * 5 and before["pauses"] == []
        c.app.state.console.store.held_windows = [PAUSE]  # type: ignore[attr-defined]
        after = c.get("/api/experiments/shoes/assignments").json()
    assert after["paused"] == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert [p["reason"] for p in after["pauses"]] == ["price war"]
    assert after["cells"] == before["cells"] and after["arm_share"] == before["arm_share"]
    assert made == ["shoes"]  # the schedule was made once
    assert datetime.fromisoformat(after["pauses"][0]["start"]).tzinfo is not None
    assert datetime.fromisoformat(after["pauses"][0]["start"]).astimezone(UTC) == START + timedelta(
        days=1, hours=6
    )
