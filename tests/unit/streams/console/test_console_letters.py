"""The Health section's dead letters come from the console's one follower of the dead-letter
topic when it has one (``make_console`` gives it one): a fetch reads only the letters written
since the last, and the check counts them as before (streams.client.letter_follower; the
broker is tests/unit/streams/client/test_letter_follower.py's stand-in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings, TopicSettings
from streams.client.history import Trail
from streams.client.letter_follower import LetterFollower
from streams.console import auth
from streams.console.app import Console, build_app, make_console
from streams.console.health import FOLLOWED_LETTERS_TTL, LETTERS_TTL, HealthReads
from tests.unit.streams.client.test_letter_follower import _Broker, dead, sale
from tests.unit.streams.console.test_console_app import hash_line
from tests.unit.streams.console.test_console_health import (
    NOW,
    TRAIL,
    _Feed,
    _look,
    _Panels,
    _state,
    _Store,
)


@pytest.fixture
def broker() -> _Broker:
    # shoes's three late sales and a malformed letter; hats's one
    return _Broker(
        {
            0: [dead("late", sale("shoes0")), dead("late", sale("shoes1")), dead("late", sale("hats0"))],
            1: [dead("malformed", b"{nope"), dead("late", sale("shoes0"))],
        }
    )  # fmt: skip


@pytest.fixture
def client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: _Broker
) -> Iterator[TestClient]:
    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id, [r | {"experiment": exp_id} for r in TRAIL])

    async def whole_topic(settings: Settings, idle: float) -> None:
        raise AssertionError("the follower counts: the topic is not read from its start")

    monkeypatch.setattr("streams.console.health.read_trail", trail)
    monkeypatch.setattr("streams.console.health.read_dead_letters", whole_topic)
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    settings = Settings(
        console=ConsoleSettings(users_file=users), topics=TopicSettings(dead_letter="s.dlq")
    )
    console = Console(
        settings,
        auth.Users.load(users),
        _Store([_state("shoes", 3, "olga"), _state("hats", 3, None)]),  # type: ignore[arg-type]
        _Feed({"shoes": [_look(NOW - timedelta(minutes=30))]}),  # type: ignore[arg-type]
        health=HealthReads(panels=_Panels(), ttl=0.0),  # every fetch asks the follower
        letters=LetterFollower(settings, consumer=broker.consumer),
    )
    with TestClient(build_app(console)) as c:
        r = c.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200, r.text
        yield c


def _letters(client: TestClient, exp_id: str) -> dict[str, object]:
    r = client.get(f"/api/experiments/{exp_id}/health")
    assert r.status_code == 200, r.text
    check = next(c for c in r.json()["checks"] if c["key"] == "dead_letters")
    return dict(check["detail"]) | {"sentence": check["sentence"]}


def test_the_health_fetch_counts_only_the_letters_written_since_the_last(
    client: TestClient, broker: _Broker
) -> None:
    first = _letters(client, "shoes")
    assert (first["by_reason"], first["fleet"]) == ({"late": 3}, 5)
    assert "the topic holds 2 more" in str(first["sentence"])
    assert len(broker.fetched) == 5
    assert _letters(client, "hats")["by_reason"] == {"late": 1}
    assert len(broker.fetched) == 5  # nothing new: nothing fetched
    broker.log[1].append(dead("currency", sale("shoes2")))
    again = _letters(client, "shoes")
    assert (again["by_reason"], again["fleet"]) == ({"late": 3, "currency": 1}, 6)
    assert broker.fetched[5:] == [(1, 2)]  # only the new letter


def test_the_console_process_keeps_one_follower(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    settings = Settings(console=ConsoleSettings(users_file=users))
    console = make_console(settings, auth.Users.load(users))
    assert isinstance(console.letters, LetterFollower)
    assert console.health.ttl == FOLLOWED_LETTERS_TTL < LETTERS_TTL
