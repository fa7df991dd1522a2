"""A console user has no terminal: an unknown experiment's or draft's 404 says what is missing
and where the console shows those there are, never a CLI command (the CLI's own sentence,
the error's message, still names its commands). Every route that takes an id says it the
same way, on the API and on the pages; a typo keeps its nearest id."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.drafts import check_draft
from controller.errors import UnknownDraft, UnknownExperiment
from controller.lifecycle import check_known
from controller.settings import ConsoleSettings, Settings
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from tests.unit.streams.console.test_console_app import PASSWORDS, _Feed, _sign_in, hash_line
from tests.unit.streams.console.test_console_drafts import _DraftStore

NO_SHOEZ = (
    "No experiment 'shoez' (did you mean 'shoes'?): the Experiments list shows those there are."
)
NO_GHOST = "No experiment 'ghost': the Experiments list shows those there are."
NO_DRAFT = "No draft 'nothing': the Experiments list's drafts tab shows those there are."
NO_COATZ = (
    "No draft 'winter-coatz' (did you mean 'winter-coats'?): the Experiments list's drafts tab "
    "shows those there are."
)


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def client(tmp_path: Path, sent: list[tuple[str, dict[str, Any]]]) -> Iterator[TestClient]:
    users = tmp_path / "users"
    users.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return {"ok": True}

    settings = Settings(console=ConsoleSettings(users_file=users))
    console = Console(settings, auth.Users.load(users), _DraftStore(), _Feed({}), send)  # type: ignore[arg-type]
    with TestClient(build_console_app(console)) as c:
        yield c


GETS = [
    "/api/experiments/{id}",
    "/api/experiments/{id}/health",
    "/api/experiments/{id}/schedule",
    "/api/experiments/{id}/series",
    "/api/experiments/{id}/assignments",
    "/api/experiments/{id}/products/shoes1",
    "/api/experiments/{id}/events",
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize(("exp_id", "sentence"), [("shoez", NO_SHOEZ), ("ghost", NO_GHOST)])
def test_an_unknown_experiment_s_404_names_the_console_s_list(
    client: TestClient, path: str, exp_id: str, sentence: str
) -> None:
    _sign_in(client, "vic")
    r = client.get(path.format(id=exp_id))
    assert (r.status_code, r.json()) == (404, {"error": sentence})
    assert "pricelab" not in r.text


@pytest.mark.parametrize(
    "path", ["/experiments/{id}", "/experiments/{id}/health", "/experiments/{id}/schedule"]
)
def test_an_unknown_experiment_s_page_says_the_same(client: TestClient, path: str) -> None:
    _sign_in(client, "vic")
    r = client.get(path.format(id="shoez"))
    assert r.status_code == 404
    assert NO_SHOEZ in html.unescape(r.text) and "pricelab experiment" not in r.text


@pytest.mark.parametrize("kind", ["pause", "resume", "stop", "freeze", "decision", "comment"])
def test_an_act_on_an_unknown_experiment_says_it_and_sends_nothing(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], kind: str
) -> None:
    csrf = _sign_in(client, "olga" if kind != "decision" else "ana")
    fields = {"reason": "r", "text": "t", "end": "+2h", "arm": "control"}
    r = client.post(f"/api/experiments/ghost/{kind}", json=fields, headers={"X-CSRF-Token": csrf})
    assert (r.status_code, r.json()) == (404, {"error": NO_GHOST})
    hx = client.post(
        f"/api/experiments/ghost/{kind}",
        json=fields,
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert hx.status_code == 404 and NO_GHOST in html.unescape(hx.text)
    assert sent == []


def test_an_unknown_draft_s_404_names_the_drafts_tab(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    for draft_id, sentence in (("nothing", NO_DRAFT), ("winter-coatz", NO_COATZ)):
        r = client.get(f"/api/drafts/{draft_id}")
        assert (r.status_code, r.json()) == (404, {"error": sentence})
        page = client.get(f"/experiments/new?draft={draft_id}")
        assert page.status_code == 404 and sentence in html.unescape(page.text)
        r = client.post(
            f"/api/drafts/{draft_id}/discard", json={"reason": "r"}, headers={"X-CSRF-Token": csrf}
        )
        assert (r.status_code, r.json()) == (404, {"error": sentence})
    # a discarded draft is gone too
    assert client.get("/api/drafts/old").json() == {
        "error": "No draft 'old': the Experiments list's drafts tab shows those there are."
    }
    assert sent == []


def test_an_unfreeze_s_malformed_freeze_id_names_the_freezes_section(client: TestClient) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments/shoes/unfreeze",
        json={"reason": "r", "freeze_id": "no such id"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 422
    assert r.json()["error"] == (
        "'no such id' is no freeze's id: an id is 1-128 letters, digits, '_', '.', ':' or '-' "
        "(the Freezes section of the Experiments list shows them)"
    )


def test_the_cli_keeps_its_own_sentences() -> None:
    with pytest.raises(UnknownExperiment) as exp:
        check_known("shoez", ["shoes", "hats"])
    assert str(exp.value) == (
        "there is no experiment 'shoez' (did you mean 'shoes'? pricelab experiment list shows them)"
    )
    assert exp.value.near == "shoes"
    with pytest.raises(UnknownDraft) as draft:
        check_draft("nothing", None, ["winter-coats"])
    assert str(draft.value) == "there is no draft 'nothing' (pricelab experiment drafts lists them)"
    assert draft.value.near is None
