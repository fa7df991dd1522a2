"""The CSV reader's shortcuts give the answers of the long way (analysis/table_sources.py,
analysis/table_input.py): ids inferred by pandas only where pandas infers text, a space
after a separator dropped wherever it is in the file, each distinct id or number turned once.
Each test holds a file where a shortcut taken too far would change the answer; the whole
reader against main's on many files is benchmarks/diff_reader.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.reader import TableSource, as_text, load_table
from analysis.table_input import _WRITTEN_NUMBER, _as_numbers_written, _numbers

# pandas' own chunk of rows when it reads a file alone (low_memory): each is inferred alone
CHUNK = 131_072


def test_a_space_after_a_separator_only_in_the_last_row_is_dropped(tmp_path: Path) -> None:
    """The space is found past the first MiB piece of the UTF-8 pass, so `` NA`` is a blank
    and `` EU`` is ``EU`` there as well."""
    path = tmp_path / "late_space.csv"
    path.write_text("sku,units,region\n" + "P1,1,EU\n" * 200_000 + "P2, NA, EU\n")
    df = load_table(TableSource(path), ("sku", "region"))
    assert df["units"].dtype == float and np.isnan(df["units"].iloc[-1])
    assert df["region"].iloc[-1] == "EU" and df["sku"].iloc[-1] == "P2"


def test_a_space_cut_from_its_separator_by_the_passs_pieces_is_dropped(tmp_path: Path) -> None:
    """The separator is the last byte of the first MiB and the space the first of the next."""
    header, row = "sku,units\n", "P1,1\n"
    prefix = header + row * ((2**20 - len(header)) // len(row) - 1)
    body = prefix + "P" + "x" * (2**20 - len(prefix) - 2) + ","  # the id, then the separator
    assert len(body) == 2**20
    path = tmp_path / "cut.csv"
    path.write_text(body + " NA\n" + row)
    df = load_table(TableSource(path), ("sku",))
    assert df["units"].dtype == float and np.isnan(df["units"].iloc[-2])


def test_a_space_at_the_files_start_after_a_bom_is_dropped(tmp_path: Path) -> None:
    """`` "units"`` begins the file after its BOM: without the space, a quoted name."""
    path = tmp_path / "bom.csv"
    path.write_text('\ufeff "units",sku\n3,P1\n')
    assert list(load_table(TableSource(path), ("sku",)).columns) == ["units", "sku"]


def test_a_space_at_a_lines_start_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "line_start.csv"
    path.write_text("units,sku\n NA,P1\n3,P2\n")
    df = load_table(TableSource(path), ("sku",))
    assert np.isnan(df["units"].iloc[0]) and df["units"].iloc[1] == 3


@pytest.mark.parametrize("decimal", [".", ","])
def test_ids_written_as_numbers_below_the_first_chunk_keep_their_zeros(
    tmp_path: Path, decimal: str
) -> None:
    """The first rows' ids are words, so pandas is let infer the column; its last chunk
    holds only numbers (``00121``, ``1,5``), read as 121 and 1.5 there: read as told."""
    sep = "," if decimal == "." else ";"
    path = tmp_path / "late_numbers.csv"
    rows = [f"P{i % 50}{sep}{i % 9}\n" for i in range(2 * CHUNK)]
    rows += [f"00121{sep}1\n", f"1,5{sep}2\n" if decimal == "," else f"007{sep}2\n"]
    path.write_text(f"sku{sep}units\n" + "".join(rows))
    df = load_table(TableSource(path, decimal=decimal), ("sku",))
    last = ["00121", "1,5" if decimal == "," else "007"]
    assert df["sku"].dtype == object and df["sku"].iloc[-2:].tolist() == last


def test_a_chunk_of_blank_ids_is_blank_and_not_said_mixed(tmp_path: Path) -> None:
    """Ids in the first rows, then a chunk of blank ids: pandas infers that chunk as floats
    and warns of mixed types, which the read as told does not (filterwarnings: error)."""
    path = tmp_path / "blank_chunk.csv"
    path.write_text("sku,units\n" + "P1,1\n" * 10 + ",2\n" * (2 * CHUNK))
    df = load_table(TableSource(path), ("sku",))
    assert df["sku"].iloc[:10].tolist() == ["P1"] * 10 and df["sku"].iloc[10:].isna().all()
    assert df["sku"].iloc[-1] is np.nan  # a blank id is NaN, as it always was


@pytest.mark.parametrize("dtype", [object, str])
def test_as_text_turns_each_id_as_written(dtype: object) -> None:
    col = pd.Series([" 00121 ", None, "  ", "a", " 00121 "], dtype=dtype, index=[5, 4, 3, 2, 1])
    got = as_text(col)
    assert got.dtype == object and got.index.tolist() == [5, 4, 3, 2, 1]
    assert [v if isinstance(v, str) else "NaN" for v in got] == [
        "00121",
        "NaN",
        "NaN",
        "a",
        "00121",
    ]
    assert got.iloc[1] is np.nan and got.iloc[2] is np.nan


def test_as_text_keeps_objects_that_compare_equal_apart() -> None:
    """1, 1.0 and True are one key to pandas' factorize; each is written its own way."""
    got = as_text(pd.Series([1, 1.0, True, "1"], dtype=object))
    assert got.tolist() == ["1", "1.0", "True", "1"]


def test_a_number_column_with_a_date_below_its_first_rows_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "late_date.csv"
    path.write_text("sku;d\n" + "P1;1,5\n" * 1200 + "P2;01.03.2026\n")
    df = load_table(TableSource(path, decimal=","), ("sku",))
    assert df["d"].iloc[0] == "1,5" and df["d"].iloc[-1] == "01.03.2026"


def test_the_number_pattern_matches_as_pythons_does() -> None:
    """pyarrow's RE2 and Python's re: \\s with \\v, no other script's digits or spaces, a
    line break inside a value."""
    values = ["1,5", " 1,5 ", "\v1,5", "1,5\v", "1.234,50", "1.23", "١٢", "12\u00a0", "1,5\n",
              "1\n2", "+3", "-2.000", "1.234.567", "12 kg", "", "1,2,3", "0001.234,5"]  # fmt: skip
    got = _as_numbers_written(pa.array(values)).tolist()
    assert got == [_WRITTEN_NUMBER.match(v) is not None for v in values]
    assert got[:6] == [True, True, True, True, True, False]


def test_numbers_are_read_as_pd_to_numeric_reads_them() -> None:
    """pyarrow reads plain decimals of up to 15 characters; -0 and longer ones by pandas
    (a whole -0 is 0.0 to pandas)."""
    rng = np.random.default_rng(3)
    values = [
        f"{'-' if rng.random() < 0.3 else ''}{rng.integers(0, 10**9)}.{rng.integers(0, 10**5):05d}"
        for _ in range(2_000)
    ]
    cases = [values, ["-0", "1234", "7"], ["-0", "1.5"], ["12345678901234567.5", "0.1"]]
    for case in cases:
        want = pd.to_numeric(pd.Series(case, dtype=object)).astype(float).to_numpy()
        got = _numbers(pa.array(case))
        assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
    assert re.fullmatch(r"-?\d+(\.\d+)?", values[0])
