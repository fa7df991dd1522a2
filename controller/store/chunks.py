"""Reads of some products of an experiment's periods: the analysis worker's chunks (issue #42).

A compacted period is stored in blocks of products (``columns``, ``PLC2``): its header says
where each block's bytes are, so the products ``[start, stop)`` of many periods are read with
one ``GETRANGE`` each, in one round trip, after their headers (which never change and are
read once). An open period's cell sums are fixed-width (32 bytes a product), so its chunk is
one ``GETRANGE`` too, and its records are the chunk's fields of the period's records hash, in
the chunk's order (``lua/hmget_text.lua``: no read of the whole hash, and no lookup of each
product in an index). Nothing here holds more than the chunk asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from redis.client import NEVER_DECODE

from controller.errors import StoreError
from controller.store.base import RedisStore
from controller.store.columns import (
    NO_RECORD,
    SUMS_DTYPE,
    SUMS_PER_PRODUCT,
    Header,
    PeriodColumns,
    PeriodRecords,
    decode_span,
    read_header,
    records_in_order,
)

#: the bytes read first of a stored period: its header, whole, unless it names thousands of
#: distinct records
_HEAD = 4096
_SUMS_BYTES = SUMS_PER_PRODUCT * SUMS_DTYPE.itemsize
#: products per call of the records script: no call holds Redis for long (~15 ms)
_RECORDS_STEP = 16_384


@dataclass(frozen=True)
class ProductNames:
    """Some products, in order, as the records script (``lua/hmget_text.lua``) takes them: in
    steps of at most ``_RECORDS_STEP``, each (its size, its arguments: the names joined by
    newlines, or one by one where a name holds a newline). Made once per chunk and kept by the
    caller: joining a million names takes ~0.1 s."""

    count: int
    steps: tuple[tuple[int, tuple[str, ...]], ...]

    @classmethod
    def of(cls, products: Sequence[str]) -> ProductNames:
        steps = []
        for at in range(0, len(products), _RECORDS_STEP):
            part = [str(p) for p in products[at : at + _RECORDS_STEP]]
            joined = "\n".join(part)
            one = all(part) and joined.count("\n") == len(part) - 1
            steps.append((len(part), ("\n", joined) if one else ("", *part)))
        return cls(len(products), tuple(steps))


@dataclass(frozen=True)
class RecordsSpan:
    """Some products' records of an open period (:class:`ProductNames` order), with ``held``,
    the records in the period's hash when they were read (-1 when it moved between the steps
    of the read): more than the experiment's products found is a record of another product."""

    records: PeriodRecords
    held: int

    @property
    def found(self) -> int:
        return int((self.records.codes != NO_RECORD).sum())


class ChunkStore(RedisStore):
    async def period_headers(self, exp_id: str, ks: Sequence[int]) -> list[Header]:
        """The headers of compacted periods ``ks`` (each must be compacted)."""
        base = self.exp(exp_id)
        want = dict.fromkeys(ks, _HEAD)
        got: dict[int, Header] = {}
        while want:
            pipe = self.redis.pipeline(transaction=False)
            for k, size in want.items():
                pipe.execute_command(
                    "GETRANGE", f"{base}:col:{k}", 0, size - 1, **{NEVER_DECODE: True}
                )
            heads = await pipe.execute()
            again: dict[int, int] = {}
            for (k, size), head in zip(want.items(), heads, strict=True):
                if not head:
                    raise StoreError(f"experiment {exp_id!r}: period {k} is not compacted")
                header = read_header(head)
                if isinstance(header, int):
                    if header <= size:  # the blob is shorter than its header says
                        raise StoreError(f"experiment {exp_id!r}: period {k} is truncated")
                    again[k] = header
                else:
                    got[k] = header
            want = again
        return [got[k] for k in ks]

    async def compacted_span(
        self, exp_id: str, periods: Sequence[tuple[int, Header]], start: int, stop: int
    ) -> list[PeriodColumns]:
        """Products ``[start, stop)`` of compacted periods (each with its header), in one round
        trip: the bytes of their blocks only."""
        base = self.exp(exp_id)
        pipe = self.redis.pipeline(transaction=False)
        for k, header in periods:
            first, last = header.span(start, stop)
            end = -1 if last < first else last - 1  # PLC1: the body runs to the blob's end
            pipe.execute_command("GETRANGE", f"{base}:col:{k}", first, end, **{NEVER_DECODE: True})
        data = await pipe.execute()
        return [
            decode_span(header, got, start, stop)
            for (_, header), got in zip(periods, data, strict=True)
        ]

    async def live_records_span(
        self, exp_id: str, ks: Sequence[int], names: ProductNames
    ) -> list[RecordsSpan]:
        """The records of products ``names`` in open periods ``ks``, in their order; a period's
        steps run concurrently (each a read-only script: a read-only ACL user may)."""
        base = self.exp(exp_id)
        out = []
        for k in ks:
            steps = await asyncio.gather(
                *(self._records_step(f"{base}:a:{k}", size, args) for size, args in names.steps)
            )
            held = {h for h, _ in steps}
            values = [v for _, vs in steps for v in vs]
            out.append(RecordsSpan(records_in_order(values), held.pop() if len(held) == 1 else -1))
        return out

    async def _records_step(
        self, key: str, size: int, args: tuple[str, ...]
    ) -> tuple[int, list[str]]:
        held, text = await self._read_only("hmget_text", [key], ["text", *args])
        values = text.split("\n")
        if len(values) != size:  # a record held a newline: its values one by one
            held, got = await self._read_only("hmget_text", [key], ["array", *args])
            values = ["" if v is None else v for v in got]
        return int(held), values

    async def live_sums_span(
        self, exp_id: str, ks: Sequence[int], start: int, stop: int
    ) -> list[bytes]:
        """Products ``[start, stop)`` of open periods' cell sums (shorter, or empty, where the
        last of them sold nothing yet), in one round trip."""
        base = self.exp(exp_id)
        if stop <= start:
            return [b"" for _ in ks]
        pipe = self.redis.pipeline(transaction=False)
        for k in ks:
            pipe.execute_command(
                "GETRANGE",
                f"{base}:sums:{k}",
                start * _SUMS_BYTES,
                stop * _SUMS_BYTES - 1,
                **{NEVER_DECODE: True},
            )
        return [bytes(b or b"") for b in await pipe.execute()]

    async def put_partial(
        self, exp_id: str, look: str, chunk: int, blob: bytes, ttl_ms: int
    ) -> None:
        """One chunk's part of a look (``analysis.sharded``), kept ``ttl_ms``."""
        await self.redis.set(f"{self.exp(exp_id)}:part:{look}:{chunk}", blob, px=ttl_ms)

    async def partials(self, exp_id: str, look: str, chunks: Sequence[int]) -> list[bytes | None]:
        """The chunks' parts of a look stored by :meth:`put_partial` (None: not there)."""
        if not chunks:
            return []
        base = self.exp(exp_id)
        got = await self.redis.execute_command(
            "MGET", *(f"{base}:part:{look}:{c}" for c in chunks), **{NEVER_DECODE: True}
        )
        return [None if b is None else bytes(b) for b in got]
