"""The console's Health section of an adaptive ladder (issue #57): its sample ratio is read
against the probabilities recorded for each period (the panel source's ``allocations``), and
says so; the stand-ins are test_console_health's."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from controller.spec import load_spec
from controller.store.experiments import ExperimentState
from streams.client.history import Trail
from streams.console import auth
from streams.console.app import Console, build_app
from streams.console.health import HealthReads
from tests.unit.streams.console.test_console_app import hash_line
from tests.unit.streams.console.test_console_health import NOW, START, TRAIL, _Feed, _Store

ARMS = ["ctl", "a", "b"]
#: recorded for each of the three completed periods
RECORDED = {0: (0.5, 0.25, 0.25), 1: (0.5, 0.25, 0.25), 2: (0.1, 0.1, 0.8)}


def _state() -> ExperimentState:
    spec = load_spec(
        {
            "id": "ladder",
            "products": [f"p{i:02d}" for i in range(20)],
            "arms": [
                {"name": a, "policy": a, "allocation": x}
                | ({"control": True} if a == "ctl" else {})
                for a, x in zip(ARMS, RECORDED[0], strict=True)
            ],  # fmt: skip
            "adaptive": {"warmup": 2, "floor": 0.1},
            "start": START.isoformat(),
            "end": (START + timedelta(days=5)).isoformat(),
            "timezone": "UTC",
            "seed": 1,
        }
    )
    return ExperimentState(spec, "running", 3, 0, 0, 4, created_by="olga")


class _Panels:
    """Three periods of 20 products: 10 / 5 / 5 in the warmup's two, 2 / 2 / 16 in period 2
    (exactly as recorded); ``shift`` moves that many of period 2's products from b to ctl."""

    shift = 0

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        arms = {0: [0] * 10 + [1] * 5 + [2] * 5, 1: [0] * 10 + [1] * 5 + [2] * 5,
                2: [0] * (2 + self.shift) + [1] * 2 + [2] * (16 - self.shift)}  # fmt: skip
        rows = [
            {"product": f"p{i:02d}", "period": k, "units": 1.0, "treated": int(a != 0),
             "probability": 1 - RECORDED[k][0], "blackout": False, "arm": ARMS[a]}
            for k, col in arms.items()
            for i, a in enumerate(col)
        ]  # fmt: skip
        return pd.DataFrame(rows)

    async def allocations(self, exp_id: str) -> dict[int, tuple[float, ...]]:
        return dict(RECORDED)


@pytest.fixture
def panels() -> _Panels:
    return _Panels()


@pytest.fixture
def client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, panels: _Panels
) -> Iterator[TestClient]:
    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id, [r | {"experiment": exp_id} for r in TRAIL])

    async def letters(settings: Settings, idle: float) -> dict[tuple[str, str | None], int]:
        return {}

    monkeypatch.setattr("streams.console.health.read_trail", trail)
    monkeypatch.setattr("streams.console.views.read_trail", trail)
    monkeypatch.setattr("streams.console.views.read_freezes", lambda settings, exp_id: [])
    monkeypatch.setattr("streams.console.health.read_dead_letters", letters)
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        _Store([_state()]),  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        health=HealthReads(panels=panels),
    )
    with TestClient(build_app(console)) as c:
        r = c.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200, r.text
        yield c


def _sample_ratio(client: TestClient) -> dict[str, Any]:
    r = client.get("/api/experiments/ladder/health")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["now"] == NOW.isoformat()
    return next(c for c in doc["checks"] if c["key"] == "sample_ratio")


def test_an_adaptive_ladder_s_draws_are_read_against_its_recorded_probabilities(
    client: TestClient,
) -> None:
    check = _sample_ratio(client)
    # every period exactly as recorded: expected 10+10+2, 5+5+2, 5+5+16
    assert check["detail"]["against"] == "recorded"
    assert check["detail"]["observed"] == {"ctl": 22, "a": 12, "b": 26}
    assert check["detail"]["expected"] == pytest.approx({"ctl": 22.0, "a": 12.0, "b": 26.0})
    assert check["flag"] == "ok" and check["detail"]["statistic"] == pytest.approx(0.0)
    assert "probabilities recorded for their periods" in check["sentence"]
    page = client.get("/experiments/ladder/health")
    assert page.status_code == 200
    assert "draws match the probabilities recorded for their periods" in page.text


def test_draws_off_the_recorded_probabilities_are_a_problem(
    client: TestClient, panels: _Panels
) -> None:
    panels.shift = 14  # period 2: 16 / 2 / 2 where 2 / 2 / 16 were recorded
    check = _sample_ratio(client)
    assert check["detail"]["observed"] == {"ctl": 36, "a": 12, "b": 12}
    # d = (14, 0, -14); V = sum_t N_t (diag p_t - p_t p_t'), on (ctl, a): the warmup's two
    # periods 2 * [[5, -2.5], [-2.5, 3.75]], period 2 [[1.8, -0.2], [-0.2, 1.8]]: [[11.8,
    # -5.2], [-5.2, 9.3]], determinant 82.7; d' V^-1 d = 14^2 * 9.3 / 82.7 = 22.04 on 2 df,
    # p = exp(-22.04 / 2) = 1.6e-5
    assert check["detail"]["statistic"] == pytest.approx(196 * 9.3 / 82.7)
    assert check["detail"]["pvalue"] == pytest.approx(math.exp(-196 * 9.3 / 82.7 / 2))
    assert check["flag"] == "problem", check["sentence"]
    assert check["sentence"].startswith("The arms' draws differ from the probabilities recorded")
