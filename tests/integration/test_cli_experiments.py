"""`pricelab experiment ...` and `pricelab assignments` against a real worker, broker and Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from typer.testing import CliRunner

from controller.store import make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.cli import app
from streams.kafka import ensure_topics
from streams.launcher import WorkerProcess
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

START = datetime(2026, 9, 1, tzinfo=UTC)


def test_operator_round_trip(stack, tmp_path, monkeypatch):
    # a plain (sync) test: the CLI runs its own event loop, as it does for an operator
    settings = make_settings(stack)

    async def prepare() -> None:
        await ensure_topics(settings)
        redis = make_redis(settings)
        await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(
            START + timedelta(hours=3)
        )
        await redis.aclose()

    asyncio.run(prepare())
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    spec = {
        "id": "cli-exp",
        "products": ["s1", "s2", "s3"],
        "treatment_policy": "promo",
        "control_policy": "list",
        "start": START.isoformat(),
        "end": (START + timedelta(days=7)).isoformat(),
        "washout": "PT1H",
        "seed": 2,
    }
    good = tmp_path / "spec.yaml"
    good.write_text(yaml.safe_dump(spec))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec | {"allocation": 2}))
    runner = CliRunner()
    w = WorkerProcess(settings).start()
    try:
        r = runner.invoke(app, ["experiment", "create", str(bad)])
        assert r.exit_code != 0
        assert "allocation" in str(r.exception) + r.output

        r = runner.invoke(app, ["experiment", "create", str(good), "--timeout", "60"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["ok"] is True

        r = runner.invoke(app, ["experiment", "list"])
        assert r.exit_code == 0 and "cli-exp" in r.output and "running" in r.output

        r = runner.invoke(app, ["assignments", "s2"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["experiment"] == "cli-exp" and doc["policy"] in {"promo", "list"}

        r = runner.invoke(app, ["experiment", "pause", "cli-exp"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["experiment", "show", "cli-exp"])
        assert json.loads(r.output)["status"] == "paused"

        r = runner.invoke(app, ["experiment", "resume", "cli-exp"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["experiment", "stop", "nope"])
        assert r.exit_code == 2 and "nope" in r.output
        assert len(r.output.strip().splitlines()) == 1, r.output  # one sentence, no JSON

        r = runner.invoke(app, ["assignments", "unknown-product"])
        assert r.exit_code == 1
    finally:
        w.stop()
