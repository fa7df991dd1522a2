"""Reads of some products of an experiment's periods: the analysis worker's chunks (issue #42).

A compacted period is stored in blocks of products (``columns``, ``PLC2``): its header says
where each block's bytes are, so the products ``[start, stop)`` of many periods are read with
one ``GETRANGE`` each, in one round trip, after their headers (which never change and are
read once). An open period's cell sums are fixed-width (32 bytes a product), so its chunk is
one ``GETRANGE`` too. Nothing here holds more than the chunk asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.client import NEVER_DECODE

from controller.errors import StoreError
from controller.store.base import RedisStore
from controller.store.columns import (
    SUMS_DTYPE,
    SUMS_PER_PRODUCT,
    Header,
    PeriodColumns,
    decode_span,
    read_header,
)

#: the bytes read first of a stored period: its header, whole, unless it names thousands of
#: distinct records
_HEAD = 4096
_SUMS_BYTES = SUMS_PER_PRODUCT * SUMS_DTYPE.itemsize


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
