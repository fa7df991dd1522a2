"""The one reader (analysis/reader.py): where a table lives, and its policy said in one
sentence each (the pairs that must agree are in test_metamorphic_reader.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from analysis.errors import PanelError, TableError
from analysis.reader import ReadPolicy, TableSource, load_table, read_rates, to_cells
from controller.errors import SpecError
from controller.spec import load_spec_file


def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": ["00121", "00121", "00007", "00121", "00007"],
            "day": ["2026-01-01", "2026-01-03", "2026-01-02", "2026-01-03", "2026-01-04"],
            "units": [2, 3, 1, -1, 4],
            "arm": ["a", "a", "b", "a", "b"],
        }
    )


def test_a_cells_rows_are_summed_and_missing_days_are_zero_sales_within_each_span() -> None:
    cells = to_cells(sales(), unit="sku", time="day", sums=["units"], describe=["arm"])
    got = cells.frame.assign(day=cells.frame["day"].dt.strftime("%m-%d"))
    assert got.to_dict("list") == {
        "sku": ["00007", "00007", "00007", "00121", "00121", "00121", "00121"],
        "day": ["01-02", "01-03", "01-04", "01-01", "01-02", "01-03", "01-04"],
        "units": [1.0, 0.0, 4.0, 2.0, 0.0, 2.0, 0.0],  # the return netted: 3 - 1
        "arm": ["b", "b", "b", "a", "a", "a", "a"],  # constant within a product: carried
    }
    assert (cells.filled, cells.span_cells, cells.merged_rows) == (3, 7, 1)
    assert "3 product-period(s) without a row" in cells.notes[1] and "43%" in cells.notes[1]
    dropped = to_cells(sales(), unit="sku", time="day", sums=["units"],
                       policy=ReadPolicy("drop"))  # fmt: skip
    assert len(dropped.frame) == 4 and dropped.filled == 0


def test_a_launch_column_starts_a_products_span_before_its_first_sale() -> None:
    df = sales().assign(launch="2026-01-01")
    cells = to_cells(df, unit="sku", time="day", sums=["units"], policy=ReadPolicy(launch="launch"))
    assert cells.filled == 4 and len(cells.frame) == 8


def test_what_the_policy_cannot_read_is_one_sentence() -> None:
    varying = sales()
    varying.loc[4, "arm"] = "a"
    with pytest.raises(TableError, match=r"column 'arm' varies within a product.*--missing drop"):
        to_cells(varying, unit="sku", time="day", sums=["units"], describe=["arm"])
    two_arms = pd.concat([sales(), sales().iloc[[0]].assign(arm="b")])
    with pytest.raises(TableError, match="rows with different 'arm'"):
        to_cells(two_arms, unit="sku", time="day", sums=["units"], describe=["arm"])
    with pytest.raises(TableError, match="--missing must be zero or drop"):
        ReadPolicy("skip")
    with pytest.raises(TableError, match=r"\['qty'\] not found"):
        to_cells(sales(), unit="sku", time="day", sums=["qty"])
    with pytest.raises(PanelError, match="--decimal ,"):
        to_cells(sales().assign(units="1,5"), unit="sku", time="day", sums=["units"])


def test_mixed_currencies_need_rates_and_rates_need_every_currency(tmp_path: Path) -> None:
    df = sales().assign(revenue=10.0, currency=["EUR", "EUR", "GBP", "EUR", "GBP"])
    with pytest.raises(TableError, match="in EUR and GBP .*--rates FILE"):
        to_cells(df, unit="sku", time="day", sums=["revenue"], money=["revenue"])
    rates = tmp_path / "rates.csv"
    pd.DataFrame({"currency": ["eur", "GBP"], "rate": [1.0, 1.25]}).to_csv(rates, index=False)
    policy = ReadPolicy(rates=read_rates(rates))
    cells = to_cells(df, unit="sku", time="day", sums=["revenue"], money=["revenue"],
                     policy=policy)  # fmt: skip
    assert cells.frame.groupby("sku")["revenue"].sum().to_dict() == {"00007": 25.0, "00121": 30.0}
    with pytest.raises(TableError, match="no rate for GBP"):
        to_cells(df, unit="sku", time="day", sums=["revenue"], money=["revenue"],
                 policy=ReadPolicy(rates={"EUR": 1.0}))  # fmt: skip
    one = df.assign(currency="GBP")
    with pytest.raises(TableError, match="in GBP .* experiment's are in EUR"):
        to_cells(one, unit="sku", time="day", sums=["revenue"], money=["revenue"],
                 policy=ReadPolicy(expected_currency="EUR"))  # fmt: skip
    named = df.rename(columns={"currency": "ccy"})  # another column, named by --currency
    with pytest.raises(TableError, match="in EUR and GBP \\(column 'ccy'\\)"):
        to_cells(named, unit="sku", time="day", sums=["revenue"], money=["revenue"],
                 policy=ReadPolicy(currency="ccy"))  # fmt: skip
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"currency": ["EUR"], "rate": [0.0]}).to_csv(bad, index=False)
    with pytest.raises(TableError, match="positive number in every rate"):
        read_rates(bad)


def test_ids_are_text_in_every_form(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    sales().to_csv(csv, index=False)
    assert load_table(csv, ("sku",))["sku"].tolist()[:2] == ["00121", "00121"]
    stored = sales().assign(sku=[121.0, np.nan, 7.0, 121.0, 7.0])  # a number with blanks
    pq = tmp_path / "s.parquet"
    stored.to_parquet(pq)
    read = load_table(pq, ("sku",))["sku"]
    assert read.where(read.notna(), None).tolist() == ["121", None, "7", "121", "7"]


def test_a_duckdb_database_is_read_by_table_or_query(tmp_path: Path) -> None:
    path = tmp_path / "sales.duckdb"
    con = duckdb.connect(str(path))
    con.register("frame", sales())
    con.execute("CREATE TABLE sales AS SELECT * FROM frame")
    con.close()
    alone = load_table(TableSource(path), ("sku",))  # one table: no --table needed
    assert alone["sku"].tolist() == sales()["sku"].tolist()
    query = TableSource(path, query="SELECT sku, units FROM sales WHERE units > 1")
    assert load_table(query)["units"].tolist() == [2, 3, 4]
    with pytest.raises(TableError, match="has no table 'sale' \\(its tables: sales\\)"):
        load_table(TableSource(path, table="sale"))
    with pytest.raises(TableError, match="the query on sales.duckdb failed"):
        load_table(TableSource(path, query="SELECT nope FROM sales"))
    with pytest.raises(TableError, match="not both"):
        load_table(TableSource(path, table="sales", query="SELECT 1"))
    csv = tmp_path / "s.csv"
    sales().to_csv(csv, index=False)
    with pytest.raises(TableError, match="read a DuckDB database"):
        load_table(TableSource(csv, table="sales"))
    fake = tmp_path / "fake.duckdb"
    fake.write_text("not a database")
    with pytest.raises(TableError, match="fake.duckdb is not a DuckDB database"):
        load_table(TableSource(fake))


def test_an_unquoted_numeric_id_in_a_yaml_spec_says_to_quote_it(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "id: x\ndesign: random-days\ntreatment_policy: t\ncontrol_policy: c\n"
        "start: 2026-01-01\nend: 2026-01-10\nproducts: [00001, 00010]\n"
    )
    with pytest.raises(SpecError, match=r"products\.0: .*quote ids in YAML, e\.g\. '00001'"):
        load_spec_file(spec)


@pytest.mark.parametrize("sep", [";", ","])
def test_decimal_comma_files_read_their_thousands_dots_as_thousands(
    tmp_path: Path, sep: str
) -> None:
    """A German export (``--decimal ,``) writes 1234 units as ``1.234`` and 1234.50 EUR as
    ``1.234,50``; neither is 1.234, and neither is a reason to ask for ``--decimal ,`` again.
    A date written with dots (``01.03.2026``) stays a date."""
    path = tmp_path / "de.csv"
    q = '"' if sep == "," else ""
    path.write_text(
        f"sku{sep}day{sep}units{sep}revenue\n"
        f"00001{sep}01.03.2026{sep}1.234{sep}{q}1.234,50{q}\n"
        f"00001{sep}02.03.2026{sep}12{sep}{q}12,00{q}\n"
        f"00002{sep}01.03.2026{sep}2.000{sep}{q}3,00{q}\n"
        f"00002{sep}02.03.2026{sep}1{sep}{q}4,25{q}\n",
        encoding="utf-8",
    )
    df = load_table(TableSource(path, decimal=","), ("sku",))
    cells = to_cells(df, unit="sku", time="day", sums=["units", "revenue"],
                     policy=ReadPolicy(dayfirst=True))  # fmt: skip
    assert cells.frame["units"].tolist() == [1234.0, 12.0, 2000.0, 1.0]
    assert cells.frame["revenue"].tolist() == [1234.5, 12.0, 3.0, 4.25]
    assert cells.frame["day"].dt.strftime("%Y-%m-%d").tolist() == ["2026-03-01", "2026-03-02"] * 2


@pytest.mark.parametrize("sep", [",", ";"])
def test_an_export_that_ends_every_row_with_a_separator_keeps_its_columns(
    tmp_path: Path, sep: str
) -> None:
    """Many exports end each row with the separator (``00121,2026-01-01,3,``). pandas then
    takes the first column for the index and shifts every name one column to the left: the
    ids became the dates, the periods the units. The columns stay where the header puts them."""
    path = tmp_path / "export.csv"
    path.write_text(
        f"sku{sep}day{sep}units\n00121{sep}2026-01-01{sep}3{sep}\n00007{sep}2026-01-01{sep}5{sep}\n",
        encoding="utf-8",
    )
    df = load_table(TableSource(path), ("sku",))
    assert df[["sku", "day", "units"]].to_dict("list") == {
        "sku": ["00121", "00007"],
        "day": ["2026-01-01", "2026-01-01"],
        "units": [3, 5],
    }


@pytest.mark.parametrize("name", ["Currency", "CURRENCY", " currency "])
def test_a_currency_column_is_found_whatever_its_case(name: str) -> None:
    """An export's ``Currency`` column is its currency column: EUR and GBP rows summed
    silently because the header was capitalised are the wrong answer the policy exists for."""
    df = sales().assign(revenue=10.0, **{name: ["EUR", "EUR", "GBP", "EUR", "GBP"]})
    with pytest.raises(TableError, match=f"EUR and GBP \\(column {name!r}\\)"):
        to_cells(df, unit="sku", time="day", sums=["revenue"], money=["revenue"])


def test_sale_timestamps_are_not_taken_for_periods() -> None:
    """A transaction export's time of sale (10:18, 17:56, ...) made every minute in which
    something sold a period of its own, and every other product a zero-sale cell there: graph
    build answered with exit 0 on 'periods' a minute apart. A period is whole hours or days,
    so such a column is refused in one sentence that says to give each row its period."""
    df = pd.DataFrame(
        {
            "sku": ["00121", "00121", "00007", "00121", "00007"],
            "ts": [
                "2026-01-01 10:18",
                "2026-01-01 17:56",
                "2026-01-01 09:01",
                "2026-01-02 12:30",
                "2026-01-02 12:47",
            ],  # fmt: skip
            "units": [1, 1, 2, 1, -1],
        }
    )
    with pytest.raises(TableError, match=r"'ts' holds times of sale, not periods .* its period"):
        to_cells(df, unit="sku", time="ts", sums=["units"])


@pytest.mark.parametrize("freq", ["1h", "6h", "1D"])
def test_hours_and_days_are_periods(freq: str) -> None:
    times = pd.date_range("2026-01-01 08:00", periods=6, freq=freq).strftime("%Y-%m-%d %H:%M")
    df = pd.DataFrame({"sku": ["a"] * 6 + ["b"] * 6, "ts": list(times) * 2, "units": 1.0})
    df = df.drop(index=[2, 9])  # a gap is a period without a row, not an irregular instant
    assert len(to_cells(df, unit="sku", time="ts", sums=["units"]).frame) == 12


def test_a_header_that_names_a_column_twice_is_refused(tmp_path: Path) -> None:
    """``sku,day,units,units``: pandas reads the second as ``units.1`` and every command read
    the first alone, the returns in the second left out with exit 0."""
    path = tmp_path / "dup.csv"
    path.write_text("sku,day,units,units\n00001,2026-03-01,3,-1\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"names column 'units' twice"):
        load_table(TableSource(path), ("sku",))


def test_dates_written_as_yyyymmdd_numbers_are_days() -> None:
    """An ERP export writes 1 March 2026 as 20260301. Read as a period number, the last day
    of March (20260331) and the first of April (20260401) were 70 periods apart: plan's history
    had 69 empty periods between every two months. They are the days they write."""
    from lab.plan import read_history

    iso = pd.DataFrame(
        {
            "sku": ["a", "a", "a", "b", "b", "b"],
            "day": ["2026-03-30", "2026-03-31", "2026-04-01"] * 2,
            "units": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    ymd = iso.assign(day=iso["day"].str.replace("-", "").astype(int))
    a, b = read_history(iso, "sku", "day", "units"), read_history(ymd, "sku", "day", "units")
    assert b.n_periods == a.n_periods == 3
    assert b.times == a.times
    cells = to_cells(ymd, unit="sku", time="day", sums=["units"])
    assert pd.api.types.is_datetime64_any_dtype(cells.frame["day"])
    np.testing.assert_array_equal(a.Y, b.Y)


def test_an_id_written_with_spaces_around_it_is_the_same_id(tmp_path: Path) -> None:
    """``00121`` and ``00121 `` (a padded export, an edited cell) are one product: as two,
    each took half the sales and zeros on the other half's days."""
    path = tmp_path / "padded.csv"
    path.write_text(
        "sku,day,units\n00121,2026-01-01,3\n00121 ,2026-01-02,2\n 00007,2026-01-01,1\n"
        "00007,2026-01-02,4\n",
        encoding="utf-8",
    )
    cells = to_cells(load_table(TableSource(path), ("sku",)), unit="sku", time="day",
                     sums=["units"])  # fmt: skip
    assert cells.frame["sku"].tolist() == ["00007", "00007", "00121", "00121"]
    assert (cells.filled, cells.frame["units"].tolist()) == (0, [1.0, 4.0, 3.0, 2.0])


def test_rates_without_a_currency_column_are_refused() -> None:
    """``--rates`` given for a table whose currency column is called ``cur`` (no
    ``--currency cur``): the rates were ignored and EUR and GBP summed with exit 0."""
    df = sales().assign(revenue=10.0, cur=["EUR", "EUR", "GBP", "EUR", "GBP"])
    with pytest.raises(TableError, match="--currency COL"):
        to_cells(df, unit="sku", time="day", sums=["revenue"], money=["revenue"],
                 policy=ReadPolicy(rates={"EUR": 1.0, "GBP": 1.2}))  # fmt: skip


def _parquet_named_csv(path: Path) -> None:
    sales().to_parquet(path.with_suffix(".parquet"))
    path.with_suffix(".parquet").rename(path)


@pytest.mark.parametrize(
    ("name", "write", "said"),
    [
        ("dir.csv", lambda p: p.mkdir(), r"dir.csv is a directory, not a table"),
        ("empty.csv", lambda p: p.write_bytes(b""), r"empty.csv is empty"),
        ("empty.parquet", lambda p: p.write_bytes(b""), r"empty.parquet is empty"),
        ("blank.csv", lambda p: p.write_bytes(b"\r\n\r\n"), r"blank.csv has no header"),
        (
            "cp1252.csv",
            lambda p: p.write_bytes("sku;day;units\nMüsli;2026-01-01;3\n".encode("cp1252")),
            r"cp1252.csv is not UTF-8 text \(byte 0xfc at position 15\)",
        ),
        ("table.csv", _parquet_named_csv, r"table.csv is a Parquet file .* name it table.parquet"),
        (
            "table.parquet",
            lambda p: p.write_text("sku,day,units\n1,2026-01-01,3\n"),
            r"table.parquet is not a Parquet file",
        ),
        (
            "ragged.csv",
            lambda p: p.write_text("sku,day,units\n1,2026-01-01,3\n1,2026-01-02,3,4\n"),
            r"ragged.csv cannot be split into columns .* quote the fields",
        ),
        (
            "unclosed.csv",
            lambda p: p.write_text('sku,day,units\n"1,2026-01-01,3\n2,2026-01-02,3\n'),
            r"unclosed.csv cannot be split into columns \(.*EOF inside string starting at row 1\): "
            "close the quote that opens there.",
        ),
    ],
)
def test_a_file_that_is_no_table_is_one_sentence_naming_it(
    tmp_path: Path, name: str, write: object, said: str
) -> None:
    """A directory, an empty file, a legacy code page or a Parquet file under the wrong
    name: pandas' own errors (``[Errno 21]``, ``No columns to parse from file``, a codec's
    message) named no file, and ``graph build`` and ``report`` showed them as tracebacks."""
    path = tmp_path / name
    write(path)  # type: ignore[operator]
    with pytest.raises(TableError, match=said):
        load_table(TableSource(path), ("sku",))


def test_a_row_longer_than_the_header_is_refused_not_read_shifted(tmp_path: Path) -> None:
    """``A,1,1,0,1`` (1,0 an unquoted decimal comma) under ``sku,day,units,treated``: pandas
    dropped the last field with a ParserWarning and read units 1 and treated 0, and
    ``analyze`` printed the shifted table's estimate with exit 0."""
    path = tmp_path / "shifted.csv"
    path.write_text("sku,day,units,treated\nA,1,1,0,1\nA,2,12,1\nB,1,8,0\nB,2,6,0\n")
    with pytest.raises(TableError, match=r"more fields than its header \(row 1: 5, the header 4\)"):
        load_table(TableSource(path), ("sku",))


def test_one_day_written_in_two_zones_is_refused_not_read_as_two_periods() -> None:
    """Two exports appended: one writes the day ``2026-03-23``, the other its Berlin midnight
    ``2026-03-23T00:00:00+01:00`` (22 March, 23:00 UTC). Read as two periods, each product
    had a zero-sale cell in the other, and ``analyze --method dm`` halved the effect with
    exit 0 (a note said 44% of the cells were filled)."""
    df = pd.DataFrame(
        {
            "sku": ["a", "a", "b", "b"],
            "day": ["2026-03-23", "2026-03-24", "2026-03-23T00:00:00+01:00", "2026-03-24"],
            "units": [1.0, 2.0, 3.0, 4.0],
        }
    )
    with pytest.raises(TableError, match=r"some periods with a UTC offset .* and some without"):
        to_cells(df, unit="sku", time="day", sums=["units"])
    utc = df.assign(day=df["day"].where(df["day"].str.contains("T"), df["day"] + "T00:00:00Z"))
    with pytest.raises(TableError, match=r"days written in two time zones .* 01:00:00 apart"):
        to_cells(utc, unit="sku", time="day", sums=["units"])


def test_berlin_days_across_the_change_to_summer_time_are_one_zone() -> None:
    """Midnights in Berlin on 29 and 30 March 2026 are 23 hours apart: days of one zone."""
    days = ["2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"]
    df = pd.DataFrame({"sku": ["a"] * 3 + ["b"] * 3, "day": days * 2, "units": 1.0})
    cells = to_cells(df, unit="sku", time="day", sums=["units"])
    assert (len(cells.frame), cells.filled) == (6, 0)
    # the same instants written in UTC, some rows of each day, are the same days
    df.loc[[1, 3], "day"] = ["2026-03-28T23:00:00Z", "2026-03-27T23:00:00+00:00"]
    assert len(to_cells(df, unit="sku", time="day", sums=["units"]).frame) == 6


def test_a_text_column_keeps_the_words_pandas_reads_as_missing(tmp_path: Path) -> None:
    """Category ``NA`` (North America) and product ``None`` are names: read as blanks,
    ``graph build`` put the ``NA`` category's products into another category (a blank's code
    -1 picked the last) and tested pairs across them with exit 0. A number column still reads
    ``NA`` as missing, and an empty id cell is still blank."""
    path = tmp_path / "names.csv"
    path.write_text("sku,region,units\nNone,NA,NA\n00121,EU,3\n,EU,null\n")
    df = load_table(TableSource(path), ("sku", "region"))
    assert df["sku"].tolist()[:2] == ["None", "00121"] and pd.isna(df["sku"].iloc[2])
    assert df["region"].tolist() == ["NA", "EU", "EU"]
    assert df["units"].isna().tolist() == [True, False, True]


def test_a_row_repeated_in_every_column_is_said_apart_from_the_rows_summed() -> None:
    """A panel of one row per cell with one row twice (an export appended to itself): the row
    was summed into its cell, doubling it, under a note about returns netted into sales."""
    df = pd.DataFrame(
        {
            "sku": ["a", "a", "a", "b", "b"],
            "day": [1, 1, 2, 1, 2],
            "units": [3.0, 3.0, 4.0, 1.0, 2.0],
        }
    )
    cells = to_cells(df, unit="sku", time="day", sums=["units"])
    assert cells.frame["units"].tolist() == [6.0, 4.0, 1.0, 2.0]  # summed, as every cell's rows
    assert cells.notes[1] == (
        "1 of them repeat another row in every column: if the table has one row per cell (an "
        "export appended twice), they double count, so remove them"
    )
    # a sale and its return, or two sales of one day, are rows of one cell, not repeats
    sale = df.assign(units=[3.0, -1.0, 4.0, 1.0, 2.0])
    assert len(to_cells(sale, unit="sku", time="day", sums=["units"]).notes) == 1


def test_a_csv_with_a_space_after_each_separator_reads_as_without(tmp_path: Path) -> None:
    """``sku, day, units``: the columns were `` day`` and `` units`` (``--time day`` not
    found), `` NA`` no blank, and the ids read as numbers (``00121`` as ``121``)."""
    plain, spaced = tmp_path / "plain.csv", tmp_path / "spaced.csv"
    plain.write_text("sku,day,units\n00121,2026-03-01,3\n00121,2026-03-02,NA\nNA,2026-03-02,4\n")
    spaced.write_text(plain.read_text().replace(",", ", "))
    a = load_table(TableSource(plain), ("sku",))
    b = load_table(TableSource(spaced), ("sku",))
    pd.testing.assert_frame_equal(a, b)
    assert list(b.columns) == ["sku", "day", "units"] and b["sku"].tolist() == [
        "00121",
        "00121",
        "NA",
    ]


def test_a_blank_outcome_is_said_not_taken_for_zero_sales() -> None:
    """``NA`` in a history's units: ``plan`` left the cell out as if blacked out without a
    word (``analyze`` refuses the panel), and in a cell with other rows it added nothing."""
    df = sales().assign(units=[2.0, np.nan, 1.0, -1.0, np.nan])
    cells = to_cells(df, unit="sku", time="day", sums=["units"], describe=["arm"])
    assert cells.notes[0] == (
        "2 row(s) of the table have no value in 'units' (an empty cell, NA or null; e.g. "
        "'00121' at 2026-01-03T00:00:00+00:00): not zero sales, and a cell of such rows alone "
        "has no value"
    )
    got = cells.frame.set_index(["sku", cells.frame["day"].dt.strftime("%m-%d")])["units"]
    assert got[("00121", "01-03")] == -1.0 and np.isnan(got[("00007", "01-04")])


def test_a_launch_that_is_no_period_names_the_launch_and_the_nearest_period() -> None:
    """Days written at Berlin's midnights and launches as plain dates: the sentence said only
    that P01's launch was 'not one of the table's periods', which it looked like it was."""
    df = pd.DataFrame(
        {
            "sku": ["P01", "P01", "P02", "P02"],
            "day": ["2026-03-16T00:00:00+01:00", "2026-03-17T00:00:00+01:00"] * 2,
            "units": 1.0,
            "launch": "2026-03-16",
        }
    )
    with pytest.raises(TableError) as err:
        to_cells(df, unit="sku", time="day", sums=["units"], policy=ReadPolicy(launch="launch"))
    assert str(err.value) == (
        "launch column 'launch' gives product 'P01' the launch 2026-03-16T00:00:00+00:00, which "
        "is not one of the table's periods (the nearest: 2026-03-15T23:00:00+00:00): write each "
        "launch as the time column writes its periods (a day written at a zone's midnight is not "
        "the plain date)."
    )


def test_a_launch_written_on_each_products_first_row_only_is_read() -> None:
    """Launches on two dates, blank on every other row (review of 2026-11-29): the check that
    each day is written in one zone took the blanks for labels and stopped on pandas'
    'Length of values (2) does not match length of index (3)'."""
    df = pd.DataFrame(
        {
            "sku": ["A", "A", "A", "B", "B"],
            "day": ["2026-03-16", "2026-03-17", "2026-03-18", "2026-03-18", "2026-03-19"],
            "units": [1, 2, 3, 4, 5],
            "launch": ["2026-03-16", None, None, "2026-03-17", None],
        }
    )
    cells = to_cells(df, unit="sku", time="day", sums=["units"], policy=ReadPolicy(launch="launch"))
    # B launched on the 17th: a zero-sale cell that day, before its first sale on the 18th
    b = cells.frame[cells.frame["sku"] == "B"]
    assert b["units"].tolist() == [0, 4, 5]


def test_a_product_with_no_launch_is_one_sentence() -> None:
    df = pd.DataFrame(
        {
            "sku": ["A", "A", "B", "B"],
            "day": ["2026-03-16", "2026-03-17", "2026-03-16", "2026-03-17"],
            "units": [3, 4, 5, 2],
            "launch": ["2026-03-16", "2026-03-16", None, None],
        }
    )
    with pytest.raises(TableError, match=r"^launch column 'launch' gives product 'B' no launch"):
        to_cells(df, unit="sku", time="day", sums=["units"], policy=ReadPolicy(launch="launch"))


def test_rows_with_a_list_column_are_merged_and_their_repeats_said(tmp_path: Path) -> None:
    """A Parquet list column (tags): telling repeated rows apart hashed every column and
    stopped on 'unhashable type: numpy.ndarray'. The first two rows repeat each other whole."""
    path = tmp_path / "tags.parquet"
    pd.DataFrame(
        {
            "sku": ["A", "A", "A", "B", "B"],
            "day": ["2026-03-16", "2026-03-16", "2026-03-17", "2026-03-16", "2026-03-17"],
            "units": [2, 2, 4, 5, 3],
            "tags": [["promo"], ["promo"], [], [], ["x"]],
        }
    ).to_parquet(path)
    cells = to_cells(
        load_table(TableSource(path), ("sku",)), unit="sku", time="day", sums=["units"]
    )
    assert cells.frame["units"].tolist() == [4, 4, 5, 3]
    assert any("1 of them repeat another row in every column" in n for n in cells.notes)


def test_a_file_that_ends_inside_a_character_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes("sku,day,units\n1,2026-01-01,3\nM\u00fcller,2026-01-01,".encode() + b"\xc3")
    # 14 bytes of header, 15 of the first row, 7 of "Müller" (ü is two), 12 more: the 49th
    with pytest.raises(TableError, match=r"cut.csv is not UTF-8 text \(byte 0xc3 at position 48\)"):
        load_table(TableSource(path), ("sku",))


def test_a_character_cut_by_the_checks_piece_boundary_is_placed_where_it_begins(
    tmp_path: Path,
) -> None:
    """The UTF-8 check reads 1 MiB pieces; a two-byte letter whose lead byte ends a piece is
    held back by the decoder, and an error in it was placed one byte past that lead byte."""
    path = tmp_path / "cut.csv"
    head = b"sku,day,units\n"
    filler = b"x" * ((1 << 20) - 1 - len(head))  # the lead byte is the piece's last
    path.write_bytes(head + filler + b"\xc3(,2026-01-01,3\n")
    with pytest.raises(TableError, match=r"is not UTF-8 text \(byte 0xc3 at position 1048575\)"):
        load_table(TableSource(path), ("sku",))
    path.write_bytes(head + filler + b"\xc3\xbc\xff,2026-01-01,3\n")  # ü whole, then 0xff
    with pytest.raises(TableError, match=r"is not UTF-8 text \(byte 0xff at position 1048577\)"):
        load_table(TableSource(path), ("sku",))


def test_a_separator_of_more_than_one_character_is_one_sentence(tmp_path: Path) -> None:
    """``--sep '\\t'`` typed in a shell is two characters, a backslash and a t: the header
    check's csv reader stopped with a TypeError, a traceback."""
    path = tmp_path / "tabs.csv"
    path.write_text("sku\tday\tunits\n00121\t2026-01-01\t3\n")
    with pytest.raises(TableError, match=r"^--sep must be one character .* not '\\\\t'\.$"):
        load_table(TableSource(path, sep="\\t"), ("sku",))


def test_a_separator_outside_ascii_is_one_sentence_naming_it(tmp_path: Path) -> None:
    """pandas' C reader splits on one byte: for ``--sep §`` it fell back to its python engine
    with a ParserWarning, which the reader reported as rows longer than the header."""
    path = tmp_path / "section.csv"
    path.write_text("sku\u00a7day\u00a7units\n00121\u00a72026-01-01\u00a73\n")
    with pytest.raises(
        TableError, match=r"^--sep must be an ASCII character such as ';', not '\u00a7'\.$"
    ):
        load_table(TableSource(path, sep="\u00a7"), ("sku",))


def test_ids_keep_their_zeros_below_a_blank_first_line(tmp_path: Path) -> None:
    """pandas skips a blank line above the header; the text columns were looked for in that
    blank line, found nowhere, and the ids read as numbers (``00121`` as ``121``)."""
    path = tmp_path / "blank_first.csv"
    path.write_text("\nsku,region,units\n00121,NA,3\n00007,EU,NA\n")
    df = load_table(TableSource(path), ("sku", "region"))
    assert df["sku"].tolist() == ["00121", "00007"]
    assert df["region"].tolist() == ["NA", "EU"]
    assert df["units"].iloc[0] == 3 and pd.isna(df["units"].iloc[1])


def test_thousands_dots_far_down_a_decimal_comma_file_are_read(tmp_path: Path) -> None:
    """pandas reads a long file in chunks and infers each chunk's columns on its own: with
    ``1.234,50`` only below the first chunk (131,072 rows of four columns), a column holds
    floats above and text below, and pandas' DtypeWarning ("mixed types") reached the user's
    screen. Every one of its numbers is read, and nothing is said."""
    n = 140_000
    revenue = ["12,50"] * n
    revenue[-1] = "1.234,50"
    units = ["3"] * n
    units[-1] = "1.234"
    body = "".join(
        f"{i % 7:05d};2026-03-0{1 + i // 70_000};{u};{r}\n"
        for i, (u, r) in enumerate(zip(units, revenue, strict=True))
    )
    path = tmp_path / "long.csv"
    path.write_text("sku;day;units;revenue\n" + body)
    df = load_table(TableSource(path, decimal=","), ("sku",))
    assert df["revenue"].dtype == float and df["units"].dtype == float
    assert (df["revenue"].iloc[0], df["revenue"].iloc[-1]) == (12.5, 1234.5)
    assert (df["units"].iloc[0], df["units"].iloc[-1]) == (3.0, 1234.0)


@pytest.mark.parametrize(
    ("launch", "said"),
    [
        (
            ["2026-03-16", "yesterday"],
            r"^launch column 'launch' must hold period numbers or dates, ",
        ),
        ([1.5, 2.0], r"^launch column 'launch' must hold whole period numbers or dates\.$"),
        (
            ["2026-03-16", "16/03/2026"],
            r"^launch column 'launch' writes dates in more than one way",
        ),
    ],
)
def test_a_launch_that_cannot_be_read_is_said_of_the_launch_column(
    launch: list[object], said: str
) -> None:
    """The sentence said ``time column 'launch'``: the launch column is not the time column
    (``--time day`` read well), and the user looked for the fault in the wrong one."""
    df = pd.DataFrame(
        {
            "sku": ["A", "A", "B", "B"],
            "day": ["2026-03-16", "2026-03-17"] * 2,
            "units": [3, 4, 5, 2],
            "launch": [launch[0], launch[0], launch[1], launch[1]],
        }
    )
    with pytest.raises((TableError, PanelError), match=said):
        to_cells(df, unit="sku", time="day", sums=["units"], policy=ReadPolicy(launch="launch"))


def test_decimal_commas_keep_every_kept_column_when_told_by_a_generator() -> None:
    """``keep`` was asked ``column in keep`` once a column: a generator was spent by the
    first question, and a kept id column written ``1,5`` after it became the number 1.5."""
    from analysis.table_input import decimal_commas_to_numbers

    df = pd.DataFrame({"units": ["1,5", "2,5"], "sku": ["1,5", "2,5"], "lot": ["3,5", "4,5"]})
    got = decimal_commas_to_numbers(df, (c for c in ("sku", "lot")))
    assert got["units"].tolist() == [1.5, 2.5]
    assert got["sku"].tolist() == ["1,5", "2,5"] and got["lot"].tolist() == ["3,5", "4,5"]
