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
