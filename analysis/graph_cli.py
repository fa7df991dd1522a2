"""``pricelab graph``: build, inspect and cluster the substitutable-items graph.

pricelab graph build HISTORY.csv --out graph.json [--alpha 0.05]
pricelab graph show graph.json [--top 10]
pricelab graph cluster graph.json --out clusters.json [--max-size 50] [--seed 0]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import networkx as nx
import typer

from analysis.errors import AnalysisError
from analysis.graph import GraphError, build_graph, format_summary, load_graph, save_graph, summary
from analysis.reader import load_table, to_cells
from analysis.reader_options import (
    CurrencyOption,
    DateFormatOption,
    DayfirstOption,
    DecimalOption,
    LaunchOption,
    MissingOption,
    QueryOption,
    RatesOption,
    SepOption,
    TableOption,
    read_policy,
    table_source,
)


def _load_or_exit(graph: Path) -> nx.Graph:
    """The graph ``graph build`` wrote, or the error on stderr and exit status 2."""
    try:
        return load_graph(graph)
    except GraphError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    """Add the ``graph`` sub-app to the top-level ``pricelab`` app."""
    graph_app = typer.Typer(help="Substitutable-items graph: build from history, show, cluster.")

    @graph_app.command("build")
    def build(
        history: Annotated[
            Path,
            typer.Argument(
                help="Sales history (product, date, price, units, category): .csv, .parquet or "
                "a DuckDB database (with --table or --query)."
            ),
        ],
        out: Annotated[Path, typer.Option(help="Where to write the graph (node-link JSON).")],
        alpha: Annotated[float, typer.Option(help="Benjamini-Hochberg FDR level.")] = 0.05,
        product: Annotated[str, typer.Option(help="Product column.")] = "product",
        date: Annotated[str, typer.Option(help="Date column.")] = "date",
        price: Annotated[str, typer.Option(help="Price column.")] = "price",
        units: Annotated[str, typer.Option(help="Units column.")] = "units",
        category: Annotated[
            str, typer.Option(help="Category column (candidate pairs).")
        ] = "category",
        sep: SepOption = None,
        decimal: DecimalOption = ".",
        dayfirst: DayfirstOption = None,
        date_format: DateFormatOption = None,
        table: TableOption = None,
        query: QueryOption = None,
        missing: MissingOption = "zero",
        currency: CurrencyOption = None,
        rates: RatesOption = None,
        launch: LaunchOption = None,
    ) -> None:
        """Test within-category pairs for cross-price effects and keep the BH survivors.
        A day without a row is a day without a sale (--missing zero): its price is the
        product's last one. A day with more returned than sold is left out, and said."""
        try:
            policy = read_policy(missing, currency, rates, launch, dayfirst, date_format)
            raw = load_table(table_source(history, table, query, sep, decimal), (product, category))
            cells = to_cells(
                raw, unit=product, time=date, sums=[units], describe=[category], carry=[price],
                money=[price], policy=policy, what="history",
            )  # fmt: skip
            notes, df = list(cells.notes), cells.frame
            # a day whose returns exceed its sales nets below zero, which log-demand cannot
            # hold: that product-day is left out (as a day without a row under --missing drop)
            returned = df[units] < 0
            if returned.any():
                notes.append(
                    f"{int(returned.sum())} product-day(s) with more returned than sold (net "
                    "units below zero) left out of the demand fits"
                )
                df = df[~returned].reset_index(drop=True)
            for note in notes:
                typer.echo(f"note: {note}", err=True)
            G = build_graph(
                df, alpha=alpha, product=product, date=date, price=price, units=units,
                category=category,
            )  # fmt: skip
        except (OSError, GraphError, AnalysisError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        for note in G.graph["left_out"]:
            typer.echo(f"note: {note}", err=True)
        save_graph(G, out)
        typer.echo(format_summary(summary(G, top=5)))
        typer.echo(f"written to {out}")

    @graph_app.command("show")
    def show(
        graph: Annotated[Path, typer.Argument(help="Graph JSON written by `graph build`.")],
        top: Annotated[int, typer.Option(help="How many of the strongest edges to list.")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Degree statistics, strongest edges and clusters (if `graph cluster` stored them)."""
        G = _load_or_exit(graph)
        s = summary(G, top=top)
        typer.echo(json.dumps(s, indent=2) if as_json else format_summary(s))

    @graph_app.command("cluster")
    def cluster(
        graph: Annotated[Path, typer.Argument(help="Graph JSON written by `graph build`.")],
        out: Annotated[Path, typer.Option(help="Where to write {cluster_id: [products]} JSON.")],
        max_size: Annotated[
            int | None, typer.Option(help="Split communities larger than this.")
        ] = None,
        resolution: Annotated[float, typer.Option(help="Louvain resolution.")] = 1.0,
        seed: Annotated[int, typer.Option(help="Seed of the community detection.")] = 0,
    ) -> None:
        """Partition the graph into dense product classes for a cluster-randomised design."""
        from analysis.clustering import cluster_graph

        G = _load_or_exit(graph)
        res = cluster_graph(G, resolution=resolution, max_size=max_size, seed=seed)
        out.write_text(json.dumps({str(k): v for k, v in res.clusters.items()}))
        for cid, members in res.clusters.items():
            for p in members:
                G.nodes[p]["cluster"] = cid
        save_graph(G, graph)
        typer.echo(res.describe())
        typer.echo(f"clusters written to {out}; cluster labels stored in {graph}")

    app.add_typer(graph_app, name="graph")
