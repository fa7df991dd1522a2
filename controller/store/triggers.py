"""Trigger state: each triggered experiment's tracker state, versioned, and its trigger periods."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from controller.store.base import RedisStore


@dataclass(frozen=True)
class TriggerSave:
    """What a trigger save did (``lua/trigger_save.lua``)."""

    #: the state's new version; None: nothing was written (``code`` says why)
    version: int | None
    #: the sequence number of the announcement it must make (its fires and ``released``)
    seq: int | None = None
    #: nothing written: 0 not running, 1 the version moved, 2 the turn is another's, 3 a
    #: timer's save held back (a decision to publish, or a batch waiting for the turn)
    code: int | None = None
    #: its fires were kept: a decision of the experiment is still to be published
    kept: bool = False
    #: fires kept earlier that this save carried out (announced under ``seq``)
    released: tuple[str, ...] = ()
    #: what a replica barrier reads to know this save is there: its mark (a save given
    #: one, with ``PRICELAB_REDIS__WAIT_REPLICAS``); None otherwise
    guard: tuple[str, dict[str, str | None]] | None = None

    @classmethod
    def of(cls, res: list[Any]) -> TriggerSave:
        if int(res[0]) < 0:
            return cls(None, code=int(res[2]))
        seq = int(res[1])
        return cls(
            int(res[0]),
            seq if seq > 0 else None,
            kept=bool(int(res[2])),
            released=tuple(str(p) for p in res[3:]),
        )


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
        mark: str = "",
    ) -> TriggerSave:
        """Write what changed (meta, touched products - None deletes -, new fires) in one
        round trip, provided the state is still at version ``expected`` and the experiment
        runs (``lua/trigger_save.lua``).

        Fires take a sequence number and the experiment's turn for ``owner`` (give it back
        with ``end_turn`` once the announcement is out), together with the fires kept
        earlier, which the save carries out (``released``). While a decision of the
        experiment is still to be published, a batch's fires are kept instead (``kept``: no
        number, no turn; the first save once the decision is out carries them out). A
        ``timer`` save (``TriggerRunner.advance``) goes through neither then nor while a
        batch waits for the turn (``trigger_waits``, for ``lease_ms`` after the last mark at
        most): its watermark would make that batch's prices stale. Nothing written:
        ``version`` None and ``code`` 1 the version moved, 0 the experiment does not run, 2
        its turn is another's, 3 a timer's save held back. ``mark``: a name unique to this
        save, recorded with it (``trigger_mark_guard``; "": none)."""
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
        names = ["trigger_state", "triggers", "state", "trigger_v", "turn", "trigger_waits"]
        names.append("trigger_kept")
        if mark:  # only then: an ACL user made before marks may lack the key
            names.append("trigger_saved")
            args.append(mark)
        res = await self._script("trigger_save")(
            keys=[f"{base}:{name}" for name in names], args=args
        )
        saved = TriggerSave.of(res)
        if saved.version is None or not mark:
            return saved
        return replace(saved, guard=self.trigger_mark_guard(exp_id, mark))

    def trigger_mark_guard(self, exp_id: str, mark: str) -> tuple[str, dict[str, str | None]]:
        """What a replica barrier reads to know the save marked ``mark`` is there: the mark,
        which no other save writes (a product's state or the sequence counter may be
        written again, by a later save or, after a failover, by another's)."""
        return f"{self.exp(exp_id)}:trigger_saved", {mark: None}

    async def forget_trigger_marks(self, guards: list[tuple[str, dict[str, str | None]]]) -> None:
        """Delete the marks of saves whose barrier passed (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for key, fields in guards:
            pipe.hdel(key, *fields)
        await pipe.execute()

    async def kept_triggers(self, exp_id: str) -> dict[str, int]:
        """The fires kept while a decision was to be published, not carried out yet."""
        raw = await self.redis.hgetall(f"{self.exp(exp_id)}:trigger_kept")
        return {p: int(k) for p, k in raw.items()}

    async def triggers(self, exp_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(f"{self.exp(exp_id)}:triggers")
        return {p: int(k) for p, k in raw.items()}
