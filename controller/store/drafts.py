"""Drafts (controller.drafts): each draft's summary in one catalog hash, its spec in a key of
its own, so that a list of drafts never reads a spec. Saved by ``lua/draft_save.lua`` (refused
for an experiment's id, in the same step); deleted by the create of its id
(``lua/create_commit.lua``)."""

from __future__ import annotations

import controller.store.keys as keys
from controller.drafts import Draft
from controller.store.base import RedisStore


class DraftStore(RedisStore):
    async def drafts(self) -> list[Draft]:
        """Every draft, discarded ones too (``Draft.live`` tells)."""
        raw = await self.redis.hgetall(keys.drafts(self.p))
        return [Draft.from_json(v) for _, v in sorted(raw.items())]

    async def draft(self, draft_id: str) -> Draft | None:
        raw = await self.redis.hget(keys.drafts(self.p), draft_id)
        return None if raw is None else Draft.from_json(raw)

    async def draft_spec(self, draft_id: str) -> str | None:
        """A live draft's spec (JSON); None for a discarded draft or none."""
        got: str | None = await self.redis.get(keys.draft_spec(self.p, draft_id))
        return got

    async def save_draft(self, draft: Draft, spec_json: str) -> str:
        """Save ``draft`` with its spec: ``ok``, or (nothing written) ``experiment`` when an
        experiment has its id, ``creating`` while one is being created under it."""
        got = await self._script("draft_save")(
            keys=[
                self.cat("exp:index"),
                keys.creating(self.p, draft.id),
                keys.drafts(self.p),
                keys.draft_spec(self.p, draft.id),
            ],
            args=[draft.id, draft.to_json(), spec_json],
        )
        return str(got)

    def draft_guard(self, draft: Draft) -> tuple[str, dict[str, str | None]]:
        """What a replica barrier reads to know that ``draft`` as written is there: its entry
        in the drafts hash, as saved (a replaced or discarded draft's entry differs)."""
        return keys.drafts(self.p), {draft.id: draft.to_json()}

    async def discard_draft(self, draft: Draft) -> None:
        """Keep ``draft`` (discarded) without its spec, in one step."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.drafts(self.p), draft.id, draft.to_json())
        pipe.delete(keys.draft_spec(self.p, draft.id))
        await pipe.execute()
