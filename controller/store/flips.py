"""Flips: flip claims with a lease, and the assignment record of every product and period."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import islice

from controller.designs import Assignment, PeriodAssignments
from controller.spec import Arm
from controller.store.base import RedisStore, from_ms, to_ms
from controller.store.resp import packed_hsets


def encode_record(a: Assignment) -> str:
    arm = "T" if a.arm == Arm.TREATMENT else "C"
    bu = "" if a.blackout_until is None else str(to_ms(a.blackout_until))
    return f"{arm}|{a.probability:.6g}|{bu}|{a.blackout_reason or ''}"


def decode_record(rec: str) -> tuple[Arm, float, datetime | None, str | None]:
    arm, prob, bu, why = rec.split("|", 3)
    return (
        Arm.TREATMENT if arm == "T" else Arm.CONTROL,
        float(prob),
        None if bu == "" else from_ms(bu),
        why or None,
    )


class FlipStore(RedisStore):
    """Flip claims (``lua/claim_flip.lua``, ``lua/complete_flip.lua``) and assignment records."""

    async def claim_flip(self, exp_id: str, k: int, owner: str, lease_ms: int) -> tuple[str, int]:
        base = self.exp(exp_id)
        status, seq = await self._script("claim_flip")(
            keys=[f"{base}:state", f"{base}:flip:{k}", f"{base}:flipseq:{k}"],
            args=[k, owner, lease_ms],
        )
        return status, int(seq) if seq else -1

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
            while group := list(islice(commands, 20)):  # 20 commands per round trip
                await conn.send_packed_command([cmd for cmd, _ in group], check_health=False)
                for _, fields in group:
                    await conn.read_response()
                    n += fields
        await self.redis.hincrby(versions, f"d:{k}", 1)
        return n

    async def complete_flip(self, exp_id: str, k: int, seq: int, missed: int, owner: str) -> bool:
        base = self.exp(exp_id)
        done = await self._script("complete_flip")(keys=[f"{base}:state"], args=[k, seq, missed])
        # release the claim only if it is still ours
        claim = f"{base}:flip:{k}"
        held = await self.redis.get(claim)
        if held is not None and held.split("|", 1)[0] == owner:
            await self.redis.delete(claim)
        return bool(done)

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
