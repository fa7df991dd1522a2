"""The experiments' status changes, followed live on the experiment-events topic (the topic
``pricelab experiment history`` reads back): each record that announces an experiment's
state (``started``, ``paused``, ``resumed``, ``stopped``, ``ended``, a freeze beginning or
ending: the controller's announcements carry ``detail.state``) is handed on as it arrives.

Reading starts at the end of the topic: what was announced before is in Redis, which every
view reads; only what happens next is news. (The embedded broker's end offsets may lag its
data, docs/broker.md: a few announcements from just before may then be handed on too, which
is harmless, as each only says to read the state again.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from controller.settings import Settings
from streams.client.reading import own_reader

#: what the follower opens on Kafka (``TopicSettings`` fields; no consumer group):
#: streams/cli/kafka_acl.py
KAFKA_READS = ("experiment_events",)
KAFKA_WRITES: tuple[str, ...] = ()


def status_of(doc: Any) -> dict[str, Any] | None:
    """The status change an experiment-events record announces (its experiment, kind, state,
    whether frozen, and when; a creation is the state ``created``), or None for a record that
    announces none (a flip, a command's record, a record that is not ours)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("experiment"), str):
        return None
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        return None
    # a creation's record names no state: the experiment is created (no period in force yet)
    state = "created" if doc.get("kind") == "created" else detail.get("state")
    if not isinstance(state, str):
        return None
    return {
        "experiment": doc["experiment"],
        "kind": str(doc.get("kind", "")),
        "state": state,
        "frozen": bool(detail.get("frozen", False)),
        "at": doc.get("at"),
    }


async def follow_statuses(
    settings: Settings,
    emit: Callable[[dict[str, Any]], None],
    stop: asyncio.Event,
    ready: Callable[[], None] | None = None,
) -> None:
    """Hand each status change announced from now on to ``emit`` (:func:`status_of`) until
    ``stop`` is set (checked at least once a second); ``ready`` is called once the reader
    stands at the topic's end. A broker that does not answer raises ServiceUnavailable."""
    async with own_reader(settings, stop_within=10) as consumer:
        topic = settings.topics.experiment_events
        await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for p in parts:  # resolve positions now: nothing announced after ready is missed
            await consumer.position(p)
        if ready is not None:
            ready()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        found = status_of(json.loads(r.value))
                    except ValueError:
                        continue  # not ours: the topic's contract is JSON
                    if found is not None:
                        emit(found)
