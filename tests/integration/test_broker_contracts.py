"""The embedded broker enforces the output topics' contracts (Tansu's ``--schema-registry``).

The session's broker reads ``<topic>.json`` files that ``make_settings`` writes for each
test's output topics (assignments, estimates, command replies, experiment events), from the
same JSON Schemas as docs/contracts. A message that breaks its topic's contract is refused by
the broker and never stored; one that keeps it is stored; the input topics take anything, so
that a malformed sale or command still reaches the controller and its dead-letter topic
(tests/integration/test_controller_worker.py checks that path on this broker)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from controller.designs import Assignment
from controller.settings import Settings
from controller.spec import Arm
from streams.live.embedded import EmbeddedStack
from streams.worker.contracts import BROKER_VALIDATED
from streams.worker.kafka import JsonPublisher
from streams.worker.schemas import CommandReply, EstimateMessage, ExperimentEvent
from streams.worker.sinks import assignment_message

AT = datetime(2026, 3, 2, tzinfo=UTC)


def _valid(field: str) -> bytes:
    """A message that keeps its topic's contract, encoded as pricelab's publishers encode it."""
    if field == "assignments":
        a = Assignment("e1", "P1", 0, Arm.TREATMENT, 0.5, "cut", AT, AT)
        return assignment_message(a, 1, "running").model_dump_json().encode()
    if field == "estimates":
        msg: Any = EstimateMessage(
            experiment="e1", estimator="dm", metric="units", effect=1.0, se=0.5, ci_low=0.0,
            ci_high=2.0, n_units=10, n_periods=3, as_of=AT,
        )  # fmt: skip
    elif field == "command_replies":
        msg = CommandReply(command_id="c1", ok=False, experiment="e1", error="no such experiment")
    else:
        msg = ExperimentEvent(experiment="e1", kind="command", at=AT, detail={"actor": "a@h"})
    return msg.model_dump_json().encode()  # type: ignore[no-any-return]


def _invalid(field: str) -> list[bytes]:
    """Messages that break the contract: a required field missing, a field of the wrong type,
    and bytes that are not JSON."""
    doc = json.loads(_valid(field))
    missing = {k: v for k, v in doc.items() if k not in ("experiment", "command_id")}
    wrong = doc | {"v": "one"}
    return [json.dumps(missing).encode(), json.dumps(wrong).encode(), b"not json"]


async def _produce(settings: Settings, topic: str, values: list[bytes]) -> list[str | None]:
    """Send each value on its own and wait for the broker's answer: None if stored, else the
    client's error."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=0
    )
    await producer.start()
    try:
        out: list[str | None] = []
        for value in values:
            try:
                await producer.send_and_wait(topic, value, key=b"e1")
                out.append(None)
            except KafkaError as exc:
                out.append(f"{type(exc).__name__}: {exc}")
        return out
    finally:
        await producer.stop()


async def _raw(settings: Settings, topic: str, expect: int, timeout: float = 20.0) -> list[bytes]:
    """The values stored in ``topic``, from the beginning, once ``expect`` have arrived (or
    what arrived within ``timeout``: the caller's assertion names the difference)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += [r.value for r in records]
        return out
    finally:
        await consumer.stop()


def test_the_broker_is_given_a_schema_for_each_output_topic_and_no_input_topic(
    stack: EmbeddedStack, settings: Settings
) -> None:
    files = {p.name for p in stack.schema_dir.glob(f"{settings.topics.sales.split('.')[0]}.*")}
    assert files == {f"{getattr(settings.topics, f)}.json" for f in BROKER_VALIDATED}
    assert set(BROKER_VALIDATED) == {
        "assignments", "estimates", "command_replies", "experiment_events",
    }  # fmt: skip


@pytest.mark.parametrize("field", BROKER_VALIDATED)
async def test_an_output_topic_refuses_a_message_that_breaks_its_contract(
    field: str, settings: Settings
) -> None:
    topic = getattr(settings.topics, field)
    valid = _valid(field)
    answers = await _produce(settings, topic, [valid, *_invalid(field), valid])
    first, *refused, last = answers
    assert first is None and last is None
    # Tansu answers INVALID_RECORD's refusal as error code -1, which aiokafka calls UnknownError
    assert all(a is not None and a.startswith("UnknownError") for a in refused), answers
    # one key, one partition, in order: the refused messages are not between the two valid ones
    records = await _raw(settings, topic, expect=2)
    assert records == [valid, valid]


@pytest.mark.parametrize("field", ["sales", "competitor_prices", "commands"])
async def test_an_input_topic_takes_anything_for_the_controller_to_dead_letter(
    field: str, settings: Settings
) -> None:
    topic = getattr(settings.topics, field)
    answers = await _produce(settings, topic, [b'{"not": "a sale"}', b"not json"])
    assert answers == [None, None]
    assert await _raw(settings, topic, expect=2) == [b'{"not": "a sale"}', b"not json"]


async def test_the_estimates_topic_stores_a_verdict_and_refuses_a_broken_one(
    settings: Settings,
) -> None:
    """The estimates topic carries two kinds (its value schema is oneOf estimate, verdict):
    the broker stores a verdict as the worker's sink encodes it, and refuses one with a word
    that is not a verdict or an estimate's field mixed in."""
    from streams.worker.schemas import VerdictMessage

    verdict = VerdictMessage(
        experiment="e1", as_of=AT, verdict="keep_running", metric="profit", estimator="fe",
        rule="ship when ...", reason="profit +1.0% [-2.0%, +4.0%] still includes 0",
        effect=3.0, cs_low=-6.0, cs_high=12.0, n_units=40, n_periods=7, mde_pct=2.0,
        more_days=9.0, guardrails=[{"metric": "units", "max_drop_pct": 2.0, "status": "ok"}],
    ).model_dump_json().encode()  # fmt: skip
    doc = json.loads(verdict)
    launch = json.dumps(doc | {"verdict": "launch"}).encode()
    mixed = json.dumps(doc | {"se": 0.5}).encode()
    topic = settings.topics.estimates
    estimate = _valid("estimates")
    answers = await _produce(settings, topic, [verdict, launch, mixed, estimate])
    assert answers[0] is None and answers[3] is None, answers
    assert all(a is not None and a.startswith("UnknownError") for a in answers[1:3]), answers
    assert await _raw(settings, topic, expect=2) == [verdict, estimate]


async def test_the_assignments_topic_stores_an_arm_name_and_refuses_a_broken_one(
    settings: Settings,
) -> None:
    """A three-arm experiment's messages (issue #41) carry ``arm_name`` and ``price_ratio``:
    the broker stores one as the controller's sink encodes it, and refuses a price ratio that
    is not a number or a key the contract does not name."""
    a = Assignment(
        "e1", "P1", 0, Arm.TREATMENT, 0.6, "price-95", AT, AT, index=1, arm_name="p95",
        price_ratio=0.95,
    )  # fmt: skip
    named = assignment_message(a, 1, "running").model_dump_json().encode()
    doc = json.loads(named)
    assert (doc["arm_name"], doc["price_ratio"]) == ("p95", 0.95)
    bad_ratio = json.dumps(doc | {"price_ratio": "cheap"}).encode()
    stray = json.dumps(doc | {"arm_index": 1}).encode()
    answers = await _produce(settings, settings.topics.assignments, [named, bad_ratio, stray])
    assert answers[0] is None, answers
    assert all(x is not None and x.startswith("UnknownError") for x in answers[1:]), answers
    assert await _raw(settings, settings.topics.assignments, expect=1) == [named]


async def test_a_flips_built_zstd_batches_are_checked_record_by_record(
    settings: Settings,
) -> None:
    """A flip's publisher hands the broker zstd batches it built a run of records at a time
    (``JsonPublisher.send_templated``, streams/worker/record_batch.py): the broker decompresses
    them and checks every record, stores batches of valid assignments, and refuses a batch
    whose records break the contract."""
    topic = settings.topics.assignments
    a = Assignment("e1", "P-HERE", 0, Arm.TREATMENT, 0.5, "cut", AT, AT)
    head, _, tail = (
        assignment_message(a, 1, "running").model_dump_json().encode().partition(b"P-HERE")
    )
    assert b'"seq":1,' in tail
    broken = (head, tail.replace(b'"seq":1,', b'"seq":"one",'))
    products = [f"P{i}" for i in range(3000)]
    pub = JsonPublisher(settings)
    await pub.start()
    try:
        assert settings.kafka.compression_type == "zstd"
        assert await pub.send_templated(topic, products, [0] * 3000, [(head, tail)]) == 3000
        await pub.flush()
        await pub.send_templated(topic, ["X1", "X2"], [0, 1], [broken, broken])
        with pytest.raises(KafkaError):
            await pub.flush()
        last = assignment_message(replace(a, product="P-LAST"), 2, "running")
        await pub.send(topic, last, "P-LAST")
        await pub.flush()
    finally:
        await pub.stop()
    stored = await _raw(settings, topic, expect=3001)
    assert len(stored) == 3001
    assert set(stored) == {head + p.encode() + tail for p in products} | {
        last.model_dump_json().encode()
    }
