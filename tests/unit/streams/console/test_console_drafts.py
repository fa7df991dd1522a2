"""The console's drafts: the list's drafts tab with its count, a draft opened on the "New
experiment" page with its spec, and saving and discarding through the commands topic as the
signed-in user. A viewer may read but not save (403), a discard is its author's or an
operator's, every POST needs the session (401) and its CSRF token (403), and a bad spec gives
the sentence ``pricelab experiment draft`` prints."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.drafts import Draft
from controller.settings import ConsoleSettings, Settings
from streams.cli import main
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    _Feed,
    _sign_in,
    _state,
    _Store,
    hash_line,
)

ROOT = Path(__file__).resolve().parents[4]
GOOD = (ROOT / "docs" / "examples" / "random-days.yaml").read_text()
#: a spec the CLI refuses: a washout longer than the period
BAD = GOOD.replace("washout: PT2H", "washout: P3D")

SPECS = {
    "winter-coats": {"id": "winter-coats", "design": "random-days", "products": ["c1", "c2"]},
    "summer-hats": {"id": "summer-hats", "design": "crossover", "products": ["h1"]},
}


def _draft(draft_id: str, author: str, updated_ms: int, discarded: bool = False) -> Draft:
    return Draft(
        id=draft_id,
        design=str(SPECS.get(draft_id, {}).get("design", "random-days")),
        arms=("treatment", "control"),
        products=len(SPECS.get(draft_id, {}).get("products", [])),
        author=author,
        created_ms=updated_ms,
        updated_ms=updated_ms,
        updated_by=author,
        discarded_ms=updated_ms + 1 if discarded else None,
        discarded_by="olga" if discarded else None,
        reason="gone" if discarded else None,
    )


class _DraftStore(_Store):
    """The stand-in store, with two live drafts (ana's, olga's) and a discarded one."""

    def __init__(self) -> None:
        super().__init__([_state("shoes", 2), _state("hats", -1)])
        self.held = {
            "winter-coats": _draft("winter-coats", "ana", 2_000),
            "summer-hats": _draft("summer-hats", "olga", 1_000),
            "old": _draft("old", "ana", 500, discarded=True),
        }

    async def drafts(self) -> list[Draft]:
        return list(self.held.values())

    async def draft(self, draft_id: str) -> Draft | None:
        return self.held.get(draft_id)

    async def draft_spec(self, draft_id: str) -> str | None:
        held = self.held.get(draft_id)
        return json.dumps(SPECS[draft_id]) if held is not None and held.live else None


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drafts") / "users"
    path.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))
    return path


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def reply() -> dict[str, Any]:
    """What the stand-in controller answers (a test may change it)."""
    return {"ok": True, "command_id": "c1", "detail": {"saved": "new"}}


@pytest.fixture
def client(
    users_file: Path, sent: list[tuple[str, dict[str, Any]]], reply: dict[str, Any]
) -> Iterator[TestClient]:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return reply

    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _DraftStore(),  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_console_app(console)) as c:
        yield c


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``pricelab ARGS`` in-process: its exit status and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return int(exit_.value.code or 0), capsys.readouterr().err


def test_without_a_session_every_drafts_route_is_401(client: TestClient) -> None:
    assert client.get("/api/drafts").status_code == 401
    assert client.get("/api/drafts/winter-coats").status_code == 401
    r = client.post("/api/drafts", json={"spec": GOOD})
    assert (r.status_code, r.json()) == (401, {"error": "sign in first"})
    assert client.post("/api/drafts/winter-coats/discard", json={"reason": "r"}).status_code == 401
    page = client.get("/experiments/new?draft=winter-coats", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_the_drafts_read_as_json_live_ones_only_and_one_with_its_spec(client: TestClient) -> None:
    _sign_in(client, "vic")  # any role reads
    listed = client.get("/api/drafts").json()["drafts"]
    assert [d["id"] for d in listed] == ["winter-coats", "summer-hats"]  # last saved first
    assert listed[0]["author"] == "ana" and listed[0]["products"] == 2
    one = client.get("/api/drafts/summer-hats").json()
    assert one["spec"] == SPECS["summer-hats"] and one["author"] == "olga"
    for gone in ("old", "nothing"):
        r = client.get(f"/api/drafts/{gone}")
        assert r.status_code == 404
        assert r.json() == {
            "error": f"No draft {gone!r}: the Experiments list's drafts tab shows those there are."
        }


def test_the_list_has_a_drafts_tab_with_its_count_and_rows_open_the_new_page(
    client: TestClient,
) -> None:
    _sign_in(client, "vic")
    counts = client.get("/api/experiments").json()["counts"]
    assert counts["drafts"] == 2 and counts["all"] == 2  # the drafts are not experiments
    page = client.get("/experiments?status=drafts").text
    assert re.search(r'aria-current="page" class="current">drafts \(2\)</a>', page)
    assert 'href="/experiments/new?draft=winter-coats"' in page
    assert 'href="/experiments/new?draft=summer-hats"' in page
    assert 'id="experiments"' not in page  # the drafts' table, not the experiments'
    assert "data-live" not in page  # no live stream: a look changes no draft
    searched = client.get("/experiments?status=drafts&q=crossover").text
    assert "summer-hats" in searched and "winter-coats" not in searched
    everything = client.get("/experiments?status=all").text
    assert "drafts (2)" in everything and "new?draft=" not in everything


def _textarea(page: str) -> str:
    m = re.search(r'<textarea name="spec" id="spec"[^>]*>(.*?)</textarea>', page, re.S)
    assert m is not None
    return html.unescape(m.group(1))


def test_a_draft_opens_on_the_new_page_with_its_spec_and_the_buttons_the_role_may_use(
    client: TestClient,
) -> None:
    _sign_in(client, "vic")
    page = client.get("/experiments/new?draft=winter-coats").text
    assert json.loads(_textarea(page)) == SPECS["winter-coats"]
    assert "Draft <strong>winter-coats</strong> by ana" in page
    assert (
        'id="save-draft"' not in page and 'id="discard"' not in page and 'id="launch"' not in page
    )
    _sign_in(client, "ana")  # an analyst saves drafts, and discards their own
    page = client.get("/experiments/new?draft=winter-coats").text
    assert 'id="save-draft"' in page and 'id="discard"' in page and 'id="launch"' not in page
    page = client.get("/experiments/new?draft=summer-hats").text  # olga's
    assert 'id="save-draft"' in page and 'id="discard"' not in page
    _sign_in(client, "olga")  # an operator launches, and discards anyone's
    page = client.get("/experiments/new?draft=winter-coats").text
    assert 'id="launch"' in page and 'id="discard"' in page
    assert _textarea(client.get("/experiments/new").text) == ""
    missing = client.get("/experiments/new?draft=nothing")
    assert missing.status_code == 404 and "No draft &#39;nothing&#39;" in missing.text


def test_a_save_needs_csrf_and_a_role_that_may_act_and_goes_out_as_the_user(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "vic")
    r = client.post("/api/drafts", json={"spec": GOOD}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert r.json() == {"error": "a viewer may not draft: ask an analyst, an operator or an admin"}
    csrf = _sign_in(client, "ana")
    r = client.post("/api/drafts", json={"spec": GOOD})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert sent == []
    r = client.post("/api/drafts", data={"spec": GOOD, "csrf": csrf})  # the page's form
    assert r.status_code == 200, r.text
    [(kind, fields)] = sent
    assert (kind, fields["actor"], fields["spec"]["id"]) == ("draft", "ana", "shoes-random-days")
    assert r.json()["draft"] == "shoes-random-days" and r.json()["reply"]["ok"] is True
    # from the page (htmx): the reply drawn, with a link to the draft
    shown = client.post(
        "/api/drafts", data={"spec": GOOD}, headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert 'href="/experiments/new?draft=shoes-random-days"' in shown.text
    assert "draft of shoes-random-days accepted, as ana (new draft)" in shown.text


def test_a_bad_spec_is_422_with_the_sentence_pricelab_experiment_draft_prints(
    client: TestClient,
    sent: list[tuple[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, err = _cli(capsys, "experiment", "draft", str(path))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    csrf = _sign_in(client, "ana")
    r = client.post(
        "/api/drafts", json={"spec": BAD, "name": "bad.yaml"}, headers={"X-CSRF-Token": csrf}
    )
    assert (r.status_code, r.json()) == (422, {"error": err.removeprefix("error: ").rstrip()})
    assert sent == []


def test_the_controllers_refusal_is_409_with_its_sentence(
    client: TestClient, reply: dict[str, Any]
) -> None:
    reply.clear()
    reply |= {"ok": False, "error": "'shoes' is an experiment already: a draft cannot take its id"}
    csrf = _sign_in(client, "ana")
    r = client.post("/api/drafts", json={"spec": GOOD}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and r.json()["reply"]["error"] == reply["error"]


def test_a_discard_is_the_authors_or_an_operators_and_needs_a_reason(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "vic")
    r = client.post(
        "/api/drafts/winter-coats/discard", json={"reason": "r"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    csrf = _sign_in(client, "ana")
    r = client.post("/api/drafts/winter-coats/discard", json={"reason": "r"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/drafts/summer-hats/discard", json={"reason": "r"}, headers=h)
    assert (r.status_code, r.json()) == (
        403,
        {
            "error": "an analyst may discard only their own drafts: ask its author (olga), an "
            "operator or an admin"
        },
    )
    r = client.post("/api/drafts/nothing/discard", json={"reason": "r"}, headers=h)
    assert r.status_code == 404
    r = client.post("/api/drafts/winter-coats/discard", json={"reason": " "}, headers=h)
    assert r.status_code == 422 and "needs a reason" in r.json()["error"]
    assert sent == []
    r = client.post("/api/drafts/winter-coats/discard", json={"reason": "dup"}, headers=h)
    assert r.status_code == 200
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/drafts/winter-coats/discard", json={"reason": "tidy"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200
    assert [(k, f["experiment"], f["actor"], f["reason"]) for k, f in sent] == [
        ("discard", "winter-coats", "ana", "dup"),
        ("discard", "winter-coats", "olga", "tidy"),
    ]


def test_the_cli_refuses_a_discard_without_a_reason_in_one_sentence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _cli(capsys, "experiment", "discard", "winter-coats")
    assert (code, err) == (2, "error: a discard needs --reason: why, for the draft's audit trail\n")
    code, err = _cli(capsys, "experiment", "discard", "winter-coats", "--reason", "x" * 501)
    assert (code, err) == (2, "error: a reason is at most 500 characters, not 501\n")
