"""The metamorphic suite (issue #54 item 8): every analyst entry point that reads a table
(``analyze`` with dm, dm over k arms, fe, demand and elasticity; ``graph build``; ``report
--panel``'s read; ``pricelab.analyze``) on pairs of tables that say the same thing written two
ways. Each pair gives the same answer to 1e-9, or both are refused; never two different
confident answers. (``plan`` has its own file, tests/unit/lab/test_metamorphic_plan.py.)

The pairs: rows shuffled; ids relabelled as zero-padded numbers; the rows that sold nothing
left out (under the default --missing zero); one cell's sales split over several rows; a sale
and its return against neither; the days written in another zone or day-first; money in cents
(the answers that scale with money, by 100; the others the same); CSV, Parquet, a DuckDB
table and a DuckDB query; and the CSV saved another way (CRLF, a BOM, reordered columns,
blank lines at the end, a separator ending each row, padded ids, a German export).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pricelab
from streams.cli import main
from streams.client.report import read_table
from tests.unit import _metamorphic as m

KEY = ["--unit", "product", "--time", "day"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


class Case:
    """One entry point: its table, its options, and how its answer scales with money."""

    def __init__(
        self,
        table: Callable[[int], pd.DataFrame],
        options: list[str],
        money: dict[str, float],
        fill: bool,
    ) -> None:
        self.table, self.options, self.fill = table, options, fill
        #: answers (path regex) that scale by 100 in cents (1.0: the same in cents)
        self.money = {re.compile(k): v for k, v in money.items()}

    def answer(self, path: Path, extra: list[str]) -> tuple[int, dict[str, float], str]:
        code, out, err = run(["analyze", str(path), *KEY, *self.options, "--json", *extra])
        if code:
            assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
            assert "Traceback" not in err
            return code, {}, err
        return code, m.numbers(json.loads(out)), err


RELATIVE = {r"(^|\.)relative_effect$": 1.0, r"(^|\.)pvalue(_holm)?$": 1.0}
CASES = {
    "dm": Case(
        m.product_ladder,
        ["--outcome", "revenue", "--treated", "treated", "--method", "dm"],
        {r"^(effect|se|ci_low|ci_high)$": 100.0, r"^pvalue$": 1.0},
        fill=True,
    ),
    "dm-arms": Case(
        m.product_ladder,
        ["--outcome", "revenue", "--arm", "arm", "--control", "list", "--method", "dm"],
        {r"^arms\.\d\.(effect|se|sim_ci_low|sim_ci_high|control_mean)$": 100.0} | RELATIVE,
        fill=True,
    ),
    "fe": Case(
        m.switchback,
        ["--outcome", "revenue", "--treated", "treated", "--method", "fe"],
        {r"^(effect|se|ci_low|ci_high)$": 100.0, r"^pvalue$": 1.0},
        fill=False,
    ),
    "demand": Case(
        m.switchback,
        [
            "--arm",
            "arm",
            "--control",
            "list",
            "--method",
            "demand",
            "--units",
            "units",
            "--revenue",
            "revenue",
            "--cost",
            "unit_cost",
        ],
        {
            r"^(elasticity|elasticity_se|optimal_price_ratio|relative_profit_change_at_optimum)$": 1.0,
            r"^(profit_change_at_optimum|control_revenue_per_cell)$": 100.0,
            r"^points\.\d\.(revenue_per_cell|profit_per_cell)$": 100.0,
            r"^points\.\d\.units_ratio$": 1.0,
        },
        fill=False,
    ),  # fmt: skip
    "elasticity": Case(
        m.switchback,
        [
            "--treated",
            "treated",
            "--units",
            "units",
            "--revenue",
            "revenue",
            "--method",
            "elasticity",
        ],
        {r"^(effect|se|ci_low|ci_high|first_stage|reduced_form)$": 1.0},
        fill=False,
    ),  # fmt: skip
}
SUMS = ("units", "revenue")


def rewrites(case: Case) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    out: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
        "shuffled": m.shuffled,
        "relabelled": lambda df: m.relabelled(df, "product")[0],
        "split": lambda df: m.split_cells(df, SUMS),
        "sale-and-return": lambda df: m.sale_and_return(df, "product", "day"),
        "another-zone": lambda df: m.in_another_zone(df, "day"),
        "day-first": lambda df: m.day_first(df, "day"),
    }
    if case.fill:
        out["zero-rows-dropped"] = lambda df: m.zero_rows_dropped(df, "product", "day")
    return out


PAIRS = [(name, r) for name, case in CASES.items() for r in rewrites(case)]

Answer = tuple[int, dict[str, float], str]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int, bool], Answer]:
    """A case's answer to its plain table (seeded; its ids relabelled or not) written as CSV:
    the reference each rewrite of that table is held to, computed once a module, not again
    for every rewrite."""
    answers: dict[tuple[str, int, bool], Answer] = {}

    def answer(name: str, seed: int, relabel: bool) -> Answer:
        if (name, seed, relabel) not in answers:
            df = CASES[name].table(seed)
            if relabel:
                df, _ = m.relabelled(df, "product")
            folder = tmp_path_factory.mktemp("plain")
            answers[name, seed, relabel] = CASES[name].answer(*m.write(df, folder, "csv", "a"))
        return answers[name, seed, relabel]

    return answer


@pytest.mark.parametrize(("name", "rewrite"), PAIRS, ids=[f"{n}-{r}" for n, r in PAIRS])
def test_a_table_written_another_way_gives_the_same_answer(
    name: str, rewrite: str, tmp_path: Path, plain: Callable[[str, int, bool], Answer]
) -> None:
    case = CASES[name]
    df = case.table(3)
    b_path, b_opts = m.write(rewrites(case)[rewrite](df), tmp_path, "csv", "b")
    code_a, a, _ = plain(name, 3, False)
    code_b, b, err = case.answer(b_path, b_opts)
    assert code_a == 0, "the plain table is answered"
    assert code_b == 0, err
    m.assert_same(a, b)
    if rewrite in ("split", "sale-and-return"):
        assert "summed into that cell" in err  # said, not silent
    if rewrite == "zero-rows-dropped":
        assert "counted as zero sales" in err


def _german(df: pd.DataFrame) -> str:
    """Semicolons, decimal commas and thousands dots (1.234,50), as a German export writes."""

    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
        if isinstance(v, int | np.integer) and not isinstance(v, bool):
            return f"{int(v):,}".replace(",", ".")
        return str(v)

    rows = [";".join(map(str, df.columns))]
    rows += [";".join(cell(v) for v in row) for row in df.itertuples(index=False)]
    return "\n".join(rows) + "\n"


#: the same table as a file written another way: how a spreadsheet or an ERP saves it
FILE_REWRITES: dict[str, Callable[[pd.DataFrame], tuple[str, str, list[str]]]] = {
    "crlf": lambda df: (df.to_csv(index=False).replace("\n", "\r\n"), "utf-8", []),
    "bom": lambda df: (df.to_csv(index=False), "utf-8-sig", []),
    "columns-reversed": lambda df: (df[df.columns[::-1]].to_csv(index=False), "utf-8", []),
    "blank-lines-at-end": lambda df: (df.to_csv(index=False) + "\n\n", "utf-8", []),
    "separator-ending-rows": lambda df: (
        "\n".join(
            line + ("," if i else "") for i, line in enumerate(df.to_csv(index=False).splitlines())
        )
        + "\n",
        "utf-8",
        [],
    ),  # fmt: skip
    "padded-ids": lambda df: (
        df.assign(
            product=np.where(np.arange(len(df)) % 2, df["product"] + " ", df["product"])
        ).to_csv(index=False),
        "utf-8",
        [],
    ),  # fmt: skip
    "german": lambda df: (
        _german(df.assign(revenue=df["revenue"] * 100.0)),
        "utf-8",
        ["--decimal", ","],
    ),  # fmt: skip
}


@pytest.mark.parametrize("rewrite", list(FILE_REWRITES))
@pytest.mark.parametrize("name", ["dm", "fe"])
def test_a_file_saved_another_way_gives_the_same_answer(
    name: str, rewrite: str, tmp_path: Path, plain: Callable[[str, int, bool], Answer]
) -> None:
    """CRLF line ends, a byte-order mark, the columns in another order, blank lines at the
    end, a separator ending every row, spaces around the ids, and a German export (``;``,
    decimal commas, thousands dots): the same table, the same answer (the German one in cents,
    so that its amounts reach the thousands)."""
    case = CASES[name]
    df, _ = m.relabelled(case.table(3), "product")
    text, encoding, extra = FILE_REWRITES[rewrite](df)
    other = tmp_path / "b.csv"
    other.write_bytes(text.encode(encoding))
    code_a, a, _ = plain(name, 3, True)
    code_b, b, err = case.answer(other, extra)
    assert code_a == code_b == 0, err
    if rewrite == "german":  # its revenue is in cents: the money answers scale by 100
        scale = {k: next((f for p, f in case.money.items() if p.search(k)), 1.0) for k in a}
        m.assert_same(a, b, scale=lambda k: scale[k])
    else:
        m.assert_same(a, b)


@pytest.mark.parametrize("name", list(CASES))
def test_money_in_cents_scales_what_is_money_and_nothing_else(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    df = case.table(4)
    code_a, a, _ = case.answer(*m.write(df, tmp_path, "csv", "a"))
    code_b, b, err = case.answer(*m.write(m.in_cents(df), tmp_path, "csv", "b"))
    assert code_a == code_b == 0, err

    def factor(key: str) -> float | None:
        return next((f for pattern, f in case.money.items() if pattern.search(key)), None)

    picked = {k: v for k, v in a.items() if factor(k) is not None}
    assert len(picked) >= 3, sorted(a)  # the patterns name answers the command gives
    m.assert_same(picked, {k: b[k] for k in picked}, scale=lambda k: factor(k) or 1.0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("form", m.FORMS[1:])
def test_csv_parquet_and_duckdb_give_the_same_answer(
    name: str, form: str, tmp_path: Path, plain: Callable[[str, int, bool], Answer]
) -> None:
    case = CASES[name]
    df, _ = m.relabelled(case.table(5), "product")  # ids 00001...: kept as text everywhere
    code_a, a, _ = plain(name, 5, True)
    code_b, b, err = case.answer(*m.write(df, tmp_path, form, "b"))
    assert code_a == code_b == 0, err
    m.assert_same(a, b)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.fill])
def test_a_missing_cell_whose_arm_is_not_known_is_refused_naming_drop(
    name: str, tmp_path: Path
) -> None:
    """In a random-days table the arm varies within a product: a product-day left out cannot
    be filled (its arm is not known), so the table is refused in one sentence, not fitted on
    whatever is there."""
    case = CASES[name]
    df = case.table(3)
    code, _, err = case.answer(*m.write(m.zero_rows_dropped(df, "product", "day"), tmp_path, "csv"))
    assert code == 2
    assert "cannot be known" in err and "--missing drop" in err


def test_mixed_currencies_are_refused_and_rates_convert_them(tmp_path: Path) -> None:
    df = m.product_ladder(6)
    gbp = df["product"].isin(["P00", "P01", "P02"])
    mixed = df.assign(currency=np.where(gbp, "GBP", "EUR"))
    mixed.loc[gbp, ["revenue", "unit_cost"]] /= 1.25  # written in GBP, 1 GBP = 1.25 EUR
    case = CASES["dm"]
    code, _, err = case.answer(*m.write(mixed, tmp_path, "csv", "mixed"))
    assert code == 2 and "EUR and GBP" in err and "--rates" in err
    rates = tmp_path / "rates.csv"
    pd.DataFrame({"currency": ["EUR", "GBP"], "rate": [1.0, 1.25]}).to_csv(rates, index=False)
    path, opts = m.write(mixed, tmp_path, "csv", "mixed")
    code, converted, err = case.answer(path, [*opts, "--rates", str(rates)])
    assert code == 0 and "converted with the rates" in err
    _, plain, _ = case.answer(*m.write(df, tmp_path, "csv", "plain"))
    m.assert_same(plain, converted)


# --------------------------------------------------------------------------- graph build
Graph = tuple[list[str], dict[tuple[str, ...], float]]


def graph_of(path: Path, opts: list[str], out: Path) -> tuple[int, Graph, str]:
    """``graph build``'s exit status, its nodes and weighted edges, and its stderr."""
    code, _, err = run(["graph", "build", str(path), "--out", str(out), *opts])
    if code:
        return code, ([], {}), err
    doc = json.loads(out.read_text())
    edges = {
        tuple(sorted((str(e["source"]), str(e["target"])))): float(e["weight"])
        for e in doc.get("links", doc.get("edges", []))
    }
    return code, (sorted(str(n["id"]) for n in doc["nodes"]), edges), err


@pytest.fixture(scope="module")
def plain_graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Graph, str]:
    """``graph build`` on the plain category history (seed 7) as CSV, once a module: the graph
    each rewrite's is held to."""
    folder = tmp_path_factory.mktemp("graph")
    return graph_of(*m.write(m.category_history(7), folder, "csv", "a"), folder / "a.json")


@pytest.mark.parametrize(
    "rewrite",
    ["shuffled", "relabelled", "zero-rows-dropped", "split", "another-zone", "day-first",
     "cents", *m.FORMS[1:]],
)  # fmt: skip
def test_graph_build_gives_the_same_graph(
    rewrite: str, tmp_path: Path, plain_graph: tuple[int, Graph, str]
) -> None:
    df = m.category_history(7)
    mapping = {p: p for p in df["product"].unique()}
    other, form = df, "csv"
    if rewrite == "shuffled":
        other = m.shuffled(df)
    elif rewrite == "relabelled":
        other, mapping = m.relabelled(df, "product")
    elif rewrite == "zero-rows-dropped":  # the price of a day without a sale: the last one
        other = m.zero_rows_dropped(df, "product", "date", keep="price")
    elif rewrite == "split":
        other = m.split_cells(df, ("units",))
    elif rewrite == "another-zone":
        other = m.in_another_zone(df, "date")
    elif rewrite == "day-first":
        other = m.day_first(df, "date")
    elif rewrite == "cents":
        other = m.in_cents(df)  # a cross-price elasticity has no unit
    else:
        form = rewrite
    code_a, (a_nodes, a_edges), _ = plain_graph
    code_b, (b_nodes, b_edges), err = graph_of(
        *m.write(other, tmp_path, form, "b"), tmp_path / "b.json"
    )
    assert code_a == code_b == 0, err
    assert a_edges, "the history has substitutes to find"
    back = {v: k for k, v in mapping.items()}
    assert sorted(back[n] for n in b_nodes) == a_nodes
    m.assert_same(
        {str(k): v for k, v in a_edges.items()},
        {str(tuple(sorted((back[u], back[v])))): w for (u, v), w in b_edges.items()},
    )


def test_graph_build_leaves_out_a_day_with_only_a_return(tmp_path: Path) -> None:
    """A day on which a product only took a return nets to negative units, which a log-demand
    fit cannot hold: graph build refused the whole history ('units non-negative'). That day
    is left out, and said, as if it had no row under --missing drop."""
    df = m.category_history(7)
    rows = df.index[(df["date"] == m.days(30)[17]) & (df["product"].isin(["P01", "P04"]))]
    returned = df.copy()
    returned.loc[rows, "units"] = -1
    path, opts = m.write(returned, tmp_path, "csv", "b")
    code_b, b, err = graph_of(path, opts, tmp_path / "b.json")
    assert code_b == 0, err
    assert "2 product-day(s) with more returned than sold" in err
    path, opts = m.write(df.drop(index=rows), tmp_path, "csv", "a")
    code_a, a, _ = graph_of(path, [*opts, "--missing", "drop"], tmp_path / "a.json")
    assert code_a == 0 and a[0] == b[0] and a[1]
    m.assert_same({str(k): v for k, v in a[1].items()}, {str(k): v for k, v in b[1].items()})


# --------------------------------------------------------------------------- report --panel
@pytest.mark.parametrize("form", m.FORMS)
def test_report_reads_a_panel_the_same_from_every_form(form: str, tmp_path: Path) -> None:
    df, _ = m.relabelled(m.switchback(8), "product")
    got = read_table(*_report_args(*m.write(df, tmp_path, form)))
    assert got["product"].iloc[0] == "00001"  # ids as text, zeros kept
    want = df.assign(product=df["product"].astype(object))
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want, check_dtype=False, check_exact=False, rtol=1e-12
    )


def _report_args(path: Path, opts: list[str]) -> tuple[Path, str | None, str | None]:
    options = dict(zip(opts[::2], opts[1::2], strict=True))
    return path, options.get("--table"), options.get("--query")


def test_report_from_a_duckdb_panel_is_written(tmp_path: Path) -> None:
    df = m.switchback(9).rename(columns={"day": "period"})
    df["period"] = pd.factorize(df["period"], sort=True)[0]
    df["probability"] = 2 / 3
    path, opts = m.write(df, tmp_path, "duckdb")
    code, out, err = run(["report", "x", "--out", str(tmp_path / "page"), "--panel", str(path),
                          *opts, "--design", "random-days"])  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "page" / "index.html").exists()
    code, _, err = run(["report", "x", "--out", str(tmp_path / "page"), "--panel", str(path),
                        "--design", "random-days"])  # fmt: skip
    assert code == 2 and "holds 2 tables" in err and "--table NAME" in err


# --------------------------------------------------------------------------- pricelab.analyze
REWRITES: dict[str, Callable[[pd.DataFrame, int], pd.DataFrame]] = {
    "shuffled": lambda df, s: m.shuffled(df, s),
    "relabelled": lambda df, s: m.relabelled(df, "product")[0],
    "zero-rows-dropped": lambda df, s: m.zero_rows_dropped(df, "product", "day"),
    "split": lambda df, s: m.split_cells(df, SUMS, s),
    "sale-and-return": lambda df, s: m.sale_and_return(df, "product", "day", s),
    "another-zone": lambda df, s: m.in_another_zone(df, "day"),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    chain=st.lists(st.sampled_from(sorted(REWRITES)), min_size=1, max_size=4, unique=True),
    method=st.sampled_from(["dm", "ht"]),
)
def test_pricelab_analyze_gives_the_same_answer_through_any_chain_of_rewrites(
    seed: int, chain: list[str], method: str
) -> None:
    """Any composition of rewrites (zero rows left out before or after a relabelling, a split
    of a shuffled table...) on a product-level ladder."""
    df = m.product_ladder(seed, products=18, n_days=14).drop(columns="arm")  # two arms
    if df["units"].eq(0).mean() < 0.3:
        return  # too few zero rows for the rewrite's check
    other = df
    for name in (["zero-rows-dropped"] if "zero-rows-dropped" in chain else []) + [
        c for c in chain if c != "zero-rows-dropped"
    ]:  # rows are dropped before a split or a return makes a cell's zero ambiguous
        other = REWRITES[name](other, seed)
    kw = {"time": "day", "method": method, "probability": 2 / 3 if method == "ht" else None}
    try:
        a = pricelab.analyze(df, "revenue", **kw)  # type: ignore[arg-type]
    except pricelab.PricelabError:  # then the other must be refused too
        with pytest.raises(pricelab.PricelabError):
            pricelab.analyze(other, "revenue", **kw)  # type: ignore[arg-type]
        return
    b = pricelab.analyze(other, "revenue", **kw)  # type: ignore[arg-type]
    m.assert_same({"effect": a.effect, "se": a.se}, {"effect": b.effect, "se": b.se})
    if "zero-rows-dropped" in chain:
        assert any("zero sales" in n for n in b.details["reading_notes"])


@pytest.mark.parametrize("name", list(CASES))
def test_a_return_larger_than_the_days_sales_is_netted_by_every_method(
    name: str, tmp_path: Path
) -> None:
    """A product-day whose returns exceed its sales nets below zero: every method reads it the
    same way (demand refused negative units before, while fe and elasticity took them)."""
    case = CASES[name]
    df = case.table(10)
    back = df.iloc[[3]].assign(units=-(df["units"].iloc[3] + 2), revenue=-50.0)
    code, _, err = case.answer(*m.write(pd.concat([df, back]), tmp_path, "csv"))
    assert code == 0, err
    assert "1 row(s) of the table shared a product and period" in err
