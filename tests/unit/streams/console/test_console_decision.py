"""The console's decision (issue #55, Acting): ``POST /api/experiments/{id}/decision`` and the
form on the experiment page. An analyst or an admin records one, as themselves, with a
reason; one that stops the experiment needs to operate too (an admin); a viewer's or an
operator's is 403 whether or not a form is shown; a missing reason or arm is 422; without
the CSRF token 403; the controller's refusal is 409 with its sentence. The page shows the
decision that stands, from the trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from streams.client.history import Trail
from streams.console import auth, views
from streams.console.app import Console, build_app
from tests.unit.streams.console.test_console_app import VERDICT, _Feed, _state, _Store, hash_line

USERS = {
    "vic": ("viewer", "v-pass"),
    "ana": ("analyst", "a-pass"),
    "olga": ("operator", "o-pass"),
    "ada": ("admin", "ad-pass"),
}
#: what the stand-in controller says to an arm the experiment does not have
NO_ARM = "experiment 'shoes' has no arm 'tretment' (did you mean 'treatment'?)"


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-decision") / "users"
    path.write_text("\n".join(hash_line(n, r, pw) for n, (r, pw) in USERS.items()) + "\n")
    return path


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def client(users_file: Path, sent: list[tuple[str, dict[str, Any]]]) -> Iterator[TestClient]:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        if fields.get("arm") == "tretment":
            return {"ok": False, "command_id": "c1", "error": NO_ARM}
        state = "stopped" if fields.get("stop") else "running"
        if kind != "decision":
            return {"ok": True, "command_id": "c1", "detail": {"state": state}}
        decided = {"arm": fields["arm"], "ship": True, "decided": f"ship arm {fields['arm']!r}"}
        return {"ok": True, "command_id": "c1", "detail": {"state": state, "decision": decided}}

    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _Store([_state("shoes", 2)]),  # type: ignore[arg-type]
        _Feed({"shoes": [VERDICT]}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_app(console)) as c:
        yield c


def _sign_in(client: TestClient, name: str) -> str:
    r = client.post("/api/login", json={"user": name, "password": USERS[name][1]})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def _decide(client: TestClient, csrf: str | None, **body: Any) -> Any:
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    return client.post("/api/experiments/shoes/decision", json=body, headers=headers)


def test_an_analyst_records_a_decision_as_themselves(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "ana")
    r = _decide(client, csrf, arm="treatment", reason="profit +4% holds")
    assert r.status_code == 200, r.text
    assert r.json()["actor"] == "ana" and r.json()["reply"]["ok"] is True
    assert sent == [
        (
            "decision",
            {
                "experiment": "shoes",
                "arm": "treatment",
                "stop": False,
                "reason": "profit +4% holds",
                "actor": "ana",
            },
        )
    ]


def test_the_controllers_refusal_is_409_with_its_sentence(client: TestClient) -> None:
    csrf = _sign_in(client, "ana")
    r = _decide(client, csrf, arm="tretment", reason="typo")
    assert r.status_code == 409
    assert r.json()["reply"]["error"] == NO_ARM


def test_a_decision_that_stops_needs_to_operate_too(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "ana")
    r = _decide(client, csrf, arm="control", reason="rollback", stop=True)
    assert r.status_code == 403
    assert r.json()["error"] == (
        "an analyst may not stop an experiment: record the decision without stop, and ask an "
        "operator to stop it"
    )
    assert sent == []
    client.cookies.clear()
    csrf = _sign_in(client, "ada")
    r = _decide(client, csrf, arm="control", reason="rollback", stop=True)
    assert r.status_code == 200, r.text
    assert sent == [
        (
            "decision",
            {"experiment": "shoes", "arm": "control", "stop": True, "reason": "rollback",
             "actor": "ada"},
        )
    ]  # fmt: skip


@pytest.mark.parametrize("who", ["vic", "olga"])
def test_a_viewer_or_an_operator_may_not_decide_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], who: str
) -> None:
    csrf = _sign_in(client, who)
    r = _decide(client, csrf, arm="treatment", reason="x")
    assert r.status_code == 403
    said = {"vic": "a viewer", "olga": "an operator"}[who]
    assert r.json()["error"] == f"{said} may not decide: ask an analyst or an admin"
    assert sent == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"arm": "treatment", "reason": " "}, "a decision needs a reason: why, for the "
         "experiment's audit trail"),
        ({"reason": "lift"}, "a decision names its arm: the arm to ship, or control to keep "
         "the control"),
        ({"arm": "two words", "reason": "lift"}, "arm: 'two words' is not an arm's name "
         "(letters, digits, '_', '.', '-')"),
        ({"arm": "treatment", "reason": "lift", "stop": "maybe"},
         "stop is true or false, not 'maybe'"),
    ],
)  # fmt: skip
def test_a_missing_reason_or_a_malformed_field_is_422(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], body: dict[str, Any], says: str
) -> None:
    csrf = _sign_in(client, "ada")
    r = _decide(client, csrf, **body)
    assert r.status_code == 422
    assert r.json()["error"] == says
    assert sent == []


def test_without_the_csrf_token_is_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    _sign_in(client, "ana")
    assert _decide(client, None, arm="treatment", reason="x").status_code == 403
    assert _decide(client, "forged", arm="treatment", reason="x").status_code == 403
    assert sent == []


def test_the_form_sends_the_checkbox_and_draws_the_reply(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "ada")
    r = client.post(
        "/api/experiments/shoes/decision",
        data={"arm": "treatment", "reason": "lift", "stop": "true", "csrf": csrf},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    assert "decision of shoes accepted, as ada: ship arm &#39;treatment&#39;: now stopped" in r.text
    assert sent[0][1]["stop"] is True
    r = client.post(
        "/api/experiments/shoes/decision",
        data={"arm": "treatment", "reason": "lift", "csrf": csrf},  # the box not ticked
        headers={"HX-Request": "true"},
    )
    assert sent[1][1]["stop"] is False


@pytest.fixture
def trail(monkeypatch: pytest.MonkeyPatch) -> Trail:
    """The experiment's trail (as read from the topic) with two decisions, the later the one
    that stands; the page's other reads off Redis stand in."""
    t = Trail("shoes")
    for n, (who, words, reason) in enumerate(
        [("ana", "ship arm 'treatment'", "lift"), ("ada", "keep the control (arm 'control')",
                                                   "rollback")]
    ):  # fmt: skip
        t.records.append(
            {
                "experiment": "shoes",
                "kind": "command",
                "at": f"2026-06-0{n + 3}T10:00:00+00:00",
                "detail": {
                    "command_id": f"c{n}",
                    "command": "decision",
                    "actor": who,
                    "reason": reason,
                    "accepted": True,
                    "decision": {"decided": words, "stop": n == 1},
                },
            }
        )

    async def read_trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return t

    monkeypatch.setattr(views, "read_trail", read_trail)
    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])
    return t


def test_the_page_shows_the_decision_that_stands_and_the_form_by_role(
    client: TestClient, trail: Trail
) -> None:
    _sign_in(client, "vic")
    doc = client.get("/api/experiments/shoes").json()
    assert doc["overview"]["decision"]["decided"] == "keep the control (arm 'control'), and stop"
    assert doc["overview"]["decision"]["actor"] == "ada"
    assert doc["overview"]["control_arm"] == "control"
    page = client.get("/experiments/shoes").text
    shown = "keep the control (arm &#39;control&#39;), and stop, by ada at 2026-06-04"
    assert shown in page and "rollback" in page
    assert 'id="decision-form"' not in page  # a viewer: no form
    client.cookies.clear()
    _sign_in(client, "ana")
    page = client.get("/experiments/shoes").text
    assert 'id="decision-form"' in page and 'id="decide-ship-treatment"' in page
    assert 'value="keep" id="decide-keep"' in page
    assert 'id="decision-stop"' not in page  # an analyst does not stop
    assert 'id="reply"' in page
    client.cookies.clear()
    _sign_in(client, "ada")
    page = client.get("/experiments/shoes").text
    assert 'id="decision-stop"' in page and page.count('id="reply"') == 1


@pytest.mark.parametrize("who", ["ana", "olga", "ada"])
def test_an_analyst_an_operator_or_an_admin_comments_as_themselves(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], who: str
) -> None:
    csrf = _sign_in(client, who)
    r = client.post(
        "/api/experiments/shoes/comment",
        json={"text": "  d3 was out of stock on Tuesday "},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    assert sent == [
        (
            "comment",
            {"experiment": "shoes", "reason": "d3 was out of stock on Tuesday", "actor": who},
        )
    ]


def test_a_comment_s_refusals(client: TestClient, sent: list[tuple[str, dict[str, Any]]]) -> None:
    signed: dict[str, str] = {"csrf": _sign_in(client, "vic")}

    def comment(body: dict[str, Any], token: bool = True) -> Any:
        headers = {"X-CSRF-Token": signed["csrf"]} if token else {}
        return client.post("/api/experiments/shoes/comment", json=body, headers=headers)

    r = comment({"text": "forged"})
    assert r.status_code == 403
    assert r.json()["error"] == (
        "a viewer may not comment: ask an analyst, an operator or an admin"
    )
    client.cookies.clear()
    csrf = signed["csrf"] = _sign_in(client, "ana")
    assert comment({"text": "no token"}, token=False).status_code == 403
    r = comment({"text": " "})
    assert (r.status_code, r.json()["error"]) == (422, "a comment needs its text")
    r = comment({"text": "x" * 501})
    assert (r.status_code, r.json()["error"]) == (
        422, "a comment is at most 500 characters, not 501"
    )  # fmt: skip
    r = client.post(
        "/api/experiments/shoes/pause",
        json={"reason": "y" * 600},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 403  # an analyst does not pause, however long the reason
    client.cookies.clear()
    csrf = signed["csrf"] = _sign_in(client, "olga")
    r = comment({"text": "ok"}, token=False)
    assert r.status_code == 403
    r = client.post(
        "/api/experiments/shoes/pause",
        json={"reason": "y" * 501},
        headers={"X-CSRF-Token": csrf},
    )
    assert (r.status_code, r.json()["error"]) == (
        422, "a reason is at most 500 characters, not 501"
    )  # fmt: skip
    assert sent == []


def test_the_page_has_the_comment_form_for_whoever_may_comment(
    client: TestClient, trail: Trail
) -> None:
    trail.records.append(
        {
            "experiment": "shoes",
            "kind": "command",
            "at": "2026-06-05T10:00:00+00:00",
            "detail": {"command_id": "c9", "command": "comment", "actor": "olga",
                       "reason": "d3 was out of stock", "accepted": True},
        }
    )  # fmt: skip
    _sign_in(client, "vic")
    page = client.get("/experiments/shoes").text
    assert 'id="comment-form"' not in page and 'id="reply"' not in page
    assert "<td>d3 was out of stock</td>" in page  # the history shows it, as it is
    client.cookies.clear()
    _sign_in(client, "olga")
    page = client.get("/experiments/shoes").text
    assert 'id="comment-form"' in page and 'id="decision-form"' not in page
    assert page.count('id="reply"') == 1


def test_an_arm_named_control_that_is_not_the_control_is_shipped_from_the_form(
    users_file: Path, sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arms ``base`` (the control) and ``control`` (not the control): the form's "Ship arm
    control" sends the arm by its name and says it ships, so the controller's rule ships it;
    "Keep the control" keeps ``base``. Before, both sent the word ``control``, which the
    controller refused as ambiguous: the arm could not be shipped."""
    from dataclasses import replace

    from controller.decision import Decision, resolve
    from controller.spec import load_spec

    held = _state("shoes", 2)
    spec = load_spec(
        {"id": "shoes", "products": [f"shoes{i}" for i in range(4)],
         "start": held.spec.start.isoformat(), "end": held.spec.end.isoformat(),
         "timezone": "UTC", "period": "P1D", "seed": 1,
         "arms": [{"name": "base", "policy": "old", "allocation": 0.5, "control": True},
                  {"name": "control", "policy": "new", "allocation": 0.5}]}
    )  # fmt: skip
    assert [(a.name, a.control) for a in spec.arm_list()] == [("base", True), ("control", False)]

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return {"ok": True, "command_id": "c1", "detail": {"state": "running"}}

    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])

    async def read_trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id)

    monkeypatch.setattr(views, "read_trail", read_trail)
    console = Console(
        Settings(console=ConsoleSettings(users_file=users_file)),
        auth.Users.load(users_file),
        _Store([replace(held, spec=spec)]),  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_app(console)) as c:
        csrf = _sign_in(c, "ana")
        page = c.get("/experiments/shoes").text
        assert 'value="keep:base" id="decide-keep"' in page  # by its name: the word is an arm's
        assert 'value="ship:control" id="decide-ship-control"' in page
        for choice in ("ship:control", "keep:base"):
            r = c.post(
                "/api/experiments/shoes/decision",
                data={"decision": choice, "reason": "lift", "csrf": csrf},
                headers={"HX-Request": "true"},
            )
            assert r.status_code == 200, r.text
        r = _decide(c, csrf, decision="ship:", reason="lift")
        assert r.status_code == 422 and "names its arm" in r.json()["error"]
        r = _decide(c, csrf, decision="maybe", reason="lift")
        assert r.status_code == 422 and r.json()["error"] == (
            "decision is keep or ship:ARM, not 'maybe'"
        )
    shipped, kept = (fields for _, fields in sent)
    assert (shipped["arm"], shipped["ship"], kept["arm"], kept["ship"]) == (
        "control", True, "base", False
    )  # fmt: skip
    # what the controller makes of each, by its own rule
    arms = spec.arm_list()
    assert resolve("shoes", arms, shipped["arm"], shipped["ship"]) == Decision("control", True)
    assert resolve("shoes", arms, kept["arm"], kept["ship"]) == Decision("base", False)
