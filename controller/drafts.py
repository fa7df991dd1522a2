"""Drafts: an experiment's spec saved but not launched, for colleagues to see, open, edit and
launch (or discard) later.

A draft is saved (or replaced) by the ``draft`` command and dropped by the ``discard``
command, each through the commands topic and each in the audit trail under the draft's id;
the ``create`` of its id launches it and deletes it (``lua/create_commit.lua``, in the step
that makes the experiment visible). Its spec passes the check a create makes
(:func:`draftable`: ``load_spec`` and ``check_live``, the same sentences), but not the
clock's: a draft's start may be past by the time it is launched, and the create says so.

A draft whose id is an experiment's is refused: an experiment's id is never a draft again.
A discarded draft is kept as such (who, when, why), without its spec, so that its history
can still be asked for and a discard sent twice is done once; saving its id again makes a
new draft.

:class:`Draft` and the functions are pure; :class:`DraftBook` carries the commands out on a
store (``controller.store.drafts``) and a clock.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.clock import Clock
from controller.errors import CommandRefused, UnknownDraft
from controller.spec import ExperimentSpec, load_spec


@dataclass(frozen=True)
class Draft:
    """What a list of drafts shows of one: its id, design, arms and product count, who saved
    it first (``author``) and last (``updated_by``) and when (ms since the epoch, the
    controller's clock), and, once discarded, by whom, when and why."""

    id: str
    design: str
    arms: tuple[str, ...]
    products: int
    author: str
    created_ms: int
    updated_ms: int
    updated_by: str
    discarded_ms: int | None = None
    discarded_by: str | None = None
    reason: str | None = None

    @property
    def live(self) -> bool:
        """Not discarded: it is listed, opened and launched."""
        return self.discarded_ms is None

    def to_json(self) -> str:
        doc = asdict(self)
        doc["arms"] = list(self.arms)
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Draft:
        doc: dict[str, Any] = json.loads(raw)
        return cls(**(doc | {"arms": tuple(doc.get("arms") or ())}))

    def view(self) -> dict[str, Any]:
        """The draft as the CLI and the console show it (times in ISO 8601, UTC)."""
        out: dict[str, Any] = {
            "id": self.id,
            "design": self.design,
            "arms": list(self.arms),
            "products": self.products,
            "author": self.author,
            "created": _iso(self.created_ms),
            "updated": _iso(self.updated_ms),
            "updated_by": self.updated_by,
        }
        if not self.live:
            out |= {
                "discarded": _iso(self.discarded_ms),
                "discarded_by": self.discarded_by,
                "reason": self.reason,
            }
        return out


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def draftable(doc: dict[str, Any]) -> ExperimentSpec:
    """The spec of a draft command: refused (SpecError, one sentence naming the field) as a
    create command's spec is, the clock's rules aside."""
    spec = load_spec(doc)
    spec.check_live()
    return spec


def saved(spec: ExperimentSpec, actor: str, now: datetime, previous: Draft | None) -> Draft:
    """The draft ``spec`` makes, saved by ``actor`` at ``now``: a replaced draft keeps its
    author and creation time; one saved over a discarded draft is new."""
    kept = previous if previous is not None and previous.live else None
    at = _ms(now)
    return Draft(
        id=spec.id,
        design=spec.design,
        arms=tuple(a.name for a in spec.arm_list()),
        products=len(spec.all_products()),
        author=kept.author if kept is not None else actor,
        created_ms=kept.created_ms if kept is not None else at,
        updated_ms=at,
        updated_by=actor,
    )


def discarded(draft: Draft, actor: str, reason: str, now: datetime) -> Draft:
    """``draft`` discarded by ``actor`` at ``now``, for ``reason``."""
    return replace(draft, discarded_ms=_ms(now), discarded_by=actor, reason=reason)


def taken(draft_id: str, why: str) -> CommandRefused:
    """The refusal of a draft whose id an experiment has (``why``: the store's word,
    ``experiment`` or ``creating``)."""
    if why == "creating":
        return CommandRefused(
            f"experiment {draft_id!r} is being created: a draft cannot take its id"
        )
    return CommandRefused(
        f"{draft_id!r} is an experiment already: a draft cannot take its id (save the draft "
        "under another id)"
    )


def check_draft(draft_id: str, draft: Draft | None, ids: Iterable[str]) -> Draft:
    """``draft`` (the store's, of ``draft_id``), or UnknownDraft (one sentence, with the
    nearest of the live drafts' ``ids`` when one is close) when there is none."""
    if draft is not None:
        return draft
    near = difflib.get_close_matches(draft_id, list(ids), n=1, cutoff=0.75)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise UnknownDraft(
        draft_id,
        f"there is no draft {draft_id!r} ({hint}pricelab experiment drafts lists them)",
        near=near[0] if near else None,
    )


class DraftShelf(Protocol):
    """Where drafts are kept (``controller.store.drafts.DraftStore``)."""

    async def draft(self, draft_id: str) -> Draft | None: ...

    async def drafts(self) -> list[Draft]: ...

    async def save_draft(self, draft: Draft, spec_json: str) -> str: ...

    async def discard_draft(self, draft: Draft) -> None: ...

    def draft_guard(self, draft: Draft) -> tuple[str, dict[str, str | None]]:
        """What a replica barrier reads to know that ``draft`` as written is there."""
        ...


#: a replica barrier with its guard (``controller.flipper.Flipper.replicated_at_last``)
Barrier = Callable[[tuple[str, dict[str, str | None]]], Awaitable[None]]


@dataclass
class DraftBook:
    """The ``draft`` and ``discard`` commands, carried out on ``store`` at ``clock``'s time.
    ``barrier``: awaited with what a command wrote before it is replied to (with
    ``PRICELAB_REDIS__WAIT_REPLICAS``, until the replicas have it; a failover that lost it
    raises, and the command is tried again whole); None: nothing waited for."""

    store: DraftShelf
    clock: Clock
    barrier: Barrier | None = None

    async def _kept(self, draft: Draft) -> None:
        if self.barrier is not None:
            await self.barrier(self.store.draft_guard(draft))

    async def save(self, doc: dict[str, Any], actor: str) -> dict[str, Any]:
        """Save (or replace) the draft of spec ``doc`` as ``actor``; its view, and whether it
        was ``new`` or ``replaced``. SpecError for a spec a create refuses, CommandRefused
        for an experiment's id."""
        spec = draftable(doc)
        await self.clock.sync()
        previous = await self.store.draft(spec.id)
        draft = saved(spec, actor, self.clock.now(), previous)
        outcome = await self.store.save_draft(draft, spec.to_json())
        if outcome != "ok":
            raise taken(spec.id, outcome)
        await self._kept(draft)
        replaced = previous is not None and previous.live
        return {"draft": draft.view(), "saved": "replaced" if replaced else "new"}

    async def discard(self, draft_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Discard the draft ``draft_id`` as ``actor`` for ``reason``; its view. One
        discarded already is found so (``already``); UnknownDraft when there is none."""
        held = await self.store.draft(draft_id)
        if held is None:
            check_draft(draft_id, None, [d.id for d in await self.store.drafts() if d.live])
        assert held is not None
        if not held.live:
            await self._kept(held)  # a repeat: a dead worker's discard may be on the primary only
            return {"draft": held.view(), "already": "discarded"}
        await self.clock.sync()
        gone = discarded(held, actor, reason, self.clock.now())
        await self.store.discard_draft(gone)
        await self._kept(gone)
        return {"draft": gone.view()}
