"""What an analyst's own table means: its dates and its decimal commas, read without guessing.

:func:`read_dates` turns a column of period labels written as dates into timestamps. ISO and
other year-first dates (2025-03-14, 2025/03/14) are unambiguous. A day and a month written as
numbers (03/04/2025) are read day-first or month-first only when the data settles it (a first
field above 12 proves day-first, a second one month-first) or the user says so (``--dayfirst``,
``--monthfirst``, ``--date-format``); otherwise one sentence names those options. Nothing is
guessed: a silently misread date puts the days of one fortnight across ten months.

:func:`check_decimal_commas` finds a numeric column written with decimal commas (``169,83``)
and says to pass ``--decimal ,``; pandas' ``read_csv(decimal=",")`` then reads it.

Every refusal is a :class:`~analysis.errors.PanelError` with one sentence.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.errors import PanelError

#: day and month as numbers, then a four-digit year, then anything (a time of day)
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})(?!\d)(.*)$")
#: year first: 2025-03-14, 2025/03/14 (a time of day may follow)
_YEAR_FIRST = re.compile(r"^\s*\d{4}([/.\-])\d{1,2}\1\d{1,2}(?!\d)")
#: a date written with numbers only (no month name), in some order: 03/03/25, 3.3.2025
_NUMBERS_ONLY = re.compile(r"^\s*\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}(?!\d)")
#: The number patterns below are ASCII: ``\d`` also matches other scripts' digits (Arabic-Indic
#: ``١٢``, which pandas' parser does not read), and a decimal-comma file's column holding them
#: was taken for numbers and stopped pandas with "Unable to parse string".
#: a decimal comma, with or without thousands dots: 169,83  -1.234,5
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+\s*$", re.ASCII)
#: a whole number with thousands dots, as a decimal-comma file writes 1234: 1.234  -2.000.000
_THOUSANDS_DOTS = re.compile(r"^\s*[-+]?\d{1,3}(\.\d{3})+\s*$", re.ASCII)
#: a whole number with a thousands comma, as a US export writes 1200: 1,200  -2,000
_THOUSANDS_COMMA = re.compile(r"^\s*[-+]?[1-9]\d{0,2},\d{3}\s*$", re.ASCII)
#: a number with thousands commas, as a US export writes it: 1,200  12,345,678  -1,234.56
_US_NUMBER = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$", re.ASCII)
#: a number as a decimal-comma file writes it: 169,83  1.234,50  1.234  1234
_WRITTEN_NUMBER = re.compile(
    "|".join(f"(?:{p.pattern})" for p in (_DECIMAL_COMMA, _THOUSANDS_DOTS))
    + r"|(?:^\s*[-+]?\d+\s*$)",
    re.ASCII,
)

#: the rows a reader looks at first: a column whose first rows hold a non-number is not read
#: as numbers (decimal_commas_to_numbers), and ids whose first rows are text are left to
#: pandas to infer (table_sources)
FIRST_ROWS = 1000

DATE_OPTIONS = "--dayfirst or --monthfirst (or --date-format FORMAT, e.g. %d/%m/%Y)"


def looks_like_dates(col: pd.Series) -> bool:
    """Whether a text column's labels are dates written with numbers (03/03/2025, 2025-03-03)."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        return False
    values = pd.Series(pd.unique(col.dropna())).astype(str)
    return bool(len(values)) and bool(values.str.match(_NUMBERS_ONLY).all())


def read_dates(
    col: pd.Series,
    name: str,
    *,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    utc: bool = True,
    kind: str = "time",
) -> pd.Series:
    """The column's labels as timestamps (UTC when ``utc``), each distinct label parsed once.

    ``date_format`` (strftime codes) reads every label that way; ``dayfirst`` settles the
    order of a day and a month written as numbers. Without either, that order must follow
    from the data, or a :class:`PanelError` names the options that settle it. ``kind`` names
    the column's role in those sentences (``time``, ``launch``).
    """
    column = f"{kind} column {name!r}"  # the column as each sentence names it
    codes, uniques = pd.factorize(col)
    text = pd.Series(np.asarray(uniques, dtype=object)).astype(str)
    if date_format is not None:
        parsed = pd.to_datetime(text, format=date_format, utc=utc, errors="coerce")
        if parsed.isna().any():
            bad = text[parsed.isna()].iloc[0]
            raise PanelError(
                f"{column} holds {bad!r}, which does not match --date-format {date_format!r}."
            )
    else:
        parsed = _parse(text, column, dayfirst, utc)
    if pd.api.types.is_datetime64_any_dtype(parsed):  # taken as timestamps, not objects
        taken = pd.DatetimeIndex(parsed).take(codes, allow_fill=True, fill_value=pd.NaT)
        return pd.Series(taken, index=col.index, name=col.name)
    values = parsed.to_numpy()[codes]
    out = pd.Series(values, index=col.index, name=col.name)
    out[codes < 0] = pd.NaT
    return pd.to_datetime(out, utc=utc) if utc else out


def _parse(text: pd.Series, column: str, dayfirst: bool | None, utc: bool) -> pd.Series:
    parts = text.str.extract(_DAY_MONTH)
    day_month = parts[0].notna()
    if day_month.all():
        first, second = parts[0].astype(int), parts[2].astype(int)
        if _day_first(first, second, text, column, dayfirst):
            day, month = first, second
        else:
            day, month = second, first
        iso = parts[3] + "-" + month.map("{:02d}".format) + "-" + day.map("{:02d}".format)
        return _to_datetime(iso + parts[4].str.rstrip(), text, column, utc)
    if day_month.any():  # 03/04/2025 beside 2025-04-03, or beside total
        raise _not_all_alike(column, text[day_month].iloc[0], text[~day_month].iloc[0])
    year_first = text.str.match(_YEAR_FIRST)
    if year_first.all():
        return _to_datetime(text, text, column, utc)
    if year_first.any():  # 2026-03-01 beside yesterday, 03/01/26, 1 March 2026 or 20260301
        raise _not_all_alike(column, text[year_first].iloc[0], text[~year_first].iloc[0])
    numbers = text[text.str.match(_NUMBERS_ONLY)]
    if len(numbers):  # 03/03/25: which field is the year, and which the day?
        raise PanelError(
            f"{column} holds dates like {numbers.iloc[0]!r} whose order of day, "
            "month and year is not settled; pass --date-format FORMAT (e.g. %d/%m/%y)."
        )
    return _to_datetime(text, text, column, utc)  # month names: 3 March 2025, Mar 3 2025


def _not_all_alike(column: str, date: str, other: str) -> PanelError:
    """The sentence for a column of dates like ``date`` with ``other`` among them: a date
    written another way (``1 March 2026`` or ``20260301`` beside ``2026-03-01``), or a value
    that is no date at all (``yesterday``, ``total``)."""
    if _a_date(other):
        return PanelError(
            f"{column} writes dates in more than one way (e.g. {date!r} and {other!r}); write "
            "them one way or pass --date-format FORMAT."
        )
    return PanelError(
        f"{column} must hold period numbers or dates, not values like {other!r} (its other "
        f"values are dates like {date!r})."
    )


def _a_date(label: str) -> bool:
    """Whether a label is a date written some way: in numbers only (03/01/26), or with a
    four-digit year in a form pandas reads (1 March 2026, Mar 1 2026, 20260301); not a word
    (yesterday, today) and not a period number."""
    if _NUMBERS_ONLY.match(label):
        return True
    if re.search(r"\d{4}", label) is None:
        return False
    return not pd.isna(pd.to_datetime(label, format="mixed", errors="coerce"))


def _day_first(
    first: pd.Series, second: pd.Series, text: pd.Series, column: str, dayfirst: bool | None
) -> bool:
    """Whether ``first`` holds the days: from the data (a field above 12 is not a month), or
    from ``dayfirst`` when the data allows both; a PanelError when neither settles it."""
    beyond_first, beyond_second = first > 12, second > 12
    if beyond_first.any() and beyond_second.any():
        bad = text[beyond_second].iloc[0] if beyond_first.any() else text[beyond_first].iloc[0]
        raise PanelError(
            f"{column} holds {bad!r}, which is not a date in the order of its other "
            "values (a day above 12 comes first in some and second in others)."
        )
    if dayfirst is True and beyond_second.any():
        bad = text[beyond_second].iloc[0]
        raise PanelError(
            f"{column} holds {bad!r}, which is not day-first (its second number is "
            "above 12); drop --dayfirst."
        )
    if dayfirst is False and beyond_first.any():
        bad = text[beyond_first].iloc[0]
        raise PanelError(
            f"{column} holds {bad!r}, which is not month-first (its first number is "
            "above 12); drop --monthfirst."
        )
    if dayfirst is not None:
        return dayfirst
    if beyond_first.any():
        return True
    if beyond_second.any():
        return False
    example = text[first != second].iloc[0] if (first != second).any() else text.iloc[0]
    a, b, year = (int(x) for x in _DAY_MONTH.match(example).group(1, 3, 4))  # type: ignore[union-attr]
    raise PanelError(
        f"{column} holds dates like {example!r}, which read as {a} "
        f"{calendar.month_name[b]} {year} (day first) or {b} {calendar.month_name[a]} {year} "
        f"(month first); pass {DATE_OPTIONS}."
    )


def _to_datetime(values: pd.Series, text: pd.Series, column: str, utc: bool) -> pd.Series:
    parsed = pd.to_datetime(values, format="mixed", utc=utc, errors="coerce")
    if parsed.isna().any():
        bad = text[parsed.isna().to_numpy()].iloc[0]
        raise PanelError(f"{column} must hold period numbers or dates, not values like {bad!r}.")
    return parsed


def check_decimal_commas(df: pd.DataFrame, columns: Iterable[str | None]) -> None:
    """A PanelError naming ``--decimal ,`` when a column meant to be numeric holds text such
    as ``169,83``; other problems are left to the reader that needs the numbers."""
    for column in dict.fromkeys(c for c in columns if c is not None and c in df.columns):
        values = df[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = pd.Series(pd.unique(values.dropna())).astype(str)
        comma = text[text.str.match(_DECIMAL_COMMA)]
        if not len(comma):
            continue
        # a value that is a number in no notation (١٨, 12 kg): with --decimal , given, the
        # column was left as text for it, and "pass --decimal ," would be wrong advice. A
        # number is one as written, with a decimal comma (1.234,5  1,5e3  ,5), or with
        # thousands commas (1,234.56  12,345,678: a US export, whose advice follows)
        swapped = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        odd = text[
            ~text.str.match(_WRITTEN_NUMBER)
            & ~text.str.match(_US_NUMBER)
            & pd.to_numeric(text, errors="coerce").isna()
            & pd.to_numeric(swapped, errors="coerce").isna()
        ]
        if len(odd):
            raise PanelError(
                f"column {column!r} holds {odd.iloc[0]!r}, which is not a number, beside numbers "
                f"written like {comma.iloc[0]!r}: write every value of it as a number."
            )
        decimal = comma[~comma.str.match(_THOUSANDS_COMMA)]
        if len(decimal):  # 169,83: no thousands comma has two digits after it
            raise PanelError(
                f"column {column!r} holds values like {decimal.iloc[0]!r}, which looks like "
                "decimal commas: pass --decimal ,"
            )
        # 1,200 alone: 1.2 written with a decimal comma, or 1200 with a thousands comma (a
        # US export); --decimal , read a US revenue 1,200 as 1.2
        example = comma.iloc[0]
        raise PanelError(
            f"column {column!r} holds values like {example!r}, which is "
            f"{float(example.replace(',', '.')):g} with a decimal comma or "
            f"{int(example.replace(',', ''))} with a thousands separator: pass --decimal , if "
            "commas are decimal marks, or write the numbers without thousands separators."
        )


def decimal_commas_to_numbers(df: pd.DataFrame, keep: Iterable[str] = ()) -> pd.DataFrame:
    """``df`` with every text column whose values are all numbers written with a decimal
    comma (``169,83``, ``1.234,50``), thousands dots (``1.234``) or as whole numbers as floats,
    except the ``keep`` columns; for a decimal-comma file, whose thousands dots pandas leaves as
    text. A date written with dots (``01.03.2026``) is not such a number and stays text.

    pandas reads a long file in chunks and infers each chunk's columns alone, so a column can
    hold the numbers of one chunk (12.5) beside the text of another (``1.234,50``): the
    numbers count as read."""
    out = df.copy(deep=False)  # copy-on-write: a column set in out is not set in df
    keep = set(keep)  # asked once a column: a generator would be spent by the first
    for column in out.columns:
        values = out[column]
        if column in keep or pd.api.types.is_numeric_dtype(values):
            continue
        # a value of the first rows that is no such number (a day 01.03.2026, a name) is a
        # distinct value of the column: it stays text, without a look at every row
        if not _as_numbers_written(_distinct(values.iloc[:FIRST_ROWS])[3]).all():
            continue
        # each distinct value once: a column of 180 days in 900,000 rows is 180 matches
        codes, read, numbers, text = _distinct(values)
        if not len(text) or not _as_numbers_written(text).all():
            continue
        if not pc.any(pc.match_substring_regex(text, "[.,]")).as_py():
            continue  # whole numbers only: 1234, not 1.234
        parsed = np.empty(len(read))
        parsed[read] = numbers
        number = pc.replace_substring(pc.replace_substring(text, ".", ""), ",", ".")
        parsed[~read] = _numbers(number)
        taken = np.append(parsed, np.nan)[codes]  # code -1, a blank: the NaN at the end
        out[column] = pd.Series(taken, index=values.index, dtype=float, copy=False)
    return out


#: _WRITTEN_NUMBER for pyarrow's regular expressions (RE2: its \s leaves out \v)
_WRITTEN_NUMBER_RE2 = _WRITTEN_NUMBER.pattern.replace(r"\s", r"[ \t\n\r\f\v]").replace(
    r"\d", "[0-9]"
)
#: a number pyarrow and pandas read alike: at most 15 digits, below 2**53 and exact in a
#: float, divided by an exact power of ten (pandas' to_numeric does that; pyarrow rounds
#: the decimal correctly: the same float)
_PLAIN_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"


def _distinct(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """``values``' codes and distinct values (blanks left out): which of those are numbers
    already (only a column of objects, mixed, holds both), those numbers, and the others as
    text (each as ``str()`` writes it), in an Arrow array."""
    codes, uniques = pd.factorize(values)
    if isinstance(values.dtype, pd.StringDtype):  # pandas' str dtype: text, held by Arrow
        return codes, np.zeros(len(uniques), dtype=bool), np.empty(0), pa.array(uniques)
    given = np.asarray(uniques, dtype=object)
    read = np.zeros(len(given), dtype=bool)
    if values.dtype == object:  # only a mixed column is objects
        read = np.fromiter(map(_a_number, given), dtype=bool, count=len(given))
    text = pd.Series(given[~read], dtype=object).astype(str)
    return codes, read, given[read].astype(float), pa.array(text, type=pa.large_string())


def _as_numbers_written(text: pa.Array) -> np.ndarray:
    """Which values match _WRITTEN_NUMBER."""
    matched = pc.match_substring_regex(text, _WRITTEN_NUMBER_RE2)
    return np.asarray(matched.to_numpy(zero_copy_only=False), dtype=bool)


def _numbers(number: pa.Array) -> np.ndarray:
    """Text such as ``-1234.5`` as floats, as ``pd.to_numeric`` reads it; by pyarrow when it
    reads each alike (no -0, whose sign pandas drops when the column holds whole numbers)."""
    if pc.all(pc.match_substring_regex(number, _PLAIN_DECIMAL)).as_py() and (
        pc.max(pc.utf8_length(number)).as_py() <= 15
    ):
        floats = pc.cast(number, pa.float64()).to_numpy()
        if not np.any((floats == 0) & np.signbit(floats)):
            return floats
    text = pd.Series(number.to_numpy(zero_copy_only=False), dtype=object).astype(str)
    return pd.to_numeric(text).astype(float).to_numpy()


def _a_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


__all__ = [
    "DATE_OPTIONS",
    "FIRST_ROWS",
    "check_decimal_commas",
    "decimal_commas_to_numbers",
    "looks_like_dates",
    "read_dates",
]
