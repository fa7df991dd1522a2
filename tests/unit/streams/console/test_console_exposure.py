"""The Health section's multiple exposure and traffic over time (issue #55): a pause, stop or
freeze that begins or ends inside a period puts the control's price on products that were in
another arm for the rest of it; the panel must black those cells out. The traffic is each
completed period's units and products by arm, from the panel the sample-ratio check reads.
Stand-ins as in test_console_health: shoes has three completed periods (days 0 to 2), four
products, shoes0 and shoes1 treated, five units a cell, none in period 2."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from controller.store import to_ms
from streams.client.exposure import cut_periods, exclusion_edges
from streams.client.health import ONE_EXPERIMENT
from streams.client.history import Trail
from streams.console import auth
from streams.console.app import Console, build_app
from streams.console.health import HealthReads
from tests.unit.streams.console.test_console_app import hash_line
from tests.unit.streams.console.test_console_health import (
    NOW,
    START,
    TRAIL,
    _Feed,
    _look,
    _Panels,
    _state,
    _Store,
)

#: a pause from 06:00 to 12:00 of day 1: it begins and ends inside period 1
PAUSE = {"start_ms": to_ms(START + timedelta(days=1, hours=6)),
         "end_ms": to_ms(START + timedelta(days=1, hours=12)), "reason": "price war"}  # fmt: skip
#: a freeze of every experiment over the whole of day 2, boundary to boundary: no cut
FREEZE = {"start_ms": to_ms(START + timedelta(days=2)), "end_ms": to_ms(START + timedelta(days=3)),
          "experiments": None}  # fmt: skip


class _BlackedOut(_Panels):
    """The same panel, with period 1 blacked out (as the panel source does for a window)."""

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        df = await super().panel(exp_id, as_of)
        return df.assign(blackout=df["period"] == 1)


def test_a_period_is_cut_only_by_an_edge_inside_it() -> None:
    spec = _state("shoes", 3, None).spec
    edges = exclusion_edges([PAUSE], [FREEZE, FREEZE | {"experiments": ["hats"]}], "shoes")
    # the pause's two edges, the freeze of every experiment's two; hats' freeze is not shoes'
    assert [kind for _, kind in edges] == ["pause", "pause", "freeze", "freeze"]
    assert cut_periods(spec, edges, 3) == {1: "pause"}  # the freeze's edges are boundaries
    open_stop = {"start_ms": to_ms(START + timedelta(days=2, hours=3)), "end_ms": None,
                 "id": "stopped-0a1b2c3d"}  # fmt: skip
    assert cut_periods(spec, exclusion_edges([open_stop], [], "shoes"), 3) == {2: "stop"}
    assert cut_periods(spec, edges, 1) == {}  # period 1 not completed yet


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, panels: Any) -> TestClient:
    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id, [r | {"experiment": exp_id} for r in TRAIL])

    async def letters(settings: Settings, idle: float) -> dict[str, int]:
        return {}

    monkeypatch.setattr("streams.console.health.read_trail", trail)
    monkeypatch.setattr("streams.console.health.read_dead_letters", letters)
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    store = _Store([_state("shoes", 3, "olga")])
    store.held_windows = [PAUSE]
    store.held_freezes = [FREEZE]
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        store,  # type: ignore[arg-type]
        _Feed({"shoes": [_look(NOW - timedelta(minutes=30))]}),  # type: ignore[arg-type]
        health=HealthReads(panels=panels),
    )
    c = TestClient(build_app(console))
    return c


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with _client(tmp_path, monkeypatch, _Panels()) as c:
        assert c.post("/api/login", json={"user": "vic", "password": "v-pass"}).status_code == 200
        yield c


def test_a_cut_period_not_blacked_out_is_a_problem(client: TestClient) -> None:
    doc = client.get("/api/experiments/shoes/health").json()
    check = {c["key"]: c for c in doc["checks"]}["exposure"]
    # period 1's treated products: shoes0 and shoes1, one cell each; the panel kept both
    assert check["flag"] == "problem"
    assert check["detail"] == {"cells": 2, "products": 2, "periods": {"1": "pause"},
                               "not_blacked_out": 2}  # fmt: skip
    assert "period(s) 1 (pause)" in check["sentence"]
    assert "2 of them are not blacked out" in check["sentence"]


def test_a_cut_period_blacked_out_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client(tmp_path, monkeypatch, _BlackedOut()) as c:
        c.post("/api/login", json={"user": "vic", "password": "v-pass"})
        check = {x["key"]: x for x in c.get("/api/experiments/shoes/health").json()["checks"]}
    exposure = check["exposure"]
    assert exposure["flag"] == "warn" and exposure["detail"]["not_blacked_out"] == 0
    assert "all are blacked out" in exposure["sentence"]
    assert ONE_EXPERIMENT in exposure["sentence"]


def test_the_traffic_is_each_period_s_units_and_products_by_arm(client: TestClient) -> None:
    doc = client.get("/api/experiments/shoes/health").json()
    assert doc["arms"] == ["treatment", "control"]
    # two products an arm, five units a cell in periods 0 and 1, none in period 2
    assert [(t["period"], t["arms"]["treatment"]["units"], t["arms"]["control"]["units"])
            for t in doc["traffic"]] == [(0, 10.0, 10.0), (1, 10.0, 10.0), (2, 0.0, 0.0)]  # fmt: skip
    assert {t["arms"]["control"]["products"] for t in doc["traffic"]} == {2}
    assert doc["traffic"][0]["arms"]["treatment"]["orders"] is None  # the panel has none
    page = client.get("/experiments/shoes/health").text
    assert 'id="traffic"' in page and '<tr data-period="1">' in page
    assert "<td>1</td><td>10</td><td>-</td><td>2</td><td>10</td><td>-</td><td>2</td>" in page
    assert 'data-check="exposure" data-flag="problem"' in page
    # the chart's figures, as the page's script reads them: the API's own
    held = re.search(r"data-traffic='([^']*)'", page)
    assert held is not None
    drawn = json.loads(held.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    assert drawn == {"arms": doc["arms"], "traffic": doc["traffic"]}


def test_a_dead_letter_is_traced_to_its_experiment_by_its_sale_s_product() -> None:
    from streams.client.health import dead_letters_check, letters_of, sale_product

    assert sale_product(b'{"event_id": "e1", "product": "shoes2", "units": 1}') == "shoes2"
    for raw in (b"not json", b'["shoes2"]', b'{"product": 7}', b"\xff\xfe"):
        assert sale_product(raw) is None
    letters = {("late", "shoes2"): 2, ("malformed", "shoes0"): 1, ("late", "hats1"): 5,
               ("malformed", None): 3}  # fmt: skip
    mine = letters_of(letters, frozenset({"shoes0", "shoes1", "shoes2"}))
    assert mine == {"late": 2, "malformed": 1}
    check = dead_letters_check(mine, fleet=11)
    assert check.flag == "warn" and check.detail["total"] == 3
    assert check.sentence == (
        "3 dead letter(s) name a product of this experiment (2 late, 1 malformed), 2 of them "
        "late sales; the topic holds 8 more, of other experiments' products or naming none: "
        "an operator can read and replay them from the dead-letter topic."
    )
    clean = dead_letters_check(letters_of(letters, frozenset({"boots0"})), fleet=11)
    assert clean.flag == "ok" and clean.sentence.startswith(
        "No dead letter and no late sale names a product of this experiment; the topic holds 11"
    )
    assert dead_letters_check({}, fleet=0).sentence == (
        "No dead letter and no late sale names a product of this experiment."
    )


def test_an_edge_inside_a_periods_washout_does_not_cut_it() -> None:
    """A pause over the night that ends half an hour into period 1 (washout: two hours): the
    return to the arms' prices falls in the washout, which no estimate reads, and the panel
    does not black period 1 out (controller.panel_cells.window_hits). Before, the edge made
    period 1 cut, and its treated cells not blacked out a PROBLEM: two arms' prices mixed."""
    spec = _state("shoes", 3, None).spec.model_copy(update={"washout": timedelta(hours=2)})
    night = {"start_ms": to_ms(START + timedelta(hours=20)),
             "end_ms": to_ms(START + timedelta(days=1, minutes=30)), "id": "paused-0a1b2c3d"}  # fmt: skip
    # period 0 is cut (the pause began in its analysed part); period 1 is not
    assert cut_periods(spec, exclusion_edges([night], [], "shoes"), 3) == {0: "pause"}
    # an edge after the washout cuts the period as before
    later = night | {"end_ms": to_ms(START + timedelta(days=1, hours=3))}
    assert cut_periods(spec, exclusion_edges([later], [], "shoes"), 3) == {0: "pause", 1: "pause"}
