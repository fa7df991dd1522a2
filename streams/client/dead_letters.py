"""``pricelab dead-letters``: the dead letters by reason, with examples, and their replay.

The dead-letter topic is read from its beginning until every partition has caught up, as
``pricelab estimates`` reads its topic (:func:`streams.client.estimates._read_until_caught_up`).
Each letter is shown with what the current decoder says of its original bytes: a sale that an
earlier version refused (a return, a weight, a currency field) may pass now.

A replay sends the chosen letters' original bytes, unchanged, back to the sales topic (keyed by
product, as a shop's system sends them), but only those that pass the current decoder; the
sales path then routes and counts them. Nothing is counted twice: a sale is counted once per
event id (``controller/store/lua/ingest.lua``), so a letter replayed twice, or a sale that its
shop sent again corrected, is a ``dup`` the second time. That memory lasts until the sale's
period closes (plus a margin); after that a copy is refused as ``late`` anyway. A letter whose
reason was ``late`` is not sent: its period is closed and it would be refused again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.settings import Settings
from streams.errors import DeadLetterChoiceError, services_answer

#: what ``pricelab dead-letters`` opens on Kafka (``TopicSettings`` fields; no consumer
#: group): it reads the dead letters and, with ``--replay``, writes sales
KAFKA_READS = ("dead_letter",)
KAFKA_WRITES = ("sales",)

#: reasons whose letters are never replayed (the sale would be refused again)
NOT_REPLAYED = {"late": "its period is closed: it would be refused as late again"}


@dataclass(frozen=True)
class Letter:
    """One dead letter: where it is on the dead-letter topic, why it was refused, and the
    original message's bytes (and where that was on its own topic)."""

    partition: int
    offset: int
    reason: str
    error: str
    source_topic: str
    original: bytes
    at: str
    source_partition: int | None = None
    source_offset: int | None = None

    @property
    def position(self) -> str:
        """``PARTITION:OFFSET`` on the dead-letter topic (what ``--offset`` takes)."""
        return f"{self.partition}:{self.offset}"


def letter_of(record: Any) -> dict[str, Any] | None:
    """A dead-letter record as a dict (its fields, ``_partition`` and ``_offset``); None for
    a record that is not a dead letter."""
    try:
        doc = json.loads(record.value)
        original = base64.b64decode(doc["original_b64"], validate=True)
        return {
            "partition": int(record.partition),
            "offset": int(record.offset),
            "reason": str(doc["reason"]),
            "error": str(doc.get("error", "")),
            "source_topic": str(doc["source_topic"]),
            "original": original,
            "at": str(doc.get("at", "")),
            "source_partition": doc.get("partition"),
            "source_offset": doc.get("offset"),
        }
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


async def read_letters(settings: Settings, idle: float = 2.0) -> list[Letter]:
    """Every dead letter on the topic so far, in partition and offset order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.client.estimates import _read_until_caught_up

    topic = settings.topics.dead_letter
    out: list[dict[str, Any]] = []
    async with services_answer(
        bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
    ):
        consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
            partitions = consumer.partitions_for_topic(topic)
            if partitions:  # else no such topic yet: nothing was dead-lettered
                parts = [TopicPartition(topic, p) for p in partitions]
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                await _read_until_caught_up(
                    consumer,
                    "",
                    idle,
                    out,
                    broker=str(settings.kafka.bootstrap_servers),
                    pick=letter_of,
                    topic="dead-letter",
                )
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.stop(), 10)
    return sorted((Letter(**d) for d in out), key=lambda x: (x.partition, x.offset))


def now_refused(letter: Letter, settings: Settings) -> str | None:
    """Why the current decoder refuses the letter's original (``reason: sentence``), or None
    when it passes; a letter of another topic than sales is not a sale to replay."""
    from streams.worker.sale_decoder import decode_sale
    from streams.worker.schemas import DecodeError

    if letter.source_topic != settings.topics.sales:
        return f"from {letter.source_topic}: only sales are replayed"
    try:
        decode_sale(letter.original)
    except DecodeError as exc:
        return f"{exc.reason}: {exc}"
    return None


def by_reason(letters: Iterable[Letter]) -> dict[str, list[Letter]]:
    """The letters grouped by reason, the most frequent reason first."""
    groups: dict[str, list[Letter]] = {}
    for x in letters:
        groups.setdefault(x.reason, []).append(x)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def select(
    letters: Sequence[Letter], reasons: Sequence[str] = (), positions: Sequence[str] = ()
) -> list[Letter]:
    """The letters of any of ``reasons`` and at any of ``positions`` (``PARTITION:OFFSET``,
    or ``OFFSET`` where only one partition has a letter there); all of them when neither is
    given. Raises :class:`DeadLetterChoiceError` for a reason or position with no letter."""
    chosen = list(letters)
    if reasons:
        known = {x.reason for x in letters}
        missing = [r for r in reasons if r not in known]
        if missing:
            listed = ", ".join(sorted(known)) or "none"
            raise DeadLetterChoiceError(
                f"no dead letter has reason {missing[0]!r} (the reasons on the topic: {listed})"
            )
        chosen = [x for x in chosen if x.reason in reasons]
    if positions:
        wanted: set[tuple[int, int]] = set()
        for text in positions:
            wanted.add(_position(text, letters))
        chosen = [x for x in chosen if (x.partition, x.offset) in wanted]
        if not chosen:
            raise DeadLetterChoiceError("no dead letter is at the given offsets with that reason")
    return chosen


def _position(text: str, letters: Sequence[Letter]) -> tuple[int, int]:
    part, sep, off = text.strip().rpartition(":")
    try:
        offset = int(off)
        partition = int(part) if sep else None
    except ValueError:
        raise DeadLetterChoiceError(
            f"--offset {text!r} is not PARTITION:OFFSET (e.g. 0:17) or OFFSET"
        ) from None
    at = [x for x in letters if x.offset == offset and partition in (None, x.partition)]
    if not at:
        raise DeadLetterChoiceError(f"no dead letter is at offset {text}")
    if len(at) > 1:
        raise DeadLetterChoiceError(
            f"offset {offset} has a dead letter in partitions "
            f"{', '.join(str(x.partition) for x in at)}: write it PARTITION:OFFSET"
        )
    return at[0].partition, at[0].offset


def render(letters: Sequence[Letter], settings: Settings, examples: int = 3) -> str:
    """The letters by reason: how many, how many the current decoder takes now, and up to
    ``examples`` of each (position, the sentence, the original, what the decoder says now)."""
    if not letters:
        return f"no dead letters on {settings.topics.dead_letter}"
    groups = by_reason(letters)
    lines = [
        f"{len(letters)} dead letters on {settings.topics.dead_letter}, {len(groups)} reasons "
        f"(replay: pricelab dead-letters --replay --reason R | --offset P:O)"
    ]
    for reason, group in groups.items():
        verdicts = [now_refused(x, settings) for x in group]
        passing = sum(v is None for v in verdicts)
        lines.append(f"\n{reason}: {len(group)} ({passing} pass the decoder now)")
        for x, v in list(zip(group, verdicts, strict=True))[:examples]:
            original = x.original.decode("utf-8", "replace")
            if len(original) > 160:
                original = original[:157] + "..."
            now = "passes now" if v is None else f"refused now, {v}"
            if v is None and x.reason in NOT_REPLAYED:
                now += f", not replayed: {NOT_REPLAYED[x.reason]}"
            lines.append(f"  {x.position}  {x.error}")
            lines.append(f"      {original}")
            lines.append(f"      {now}")
    return "\n".join(lines)


def as_json(letters: Sequence[Letter], settings: Settings) -> list[dict[str, Any]]:
    """The letters as JSON-ready dicts, each with ``passes_now`` and ``refused_now``."""
    out = []
    for x in letters:
        v = now_refused(x, settings)
        out.append(
            {
                "partition": x.partition,
                "offset": x.offset,
                "reason": x.reason,
                "error": x.error,
                "source_topic": x.source_topic,
                "original": x.original.decode("utf-8", "replace"),
                "at": x.at,
                "passes_now": v is None,
                "refused_now": v,
            }
        )
    return out


@dataclass
class Replay:
    """What a replay did: the letters sent to the sales topic, and those not sent, why."""

    sent: list[Letter] = field(default_factory=list)
    held: list[tuple[Letter, str]] = field(default_factory=list)


def plan_replay(letters: Sequence[Letter], settings: Settings) -> Replay:
    """Which of the chosen letters a replay sends (they pass the current decoder) and which
    it holds back, with why."""
    plan = Replay()
    for x in letters:
        why = NOT_REPLAYED.get(x.reason) or now_refused(x, settings)
        if why is None:
            plan.sent.append(x)
        else:
            plan.held.append((x, why))
    return plan


async def replay(letters: Sequence[Letter], settings: Settings) -> Replay:
    """Send the letters that pass the current decoder back to the sales topic (their
    original bytes, keyed by product), and wait until the broker has every one."""
    from streams.worker.kafka import JsonPublisher
    from streams.worker.sale_decoder import decode_sale

    plan = plan_replay(letters, settings)
    if not plan.sent:
        return plan
    async with services_answer(
        bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
    ):
        publisher = JsonPublisher(settings, topics=[settings.topics.sales])
        await publisher.start()
        try:
            for x in plan.sent:
                sale = decode_sale(x.original)
                await publisher.send(settings.topics.sales, x.original, key=sale.product)
            await publisher.flush()
        finally:
            await publisher.stop()
    return plan
