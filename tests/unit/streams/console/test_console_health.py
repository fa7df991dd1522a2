"""The console's Health section, list columns and live statuses (issue #55): the health
document and its page, the list's health flags and who created each experiment, and the
``status`` event of the live stream. The store, the feeds, the panel source, the trail and the
dead letters are small stand-ins here; tests/integration/test_console_browser.py runs the
real ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from controller.spec import load_spec
from controller.store.experiments import ExperimentState
from streams.client.events import status_of
from streams.client.history import Trail
from streams.console import auth
from streams.console.app import Console, _looks, build_app
from streams.console.health import HealthReads
from streams.console.statuses import StatusFeed
from tests.unit.streams.console.test_console_app import hash_line

START = datetime(2026, 6, 1, tzinfo=UTC)
#: the stack's simulated clock: period 3 of shoes is in force
NOW = START + timedelta(days=3, hours=1)


def _state(exp_id: str, period: int, created_by: str | None, missed: int = 0) -> ExperimentState:
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
    return ExperimentState(spec, "running", period, 0, missed, period + 1, created_by=created_by)


class _Redis:
    """The stack's clock as Redis holds it: simulated, at NOW."""

    async def get(self, key: str) -> str | None:
        if key.endswith("clock-mode"):
            return "simulated"
        if key.endswith("clock"):
            return str(int(NOW.timestamp() * 1000))
        return None

    def register_script(self, text: str) -> object:
        return object()

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class _Store:
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

    async def totals(self, exp_id: str) -> dict[str, float]:
        return {"units:ok": 40.0, "events:ok": 30, "events:dup": 2}

    #: the exclusion windows (pauses, stops) and freezes: none unless a test sets them
    held_windows: list[dict[str, Any]] = []
    held_freezes: list[dict[str, Any]] = []

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        return self.held_windows

    async def freezes(self) -> list[dict[str, Any]]:
        return self.held_freezes


class _Feed:
    def __init__(self, docs: dict[str, list[dict[str, Any]]]) -> None:
        self._docs = docs

    async def docs(self, exp_id: str) -> list[dict[str, Any]]:
        return self._docs.get(exp_id, [])

    async def many(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {i: self._docs.get(i, []) for i in ids}

    async def close(self) -> None:
        return None


class _Panels:
    """The panel source: shoes's three completed periods, two products an arm, the last
    period without a sale."""

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        assert as_of == NOW  # read as of the stack's clock
        rows = [
            {"product": f"shoes{i}", "period": k, "units": 0.0 if k == 2 else 5.0,
             "treated": int(i < 2), "probability": 0.5, "blackout": False}
            for k in range(3)
            for i in range(4)
        ]  # fmt: skip
        return pd.DataFrame(rows)


def _look(as_of: datetime) -> dict[str, Any]:
    return {"experiment": "shoes", "estimator": "did", "metric": "revenue", "effect": 1.0,
            "se": 0.5, "ci_low": 0.0, "ci_high": 2.0, "cs_low": -1.0, "cs_high": 3.0,
            "relative_effect": None, "relative_ci_low": None, "relative_ci_high": None,
            "as_of": as_of.isoformat(), "n_periods": 3}  # fmt: skip


TRAIL = [
    {"kind": "started", "at": (START + timedelta(seconds=1)).isoformat(),
     "detail": {"period": 0, "state": "running"}},
    {"kind": "flipped", "at": (START + timedelta(days=1, seconds=2)).isoformat(),
     "detail": {"period": 1}},
    {"kind": "flipped", "at": (START + timedelta(days=2, seconds=3)).isoformat(),
     "detail": {"period": 2}},
    {"kind": "flipped", "at": (START + timedelta(days=3, seconds=4)).isoformat(),
     "detail": {"period": 3}},
]  # fmt: skip


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id, [r | {"experiment": exp_id} for r in TRAIL])

    async def letters(settings: Settings, idle: float) -> dict[tuple[str, str | None], int]:
        # by reason and the product the sale names: shoes's four late sales, hats's two, and
        # a malformed letter that names no product
        return {("late", "shoes0"): 3, ("late", "shoes1"): 1, ("late", "hats0"): 2,
                ("malformed", None): 1}  # fmt: skip

    monkeypatch.setattr("streams.console.health.read_trail", trail)
    # the experiment page's own reads (its trail and freezes; its spec is the store's)
    monkeypatch.setattr("streams.console.views.read_trail", trail)
    monkeypatch.setattr("streams.console.views.read_freezes", lambda settings, exp_id: [])
    monkeypatch.setattr("streams.console.health.read_dead_letters", letters)
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        _Store([_state("shoes", 3, "olga"), _state("hats", 3, None, missed=1)]),  # type: ignore[arg-type]
        _Feed({"shoes": [_look(NOW - timedelta(minutes=30))]}),  # type: ignore[arg-type]
        health=HealthReads(panels=_Panels()),
    )
    with TestClient(build_app(console)) as c:
        yield c


def _sign_in(client: TestClient) -> None:
    r = client.post("/api/login", json={"user": "vic", "password": "v-pass"})
    assert r.status_code == 200, r.text


def test_the_health_document_has_seven_checks_each_with_a_flag_and_a_sentence(
    client: TestClient,
) -> None:
    _sign_in(client)
    r = client.get("/api/experiments/shoes/health")
    assert r.status_code == 200, r.text
    doc = r.json()
    checks = {c["key"]: c for c in doc["checks"]}
    assert list(checks) == ["sample_ratio", "sales", "dead_letters", "flips", "freshness",
                            "balance", "exposure"]  # fmt: skip
    # two products an arm at 50/50: exactly as expected, chi-square 0, p = 1
    assert checks["sample_ratio"]["flag"] == "ok"
    assert checks["sample_ratio"]["detail"]["observed"] == {"treatment": 2, "control": 2}
    assert checks["sample_ratio"]["detail"]["pvalue"] == pytest.approx(1.0)
    # the last completed period (2) sold nothing while running: a problem
    assert checks["sales"]["flag"] == "problem"
    assert checks["sales"]["detail"]["units_by_period"] == {"0": 20.0, "1": 20.0, "2": 0.0}
    assert "32 sale(s) counted so far (2 dup, 30 ok)" in checks["sales"]["sentence"]
    assert checks["dead_letters"]["flag"] == "warn"
    assert checks["dead_letters"]["detail"]["late"] == 4
    # shoes's own letters, beside the topic's seven
    assert checks["dead_letters"]["detail"]["by_reason"] == {"late": 4}
    assert checks["dead_letters"]["detail"]["fleet"] == 7
    assert "the topic holds 3 more" in checks["dead_letters"]["sentence"]
    # each flip a second later than the one before: 1, 2, 3, 4 s after its boundary
    assert checks["flips"]["flag"] == "ok"
    assert checks["flips"]["detail"]["lateness"] == {"0": 1.0, "1": 2.0, "2": 3.0, "3": 4.0}
    assert checks["freshness"]["flag"] == "ok"
    assert checks["freshness"]["detail"]["age_seconds"] == 30 * 60
    assert checks["balance"]["detail"]["products_per_arm"] == {"treatment": 2, "control": 2}
    assert doc["flag"] == "problem" and doc["now"] == NOW.isoformat()
    assert all(c["sentence"].endswith((".", "?")) for c in doc["checks"])


def test_the_health_section_writes_each_flag_as_a_word(client: TestClient) -> None:
    _sign_in(client)
    page = client.get("/experiments/shoes")
    assert page.status_code == 200
    # the page fetches its Health section after it loads, and again on a look or a status
    assert 'hx-get="/experiments/shoes/health"' in page.text
    assert 'hx-trigger="load, look from:body, status from:body"' in page.text
    section = client.get("/experiments/shoes/health")
    assert section.status_code == 200
    text = section.text
    assert (
        'id="health-flag" class="flag flag-problem">Overall: <strong class="flag-word">PROBLEM'
        in text
    )
    assert '<tr data-check="sales" data-flag="problem">' in text
    assert '<strong class="flag-word">WARN</strong>' in text  # the dead letters
    assert "4 of them late sales" in text


def test_the_health_of_an_unknown_experiment_or_without_a_session(client: TestClient) -> None:
    assert client.get("/api/experiments/shoes/health").status_code == 401
    _sign_in(client)
    r = client.get("/api/experiments/boots/health")
    assert r.status_code == 404 and "boots" in r.json()["error"]
    section = client.get("/experiments/boots/health")
    assert section.status_code == 404 and 'id="health-error"' in section.text


def test_the_list_has_health_flags_created_by_and_started(client: TestClient) -> None:
    _sign_in(client)
    rows = {e["id"]: e for e in client.get("/api/experiments").json()["experiments"]}
    assert rows["shoes"]["created_by"] == "olga" and rows["hats"]["created_by"] is None
    assert rows["shoes"]["start"] == START.isoformat()
    # shoes: a look half an hour old, no missed flip; hats: no look after three periods, and
    # a missed flip
    assert rows["shoes"]["health"] == {"freshness": "ok", "flips": "ok", "flag": "ok"}
    assert rows["hats"]["health"] == {"freshness": "warn", "flips": "problem", "flag": "problem"}
    page = client.get("/experiments").text
    assert '<td class="created-by">olga</td>' in page
    assert 'hx-trigger="look from:body, status from:body"' in page  # redrawn on a status too


def test_the_page_s_created_by_is_the_one_kept_with_the_state(client: TestClient) -> None:
    _sign_in(client)
    doc = client.get("/api/experiments/shoes").json()
    assert doc["overview"]["created_by"] == "olga"  # the trail has no create record here


def test_a_status_change_is_read_from_an_announcement_only() -> None:
    paused = {"experiment": "shoes", "kind": "paused", "at": "2026-06-02T10:00:00+00:00",
              "detail": {"state": "paused", "frozen": False, "period": 1, "reason": "stock"}}  # fmt: skip
    assert status_of(paused) == {"experiment": "shoes", "kind": "paused", "state": "paused",
                                 "frozen": False, "at": "2026-06-02T10:00:00+00:00"}  # fmt: skip
    assert status_of({"experiment": "shoes", "kind": "flipped", "detail": {"period": 2}}) is None
    assert status_of({"experiment": "shoes", "kind": "command",
                      "detail": {"command": "pause", "accepted": True}}) is None  # fmt: skip
    assert status_of(["not", "ours"]) is None


@pytest.mark.parametrize("exp_id", ["shoes", None])
async def test_the_live_stream_sends_a_status_event(exp_id: str | None) -> None:
    """A status change of the experiment (of any, for the list page: None) is a ``status``
    event of its own; another experiment's is not sent to an experiment's page."""
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    class Feed:
        @contextlib.asynccontextmanager
        async def listen(self, exp_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
            yield q

        @contextlib.asynccontextmanager
        async def listen_any(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
            yield q

    statuses = StatusFeed(Settings())
    statuses._start = lambda: None  # type: ignore[method-assign]  # no broker here
    statuses.ready.set()
    events = _looks(Feed(), exp_id, statuses)  # type: ignore[arg-type]
    assert await anext(events) == ": live\n\n"
    change = {"experiment": "hats", "kind": "stopped", "state": "stopped", "frozen": False,
              "at": "2026-06-02T10:00:00+00:00"}  # fmt: skip
    statuses._publish(change)
    statuses._publish(change | {"experiment": "shoes", "kind": "paused", "state": "paused"})
    event = await anext(events)
    head, data = event.strip().split("\n")
    assert head == "event: status"
    got = json.loads(data.removeprefix("data: "))
    if exp_id is None:  # the list: every experiment's, in order
        assert got["experiment"] == "hats" and got["state"] == "stopped"
        got = json.loads((await anext(events)).strip().split("\n")[1].removeprefix("data: "))
    assert (got["experiment"], got["state"]) == ("shoes", "paused")
    await events.aclose()
    assert statuses._listeners == {}  # the stream's queue is let go


async def test_the_dead_letters_are_read_once_for_the_fetches_that_ask_together() -> None:
    """Every open page fetches its health after each look: the topic is read once for the
    fetches that wait together, its counts kept for the TTL, and read again after it."""
    reads: list[int] = []
    gate = asyncio.Event()

    async def read() -> dict[tuple[str, str | None], int]:
        reads.append(1)
        await gate.wait()
        return {("late", None): len(reads)}

    kept = HealthReads()
    waiting = [asyncio.ensure_future(kept.letters(read)) for _ in range(5)]
    await asyncio.sleep(0)  # let each fetch ask (a scheduling turn, not a wait on time)
    gate.set()
    assert [await w for w in waiting] == [{("late", None): 1}] * 5
    assert await kept.letters(read) == {("late", None): 1} and len(reads) == 1  # within the TTL
    kept.ttl = 0.0
    assert await kept.letters(read) == {("late", None): 2}
