"""Drafts from the operator's seat, on a real broker, Redis and controller worker: a spec saved
as a draft is listed and read back, launched with ``experiment create`` (which deletes the
draft), and an experiment's id is refused as a draft; another draft is discarded (done once);
the history of each shows every save, the launch and the discard with its actor."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.store import make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings
from tests.integration.test_cli_experiments import cli, ok, refused

pytestmark = pytest.mark.integration

START = datetime(2026, 10, 1, tzinfo=UTC)


def _spec(exp_id: str, products: list[str]) -> dict[str, Any]:
    return {
        "id": exp_id,
        "products": products,
        "treatment_policy": "promo",
        "control_policy": "list",
        "start": START.isoformat(),
        "end": (START + timedelta(days=7)).isoformat(),
        "timezone": "UTC",
        "seed": 5,
    }


def _commands(exp_id: str) -> list[tuple[str, str, bool]]:
    """The commands of ``exp_id``'s history: (command, actor, accepted), in order."""
    trail = json.loads(cli("experiment", "history", exp_id, "--json")[1])
    return [
        (r["detail"]["command"], r["detail"]["actor"], r["detail"]["accepted"])
        for r in trail["records"]
        if r["kind"] == "command"
    ]


def test_a_draft_is_saved_listed_launched_and_another_discarded(
    stack, tmp_path, monkeypatch
) -> None:
    settings = make_settings(stack)

    async def set_clock(at: datetime) -> None:
        redis = make_redis(settings)
        try:
            await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(at)
        finally:
            await redis.aclose()

    asyncio.run(ensure_topics(settings))
    asyncio.run(set_clock(START - timedelta(hours=1)))
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    coats = tmp_path / "coats.yaml"
    coats.write_text(yaml.safe_dump(_spec("coats", ["c1", "c2", "c3"])))
    edited = tmp_path / "coats-edited.yaml"
    edited.write_text(yaml.safe_dump(_spec("coats", ["c1", "c2", "c3", "c4"])))
    hats = tmp_path / "hats.yaml"
    hats.write_text(yaml.safe_dump(_spec("hats", ["h1", "h2"])))
    w = WorkerProcess(settings).start()
    try:
        saved = ok("experiment", "draft", str(coats), "--as", "ana@desk")
        assert saved["experiment"] == "coats" and saved["detail"]["saved"] == "new"
        # a colleague edits it: the same id replaced, its author kept
        again = ok("experiment", "draft", str(edited), "--as", "bob@desk")
        assert again["detail"]["saved"] == "replaced"
        ok("experiment", "draft", str(hats), "--as", "bob@desk")
        listed = {d["id"]: d for d in json.loads(cli("experiment", "drafts", "--json")[1])}
        assert set(listed) == {"coats", "hats"}
        assert (listed["coats"]["author"], listed["coats"]["updated_by"]) == (
            "ana@desk", "bob@desk"
        )  # fmt: skip
        assert listed["coats"]["products"] == 4
        assert listed["coats"]["updated"] == (START - timedelta(hours=1)).isoformat()
        opened = json.loads(cli("experiment", "drafts", "coats")[1])
        assert opened["spec"]["products"] == ["c1", "c2", "c3", "c4"]

        # launched with the create of the draft's spec: the experiment, and no draft
        launch = tmp_path / "launch.json"
        launch.write_text(json.dumps(opened["spec"]))
        created = ok("experiment", "create", str(launch), "--as", "olga@ops")
        assert created["detail"]["state"] == "created"
        assert ok("experiment", "show", "coats")["products"] == 4
        left = json.loads(cli("experiment", "drafts", "--json")[1])
        assert [d["id"] for d in left] == ["hats"]
        assert "is an experiment already" in refused(
            "experiment", "draft", str(coats), "--as", "ana@desk"
        )
        assert "there is no draft 'coats'" in refused("experiment", "drafts", "coats")

        gone = ok("experiment", "discard", "hats", "--reason", "superseded", "--as", "bob@desk")
        assert gone["detail"]["draft"]["discarded_by"] == "bob@desk"
        twice = ok("experiment", "discard", "hats", "--reason", "superseded", "--as", "bob@desk")
        assert twice["detail"]["already"] == "discarded"
        assert cli("experiment", "drafts")[1] == "no drafts\n"
        assert "there is no draft 'hatz'" in refused(
            "experiment", "discard", "hatz", "--reason", "typo", "--as", "bob@desk"
        )

        assert _commands("coats") == [
            ("draft", "ana@desk", True),
            ("draft", "bob@desk", True),
            ("create", "olga@ops", True),
            ("draft", "ana@desk", False),
        ]
        assert _commands("hats") == [
            ("draft", "bob@desk", True),
            ("discard", "bob@desk", True),
            ("discard", "bob@desk", True),
        ]
        history = cli("experiment", "history", "hats")[1]
        assert "discard accepted; reason: superseded" in history
        assert "no experiment 'hatz'" in refused("experiment", "history", "hatz")
    finally:
        w.stop()
