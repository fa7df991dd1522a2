"""Operator side of the commands topic: send a command, wait for its reply; read-only views."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller import in_force
from controller.blackout import load_freeze
from controller.errors import CommandRefused
from controller.settings import Settings
from controller.store import ExperimentState, Store, make_redis
from streams.client.known import known
from streams.client.stack_clock import stack_clock
from streams.errors import OPERATOR, services_answer
from streams.worker.kafka import JsonPublisher
from streams.worker.schemas import Command, CommandKind

#: what ``pricelab experiment <command>`` opens on Kafka (``TopicSettings`` fields): it writes
#: the command and reads its reply, without a consumer group (tests/unit/streams/cli/test_kafka_acl.py
#: checks these against the topics this module names; streams/cli/kafka_acl.py makes the
#: operator's Kafka ACLs of them)
KAFKA_READS = ("command_replies",)
KAFKA_WRITES = ("commands",)


def default_actor() -> str:
    """Who is issuing a command when ``--as`` is not given: PRICELAB_ACTOR, else the OS user at
    the host (``alice@build-7``)."""
    given = os.environ.get("PRICELAB_ACTOR", "").strip()
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = f"uid{os.getuid()}"
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{user}@{host}"


async def send_command_async(
    settings: Settings, kind: str, timeout: float = 30.0, **fields: Any
) -> dict[str, Any]:
    """Send a command and wait for its reply (``{"ok": ..., "error": ...}``); a broker that does
    not answer raises :class:`streams.errors.ServiceUnavailable`. The command carries
    ``actor`` (default :func:`default_actor`) and, where the client authenticates with SASL,
    its user as ``principal``."""
    fields.setdefault("actor", default_actor())
    fields.setdefault("principal", settings.kafka.sasl_username)
    cmd = Command(command_id=uuid.uuid4().hex, kind=kind, **fields)  # type: ignore[arg-type]
    async with services_answer(
        bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
    ):
        return await _send(settings, cmd, timeout)


def command_key(cmd: Command) -> str:
    """The commands topic's key of ``cmd``: its experiment, a draft's id (its spec's) for a
    draft, else its command id. A key picks the partition, and one partition's commands are
    taken in order by one worker: a draft's save and its discard, sent by two colleagues at
    once, are then taken one after the other, never read and written over each other."""
    if cmd.experiment:
        return cmd.experiment
    if (
        cmd.kind == CommandKind.DRAFT
        and cmd.spec is not None
        and isinstance(cmd.spec.get("id"), str)
    ):
        return str(cmd.spec["id"])
    return cmd.command_id


async def _send(settings: Settings, cmd: Command, timeout: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a failed start leaves the client open otherwise
        raise
    try:
        topic = settings.topics.command_replies
        parts = [
            TopicPartition(topic, p)
            for p in (consumer.partitions_for_topic(topic) or await _parts(consumer, topic))
        ]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for p in parts:  # resolve positions before sending so the reply cannot be missed
            await consumer.position(p)
        pub = JsonPublisher(settings, topics=[getattr(settings.topics, t) for t in KAFKA_WRITES])
        await pub.start()
        try:
            await pub.send(settings.topics.commands, cmd, command_key(cmd))
            await pub.flush()
        finally:
            await pub.stop()
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    doc = json.loads(r.value)
                    if doc.get("command_id") == cmd.command_id:
                        return doc  # type: ignore[no-any-return]
        return {
            "ok": False,
            "error": f"no reply within {timeout}s: is a controller worker running?",
        }
    finally:
        await consumer.stop()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata for an unsubscribed topic
    return consumer.partitions_for_topic(topic) or {0}


def send_command(
    settings: Settings, kind: str, timeout: float = 30.0, **fields: Any
) -> dict[str, Any]:
    return asyncio.run(send_command_async(settings, kind, timeout, **fields))


def _with_store(settings: Settings, fn):  # type: ignore[no-untyped-def]
    """Run ``fn(store)`` on a fresh client; Redis not answering raises ServiceUnavailable."""

    async def go():  # type: ignore[no-untyped-def]
        redis = make_redis(settings)
        try:
            async with services_answer(
                redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
            ):
                return await fn(Store(redis, settings.key_prefix))
        finally:
            await redis.aclose()

    return asyncio.run(go())


def instant(text: str, option: str, now: Callable[[], datetime]) -> datetime:
    """An ISO 8601 date-time with a UTC offset, or one relative to the controller's clock:
    ``now``, ``+P3D``, ``-PT2H``, ``+3d``, ``-2h`` (``now`` is read only when asked for); a
    text that is neither raises CommandRefused naming ``option`` (a freeze's start or end, as
    ``pricelab experiment freeze`` and the console take them)."""
    from controller.durations import DURATION_FORMS, parse_duration

    if text == "now" or text[:1] in "+-":
        if text == "now":
            return now()
        try:
            delta = parse_duration(text[1:])
        except ValueError:
            raise CommandRefused(
                f"{option}: {text!r} is not now, +DURATION or -DURATION, the duration in "
                f"{DURATION_FORMS} (e.g. +P3D, +3d, -2h)"
            ) from None
        return now() + (delta if text[0] == "+" else -delta)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise CommandRefused(
            f"{option}: {text!r} is not an ISO 8601 date-time (e.g. 2026-12-24T00:00:00+01:00)"
        ) from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise CommandRefused(
            f"{option}: {text!r} needs a UTC offset (e.g. 2026-12-24T00:00:00+01:00)"
        )
    return ts


def freeze_document(
    start: datetime,
    end: datetime,
    experiments: list[str] | None,
    reason: str,
    freeze_id: str | None = None,
) -> dict[str, Any]:
    """A freeze command's freeze, validated (controller.blackout.load_freeze: SpecError naming
    the field): the experiments it freezes (None: every one). By default its id follows from
    the freeze itself, so the same command resent after a timeout is the same freeze (done
    once), not a second one."""
    doc: dict[str, Any] = {
        "id": freeze_id
        or "freeze-"
        + hashlib.sha256(
            json.dumps(
                [start.isoformat(), end.isoformat(), sorted(experiments or []), reason]
            ).encode()
        ).hexdigest()[:8],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "experiments": list(experiments) if experiments else "all",
        "reason": reason,
    }
    load_freeze(doc)
    return doc


async def _now(settings: Settings, store: Store) -> datetime:
    """The controller's time as an operator's command reads it: on the clock the stack
    records that it runs on (simulated: from Redis), streams.client.stack_clock."""
    return (await stack_clock(settings, store)).now()


def read_now(settings: Settings) -> datetime:
    """The controller's time: the wall clock, or the simulated clock in Redis."""
    return _with_store(settings, lambda store: _now(settings, store))  # type: ignore[no-any-return]


def _summary(s: ExperimentState) -> dict[str, Any]:
    return {
        "id": s.spec.id,
        "design": s.spec.design,
        "state": s.phase,
        "frozen": s.shows_frozen,
        "period": s.flipped_period,
        "seq": s.seq,
        "products": len(s.spec.all_products()),
    }


def read_experiments(settings: Settings) -> list[dict[str, Any]]:
    async def fn(store: Store) -> list[dict[str, Any]]:
        return [_summary(s) for s in await store.experiments()]

    return _with_store(settings, fn)  # type: ignore[no-any-return]


def _overview(s: ExperimentState) -> dict[str, Any]:
    """:func:`_summary` and what a list of experiments shows beside it: the arms, the period
    count, the calendar and the period's length, the decision metric (analysis.verdict's
    rule), the control arm, who created it (as kept with its state; None for an experiment
    created before it was kept) and the boundaries its controller caught up late (missed
    flips)."""
    from analysis.verdict import decision_metric
    from controller.periods import n_periods

    spec = s.spec
    products = spec.all_products()
    metric = decision_metric(
        {"decision_metric": spec.decision_metric, "unit_costs": spec.unit_costs,
         "products": products}
    )  # fmt: skip
    return _summary(s) | {
        "arms": [a.name for a in spec.arm_list()],
        "control_arm": spec.arm_list()[spec.control_index].name,
        "periods": n_periods(spec),
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "decision_metric": metric,
        "created_ms": s.created_ms,
        "created_by": s.created_by,
        "missed_flips": s.missed_flips,
        "period_seconds": spec.period.total_seconds(),
    }


async def read_overviews(store: Store) -> list[dict[str, Any]]:
    """Every experiment's :func:`_overview`, for a client that holds its store (the console)."""
    return [_overview(s) for s in await store.listed_experiments()]


async def read_overview(store: Store, exp_id: str) -> dict[str, Any]:
    """One experiment's :func:`_overview` (an unknown id: UnknownExperiment)."""
    await known(store, exp_id)
    return _overview(await store.get_experiment(exp_id))


async def read_summary(store: Store, exp_id: str) -> dict[str, Any]:
    """One experiment as ``pricelab experiment show`` prints it, without its spec."""
    await known(store, exp_id)
    s = await store.get_experiment(exp_id)
    return _summary(s) | {
        "published": s.published,
        "flips": s.flips,
        "missed_flips": s.missed_flips,
        "backfilled": s.backfilled,
    }


def read_experiment(settings: Settings, exp_id: str) -> dict[str, Any]:
    async def fn(store: Store) -> dict[str, Any]:
        summary = await read_summary(store, exp_id)
        spec = (await store.get_experiment(exp_id)).spec
        return summary | {"spec": spec.model_dump(mode="json")}

    return _with_store(settings, fn)  # type: ignore[no-any-return]


def read_freezes(settings: Settings, exp_id: str | None = None) -> list[dict[str, Any]]:
    """Every operator freeze (those that apply to ``exp_id``), ordered by start, each with
    whether it is ahead, in force or over by the controller's clock."""

    async def fn(store: Store) -> list[dict[str, Any]]:
        if exp_id is not None:
            await known(store, exp_id)
        now = await _now(settings, store)
        cancelled = {d["id"]: d for d in await store.cancelled_freezes()}
        docs = {d["id"]: d for d in await store.freezes()}
        out = []
        for fid, doc in (cancelled | docs).items():
            if "freeze" not in doc:
                continue
            f = load_freeze(doc["freeze"])
            if exp_id is None or f.applies_to(exp_id):
                view = in_force.freeze_view(f, now)
                out.append(view | {"now": "cancelled"} if fid in cancelled else view)
        return sorted(out, key=lambda v: (v["start"], v["id"]))

    return _with_store(settings, fn)  # type: ignore[no-any-return]


def read_assignment(settings: Settings, product: str) -> dict[str, Any] | None:
    """The message in force for ``product`` (controller.in_force.read_assignment), with the
    time on the stack's clock; None when no experiment ever had it."""

    async def fn(store: Store) -> dict[str, Any] | None:
        return await in_force.read_assignment(store, product, lambda: _now(settings, store))

    return _with_store(settings, fn)  # type: ignore[no-any-return]


__all__ = [
    "freeze_document",
    "instant",
    "read_assignment",
    "read_experiment",
    "read_experiments",
    "read_freezes",
    "read_now",
    "read_overview",
    "read_overviews",
    "read_summary",
    "send_command",
]
