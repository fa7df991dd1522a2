"""Operator side of the commands topic: send a command, wait for its reply; read-only views."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.errors import StoreError
from controller.settings import Settings
from controller.store import Store, decode_record, make_redis
from streams.errors import services_answer
from streams.kafka import JsonPublisher
from streams.schemas import Command


async def send_command_async(
    settings: Settings, kind: str, timeout: float = 30.0, **fields: Any
) -> dict[str, Any]:
    """Send a command and wait for its reply (``{"ok": ..., "error": ...}``); a broker that does
    not answer raises :class:`streams.errors.ServiceUnavailable`."""
    cmd = Command(command_id=uuid.uuid4().hex, kind=kind, **fields)  # type: ignore[arg-type]
    async with services_answer(bootstrap_servers=settings.kafka.bootstrap_servers):
        return await _send(settings, cmd, timeout)


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
        pub = JsonPublisher(settings)
        await pub.start()
        try:
            await pub.send(settings.topics.commands, cmd, cmd.experiment or cmd.command_id)
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
            async with services_answer(redis_url=settings.redis.url.get_secret_value()):
                return await fn(Store(redis, settings.key_prefix))
        finally:
            await redis.aclose()

    return asyncio.run(go())


def read_experiments(settings: Settings) -> list[dict[str, Any]]:
    async def fn(store: Store) -> list[dict[str, Any]]:
        return [
            {
                "id": s.spec.id,
                "design": s.spec.design,
                "status": s.status,
                "flipped_period": s.flipped_period,
                "products": len(s.spec.all_products()),
            }
            for s in await store.experiments()
        ]

    return _with_store(settings, fn)  # type: ignore[no-any-return]


def read_experiment(settings: Settings, exp_id: str) -> dict[str, Any]:
    async def fn(store: Store) -> dict[str, Any]:
        s = await store.get_experiment(exp_id)
        return {
            "spec": s.spec.model_dump(mode="json"),
            "status": s.status,
            "flipped_period": s.flipped_period,
            "seq": s.seq,
            "flips": s.flips,
            "missed_flips": s.missed_flips,
            "frozen": s.frozen,
        }

    return _with_store(settings, fn)  # type: ignore[no-any-return]


def read_assignment(settings: Settings, product: str) -> dict[str, Any] | None:
    async def fn(store: Store) -> dict[str, Any] | None:
        exp = await store.experiment_of(product)
        if exp is None:
            return None
        st = await store.get_experiment(exp)
        if st.flipped_period < 0:
            return {"experiment": exp, "status": st.status, "arm": None, "note": "not started"}
        rec = await store.assignment_record(exp, st.flipped_period, product)
        if rec is None:
            raise StoreError(f"no record for {product} in {exp} period {st.flipped_period}")
        arm, prob, bu, why = decode_record(rec)
        return {
            "experiment": exp,
            "status": st.status,
            "period": st.flipped_period,
            "arm": arm.value,
            "policy": st.spec.policy(arm),
            "probability": prob,
            "blackout_until": bu,
            "blackout_reason": why,
        }

    return _with_store(settings, fn)  # type: ignore[no-any-return]


__all__ = ["read_assignment", "read_experiment", "read_experiments", "send_command"]
