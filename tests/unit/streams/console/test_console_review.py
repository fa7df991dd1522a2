"""Defects a review of the console found, each with the behaviour that shows it fixed."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.settings import Settings
from streams.client.history import Trail
from streams.console import views
from tests.unit.streams.console.test_console_decision import (  # noqa: F401 - fixtures
    _sign_in,
    client,
    sent,
    users_file,
)


def _create(n: int, who: str, accepted: bool) -> dict[str, Any]:
    return {
        "experiment": "shoes",
        "kind": "command",
        "at": f"2026-05-3{n}T10:00:00+00:00",
        "detail": {"command_id": f"c{n}", "command": "create", "actor": who,
                   "accepted": accepted},
    }  # fmt: skip


def test_created_by_is_who_sent_the_accepted_create_not_a_refused_one(
    client: TestClient,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An experiment created before its state kept its creator: the trail names them. A
    create refused first (a start before now) is not the one that created it."""
    t = Trail("shoes")
    t.records += [_create(0, "olga", False), _create(1, "ada", True)]

    async def read_trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return t

    monkeypatch.setattr(views, "read_trail", read_trail)
    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])
    _sign_in(client, "vic")
    assert client.get("/api/experiments/shoes").json()["overview"]["created_by"] == "ada"


def test_the_health_section_keeps_the_panels_of_a_few_experiments_not_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A panel source keeps buffers sized for the whole experiment it read: the console keeps
    those of the experiments asked last (PANELS_KEPT), not of every experiment it showed."""
    import asyncio
    import gc
    import weakref
    from datetime import datetime

    import pandas as pd

    from controller.settings import ConsoleSettings
    from streams.console.health import PANELS_KEPT, HealthReads, health_view
    from tests.unit.streams.console.test_console_health import _Feed, _state, _Store

    class _Buffers:  # what a source keeps of an experiment it read
        pass

    alive: weakref.WeakSet[_Buffers] = weakref.WeakSet()

    class _Source:  # as RedisPanelSource: what it read, kept by experiment
        def __init__(self) -> None:
            self.known: dict[str, _Buffers] = {}

        async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
            if exp_id not in self.known:
                self.known[exp_id] = _Buffers()
                alive.add(self.known[exp_id])
            return pd.DataFrame()

    async def source(settings: Settings, store: Any) -> _Source:
        return _Source()

    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id)

    async def letters(settings: Settings, idle: float) -> dict[str, int]:
        return {}

    monkeypatch.setattr("streams.console.health.panel_source", source)
    monkeypatch.setattr("streams.console.health.read_trail", trail)
    monkeypatch.setattr("streams.console.health.read_dead_letters", letters)
    ids = [f"e{i}" for i in range(PANELS_KEPT + 3)]
    store = _Store([_state(i, 2, None) for i in ids])
    settings = Settings(console=ConsoleSettings())
    kept = HealthReads()

    async def ask(exp_id: str) -> str:
        doc = await health_view(settings, store, _Feed({}), kept, exp_id)  # type: ignore[arg-type]
        return str(doc["experiment"])

    for exp_id in ids:
        assert asyncio.run(ask(exp_id)) == exp_id
    gc.collect()
    assert len(alive) == PANELS_KEPT


def test_an_analyst_s_pause_is_refused_in_a_sentence_that_reads(
    client: TestClient,  # noqa: F811
) -> None:
    csrf = _sign_in(client, "ana")
    r = client.post(
        "/api/experiments/shoes/pause", json={"reason": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    assert r.json()["error"] == "an analyst may not operate: ask an operator or an admin"
