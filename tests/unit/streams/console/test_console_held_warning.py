"""The "New experiment" page warns, as ``pricelab experiment create`` does on stderr, about an
adaptive ladder whose floor leaves an arm few held draws a period (issue #57,
``ExperimentSpec.held_warning``): the same sentence on the check's drawn result and in its JSON,
and none for a spec that does not earn it."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from controller.spec import load_spec
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    _Feed,
    _sign_in,
    _Store,
    hash_line,
)
from tests.unit.streams.console.test_console_launch import GOOD


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    users = tmp_path / "users"
    users.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        raise AssertionError("a check sends nothing")

    settings = Settings(console=ConsoleSettings(users_file=users))
    console = Console(settings, auth.Users.load(users), _Store([]), _Feed({}), send)  # type: ignore[arg-type]
    with TestClient(build_console_app(console)) as c:
        yield c


def _ladder(n_products: int) -> str:
    """tests/unit/controller/test_adaptive_held_warning.py's ladder: 3 arms, 10 daily periods,
    warmup 3, the default floor 0.05, on ``n_products`` products."""
    products = [f"P{i:02d}" for i in range(n_products)]
    doc: dict[str, Any] = {
        "id": "wide", "products": products, "start": "2026-05-04", "end": "2026-05-14",
        "seed": 3, "unit_costs": dict.fromkeys(products, 60),
        "arms": [
            {"name": "list", "policy": "list-price", "price_ratio": 1.0, "allocation": 0.34,
             "control": True},
            {"name": "p85", "policy": "price-85", "price_ratio": 0.85, "allocation": 0.33},
            {"name": "p120", "policy": "price-120", "price_ratio": 1.2, "allocation": 0.33},
        ],
        "adaptive": {"rule": "thompson", "warmup": 3},
    }  # fmt: skip
    return yaml.safe_dump(doc)


#: 16 products: the lowest probability 0.145995 (step 7, delta = 0.5 * 7^-0.2 = 0.338805;
#: 0.05 + 0.85 * 0.338805 / 3), 16 x 0.145995 = 2.336 held draws, under 4; a floor of 0.21
#: keeps 4 (16 x 0.251786 = 4.03). The CLI prints this after "warning: ".
HEAD = "adaptive.floor 0.05 leaves an arm 2.34 expected products a period whose window held it"


def test_the_check_shows_the_cli_s_held_draws_warning(client: TestClient) -> None:
    _sign_in(client, "vic")
    text = _ladder(16)
    r = client.post("/api/specs/check", data={"spec": text})
    assert r.status_code == 200, r.text
    warning = r.json()["warning"]
    assert warning.startswith(HEAD) and "a floor of 0.21 keeps 4" in warning
    # the function the CLI prints, not a copy of it
    assert warning == load_spec(yaml.safe_load(text)).held_warning()
    drawn = client.post("/api/specs/check", data={"spec": text}, headers={"HX-Request": "true"})
    assert drawn.status_code == 200
    assert 'id="spec-warning"' in drawn.text
    assert f"Warning: {warning}" in html.unescape(drawn.text)
    assert 'id="schedule"' in drawn.text  # warned, and the plan and schedule still shown


@pytest.mark.parametrize("spec", ["ladder-64", "random-days"])
def test_a_spec_that_earns_no_warning_shows_none(client: TestClient, spec: str) -> None:
    _sign_in(client, "vic")
    # 64 products: 64 x 0.145995 = 9.3 held draws, over 4; random days: not adaptive
    text = _ladder(64) if spec == "ladder-64" else Path(GOOD).read_text()
    r = client.post("/api/specs/check", data={"spec": text})
    assert r.status_code == 200, r.text
    assert r.json()["warning"] is None
    drawn = client.post("/api/specs/check", data={"spec": text}, headers={"HX-Request": "true"})
    assert drawn.status_code == 200 and 'id="spec-warning"' not in drawn.text
    assert 'id="schedule"' in drawn.text
