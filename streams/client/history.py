"""An experiment's audit trail, read back from the experiment-events topic.

``pricelab experiment history EXP`` reads every partition of the topic from its first record
to the end offsets taken when it starts (no consumer group: nothing is committed), keeps the
records of EXP and the fleet-wide ones (``streams.worker.control.FLEET``: a freeze of every
experiment, an unfreeze), drops at-least-once repeats and puts them in the order things
happened: by each record's place in the trail (``detail.order``, one counter in Redis), not by
its timestamp, which ties when a simulated clock stands still or two workers decide within a
millisecond, nor by partition (an experiment's records and ``_all``'s are on different
ones). The topic is retained for ``kafka.record_retention`` (docs/operations.md): where older
records have expired the trail says where it starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.settings import Settings
from streams.client.follower import TopicFollower
from streams.client.reading import own_reader
from streams.worker.control import FLEET

log = logging.getLogger("pricelab.trail")

#: what ``pricelab experiment history`` opens on Kafka (``TopicSettings`` fields; no consumer
#: group): streams/cli/kafka_acl.py
KAFKA_READS = ("experiment_events",)
KAFKA_WRITES: tuple[str, ...] = ()


@dataclass
class Trail:
    experiment: str
    records: list[dict[str, Any]] = field(default_factory=list)
    #: partition -> first offset still held (above 0: older records have expired)
    log_start: dict[int, int] = field(default_factory=dict)
    repeats: int = 0  # at-least-once repeats dropped

    @property
    def expired(self) -> bool:
        return any(v > 0 for v in self.log_start.values())


def _identity(doc: dict[str, Any]) -> tuple[Any, ...] | None:
    """What makes two records the same fact (a redelivery or a redone decision), or None."""
    d = doc.get("detail") or {}
    if doc.get("kind") == "command":
        return ("command", d.get("command_id"), doc.get("experiment"))
    if doc.get("kind") in ("flipped", "started", "allocation"):  # one per period
        return (doc.get("kind"), doc.get("experiment"), d.get("period"))
    return None


def _order(doc: dict[str, Any]) -> int | None:
    """The record's place in the trail (``detail.order``), if the controller gave it one."""
    order = (doc.get("detail") or {}).get("order")
    return order if isinstance(order, int) and not isinstance(order, bool) else None


def in_order(docs: list[tuple[int, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records in the order things happened: by their place in the trail, which the
    controller takes from one counter in Redis before each decision is seen and when each
    command is received (so a command comes before its effects, whatever the clock says and
    whichever worker decided). A record without one (written before the trail was numbered,
    or by the analysis worker: a guardrail trip) goes before the first numbered record that
    is later in time, or of the same instant and after it on its partition; such records keep
    time, then topic, order among themselves."""
    numbered = sorted(
        ((n, p, o, doc) for p, o, doc in docs if (n := _order(doc)) is not None),
        key=lambda d: d[0],
    )
    at = [str(doc.get("at", "")) for _, _, _, doc in numbered]

    def place(p: int, o: int, doc: dict[str, Any]) -> int:
        t = str(doc.get("at", ""))
        for j, (_, pj, oj, _) in enumerate(numbered):
            if at[j] > t or (at[j] == t and pj == p and oj > o):
                return j
        return len(numbered)

    plain = sorted(
        (place(p, o, doc), str(doc.get("at", "")), p, o, doc)
        for p, o, doc in docs
        if _order(doc) is None
    )
    out: list[dict[str, Any]] = []
    i = 0
    for j, (_, _, _, doc) in enumerate(numbered):
        while i < len(plain) and plain[i][0] <= j:
            out.append(plain[i][4])
            i += 1
        out.append(doc)
    out.extend(d[4] for d in plain[i:])
    return out


def assemble(experiment: str, docs: list[tuple[int, int, dict[str, Any]]]) -> Trail:
    """The trail of ``experiment`` from (partition, offset, record) triples: its own records
    and the fleet's, each fact once, in the order things happened (:func:`in_order`)."""
    trail = Trail(experiment)
    seen: set[tuple[Any, ...]] = set()
    mine = [d for d in docs if d[2].get("experiment") in (experiment, FLEET)]
    for doc in in_order(mine):
        key = _identity(doc)
        if key is not None:
            if key in seen:
                trail.repeats += 1
                continue
            seen.add(key)
        trail.records.append(doc)
    if all(doc.get("experiment") == FLEET for doc in trail.records):
        trail.records = []  # fleet-wide commands alone are no trail of an experiment
    return trail


async def read_trail(settings: Settings, experiment: str, timeout: float = 30.0) -> Trail:
    """Read the topic (see the module); a broker that does not answer raises
    :class:`streams.errors.ServiceUnavailable`."""
    async with own_reader(settings) as consumer:
        return await _read(consumer, settings.topics.experiment_events, experiment, timeout)


async def _read(consumer: AIOKafkaConsumer, topic: str, experiment: str, timeout: float) -> Trail:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not parts:
        return Trail(experiment)
    consumer.assign(parts)
    start = await consumer.beginning_offsets(parts)
    end = await consumer.end_offsets(parts)
    await consumer.seek_to_beginning(*parts)
    docs: list[tuple[int, int, dict[str, Any]]] = []
    t0 = asyncio.get_running_loop().time()
    todo = {tp for tp in parts if end[tp] > start[tp]}
    await _read_to(consumer, todo, end, docs, timeout, later=True)
    # Tansu's end offsets lag the data after a batched write (the last batch's base offset + 1,
    # docs/broker.md): what lies past them is read until the broker has answered for ``idle``
    # seconds without a record, within what is left of ``timeout``
    left = timeout - (asyncio.get_running_loop().time() - t0)
    await _read_until_idle(consumer, parts, docs, TAIL_IDLE_S, left)
    trail = assemble(experiment, docs)
    trail.log_start = {tp.partition: start[tp] for tp in parts}
    return trail


#: how long the broker must answer with no record before a trail's read ends (past the end
#: offsets, which lag the data on Tansu)
TAIL_IDLE_S = 1.0


async def _read_until_idle(
    consumer: AIOKafkaConsumer,
    parts: list[TopicPartition],
    docs: list[tuple[int, int, dict[str, Any]]],
    idle: float,
    timeout: float,
) -> None:
    """Read ``parts`` on from their positions into ``docs`` until ``idle`` seconds pass in
    which the broker's answers bring no record, or ``timeout`` seconds in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout, 0.0)
    quiet_since = loop.time()
    while loop.time() < deadline and loop.time() - quiet_since < idle:
        batch = await consumer.getmany(*parts, timeout_ms=200)
        if any(batch.values()):
            quiet_since = loop.time()
        for tp, records in batch.items():
            for r in records:
                doc = _doc(r.value)
                if doc is not None:
                    docs.append((tp.partition, r.offset, doc))


def _doc(value: bytes | None) -> dict[str, Any] | None:
    """A record's JSON object, or None: a tombstone says nothing, and what is not JSON is not
    ours (the topic's contract is JSON)."""
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


async def _read_to(
    consumer: AIOKafkaConsumer,
    todo: set[TopicPartition],
    end: dict[TopicPartition, int],
    docs: list[tuple[int, int, dict[str, Any]]],
    timeout: float,
    later: bool = False,
) -> None:
    """Read ``todo``'s partitions from their positions to ``end`` into ``docs`` (partition,
    offset, record), for at most ``timeout`` seconds; ``later``: keep the records past
    ``end`` a fetch brought too (a reader that goes on from its position must)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while todo and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(*todo, timeout_ms=200)
        for tp, records in batch.items():
            for r in records:
                if r.offset >= end[tp] and not later:
                    continue
                doc = _doc(r.value)
                if doc is not None:
                    docs.append((tp.partition, r.offset, doc))
        for tp in list(todo):
            if await consumer.position(tp) >= end[tp]:
                todo.discard(tp)
    if todo:  # what was read is what the caller gets: say where the read stopped short
        short = {f"{tp.topic}[{tp.partition}]": (await consumer.position(tp), end[tp])
                 for tp in sorted(todo)}  # fmt: skip
        log.warning(
            "the audit trail's read stopped after %g s short of the end (position, end): %s",
            timeout,
            short,
        )


class TrailFollower(TopicFollower):
    """The trails of every experiment from one long-lived reader of the topic (the
    console's; :class:`streams.client.follower.TopicFollower`): each :meth:`trail` reads only
    what was written since the last one, up to the end offsets taken when it is asked, and
    assembles the experiment's trail from every record held, as :func:`read_trail` does from
    the topic's start. A read that fails closes the reader; the next starts again from the
    topic's start."""

    topic = "experiment_events"

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        super().__init__(settings, timeout)
        self._docs: list[tuple[int, int, dict[str, Any]]] = []

    async def trail(self, experiment: str) -> Trail:
        """The trail of ``experiment``; a broker that does not answer raises
        :class:`streams.errors.ServiceUnavailable`."""
        async with self._lock:
            start = await self._follow()
            docs = list(self._docs)
        trail = assemble(experiment, docs)
        trail.log_start = {tp.partition: o for tp, o in start.items()}
        return trail

    def _reset(self) -> None:
        self._docs = []

    async def _expired(self, consumer: Any, start: dict[TopicPartition, int]) -> None:
        first = {tp.partition: start[tp] for tp in self._parts}
        self._docs = [d for d in self._docs if d[1] >= first.get(d[0], 0)]

    async def _read_to(
        self, consumer: Any, todo: set[TopicPartition], end: dict[TopicPartition, int]
    ) -> None:
        await _read_to(consumer, todo, end, self._docs, self.timeout, later=True)


def _who(doc: dict[str, Any]) -> str:
    d = doc.get("detail") or {}
    if doc.get("kind") == "command":
        who = str(d.get("actor") or "?")
        return who + (f" ({d['principal']})" if d.get("principal") else "")
    return f"worker {d['worker']}" if d.get("worker") else ""


def _what(doc: dict[str, Any]) -> str:
    d = doc.get("detail") or {}
    if doc.get("kind") == "command":
        head = f"{d.get('command')} {'accepted' if d.get('accepted') else 'REFUSED'}"
        if d.get("command") == "decision":
            head += f": {decision_words(d)}"
        if d.get("command") == "comment" and d.get("accepted"):
            return f"comment: {d.get('reason')}"
        if d.get("already"):
            head += f" (already {d['already']})"
        if d.get("refusal"):
            head += f": {d['refusal']}"
        if d.get("reason"):
            head += f"; reason: {d['reason']}"
        return head
    parts = [
        f"{k}={d[k]}"
        for k in ("period", "seq", "mode", "state", "reason", "missed", "periods", "product")
        if k in d
    ]
    return " ".join(parts)


def decision_words(detail: dict[str, Any]) -> str:
    """A decision command's record in words: what was decided (or, refused, asked), and
    whether it stops the experiment."""
    d = detail.get("decision") or {}
    words = str(d.get("decided") or f"arm {d.get('arm')!r}")
    return words + (", and stop" if d.get("stop") else "")


def latest_decision(trail: Trail) -> dict[str, Any] | None:
    """The decision that stands: the last accepted ``decision`` command of the trail (its
    words, the arm, whether it ships, who, why and when), or None while none was recorded."""
    for doc in reversed(trail.records):
        d = doc.get("detail") or {}
        if doc.get("kind") == "command" and d.get("command") == "decision" and d.get("accepted"):
            decision = d.get("decision") or {}
            return {
                "decided": decision_words(d),
                "arm": decision.get("arm"),
                "ship": decision.get("ship"),
                "stop": bool(decision.get("stop")),
                "actor": d.get("actor"),
                "reason": d.get("reason"),
                "at": doc.get("at"),
            }
    return None


def render(trail: Trail) -> str:
    """The trail as an operator reads it: where it starts, then one line a record."""
    n = len(trail.records)
    if not n:
        head = f"no record of experiment {trail.experiment!r} on the topic"
    else:
        first, last = trail.records[0].get("at"), trail.records[-1].get("at")
        head = f"trail of {trail.experiment}: {n} record(s) from {first} to {last}"
    if trail.expired:
        held = ", ".join(f"p{p}@{o}" for p, o in sorted(trail.log_start.items()) if o > 0)
        head += (
            f"; older records have expired (the topic now starts at {held}): the trail starts "
            "with its first record above"
        )
    else:
        head += "; the topic holds every record since its first (nothing expired)"
    if trail.repeats:
        head += f"; {trail.repeats} repeated record(s) left out"
    rows = [head]
    for doc in trail.records:
        scope = " [all experiments]" if doc.get("experiment") == FLEET else ""
        rows.append(
            f"{doc.get('at')}  {doc.get('kind', '?'):<17} {_who(doc):<28} {_what(doc)}{scope}"
        )
    return "\n".join(rows)
