"""``pricelab compare-designs``: which design should I run on a market like mine?

Register with ``analysis.compare_cli.register(app)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from analysis.compare import (
    DESIGNS,
    CompareConfig,
    format_table,
    parse_estimators,
    run_comparison,
    summarise,
    write_outputs,
)
from analysis.simulation.config import MarketConfig


def compare_designs(
    market: Annotated[
        Path | None, typer.Option(help="MarketConfig as YAML or JSON (default: the demo market).")
    ] = None,
    designs: Annotated[
        str, typer.Option(help="Comma-separated designs: " + ",".join(DESIGNS) + ".")
    ] = ",".join(DESIGNS),
    runs: Annotated[int, typer.Option(help="Simulated experiments per design.")] = 100,
    estimators: Annotated[
        list[str] | None,
        typer.Option(
            help="'design=a,b' (repeatable) or 'a,b' for every design; "
            "'name@class' fits on the class x day panel."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the market family.")] = 0,
    days: Annotated[int, typer.Option(help="Length of every experiment in days.")] = 28,
    products: Annotated[
        int | None, typer.Option(help="Override the market's number of products.")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Directory for CSVs and PNG plots.")] = None,
) -> None:
    """Simulate RUNS experiments of each design on one market; report bias, SE, RMSE,
    coverage, power and each design's SE reduction relative to time-bound."""
    cfg_market = MarketConfig.from_file(market) if market is not None else MarketConfig()
    if products is not None:
        cfg_market = cfg_market.model_copy(update={"n_products": products})
        cfg_market = MarketConfig.model_validate(cfg_market.model_dump())
    chosen = tuple(d.strip() for d in designs.split(",") if d.strip())
    bad = [d for d in chosen if d not in DESIGNS]
    if bad:
        raise typer.BadParameter(f"unknown design(s) {bad}; choose from {', '.join(DESIGNS)}")
    cfg = CompareConfig(
        market=cfg_market,
        designs=chosen,
        runs=runs,
        seed=seed,
        days=days,
        estimators=parse_estimators(estimators or [], chosen),
        jobs=jobs,
    )
    t0 = time.perf_counter()
    rows = run_comparison(cfg)
    table = summarise(rows)
    typer.echo(format_table(table))
    typer.echo(f"{runs} runs x {len(chosen)} designs in {time.perf_counter() - t0:.1f}s")
    if out is not None:
        for p in write_outputs(rows, table, out):
            typer.echo(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("compare-designs")(compare_designs)
