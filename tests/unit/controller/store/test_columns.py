"""A closed period's columnar form: what the live state holds comes back exactly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from controller.store.columns import (
    NO_RECORD,
    ColumnsError,
    decode,
    encode,
    from_live,
    pack_sums,
)

PRODUCTS = ["a", "b|x", "c", "e", "ünï"]
INDEX = pd.Index(PRODUCTS)
RECORDS = {"a": "T|0.5||", "b|x": "C|0.5||", "ünï": "T|0.5|1780000000000|washout"}
# the live sums as the ingest script's BITFIELD writes them, written out here independently:
# per product code, big-endian int64 units, revenue in millionths, orders, head units
SUMS = (
    struct.pack(">4q", 7, 17_470_000, 3, 0)  # a
    + struct.pack(">4q", 0, 0, 0, 2)  # b|x
    + struct.pack(">4q", 0, 0, 0, 0) * 2  # c, e: nothing sold
    + struct.pack(">4q", 4, 100_000, 1, 0)  # ünï
)


def sums(*per_product: tuple[int, int, int, int]) -> bytes:
    return b"".join(struct.pack(">4q", *row) for row in per_product)


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
    assert len(zlib.decompress(blob[8 + hlen :])) == 22 * n  # uint16 + 3 x int32 + float64
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
