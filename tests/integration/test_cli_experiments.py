"""The lifecycle from the operator's seat and the pricing system's.

An operator drives ``pricelab experiment ...`` (the CLI's entry point, configured by the
environment) through create, pause, resume, a freeze and its cancel, stop, and then commands
that no longer apply, against a real controller worker, broker and Redis. A pricing system
built on librdkafka (confluent-kafka) reads the assignments topic: per product the ``seq``
rises strictly in topic order, each message says what the operator just did, and the
highest-seq rule of docs/examples/pricing_system.py ends where the controller says it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition

from controller.designs import Assignment
from controller.settings import Settings
from controller.spec import Arm, load_spec
from controller.store import make_redis
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.cli import main
from streams.client.commands import send_command
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from streams.worker.schemas import ExperimentEvent
from streams.worker.sinks import assignment_message
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 9, 1, tzinfo=UTC)
PRODUCTS = ["s1", "s2", "s3", "s4"]
#: the key of a marker the test writes to every partition once the worker is gone: a reader
#: that has seen it on each partition has seen everything the controller published. Its value
#: keeps the topic's contract: the broker validates the output topics, and refuses a
#: tombstone (no value) there (docs/broker.md)
END_KEY = b"end-of-test"
LADDER_PRODUCTS = ["k1", "k2", "k3"]
LADDER_ARMS = [
    {
        "name": "list",
        "policy": "list-ladder",
        "price_ratio": 1.0,
        "allocation": 0.4,
        "control": True,
    },
    {"name": "p95", "policy": "price-95", "price_ratio": 0.95, "allocation": 0.3},
    {"name": "p105", "policy": "price-105", "price_ratio": 1.05, "allocation": 0.3},
]

sys.path.insert(0, str(ROOT / "docs" / "examples"))
from pricing_system import PolicyBook  # noqa: E402


def cli(*args: str) -> tuple[int, str, str]:
    """``pricelab ARGS`` through the entry point an operator's shell runs (streams.cli:main)."""
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
    """A command the controller must refuse: exit 2 and one sentence, nothing on stdout."""
    code, out, err = cli(*args)
    assert code == 2, f"pricelab {' '.join(args)}: exit {code}: {out}{err}"
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err


def _spec(exp_id: str, start: datetime) -> dict[str, Any]:
    return {
        "id": exp_id,
        "products": PRODUCTS,
        "treatment_policy": "promo",
        "control_policy": "list",
        "start": start.isoformat(),
        "end": (start + timedelta(days=7)).isoformat(),
        "timezone": "UTC",
        "washout": "PT1H",
        "seed": 2,
    }


def read_with_librdkafka(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every message of ``topic`` from the beginning, in partition order, read by librdkafka
    up to the END_KEY marker on each partition (never "to the high watermark": it lags
    on the embedded broker)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"{settings.app_id}-reader",
            "enable.auto.commit": False,
        }
    )
    parts = list(range(settings.kafka.partitions))
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[dict[str, Any]] = []
    open_parts = set(parts)
    try:
        for _ in range(600):
            if not open_parts:
                break
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            if msg.key() == END_KEY:  # the marker, not a message of the test's
                open_parts.discard(msg.partition())
            elif msg.value() is not None:
                out.append(json.loads(msg.value()))
        assert not open_parts, f"no end marker on partitions {sorted(open_parts)}"
        return out
    finally:
        consumer.close()


def _marker(settings: Settings, topic: str) -> bytes:
    """An END_KEY marker's value: a message of the topic's kind (its contract holds)."""
    t = settings.topics
    if topic == t.assignments:
        a = Assignment("end", "end", 0, Arm.CONTROL, 1.0, "end", START, START)
        return assignment_message(a, 0, "ended").model_dump_json().encode()
    assert topic == t.experiment_events, topic
    return ExperimentEvent(experiment="end", kind="end", at=START).model_dump_json().encode()


async def _end_markers(settings: Settings, topics: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for topic in topics:
            for p in range(settings.kafka.partitions):
                value = _marker(settings, topic)
                await producer.send_and_wait(topic, value, key=END_KEY, partition=p)
    finally:
        await producer.stop()


def test_the_lifecycle_from_the_operators_and_the_pricing_systems_seats(
    stack, tmp_path, monkeypatch
) -> None:
    # a plain (sync) test: the CLI runs its own event loop, as it does for an operator
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
    monkeypatch.setenv("PRICELAB_ACTOR", "ann@ops-desk")  # who the operator's shell says
    good = tmp_path / "spec.yaml"
    good.write_text(yaml.safe_dump(_spec("cli-exp", START)))
    past = tmp_path / "past.yaml"
    past.write_text(yaml.safe_dump(_spec("past-exp", START - timedelta(days=2))))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec("bad", START) | {"allocation": 2}))
    # three arms of the optimal switchback with a guardrail (issues #41, #54): refused, as
    # nothing would check it (its guardrails need each cell's probability per arm; the
    # other designs' guardrails are checked on each arm)
    ladder_doc = {k: v for k, v in _spec("ladder", START).items() if not k.endswith("_policy")}
    ladder_doc |= {
        "design": "optimal-switchback",
        "optimal_switchback": {"carryover_order": 1},
        "products": LADDER_PRODUCTS,
        "arms": LADDER_ARMS,
        "guardrails": [{"metric": "revenue", "max_drop_pct": 10}],
    }
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text(yaml.safe_dump(ladder_doc))
    bad_arms = tmp_path / "bad-arms.yaml"
    bad_arms.write_text(yaml.safe_dump(ladder_doc | {"arms": LADDER_ARMS[:2]}))
    w = WorkerProcess(settings).start()
    try:
        assert "allocation" in refused("experiment", "create", str(bad))
        # a k-arm spec with guardrails: one sentence, exit 2, nothing sent; a bad arm list
        # names the field
        err = refused("experiment", "create", str(ladder))
        assert "guardrails: are not checked on 3-arm experiments of the optimal-switchback" in err
        assert "arms: the allocations sum to 0.7, not 1" in refused(
            "experiment", "create", str(bad_arms)
        )
        # a client that skips the CLI's check is refused by the controller itself
        doc = load_spec(ladder_doc).model_dump(mode="json")
        reply = send_command(settings, "create", spec=doc, timeout=60)
        assert reply["ok"] is False
        assert "are not checked on 3-arm experiments of the optimal-switchback" in reply["error"]
        assert "ladder" not in cli("experiment", "list")[1]
        # a start before now is refused, naming the way out; nothing is created
        err = refused("experiment", "create", str(past), "--timeout", "60")
        assert "before now" in err and "--backfill" in err
        assert "past-exp" not in cli("experiment", "list")[1]

        created = ok("experiment", "create", str(good), "--timeout", "60")
        assert created["ok"] and created["detail"]["state"] == "created"
        assert created["experiment"] == "cli-exp"
        # the same create again (a retry) is done once: the reply says so
        retried = ok("experiment", "create", str(good), "--timeout", "60")
        assert retried["detail"]["already"] == "created"
        assert ok("experiment", "show", "cli-exp")["state"] == "created"
        asyncio.run(set_clock(START + timedelta(hours=3)))
        deadline = time.monotonic() + 30
        while ok("experiment", "show", "cli-exp")["state"] != "running":  # each read ~50 ms
            assert time.monotonic() < deadline, "no first flip within 30 s"
        first = ok("assignments", "s2")
        assert first["status"] == "running" and first["policy"] in {"promo", "list"}

        paused = ok("experiment", "pause", "cli-exp", "--reason", "price check")
        assert paused["detail"]["state"] == "paused" and "already" not in paused["detail"]
        # a pause, a stop or a freeze needs a reason (the audit trail): refused before sending
        assert "--reason" in refused("experiment", "pause", "cli-exp")
        assert "not an actor" in refused(
            "experiment", "pause", "cli-exp", "--reason", "x", "--as", "not me"
        )
        again = ok("experiment", "pause", "cli-exp", "--reason", "price check")
        assert again["detail"]["already"] == "paused"
        during = ok("assignments", "s2")
        assert (during["status"], during["policy"]) == ("paused", "list")
        assert during["seq"] > first["seq"] and during["reason"].startswith("paused")

        assert ok("experiment", "resume", "cli-exp")["detail"]["state"] == "running"
        assert ok("experiment", "resume", "cli-exp")["detail"]["already"] == "running"

        assert "does not exist" in refused(
            "experiment", "freeze", "--experiment", "nope", "--reason", "audit",
            "--start", (START + timedelta(hours=4)).isoformat(),
            "--end", (START + timedelta(days=1)).isoformat(),
        )  # fmt: skip
        assert "in the past" in refused(
            "experiment", "freeze", "--experiment", "cli-exp", "--reason", "audit",
            "--start", (START - timedelta(days=1)).isoformat(),
            "--end", (START + timedelta(hours=1)).isoformat(),
        )  # fmt: skip
        frozen = ok(
            "experiment", "freeze", "--experiment", "cli-exp", "--id", "hold",
            "--start", (START + timedelta(hours=2)).isoformat(),
            "--end", (START + timedelta(days=1)).isoformat(), "--reason", "stock-take",
        )  # fmt: skip
        view = frozen["detail"]["freeze"]
        assert frozen["experiment"] == "cli-exp"  # the reply names what it froze
        assert view["id"] == "hold" and view["now"] == "in force"
        assert datetime.fromisoformat(view["end"]) == START + timedelta(days=1)
        held = ok("assignments", "s3")
        assert (held["status"], held["policy"]) == ("frozen", "list")
        assert "hold (stock-take)" in held["reason"]
        code, out, _ = cli("experiment", "freezes", "cli-exp")
        assert code == 0 and out.split()[:2] == ["hold", "in"], out
        assert ok("experiment", "unfreeze", "hold")["detail"]["freeze"]["cancelled"] is True
        assert ok("assignments", "s3")["status"] == "running"
        assert ok("experiment", "unfreeze", "hold")["detail"]["freeze"]["already"] == "cancelled"
        assert "no freeze 'ghost'" in refused("experiment", "unfreeze", "ghost")

        assert (
            ok("experiment", "stop", "cli-exp", "--reason", "done", "--as", "bob")["detail"][
                "state"
            ]
            == "stopped"
        )
        stop = ("experiment", "stop", "cli-exp", "--reason", "again")
        assert ok(*stop)["detail"]["already"] == "stopped"
        assert "final" in refused("experiment", "pause", "cli-exp", "--reason", "late")
        assert "final" in refused("experiment", "resume", "cli-exp")
        assert "no experiment 'nope'" in refused("experiment", "stop", "nope", "--reason", "oops")
        # a stopped experiment's id is not created again, with its spec or another
        err = refused("experiment", "create", str(good), "--timeout", "60")
        assert "experiment 'cli-exp' was stopped, and ids are not reused" in err
        assert "under a new id" in err
        other = tmp_path / "other.yaml"
        other.write_text(yaml.safe_dump(_spec("cli-exp", START + timedelta(days=1))))
        assert "was stopped" in refused("experiment", "create", str(other), "--timeout", "60")
        # an id no experiment has is one sentence in every command that reads one
        # (issue #54: `experiment history op-tset` showed a two-record trail, exit 0)
        typo = "there is no experiment 'cli-epx' (did you mean 'cli-exp'?"
        assert typo in refused("experiment", "history", "cli-epx")
        assert typo in refused("experiment", "pause", "cli-epx", "--reason", "r")
        assert typo in refused("experiment", "resume", "cli-epx")
        assert typo in refused("experiment", "show", "cli-epx")
        assert typo in refused("experiment", "freezes", "cli-epx")
        assert typo in refused("estimates", "cli-epx", "--idle", "0.5")
        assert typo in refused("estimates", "cli-epx", "--follow")
        assert typo in refused("panel", "export", "cli-epx", "--out", str(tmp_path / "p.csv"))
        assert typo in refused("report", "cli-epx", "--out", str(tmp_path / "report"))
        assert not (tmp_path / "p.csv").exists() and not (tmp_path / "report").exists()
        code, out, _ = cli("experiment", "list")
        assert code == 0 and out.split()[:3] == ["cli-exp", "random-days", "stopped"], out
        final = ok("assignments", "s2")
        assert (final["status"], final["policy"], final["state"]) == ("stopped", "list", "stopped")
    finally:
        w.stop()

    topics = settings.topics
    asyncio.run(_end_markers(settings, [topics.assignments, topics.experiment_events]))
    msgs = read_with_librdkafka(settings, topics.assignments)
    order = ["running", "paused", "running", "frozen", "running", "stopped"]
    book = PolicyBook()
    for product in PRODUCTS:
        mine = [m for m in msgs if m["product"] == product]
        assert [m["status"] for m in mine] == order, product
        seqs = [m["seq"] for m in mine]
        assert seqs == sorted(set(seqs)), f"{product}: seq not strictly rising: {seqs}"
        for m in mine:
            book.apply(m)
        kept = book.current[("cli-exp", product)]
        assert (kept["status"], kept["policy"], kept["seq"]) == ("stopped", "list", final["seq"])
    # nothing of the refused three-arm experiment reached a topic
    assert not [m for m in msgs if m["experiment"] == "ladder" or m["product"] in LADDER_PRODUCTS]
    # what happened, once each: the repeated pause, resume and stop announced nothing more
    events = read_with_librdkafka(settings, topics.experiment_events)
    assert {e["kind"] for e in events if e.get("experiment") == "ladder"} <= {"command"}
    kinds = [e["kind"] for e in events if e.get("experiment") == "cli-exp"]
    changes = [k for k in kinds if k not in ("command", "flipped")]
    assert changes == ["created", "started", "paused", "resumed", "frozen", "unfrozen", "stopped"]

    # the audit trail, as `pricelab experiment history` prints it from the topic: every command
    # the experiment was sent, accepted or refused, with who and why, in the order received
    code, out, err = cli("experiment", "history", "cli-exp", "--json")
    assert code == 0, err
    trail = json.loads(out)
    assert trail["expired"] is False
    own = [r for r in trail["records"] if r["experiment"] == "cli-exp"]
    cmds = [r["detail"] for r in own if r["kind"] == "command"]
    assert [(c["command"], c["accepted"], c.get("already")) for c in cmds] == [
        ("create", True, None),
        ("create", True, "created"),
        ("pause", True, None),
        ("pause", True, "paused"),
        ("resume", True, None),
        ("resume", True, "running"),
        ("freeze", False, None),  # in the past
        ("freeze", True, None),
        ("unfreeze", True, None),  # under the experiment its freeze named
        ("unfreeze", True, None),  # its repeat (the reply's freeze says already cancelled)
        ("stop", True, None),
        ("stop", True, "stopped"),
        ("pause", False, None),  # final
        ("resume", False, None),  # final
        ("create", False, None),  # a stopped experiment's id
        ("create", False, None),
    ]
    assert {c["actor"] for c in cmds} == {"ann@ops-desk", "bob"}
    stops = [c for c in cmds if c["command"] == "stop"]
    assert (stops[0]["actor"], stops[0]["reason"]) == ("bob", "done")
    refusals = [c for c in cmds if not c["accepted"]]
    assert "past" in refusals[0]["refusal"] and "final" in refusals[1]["refusal"]
    assert all(c["reason"] for c in cmds if c["command"] in ("pause", "stop", "freeze"))
    # the controller's own decisions name the worker that took them
    decided = [r for r in own if r["kind"] != "command"]
    assert decided and all(r["detail"].get("worker") for r in decided)
    # an unfreeze is kept under the experiments of the freeze it cancelled; one of a freeze
    # that does not exist names none, and is kept under the fleet (in every trail)
    fleet = [r["detail"] for r in trail["records"] if r["experiment"] == "_all"]
    assert [(c["command"], c["accepted"]) for c in fleet] == [("unfreeze", False)]
    # commands refused because their experiment does not exist are kept nowhere: a typo
    # makes no trail of an experiment that never was, and its history is refused
    assert not [e for e in events if e.get("experiment") in ("nope", "cli-epx")]
    assert "there is no experiment 'nope'" in refused("experiment", "history", "nope")
    code, text, _ = cli("experiment", "history", "cli-exp")
    first = text.splitlines()[0]
    assert code == 0 and first.startswith("trail of cli-exp:") and "nothing expired" in first
    assert "bob" in text and "REFUSED" in text
