"""A decision from the operator's seat (issue #55, Acting): ``pricelab experiment decide``
against a real controller worker, broker and Redis. Refusals are one sentence, exit 2; an
accepted decision lands in ``pricelab experiment history`` with its actor and reason; with
``--stop`` the same command stops the experiment, and its products go back to the control
policy; a stopped experiment still takes a decision; PRICELAB_ACTORS is kept by the
controller as for every command. A comment lands in the history too."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.store import make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.cli import main
from streams.client.commands import send_command
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

START = datetime(2026, 9, 1, tzinfo=UTC)
PRODUCTS = ["d1", "d2", "d3", "d4", "d5", "d6"]
ARMS = [
    {"name": "list", "policy": "list-price", "allocation": 0.4, "control": True},
    {"name": "p95", "policy": "price-95", "allocation": 0.3},
    {"name": "p105", "policy": "price-105", "allocation": 0.3},
]


def cli(*args: str) -> tuple[int, str, str]:
    """``pricelab ARGS`` through the entry point an operator's shell runs."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def ok(*args: str) -> dict[str, Any]:
    code, out, err = cli(*args)
    assert code == 0, f"pricelab {' '.join(args)}: exit {code}: {err}"
    return json.loads(out)  # type: ignore[no-any-return]


def refused(*args: str) -> str:
    code, out, err = cli(*args)
    assert code == 2, f"pricelab {' '.join(args)}: exit {code}: {out}{err}"
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err


def test_a_decision_lands_in_the_history_with_its_actor_and_can_stop_the_experiment(
    stack, tmp_path, monkeypatch
) -> None:
    settings = make_settings(stack, actors="olga,bob,ann")

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
    monkeypatch.setenv("PRICELAB_ACTOR", "ann@ops-desk")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "id": "dec-exp",
                "products": PRODUCTS,
                "arms": ARMS,
                "start": START.isoformat(),
                "end": (START + timedelta(days=7)).isoformat(),
                "timezone": "UTC",
                "seed": 3,
            }
        )
    )
    w = WorkerProcess(settings).start()
    try:
        assert ok("experiment", "create", str(spec), "--timeout", "60")["ok"]
        asyncio.run(set_clock(START + timedelta(hours=3)))
        deadline = time.monotonic() + 30
        while ok("experiment", "show", "dec-exp")["state"] != "running":
            assert time.monotonic() < deadline, "no first flip within 30 s"

        # refused before sending: what is decided, and why
        assert "--ship ARM or --keep-control" in refused(
            "experiment", "decide", "dec-exp", "--reason", "r"
        )
        assert "needs --reason" in refused("experiment", "decide", "dec-exp", "--ship", "p95")
        assert "PRICELAB_ACTORS" in refused(
            "experiment", "decide", "dec-exp", "--ship", "p95", "--reason", "r", "--as", "eve"
        )
        # refused by the controller: an arm the experiment does not have
        err = refused("experiment", "decide", "dec-exp", "--ship", "p59", "--reason", "typo")
        assert "experiment 'dec-exp' has no arm 'p59' (did you mean 'p95'?" in err
        assert "no experiment 'dec-epx'" in refused(
            "experiment", "decide", "dec-epx", "--ship", "p95", "--reason", "typo"
        )
        # a client that skips the CLI's checks: the controller keeps PRICELAB_ACTORS too
        reply = send_command(
            settings, "decision", experiment="dec-exp", arm="p95", reason="r", actor="eve",
            timeout=60,
        )  # fmt: skip
        assert reply["ok"] is False and "PRICELAB_ACTORS" in reply["error"]

        shipped = ok(
            "experiment", "decide", "dec-exp", "--ship", "p95", "--reason", "profit +4% holds",
            "--as", "olga",
        )  # fmt: skip
        assert shipped["detail"]["state"] == "running"  # recorded; nothing else changed
        assert shipped["detail"]["decision"]["decided"] == "ship arm 'p95'"
        assert ok("assignments", "d1")["status"] == "running"
        # a comment: kept in the trail with its writer, nothing else changes
        noted = ok("experiment", "comment", "dec-exp", "d3 was out of stock on Tuesday",
                   "--as", "bob")  # fmt: skip
        assert noted["detail"]["state"] == "running"
        assert "needs its text" in refused("experiment", "comment", "dec-exp", " ")

        stopped = ok(
            "experiment", "decide", "dec-exp", "--keep-control", "--stop",
            "--reason", "the rollout is postponed", "--as", "bob",
        )  # fmt: skip
        assert stopped["detail"]["state"] == "stopped"
        assert stopped["detail"]["decision"] == {
            "arm": "list",
            "ship": False,
            "decided": "keep the control (arm 'list')",
            "stop": True,
        }
        for product in PRODUCTS:  # one reply, and the products are back on the control
            now = ok("assignments", product)
            assert (now["status"], now["policy"]) == ("stopped", "list-price"), now
        # a stopped experiment still takes a decision (a team decides once it is over)
        late = ok("experiment", "decide", "dec-exp", "--ship", "p105", "--reason", "second look")
        assert late["detail"]["state"] == "stopped" and "already" not in late["detail"]
    finally:
        w.stop()

    code, out, err = cli("experiment", "history", "dec-exp", "--json")
    assert code == 0, err
    cmds = [
        r["detail"]
        for r in json.loads(out)["records"]
        if r["kind"] == "command" and r["detail"]["command"] == "decision"
    ]
    assert [(c["actor"], c["accepted"], c["decision"].get("decided")) for c in cmds] == [
        ("ann@ops-desk", False, None),  # p59
        ("eve", False, None),  # not one of PRICELAB_ACTORS
        ("olga", True, "ship arm 'p95'"),
        ("bob", True, "keep the control (arm 'list')"),
        ("ann@ops-desk", True, "ship arm 'p105'"),
    ]
    assert cmds[3]["reason"] == "the rollout is postponed" and cmds[3]["decision"]["stop"]
    code, text, _ = cli("experiment", "history", "dec-exp")
    assert code == 0
    lines = text.splitlines()
    [olga] = [line for line in lines if "decision accepted: ship arm 'p95'" in line]
    assert "olga" in olga and "reason: profit +4% holds" in olga
    [bob] = [line for line in lines if "keep the control (arm 'list'), and stop" in line]
    assert "bob" in bob
    [note] = [line for line in lines if "comment: d3 was out of stock on Tuesday" in line]
    assert "bob" in note and lines.index(olga) < lines.index(note) < lines.index(bob)
    # the stop it made is in the trail after it, with the decision as its reason
    after = lines[lines.index(bob) + 1 :]
    assert any(" stopped " in line and "decision, keep the control" in line for line in after)
