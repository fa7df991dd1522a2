"""``pricelab report EXPERIMENT --out DIR``: the analyst report of one experiment, live (Redis and
the estimates topic) or offline (``--panel FILE``, ``--estimates FILE``); what it reads and how
is streams/client/report.py. Register with ``streams.cli.report.register(app)``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from analysis.reader_options import DecimalOption, QueryOption, SepOption, TableOption
from controller.periods import n_periods
from controller.settings import load_settings
from core.errors import PricelabError
from streams.cli.common import fail
from streams.client.report import (
    adaptive_draws_of,
    allocations_of,
    design_plans,
    live_estimates,
    live_panel,
    panel_cells,
    read_panel,
    read_table,
    with_unit_costs,
)


def report(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Where the page goes: a directory (its index.html) or a file ending in .html. "
            "One self-contained file, figures inline."
        ),
    ],
    panel: Annotated[
        Path | None,
        typer.Option(
            help="Offline: a panel file (CSV, Parquet, or a DuckDB database with --table or "
            "--query) instead of the live Redis state."
        ),
    ] = None,
    table: TableOption = None,
    query: QueryOption = None,
    sep: SepOption = None,
    decimal: DecimalOption = ".",
    estimates: Annotated[
        Path | None, typer.Option(help="Offline: estimate messages as JSON lines.")
    ] = None,
    design: Annotated[
        str | None,
        typer.Option(help="Offline: the panel's design (picks the replayed estimators)."),
    ] = None,
    spec_path: Annotated[
        Path | None,
        typer.Option("--spec", help="Offline: the experiment's spec (gives its design)."),
    ] = None,
    truth: Annotated[
        float | None, typer.Option(help="A known true effect to draw (simulations).")
    ] = None,
    embed: Annotated[
        bool,
        typer.Option(help="Accepted for old scripts: the figures are always inline.", hidden=True),
    ] = True,
) -> None:
    """Write the analyst report: the verdict, the scorecard (with more than two arms, each
    arm against control), a price ladder's demand and profit curves with the recommended price,
    every metric's running estimates, the assignment heatmap, the pre-period fit and the
    balance checks, as one HTML file."""
    from analysis.report import build_report, normalise_panel, replay_estimates, split_verdicts

    spec = None
    if panel is not None:
        from controller import design_registry
        from controller.spec import load_spec_file

        if spec_path is not None:
            spec = load_spec_file(spec_path)
            if design is not None and design != spec.design:
                fail(f"--design {design} contradicts the spec's design {spec.design}")
        the_design = spec.design if spec is not None else design
        if the_design is None:
            fail("an offline report needs the panel's design: give --design or --spec")
        if the_design not in design_registry.names():
            fail(f"unknown design {the_design!r}; choose from {', '.join(design_registry.names())}")
        try:
            df = read_panel(panel, table, query, sep=sep, decimal=decimal)
            est = read_table(estimates) if estimates is not None else None
        except (OSError, PricelabError) as exc:
            fail(str(exc).strip().splitlines()[0])
        named = sorted(map(str, set(df["experiment"]))) if "experiment" in df.columns else None
        if named is not None:
            df = df[df["experiment"] == experiment]
        if df.empty:  # a file with no cells of this experiment: the file or the id is wrong
            also = f" (its experiments: {', '.join(named)})" if named else ""
            fail(f"{panel} has no cells of experiment {experiment!r}{also}")
        try:
            df = panel_cells(df)
        except PricelabError as exc:
            fail(str(exc).strip().splitlines()[0])
        note = f"Built offline from {panel.name}."
        verdict_note = (
            "No verdict: the report was built offline from a panel file, and a verdict needs "
            "the experiment's spec (--spec: the worker is replayed with it) or the worker's "
            "own messages (--estimates)."
            if spec is None or estimates is not None
            else "No verdict: the analysis worker, replayed with the spec, decided none on "
            "this panel (it needs an estimate of the spec's decision metric)."
        )
        df = with_unit_costs(df, spec)
    elif spec_path is not None or design is not None:
        fail("--design and --spec describe an offline --panel; a live report reads its spec")
    else:
        settings = load_settings()
        df, the_design, info = asyncio.run(live_panel(settings, experiment))
        spec = info["spec"]
        est = asyncio.run(live_estimates(settings, experiment))
        note = f"Built from the live state (status {info['status']})."
        verdict_note = None
        df = with_unit_costs(df, spec)
    if df.empty:
        typer.echo(f"no completed periods for {experiment} yet", err=True)
        raise typer.Exit(1)
    if est is None or split_verdicts(est)[0].empty:  # verdicts alone are no running estimates
        d = normalise_panel(df)
        plans = design_plans(the_design, d, spec)
        # the spec's planned periods, as the worker knows them: the sequences' horizon
        params = (
            None if spec is None else spec.model_dump(mode="json") | {"n_periods": n_periods(spec)}
        )
        try:  # an adaptive ladder is replayed with its panel's recorded probabilities
            est = replay_estimates(
                d, experiment=experiment, design=the_design, estimators=plans, params=params
            )
        except PricelabError as exc:
            fail(str(exc).strip().splitlines()[0])
        note += " Running estimates replayed with the analysis worker's estimators."
    page = build_report(
        df,
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        source_note=note,
        verdict_note=verdict_note,
        allocations=allocations_of(spec),
        adaptive_draws=adaptive_draws_of(spec),
    )
    index = page.write(out)
    typer.echo(f"wrote {index}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
