"""The console's rules, each with its refusal: no session is 401, a missing CSRF token is 403,
a viewer's act is 403 (button or not), an unknown experiment is 404 with one sentence, an
accepted act goes out as the signed-in user with their reason. The store, feed and command
sender are small stand-ins here; tests/integration/test_console_browser.py runs the real ones."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type, extract_parameters, profiles
from itsdangerous import TimestampSigner
from starlette.testclient import TestClient

from controller.errors import ConfigurationError
from controller.settings import ConsoleSettings, Settings
from controller.spec import load_spec
from controller.store.experiments import ExperimentState
from streams.client.history import Trail
from streams.console import auth, views
from streams.console.app import SESSION_COOKIE, Console, build_app

START = datetime(2026, 6, 1, tzinfo=UTC)

VERDICT = {
    "kind": "verdict",
    "experiment": "shoes",
    "estimator": "did",
    "as_of": "2026-06-04T00:00:00+00:00",
    "n_periods": 3,
    "verdict": "keep_running",
    "metric": "revenue",
    "reason": "the interval still spans zero",
    "effect": 1.5,
    "cs_low": -2.0,
    "cs_high": 5.0,
    "alpha": 0.05,
    "rule": "ship when the anytime-valid interval clears zero",
}


def _state(exp_id: str, period: int) -> ExperimentState:
    """An experiment as stored: period -1, created (its start ahead); else running."""
    spec = load_spec(
        {
            "id": exp_id,
            "products": [f"{exp_id}{i}" for i in range(4)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=5)).isoformat(),
            "timezone": "UTC",
            "period": "P1D",
            "seed": 1,
        }
    )
    return ExperimentState(spec, "running", period, 0, 0, 0)


class _Redis:
    async def ping(self) -> bool:
        return True

    async def get(self, key: str) -> None:  # no clock recorded: the settings' (wall)
        return None

    async def aclose(self) -> None:
        return None


class _Store:
    """The store's reads the console's views call (streams.client.commands, known)."""

    def __init__(self, states: list[ExperimentState]) -> None:
        self.states = {s.spec.id: s for s in states}
        self.redis = _Redis()

    async def experiments(self) -> list[ExperimentState]:
        return list(self.states.values())

    listed_experiments = experiments

    async def drafts(self) -> list[Any]:
        return []  # no drafts (tests/unit/streams/console/test_console_drafts.py has some)

    async def experiment_ids(self) -> list[str]:
        return list(self.states)

    async def get_experiment(self, exp_id: str) -> ExperimentState:
        return self.states[exp_id]


class _Feed:
    def __init__(self, docs: dict[str, list[dict[str, Any]]]) -> None:
        self._docs = docs

    async def docs(self, exp_id: str) -> list[dict[str, Any]]:
        return self._docs.get(exp_id, [])

    async def many(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {i: self._docs.get(i, []) for i in ids}

    @contextlib.asynccontextmanager
    async def listen(self, exp_id: str) -> AsyncIterator[Any]:
        yield None

    async def close(self) -> None:
        return None


PASSWORDS = {
    "vic": ("viewer", "v-pass"),
    "ana": ("analyst", "a-pass"),
    "olga": ("operator", "o-pass"),
}


#: argon2id at the least cost argon2 allows. The console verifies a hash at the cost written in
#: it (auth.Users.check), so a test user signs in through the same check in a millisecond, not
#: in the fifth of a second of CPU the users file's cost takes by design; that cost, and a line
#: of auth.hash_line signing its user in, are test_a_users_file_line_signs_in_at_argon2s_cost's.
_LEAST_COST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@functools.cache
def hash_line(name: str, role: str, password: str) -> str:
    """A users-file line as auth.hash_line writes it, hashed at the least cost and once a test
    process for each user (each sign-in still verifies it)."""
    auth.check_user(name, role)
    return f"{name}:{role}:{_LEAST_COST.hash(password)}"


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "users"
    lines = ["# the console's users"]
    lines += [hash_line(n, role, pw) for n, (role, pw) in PASSWORDS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def client(users_file: Path, sent: list[tuple[str, dict[str, Any]]]) -> Iterator[TestClient]:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return {"ok": True, "command_id": "c1", "state": "paused"}

    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _Store([_state("shoes", 2), _state("hats", -1)]),  # type: ignore[arg-type]
        _Feed({"shoes": [VERDICT]}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_app(console)) as c:
        yield c


def _sign_in(client: TestClient, name: str) -> str:
    r = client.post("/api/login", json={"user": name, "password": PASSWORDS[name][1]})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == PASSWORDS[name][0]
    return str(r.json()["csrf"])


def test_health_needs_no_session(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/experiments"),
        ("GET", "/api/experiments/shoes"),
        ("GET", "/api/experiments/nope"),
        ("GET", "/api/session"),
        ("POST", "/api/experiments/shoes/pause"),
        ("POST", "/api/experiments/nope/stop"),
    ],
)
def test_no_session_is_401_never_404(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, json={"reason": "x"})
    assert r.status_code == 401
    assert r.json() == {"error": "sign in first"}


def test_a_page_without_a_session_goes_to_the_sign_in(client: TestClient) -> None:
    r = client.get("/experiments/shoes", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/experiments/shoes"


def test_a_wrong_password_or_unknown_user_is_401(client: TestClient) -> None:
    assert client.post("/api/login", json={"user": "vic", "password": "no"}).status_code == 401
    assert client.post("/api/login", json={"user": "zed", "password": "v-pass"}).status_code == 401
    assert client.get("/api/experiments").status_code == 401


def test_the_json_sign_in_takes_only_json(client: TestClient) -> None:
    """A cross-site form cannot send JSON: the sign-in refuses a form body."""
    r = client.post("/api/login", data={"user": "vic", "password": "v-pass"})
    assert r.status_code == 415
    assert client.get("/api/experiments").status_code == 401


def test_the_list_has_each_experiment_with_its_verdict(client: TestClient) -> None:
    _sign_in(client, "vic")
    r = client.get("/api/experiments")
    assert r.status_code == 200, r.text
    doc = r.json()
    rows = {e["id"]: e for e in doc["experiments"]}
    assert set(rows) == {"shoes", "hats"}
    shoes = rows["shoes"]
    assert shoes["state"] == "running" and shoes["design"] == "random-days"
    assert shoes["arms"] == ["treatment", "control"]
    assert (shoes["period"], shoes["periods"], shoes["products"]) == (2, 5, 4)
    assert rows["hats"]["state"] == "created"
    assert shoes["decision_metric"] == "revenue"
    assert shoes["verdict"]["verdict"] == "keep_running"
    assert shoes["verdict"]["headline"].startswith("VERDICT after 3 periods")
    assert rows["hats"]["verdict"] is None
    assert doc["counts"]["all"] == 2 and doc["counts"]["running"] == 1


def test_the_list_filters_by_status_and_search(client: TestClient) -> None:
    _sign_in(client, "vic")

    def ids(**q: str) -> list[str]:
        return [e["id"] for e in client.get("/api/experiments", params=q).json()["experiments"]]

    assert ids(status="created") == ["hats"]
    assert ids(status="running") == ["shoes"]
    assert ids(q="SHO") == ["shoes"]
    assert ids(q="nothing-like-it") == []


def test_an_unknown_experiment_is_404_with_one_sentence(client: TestClient) -> None:
    csrf = _sign_in(client, "olga")
    r = client.get("/api/experiments/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["error"] and "\n" not in r.json()["error"]
    r = client.post(
        "/api/experiments/nope/pause", json={"reason": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 404
    assert "nope" in r.json()["error"]


def test_an_operator_pauses_as_themselves_with_a_reason(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments/shoes/pause",
        json={"reason": "stock-out in the warehouse"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    assert r.json()["reply"]["ok"] is True and r.json()["actor"] == "olga"
    assert sent == [
        ("pause", {"experiment": "shoes", "reason": "stock-out in the warehouse", "actor": "olga"})
    ]


def test_an_act_without_the_csrf_token_is_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    _sign_in(client, "olga")
    r = client.post("/api/experiments/shoes/stop", json={"reason": "done"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post(
        "/api/experiments/shoes/stop", json={"reason": "done"}, headers={"X-CSRF-Token": "forged"}
    )
    assert r.status_code == 403
    assert sent == []


def test_a_csrf_refusal_is_logged_with_its_cause_and_never_a_token(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's log says which half of the check failed, so that a refused sign-in in
    the field (or a flaky one in CI) can be told apart: no token, no cookie, a cookie the
    console could not read, or a token of another session."""
    csrf = _sign_in(client, "olga")
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    path = "/api/experiments/shoes/stop"

    def refused(headers: dict[str, str], form: dict[str, str] | None = None) -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="streams.console.app"):
            if form is None:
                r = client.post(path, json={"reason": "done"}, headers=headers)
            else:  # the sign-in form: checked before there is a user
                r = client.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 403, r.text
        (said,) = [m.getMessage() for m in caplog.records]
        assert csrf not in said and cookie not in said
        return said

    assert refused({}).endswith(
        f"POST {path} without a valid CSRF token: it carries no token (1 session cookie(s))"
    )
    assert refused({"X-CSRF-Token": "forged"}).endswith(
        "its token is not its session's (signed in; 1 session cookie(s))"
    )
    form = {"csrf": csrf, "user": "olga", "password": PASSWORDS["olga"][1]}
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie[:-4] + "AAAA")  # its signature broken
    assert refused({}, form).endswith(
        "POST /login without a valid CSRF token: its session cookie was not accepted: its "
        "signature does not verify (signed by another key, or altered) (1 session cookie(s))"
    )
    # a cookie signed with the console's own key by a clock that has since stepped back, and
    # one past session_max_age (12 h): SessionMiddleware refuses both, for their age
    payload = cookie.rsplit(".", 2)[0]
    secret = client.app.state.session_secret  # type: ignore[attr-defined]

    class Shifted(TimestampSigner):
        def __init__(self, key: str, shift: int) -> None:
            super().__init__(key)
            self.shift = shift

        def get_timestamp(self) -> int:
            return int(time.time()) + self.shift

    for shift, says in ((+30, r"it was signed (29|30) s in the future \(the clock stepped back\?\)"),
                        (-13 * 3600, r"it is 4680[01] s old, older than session_max_age")):  # fmt: skip
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, Shifted(secret, shift).sign(payload).decode())
        assert re.search(says, refused({}, form))
    client.cookies.clear()
    assert refused({}, form).endswith("it carries no session cookie")
    assert sent == []


@pytest.mark.parametrize("who", ["vic", "ana"])
@pytest.mark.parametrize("kind", ["pause", "resume", "stop"])
def test_a_viewer_or_analyst_may_not_act_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], who: str, kind: str
) -> None:
    csrf = _sign_in(client, who)
    r = client.post(
        f"/api/experiments/shoes/{kind}", json={"reason": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    said = {"vic": "a viewer", "ana": "an analyst"}[who]
    assert r.json()["error"].startswith(f"{said} may not operate")
    assert sent == []


def test_an_act_needs_a_reason_422(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments/shoes/resume", json={"reason": "  "}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 422
    assert r.json()["error"] == "a resume needs a reason: why, for the experiment's audit trail"
    assert sent == []


def test_the_page_shows_the_act_buttons_to_an_operator_only(client: TestClient) -> None:
    _sign_in(client, "vic")
    page = client.get("/experiments").text
    assert 'href="/experiments/shoes"' in page and "VERDICT after 3 periods" in page
    client.cookies.clear()
    _sign_in(client, "olga")
    assert client.get("/api/session").json()["role"] == "operator"


@pytest.mark.parametrize(
    ("status", "words"), [("ended", "has ended"), ("stopped", "has been stopped")]
)
def test_a_final_experiment_offers_an_operator_no_lifecycle_or_freeze_buttons(
    users_file: Path,
    sent: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    words: str,
) -> None:
    """An ended or stopped experiment takes no more pause, resume, stop or freeze (the
    controller refuses each as final): its page says so instead of offering buttons that can
    only fail, while a running one beside it keeps them."""

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return {"ok": True, "command_id": "c1", "state": "paused"}

    async def read_trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id)  # the page's read of the events topic stands in: none yet

    monkeypatch.setattr(views, "read_trail", read_trail)
    monkeypatch.setattr(views, "read_freezes", lambda settings, exp_id: [])
    done = _state("boots", 4)
    done.status = status
    console = Console(
        Settings(console=ConsoleSettings(users_file=users_file)),
        auth.Users.load(users_file),
        _Store([_state("shoes", 2), done]),  # type: ignore[arg-type]
        _Feed({"shoes": [VERDICT]}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_app(console)) as c:
        _sign_in(c, "olga")
        running = c.get("/experiments/shoes").text
        assert all(f'id="{b}"' in running for b in ("pause", "resume", "stop", "freeze"))
        final = c.get("/experiments/boots").text
        assert not any(f'id="{b}"' in final for b in ("pause", "resume", "stop", "freeze"))
        assert 'id="act-final"' in final and f"boots {words}: the" in " ".join(final.split())
    assert sent == []


def test_the_form_sign_in_checks_its_csrf_token(client: TestClient) -> None:
    r = client.post("/login", data={"user": "vic", "password": "v-pass", "csrf": "forged"})
    assert r.status_code == 403
    page = client.get("/login").text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/login",
        data={"user": "vic", "password": "v-pass", "csrf": token, "next": "//evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off the console
    assert client.get("/api/session").json()["user"] == "vic"


def test_sign_out_needs_the_token_and_ends_the_session(client: TestClient) -> None:
    csrf = _sign_in(client, "vic")
    assert client.post("/logout").status_code == 403
    assert client.get("/api/session").status_code == 200
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/session").status_code == 401


def test_a_forged_session_cookie_is_no_session(client: TestClient) -> None:
    _sign_in(client, "olga")
    value = client.cookies["pricelab_console"]
    forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    client.cookies.clear()
    client.cookies.set("pricelab_console", forged)
    assert client.get("/api/experiments").status_code == 401


def test_the_users_file_refuses_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:operator:plaintext\n")
    with pytest.raises(ConfigurationError, match="line 1: not name:role:argon2-hash"):
        auth.Users.load(path)
    path.write_text(auth.hash_line("alice", "viewer", "p").replace(":viewer:", ":boss:") + "\n")
    with pytest.raises(ConfigurationError, match="'boss' is not a role"):
        auth.Users.load(path)


def test_a_users_file_line_signs_in_at_argon2s_cost(tmp_path: Path) -> None:
    """A line of auth.hash_line (``pricelab console user``) is argon2id at argon2's
    recommended cost (RFC 9106's low-memory profile), and signs in its user with the password
    only. The other tests' users are hashed at the least cost (hash_line above)."""
    line = auth.hash_line("vic", "viewer", "v-pass")
    assert line.startswith("vic:viewer:$argon2id$")
    made = extract_parameters(line.split(":", 2)[2])
    # RFC 9106's second recommended option, written out: a library whose defaults fell
    # would fail here
    assert (made.type, made.time_cost, made.memory_cost, made.parallelism) == (Type.ID, 3, 65536, 4)
    assert made == profiles.RFC_9106_LOW_MEMORY
    path = tmp_path / "users"
    path.write_text(line + "\n")
    users = auth.Users.load(path)
    assert users.check("vic", "v-pass") == users.users["vic"]
    assert users.check("vic", "v-Pass") is None


def test_the_one_time_admin_signs_in_once_made() -> None:
    users = auth.Users()
    password = users.add_one_time_admin()
    assert users.check("admin", password) == users.users["admin"]
    assert users.check("admin", password + "x") is None
    assert auth.may("admin", "operate") and auth.may("admin", "decide")
    assert not auth.may("viewer", "operate") and not auth.may("operator", "decide")


def test_metrics_count_requests_by_route_and_acts_by_outcome(client: TestClient) -> None:
    client.get("/api/experiments/nope")  # 401: no session
    csrf = _sign_in(client, "olga")
    client.post(
        "/api/experiments/shoes/pause", json={"reason": "r"}, headers={"X-CSRF-Token": csrf}
    )
    client.post("/api/experiments/shoes/stop", json={"reason": ""}, headers={"X-CSRF-Token": csrf})
    text = client.get("/metrics").text
    assert (
        'pricelab_console_request_seconds_count{method="GET",route="/api/experiments/{exp_id}",'
        'status="401"} 1.0'
    ) in text  # the route's template, never the id
    assert 'pricelab_console_acts_total{command="pause",outcome="accepted"} 1.0' in text
    assert 'pricelab_console_acts_total{command="stop",outcome="refused"} 1.0' in text
    assert "pricelab_console_live_streams 0.0" in text


@pytest.mark.parametrize("exp_id", ["shoes", None])
async def test_a_look_s_messages_are_one_event(exp_id: str | None) -> None:
    """The live stream (of one experiment; of every one, None: the list page) sends one
    ``look`` event for the messages that arrive together."""
    import asyncio
    import json

    from streams.console.app import _looks

    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for i in range(3):
        q.put_nowait({"experiment": "shoes", "as_of": "2026-06-02T00:00:00+00:00", "n": i})

    class Feed:
        @contextlib.asynccontextmanager
        async def listen(self, exp_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
            assert exp_id == "shoes"
            yield q

        @contextlib.asynccontextmanager
        async def listen_any(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
            assert exp_id is None
            yield q

    events = _looks(Feed(), exp_id)  # type: ignore[arg-type]
    assert await anext(events) == ": live\n\n"
    event = await anext(events)
    head, data = event.strip().split("\n")
    assert head == "event: look"
    assert json.loads(data.removeprefix("data: ")) == {
        "experiment": "shoes",
        "as_of": "2026-06-02T00:00:00+00:00",
        "messages": 3,
    }
    await events.aclose()


@pytest.fixture
def upstream(tmp_path: Path, sent: list[tuple[str, dict[str, Any]]]) -> Iterator[TestClient]:
    """A console behind a trusted upstream (oauth2-proxy) that names the user in a header."""

    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return {"ok": True}

    users = tmp_path / "users"
    users.write_text("olga:operator:-\nvic:viewer:-\n")
    settings = Settings(
        console=ConsoleSettings(users_file=users, trusted_user_header="X-Forwarded-User")
    )
    console = Console(
        settings,
        auth.Users.load(users),
        _Store([_state("shoes", 2)]),  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_app(console)) as c:
        yield c


def test_behind_a_trusted_upstream_its_header_names_the_user(
    upstream: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    olga = {"X-Forwarded-User": "olga"}
    assert upstream.get("/api/experiments").status_code == 401  # no header: no user
    r = upstream.get("/api/experiments", headers={"X-Forwarded-User": "mallory"})
    assert r.status_code == 403
    assert r.json()["error"] == "'mallory' is not a console user: the users file does not list them"
    csrf = upstream.get("/api/session", headers=olga).json()["csrf"]
    assert upstream.get("/api/session", headers=olga).json()["role"] == "operator"
    # CSRF and roles hold as with a session
    r = upstream.post("/api/experiments/shoes/pause", json={"reason": "r"}, headers=olga)
    assert r.status_code == 403
    r = upstream.post(
        "/api/experiments/shoes/pause",
        json={"reason": "r"},
        headers={"X-Forwarded-User": "vic", "X-CSRF-Token": csrf},
    )
    assert r.status_code == 403 and r.json()["error"].startswith("a viewer may not operate")
    r = upstream.post(
        "/api/experiments/shoes/pause", json={"reason": "r"}, headers=olga | {"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and sent == [
        ("pause", {"experiment": "shoes", "reason": "r", "actor": "olga"})
    ]


def test_behind_a_trusted_upstream_no_password_signs_in(upstream: TestClient) -> None:
    r = upstream.post("/api/login", json={"user": "olga", "password": "-"})
    assert r.status_code == 403
    assert (
        r.json()["error"] == "sign in through the upstream: it names the user in X-Forwarded-User"
    )
    assert upstream.get("/api/experiments").status_code == 401
    assert auth.Users.load_text("olga:operator:-\n").check("olga", "-") is None


def test_over_time_is_each_look_s_latest_verdict_newest_first() -> None:
    from streams.console.views import looks_view

    def v(as_of: str, word: str, n: int) -> dict[str, Any]:
        return VERDICT | {"as_of": as_of, "verdict": word, "n_periods": n}

    docs = [
        v("2026-06-02T00:00:00+00:00", "keep_running", 1),
        v("2026-06-03T00:00:00+00:00", "keep_running", 2),
        v("2026-06-03T00:00:00+00:00", "ship", 2),  # the same look, published again: it wins
        {"kind": "estimate", "as_of": "2026-06-04T00:00:00+00:00", "estimator": "did"},
        v("2026-06-04T00:00:00+00:00", "ship", 3),
    ]
    looks = looks_view(docs)
    assert [(x["n_periods"], x["verdict"], x["changed"]) for x in looks] == [
        (3, "ship", False),
        (2, "ship", True),
        (1, "keep_running", False),
    ]


def test_a_figure_that_is_not_finite_is_null_in_the_api(client: TestClient) -> None:
    from streams.console.views import finite

    assert finite({"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": "x"}) == {
        "a": [1.0, None],
        "b": {"c": None},
        "d": "x",
    }
    _sign_in(client, "vic")
    client.app.state.console.feed._docs["hats"] = [  # type: ignore[attr-defined]
        VERDICT | {"experiment": "hats", "relative_effect": float("nan")}
    ]
    r = client.get("/api/experiments", params={"q": "hats"})
    assert r.status_code == 200
    assert r.json()["experiments"][0]["verdict"]["message"]["relative_effect"] is None


def test_an_operator_freezes_the_experiment_as_the_cli_would(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    body = {
        "start": "2026-06-03T00:00:00+00:00",
        "end": "2026-06-04T00:00:00+02:00",
        "reason": "competitor sale",
    }
    for _ in range(2):  # resent: the same freeze, whose id follows from it
        r = client.post("/api/experiments/shoes/freeze", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
    (kind, first), (_, again) = sent
    assert kind == "freeze" and first == again
    freeze = first.pop("freeze")
    assert first == {"actor": "olga"}
    assert freeze["id"].startswith("freeze-") and len(freeze["id"]) == len("freeze-") + 8
    assert {k: v for k, v in freeze.items() if k != "id"} == {
        "start": "2026-06-03T00:00:00+00:00",
        "end": "2026-06-04T00:00:00+02:00",
        "experiments": ["shoes"],
        "reason": "competitor sale",
    }


@pytest.mark.parametrize(
    "body, says",
    [
        ({"end": ""}, "a freeze needs an end: an ISO 8601 date-time, or +DURATION (+2h)"),
        (
            {"start": "tomorrow", "end": "2026-06-04T00:00:00+00:00"},
            "start: 'tomorrow' is not an ISO 8601 date-time (e.g. 2026-12-24T00:00:00+01:00)",
        ),
        (
            {"start": "2026-06-03T00:00:00", "end": "2026-06-04T00:00:00+00:00"},
            "start: '2026-06-03T00:00:00' needs a UTC offset (e.g. 2026-12-24T00:00:00+01:00)",
        ),
        (
            {"start": "2026-06-05T00:00:00+00:00", "end": "2026-06-04T00:00:00+00:00"},
            "end",
        ),
    ],
)
def test_a_freeze_with_bad_times_is_422_with_the_cli_s_sentence(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], body: dict[str, str], says: str
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments/shoes/freeze",
        json=body | {"reason": "r"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 422
    assert says in r.json()["error"] and "\n" not in r.json()["error"]
    assert sent == []


def test_an_unfreeze_names_its_freeze(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/experiments/shoes/unfreeze", json={"reason": "over"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "an unfreeze names its freeze: freeze_id"
    r = client.post(
        "/api/experiments/shoes/unfreeze",
        json={"reason": "over", "freeze_id": "freeze-1234abcd"},
        headers=h,
    )
    assert r.status_code == 200
    assert sent == [
        ("unfreeze", {"freeze_id": "freeze-1234abcd", "reason": "over", "actor": "olga"})
    ]


@pytest.mark.parametrize("kind", ["freeze", "unfreeze"])
def test_a_viewer_may_not_freeze_or_unfreeze(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], kind: str
) -> None:
    csrf = _sign_in(client, "vic")
    r = client.post(
        f"/api/experiments/shoes/{kind}",
        json={"reason": "r", "end": "+2h", "freeze_id": "f"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 403 and sent == []


def test_the_design_gives_per_product_lists_by_their_size() -> None:
    from streams.console.views import design_view

    spec = _state("shoes", 2).spec.model_dump(mode="json")
    shown = design_view(spec | {"unit_costs": {"shoes0": 1.0, "shoes1": 2.0}})
    assert shown["products"] == "4 entries" and shown["unit_costs"] == "2 entries"
    assert (shown["id"], shown["period"], shown["seed"]) == ("shoes", "P1D", 1)
