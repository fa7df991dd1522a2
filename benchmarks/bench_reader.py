"""``load_table``, the analyst CLI's one reader (``plan``, ``analyze``, ``report``, ``graph
build``), on a large CSV: what it costs beyond one ``pandas.read_csv`` of the same file.

A sales history of ``--products`` x ``--days`` rows (5,000 x 180: 900,000 rows of product id,
ISO day, units, price, revenue, treated) written twice: as a plain CSV, and as a German export
(``;``, decimal commas, thousands dots in the revenue, days written 01.03.2026), read with
``--decimal ,``. Each is read by ``load_table`` with its product ids as text (as every command
reads them) and by a bare ``pandas.read_csv`` of the same file (the baseline, in the same
process, alternated with it, first in every other run); medians over ``--runs``. What the
reader adds to that one read: the UTF-8 check (a pass over the bytes, timed apart, which also
finds whether a field begins with a space), the header checks and a read of the first 1,000
rows, the ids as Python strings (``as_text``, once per distinct id), and for the German file
the numbers with thousands dots. Informational: ``read_csv`` told the ids are ``str`` (the
read the reader made until it let pandas infer ids that its first rows show to be text), and
``to_cells``, the step that follows the read in every command (one row per product and day).

Usage: .venv/bin/python benchmarks/bench_reader.py [--products 5000] [--days 180] [--runs 7]
Target: load_table <= 1.5 x the bare read_csv of the same file, for each file (the reader
reads the file once; before it read the text columns a second time, and a decimal-comma file
a third).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.reader import TableSource, load_table, to_cells  # noqa: E402
from analysis.table_sources import _utf8_text  # noqa: E402
from benchmarks._common import median_report  # noqa: E402

TARGET = 1.5


def history(products: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = products * days
    units = rng.poisson(3, n)
    price = np.round(rng.uniform(5, 400, n), 2)
    return pd.DataFrame(
        {
            "product": np.repeat([f"P{i:05d}" for i in range(products)], days),
            "day": np.tile(pd.date_range("2026-01-01", periods=days), products),
            "units": units,
            "price": price,
            "revenue": np.round(units * price, 2),
            "treated": rng.integers(0, 2, n),
        }
    )


def write_plain(df: pd.DataFrame, path: Path) -> None:
    df.assign(day=df["day"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)


def write_german(df: pd.DataFrame, path: Path) -> None:
    """``;``, decimal commas, thousands dots (1.234,50), days as 01.03.2026."""

    def money(values: pd.Series) -> pd.Series:
        text = values.map("{:,.2f}".format)  # 1,234.50
        return text.str.replace(",", "_").str.replace(".", ",").str.replace("_", ".")

    german = df.assign(
        day=df["day"].dt.strftime("%d.%m.%Y"),
        price=money(df["price"]),
        revenue=money(df["revenue"]),
    )
    german.to_csv(path, index=False, sep=";")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench(
    name: str,
    source: TableSource,
    bare: Callable[[], pd.DataFrame],
    one_read: Callable[[], pd.DataFrame],
    runs: int,
) -> None:
    """Times the pair alternated ``runs`` times; prints the medians, the ratio and whether the
    target is met. ``one_read``: the read the reader makes, ids as str (informational)."""
    reader: list[float] = []
    baseline: list[float] = []
    ids: list[float] = []
    utf8: list[float] = []
    cells: list[float] = []
    for run in range(runs):
        order = ("reader", "baseline") if run % 2 == 0 else ("baseline", "reader")
        for which in order:
            if which == "baseline":
                baseline.append(timed(bare)[0])
                continue
            seconds, df = timed(lambda: load_table(source, ("product",)))
            reader.append(seconds)
            assert isinstance(df, pd.DataFrame)
            t0 = time.perf_counter()
            to_cells(df, unit="product", time="day", sums=["units", "revenue"],
                     describe=["treated"], carry=["price"])  # fmt: skip
            cells.append(time.perf_counter() - t0)
        utf8.append(timed(lambda: _utf8_text(source.path))[0])
        ids.append(timed(one_read)[0])
    size = source.path.stat().st_size / 1e6
    print(f"{name} ({size:.1f} MB)")
    print(median_report("  load_table, seconds", reader, "{:.3f}".format))
    print(median_report("  bare pandas.read_csv (baseline), seconds", baseline, "{:.3f}".format))
    print(median_report("    of load_table: the UTF-8 check, seconds", utf8, "{:.3f}".format))
    print(
        median_report(
            "  read_csv with the ids as str, one read as the reader makes it (informational), "
            "seconds",
            ids,
            "{:.3f}".format,
        )
    )
    print(median_report("  then to_cells (informational), seconds", cells, "{:.3f}".format))
    ratio = statistics.median(reader) / statistics.median(baseline)
    print(
        f"  target: load_table <= {TARGET} x the bare read_csv; ratio of the medians "
        f"{ratio:.2f}: {'met' if ratio <= TARGET else 'NOT met'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, load {load}; {args.products:,} products x "
        f"{args.days} days = {args.products * args.days:,} rows, {args.runs} runs"
    )
    df = history(args.products, args.days)
    with tempfile.TemporaryDirectory() as tmp:
        plain, german = Path(tmp) / "sales.csv", Path(tmp) / "sales_de.csv"
        write_plain(df, plain)
        write_german(df, german)
        ids = {"product": str}
        bench(
            "plain CSV",
            TableSource(plain),
            lambda: pd.read_csv(plain),
            lambda: pd.read_csv(plain, dtype=ids),
            args.runs,
        )
        bench(
            "German export (--decimal ,)",
            TableSource(german, decimal=","),
            lambda: pd.read_csv(german, sep=";", decimal=","),
            lambda: pd.read_csv(german, sep=";", decimal=",", dtype=ids),
            args.runs,
        )
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, load {load}")


if __name__ == "__main__":
    main()
