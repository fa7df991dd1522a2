"""Pairs of tables that must give the same answer (issue #54 item 8): the analyst's sales
written two ways. Each rewrite here changes how the table is written, never what it says,
under the reader's policy (analysis/reader.py): zero sales where a product-period has no row,
a cell's rows summed, ids as text, periods as instants.

The tables are seeded slow movers (about half the product-days sell nothing), as a long
table of product, day (ISO dates), units, revenue, and the design columns of the entry point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIRST_DAY = date(2026, 1, 5)
RATIOS = {"list": 1.0, "p90": 0.9, "p105": 1.05}
#: every column a rewrite treats as money (scaled by the cents rewrite)
MONEY = ("revenue", "unit_cost", "price", "profit")


def days(n: int) -> list[str]:
    return [(FIRST_DAY + timedelta(days=d)).isoformat() for d in range(n)]


def product_ladder(seed: int, products: int = 30, n_days: int = 21) -> pd.DataFrame:
    """A product-level price ladder: each product in one arm for the whole table (its arm,
    ``treated`` = not the list price, its price ratio and unit cost are constant within it),
    so a product-day without a row is fully known: zero sales in the product's arm."""
    rng = np.random.default_rng(seed)
    names = list(RATIOS)
    arm = np.array([names[i % len(names)] for i in rng.permutation(products)])
    ratio = np.array([RATIOS[a] for a in arm])
    price = rng.uniform(5.0, 20.0, products)
    lam = rng.uniform(0.3, 1.2, products) * ratio**-2.0
    rows = []
    for i in range(products):
        units = rng.poisson(lam[i], n_days)
        for d, day in enumerate(days(n_days)):
            rows.append(
                {"product": f"P{i:02d}", "day": day, "arm": arm[i], "treated": int(arm[i] != "list"),
                 "price_ratio": ratio[i], "unit_cost": round(0.5 * price[i], 2),
                 "units": int(units[d]), "revenue": round(units[d] * price[i] * ratio[i], 2)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def switchback(seed: int, products: int = 24, n_days: int = 21) -> pd.DataFrame:
    """A random-days ladder: each product-day at one of the arms' prices (``arm``, drawn per
    cell; ``treated`` = not the list price), with a product effect, a day effect and
    elasticity -2: for fe, demand and the within-product elasticity. A product-day without a
    row is not known here (its arm is not), so these tables are never written without them."""
    rng = np.random.default_rng(seed)
    names = list(RATIOS)
    price = rng.uniform(5.0, 20.0, products)
    level = rng.uniform(0.5, 3.0, products)
    season = 1.0 + 0.3 * np.sin(np.arange(n_days) / 3.0)
    rows = []
    for i in range(products):
        arm = rng.integers(0, len(names), n_days)
        ratio = np.array([RATIOS[names[a]] for a in arm])
        units = rng.poisson(level[i] * season * ratio**-2.0)
        for d, day in enumerate(days(n_days)):
            rows.append(
                {"product": f"P{i:02d}", "day": day, "arm": names[arm[d]],
                 "treated": int(arm[d] != 0), "price_ratio": ratio[d],
                 "unit_cost": round(0.5 * price[i], 2), "units": int(units[d]),
                 "revenue": round(units[d] * price[i] * ratio[d], 2)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def history(seed: int, products: int = 16, n_days: int = 40) -> pd.DataFrame:
    """Past sales of slow movers (about half the product-days sell nothing), as plan reads."""
    rng = np.random.default_rng(seed)
    lam = rng.uniform(0.4, 1.0, products)
    price = rng.uniform(5.0, 20.0, products)
    rows = []
    for i in range(products):
        units = rng.poisson(lam[i] * rng.gamma(4.0, 0.25, n_days))
        for d, day in enumerate(days(n_days)):
            rows.append({"sku": f"P{i:02d}", "day": day, "units": int(units[d]),
                         "revenue": round(units[d] * price[i], 2)})  # fmt: skip
    return pd.DataFrame(rows)


def category_history(seed: int, products: int = 8, n_days: int = 84) -> pd.DataFrame:
    """Daily sales of two categories for ``graph build``: prices set every other day (a day
    without a sale kept its price), units falling with the own price and rising with the
    price of the product's substitute (``i ^ 2``, in its category)."""
    rng = np.random.default_rng(seed)
    blocks = (n_days + 1) // 2
    log_p = np.repeat(rng.normal(0.0, 0.3, (products, blocks)), 2, axis=1)[:, :n_days]
    base = rng.uniform(0.8, 1.4, products)
    rows = []
    for i in range(products):
        lam = np.exp(np.log(base[i]) - 1.5 * log_p[i] + 2.0 * log_p[i ^ 2])
        units = rng.poisson(lam)
        for d, day in enumerate(days(n_days)):
            rows.append({"product": f"P{i:02d}", "date": day, "category": f"c{i % 2}",
                         "price": round(10.0 * math.exp(log_p[i, d]), 2),
                         "units": int(units[d])})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the rewrites
def shuffled(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def relabelled(df: pd.DataFrame, column: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Ids as zero-padded numbers (``00001``), in the same order as the old ones (so no
    estimator's draws over the units change order); the mapping old -> new."""
    old = sorted(df[column].astype(str).unique())
    mapping = {o: f"{i + 1:05d}" for i, o in enumerate(old)}
    return df.assign(**{column: df[column].astype(str).map(mapping)}), mapping


def zero_rows_dropped(
    df: pd.DataFrame, unit: str, time: str, units: str = "units", keep: str | None = None
) -> pd.DataFrame:
    """The rows that sold nothing left out, as a transaction export leaves them out; each
    product's first row stays (it starts the product's span), and with ``keep`` a row stays
    where that column changes within its product (a price an export would not show)."""
    first = df.groupby(unit)[time].transform("min") == df[time]
    stay = first | (df[units] != 0)
    if keep is not None:
        ordered = df.sort_values([unit, time])
        changed = ordered.groupby(unit)[keep].diff().fillna(0.0) != 0
        stay |= changed.reindex(df.index)
    out = df[stay].reset_index(drop=True)
    assert len(out) < 0.9 * len(df), "the rewrite must leave out many rows"
    return out


def split_cells(df: pd.DataFrame, sums: tuple[str, ...], seed: int = 0) -> pd.DataFrame:
    """A third of the cells written as two or three rows whose additive columns sum to the
    cell's (the other columns repeated)."""
    rng = np.random.default_rng(seed)
    parts = []
    for idx, row in df.iterrows():
        k = 1 if rng.random() > 1 / 3 else int(rng.integers(2, 4))
        if k == 1:
            parts.append(df.loc[[idx]])
            continue
        share = rng.dirichlet(np.ones(k))
        piece = pd.DataFrame([row] * k)
        for col in sums:
            piece[col] = row[col] * share
        parts.append(piece)
    return pd.concat(parts, ignore_index=True)


def sale_and_return(df: pd.DataFrame, unit: str, time: str, seed: int = 0) -> pd.DataFrame:
    """Twenty cells gain a sale and the return of it (negative units and revenue): the
    table says the same once they are netted."""
    rng = np.random.default_rng(seed)
    picks = df.iloc[rng.choice(len(df), 20, replace=False)]
    sale = picks.copy()
    sale["units"] = rng.integers(1, 5, len(sale))
    if "revenue" in df.columns:
        sale["revenue"] = sale["units"] * 7.25
    back = sale.copy()
    back["units"] = -back["units"]
    if "revenue" in df.columns:
        back["revenue"] = -back["revenue"]
    return pd.concat([df, sale, back], ignore_index=True)


def in_another_zone(df: pd.DataFrame, time: str) -> pd.DataFrame:
    """Each day as the same instant written in Berlin's winter time (``...T01:00:00+01:00``)."""
    stamp = pd.to_datetime(df[time], utc=True).dt.tz_convert("Europe/Berlin")
    return df.assign(**{time: stamp.dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(
        r"(\d\d)(\d\d)$", r"\1:\2", regex=True)})  # fmt: skip


def day_first(df: pd.DataFrame, time: str) -> pd.DataFrame:
    """Each day written 16/01/2026 (a day above 12 settles the order)."""
    return df.assign(**{time: pd.to_datetime(df[time]).dt.strftime("%d/%m/%Y")})


def in_cents(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(**{c: df[c] * 100 for c in MONEY if c in df.columns})


# --------------------------------------------------------------------------- where it lives
def write(df: pd.DataFrame, folder: Path, form: str, name: str = "t") -> tuple[Path, list[str]]:
    """The table written as ``form`` (csv, parquet, duckdb, duckdb-query); the file and the
    options that read it."""
    folder.mkdir(parents=True, exist_ok=True)
    if form == "csv":
        path = folder / f"{name}.csv"
        df.to_csv(path, index=False)
        return path, []
    if form == "parquet":
        path = folder / f"{name}.parquet"
        df.to_parquet(path, index=False)
        return path, []
    import duckdb

    path = folder / f"{name}.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.register("frame", df)
        con.execute("CREATE TABLE sales AS SELECT * FROM frame")
        con.execute("CREATE TABLE other AS SELECT 1 AS x")  # a database of two tables
    finally:
        con.close()
    if form == "duckdb":
        return path, ["--table", "sales"]
    return path, ["--query", "SELECT * FROM sales"]


FORMS = ("csv", "parquet", "duckdb", "duckdb-query")


# --------------------------------------------------------------------------- the answers
def numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a JSON answer by its path (text and nulls left out)."""
    out: dict[str, float] = {}
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            out |= numbers(v, f"{prefix}{k}.")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out |= numbers(v, f"{prefix}{i}.")
    elif isinstance(doc, bool | int | float):
        out[prefix.rstrip(".")] = float(doc)
    return out


def assert_same(
    a: Mapping[str, float],
    b: Mapping[str, float],
    rel: float = 1e-9,
    scale: Callable[[str], float] = lambda _: 1.0,
) -> None:
    """Every number of ``a`` (times ``scale(path)``) equals ``b``'s within ``rel``."""
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    bad = []
    for key, x in a.items():
        want, got = x * scale(key), b[key]
        if math.isnan(want) and math.isnan(got):
            continue
        if not abs(got - want) <= rel * max(abs(want), abs(got), 1e-12):
            bad.append((key, want, got))
    assert not bad, bad[:5]
