"""Trigger state: each triggered experiment's tracker state, versioned, and its trigger periods."""

from __future__ import annotations

import json
from typing import Any

from controller.store.base import RedisStore


class TriggerStore(RedisStore):
    """Trigger trackers' state and trigger periods (saved optimistically, see
    ``lua/trigger_save.lua``)."""

    async def trigger_state_version(self, exp_id: str) -> int:
        return int(await self.redis.get(f"{self.exp(exp_id)}:trigger_v") or 0)

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        """(version, tracker state) of an experiment's trigger rule; state None before any."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(f"{self.exp(exp_id)}:trigger_v")
        pipe.hgetall(f"{self.exp(exp_id)}:trigger_state")
        v, raw = await pipe.execute()
        if not raw:
            return int(v or 0), None
        meta = json.loads(raw.get("meta", "{}"))
        state = {
            "watermark": meta.get("watermark"),
            "stale": meta.get("stale", 0),
            "fired": {k[2:]: json.loads(x) for k, x in raw.items() if k.startswith("f:")},
            "products": {k[2:]: json.loads(x) for k, x in raw.items() if k.startswith("p:")},
        }
        return int(v or 0), state

    async def save_trigger_state(
        self,
        exp_id: str,
        expected: int,
        meta: dict[str, Any],
        products: dict[str, dict[str, Any] | None],
        fired: dict[str, dict[str, Any]],
        triggers: dict[str, int],
        owner: str = "",
        lease_ms: int = 30_000,
        *,
        timer: bool = False,
    ) -> tuple[int, int | None] | tuple[None, int]:
        """Write what changed (meta, touched products - None deletes -, new fires) and take a
        sequence number when something fired, in one round trip, provided the state is still
        at version ``expected`` and the experiment runs. A batch that fires also takes the
        experiment's turn for ``owner`` (give it back with ``end_turn`` once its announcement
        is out). Returns (new state version, sequence number or None), or (None, code) with
        nothing written: 1 the version moved, 0 the experiment does not run, 2 its turn is
        another's, 3 a decision of its is still to be published (``lua/trigger_save.lua``). A
        ``timer`` save (``TriggerRunner.advance``) gets 3 then even without fires: it would
        move the watermark past the prices of a batch waiting to fire. It gets 3 as well
        while a batch refused with 2 or 3 (on any worker) has not saved since (the batch's
        mark, its owner in the set ``trigger_waits``, for ``lease_ms`` after the last mark at
        most): once the decision is out, every such batch's next try must come before a
        timer's watermark."""
        fields = {"meta": json.dumps(meta)}
        fields |= {f"p:{p}": json.dumps(st) for p, st in products.items() if st is not None}
        fields |= {f"f:{p}": json.dumps(f) for p, f in fired.items()}
        gone = [f"p:{p}" for p, st in products.items() if st is None]
        args: list[str | int] = [expected, len(fields)]
        for k, v in fields.items():
            args += [k, v]
        args += [len(gone), *gone, len(triggers)]
        for p, period in triggers.items():
            args += [p, period]
        args += [owner, lease_ms, int(timer)]
        base = self.exp(exp_id)
        res = await self._script("trigger_save")(
            keys=[
                f"{base}:trigger_state",
                f"{base}:triggers",
                f"{base}:state",
                f"{base}:trigger_v",
                f"{base}:turn",
                f"{base}:trigger_waits",
            ],
            args=args,
        )
        if int(res[0]) < 0:
            return None, int(res[2])
        return int(res[0]), (int(res[1]) if triggers else None)

    async def triggers(self, exp_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(f"{self.exp(exp_id)}:triggers")
        return {p: int(k) for p, k in raw.items()}
