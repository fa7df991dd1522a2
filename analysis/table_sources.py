"""Where an analyst's table lives, read as it is written: a CSV (separator detected, or
``--sep``; ``--decimal ,``), a Parquet file, JSON lines, a DuckDB database file (``.duckdb``,
``.ddb``, ``.db``) with ``--table NAME`` or ``--query SQL`` (a database of one table needs
neither), or a PostgreSQL server by its URL (``postgresql://user@host:port/db``) with
``--table`` or ``--query``. DuckDB reads the file (read only), the server's ADBC driver the
server (the ``postgres`` extra); no SQL is written here but a table's ``SELECT *``. The id
columns a command names are read as text (``00121`` keeps its zeros; ``NA`` is a name, only an
empty cell is blank). A CSV must be UTF-8 text whose rows have no more fields than its header;
a space after each separator is not part of the names or values. What the rows mean as cells
is :mod:`analysis.reader`'s; every refusal here is a :class:`~analysis.errors.TableError` with
one sentence naming the file (a missing file: :class:`NoSuchFile`).
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from analysis.errors import TableError
from analysis.table_input import FIRST_ROWS, decimal_commas_to_numbers

DATABASE_SUFFIXES = (".duckdb", ".ddb", ".db")
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATORS = (";", ",", "\t", "|")
#: the cells pandas reads as missing by default (NA, null, None, NaN, an empty cell ...), given
#: per column with keep_default_na=False so that a text column can have only the empty cell
_PANDAS_NA = sorted(STR_NA_VALUES)
#: a PostgreSQL URL, also after a path type has folded its double slash
_SERVER_URL = re.compile(r"^(postgres(?:ql)?):/+", re.IGNORECASE)
#: pandas' text dtype, as ``dtype=str`` reads a column and as it infers one of text
_TEXT = pd.api.types.pandas_dtype(str)


class NoSuchFile(FileNotFoundError):
    """A table that is not there, said as a sentence (``PATH: no such file``) wherever the
    error is printed, not as ``[Errno 2] ...``."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


# --------------------------------------------------------------------------- where it lives
@dataclass(frozen=True)
class TableSource:
    """Where a table lives: a file, and for a database its table or query; a CSV's format."""

    path: Path
    table: str | None = None
    query: str | None = None
    sep: str | None = None
    decimal: str = "."

    @property
    def is_database(self) -> bool:
        return self.path.suffix.lower() in DATABASE_SUFFIXES

    @property
    def shown(self) -> str:
        """The path, or the URL without its password, for a sentence."""
        url = self.url
        return str(self.path) if url is None else _without_password(url)

    @property
    def url(self) -> str | None:
        """A PostgreSQL server's URL (``postgresql://user@host:port/db``), or None for a file;
        a URL given where a path is expected has lost a slash (``postgresql:/host``)."""
        match = _SERVER_URL.match(str(self.path))
        return None if match is None else f"{match.group(1)}://{str(self.path)[match.end() :]}"


def load_table(source: TableSource | Path, text: Iterable[str | None] = ()) -> pd.DataFrame:
    """The table as read, its ``text`` columns as strings (ids keep their zeros)."""
    src = source if isinstance(source, TableSource) else TableSource(Path(source))
    names = tuple(dict.fromkeys(c for c in text if c))
    if src.decimal not in (".", ","):
        raise TableError(f"--decimal must be '.' or ',', not {src.decimal!r}.")
    url = src.url
    if url is None and not src.path.exists():
        raise NoSuchFile(2, "no such file", str(src.path))
    if (src.table is not None or src.query is not None) and not src.is_database and url is None:
        raise TableError(
            f"--table and --query read a DuckDB database ({', '.join(DATABASE_SUFFIXES)}) or a "
            f"PostgreSQL URL, not {src.path.name}."
        )
    suffix = src.path.suffix.lower()
    if url is None:
        _a_file_with_data(src.path)
    if url is not None:
        df = _read_server(url, src)
    elif src.is_database:
        df = _read_database(src)
    elif suffix in PARQUET_SUFFIXES:
        df = _read_parquet(src.path)
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(src.path, lines=suffix == ".jsonl", dtype=dict.fromkeys(names, str))
    else:
        df = _read_csv(src, names)
    if any(isinstance(c, str) and c != c.strip() for c in df.columns):
        # ``product, day, units``: a CSV written with a space after each comma named its
        # columns " day" and " units", and --time day was not found
        df = df.rename(columns=lambda c: c.strip() if isinstance(c, str) else c)
    for col in names:
        if col in df.columns:
            df[col] = as_text(df[col])
    return df


def _a_file_with_data(path: Path) -> None:
    """A TableError when ``path`` is a directory or an empty file: pandas would say
    ``[Errno 21] Is a directory`` or ``No columns to parse from file``, naming no file."""
    if path.is_dir():
        raise TableError(
            f"{path} is a directory, not a table: give a CSV, a Parquet file or a DuckDB database."
        )
    if path.stat().st_size == 0:
        raise TableError(f"{path.name} is empty: it has no header and no rows.")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise TableError(
            f"{path.name} is not a Parquet file that can be read ({type(exc).__name__}); a "
            f"CSV is read by its own name, e.g. {path.stem}.csv."
        ) from None


def _utf8_text(path: Path, sep: str | None = None) -> bool:
    """A TableError when a CSV is not UTF-8 text: a Parquet file named .csv, or an export in
    a legacy code page (Excel's "CSV" in Windows-1252), whose first foreign letter would
    otherwise stop pandas with a codec's message.

    Also, in the same pass over the bytes, whether a field may begin with a space (a space at
    a line's start, or after a usual separator or ``sep``): only then does the read need
    ``skipinitialspace``, which makes pandas' read about a third slower."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    starts = _field_starts(sep)
    spaced = starts is None
    before = b"\n"  # the file's first byte begins a line
    at = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if at == 0 and chunk.startswith(b"PAR1"):
                raise TableError(
                    f"{path.name} is a Parquet file (it begins with PAR1), not a CSV: name it "
                    f"{path.stem}.parquet."
                )
            # a piece of ASCII alone is UTF-8 (a piece that continues a character cut by
            # the previous piece's end is decoded, to find the cut character wrong)
            if not (chunk and chunk.isascii() and not decoder.getstate()[0]):
                try:
                    # the last call with final=True: a file that ends inside a character is
                    # not UTF-8 either (pandas would stop at it with the codec's message)
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    # exc.object is the bytes the decoder held back from the last piece (the
                    # start of a character cut by the piece's end) and then this piece
                    where = at + len(chunk) - len(exc.object) + exc.start
                    raise TableError(
                        f"{path.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                        f"position {where}): save it as UTF-8 (in Excel: CSV UTF-8)."
                    ) from None
            if not chunk:
                return spaced
            if not spaced and starts is not None and b" " in chunk:
                # pandas drops a BOM at the file's start, before the first field
                body = chunk[3:] if at == 0 and chunk.startswith(codecs.BOM_UTF8) else chunk
                spaced = _a_field_begins_with_a_space(before + body, starts)
            before = chunk[-1:]
            at += len(chunk)


def _field_starts(sep: str | None) -> np.ndarray | None:
    """The bytes after which a field begins (the usual separators, ``sep``, a line break) as a
    table of 256 flags; None when ``sep`` is not one ASCII character (pandas' python engine
    reads such a file, and the read keeps ``skipinitialspace``)."""
    flags = np.zeros(256, dtype=bool)
    for c in (*_SEPARATORS, "\n", "\r", *([sep] if sep is not None else [])):
        if len(c) != 1 or not c.isascii():
            return None
        flags[ord(c)] = True
    return flags


def _a_field_begins_with_a_space(text: bytes, starts: np.ndarray) -> bool:
    """Whether a space in ``text`` follows a byte after which a field begins (its first byte
    is the one before the piece, or a line break at the file's start). A space after a
    separator inside quotes counts as well: the read then skips it as before."""
    codes = np.frombuffer(text, dtype=np.uint8)
    spaces = np.flatnonzero(codes[1:] == ord(" "))
    return bool(starts[codes[spaces]].any())


def _read_csv(src: TableSource, text: tuple[str, ...]) -> pd.DataFrame:
    spaced = _utf8_text(src.path, src.sep)
    try:
        with warnings.catch_warnings():
            # with index_col=False pandas drops the fields of a row beyond the header's (an
            # unquoted decimal comma: ``A,1,1,0,1``) and reads the rest shifted, with a warning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return _parse_csv(src, text, spaced)
    except pd.errors.EmptyDataError:  # blank lines only
        raise TableError(f"{src.path.name} has no header: its first line is blank.") from None
    except pd.errors.ParserWarning:
        raise TableError(f"{src.path.name} {_longer_rows(src)}") from None
    except pd.errors.ParserError as exc:
        said = _first_line(exc).rstrip(".")
        fix = (  # an opening quote without its closing one swallows the rest of the file
            "close the quote that opens there"
            if "inside string" in said
            else "quote the fields that hold the separator"
        )
        raise TableError(f"{src.path.name} cannot be split into columns ({said}): {fix}.") from None


def _longer_rows(src: TableSource) -> str:
    """What pandas' ParserWarning means, said of the file's first row with more fields than
    its header (a trailing separator, an empty last field, is not one)."""
    sep = _separator(src)
    with src.path.open(encoding="utf-8-sig", newline="") as fh:
        width = len(next(csv.reader([fh.readline()], delimiter=sep, skipinitialspace=True)))
        for n, row in enumerate(csv.reader(fh, delimiter=sep, skipinitialspace=True), start=1):
            fields = row[:-1] if row and row[-1] == "" else row
            if len(fields) > width:
                return (
                    f"has rows with more fields than its header (row {n}: {len(fields)}, "
                    f"the header {width}), whose last fields would be dropped and the rest "
                    "read shifted: quote the fields that hold the separator (a decimal comma in "
                    "a comma-separated file?)."
                )
    return "has rows with more fields than its header: quote the fields that hold the separator."


def _separator(src: TableSource) -> str:
    """``--sep``, or the most frequent of the usual separators in the header (a comma when
    it holds none)."""
    if src.sep is not None:
        if len(src.sep) != 1:  # csv and pandas' C reader split on one character
            raise TableError(
                f"--sep must be one character (e.g. ';', or a tab typed as $'\\t'), not "
                f"{src.sep!r}."
            )
        if not src.sep.isascii():  # pandas' C reader splits on one byte; for ``§`` it fell
            # back to its python engine with a warning, which was reported as longer rows
            raise TableError(f"--sep must be an ASCII character such as ';', not {src.sep!r}.")
        return src.sep
    with src.path.open(encoding="utf-8") as fh:
        header = fh.readline()
    return max(_SEPARATORS, key=header.count) if any(c in header for c in _SEPARATORS) else ","


def _parse_csv(src: TableSource, text: tuple[str, ...], spaced: bool) -> pd.DataFrame:
    """The CSV in one read: the ``text`` columns as strings as written, only an empty cell
    blank (pandas reads ``NA``, ``None`` and ``null`` as missing, and a region ``NA``, North
    America, or a category ``None`` is a name: a blank category joined another one); every
    other column with pandas' own missing values and numbers. ``spaced``: whether a field may
    begin with a space (:func:`_utf8_text`)."""
    sep = _separator(src)
    _one_name_each(src, sep)
    # the names as pandas reads them (a BOM, quotes, a space after the separator, a blank
    # first line), so that each option below is given to the column it is meant for
    names = _csv(src, sep, spaced, nrows=0).columns
    written = [c for c in names if isinstance(c, str) and c.strip() in text]
    na_values: dict[Any, list[str]] = {c: [""] if c in written else _PANDAS_NA for c in names}
    # the field after a row's last separator (``00121,2026-01-01,3,``) is a column without a
    # name, found by its place: pandas drops it, without a ParserWarning, only when it is blank
    na_values[len(names)] = _PANDAS_NA
    options: dict[str, Any] = {"keep_default_na": False, "na_values": na_values}
    if src.decimal == ".":
        with warnings.catch_warnings():
            # a long file's chunks are inferred alone, and a column with text below its first
            # chunk holds numbers beside text: pandas' "mixed types" warning reached the
            # analyst's screen above the sentence that names the value. What it says is said
            # after the read: a column used as numbers names its text, the text columns are
            # read as text (the read as told, below), and one not used does not matter
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return _with_text_columns(src, sep, spaced, written, options)
    # a decimal-comma file: read_csv(decimal=",") leaves thousands dots (1.234, 1.234,50) as
    # text; thousands="." would read a date 01.03.2026 as the number 1032026. So the columns
    # left as text and written as such numbers are read from that text.
    with warnings.catch_warnings():
        # a long file's chunks are inferred alone, and a column with 1.234,50 in some chunks
        # only holds numbers beside text ("mixed types"): decimal_commas_to_numbers reads both
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        df = _with_text_columns(
            src, sep, spaced, written, {**options, "decimal": ","}, mixed_said=False
        )
    return decimal_commas_to_numbers(df, written)


def _with_text_columns(
    src: TableSource,
    sep: str,
    spaced: bool,
    written: list[str],
    options: dict[str, Any],
    mixed_said: bool = True,
) -> pd.DataFrame:
    """The file read with the ``written`` columns as text (pandas' ``str``). Told ``str``,
    pandas reads a column at about twice the cost of one it infers; a column of ids such as
    ``P00121`` is inferred as text anyway, with the same strings. So a column that the file's
    first rows show to be text is inferred, and the whole file is read as told when one such
    column was not inferred as text after all (numbers from some row on), or when pandas
    warned of a column of mixed types (``mixed_said``: the warning is the caller's; a run of
    blank ids is one), so that the warnings are those of the read as told."""
    inferred = _inferred_as_text(src, sep, spaced, written, options)
    if inferred:
        told = dict.fromkeys((c for c in written if c not in inferred), str)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.DtypeWarning)
            df = _csv(src, sep, spaced, dtype=told or None, **options)
        mixed = any(issubclass(w.category, pd.errors.DtypeWarning) for w in caught)
        if all(df[c].dtype == _TEXT for c in inferred) and not (mixed and mixed_said):
            for said in caught:  # as the read would have warned, under the caller's filters
                warnings.warn(said.message, stacklevel=2)
            return df
    return _csv(src, sep, spaced, dtype=dict.fromkeys(written, str) or None, **options)


def _inferred_as_text(
    src: TableSource, sep: str, spaced: bool, written: list[str], options: dict[str, Any]
) -> list[str]:
    """The ``written`` columns that pandas infers as text in the file's first rows (none
    when they cannot be read: the read proper says why)."""
    if not written:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = _csv(src, sep, spaced, nrows=FIRST_ROWS, **options)
    except Exception:  # whatever it is, the read as told meets it and says it
        return []
    return [c for c in written if c in head.columns and head[c].dtype == _TEXT]


def _csv(src: TableSource, sep: str, spaced: bool = True, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` as every read of an analyst's CSV calls it. index_col=False: a row
    ending in a separator (``00121,2026-01-01,3,``) has one field more than the header, and
    pandas would take the ids for the index and shift every name. skipinitialspace when a
    field may begin with a space (``spaced``): a file written with a space after each
    separator (``A, 1, NA``) has the names and values without it (`` NA`` was no blank, and
    `` units`` not the column ``units``)."""
    return pd.read_csv(src.path, sep=sep, index_col=False, skipinitialspace=spaced, **options)


def _one_name_each(src: TableSource, sep: str) -> list[str]:
    """The CSV's header as written; a TableError when it names a column twice: pandas would
    call the second ``units.1``, and a command reading ``units`` would leave it out without a
    word."""
    with src.path.open(encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh, delimiter=sep, skipinitialspace=True), [])
    names = [h.strip() for h in header]
    twice = next((n for i, n in enumerate(names) if n and n in names[:i]), None)
    if twice is not None:
        raise TableError(
            f"the header of {src.path.name} names column {twice!r} twice; give each column "
            "its own name (e.g. units and returned_units)."
        )
    return header


def _read_database(src: TableSource) -> pd.DataFrame:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a dependency of pricelab
        raise TableError(
            "reading a database needs the duckdb package: pip install duckdb"
        ) from None
    if src.table is not None and src.query is not None:
        raise TableError("give --table NAME or --query SQL, not both.")
    try:
        con = duckdb.connect(str(src.path), read_only=True)
    except duckdb.Error as exc:
        raise TableError(
            f"{src.path.name} is not a DuckDB database ({_first_line(exc)})."
        ) from None
    try:
        if src.query is not None:
            return con.sql(src.query).df()
        tables = sorted(str(t[0]) for t in con.sql("SHOW TABLES").fetchall())
        name = src.table
        if name is None:
            if len(tables) != 1:
                listed = ", ".join(tables) if tables else "none"
                raise TableError(
                    f"{src.path.name} holds {len(tables)} tables ({listed}); name one with "
                    "--table NAME or give --query SQL."
                )
            name = tables[0]
        if name not in tables:
            raise TableError(
                f"{src.path.name} has no table {name!r} (its tables: {', '.join(tables) or 'none'})."
            )
        return con.table(name).df()
    except duckdb.Error as exc:
        raise TableError(f"the query on {src.path.name} failed: {_first_line(exc)}") from None
    finally:
        con.close()


def _read_server(url: str, src: TableSource) -> pd.DataFrame:
    """A table or a query's result from a PostgreSQL server, through its ADBC driver (Arrow
    columns, no row-by-row conversion); the URL is said without its password."""
    try:
        import adbc_driver_postgresql.dbapi as postgres
    except ImportError:
        raise TableError(
            "reading a PostgreSQL server needs its ADBC driver: pip install 'pricelab[postgres]'."
        ) from None
    shown = _without_password(url)
    if (src.table is None) == (src.query is None):
        raise TableError("with a database URL give --table NAME or --query SQL (one of them).")
    sql = src.query
    if src.table is not None:  # a table name, each dotted part quoted as an identifier
        sql = "SELECT * FROM " + ".".join(
            '"' + part.replace('"', '""') + '"' for part in src.table.split(".")
        )
    try:
        con = postgres.connect(url)
    except postgres.Error as exc:
        raise TableError(f"cannot connect to {shown}: {_first_line(exc)}") from None
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_df()
    except postgres.Error as exc:
        raise TableError(f"the query on {shown} failed: {_first_line(exc)}") from None
    finally:
        con.close()


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def as_text(col: pd.Series) -> pd.Series:
    """Ids as strings: text as written without the spaces around it (``00121 `` is
    ``00121``), a whole number (also one stored as a float because of blanks) as its digits;
    blanks (also spaces alone) stay blank (NaN). Text is turned once per distinct id: a
    column of 5,000 products in 900,000 rows is 5,000 strings, not 900,000."""
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype=float)
        finite = np.isfinite(values)
        if np.all(values[finite] == np.round(values[finite])):
            return col.astype("Int64").astype(str).where(col.notna(), None).astype(object)
    if isinstance(col.dtype, pd.StringDtype) or (
        col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) == "string"
    ):
        # strings are equal only as the same text, so each distinct one is turned as every
        # row of it would be (objects of other kinds, 1 beside 1.0 and True, are not)
        codes, uniques = pd.factorize(col)
        turned = _text_as_written(pd.Series(uniques, dtype=col.dtype)).to_numpy(dtype=object)
        blank = np.array([np.nan], dtype=object)  # code -1: a blank cell
        taken = np.concatenate([turned, blank])[codes]  # a new array: the Series need not copy
        return pd.Series(taken, index=col.index, name=col.name, dtype=object, copy=False)
    return _text_as_written(col)


def _text_as_written(col: pd.Series) -> pd.Series:
    text = col.astype(str).str.strip()
    return text.where(col.notna() & (text != ""), None).astype(object)  # "  " is a blank


def read_rates(path: Path) -> dict[str, float]:
    """``--rates FILE``: a table of ``currency,rate`` (CSV, Parquet or a database) as a
    mapping; each rate positive and each currency once."""
    df = load_table(path, ("currency",))
    missing = [c for c in ("currency", "rate") if c not in df.columns]
    if missing:
        raise TableError(
            f"the rates table {path.name} needs columns currency and rate; it has "
            f"{', '.join(map(str, df.columns))}."
        )
    rate = pd.to_numeric(df["rate"], errors="coerce")
    if not (np.isfinite(rate.to_numpy(dtype=float)) & (rate.to_numpy(dtype=float) > 0)).all():
        raise TableError(f"the rates table {path.name} needs a positive number in every rate.")
    codes = df["currency"].astype(str).str.strip().str.upper()
    if codes.duplicated().any():
        raise TableError(
            f"the rates table {path.name} gives {codes[codes.duplicated()].iloc[0]} more than once."
        )
    return dict(zip(codes, rate.astype(float), strict=True))


__all__ = [
    "DATABASE_SUFFIXES",
    "NoSuchFile",
    "TableSource",
    "as_text",
    "load_table",
    "read_rates",
]
