"""One period of an experiment in columnar form: what a closed period is compacted to.

A period's live state is a hash of assignment records (product -> record text) and a string of
cell sums, four big-endian signed 64-bit integers per product in the experiment's sorted
product order (units in thousandths, revenue in millionths, orders, head units in thousandths;
``lua/ingest.lua`` adds to them): ~90 + 32 bytes per product. Once the period is closed for sales it never
changes, so it is stored as one binary string of arrays aligned with the experiment's sorted
products: a record code per product (an index into the period's distinct record texts,
``NO_RECORD`` where the product has none) and units, revenue, orders and head units.
Uncompressed that is 22 bytes a product (uint16 + 3 x int32 + float64; units and head units
are float64 in a period where one is fractional); zlib (level 1) takes it further where cells
are empty or repeat.

Layout (``PLC2``): the magic, a 4-byte little-endian header length, the JSON header (``n``,
``templates``, the dtype of each array, ``block`` and each block's compressed length), then
the blocks: block j holds products ``[j * block, (j + 1) * block)``, its arrays' slices in
header order, compressed on its own. A reader of some products (the analysis worker's chunks,
issue #42) reads the header and then only the bytes of their blocks (``GETRANGE``):
:func:`read_header`, :meth:`Header.span`, :func:`decode_span`. ``PLC1`` (before blocks: one
compressed body) is still read, whole. Pure: no I/O.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.units import UNITS_SCALE

if TYPE_CHECKING:  # pandas is imported where it is used: an operator's command does without
    import pandas as pd

MAGIC = b"PLC2"
#: the layout before blocks (one compressed body), still read
MAGIC_V1 = b"PLC1"
#: products per compressed block (a 65,536-product block is ~1.4 MB before compression)
BLOCK = 1 << 16
NO_RECORD = 0xFFFF
#: the cell sums, in storage order: units, revenue, orders, head units
FIELDS = ("u", "r", "n", "h")
_INT_FIELDS = ("u", "n", "h")


class ColumnsError(ValueError):
    """A stored period is not in the form this version reads."""


@dataclass(frozen=True)
class PeriodColumns:
    """One period: a record code per product and the cell sums, aligned with ``products``."""

    templates: tuple[str, ...]
    codes: np.ndarray  # uint16, NO_RECORD where the product has no record
    # float64 from the live sums; int32 (int64) counts and float64 revenue once decoded
    units: np.ndarray
    revenue: np.ndarray
    orders: np.ndarray
    head: np.ndarray

    @property
    def n(self) -> int:
        return len(self.codes)

    def records(self, products: Sequence[str]) -> dict[str, str]:
        """product -> record text, for the products with a record."""
        return {
            products[i]: self.templates[c]
            for i, c in enumerate(self.codes.tolist())
            if c != NO_RECORD
        }

    def cells(self, products: Sequence[str], k: int) -> dict[str, str]:
        """The live layout's view: "k|product|field" -> sum as Redis prints it, for the
        fields that were ever incremented (a zero sum is taken as never incremented)."""
        out: dict[str, str] = {}
        cols = {"u": self.units, "r": self.revenue, "n": self.orders, "h": self.head}
        for f in FIELDS:
            arr = cols[f]
            for i in np.flatnonzero(arr).tolist():
                v = float(arr[i])
                whole = f != "r" and v == int(v)
                out[f"{k}|{products[i]}|{f}"] = str(int(v)) if whole else repr(v)
        return out


#: the live sums: per product, units (thousandths), revenue (millionths), orders, head units
#: (thousandths)
SUMS_DTYPE = np.dtype(">i8")
SUMS_PER_PRODUCT = 4
#: revenue is summed in whole millionths (an exact integer; BITFIELD has no floats)
REVENUE_SCALE = 1_000_000


@dataclass(frozen=True)
class PeriodRecords:
    """A period's assignment records over the sorted products: a code per product into the
    distinct record texts (``NO_RECORD`` where the product has none)."""

    templates: tuple[str, ...]
    codes: np.ndarray  # uint16


def records_of(products: pd.Index, records: Mapping[str, str]) -> PeriodRecords:
    """The records hash (product -> text) over ``products``, the experiment's sorted products.
    A record of a product outside them is an error: it would be dropped silently."""
    codes = np.full(len(products), NO_RECORD, dtype=np.uint16)
    if not records:
        return PeriodRecords((), codes)
    where = products.get_indexer(list(records))
    if (where < 0).any():
        bad = list(records)[int(np.flatnonzero(where < 0)[0])]
        raise ColumnsError(f"a record for {bad!r}, which is not in the experiment")
    import pandas as pd

    rec_codes, templates = pd.factorize(np.array(list(records.values()), dtype=object))
    if len(templates) >= NO_RECORD:
        raise ColumnsError(f"more than {NO_RECORD - 1} distinct records in one period")
    codes[where] = rec_codes
    return PeriodRecords(tuple(str(t) for t in templates), codes)


def records_in_order(values: Sequence[str]) -> PeriodRecords:
    """Some products' records in their order (``""`` where a product has none), as
    :class:`PeriodRecords` over those products: no lookup of each product in an index (a
    chunk's records as ``chunks.ChunkStore.live_records_span`` reads them)."""
    codes = np.full(len(values), NO_RECORD, dtype=np.uint16)
    if not len(values):
        return PeriodRecords((), codes)
    import pandas as pd

    found, uniques = pd.factorize(np.asarray(values, dtype=object))
    texts = [str(t) for t in uniques]
    templates = tuple(t for t in texts if t)
    if len(templates) >= NO_RECORD:
        raise ColumnsError(f"more than {NO_RECORD - 1} distinct records in one period")
    remap = np.full(len(texts), NO_RECORD, dtype=np.uint16)
    remap[[i for i, t in enumerate(texts) if t]] = np.arange(len(templates), dtype=np.uint16)
    return PeriodRecords(templates, remap[found])


def from_live(
    products: pd.Index, records: Mapping[str, str] | PeriodRecords, sums: bytes | None
) -> PeriodColumns:
    """A period's columns from its live state. ``products`` is the experiment's sorted
    products; ``records`` their assignment records (the hash, or :func:`records_of` it);
    ``sums`` the cell-sum string (None when no sale was counted yet; shorter when the last
    products sold nothing). A record of a product outside ``products`` or a sum past its last
    one is an error: it would be dropped silently."""
    n = len(products)
    recs = records if isinstance(records, PeriodRecords) else records_of(products, records)
    if len(recs.codes) != n:
        raise ColumnsError(f"records over {len(recs.codes)} products, not the experiment's {n}")
    grid = np.zeros((n, SUMS_PER_PRODUCT), dtype=np.int64)
    if sums:
        if len(sums) % SUMS_DTYPE.itemsize:
            raise ColumnsError(f"a period's sums are {len(sums)} bytes, not whole 64-bit fields")
        got = np.frombuffer(sums, dtype=SUMS_DTYPE)
        if len(got) > grid.size:  # a product code past the experiment's products
            raise ColumnsError(
                f"a period's sums hold {len(got) // SUMS_PER_PRODUCT} products, past the "
                f"experiment's {n}"
            )
        grid.ravel()[: len(got)] = got
    return PeriodColumns(
        recs.templates,
        recs.codes,
        grid[:, 0] / UNITS_SCALE,
        grid[:, 1] / REVENUE_SCALE,
        grid[:, 2].astype(np.float64),
        grid[:, 3] / UNITS_SCALE,
    )


def pack_sums(
    units: np.ndarray, revenue: np.ndarray, orders: np.ndarray, head: np.ndarray
) -> bytes:
    """The live sums string of per-product arrays (the inverse of :func:`from_live`'s read, for
    tools and benchmarks that fill a period directly)."""
    grid = np.column_stack(
        [
            np.rint(np.asarray(units, dtype=np.float64) * UNITS_SCALE).astype(np.int64),
            np.rint(np.asarray(revenue, dtype=np.float64) * REVENUE_SCALE).astype(np.int64),
            np.asarray(orders, dtype=np.int64),
            np.rint(np.asarray(head, dtype=np.float64) * UNITS_SCALE).astype(np.int64),
        ]
    )
    return grid.astype(SUMS_DTYPE).tobytes()


def _int_array(a: np.ndarray) -> np.ndarray:
    """Whole-number sums as int32 (int64 if one does not fit)."""
    as_int = a.astype(np.int64)
    if not np.array_equal(as_int, a):
        raise ColumnsError("a count (units, orders, head units) is not a whole number")
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    if len(as_int) and (as_int.min() < lo or as_int.max() > hi):
        return as_int
    return as_int.astype(np.int32)


def _units_array(a: np.ndarray) -> np.ndarray:
    """Units as whole numbers (:func:`_int_array`) where they all are, else float64 (goods
    sold by weight: thousandths, which a float64 holds to well below a thousandth)."""
    if np.array_equal(np.trunc(a), a):
        return _int_array(a)
    return a.astype(np.float64)


def _arrays(cols: PeriodColumns) -> list[tuple[str, np.ndarray]]:
    return [
        ("codes", cols.codes.astype(np.uint16)),
        ("u", _units_array(cols.units)),
        ("r", cols.revenue.astype(np.float64)),
        ("n", _int_array(cols.orders)),
        ("h", _units_array(cols.head)),
    ]


def encode(cols: PeriodColumns, block: int = BLOCK) -> bytes:
    """The stored form of a period (``PLC2``: blocks of ``block`` products)."""
    arrays = [(name, a.astype(a.dtype.newbyteorder("<"), copy=False)) for name, a in _arrays(cols)]
    bodies = []
    for start in range(0, max(cols.n, 1), block):
        stop = min(cols.n, start + block)
        raw = b"".join(a[start:stop].tobytes() for _, a in arrays)
        bodies.append(zlib.compress(raw, 1))
    header = json.dumps(
        {
            "n": cols.n,
            "templates": list(cols.templates),
            "arrays": [[name, a.dtype.str] for name, a in arrays],
            "block": block,
            "blocks": [len(b) for b in bodies],
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(bodies)


@dataclass(frozen=True)
class Header:
    """A stored period's header: where each block's bytes are (``offsets``, from the blob's
    start; one more than blocks) and what they hold."""

    n: int
    templates: tuple[str, ...]
    dtypes: tuple[tuple[str, np.dtype], ...]
    block: int
    offsets: tuple[int, ...]

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The byte range ``[first, last)`` of the blocks that hold products
        ``[start, stop)``."""
        j0 = min(start // self.block, len(self.offsets) - 2)
        j1 = max(j0 + 1, min(-(-stop // self.block), len(self.offsets) - 1))
        return self.offsets[j0], self.offsets[j1]


def read_header(head: bytes) -> Header | int:
    """The header of a stored period from its first bytes, or how many bytes it needs when
    ``head`` is shorter. A ``PLC1`` period is one block of all its products."""
    if len(head) < 8:
        return 8
    if head[:4] not in (MAGIC, MAGIC_V1):
        raise ColumnsError("not a compacted period (bad magic)")
    (hlen,) = struct.unpack("<I", head[4:8])
    if len(head) < 8 + hlen:
        return 8 + hlen
    try:
        h = json.loads(head[8 : 8 + hlen])
    except ValueError as e:
        raise ColumnsError(f"a compacted period's header is corrupt: {e}") from None
    n = int(h["n"])
    blocks = h.get("blocks")
    if blocks is None:  # PLC1: the body runs to the end of the blob; its length is not known
        blocks, block = [-1], max(n, 1)
    else:
        block = int(h["block"])
    offsets = [8 + hlen]
    for length in blocks:
        offsets.append(offsets[-1] + int(length))
    return Header(
        n,
        tuple(h["templates"]),
        tuple((name, np.dtype(dt)) for name, dt in h["arrays"]),
        block,
        tuple(offsets),
    )


def decode_span(header: Header, data: bytes | memoryview, start: int, stop: int) -> PeriodColumns:
    """Products ``[start, stop)`` of a stored period from the bytes of their blocks
    (``data``: the blob's bytes ``header.span(start, stop)``; for ``PLC1``, from the body's
    start to the blob's end)."""
    first = header.span(start, stop)[0]
    j0 = header.offsets.index(first)
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in header.dtypes}
    at_block = 0
    j = j0
    lo = j0 * header.block
    while at_block < len(data):
        length = header.offsets[j + 1] - header.offsets[j]
        chunk = data[at_block:] if length < 0 else data[at_block : at_block + length]
        at_block += len(chunk)
        try:
            body = zlib.decompress(chunk)
        except zlib.error as e:
            raise ColumnsError(f"a compacted period is corrupt: {e}") from None
        m = min(header.block, header.n - j * header.block)
        at = 0
        for name, dt in header.dtypes:
            parts[name].append(np.frombuffer(body, dtype=dt, count=m, offset=at))
            at += m * dt.itemsize
        if at != len(body):
            raise ColumnsError("a compacted period's arrays do not add up to its length")
        j += 1
    out = {
        name: (p[0] if len(p) == 1 else np.concatenate(p))[start - lo : stop - lo]
        for name, p in parts.items()
    }
    # the stored dtypes (int32 counts), read-only views of the decompressed body: a cache of
    # decoded periods costs what the compacted form does
    return PeriodColumns(header.templates, out["codes"], out["u"], out["r"], out["n"], out["h"])


def decode(blob: bytes) -> PeriodColumns:
    header = read_header(blob)
    if isinstance(header, int):
        raise ColumnsError("a compacted period is shorter than its header")
    return decode_span(header, memoryview(blob)[header.offsets[0] :], 0, header.n)
