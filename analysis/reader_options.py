"""The options of every command that reads an analyst's table through :mod:`analysis.reader`
(``analyze``, ``plan``, ``graph build``), declared once so they read and behave alike.

The reader (and pandas) is imported only when a command reads a table: declaring the options
costs nothing, so ``--help``, and a command that fails its options, start at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the reader imports pandas: a command's help and parsing do without it
    from analysis.reader import ReadPolicy, TableSource

#: the CSV options of every command that reads an analyst's table (analyze, plan, graph build)
SepOption = Annotated[
    str | None, typer.Option("--sep", help="CSV separator, e.g. ';' (default: detect).")
]
DecimalOption = Annotated[
    str,
    typer.Option(
        "--decimal",
        help="Decimal mark of the CSV's numbers: '.' (default) or ',' (169,83); with ',' the "
        "separator is usually ';' (detected, or --sep ';').",
    ),
]
DayfirstOption = Annotated[
    bool | None,
    typer.Option(
        "--dayfirst/--monthfirst",
        help="Read dates such as 03/04/2025 day first (3 April) or month first (March 4). "
        "Needed only when the data does not settle it (no day above 12); never guessed.",
        show_default=False,
    ),
]
DateFormatOption = Annotated[
    str | None,
    typer.Option(
        "--date-format",
        help="strftime format of the dates, e.g. %d/%m/%Y or %m/%d/%y (default: ISO dates, or "
        "day/month dates whose order the data or --dayfirst/--monthfirst settles).",
    ),
]


TableOption = Annotated[
    str | None,
    typer.Option(
        "--table",
        help="With a DuckDB database file (.duckdb, .ddb, .db) or a PostgreSQL URL "
        "(postgresql://user@host/db): the table to read (a DuckDB file of one table needs no "
        "--table).",
    ),
]
QueryOption = Annotated[
    str | None,
    typer.Option(
        "--query",
        help="With a DuckDB database file or a PostgreSQL URL: a SQL query whose result is the "
        "table, e.g. "
        '"SELECT * FROM sales WHERE store = 4".',
    ),
]
MissingOption = Annotated[
    str,
    typer.Option(
        "--missing",
        help="A product-period without a row: zero (default: zero sales, from the product's "
        "first period, or --launch, to the end; the count is noted) or drop (left out).",
    ),
]
CurrencyOption = Annotated[
    str | None,
    typer.Option(
        "--currency",
        help="Column of each row's currency (default: a column named currency, in any case); mixed "
        "currencies are refused unless --rates converts them.",
    ),
]
RatesOption = Annotated[
    Path | None,
    typer.Option(
        "--rates",
        help="Table of columns currency,rate: the value of one unit of each currency in the "
        "currency reported; the money columns are converted with it.",
    ),
]
LaunchOption = Annotated[
    str | None,
    typer.Option(
        "--launch",
        help="Column of each product's first period on sale: with --missing zero, its zero "
        "sales count from there (default: its first row).",
    ),
]


def table_source(
    path: Path, table: str | None, query: str | None, sep: str | None, decimal: str
) -> TableSource:
    from analysis.reader import TableSource

    return TableSource(path, table=table, query=query, sep=sep, decimal=decimal)


def read_policy(
    missing: str,
    currency: str | None,
    rates: Path | None,
    launch: str | None,
    dayfirst: bool | None,
    date_format: str | None,
    expected_currency: str | None = None,
) -> ReadPolicy:
    """The policy the options give (the rates table read now: a TableError names a bad one)."""
    from analysis.reader import ReadPolicy, read_rates

    return ReadPolicy(
        missing=missing,
        currency=currency,
        rates=None if rates is None else read_rates(rates),
        expected_currency=expected_currency,
        launch=launch,
        dayfirst=dayfirst,
        date_format=date_format,
    )


__all__ = [
    "CurrencyOption",
    "LaunchOption",
    "MissingOption",
    "QueryOption",
    "RatesOption",
    "TableOption",
    "read_policy",
    "table_source",
]
