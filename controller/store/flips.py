"""Flips and every other lifecycle decision: the experiment's turn, its decisions with their
sequence numbers, and the assignment record of every product and period."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from controller.designs import Assignment, PeriodAssignments
from controller.spec import Arm
from controller.store.base import RedisStore, from_ms, to_ms
from controller.store.resp import packed_hsets


def encode_record(a: Assignment) -> str:
    """The record the sales path routes by: ``ARM|P|BLACKOUT_UNTIL_MS|REASON``. ARM is ``T``
    or ``C`` (the role) for a two-arm shorthand spec, exactly as before specs had ``arms:``,
    and the arm's index in the spec's list (``0``..``7``) for an ``arms:`` spec (an
    assignment with an ``arm_name``). The Lua ingest reads only the last two fields."""
    if a.arm_name is not None and a.index is not None:
        arm = str(a.index)
    else:
        arm = "T" if a.arm == Arm.TREATMENT else "C"
    bu = "" if a.blackout_until is None else str(to_ms(a.blackout_until))
    return f"{arm}|{a.probability:.6g}|{bu}|{a.blackout_reason or ''}"


def decode_record(rec: str) -> tuple[Arm | int, float, datetime | None, str | None]:
    """(arm, P, blackout until, reason) of a record: the arm is a role (``T``/``C``) or an
    index into the spec's arm list (``ExperimentSpec.index_of`` takes either)."""
    arm, prob, bu, why = rec.split("|", 3)
    return (
        int(arm) if arm.isdigit() else Arm.TREATMENT if arm == "T" else Arm.CONTROL,
        float(prob),
        None if bu == "" else from_ms(bu),
        why or None,
    )


class FlipStore(RedisStore):
    """An experiment's turn and its lifecycle decisions (``lua/turn.lua``, ``lua/decide.lua``,
    ``lua/published.lua``), and the assignment record of every product and period."""

    async def take_turn(self, exp_id: str, owner: str, lease_ms: int) -> bool:
        """Take or renew the experiment's turn (one holder at a time); False when busy."""
        base = self.exp(exp_id)
        return bool(await self._script("turn")(keys=[f"{base}:turn"], args=[owner, lease_ms]))

    async def end_turn(self, exp_id: str, owner: str) -> None:
        await self._script("turn_end")(keys=[f"{self.exp(exp_id)}:turn"], args=[owner])

    async def decide(
        self,
        exp_id: str,
        owner: str,
        expected: tuple[str, bool, int, int],
        new: tuple[str, bool, int],
        *,
        publish: bool,
        flips: int = 0,
        missed: int = 0,
        backfilled: int = 0,
        freezes: list[dict[str, Any]] | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
        kept: Sequence[str] = (),
        fired: Sequence[dict[str, Any]] = (),
    ) -> int:
        """Record a decision: ``expected`` (status, frozen, flipped_period, seq) must still
        hold and the turn be ``owner``'s. Returns its sequence number, 0 when it publishes
        nothing, -1 when nothing was written (the turn was lost or the state moved). A
        decision that publishes keeps what its messages were built with beside it (the
        freezes laid over them) and the event it announces, so that a redo repeats both.
        ``kept``: a triggered experiment's kept fires the decision was made with (its
        records and messages hold them), moved to its triggers in the same step; ``fired``:
        their ``triggered`` events, kept with the decision so that a redo repeats them."""
        base = self.exp(exp_id)
        status, frozen, period, seq = expected
        new_status, new_frozen, new_period = new
        out = await self._script("decide")(
            keys=[f"{base}:state", f"{base}:turn", f"{base}:triggers", f"{base}:trigger_kept"],
            args=[
                owner,
                status,
                int(frozen),
                period,
                seq,
                new_status,
                int(new_frozen),
                new_period,
                int(publish),
                flips,
                missed,
                backfilled,
                json.dumps(freezes or []),
                json.dumps(list(event) if event is not None else None),
                json.dumps(list(fired)),
                len(kept),
                *kept,
            ],  # fmt: skip
        )
        return int(out)

    async def mark_flipped(self, exp_id: str, k: int, lease_ms: int = 10_000) -> bool:
        """Make period ``k`` the period in force without publishing anything: for replays,
        benchmarks and store tests, whose caller wrote the period's records. False when the
        turn is busy or ``k`` is not ahead of the period in force."""
        owner = f"replay-{uuid.uuid4().hex[:8]}"
        if not await self.take_turn(exp_id, owner, lease_ms):
            return False
        try:
            status, frozen, period, seq = await self.redis.hmget(
                f"{self.exp(exp_id)}:state", "status", "frozen", "flipped_period", "seq"
            )
            if status is None or k <= int(period or -1):
                return False
            expected = (status, (frozen or "0") == "1", int(period or -1), int(seq or 0))
            new = (status, expected[1], k)
            return await self.decide(exp_id, owner, expected, new, publish=False, flips=1) == 0
        finally:
            await self.end_turn(exp_id, owner)

    async def mark_published(self, exp_id: str, seq: int) -> None:
        """The decision ``seq``'s messages are out."""
        await self._script("published")(keys=[f"{self.exp(exp_id)}:state"], args=[seq])

    async def write_assignments(
        self, exp_id: str, k: int, records: Iterable[Assignment], chunk: int = 5000
    ) -> int:
        key = f"{self.exp(exp_id)}:a:{k}"
        if isinstance(records, PeriodAssignments):  # one record text per distinct assignment
            texts = [encode_record(t) for t in records.templates]
            pairs: Iterable[tuple[str, str]] = zip(
                records.products, map(texts.__getitem__, records.codes), strict=True
            )
        else:
            pairs = ((a.product, encode_record(a)) for a in records)
        n = 0
        # a write of the records is bracketed by two counters (``e:av``, w:{k} writes started
        # and d:{k} writes done), so a reader can tell a stable hash (equal) from one being
        # written, by one writer or overlapping ones, or left half-written by a crash (unequal
        # from then on) and keep only the first
        versions = f"{self.exp(exp_id)}:av"
        await self.redis.hincrby(versions, f"w:{k}", 1)
        async with self._connection(key) as conn:
            commands = packed_hsets(key, pairs, chunk)
            sent: list[int] = []  # the fields of each command sent and not yet answered
            while group := list(islice(commands, 20)):  # 20 commands per round trip
                await conn.send_packed_command([cmd for cmd, _ in group], check_health=False)
                # the previous group's answers once this one is sent: Redis inserts a group
                # while this process packs the next (1M fields: ~0.4 s of packing hidden)
                for fields in sent:
                    await conn.read_response()
                    n += fields
                sent = [fields for _, fields in group]
            for fields in sent:
                await conn.read_response()
                n += fields
        await self.redis.hincrby(versions, f"d:{k}", 1)
        return n

    async def assignment_record(self, exp_id: str, k: int, product: str) -> str | None:
        return await self.redis.hget(f"{self.exp(exp_id)}:a:{k}", product)  # type: ignore[no-any-return]

    async def assignment_records_for(self, exp_id: str, ks: Sequence[int]) -> list[dict[str, str]]:
        """The records of several periods in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for k in ks:
            pipe.hgetall(f"{self.exp(exp_id)}:a:{k}")
        return list(await pipe.execute()) if ks else []

    async def assignment_records(self, exp_id: str, k: int) -> dict[str, str]:
        return await self.redis.hgetall(f"{self.exp(exp_id)}:a:{k}")  # type: ignore[no-any-return]
