"""The CSV reader (``load_table``) against another commit's, on many generated CSVs: the same
frame (columns, dtypes, values, NaN or None in an object column, the sign of a zero), the
same warnings and the same refusal (type and sentence). A check, not a timing: a change that
only makes the reader faster must leave every answer as it was.

The other commit's ``analysis/table_sources.py`` and ``analysis/table_input.py`` are taken
with ``git show REF:path`` into a temporary package; both read each file in this process.
The files: separators (``,`` ``;`` tab ``|``, detected or given), decimal commas with
thousands dots, dotted dates, ids written as numbers with leading zeros, as words, as
``NA``/``None``/``null``, blank or spaces alone, quoted (with the separator inside), a space
after some separators (from some row on, or only inside quotes), a BOM, CRLF, a separator
ending some rows, non-ASCII text, and refusals (a name twice, longer rows, an open quote,
not UTF-8, empty). ``--large``: a few files beyond pandas' chunks (131,072 rows) and beyond
its parallel read (5 MB), whose columns change kind from one chunk to another. Each
object column of the frame also goes through both ``as_text`` (what ``to_cells`` does).

Usage: .venv/bin/python benchmarks/diff_reader.py [--ref main] [--cases 400] [--seed 0]
[--large]; exit 1 on any difference, each one printed with the file kept.
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import table_sources as ours  # noqa: E402

MODULES = ("table_sources", "table_input")


def reference(ref: str, into: Path) -> ModuleType:
    """``analysis.table_sources`` as at ``ref``, imported as ``reader_ref.table_sources``."""
    package = into / "reader_ref"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(
            ["git", "show", f"{ref}:analysis/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for other in MODULES:
            text = text.replace(f"from analysis.{other} import", f"from reader_ref.{other} import")
        (package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(into))
    return importlib.import_module("reader_ref.table_sources")


# --------------------------------------------------------------------------- the files
IDS_NUMERIC = ["00121", "00007", "121", "7", "0", "0042", "999999"]
IDS_WORDS = ["P001", "P002", "sku-9", "A 1", "x", "Äpfel", "東京", "ñ", "P 003"]
IDS_ODD = ["NA", "None", "null", "NULL", "nan", "NaN", "N/A", "-", "#N/A", "n/a", "<NA>"]
IDS_BLANKISH = ["", " ", "  "]
IDS_NUMBERLIKE = ["1.0", "1e3", "True", "False", "-5", "+3", "1,5", "1.234,50", "0x1"]
REGIONS = ["NA", "EU", "None", "APAC", "", "null", "Nord-Süd", "  EU  "]
GERMAN = ["1.234,50", "12,5", "-3,25", "0,00", "169,83", "1.000", "2.000.000", "1234", "-0,5"]
GERMAN_ODD = ["1.23", "12 kg", "١٢", "18,5\u00a0", "+1,5", " 7,25", "-0", "1,2,3", "0001.234,5"]
DOTTED = ["01.03.2026", "02.03.2026", "15.12.2025"]
ISO = ["2026-01-01", "2026-01-02", "2026-03-15"]


@dataclass
class Case:
    """One generated file and how it is read."""

    name: str
    text: str | bytes
    text_columns: tuple[str, ...]
    sep: str | None = None
    decimal: str = "."
    notes: list[str] = field(default_factory=list)


def quote(value: str, sep: str, rng: random.Random, always: bool = False) -> str:
    if always or sep in value or '"' in value or (value and rng.random() < 0.05):
        return '"' + value.replace('"', '""') + '"'
    return value


def id_pool(rng: random.Random) -> tuple[str, list[str]]:
    kind = rng.choice(["numeric", "words", "mixed", "odd", "blanks", "numberlike"])
    pools = {
        "numeric": IDS_NUMERIC,
        "words": IDS_WORDS,
        "mixed": IDS_NUMERIC + IDS_WORDS,
        "odd": IDS_WORDS + IDS_ODD,
        "blanks": IDS_WORDS + IDS_BLANKISH,
        "numberlike": IDS_NUMBERLIKE + IDS_NUMERIC,
    }
    return kind, pools[kind]


def generated(rng: random.Random, n: int) -> Case:
    """A random CSV of ``n`` rows written some way."""
    decimal = "," if rng.random() < 0.35 else "."
    sep = (
        rng.choice([";", ";", "\t", "|"])
        if decimal == ","
        else rng.choice([",", ",", ";", "\t", "|"])
    )
    kind, ids = id_pool(rng)
    notes = [f"ids {kind}", f"sep {sep!r}", f"decimal {decimal!r}"]
    columns = ["sku", "day", "units", "revenue", "region"]
    if rng.random() < 0.3:
        columns.append("note")
    spaced_from = None  # the row from which a space follows each separator
    if rng.random() < 0.3:
        spaced_from = rng.choice([0, n // 2, max(n - 1, 0)])
        notes.append(f"spaced from row {spaced_from}")
    late_kind = None  # the ids change kind from this row on
    if rng.random() < 0.25 and n > 10:
        late_kind = (rng.randrange(n), rng.choice([IDS_NUMERIC, IDS_WORDS, IDS_BLANKISH]))
        notes.append(f"ids change at row {late_kind[0]}")
    trailing = rng.choice([None, "all", "some"]) if rng.random() < 0.2 else None
    if trailing:
        notes.append(f"trailing separator {trailing}")
    days = rng.choice([ISO, DOTTED, ["1", "2", "3"]])
    regions = REGIONS if rng.random() < 0.3 else [r for r in REGIONS if r == r.strip()]
    money = GERMAN + (GERMAN_ODD if rng.random() < 0.3 else []) if decimal == "," else None
    header = list(columns)
    if rng.random() < 0.1:
        header[0] = " sku "
        notes.append("header spaces")
    lines = [sep.join(quote(h, sep, rng) for h in header)]
    for i in range(n):
        pool = late_kind[1] if late_kind and i >= late_kind[0] else ids
        units = (
            rng.choice(["1", "2", "0", "-1", "", "NA", "3"])
            if rng.random() < 0.2
            else str(rng.randrange(9))
        )
        if money is not None:
            revenue = rng.choice(money)
        else:
            revenue = (
                rng.choice(["12.5", "0.1", "1e3", "", "NA", "7", "-0.0"])
                if rng.random() < 0.3
                else f"{rng.uniform(0, 500):.2f}"
            )
        row = [rng.choice(pool), rng.choice(days), units, revenue, rng.choice(regions)]
        if "note" in columns:
            row.append(rng.choice(["ok", "a, b", "x; y", "", "ü", '"q"', "z | w"]))
        joiner = sep + " " if spaced_from is not None and i >= spaced_from else sep
        line = joiner.join(quote(v, sep, rng) for v in row)
        if trailing == "all" or (trailing == "some" and rng.random() < 0.1):
            line += sep
        lines.append(line)
    newline = "\r\n" if rng.random() < 0.15 else "\n"
    text = newline.join(lines) + (newline if rng.random() < 0.9 else "")
    if rng.random() < 0.1:
        text = "\ufeff" + text
        notes.append("BOM")
    if newline == "\r\n":
        notes.append("CRLF")
    text_columns = rng.choice([("sku",), ("sku", "region"), ("sku", "note"), (), ("missing",)])
    given = sep if rng.random() < 0.3 else None
    return Case(f"gen{n}", text, text_columns, given, decimal, notes)


def hand_written() -> list[Case]:
    """Files that each stress one thing, and the refusals."""
    out = [
        Case("quoted-comma-space", 'sku,units\n"a, b",1\n"c",2\n', ("sku",)),
        Case("space-inside-quotes-only", 'sku,note\nP1,"x, y"\nP2,z\n', ("sku", "note")),
        Case("leading-space-line", "sku,units\n P1,1\nP2,2\n", ("sku",)),
        Case("space-after-sep-last-row", "sku,units\n" + "P1,1\n" * 50 + "P2, 2\n", ("sku",)),
        Case("tab-after-sep", "sku,units\nP1,\t1\nP2,2\n", ("sku",)),
        Case("bom-space", "\ufeff sku,units\nP1,1\n", ("sku",)),
        Case("cr-only", "sku,units\r P1,1\rP2,2\r", ("sku",)),
        Case("name-twice", "sku,units,units\nP1,1,2\n", ("sku",)),
        Case("longer-row", "sku,units\nP1,1\nP2,2,3,4\n", ("sku",)),
        Case("trailing-sep", "sku,day,units,\nP1,1,2,\n", ("sku",)),
        Case("open-quote", 'sku,units\n"P1,1\nP2,2\n', ("sku",)),
        Case("empty-lines", "\n\n", ("sku",)),
        Case("not-utf8", "sku,units\ncaf\xe9,1\n".encode("latin-1"), ("sku",)),
        Case("cut-char-end", "sku,units\nP\u00e9,1\n".encode()[:-3], ("sku",)),
        Case("parquet-named-csv", b"PAR1\x00\x00", ("sku",)),
        Case("all-blank-ids", "sku,units\n,1\n,2\n", ("sku",)),
        Case("numeric-ids-late", "sku,units\n" + "P1,1\n" * 1500 + "00121,2\n" * 10, ("sku",)),
        Case("words-after-numbers", "sku,units\n" + "00121,1\n" * 1500 + "P1,2\n", ("sku",)),
        Case("blank-ids-late", "sku,units\n" + "P1,1\n" * 1200 + ",2\n" * 900, ("sku",)),
        Case("bool-ids", "sku,units\nTrue,1\nFalse,2\n", ("sku",)),
        Case("sep-given-space", "sku units\nP1  1\n", ("sku",), sep=" "),
        Case("sep-given-long", "sku,units\nP1,1\n", ("sku",), sep="::"),
        Case("sep-non-ascii", "sku§units\nP1§ 1\n", ("sku",), sep="§"),
        Case("decimal-bad", "sku,units\nP1,1\n", ("sku",), decimal=";"),
        Case("german-negative-zero", "sku;rev\nP1;-0\nP2;1,5\n", ("sku",), decimal=","),
        Case("german-whole-negzero", "sku;rev\nP1;-0\nP2;1.000\n", ("sku",), decimal=","),
        Case(
            "german-long-digits", "sku;rev\nP1;1234567890123456,5\nP2;0,1\n", ("sku",), decimal=","
        ),
        Case("german-vt", "sku;rev\nP1;\v1,5\nP2;2,5\v\n", ("sku",), decimal=","),
        Case(
            "german-odd-late", "sku;rev\n" + "P1;1,5\n" * 1200 + "P2;12 kg\n", ("sku",), decimal=","
        ),
        Case(
            "german-dates-late",
            "sku;d\n" + "P1;1,5\n" * 1200 + "P2;01.03.2026\n",
            ("sku",),
            decimal=",",
        ),
        Case("german-id-numbers", "sku;rev\n00121;1.234,5\n7;2,5\n", ("sku",), decimal=","),
        Case("quoted-numeric-ids", 'sku,units\n"00121",1\n"007",2\n', ("sku",)),
        Case("quoted-header-comma-space", '"sku, id",units\nP1,1\n', ("sku, id",)),
        Case("crlf-space", "sku,units\r\n P1,1\r\nP2, NA\r\n", ("sku",)),
        Case("space-before-quote", 'sku,note\nP1, "a,b"\nP2,c\n', ("sku", "note")),
        Case("ids-all-na-words", "sku,units\nNA,1\nnull,2\nNone,3\n", ("sku",)),
        Case("region-na-numbers", "sku,region,units\nP1,NA,1\nP2,1,2\n", ("sku", "region")),
        Case("tab-sep-space", "sku\tunits\nP1\t 1\nP2\tNA\n", ("sku",), sep="\t"),
        Case("pipe-detected-space", "sku|units\nP1| NA\nP2|2\n", ("sku",)),
        Case("german-blank-numbers", "sku;rev\nP1;\nP2;1.234,5\nP3;NA\n", ("sku",), decimal=","),
        Case(
            "german-region-text",
            "sku;region;rev\nP1;NA;1,5\nP2;1,5;2\n",
            ("sku", "region"),
            decimal=",",
        ),  # fmt: skip
        Case(
            "german-mixed-objects",
            "sku;rev\n" + "P1;1,5\n" * 140000 + "P2;1.234,5\n",
            ("sku",),
            decimal=",",
        ),
    ]
    return out


def large(rng: random.Random) -> list[Case]:
    """Files beyond pandas' chunks of 131,072 rows, and beyond its parallel read (5 MB)."""
    cases = []
    for n, late in [(140_000, 135_000), (400_000, 390_000), (400_000, 5)]:
        for kind, later in [("numbers", "00121"), ("blank", ""), ("words", "P9")]:
            first = "P1" if kind != "words" else "00042"
            lines = ["sku,day,units,revenue"]
            lines += [f"{first if i < late else later},2026-01-0{1 + i % 9},{i % 7},{i % 100}.5"
                      for i in range(n)]  # fmt: skip
            cases.append(Case(f"large{n}-{kind}-at{late}", "\n".join(lines) + "\n", ("sku",)))
    # a German export whose revenue has thousands dots in some chunks only, ids all words
    lines = ["product;day;units;revenue"]
    for i in range(400_000):
        revenue = "1.234,50" if i % 50_000 == 7 else f"{i % 999},{i % 100:02d}"
        lines.append(f"P{i % 5000:05d};{1 + i % 28:02d}.03.2026;{i % 7};{revenue}")
    cases.append(Case("large-german", "\n".join(lines) + "\n", ("product",), decimal=","))
    for later in ("00121", "", "1,5"):  # ids that change kind in the last chunk
        changed = lines[:390_000] + [f"{later};{line.split(';', 1)[1]}" for line in lines[390_000:]]
        cases.append(Case(f"large-german-ids-{later or 'blank'}", "\n".join(changed) + "\n",
                          ("product",), decimal=","))  # fmt: skip
    spaced = ["sku, units, region"] + [f"P{i % 300}, {i % 9}, NA" for i in range(300_000)]
    cases.append(Case("large-spaced", "\n".join(spaced) + "\n", ("sku", "region")))
    spaced_late = ["sku,units"] + [f"P{i},{i % 9}" for i in range(350_000)] + ["P1, 2"]
    cases.append(Case("large-spaced-last-row", "\n".join(spaced_late) + "\n", ("sku",)))
    _ = rng
    return cases


# --------------------------------------------------------------------------- the comparison
def outcome(read: Callable[[], pd.DataFrame]) -> tuple[Any, list[tuple[str, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = read()
        except Exception as exc:  # noqa: BLE001 - the refusal is what is compared
            result = (type(exc).__name__, str(exc))
    said = [(w.category.__name__, str(w.message)) for w in caught]
    return result, said


def cell(value: Any) -> tuple[str, str]:
    """A value as its type and text: NaN and None apart, -0.0 and 0.0 apart."""
    if isinstance(value, float) and value == 0:
        return ("float", "-0.0" if math.copysign(1, value) < 0 else "0.0")
    return (type(value).__name__, repr(value))


def differences(a: Any, b: Any) -> list[str]:
    if isinstance(a, tuple) or isinstance(b, tuple):
        same = isinstance(a, tuple) and isinstance(b, tuple) and a == b
        return [] if same else [f"outcome: {str(a)[:200]} vs {str(b)[:200]}"]
    found = []
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} vs {list(b.columns)}"]
    if not a.index.equals(b.index) or type(a.index) is not type(b.index):
        found.append(f"index {a.index!r} vs {b.index!r}")
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype != y.dtype:
            found.append(f"{col!r}: dtype {x.dtype} vs {y.dtype}")
            continue
        if x.dtype == object:
            cx, cy = list(map(cell, x)), list(map(cell, y))
            if cx != cy:
                at = next(i for i, (p, q) in enumerate(zip(cx, cy, strict=True)) if p != q)
                found.append(f"{col!r}: row {at} {cx[at]} vs {cy[at]}")
        elif pd.api.types.is_float_dtype(x):
            vx, vy = x.to_numpy(), y.to_numpy()
            same = (vx == vy) | (np.isnan(vx) & np.isnan(vy))
            same &= np.signbit(vx) == np.signbit(vy)
            if not same.all():
                at = int(np.flatnonzero(~same)[0])
                found.append(f"{col!r}: row {at} {vx[at]!r} vs {vy[at]!r}")
        elif not x.equals(y):
            found.append(f"{col!r}: values differ")
    return found


def text_frame(as_text: Callable[[pd.Series], pd.Series], values: pd.Series) -> pd.DataFrame:
    return as_text(values).to_frame()


def compare(case: Case, ref: ModuleType, where: Path, n: int) -> tuple[list[str], bool]:
    """The differences between the two readers on ``case``, and whether the first refused."""
    path = where / f"{n:04d}-{case.name}.csv"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text, encoding="utf-8", newline="")
    theirs, their_warnings = outcome(
        lambda: ref.load_table(ref.TableSource(path, sep=case.sep, decimal=case.decimal),
                               case.text_columns))  # fmt: skip
    mine, my_warnings = outcome(
        lambda: ours.load_table(ours.TableSource(path, sep=case.sep, decimal=case.decimal),
                                case.text_columns))  # fmt: skip
    found = differences(theirs, mine)
    if their_warnings != my_warnings:
        found.append(f"warnings {their_warnings} vs {my_warnings}")
    if not isinstance(theirs, tuple) and not found:
        for col in theirs.columns:  # what to_cells does with the ids: as_text once more
            values = theirs[col]
            if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
                a, _ = outcome(partial(text_frame, ref.as_text, values))
                b, _ = outcome(partial(text_frame, ours.as_text, values))
                found += [f"as_text {d}" for d in differences(a, b)]
    if not found:
        path.unlink()
    return found, isinstance(theirs, tuple)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main")
    ap.add_argument("--cases", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--large", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = reference(args.ref, Path(tmp))
        cases = hand_written()
        sizes = [rng.choice([3, 8, 20, 60, 200]) for _ in range(args.cases)]
        sizes[: args.cases // 8] = [rng.randrange(900, 2500) for _ in range(args.cases // 8)]
        cases += [generated(rng, n) for n in sizes]
        if args.large:
            cases += large(rng)
        kept = Path(tempfile.mkdtemp(prefix="diff_reader_"))
        failed = 0
        refused = 0
        for n, case in enumerate(cases):
            found, refusal = compare(case, ref, kept, n)
            refused += refusal
            if found:
                failed += 1
                print(f"DIFFERENT {n:04d}-{case.name} ({', '.join(case.notes)}; text "
                      f"{case.text_columns}, sep {case.sep!r}, decimal {case.decimal!r}):")  # fmt: skip
                for line in found[:5]:
                    print(f"    {line}")
        print(f"{len(cases)} files against {args.ref} ({refused} refused by it): "
              f"{len(cases) - failed} the same, {failed} different"
              + (f" (kept in {kept})" if failed else ""))  # fmt: skip
        if not failed:
            kept.rmdir()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
