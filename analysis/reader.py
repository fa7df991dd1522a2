"""One reader for an analyst's table: where it lives, and what its rows mean as cells.

Every command that reads an analyst's own table goes through this module: ``plan
--history``, ``analyze`` (every method), ``graph build``, ``report --panel`` and
``pricelab.analyze``. One policy, one set of sentences:

* **Where the data lives** (:func:`load_table`, :mod:`analysis.table_sources`): a CSV, a
  Parquet file, a DuckDB database file with ``--table NAME`` or ``--query "SELECT ..."``, or
  a PostgreSQL server by its URL (``postgresql://user@host:port/db``) with either.
* **Ids are text.** The unit (product) column, and the other id columns a command names, are
  read as strings: ``00121`` keeps its zeros (a CSV's column is read as text; a number stored
  in Parquet or a database becomes its digits, ``1.0`` as ``1``).
* **Several rows of one cell are one cell** (:func:`to_cells`): the additive columns (units,
  revenue, profit, the outcome) are summed, so a return (negative units) is netted into the
  sale it returns, and a sale split over rows counts once. A column that describes the cell
  (its arm, treated flag, probability, blackout, a covariate) must agree across those rows.
* **A missing product-period is zero sales** (``--missing zero``, the default): an export
  that leaves out days without a sale is filled with zeros from each product's first period in
  the data (or its ``--launch`` column) to the table's last period, and the count is said (a
  period in which no product has a row is one the table does not cover, and is not filled). A
  column that describes the cell must then be known for the filled cells: one constant within
  the product is carried to them, a carried column (a price) keeps its last value, and one
  that varies within a product (the arm of a switchback) cannot be known, so the table is
  refused with a sentence naming ``--missing drop``. ``--missing drop`` leaves missing cells
  out (a plan then excludes them like blacked-out cells; a balanced estimator refuses).
* **Currency.** A currency column (``--currency COL``; a column named ``currency``, in any
  case, is used without it) must hold one currency, or the money columns are converted with ``--rates FILE``
  (columns ``currency,rate``: the value of one unit of that currency in the currency reported)
  and every currency needs a rate. Mixed currencies are otherwise refused: summed, they mean
  nothing.
* **Periods** are whole numbers or dates (whole hours or days: labels less than an hour apart
  are times of sale, and refused; numbers that are all ``YYYYMMDD`` dates are those days); dates are read without guessing a day/month order
  (:func:`analysis.table_input.read_dates`) and compared as instants (UTC), so the same period
  written in another zone or format is the same period; one day written as two instants (with
  and without a UTC offset, or days in two zones) is refused.

Every refusal is a :class:`~analysis.errors.TableError` with one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import TableError
from analysis.table_input import check_decimal_commas, read_dates
from analysis.table_sources import (
    DATABASE_SUFFIXES,
    NoSuchFile,
    TableSource,
    as_text,
    load_table,
    read_rates,
)

MISSING_CHOICES = ("zero", "drop")
#: the currency column used without ``--currency`` when the table has it (in any case)
CURRENCY_COLUMN = "currency"


# --------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class ReadPolicy:
    """How rows become cells: the missing-cell choice, the currency and the periods' dates."""

    missing: str = "zero"
    #: the currency column (None: ``currency`` when the table has one)
    currency: str | None = None
    #: value of one unit of each currency in the currency reported (``--rates``)
    rates: Mapping[str, float] | None = None
    #: the currency every amount must be in (a spec's ``currency:``), when known
    expected_currency: str | None = None
    #: a column holding each product's first period on sale (its span starts there)
    launch: str | None = None
    dayfirst: bool | None = None
    date_format: str | None = None

    def __post_init__(self) -> None:
        if self.missing not in MISSING_CHOICES:
            raise TableError(f"--missing must be zero or drop, not {self.missing!r}.")


@dataclass(frozen=True)
class Cells:
    """A table read as one row per unit and period (sorted by both), and what reading did."""

    frame: pd.DataFrame
    #: product-periods without a row counted as zero sales
    filled: int
    #: cells in the products' spans (from each one's first period to the end)
    span_cells: int
    #: rows summed into a cell that had another row (returns, split sales)
    merged_rows: int
    notes: tuple[str, ...] = ()


def periods(
    col: pd.Series,
    name: str,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    kind: str = "time",
) -> pd.Series:
    """Period labels that sort in time order: whole numbers, or dates as UTC instants (a
    day/month order is never guessed: :func:`analysis.table_input.read_dates`). ``kind``
    names the column's role in a refusal (the ``time`` column, a ``launch`` column)."""
    if pd.api.types.is_bool_dtype(col):
        raise TableError(f"{kind} column {name!r} must hold whole period numbers or dates.")
    if pd.api.types.is_numeric_dtype(col) and date_format is None:
        values = col.to_numpy(dtype=float)
        if not np.all(np.isfinite(values) & (np.mod(values, 1) == 0)):
            raise TableError(f"{kind} column {name!r} must hold whole period numbers or dates.")
        return _yyyymmdd(col.astype(np.int64))
    if pd.api.types.is_datetime64_any_dtype(col):  # Parquet's or a database's timestamps
        return pd.Series(pd.to_datetime(col, utc=True), index=col.index, name=col.name)
    text = col.astype(str).str.strip()
    if date_format is None and text.str.fullmatch(r"[-+]?\d+").all():  # periods read as text
        return _yyyymmdd(text.astype(np.int64))
    instants = read_dates(
        col, name, dayfirst=dayfirst, date_format=date_format, utc=True, kind=kind
    )
    _one_zone(text, instants, f"{kind} column {name!r}")
    return instants


#: a time of day followed by its UTC offset: ``T00:00:00+01:00``, ``10:00Z``
_OFFSET = re.compile(r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(Z|[+-]\d\d(?::?\d\d)?)$", re.IGNORECASE)
#: a label without a time of day, or at midnight: a day
_DAY = re.compile(r"^[^:]*$|[T ]00:00(?::00(?:\.0+)?)?(?:\s*(?:Z|[+-]\d\d(?::?\d\d)?))?$", re.I)


def _one_zone(text: pd.Series, instants: pd.Series, column: str) -> None:
    """A TableError when the labels put one period at two instants: some written with a UTC
    offset and some without (read as UTC: a Berlin day's midnight is 23:00 UTC the day before,
    so the plain ``2026-03-23`` and ``2026-03-23T00:00:00+01:00`` were two periods, each
    product a zero-sale cell in the other), or days written in two zones (midnights less than
    a day apart, 23 hours allowed for a change to summer time)."""
    written = text.notna().to_numpy()  # a blank (a launch written on a product's first row
    text, instants = text[written], instants[written]  # only) is no label
    codes, uniques = pd.factorize(text)
    _, first_row = np.unique(codes, return_index=True)  # each label's first row, in order
    labels = pd.Series(np.asarray(uniques, dtype=object)).astype(str)
    offset = labels.str.extract(_OFFSET, expand=False)
    zoned = offset.notna() & ~offset.fillna("").str.fullmatch(r"(?i)z|[+-]00(:?00)?")
    if zoned.any() and offset.isna().any():
        raise TableError(
            f"{column} writes some periods with a UTC offset ({labels[zoned].iloc[0]!r}) "
            f"and some without ({labels[offset.isna()].iloc[0]!r}), so one day can be two "
            "periods: write every period with its offset, or every one without."
        )
    if len(labels) < 2 or not labels.str.contains(_DAY).all():
        return
    first = pd.Series(labels.to_numpy(), index=pd.DatetimeIndex(instants.iloc[first_row]))
    first = first[~first.index.duplicated()].sort_index()  # each instant as first written
    gaps = pd.Series(first.index).diff()
    if gaps.min() < pd.Timedelta(hours=23):
        at = int(gaps.idxmin())
        raise TableError(
            f"{column} holds days written in two time zones ({first.iloc[at - 1]!r} "
            f"and {first.iloc[at]!r} are {str(gaps[at]).removeprefix('0 days ')} apart): "
            "write every day in one zone."
        )


def _yyyymmdd(numbers: pd.Series) -> pd.Series:
    """Whole numbers that are all dates written as ``YYYYMMDD`` (20260301, as ERP exports
    write days) as those days (UTC), else as they are: read as period numbers, 31 March and
    1 April would be 70 periods apart."""
    if numbers.empty or not numbers.between(19000101, 21001231).all():
        return numbers
    days = pd.to_datetime(numbers.astype(str), format="%Y%m%d", errors="coerce", utc=True)
    if days.isna().any():
        return numbers
    return days.rename(numbers.name)


def _not_times_of_sale(times: pd.Series, name: str, what: str) -> None:
    """A TableError when the time column holds times of sale, not periods: a period is whole
    hours or days (an experiment's period), so labels less than an hour apart (10:18, 10:47)
    are sales, and each would be a period with every other product a zero-sale cell in it."""
    if not pd.api.types.is_datetime64_any_dtype(times):
        return
    labels = pd.Series(pd.DatetimeIndex(times.drop_duplicates()).sort_values())
    gaps = labels.diff()
    if len(labels) < 2 or gaps.min() >= pd.Timedelta(hours=1):
        return
    a, b = labels[gaps.idxmin() - 1], labels[gaps.idxmin()]
    raise TableError(
        f"time column {name!r} holds times of sale, not periods ({_label(a)} and {_label(b)} "
        f"are {str(b - a).removeprefix('0 days ')} apart; a period is whole hours or days): "
        f"give each row of the {what} its period (e.g. the day of the sale as a date column); "
        "the rows of a cell are then summed."
    )


def full_range(labels: pd.Index) -> pd.Index:
    """Every period from the first to the last (a gap is a period without data, not two
    neighbouring periods): whole numbers one apart, dates at the smallest step between two,
    or whole days written at a zone's midnights, which a change of clock puts 23 or 25 hours
    apart (:func:`_local_days`)."""
    if len(labels) < 2:
        return labels
    if isinstance(labels, pd.DatetimeIndex):
        step = pd.Series(labels).diff().dropna().min()
        if step > pd.Timedelta(0):
            grid = pd.date_range(labels[0], labels[-1], freq=step)
            return grid if grid.isin(labels).sum() == len(labels) else _local_days(labels, step)
        return labels
    return pd.Index(range(int(labels[0]), int(labels[-1]) + 1))


def _local_days(labels: pd.DatetimeIndex, step: pd.Timedelta) -> pd.Index:
    """Periods of whole days (``step`` within an hour of them) at a zone's midnights, with
    the days of a gap between them; the labels as they are when they are not such days. A
    day in a gap is labelled a whole number of days after the label before it, which is an
    hour off its midnight when the clock changed inside the gap (the period is right; a
    plan does not read a gap's label)."""
    hour = pd.Timedelta(hours=1)
    nominal = pd.Timedelta(days=round(step / pd.Timedelta(days=1)))
    if nominal == pd.Timedelta(0) or abs(step - nominal) > hour:
        return labels
    gaps = pd.Series(labels).diff().dropna()
    steps = (gaps / nominal).round().astype(int)
    if (abs(gaps - steps * nominal) > hour).any() or (steps < 1).any():
        return labels
    days = [labels[0]]
    for label, n in zip(labels[1:], steps, strict=True):
        days += [days[-1] + k * nominal for k in range(1, n)] + [label]
    return pd.DatetimeIndex(days)


def to_cells(
    df: pd.DataFrame,
    *,
    unit: str,
    time: str,
    sums: Sequence[str | None] = (),
    describe: Sequence[str | None] = (),
    carry: Sequence[str | None] = (),
    money: Iterable[str | None] = (),
    policy: ReadPolicy | None = None,
    what: str = "table",
) -> Cells:
    """``df`` as one row per ``unit`` and ``time`` under ``policy`` (see the module docstring).

    ``sums``: additive columns (summed over a cell's rows; zero in a filled cell). ``describe``:
    columns that describe a cell (one value per cell; a filled cell takes its product's value
    when constant within the product). ``carry``: columns such as a price, averaged over a
    cell's rows and carried forward into a filled cell. ``money``: the columns in the currency
    column's currency (converted with the policy's rates). The frame holds the unit, the time
    and those columns only, sorted by unit and time; the unit as text.
    """
    pol = policy or ReadPolicy()
    sum_cols = list(dict.fromkeys(c for c in sums if c))
    desc_cols = [c for c in dict.fromkeys(c for c in describe if c) if c not in sum_cols]
    carry_cols = [c for c in dict.fromkeys(c for c in carry if c) if c not in sum_cols + desc_cols]
    currency_col = pol.currency or _currency_column(df.columns)
    named = [unit, time, *sum_cols, *desc_cols, *carry_cols]
    named += [c for c in (pol.launch, pol.currency) if c]
    missing = [c for c in dict.fromkeys(named) if c not in df.columns]
    if missing:
        raise TableError(f"Column(s) {missing} not found; the {what} has {list(df.columns)}.")
    if df.empty:
        raise TableError(f"the {what} has no rows.")
    for col in (unit, time):
        if df[col].isna().any():
            raise TableError(
                f"column {col!r} has blank values; every row of the {what} needs a unit and a "
                "period."
            )
    check_decimal_commas(df, (*sum_cols, *carry_cols))
    out = pd.DataFrame({unit: as_text(df[unit])}, index=df.index)
    out[time] = periods(df[time], time, pol.dayfirst, pol.date_format)  # aligned, not objects
    _not_times_of_sale(out[time], time, what)
    for col in sum_cols + carry_cols:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise TableError(
                f"column {col!r} is not numeric: it has non-numeric values such as "
                f"{df.loc[bad, col].iloc[0]!r}."
            )
        if not np.isfinite(values.dropna().to_numpy(dtype=float)).all():
            raise TableError(f"column {col!r} holds infinite values.")
        out[col] = values.astype(float)
    for col in desc_cols:
        out[col] = df[col]
    notes: list[str] = []
    if currency_col is None and pol.rates is not None:
        raise TableError(
            f"--rates converts each row by its currency, but the {what} has no column named "
            "currency: name the column that holds each row's currency with --currency COL."
        )
    if currency_col is not None:
        notes += _one_currency(df[currency_col], currency_col, out, money, pol, what)
    out = out.reset_index(drop=True)
    launch = None
    if pol.launch is not None:  # each product's launch, constant within it
        when = periods(df[pol.launch], pol.launch, pol.dayfirst, pol.date_format, "launch")
        per = pd.DataFrame({"u": out[unit].to_numpy(), "l": when.to_numpy()}).groupby("u")["l"]
        several = per.nunique()
        if (several > 1).any():
            raise TableError(
                f"launch column {pol.launch!r} gives product {several.index[several > 1][0]!r} "
                "more than one launch."
            )
        launch = per.first()
    for col in sum_cols:  # a blank is no value, not zero: said, as a command may leave it out
        blank = out[col].isna()
        if blank.any():
            at = out.loc[blank].iloc[0]
            notes.append(
                f"{int(blank.sum())} row(s) of the {what} have no value in {col!r} (an empty "
                f"cell, NA or null; e.g. {at[unit]!r} at {_label(at[time])}): not zero sales, "
                "and a cell of such rows alone has no value"
            )
    out, merged = _merge_rows(out, unit, time, sum_cols, desc_cols, carry_cols, what)
    if merged:
        # a row repeated whole is summed as well, which in a table of one row per cell (an
        # export appended twice) doubles that cell: said apart, so that it can be checked
        repeated = _repeated_rows(df)
        notes.append(
            f"{merged} row(s) of the {what} shared a product and period with another and were "
            "summed into that cell (returns netted into their sales)"
        )
        if repeated:
            notes.append(
                f"{repeated} of them repeat another row in every column: if the {what} has one "
                "row per cell (an export appended twice), they double count, so remove them"
            )
    filled = span = 0
    if pol.missing == "zero":
        out, filled, span = _fill_zeros(out, unit, time, sum_cols, desc_cols, carry_cols,
                                        launch, pol, what)  # fmt: skip
        if filled:
            notes.append(
                f"{filled} product-period(s) without a row in the {what} counted as zero sales "
                f"({filled / span:.0%} of the {span} cells from each product's first period to "
                "the end); --missing drop leaves them out"
            )
    out = out.sort_values([unit, time], kind="stable").reset_index(drop=True)
    return Cells(out, filled, span or len(out), merged, tuple(notes))


def _currency_column(columns: pd.Index) -> str | None:
    """The column named ``currency`` in any case and spacing (an export's ``Currency``), the
    exact name first; None when there is none."""
    if CURRENCY_COLUMN in columns:
        return CURRENCY_COLUMN
    return next((c for c in columns if str(c).strip().lower() == CURRENCY_COLUMN), None)


def late_start_sentence(frame: pd.DataFrame, unit: str, time: str) -> str | None:
    """Why a table read with ``--missing zero`` is still unbalanced, when it is because some
    products' first row comes after the table's first period (their span starts there, and
    the cells before it are not counted as zero sales); None when no product starts late."""
    if frame.empty:
        return None
    first = frame.groupby(unit, sort=True)[time].min()
    late = first[first > frame[time].min()]
    if late.empty:
        return None
    return (
        f"{len(late)} product(s) have their first row after the table's first period (e.g. "
        f"{late.index[0]!r} from {_label(late.iloc[0]).removeprefix('period ')}), and a "
        "product's cells are counted as zero sales only from its first row, so the panel is "
        "unbalanced: give each product's first period on sale with --launch COL, or start the "
        "table at a period from which every product is on sale."
    )


def _one_currency(
    col: pd.Series,
    name: str,
    out: pd.DataFrame,
    money: Iterable[str | None],
    pol: ReadPolicy,
    what: str,
) -> list[str]:
    """The money columns of ``out`` in one currency: the table's one currency (the expected
    one, when given), or converted with the rates; a TableError otherwise."""
    if col.isna().any():
        raise TableError(f"currency column {name!r} has blank values; every amount needs one.")
    codes = col.astype(str).str.strip().str.upper()
    found = sorted(codes.unique())
    expected = pol.expected_currency.upper() if pol.expected_currency else None
    if pol.rates is None:
        if len(found) > 1:
            raise TableError(
                f"the {what}'s amounts are in {' and '.join(found)} (column {name!r}), which "
                "cannot be summed: pass --rates FILE (columns currency,rate) to convert them to "
                "one currency, or give the rows of one currency."
            )
        if expected is not None and found[0] != expected:
            raise TableError(
                f"the {what}'s amounts are in {found[0]} (column {name!r}) but the experiment's "
                f"are in {expected}: pass --rates FILE (columns currency,rate) to convert them."
            )
        return []
    rates = {str(k).strip().upper(): float(v) for k, v in pol.rates.items()}
    unknown = [c for c in found if c not in rates]
    if unknown:
        raise TableError(
            f"the rates give no rate for {unknown[0]}, which the {what}'s column {name!r} holds."
        )
    if expected is not None and abs(rates.get(expected, 1.0) - 1.0) > 1e-12:
        raise TableError(
            f"the rates convert to the currency whose rate is 1, but the experiment's currency "
            f"{expected} has rate {rates.get(expected)}."
        )
    factor = codes.map(rates).to_numpy(dtype=float)
    converted = [c for c in dict.fromkeys(m for m in money if m) if c in out.columns]
    for c in converted:
        out[c] = out[c].to_numpy(dtype=float) * factor
    if len(found) == 1 and factor[0] == 1.0:
        return []
    return [
        f"amounts in {', '.join(found)} converted with the rates ({', '.join(converted) or 'no money column'})"
    ]


def _merge_rows(
    out: pd.DataFrame,
    unit: str,
    time: str,
    sum_cols: list[str],
    desc_cols: list[str],
    carry_cols: list[str],
    what: str,
) -> tuple[pd.DataFrame, int]:
    """One row per cell: sums summed, carried columns averaged, describing ones checked."""
    dup = out.duplicated([unit, time], keep=False)
    if not dup.any():
        return out, 0
    groups = out.groupby([unit, time], sort=False, dropna=False)
    for col in desc_cols:
        n = groups[col].nunique(dropna=False)
        if (n > 1).any():
            u, t = n.index[int(np.argmax(n.to_numpy() > 1))]
            values = out.loc[(out[unit] == u) & (out[time] == t), col].unique()
            raise TableError(
                f"product {u!r} has rows with different {col!r} at {_label(t)} "
                f"({', '.join(map(str, values[:2]))}); a cell has one {col}."
            )
    agg: dict[str, Any] = dict.fromkeys(sum_cols, lambda s: s.sum(min_count=1))
    agg |= dict.fromkeys(carry_cols, "mean") | dict.fromkeys(desc_cols, "first")
    if not agg:
        merged = out.drop_duplicates([unit, time])
    else:
        merged = groups.agg(**{c: (c, f) for c, f in agg.items()}).reset_index()
    merged = merged[[unit, time, *sum_cols, *desc_cols, *carry_cols]]
    return merged, int(len(out) - len(merged))


def _label(t: Any) -> str:
    if isinstance(t, pd.Timestamp):
        return t.isoformat()
    return f"period {t}"


def _at(t: Any) -> str:
    """A period as a sentence names it after a noun: ``2026-03-16T00:00:00+00:00``, ``4``."""
    return _label(t).removeprefix("period ")


def _fill_zeros(
    out: pd.DataFrame,
    unit: str,
    time: str,
    sum_cols: list[str],
    desc_cols: list[str],
    carry_cols: list[str],
    launch: pd.Series | None,
    pol: ReadPolicy,
    what: str,
) -> tuple[pd.DataFrame, int, int]:
    """The missing cells of each product's span as zero sales; the filled count and the span."""
    # the table's own periods: one in which no product has a row is one the table does not
    # cover (a closed store, a gap in the export), not a period of zero sales everywhere
    pos, labels = pd.factorize(out[time], sort=True)
    grid = pd.Index(labels)
    ucode, units = pd.factorize(out[unit], sort=True)
    first = np.full(len(units), len(grid), dtype=np.int64)
    np.minimum.at(first, ucode, pos)
    if launch is not None and pol.launch is not None:
        first = _launch_first(first, units, launch, grid, pol.launch)
    span = int((len(grid) - first).sum())
    filled = span - len(out)
    if filled <= 0:
        return out, 0, span
    varying = []
    if desc_cols:
        per_unit = out.groupby(unit, sort=True)[desc_cols].nunique(dropna=False)
        varying = [c for c in desc_cols if (per_unit[c] > 1).any()]
    have = np.zeros((len(units), len(grid)), dtype=bool)
    have[ucode, pos] = True
    inside = np.arange(len(grid))[None, :] >= first[:, None]
    absent_u, absent_t = np.nonzero(inside & ~have)
    if varying:
        example = f"{units[absent_u[0]]!r} at {_label(grid[absent_t[0]])}"
        raise TableError(
            f"{filled} product-period(s) have no row in the {what} (e.g. {example}), and "
            f"column {varying[0]!r} varies within a product, so theirs cannot be known: write "
            "those cells, or pass --missing drop to leave them out."
        )
    rows = pd.DataFrame({unit: np.asarray(units, dtype=object)[absent_u],
                         time: grid[absent_t]})  # fmt: skip
    for col in sum_cols:
        rows[col] = 0.0
    if desc_cols:
        constant = out.groupby(unit, sort=True)[desc_cols].first()
        for col in desc_cols:
            rows[col] = constant[col].reindex(rows[unit]).to_numpy()
    for col in carry_cols:
        rows[col] = np.nan
    both = pd.concat([out, rows], ignore_index=True)
    both = both.sort_values([unit, time], kind="stable").reset_index(drop=True)
    if carry_cols:
        both[carry_cols] = both.groupby(unit, sort=False)[carry_cols].ffill()
    return both, int(filled), span


def _repeated_rows(df: pd.DataFrame) -> int:
    """How many rows repeat an earlier row in every column. A column of lists, arrays or
    mappings (Parquet, DuckDB, JSON) cannot be hashed: its values are compared as written."""
    try:
        return int(df.duplicated().sum())
    except TypeError:
        return int(df.astype(str).duplicated().sum())


def _launch_first(
    first: np.ndarray, units: Any, launch: pd.Series, grid: pd.Index, name: str
) -> np.ndarray:
    """Each product's first period: its launch (``launch``, by product) when earlier; a
    launch before the table's first period starts it there."""
    when = pd.Index(launch.reindex(pd.Index(units)).to_numpy())
    at = np.where(when < grid[0], 0, grid.get_indexer(when))
    if (at < 0).any():
        i = int(np.flatnonzero(at < 0)[0])
        if pd.isna(when[i]):
            raise TableError(
                f"launch column {name!r} gives product {units[i]!r} no launch (its cells are "
                "blank): write each product's launch, or leave out --launch."
            )
        k = int(grid.searchsorted(when[i]))
        near = min(grid[max(k - 1, 0) : k + 1], key=lambda g: abs(g - when[i]))
        raise TableError(
            f"launch column {name!r} gives product {units[i]!r} the launch {_at(when[i])}, which "
            f"is not one of the table's periods (the nearest: {_at(near)}): write each launch "
            "as the time column writes its periods (a day written at a zone's midnight is not "
            "the plain date)."
        )
    return np.minimum(first, at)


__all__ = [
    "CURRENCY_COLUMN",
    "DATABASE_SUFFIXES",
    "MISSING_CHOICES",
    "Cells",
    "NoSuchFile",
    "ReadPolicy",
    "TableSource",
    "as_text",
    "full_range",
    "late_start_sentence",
    "load_table",
    "periods",
    "read_rates",
    "to_cells",
]
