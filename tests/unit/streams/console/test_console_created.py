"""A new experiment reaches the open console: its creation is a status change (the open
list redraws on it, as on a pause), and its heatmap is made then, in the background and one
at a time, so that the first to open its page does not wait for it (about 48 s for a million
products). A freeze of another experiment leaves a heatmap as it was made; one that applies
to it makes it again. The store and feed are the charts' stand-ins; the browser test sees a
launched experiment appear on the open list."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import streams.client.heatmap as heatmap
from controller.blackout import Freeze
from controller.settings import ConsoleSettings, Settings
from streams.client.events import status_of
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from streams.console.statuses import StatusFeed
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    START,
    _Feed,
    _sign_in,
    _state,
    hash_line,
)
from tests.unit.streams.console.test_console_charts import _ChartStore

ROOT = Path(__file__).resolve().parents[4]
GOOD = ROOT / "docs" / "examples" / "random-days.yaml"


class _FreezingStore(_ChartStore):
    """The charts' stand-in store, with freezes a test adds."""

    held_freezes: list[dict[str, Any]]

    async def freezes(self) -> list[dict[str, Any]]:
        return self.held_freezes


def _freeze(freeze_id: str, experiments: Any) -> dict[str, Any]:
    """A freeze as the store keeps it (``ExperimentStore.freezes``)."""
    f = Freeze(id=freeze_id, start=START + timedelta(days=1), end=START + timedelta(days=2),
               experiments=experiments, reason="stock count")  # fmt: skip
    return {"id": freeze_id, "reason": f.reason, "freeze": f.model_dump(mode="json")}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("created") / "users"
    path.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))
    return path


class _Made:
    """Each heatmap made (schedule_heatmap called, off the event loop), by experiment, and
    how many were being made at once at most."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.at_once = 0
        self._now = 0
        self._lock = threading.Lock()


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> _Made:
    m = _Made()
    real = heatmap.schedule_heatmap

    def counted(spec: Any, *args: Any, **kw: Any) -> dict[str, Any]:
        with m._lock:
            m._now += 1
            m.at_once = max(m.at_once, m._now)
        try:
            return real(spec, *args, **kw)
        finally:
            with m._lock:
                m._now -= 1
                m.made.append(spec.id)

    monkeypatch.setattr(heatmap, "schedule_heatmap", counted)
    return m


@pytest.fixture
def console(users_file: Path) -> Console:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        return {"ok": True, "command_id": "c1", "state": "created"}

    store = _FreezingStore([_state("shoes", 2), _state("hats", -1)])
    store.held_freezes = []
    statuses = StatusFeed(Settings())
    statuses._start = lambda: None  # type: ignore[method-assign]  # no broker here
    statuses.ready.set()
    return Console(
        Settings(console=ConsoleSettings(users_file=users_file)),
        auth.Users.load(users_file),
        store,  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        send,
        statuses=statuses,
    )


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(build_console_app(console)) as c:
        yield c


def _heard(client: TestClient, console: Console, *changes: dict[str, Any]) -> None:
    """The status reader reads ``changes`` (on the app's event loop); then every heatmap
    due is made."""
    assert console.statuses is not None and client.portal is not None

    async def hear() -> None:
        assert console.statuses is not None
        for change in changes:
            console.statuses._publish(change)
        await console.heatmaps.warmed()

    client.portal.call(hear)


def _change(exp_id: str, kind: str, state: str) -> dict[str, Any]:
    return {"experiment": exp_id, "kind": kind, "state": state, "frozen": False,
            "at": "2026-06-02T10:00:00+00:00"}  # fmt: skip


def test_a_creation_is_a_status_change() -> None:
    created = {"experiment": "shoes", "kind": "created", "at": "2026-06-01T09:00:00+00:00",
               "detail": {"products": 4, "backfill": False, "worker": "w1", "order": 7}}  # fmt: skip
    assert status_of(created) == _change("shoes", "created", "created") | {
        "at": "2026-06-01T09:00:00+00:00"
    }


def test_a_created_status_makes_the_heatmap_before_anyone_asks(
    client: TestClient, console: Console, made: _Made
) -> None:
    _heard(client, console, _change("hats", "paused", "paused"))
    assert made.made == []  # only a creation makes one ahead
    _heard(client, console, _change("shoes", "created", "created"))
    assert made.made == ["shoes"]
    _sign_in(client, "vic")
    doc = client.get("/api/experiments/shoes/assignments").json()
    assert (doc["products"], doc["periods"]) == (4, 5)
    assert made.made == ["shoes"]  # the page's request found it made


def test_the_heatmaps_due_are_made_one_at_a_time_in_the_order_heard(
    client: TestClient, console: Console, made: _Made
) -> None:
    _heard(client, console, _change("shoes", "created", "created"),
           _change("hats", "created", "created"), _change("shoes", "created", "created"))  # fmt: skip
    assert made.made == ["shoes", "hats"] and made.at_once == 1


def test_an_unknown_experiment_s_creation_makes_nothing_and_breaks_nothing(
    client: TestClient, console: Console, made: _Made
) -> None:
    _heard(client, console, _change("gone", "created", "created"),
           _change("hats", "created", "created"))  # fmt: skip
    assert made.made == ["hats"]


def test_the_console_s_own_launch_makes_the_heatmap(
    client: TestClient, console: Console, made: _Made
) -> None:
    csrf = _sign_in(client, "olga")
    # the stand-in controller accepts it; the store holds "hats" as created
    spec = GOOD.read_text().replace("id: shoes-random-days", "id: hats")
    r = client.post("/api/experiments", json={"spec": spec, "name": "hats.yaml"},
                    headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert r.status_code == 201, r.text
    assert client.portal is not None
    client.portal.call(console.heatmaps.warmed)
    assert made.made == ["hats"]


def test_a_freeze_of_another_experiment_keeps_the_heatmap(
    client: TestClient, console: Console, made: _Made
) -> None:
    _sign_in(client, "vic")
    store: Any = console.store
    first = client.get("/api/experiments/shoes/assignments").json()
    store.held_freezes = [_freeze("f-hats", ("hats",))]
    assert client.get("/api/experiments/shoes/assignments").json() == first
    assert made.made == ["shoes"]
    # one that applies to it (every experiment's) makes it again, with the freeze in it
    store.held_freezes += [_freeze("f-all", "all")]
    again = client.get("/api/experiments/shoes/assignments").json()
    assert made.made == ["shoes", "shoes"]
    freeze = again["reasons"].index("freeze")
    assert sum(map(sum, again["blackout_share"][freeze])) > 0
    assert sum(map(sum, first["blackout_share"][freeze])) == 0


def test_a_fleet_created_at_once_makes_no_more_heatmaps_than_are_kept(
    client: TestClient, console: Console, made: _Made
) -> None:
    """A fleet created at once (a script creating many experiments) makes only the heatmaps
    the console keeps (``charts.KEPT``), the newest: one made beyond them would push out
    another made ahead before anyone could open it."""
    from streams.console.charts import KEPT

    store: Any = console.store
    fleet = [f"e{i:03d}" for i in range(KEPT + 8)]
    for exp_id in fleet:
        store.states[exp_id] = _state(exp_id, -1)
    _heard(client, console, *(_change(e, "created", "created") for e in fleet))
    assert made.made == fleet[-KEPT:]
