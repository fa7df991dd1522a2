"""Drafts in the controller: what a save keeps (who saved it first and last, when, on the
injected clock), what it refuses (a spec a create refuses, with the same sentence; an
experiment's id), a discard (kept as such, done once), and the command's way through the
handler: one reply, and a record in the draft's audit trail with its actor."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.clock import ManualClock
from controller.drafts import Draft, DraftBook
from controller.errors import CommandRefused, SpecError, UnknownDraft
from controller.spec import load_spec_file
from streams.worker.control import CommandHandler, command_refusal, trail_records
from streams.worker.metrics import Metrics
from streams.worker.schemas import Command, CommandReply, DecodeError, decode

ROOT = Path(__file__).resolve().parents[3]
SPEC = load_spec_file(ROOT / "docs" / "examples" / "random-days.yaml").model_dump(mode="json")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class _Shelf:
    """The drafts' store, in memory, with the experiments' ids a save is checked against."""

    experiments: set[str] = field(default_factory=set)
    held: dict[str, Draft] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)

    async def draft(self, draft_id: str) -> Draft | None:
        return self.held.get(draft_id)

    async def drafts(self) -> list[Draft]:
        return list(self.held.values())

    async def save_draft(self, draft: Draft, spec_json: str) -> str:
        if draft.id in self.experiments:
            return "experiment"
        self.held[draft.id] = draft
        self.specs[draft.id] = spec_json
        return "ok"

    async def discard_draft(self, draft: Draft) -> None:
        self.held[draft.id] = draft
        self.specs.pop(draft.id, None)

    def draft_guard(self, draft: Draft) -> tuple[str, dict[str, str | None]]:
        return "drafts", {draft.id: draft.to_json()}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_save_keeps_its_author_and_creation_and_a_replace_says_who_saved_it_last() -> None:
    shelf, clock = _Shelf(), ManualClock(T0)
    book = DraftBook(shelf, clock)
    first = _run(book.save(SPEC, "ana"))
    assert first["saved"] == "new"
    assert first["draft"] == {
        "id": "shoes-random-days",
        "design": "random-days",
        "arms": ["treatment", "control"],
        "products": 4,
        "author": "ana",
        "created": "2026-03-01T09:00:00+00:00",
        "updated": "2026-03-01T09:00:00+00:00",
        "updated_by": "ana",
    }
    assert json.loads(shelf.specs["shoes-random-days"])["products"] == SPEC["products"]
    clock.advance(timedelta(hours=2))
    edited = SPEC | {"products": ["sku-101", "sku-102"]}
    second = _run(book.save(edited, "bob"))
    assert second["saved"] == "replaced"
    assert (second["draft"]["author"], second["draft"]["updated_by"]) == ("ana", "bob")
    assert second["draft"]["created"] == "2026-03-01T09:00:00+00:00"
    assert second["draft"]["updated"] == "2026-03-01T11:00:00+00:00"
    assert second["draft"]["products"] == 2
    assert json.loads(shelf.specs["shoes-random-days"])["products"] == ["sku-101", "sku-102"]


def test_a_spec_a_create_refuses_is_refused_with_the_same_sentence() -> None:
    from controller.spec import load_spec

    bad = SPEC | {"washout": "P3D"}
    with pytest.raises(SpecError) as create_says:
        load_spec(bad).check_live()
    with pytest.raises(SpecError) as draft_says:
        _run(DraftBook(_Shelf(), ManualClock(T0)).save(bad, "ana"))
    assert str(draft_says.value) == str(create_says.value)


def test_an_experiments_id_is_never_a_draft() -> None:
    shelf = _Shelf(experiments={"shoes-random-days"})
    with pytest.raises(CommandRefused) as exc:
        _run(DraftBook(shelf, ManualClock(T0)).save(SPEC, "ana"))
    assert str(exc.value) == (
        "'shoes-random-days' is an experiment already: a draft cannot take its id (save the "
        "draft under another id)"
    )
    assert shelf.held == {}


def test_a_discard_is_kept_without_its_spec_and_done_once() -> None:
    shelf, clock = _Shelf(), ManualClock(T0)
    book = DraftBook(shelf, clock)
    _run(book.save(SPEC, "ana"))
    clock.advance(timedelta(minutes=5))
    gone = _run(book.discard("shoes-random-days", "olga", "superseded"))["draft"]
    assert (gone["discarded"], gone["discarded_by"], gone["reason"]) == (
        "2026-03-01T09:05:00+00:00", "olga", "superseded"
    )  # fmt: skip
    assert "shoes-random-days" not in shelf.specs
    again = _run(book.discard("shoes-random-days", "olga", "twice"))
    assert again["already"] == "discarded" and again["draft"]["reason"] == "superseded"
    # saved again: a new draft, its author the one who saved it now
    clock.advance(timedelta(minutes=5))
    new = _run(book.save(SPEC, "bob"))
    assert new["saved"] == "new"
    assert (new["draft"]["author"], new["draft"]["created"]) == ("bob", "2026-03-01T09:10:00+00:00")
    assert "discarded" not in new["draft"]


def test_each_write_is_waited_for_with_what_it_wrote_before_the_command_returns() -> None:
    """With a barrier (``PRICELAB_REDIS__WAIT_REPLICAS``), a save, a discard and a repeated
    discard each wait for the draft entry as it is now held (a failover that lost it fails the
    barrier's guard): a reply is never sent of a draft the new primary lacks. A refused save
    waits for nothing."""
    shelf, clock = _Shelf(experiments={"taken"}), ManualClock(T0)
    waited: list[tuple[str, dict[str, str | None]]] = []

    async def barrier(guard: tuple[str, dict[str, str | None]]) -> None:
        assert guard == shelf.draft_guard(shelf.held[SPEC["id"]])  # after the write, not before
        waited.append(guard)

    book = DraftBook(shelf, clock, barrier)
    _run(book.save(SPEC, "ana"))
    saved = shelf.held[SPEC["id"]]
    assert waited == [("drafts", {SPEC["id"]: saved.to_json()})]
    clock.advance(timedelta(minutes=5))
    _run(book.discard(SPEC["id"], "olga", "superseded"))
    gone = shelf.held[SPEC["id"]]
    assert gone.to_json() != saved.to_json()
    assert waited[1:] == [("drafts", {SPEC["id"]: gone.to_json()})]
    _run(book.discard(SPEC["id"], "olga", "twice"))  # already discarded: waits for it still
    assert waited[2:] == [("drafts", {SPEC["id"]: gone.to_json()})]
    with pytest.raises(CommandRefused):
        _run(book.save(SPEC | {"id": "taken"}, "ana"))
    assert len(waited) == 3


def test_a_discard_of_no_draft_is_one_sentence_with_the_nearest_id() -> None:
    shelf = _Shelf()
    book = DraftBook(shelf, ManualClock(T0))
    _run(book.save(SPEC, "ana"))
    with pytest.raises(UnknownDraft) as exc:
        _run(book.discard("shoes-random-dayz", "olga", "typo"))
    assert str(exc.value) == (
        "there is no draft 'shoes-random-dayz' (did you mean 'shoes-random-days'? pricelab "
        "experiment drafts lists them)"
    )
    assert exc.value.experiments == ("shoes-random-dayz",)


def test_the_draft_and_discard_commands_are_v3_and_need_what_they_act_on() -> None:
    assert Command(command_id="c", kind="draft", spec=SPEC, actor="ana").v == 3  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a draft command needs a spec"):
        Command(command_id="c", kind="draft", actor="ana")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a discard command needs an experiment"):
        Command(command_id="c", kind="discard", actor="ana", reason="r")  # type: ignore[arg-type]
    v2 = b'{"v": 2, "command_id": "c", "kind": "comment", "experiment": "e", "reason": "hi"}'
    assert decode(Command, v2).kind == "comment"
    with pytest.raises(DecodeError) as exc:
        decode(Command, b'{"v": 4, "command_id": "c", "kind": "draft", "spec": {}}')
    assert exc.value.reason == "unsupported_version"
    no_reason = Command(command_id="c", kind="discard", experiment="d", actor="ana", reason=" ")  # type: ignore[arg-type]
    assert command_refusal(no_reason) == (
        "a discard command needs a reason (kept in the experiment's audit trail)"
    )


def test_a_draft_is_recorded_under_its_spec_id_and_a_discard_under_the_draft() -> None:
    cmd = Command(command_id="c1", kind="draft", spec=SPEC, actor="ana")  # type: ignore[arg-type]
    ok = CommandReply(command_id="c1", ok=True, detail={"saved": "new"})
    [(where, d)] = trail_records(cmd, ok)
    assert (where, d["command"], d["actor"], d["accepted"]) == (
        "shoes-random-days", "draft", "ana", True
    )  # fmt: skip
    discard = Command(
        command_id="c2", kind="discard", experiment="shoes-random-days", actor="olga", reason="no"
    )  # type: ignore[arg-type]
    [(where, d)] = trail_records(discard, CommandReply(command_id="c2", ok=True))
    assert (where, d["command"], d["actor"], d["reason"]) == (
        "shoes-random-days", "discard", "olga", "no"
    )  # fmt: skip
    # a discard of no draft keeps nothing under the id it names (a typo makes no trail)
    refused = CommandReply(command_id="c2", ok=False, error="there is no draft")
    assert trail_records(discard, refused, ("shoes-random-days",)) == []


# ------------------------------------------------------------------ through the handler
@dataclass
class _Raw:
    value: bytes
    partition: int | None = 0
    offset: int | None = 0


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []

    async def send(self, topic: str, msg: Any, key: str) -> None:
        self.sent.append((topic, msg, key))

    async def flush(self) -> None:
        return None


@dataclass
class _Flipper:
    """What the handler reads of a flipper for a draft: its store and clock, and the trail's
    counter."""

    store: _Shelf
    clock: ManualClock
    order: int = 0
    waited: list[tuple[str, Any]] = field(default_factory=list)

    async def trail_order(self) -> int:
        self.order += 1
        return self.order

    async def replicated_at_last(self, what: str, guard: Any = None) -> None:
        self.waited.append((what, guard))  # the barrier: returns as with the replicas caught up


def _handler(shelf: _Shelf) -> tuple[CommandHandler, _Publisher]:
    pub = _Publisher()
    handler = CommandHandler(
        _Flipper(shelf, ManualClock(T0)),  # type: ignore[arg-type]
        pub,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no command here is undecodable
        Metrics(CollectorRegistry()),
        ManualClock(T0),
        "commands",
        "replies",
        1 << 20,
        events_topic="events",
    )
    return handler, pub


def _send(handler: CommandHandler, **fields: Any) -> CommandReply | None:
    raw = Command(command_id=fields.pop("command_id", "c1"), **fields).model_dump_json()
    return _run(handler.handle(_Raw(raw.encode())))  # type: ignore[no-any-return]


def test_the_handler_answers_a_draft_once_and_records_it_with_its_actor() -> None:
    shelf = _Shelf(experiments={"taken"})
    handler, pub = _handler(shelf)
    reply = _send(handler, kind="draft", spec=SPEC, actor="ana")
    assert reply is not None and reply.ok and reply.experiment == "shoes-random-days"
    # waited for with the draft's entry as its guard, then once more for the reply
    guard = shelf.draft_guard(shelf.held["shoes-random-days"])
    assert handler.flipper.waited == [("command c1", guard), ("command c1", None)]  # type: ignore[attr-defined]
    replies = [m for t, m, _ in pub.sent if t == "replies"]
    assert replies == [reply]
    [record] = [m for t, m, _ in pub.sent if t == "events"]
    assert record.experiment == "shoes-random-days"
    assert (record.detail["command"], record.detail["actor"]) == ("draft", "ana")
    # an experiment's id: refused in one sentence, the refusal in the trail
    pub.sent.clear()
    refused = _send(handler, command_id="c2", kind="draft", spec=SPEC | {"id": "taken"}, actor="a")
    assert refused is not None and not refused.ok
    assert refused.error is not None and refused.error.startswith("'taken' is an experiment")
    [record] = [m for t, m, _ in pub.sent if t == "events"]
    assert record.experiment == "taken" and record.detail["accepted"] is False


def test_the_handler_keeps_no_trail_for_a_discard_of_no_draft() -> None:
    handler, pub = _handler(_Shelf())
    reply = _send(handler, kind="discard", experiment="nothing", actor="olga", reason="typo")
    assert reply is not None and not reply.ok
    assert reply.error == "there is no draft 'nothing' (pricelab experiment drafts lists them)"
    assert [t for t, _, _ in pub.sent] == ["replies"]
