"""A closed period's columnar form: what the live hashes hold comes back exactly."""

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
    from_hashes,
)

PRODUCTS = ["a", "b|x", "c", "e", "ünï"]
INDEX = pd.Index(PRODUCTS)
RECORDS = {"a": "T|0.5||", "b|x": "C|0.5||", "ünï": "T|0.5|1780000000000|washout"}
CELLS = {
    "a|u": "7",
    "a|r": "17.469999999999999",
    "a|n": "3",
    "b|x|h": "2",
    "ünï|u": "4",
    "ünï|r": "0.1",
    "ünï|n": "1",
}


def test_a_period_round_trips_through_its_stored_form() -> None:
    cols = decode(encode(from_hashes(INDEX, RECORDS, CELLS)))
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
    cells = {}
    for p, u in zip(products, units.tolist(), strict=True):
        cells |= {f"{p}|u": str(u), f"{p}|r": repr(u * 9.99 + rng.random()), f"{p}|n": "1"}
    blob = encode(from_hashes(index, records, cells))
    (hlen,) = struct.unpack("<I", blob[4:8])
    assert len(zlib.decompress(blob[8 + hlen :])) == 22 * n  # uint16 + 3 x int32 + float64
    assert len(blob) < 22 * n
    assert decode(blob).units.tolist() == units.tolist()


def test_counts_too_big_for_int32_are_kept_whole() -> None:
    cols = decode(encode(from_hashes(pd.Index(["a"]), {"a": "T|1||"}, {"a|u": str(2**40)})))
    assert cols.units.tolist() == [2**40]


@pytest.mark.parametrize(
    ("records", "cells", "match"),
    [
        ({"zz": "T|1||"}, {}, "not in the experiment"),
        ({}, {"zz|u": "1"}, "outside the experiment"),
        ({}, {"a|q": "1"}, "outside the experiment"),
        ({}, {"a|u": "1.5"}, "not a whole number"),
        ({}, {"u": "1"}, "outside the experiment"),
    ],
)
def test_what_would_be_dropped_silently_is_an_error(records, cells, match) -> None:
    with pytest.raises(ColumnsError, match=match):
        encode(from_hashes(pd.Index(["a"]), records, cells))


def test_a_corrupt_blob_is_named() -> None:
    blob = encode(from_hashes(INDEX, RECORDS, CELLS))
    with pytest.raises(ColumnsError, match="bad magic"):
        decode(b"XXXX" + blob[4:])
    with pytest.raises(ColumnsError, match="corrupt"):
        decode(blob[:-5])
