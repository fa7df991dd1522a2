"""The drafts as an operator and the console read them (controller.drafts): every live draft's
summary, one draft with its spec, and whether an id has a trail to show (an experiment's, or
a draft's, discarded ones too). Saving and discarding go through the commands topic
(``pricelab experiment draft``, ``discard``; the console's "Save as draft")."""

from __future__ import annotations

import json
from typing import Any

from controller.drafts import check_draft
from controller.errors import UnknownExperiment
from controller.settings import Settings
from controller.store import Store
from streams.client.commands import _with_store
from streams.client.known import known


async def read_drafts(store: Store) -> list[dict[str, Any]]:
    """Every live draft's view (id, design, arms, products, author, created, updated,
    updated_by), the last updated first."""
    live = [d for d in await store.drafts() if d.live]
    return [d.view() for d in sorted(live, key=lambda d: (-d.updated_ms, d.id))]


async def read_draft(store: Store, draft_id: str) -> dict[str, Any]:
    """One live draft's view and its ``spec`` (the document a create sends); UnknownDraft
    when there is none (discarded, launched, or never saved)."""
    held = await store.draft(draft_id)
    spec = await store.draft_spec(draft_id) if held is not None and held.live else None
    if held is None or spec is None:
        ids = [d.id for d in await store.drafts() if d.live]
        check_draft(draft_id, None, ids)
    assert held is not None and spec is not None
    return held.view() | {"spec": json.loads(spec)}


async def has_trail(store: Store, name: str) -> None:
    """Pass when ``name`` is an experiment's id or a draft's (discarded too): its audit
    trail can be asked for; else UnknownExperiment, as for any unknown experiment."""
    try:
        await known(store, name)
    except UnknownExperiment:
        if await store.draft(name) is None:
            raise


def drafts(settings: Settings) -> list[dict[str, Any]]:
    """:func:`read_drafts` on a fresh client (``pricelab experiment drafts``)."""
    return _with_store(settings, read_drafts)  # type: ignore[no-any-return]


def draft(settings: Settings, draft_id: str) -> dict[str, Any]:
    """:func:`read_draft` on a fresh client (``pricelab experiment drafts ID``)."""
    return _with_store(settings, lambda store: read_draft(store, draft_id))  # type: ignore[no-any-return]


def check_trail(settings: Settings, name: str) -> None:
    """:func:`has_trail` on a fresh client (``pricelab experiment history``)."""
    _with_store(settings, lambda store: has_trail(store, name))


__all__ = ["check_trail", "draft", "drafts", "has_trail", "read_draft", "read_drafts"]
