"""The experiments list's Freezes section (streams.console.freezes): a freeze of every
experiment is one freeze command whose experiments are ``all``, as ``pricelab experiment
freeze --all`` sends it, and a freeze is cancelled by the unfreeze command; each needs a
session (401), its CSRF token and the operate permission (403), and a reason (422). The
freezes listed are the CLI's view (``read_freezes``), stood in for here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from streams.worker.schemas import Command
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    VERDICT,
    _Feed,
    _state,
    _Store,
    hash_line,
)

#: the list's users and an admin
USERS = PASSWORDS | {"ada": ("admin", "ad-pass")}

#: the freezes the CLI's view gives: one of every experiment in force, one of shoes ahead,
#: one over and one cancelled (the section lists the first two)
FREEZES = [
    {"id": "freeze-old", "start": "2026-05-01T00:00:00+00:00",
     "end": "2026-05-02T00:00:00+00:00", "experiments": "all", "reason": "inventory",
     "now": "over"},
    {"id": "freeze-gone", "start": "2026-05-03T00:00:00+00:00",
     "end": "2026-05-09T00:00:00+00:00", "experiments": ["hats"], "reason": "oops",
     "now": "cancelled"},
    {"id": "freeze-all1", "start": "2026-06-02T00:00:00+00:00",
     "end": "2026-06-03T00:00:00+00:00", "experiments": "all", "reason": "stock-take",
     "now": "in force"},
    {"id": "freeze-shoe", "start": "2026-06-04T00:00:00+00:00",
     "end": "2026-06-05T00:00:00+00:00", "experiments": ["shoes"], "reason": "launch",
     "now": "ahead"},
]  # fmt: skip


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "users"
    lines = [hash_line(n, role, pw) for n, (role, pw) in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def replies() -> list[dict[str, Any]]:
    """What the controller answers, in order (none left: accepted)."""
    return []


@pytest.fixture
def asked() -> list[tuple[Settings, str | None]]:
    return []


@pytest.fixture
def client(
    users_file: Path,
    sent: list[tuple[str, dict[str, Any]]],
    replies: list[dict[str, Any]],
    asked: list[tuple[Settings, str | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        if replies:
            return replies.pop(0)
        return {"ok": True, "command_id": "c1", "detail": {"freeze": FREEZES[2]}}

    def read_freezes(settings: Settings, exp_id: str | None = None) -> list[dict[str, Any]]:
        asked.append((settings, exp_id))
        return [dict(f) for f in FREEZES]

    monkeypatch.setattr("streams.console.freezes.read_freezes", read_freezes)
    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _Store([_state("shoes", 2), _state("hats", -1)]),  # type: ignore[arg-type]
        _Feed({"shoes": [VERDICT]}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_console_app(console)) as c:
        yield c


def _sign_in(client: TestClient, name: str) -> str:
    r = client.post("/api/login", json={"user": name, "password": USERS[name][1]})
    assert r.status_code == 200 and r.json()["role"] == USERS[name][0], r.text
    return str(r.json()["csrf"])


BODY = {
    "start": "2026-06-03T00:00:00+00:00",
    "end": "2026-06-04T00:00:00+02:00",
    "reason": "black friday: every price held",
}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/freezes"),
        ("POST", "/api/freezes"),
        ("POST", "/api/freezes/freeze-all1/unfreeze"),
    ],
)
def test_no_session_is_401_never_404(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], method: str, path: str
) -> None:
    r = client.request(method, path, json=BODY)
    assert r.status_code == 401
    assert r.json() == {"error": "sign in first"}
    assert sent == []


def test_the_section_without_a_session_says_so(client: TestClient) -> None:
    r = client.get("/freezes")
    assert r.status_code == 401
    assert 'id="freezes-error"' in r.text and "sign in first" in r.text


@pytest.mark.parametrize("name", ["vic", "ana"])
@pytest.mark.parametrize("path", ["/api/freezes", "/api/freezes/freeze-all1/unfreeze"])
def test_a_viewer_or_an_analyst_may_not_freeze_or_unfreeze(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], name: str, path: str
) -> None:
    csrf = _sign_in(client, name)
    r = client.post(path, json=BODY, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    role = USERS[name][0]
    article = "an" if role[0] in "aeiou" else "a"
    assert r.json()["error"] == f"{article} {role} may not operate: ask an operator or an admin"
    assert sent == []


def test_an_act_without_its_csrf_token_is_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    _sign_in(client, "olga")
    r = client.post("/api/freezes", json=BODY)
    assert r.status_code == 403
    assert r.json()["error"] == (
        "the request carries no valid CSRF token: reload the page and retry"
    )
    assert sent == []


@pytest.mark.parametrize("name", ["olga", "ada"])
def test_an_operator_or_an_admin_freezes_every_experiment_in_one_command(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], name: str
) -> None:
    csrf = _sign_in(client, name)
    r = client.post("/api/freezes", json=BODY, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["command"] == "freeze" and r.json()["target"] == "every experiment"
    assert r.json()["actor"] == name and r.json()["reply"]["ok"] is True
    [(kind, fields)] = sent  # one command for the whole catalogue, not one per experiment
    assert kind == "freeze"
    freeze = fields.pop("freeze")
    assert fields == {"actor": name}
    assert freeze["id"].startswith("freeze-") and len(freeze["id"]) == len("freeze-") + 8
    assert {k: v for k, v in freeze.items() if k != "id"} == {
        "start": "2026-06-03T00:00:00+00:00",
        "end": "2026-06-04T00:00:00+02:00",
        "experiments": "all",
        "reason": "black friday: every price held",
    }


def test_a_freeze_resent_is_the_same_freeze(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    """As the CLI's: its id follows from the freeze, so a resend after a timeout is done once."""
    csrf = _sign_in(client, "olga")
    for _ in range(2):
        assert client.post("/api/freezes", json=BODY, headers={"X-CSRF-Token": csrf}).is_success
    (_, first), (_, again) = sent
    assert first == again


def test_a_relative_freeze_is_read_on_the_controller_s_clock(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    body = {"end": "+2h", "reason": "stock-take"}  # from now (the default) for two hours
    r = client.post("/api/freezes", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    freeze = sent[0][1]["freeze"]
    start, end = (datetime.fromisoformat(freeze[k]) for k in ("start", "end"))
    assert end - start == timedelta(hours=2) and freeze["experiments"] == "all"


@pytest.mark.parametrize(
    "body, says",
    [
        ({"end": "+2h"}, "a freeze needs a reason: why, for the experiment's audit trail"),
        ({"reason": "r"}, "a freeze needs an end: an ISO 8601 date-time, or +DURATION (+2h)"),
        (
            {"reason": "r", "start": "tomorrow", "end": "+2h"},
            "start: 'tomorrow' is not an ISO 8601 date-time (e.g. 2026-12-24T00:00:00+01:00)",
        ),
        (
            {"reason": "r", "start": "2026-06-05T00:00:00+00:00",
             "end": "2026-06-04T00:00:00+00:00"},
            "end",
        ),
    ],
)  # fmt: skip
def test_a_freeze_without_a_reason_or_with_bad_times_is_422(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], body: dict[str, str], says: str
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post("/api/freezes", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422
    assert says in r.json()["error"] and "\n" not in r.json()["error"]
    assert sent == []


def test_an_operator_cancels_a_freeze_with_a_reason(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/freezes/freeze-all1/unfreeze", json={}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"] == "an unfreeze needs a reason: why, for the experiment's audit trail"
    r = client.post("/api/freezes/freeze-all1/unfreeze", json={"reason": "sale over"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["target"] == "freeze-all1"
    assert sent == [
        ("unfreeze", {"freeze_id": "freeze-all1", "reason": "sale over", "actor": "olga"})
    ]


def test_the_controller_s_refusal_is_409_with_its_sentence(
    client: TestClient, replies: list[dict[str, Any]]
) -> None:
    replies.append({"ok": False, "error": "there is no freeze 'freeze-nope'"})
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/freezes/freeze-nope/unfreeze",
        json={"reason": "r"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 409
    assert r.json()["reply"]["error"] == "there is no freeze 'freeze-nope'"


def test_the_page_s_act_draws_the_reply_and_redraws_the_section(client: TestClient) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post("/api/freezes", data=BODY | {"csrf": csrf}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert r.headers["HX-Trigger"] == "freezes, look"
    assert 'id="freezes-reply"' in r.text
    assert "freeze of every experiment accepted, as olga: freeze freeze-all1, in force" in r.text
    refused = client.post("/api/freezes", data={"csrf": csrf}, headers={"HX-Request": "true"})
    assert refused.status_code == 422
    assert "refused: a freeze needs a reason" in refused.text


def test_every_freeze_is_listed_and_those_ahead_or_in_force_are_active(
    client: TestClient, asked: list[tuple[Settings, str | None]]
) -> None:
    _sign_in(client, "vic")
    r = client.get("/api/freezes")
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["freezes"]] == [
        "freeze-old", "freeze-gone", "freeze-all1", "freeze-shoe"
    ]  # fmt: skip
    assert [f["id"] for f in r.json()["active"]] == ["freeze-all1", "freeze-shoe"]
    assert [exp_id for _, exp_id in asked] == [None]  # every freeze, not one experiment's


def test_the_section_lists_the_active_freezes_and_an_operator_s_controls(
    client: TestClient,
) -> None:
    _sign_in(client, "olga")
    section = client.get("/freezes")
    assert section.status_code == 200
    assert section.text.count("<tr data-freeze=") == 2
    assert 'data-freeze="freeze-all1"' in section.text and "every experiment" in section.text
    assert 'data-freeze="freeze-old"' not in section.text
    assert 'hx-post="/api/freezes/freeze-shoe/unfreeze"' in section.text
    assert "2 more are over or cancelled" in section.text
    page = client.get("/experiments")
    assert 'id="freeze-all-form"' in page.text and 'hx-post="/api/freezes"' in page.text
    assert 'hx-get="/freezes"' in page.text


def test_a_viewer_sees_the_freezes_without_controls(client: TestClient) -> None:
    _sign_in(client, "vic")
    section = client.get("/freezes")
    assert section.status_code == 200 and 'data-freeze="freeze-all1"' in section.text
    assert "/unfreeze" not in section.text
    page = client.get("/experiments")
    assert 'id="catalogue-freezes"' in page.text and 'id="freeze-all-form"' not in page.text


@pytest.mark.parametrize("freeze_id", ["bad id", "x" * 129, "freeze;DROP"])
def test_a_freeze_id_no_freeze_can_have_is_422_and_nothing_is_sent(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], freeze_id: str
) -> None:
    """The command's freeze_id is an Ident: the real sender builds a Command from it, which
    refuses such an id with a ValidationError (a 500 and a traceback, were it sent on)."""
    with pytest.raises(ValidationError):
        Command(command_id="c1", kind="unfreeze", freeze_id=freeze_id, actor="olga")
    csrf = _sign_in(client, "olga")
    h = {"X-CSRF-Token": csrf}
    path = f"/api/freezes/{quote(freeze_id)}/unfreeze"
    r = client.post(path, json={"reason": "sale over"}, headers=h)
    assert r.status_code == 422, r.text
    assert "is no freeze's id" in r.json()["error"] and "\n" not in r.json()["error"]
    # the experiment page's unfreeze (its freeze_id in the body) is refused alike
    body = {"reason": "sale over", "freeze_id": freeze_id}
    r = client.post("/api/experiments/shoes/unfreeze", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert "is no freeze's id" in r.json()["error"]
    assert sent == []
