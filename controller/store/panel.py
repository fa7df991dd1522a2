"""The sales panel: sales applied atomically per batch (dedupe, blackout, cell sums), closed
periods compacted to columns, the running totals and exclusions kept for audit, and the
analysis worker's sequence tuning."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeout

if TYPE_CHECKING:  # pandas is imported where it is used: an operator's command does without
    import pandas as pd

from controller.errors import StoreError
from controller.store.base import RedisStore, _text
from controller.store.columns import (
    REVENUE_SCALE,
    ColumnsError,
    PeriodColumns,
    PeriodRecords,
    decode,
    encode,
    from_live,
    records_of,
)
from core.units import UNITS_SCALE


class SaleRow(NamedTuple):
    """One routed sale for :meth:`Store.ingest` (a tuple: built per event, ~3x cheaper than a
    frozen dataclass). ``code``: the product's position among the experiment's sorted
    products, where its cell sums are."""

    event_id: str
    experiment: str
    period: int
    product: str
    code: int
    ts_ms: int
    head_end_ms: int
    units: float  # negative: a return; in whole thousandths (core.units)
    revenue: float
    pre_reason: str = ""
    #: how long to remember the sale's id: until its period closes, plus a margin (seconds)
    keep_s: int = 8 * 86400


def dedupe_digest(event_id: str) -> tuple[int, int]:
    """(member, bucket hash) of a sale's dedupe marker: the first 52 bits of its id's SHA-1 and
    the 32 after them (13 and 8 hex digits); ``ingest.lua`` files the member in set
    ``bucket hash % buckets``. The script computes them from the digest's first 11 bytes
    (``SALE_RECORD``)."""
    x = int.from_bytes(hashlib.sha1(event_id.encode()).digest()[:11], "big")
    return x >> 36, (x >> 4) & 0xFFFFFFFF


def dedupe_generation(b0: int, n: int) -> int:
    """The newest dedupe generation of a period with ``b0`` buckets and ``n`` sales remembered
    (as ``ingest.lua`` grows them: generation g has b0 * 4**g sets, and the next begins once
    the sales reach ~400 a set of the generations so far)."""
    g, cap = 0, 400 * b0
    while n >= cap and g < 6 and b0 * 4 ** (g + 1) <= 4_194_304:
        g += 1
        cap += 400 * b0 * 4**g
    return g


#: the largest revenue of one sale: in millionths it stays below 2**53, exact in the script
MAX_REVENUE = 1e9


#: the ingest script's binary arguments (``lua/ingest.lua``, big-endian): a block's head, one
#: of its products, and one sale - the first 11 bytes of its id's SHA-1 (the script takes the
#: dedupe member and bucket hash from them, see :func:`dedupe_digest`), its product's place
#: in the block, ts_ms, units in thousandths (signed: a return is negative), revenue in
#: millionths (signed), reason (0: none, else its place)
_HEAD = struct.Struct(">qqqI")
_PRODUCT = struct.Struct(">IH")
SALE_RECORD = struct.Struct(">11sIqiqB")


def product_entry(code: int, product: str) -> bytes:
    """A product as a block's head lists it: its code (its position among the experiment's
    sorted products, where its cell sums are) and its name. The ingestor makes them once per
    catalog, not once per block (~0.35 us a product)."""
    if "|" in product or "\n" in product:  # it names the cells kept for audit, "k|product|reason"
        raise StoreError("products cannot hold '|' or newlines")
    name = product.encode()
    try:
        return _PRODUCT.pack(code, len(name)) + name
    except struct.error as exc:
        raise StoreError(f"product {product[:80]!r} cannot be packed ({exc})") from exc


class SalesBlock:
    """One experiment's sales of one period in a batch, packed for ``lua/ingest.lua`` as they
    are added (one record each, in batch order: of two copies of a sale in one batch the first
    is counted, as when each is its own batch). ``head_end_ms``: the end of the period's head;
    ``keep_s``: how long to remember the ids (seconds)."""

    __slots__ = (
        "experiment",
        "period",
        "head_end_ms",
        "keep_s",
        "positions",
        "records",
        "products",
        "entries",
        "reasons",
    )

    def __init__(self, experiment: str, period: int, head_end_ms: int, keep_s: int) -> None:
        self.experiment = experiment
        self.period = period
        self.head_end_ms = head_end_ms
        self.keep_s = keep_s
        #: each sale's position in the batch, and its record, in block order
        self.positions: list[int] = []
        self.records: list[bytes] = []
        #: product -> its 1-based place in the block; ``entries``: their
        #: :func:`product_entry`, in that order
        self.products: dict[str, int] = {}
        self.entries: list[bytes] = []
        #: reason -> its 1-based place
        self.reasons: dict[str, int] = {}

    def add(
        self,
        position: int,
        event_id: str,
        product: str,
        code: int,
        ts_ms: int,
        units: float,
        revenue: float,
        reason: str = "",
    ) -> None:
        """Add a sale; ``code`` is the product's position among the experiment's sorted
        products (its cell sums). Raises StoreError for a sale the script cannot carry.
        ``SalesIngestor._route`` inlines this (the hot path; a test holds the two to the same
        bytes)."""
        # the script sums revenue in whole millionths (exact below 2**53 in Lua's doubles)
        if code < 0 or not -MAX_REVENUE <= revenue <= MAX_REVENUE:  # NaN too
            raise StoreError(
                f"a sale's product code is negative or its revenue is outside "
                f"-{MAX_REVENUE:g}..{MAX_REVENUE:g}"
            )
        p = self.products.get(product)
        if p is None:
            p = self.products[product] = len(self.entries) + 1  # Lua counts from 1
            self.entries.append(product_entry(code, product))
        why = self.reasons.setdefault(reason, len(self.reasons) + 1) if reason else 0
        digest = hashlib.sha1(event_id.encode()).digest()
        try:
            record = SALE_RECORD.pack(
                digest, p, ts_ms, round(units * UNITS_SCALE), round(revenue * REVENUE_SCALE), why
            )
        except (struct.error, ValueError, OverflowError) as exc:  # never a wire-valid sale
            raise StoreError(f"a sale cannot be packed for the ingest script ({exc})") from exc
        self.records.append(record)
        self.positions.append(position)

    def head(self) -> bytes:
        """The block's head argument: its period, head end, keep time, products and reasons."""
        if any("," in r for r in self.reasons):  # the answer is comma-separated statuses
            raise StoreError("reasons cannot hold ','")
        keep_s = max(1, int(self.keep_s))
        parts = [_HEAD.pack(self.period, self.head_end_ms, keep_s, len(self.entries))]
        parts += self.entries
        try:
            parts.append(struct.pack(">B", len(self.reasons)))
            for reason in self.reasons:
                text = reason.encode()
                parts += [struct.pack(">H", len(text)), text]
        except struct.error as exc:
            raise StoreError(f"a block cannot be packed for the ingest script ({exc})") from exc
        return b"".join(parts)

    def rows(self) -> list[tuple[int, int, int, str, int, int, int, int, str]]:
        """The block's sales as the script reads them: (position in the batch, dedupe member,
        bucket hash, product, its code, ts_ms, units in thousandths, revenue in millionths,
        reason)."""
        products = list(self.products)
        codes = [_PRODUCT.unpack_from(e)[0] for e in self.entries]
        reasons = ["", *self.reasons]
        out = []
        for position, record in zip(self.positions, self.records, strict=True):
            digest, p, ts_ms, units, micros, why = SALE_RECORD.unpack(record)
            x = int.from_bytes(digest, "big")
            member, bucket = x >> 36, (x >> 4) & 0xFFFFFFFF
            out.append(
                (position, member, bucket, products[p - 1], codes[p - 1], ts_ms, units, micros,
                 reasons[why])
            )  # fmt: skip
        return out


class PackedSales(NamedTuple):
    """A batch packed for ``lua/ingest.lua`` (:meth:`PanelStore.pack_blocks`): ``n`` positions,
    one part per experiment, each (experiment, the script's arguments after the key base, the
    positions in the batch of the sales its answer lists, in the answer's order)."""

    n: int
    parts: tuple[tuple[str, list[bytes], list[int]], ...]


class ReplicaWait(NamedTuple):
    """``PRICELAB_REDIS__WAIT_REPLICAS`` and ``__WAIT_TIMEOUT_MS``: each ingest script is
    followed, on its connection, by Redis ``WAIT replicas timeout_ms``."""

    replicas: int
    timeout_ms: int


class ReplicasBehind(RedisTimeout):
    """Fewer replicas than ``PRICELAB_REDIS__WAIT_REPLICAS`` acknowledged a sales batch's
    writes, or a decision's, in time: an outage to every caller that retries one
    (``UNAVAILABLE``), so the batch is not acknowledged and is tried again (its sales are
    deduplicated by event id), and a decision's barrier is tried again where it is
    (``Flipper.replicated_at_last``)."""


class WriteLost(RedisConnectionError):
    """The primary a barrier reached lacks the write it guards: a failover promoted a replica
    without it (redis-py resends a pipeline cut by a lost connection to whichever primary
    the sentinels name). An outage: the caller tries again, on the state it finds."""


def replicated_enough(acknowledged: int, wanted: int) -> bool:
    """Whether ``WAIT``'s answer (the replicas that acknowledged) covers the ``wanted``."""
    return acknowledged >= wanted


class PanelStore(RedisStore):
    """Sales (``lua/ingest.lua``), panel cells, totals, exclusions, sequence targets."""

    async def ingest(self, rows: Sequence[SaleRow]) -> list[str]:
        """Apply a batch: one status per row ('ok', 'head', 'dup', 'late' for a closed period,
        or a reason). Each experiment's rows are applied atomically by one script in its
        slot; the experiments of a batch run concurrently (on a cluster, on their nodes)."""
        return await self.ingest_packed(self.pack_sales(rows))

    def pack_sales(self, rows: Sequence[SaleRow]) -> PackedSales:
        """Rows as :meth:`pack_blocks` takes them: one block per experiment and period, its
        ids kept for the longest keep time of its rows."""
        blocks: dict[tuple[str, int], SalesBlock] = {}
        for i, r in enumerate(rows):
            b = blocks.get((r.experiment, r.period))
            if b is None:
                b = blocks[(r.experiment, r.period)] = SalesBlock(
                    r.experiment, r.period, r.head_end_ms, r.keep_s
                )
            elif r.head_end_ms != b.head_end_ms:
                raise StoreError(f"the sales of period {r.period} disagree on the end of its head")
            b.keep_s = max(b.keep_s, r.keep_s)
            b.add(i, r.event_id, r.product, r.code, r.ts_ms, r.units, r.revenue, r.pre_reason)
        return self.pack_blocks(list(blocks.values()), len(rows))

    def pack_blocks(self, blocks: Sequence[SalesBlock], n: int) -> PackedSales:
        """A batch of ``n`` positions as the ingest script reads it (CPU only: a caller packs
        the next batch while Redis runs the previous one): per experiment, two arguments per
        block (its head, its records) and the positions its answer lists. Raises StoreError
        for a block it cannot carry."""
        parts: dict[str, tuple[list[bytes], list[int]]] = {}
        for b in blocks:
            args, order = parts.setdefault(b.experiment, ([], []))
            args += [b.head(), b"".join(b.records)]
            order += b.positions
        return PackedSales(n, tuple((exp, args, order) for exp, (args, order) in parts.items()))

    async def ingest_packed(self, batch: PackedSales, wait: ReplicaWait | None = None) -> list[str]:
        """Apply a packed batch (:meth:`ingest`): a status per position ('' where no sale
        was packed). With ``wait``, each experiment's script is followed by ``WAIT`` on its
        connection, and :class:`ReplicasBehind` is raised when too few replicas have it."""
        if batch.n == 0:
            return []
        answers = await asyncio.gather(
            *(self._ingest_one(exp, a, wait) for exp, a, _ in batch.parts)
        )
        out = [""] * batch.n
        for (_, _, order), got in zip(batch.parts, answers, strict=True):
            for i, status in zip(order, got, strict=True):
                out[i] = status
        return out

    async def _ingest_one(
        self, exp_id: str, args: list[bytes], wait: ReplicaWait | None = None
    ) -> list[str]:
        base = self.exp(exp_id)
        script = self._script("ingest")
        if wait is None:
            got = await script(keys=[f"{base}:state"], args=[base, *args])
            return str(got).split(",")
        # one connection for the script and the WAIT (a pipeline): Redis waits for the
        # offset of that connection's last write. EVALSHA queued by hand: a script handed to
        # a pipeline costs a SCRIPT EXISTS round trip per batch
        for loaded in (False, True):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(script.sha, 1, f"{base}:state", base, *args)
            self._barrier(pipe, wait)
            try:
                got, _, acknowledged = await pipe.execute()
            except NoScriptError:  # a new primary, or SCRIPT FLUSH: load it, once
                if loaded:
                    raise
                await self.redis.script_load(script.script)
                continue
            self._check_replicas(int(acknowledged), wait)
            break
        return str(got).split(",")

    def _barrier(self, pipe: Any, wait: ReplicaWait) -> None:
        """Queue a write that always reaches the replicas, then ``WAIT``: a script that wrote
        nothing (a retried batch whose sales are all duplicates now) would leave WAIT the
        offset of the connection's last write, which may be older than the batch's."""
        pipe.incr(self.cat("replicated"))  # keys.CATALOG_KEYS["replicated"]
        pipe.wait(wait.replicas, wait.timeout_ms)

    async def replicated(
        self,
        wait: ReplicaWait,
        what: str = "a sales batch",
        guard: tuple[str, dict[str, str | None]] | None = None,
    ) -> None:
        """Wait until ``wait.replicas`` replicas have every write the primary acknowledged
        so far (a barrier and ``WAIT``), or raise :class:`ReplicasBehind`: for a batch that
        sent no script this time, whose sales an earlier try may have written, and before
        a decision's messages are published or a command's reply is sent (``what``: named
        in the error). ``guard``: a hash and the fields the write being waited for left in
        it (None: present), read in the same pipeline, so on the server the barrier reaches
        (redis-py sends a pipeline cut by a lost connection again, to whichever primary the
        sentinels name); :class:`WriteLost` when they are not so there."""
        pipe = self.redis.pipeline(transaction=False)
        if guard is not None:
            pipe.hmget(guard[0], list(guard[1]))
        self._barrier(pipe, wait)
        got = await pipe.execute()
        if guard is not None:
            for (field, want), held in zip(guard[1].items(), got[0], strict=True):
                if held is None or (want is not None and _text(held) != want):
                    raise WriteLost(
                        f"the Redis primary lacks {what} ({field} {held!r}, not {want!r}): "
                        "a failover lost it"
                    )
        self._check_replicas(int(got[-1]), wait, what)

    @staticmethod
    def _check_replicas(acknowledged: int, wait: ReplicaWait, what: str = "a sales batch") -> None:
        if not replicated_enough(acknowledged, wait.replicas):
            raise ReplicasBehind(
                f"{acknowledged} of the {wait.replicas} Redis replicas "
                f"PRICELAB_REDIS__WAIT_REPLICAS asks for acknowledged {what} within "
                f"{wait.timeout_ms} ms"
            )

    async def remembered(self, exp_id: str, k: int, event_id: str) -> bool:
        """Whether sale ``event_id`` of period k is remembered for dedupe (as ingest.lua
        files it: the id's SHA-1 gives the bucket and the member, in any of the period's
        generations)."""
        base = self.exp(exp_id)
        b0, n = await self.redis.hmget(f"{base}:seenb", f"b:{k}", f"n:{k}")
        if b0 is None:
            return False
        member, bucket = dedupe_digest(event_id)
        buckets = int(b0)
        for g in range(dedupe_generation(buckets, int(n or 0)) + 1):
            gen = "" if g == 0 else f"g{g}:"
            key = f"{base}:seen:{k}:{gen}{bucket % (buckets * 4**g)}"
            if await self.redis.sismember(key, str(member)):
                return True
        return False

    async def hash_text(self, key: str, count: int = 20_000) -> dict[str, str]:
        """A whole hash, read in HSCAN steps of ``count`` fields, each step one string
        (``lua/hscan_text.lua``, run read-only: a read-only ACL user may): one reply to parse
        per step, not two per field, and no step holds Redis for long."""
        out: dict[str, str] = {}
        cursor = "0"
        while True:
            cursor, text = await self._read_only("hscan_text", [key], [cursor, count])
            parts = text if isinstance(text, list) else text.split("\n") if text else []
            out.update(zip(parts[::2], parts[1::2], strict=True))
            if cursor == "0":
                return out

    async def records_version(self, exp_id: str, k: int) -> tuple[int, int]:
        """(writes of period k's records started, writes done): equal while the records are
        stable; a reader that read them between two equal, unchanged readings read a complete
        write. A write that never finished leaves them unequal for good (read afresh)."""
        w, d = await self.redis.hmget(f"{self.exp(exp_id)}:av", f"w:{k}", f"d:{k}")
        return int(w or 0), int(d or 0)

    async def live_records(self, exp_id: str, k: int) -> dict[str, str]:
        """Period k's assignment records, product -> text (see ``records_version``)."""
        return await self.hash_text(f"{self.exp(exp_id)}:a:{k}")

    async def live_sums(self, exp_id: str, k: int) -> bytes | None:
        """Period k's cell sums (``columns``: four big-endian int64 per product code; None
        before its first counted sale)."""
        return await self.redis.execute_command(  # type: ignore[no-any-return]
            "GET", f"{self.exp(exp_id)}:sums:{k}", **{NEVER_DECODE: True}
        )

    async def compacted_periods(self, exp_id: str, ks: Sequence[int]) -> list[PeriodColumns]:
        """Compacted periods, in one round trip (each must be compacted)."""
        if not ks:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for k in ks:
            pipe.execute_command("GET", f"{self.exp(exp_id)}:col:{k}", **{NEVER_DECODE: True})
        blobs = await pipe.execute()
        missing = [k for k, b in zip(ks, blobs, strict=True) if b is None]
        if missing:
            raise StoreError(f"experiment {exp_id!r}: periods {missing} are not compacted")
        return [decode(b) for b in blobs]

    async def close_period(self, exp_id: str, k: int) -> int:
        """Refuse period k's sales from now on (they are 'late'); the 'closed' mark after."""
        return int(await self._script("close_period")(keys=[f"{self.exp(exp_id)}:state"], args=[k]))

    async def compact_period(
        self,
        exp_id: str,
        k: int,
        products: pd.Index,
        known: tuple[tuple[int, int], PeriodRecords] | None = None,
    ) -> bool:
        """Close period k (and those before it) and store it as columns (``columns``), its live
        state dropped; False if another worker stored it first. Periods compact in order:
        ``k`` must be the experiment's next period to compact. ``products``: the experiment's
        products, sorted; ``known``: its records as read before, with the stable
        ``records_version`` they were read at (used while that is still the version)."""
        base = self.exp(exp_id)
        if await self.redis.exists(f"{base}:cells:{k}"):  # written by a version before sums
            raise ColumnsError(
                f"period {k} holds sales in the old {base}:cells:{k} hash, which this version "
                "does not read; it is left uncompacted (docs/operations.md, upgrading)"
            )
        await self.close_period(exp_id, k)
        # closed: no sale writes the sums any more (a batch in flight when the mark moved ran
        # before it, atomically), so what is read now is final
        version = await self.records_version(exp_id, k)
        if known is not None and known[0] == version and version[0] == version[1]:
            records: PeriodRecords = known[1]
        else:
            records = records_of(products, await self.live_records(exp_id, k))
        blob = encode(from_live(products, records, await self.live_sums(exp_id, k)))
        return bool(
            await self._script("store_period")(
                keys=[
                    f"{base}:state",
                    f"{base}:col:{k}",
                    f"{base}:sums:{k}",
                    f"{base}:a:{k}",
                    f"{base}:av",
                ],
                args=[k, blob],
            )
        )

    async def cells_of(self, exp_id: str, products: Sequence[str]) -> dict[str, str]:
        """Every cell of the experiment, compacted or live, as "k|product|field" -> sum
        (``products``: the experiment's products, sorted)."""
        st: dict[str, Any] = await self.redis.hgetall(f"{self.exp(exp_id)}:state")
        compacted = int(st.get("compacted", 0))
        last = int(st.get("flipped_period", -1)) + 1
        out: dict[str, str] = {}
        ks = range(compacted)
        for k, cols in zip(ks, await self.compacted_periods(exp_id, ks), strict=True):
            out |= cols.cells(products, k)
        import pandas as pd

        index = pd.Index(products, dtype=object)
        for k in range(compacted, max(last, compacted)):
            sums = await self.redis.execute_command(
                "GET", f"{self.exp(exp_id)}:sums:{k}", **{NEVER_DECODE: True}
            )
            out |= from_live(index, {}, sums).cells(products, k)
        return out

    async def totals(self, exp_id: str) -> dict[str, float]:
        """Units and events by status ('units:ok', 'events:washout', ...) for an experiment:
        the script sums units in thousandths ('mu:ok'), read here as units, plus what a version
        before fractional units summed in whole units ('units:ok')."""
        raw = await self.redis.hgetall(f"{self.exp(exp_id)}:totals")
        out: dict[str, float] = {}
        for k, v in raw.items():
            if k.startswith("mu:"):
                name, value = "units:" + k[3:], int(v) / UNITS_SCALE
            else:
                name, value = k, int(v)
            out[name] = out.get(name, 0) + value
        return out

    async def excluded(self, exp_id: str) -> dict[str, str]:
        """Units kept for audit, "k|product|status" -> units (the script sums thousandths)."""
        raw: dict[str, str] = await self.redis.hgetall(f"{self.exp(exp_id)}:excluded")
        return {k: _units_text(int(v)) for k, v in raw.items()}

    async def fix_sequence_target(self, exp_id: str, key: str, target_se: float) -> float:
        """The stored target SE of the experiment's sequence ``key``, storing ``target_se``
        first when there is none (the first writer wins; the value round-trips exactly)."""
        name = f"{self.exp(exp_id)}:cs"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(name, key, repr(float(target_se)))
        pipe.hget(name, key)
        _, stored = await pipe.execute()
        return float(stored)

    async def sequence_target(self, exp_id: str, key: str) -> float | None:
        """The value stored under the experiment's sequence ``key``, or None (read only)."""
        stored = await self.redis.hget(f"{self.exp(exp_id)}:cs", key)
        return None if stored is None else float(stored)


def _units_text(milli: int) -> str:
    """Units summed in thousandths as text: '3' for whole units, '2.5' otherwise."""
    whole, rest = divmod(milli, UNITS_SCALE)
    return str(whole) if rest == 0 else repr(milli / UNITS_SCALE)
