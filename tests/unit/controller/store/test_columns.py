"""A closed period's columnar form: what the live state holds comes back exactly."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from controller.store.columns import (
    MAGIC_V1,
    NO_RECORD,
    ColumnsError,
    decode,
    decode_span,
    encode,
    from_live,
    pack_sums,
    read_header,
)

PRODUCTS = ["a", "b|x", "c", "e", "ünï"]
INDEX = pd.Index(PRODUCTS)
RECORDS = {"a": "T|0.5||", "b|x": "C|0.5||", "ünï": "T|0.5|1780000000000|washout"}
# the live sums as the ingest script's BITFIELD writes them, written out here independently:
# per product code, big-endian int64 units in thousandths, revenue in millionths, orders,
# head units in thousandths
SUMS = (
    struct.pack(">4q", 7_000, 17_470_000, 3, 0)  # a
    + struct.pack(">4q", 0, 0, 0, 2_000)  # b|x
    + struct.pack(">4q", 0, 0, 0, 0) * 2  # c, e: nothing sold
    + struct.pack(">4q", 4_000, 100_000, 1, 0)  # ünï
)


def sums(*per_product: tuple[float, int, int, float]) -> bytes:
    """(units, revenue in millionths, orders, head units) per product, as stored."""
    return b"".join(
        struct.pack(">4q", round(u * 1000), r, n, round(h * 1000)) for u, r, n, h in per_product
    )


def test_a_period_round_trips_through_its_stored_form() -> None:
    cols = decode(encode(from_live(INDEX, RECORDS, SUMS)))
    assert cols.records(PRODUCTS) == RECORDS
    assert cols.codes[2] == NO_RECORD and cols.codes[3] == NO_RECORD
    assert cols.units.tolist() == [7, 0, 0, 0, 4]
    assert cols.revenue.tolist() == [17.47, 0.0, 0.0, 0.0, 0.1]  # float("17.4699...") == 17.47
    assert cols.orders.tolist() == [3, 0, 0, 0, 1]
    assert cols.head.tolist() == [0, 2, 0, 0, 0]
    assert cols.cells(PRODUCTS, 6) == {
        "6|a|u": "7",
        "6|a|r": "17.47",
        "6|a|n": "3",
        "6|b|x|h": "2",
        "6|ünï|u": "4",
        "6|ünï|r": "0.1",
        "6|ünï|n": "1",
    }


def test_the_stored_form_is_at_most_22_bytes_a_product_before_compression() -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    products = [f"P{i:06d}" for i in range(n)]
    index = pd.Index(products)
    records = {p: ("T|0.5||" if i % 2 else "C|0.5||") for i, p in enumerate(products)}
    units = rng.poisson(6.0, n)
    micros = units * 9_990_000 + rng.integers(0, 1_000_000, n)
    live = sums(*((u, r, 1, 0) for u, r in zip(units.tolist(), micros.tolist(), strict=True)))
    blob = encode(from_live(index, records, live))
    (hlen,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + hlen])
    body, at = b"", 8 + hlen
    for length in header["blocks"]:  # each block of products compressed on its own
        body += zlib.decompress(blob[at : at + length])
        at += length
    assert at == len(blob) and len(header["blocks"]) == 2  # 65,536 + 34,464 products
    assert len(body) == 22 * n  # uint16 + 3 x int32 + float64
    assert len(blob) < 22 * n
    got = decode(blob)
    assert got.units.tolist() == units.tolist()
    assert got.revenue.tolist() == (micros / 1e6).tolist()


def test_counts_too_big_for_int32_are_kept_whole() -> None:
    cols = decode(encode(from_live(pd.Index(["a"]), {"a": "T|1||"}, sums((2**40, 0, 0, 0)))))
    assert cols.units.tolist() == [2**40]


def test_a_period_with_no_sale_yet_reads_zeros_and_short_sums_are_padded() -> None:
    """No sums string before a period's first counted sale; BITFIELD grows it only up to the
    highest product code sold."""
    assert from_live(INDEX, RECORDS, None).units.tolist() == [0] * 5
    cols = from_live(INDEX, {}, sums((0, 0, 0, 0), (2, 5_000_000, 1, 0)))
    assert cols.units.tolist() == [0, 2, 0, 0, 0] and cols.revenue.tolist()[1] == 5.0


def test_pack_sums_writes_what_from_live_reads() -> None:
    live = pack_sums(np.array([7, 0]), np.array([17.47, 0.1]), np.array([3, 1]), np.array([0, 2]))
    assert live == sums((7, 17_470_000, 3, 0), (0, 100_000, 1, 2))


@pytest.mark.parametrize(
    ("records", "live", "match"),
    [
        ({"zz": "T|1||"}, None, "not in the experiment"),
        ({}, sums((0, 0, 0, 0), (1, 0, 0, 0)), "past the experiment's 1"),
        ({}, sums((1, 0, 0, 0)) + b"\x00", "not whole 64-bit fields"),
    ],
)
def test_what_would_be_dropped_silently_is_an_error(records, live, match) -> None:
    with pytest.raises(ColumnsError, match=match):
        encode(from_live(pd.Index(["a"]), records, live))


def test_a_corrupt_blob_is_named() -> None:
    blob = encode(from_live(INDEX, RECORDS, SUMS))
    with pytest.raises(ColumnsError, match="bad magic"):
        decode(b"XXXX" + blob[4:])
    with pytest.raises(ColumnsError, match="corrupt"):
        decode(blob[:-5])


def _period(n: int, seed: int = 3) -> tuple[pd.Index, dict[str, str], bytes]:
    rng = np.random.default_rng(seed)
    products = pd.Index([f"P{i:05d}" for i in range(n)])
    records = {p: ("T|0.5||" if rng.random() < 0.5 else "C|0.5||") for p in products[::3]}
    units = rng.poisson(4.0, n)
    live = sums(*((int(u), int(u) * 2_500_000, 1, 0) for u in units))
    return products, records, live


@pytest.mark.parametrize(("start", "stop"), [(0, 10), (7, 8), (9, 31), (16, 32), (30, 53), (0, 53)])
def test_a_span_of_products_is_read_from_its_blocks_alone(start: int, stop: int) -> None:
    """Issue #42: the products [start, stop) of a stored period come from the bytes of the
    blocks that hold them (what a GETRANGE of ``Header.span`` returns), equal to the whole
    period's decode sliced - across block edges, within one block, the last short block."""
    products, records, live = _period(53)
    blob = encode(from_live(products, records, live), block=16)
    whole = decode(blob)
    header = read_header(blob[:4096])
    assert not isinstance(header, int) and header.block == 16 and len(header.offsets) == 5
    first, last = header.span(start, stop)
    assert first >= header.offsets[0] and last <= len(blob)
    if (start, stop) == (16, 32):  # exactly one block: its bytes only
        assert (first, last) == (header.offsets[1], header.offsets[2])
    got = decode_span(header, blob[first:last], start, stop)
    assert got.templates == whole.templates
    for name in ("codes", "units", "revenue", "orders", "head"):
        assert getattr(got, name).tolist() == getattr(whole, name)[start:stop].tolist(), name


def test_a_header_longer_than_the_first_read_says_how_many_bytes_it_needs() -> None:
    products, records, live = _period(20)
    blob = encode(from_live(products, records, live), block=8)
    (hlen,) = struct.unpack("<I", blob[4:8])
    assert read_header(blob[:3]) == 8
    assert read_header(blob[:10]) == 8 + hlen
    header = read_header(blob[: 8 + hlen])
    assert not isinstance(header, int) and header.n == 20


def test_a_period_stored_before_blocks_is_still_read_whole_and_in_spans() -> None:
    """A ``PLC1`` period (one compressed body, as stored before issue #42) decodes as before,
    and its span is the whole body, to the blob's end."""
    products, records, live = _period(20)
    cols = from_live(products, records, live)
    arrays = [
        ("codes", cols.codes.astype("<u2")),
        ("u", cols.units.astype("<i4")),
        ("r", cols.revenue.astype("<f8")),
        ("n", cols.orders.astype("<i4")),
        ("h", cols.head.astype("<i4")),
    ]
    head = json.dumps(
        {
            "n": 20,
            "templates": list(cols.templates),
            "arrays": [[k, a.dtype.str] for k, a in arrays],
        }
    ).encode()
    body = zlib.compress(b"".join(a.tobytes() for _, a in arrays), 1)
    old = MAGIC_V1 + struct.pack("<I", len(head)) + head + body
    assert decode(old).units.tolist() == cols.units.tolist()
    header = read_header(old)
    assert not isinstance(header, int)
    first, last = header.span(5, 9)
    assert first == 8 + len(head) and last < first  # "to the end": GETRANGE first -1
    got = decode_span(header, old[first:], 5, 9)
    assert got.units.tolist() == cols.units[5:9].tolist()


def test_returns_and_goods_by_weight_come_back_exactly_and_are_stored_as_floats() -> None:
    """Units are summed in thousandths: a net return reads negative, a weight reads its
    thousandths; a period with a fractional cell keeps its units as float64 when compacted."""
    live = struct.pack(">4q", -2_000, -9_980_000, 0, 0) + struct.pack(
        ">4q", 1_250, 3_750_000, 2, 500
    )
    cols = from_live(pd.Index(["a", "b"]), {"a": "T|1||", "b": "C|1||"}, live)
    assert cols.units.tolist() == [-2.0, 1.25] and cols.head.tolist() == [0.0, 0.5]
    assert cols.revenue.tolist() == [-9.98, 3.75]
    blob = encode(cols)
    (hlen,) = struct.unpack("<I", blob[4:8])
    dtypes = dict(json.loads(blob[8 : 8 + hlen])["arrays"])
    assert dtypes["u"] == "<f8" and dtypes["h"] == "<f8" and dtypes["n"] == "<i4"
    back = decode(blob)
    assert back.units.tolist() == [-2.0, 1.25] and back.head.tolist() == [0.0, 0.5]
    assert back.cells(["a", "b"], 3) == {
        "3|a|u": "-2", "3|b|u": "1.25", "3|a|r": "-9.98", "3|b|r": "3.75", "3|b|n": "2",
        "3|b|h": "0.5",
    }  # fmt: skip
