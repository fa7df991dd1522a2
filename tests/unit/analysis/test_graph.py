"""Substitutable-items graph: the pair regression, BH, recovery of planted edges, I/O, CLI."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

from analysis.graph import (
    GraphError,
    benjamini_hochberg,
    build_graph,
    cross_price_tests,
    load_graph,
    save_graph,
    summary,
)
from analysis.graph_cli import register
from analysis.pricing_dgp import simulate_history


@pytest.fixture(scope="module")
def hist():
    return simulate_history(6, n_days=365, seed=3)


def test_benjamini_hochberg_by_hand() -> None:
    assert benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2]), 0.05).tolist() == [
        True, False, False, False,
    ]  # fmt: skip
    assert benjamini_hochberg(np.array([0.04, 0.01, 0.03, 0.02]), 0.05).all()
    # step-up: 0.045 > 0.05*3/4 but the 4th value passes, so all four are rejected
    assert benjamini_hochberg(np.array([0.001, 0.045, 0.045, 0.05]), 0.05).all()
    assert not benjamini_hochberg(np.array([0.3, 0.6]), 0.05).any()


def test_pair_estimate_equals_full_least_squares(hist) -> None:
    h = hist.history
    cat = h["category"].iloc[0]
    sub = h[h["category"] == cat]
    tests = cross_price_tests(sub)
    i, j = tests.source[0], tests.target[0]
    lp = np.log(sub.pivot(index="product", columns="date", values="price"))
    lq = np.log1p(sub.pivot(index="product", columns="date", values="units"))
    T = lp.shape[1]
    X = np.column_stack(
        [np.ones(T), np.linspace(-1, 1, T), lq.mean(0), lp.mean(0), lp.loc[j], lp.loc[i]]
    )
    coef, rss, *_ = np.linalg.lstsq(X, lq.loc[j].to_numpy(), rcond=None)
    df = T - X.shape[1]
    se = np.sqrt(rss[0] / df * np.linalg.inv(X.T @ X)[-1, -1])
    assert tests.gamma_st[0] == pytest.approx(coef[-1], rel=1e-8)
    X2 = X[:, [0, 1, 2, 3, 5, 4]]
    coef2, rss2, *_ = np.linalg.lstsq(X2, lq.loc[i].to_numpy(), rcond=None)
    se2 = np.sqrt(rss2[0] / df * np.linalg.inv(X2.T @ X2)[-1, -1])
    assert tests.gamma_ts[0] == pytest.approx(coef2[-1], rel=1e-8)
    p_one = min(stats.t.sf(coef[-1] / se, df), stats.t.sf(coef2[-1] / se2, df))
    assert tests.pvalue[0] == pytest.approx(min(1.0, 2 * p_one), rel=1e-6, abs=1e-300)


def test_recovers_planted_edges(hist) -> None:
    G = build_graph(hist.history, alpha=0.05)
    est = {frozenset(e) for e in G.edges}
    true = {frozenset(e) for e in hist.true_graph.edges}
    tp = len(est & true)
    assert tp / len(est) >= 0.85  # FDR controlled at 5%
    assert tp / len(true) >= 0.6
    assert all(G.nodes[u]["category"] == G.nodes[v]["category"] for u, v in G.edges)
    assert all(d["weight"] > 0 for *_, d in G.edges(data=True))


def test_no_cross_effects_gives_almost_no_edges() -> None:
    sim = simulate_history(4, n_days=365, elasticity=(0.0, 0.0), seed=4)
    G = build_graph(sim.history, alpha=0.05)
    assert G.number_of_edges() <= 2  # under the global null BH controls P(any edge) at 5%


def test_save_load_roundtrip_and_summary(tmp_path) -> None:
    G = nx.Graph(alpha=0.05, tested_pairs=3)
    G.add_node("a", category="x")
    G.add_node("b", category="x")
    G.add_node("c", category="x")
    G.add_node("d", category="y")
    G.add_edge("a", "b", weight=0.5, elasticity={"a->b": 0.4, "b->a": 0.6}, pvalue=0.001)
    G.add_edge("b", "c", weight=0.2, elasticity={"b->c": 0.2, "c->b": 0.2}, pvalue=0.01)
    path = tmp_path / "g.json"
    save_graph(G, path)
    H = load_graph(path)
    assert nx.utils.graphs_equal(G, H)
    s = summary(H, top=1)
    assert (s["nodes"], s["edges"], s["isolated"], s["degree_max"]) == (4, 2, 1, 2)
    assert s["degree_mean"] == pytest.approx(1.0)
    assert s["top_edges"] == [("a", "b", 0.5)]
    assert s["largest_component"] == 3
    nx.set_node_attributes(H, {"a": 0, "b": 0, "c": 1, "d": 2}, "cluster")
    assert summary(H)["clusters"]["cut_weight_share"] == pytest.approx(0.2 / 0.7)


def test_bad_history_is_rejected(hist) -> None:
    with pytest.raises(GraphError, match="category"):
        build_graph(hist.history.drop(columns="category"))
    with pytest.raises(GraphError, match="more than once"):
        build_graph(pd.concat([hist.history, hist.history.iloc[:1]]))


def test_cli_build_show_cluster(tmp_path, hist) -> None:
    csv = tmp_path / "history.csv"
    hist.history.to_csv(csv, index=False)
    app = typer.Typer()

    @app.callback()
    def _root() -> None: ...

    register(app)
    runner = CliRunner()
    out = tmp_path / "graph.json"
    r = runner.invoke(app, ["graph", "build", str(csv), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["graph", "show", str(out), "--top", "3"])
    assert r.exit_code == 0 and "strongest edges" in r.output
    cl = tmp_path / "clusters.json"
    r = runner.invoke(app, ["graph", "cluster", str(out), "--out", str(cl), "--max-size", "10"])
    assert r.exit_code == 0, r.output
    clusters = pd.read_json(cl, typ="series")
    assert max(len(v) for v in clusters) <= 10
    r = runner.invoke(app, ["graph", "show", str(out)])
    assert "clusters:" in r.output


def test_missing_days_and_sparse_products(hist) -> None:
    h = hist.history
    rng = np.random.default_rng(9)
    holey = h[rng.uniform(size=len(h)) > 0.01]  # 1% of product-days missing at random
    sparse = h["product"].iloc[0]
    holey = holey[~((holey["product"] == sparse) & (rng.uniform(size=len(holey)) < 0.5))]
    G = build_graph(holey)
    assert sparse not in G  # missing half its days: left out
    true = {frozenset(e) for e in hist.true_graph.edges if sparse not in e}
    est = {frozenset(e) for e in G.edges}
    assert len(est & true) / len(est) >= 0.85


def test_cli_build_of_a_csv_in_a_legacy_code_page_is_one_sentence(tmp_path) -> None:
    """An Excel "CSV" in Windows-1252 (a product named Müsli) stopped ``graph build`` with a
    UnicodeDecodeError's traceback: the reader's sentence, exit 2."""
    csv = tmp_path / "history.csv"
    csv.write_bytes(
        "product,date,price,units,category\nMüsli,2026-01-01,2.5,3,x\n".encode("cp1252")
    )
    app = typer.Typer()

    @app.callback()
    def _root() -> None: ...

    register(app)
    r = CliRunner().invoke(app, ["graph", "build", str(csv), "--out", str(tmp_path / "g.json")])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (
        "error: history.csv is not UTF-8 text (byte 0xfc at position 35): save it as UTF-8 "
        "(in Excel: CSV UTF-8)."
    )


def test_a_blank_category_is_refused_not_joined_to_another(hist) -> None:
    """A product whose category cell is empty was coded -1 and put into the last category,
    whose products it was then tested against, with exit 0."""
    h = hist.history.copy()
    h.loc[h["product"] == h["product"].iloc[0], "category"] = None
    with pytest.raises(GraphError, match=r"blank for product 'p000000'"):
        build_graph(h)


def test_what_is_not_tested_is_said(hist) -> None:
    """A sparse product and a category short of complete days were left out of the graph
    without a word: ``graph build`` printed fewer nodes, and a spillover analysis read the
    missing products as having no neighbour."""
    h = hist.history
    days = np.sort(h["date"].unique())
    sparse = h["product"].iloc[0]  # c0000: missing half its days
    short = h["category"] == "c0005"  # one product of c0005 has no price on 320 of 365 days
    first = h.loc[short, "product"].iloc[0]
    holey = h[~((h["product"] == sparse) & h["date"].isin(days[::2]))].copy()
    holey.loc[(holey["product"] == first) & holey["date"].isin(days[:320]), "price"] = np.nan
    G = build_graph(holey)
    assert G.graph["left_out"] == [
        "2 product(s) without a price or units on more than 20% of the days not tested "
        f"(e.g. {sparse!r})",
    ]
    assert sparse not in G and first not in G
    # the category keeps its other products, on its complete days
    holey.loc[(holey["product"] == first) & holey["date"].isin(days[:320]), "price"] = 1.0
    holey.loc[(holey["product"] == first) & holey["date"].isin(days[: 365 - 59]), "units"] = None
    G = build_graph(holey, max_missing=0.9)
    assert G.graph["left_out"] == [
        "category 'c0005' (31 products) not tested: 59 days on which each of them has a price "
        "and units, fewer than 60",
    ]
    assert not any(n in G for n in h.loc[short, "product"].unique())


def test_a_price_of_zero_is_named_with_its_product_and_day(hist) -> None:
    """A giveaway day at price 0: the sentence was 'Prices must be positive and units
    non-negative.', naming neither the column, the product nor the day."""
    h = hist.history.copy()
    h.loc[5, "price"] = 0.0
    with pytest.raises(GraphError) as err:
        build_graph(h)
    assert str(err.value) == (
        "Prices must be positive: column 'price' has 0 for product 'p000000' on 2023-01-06; "
        "leave that day out or correct it."
    )


def test_a_category_with_one_product_left_is_said(tmp_path, hist) -> None:
    """A category of one product (or one left after its sparse products) has no pair to test,
    and ``graph build`` left it out of the graph without a word."""
    h = hist.history.copy()
    solo = h.loc[h["category"] == "c0003", "product"].iloc[0]
    h.loc[h["product"] == solo, "category"] = "solo"
    csv = tmp_path / "history.csv"
    h.to_csv(csv, index=False)
    app = typer.Typer()

    @app.callback()
    def _root() -> None: ...

    register(app)
    r = CliRunner().invoke(app, ["graph", "build", str(csv), "--out", str(tmp_path / "g.json")])
    assert r.exit_code == 0, r.output
    assert r.stderr == (
        f"note: 1 category(ies) with one product left (e.g. 'solo', product {solo!r}) not "
        "tested: a pair needs two products\n"
    )
    assert solo not in load_graph(tmp_path / "g.json")
