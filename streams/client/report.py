"""``pricelab report EXPERIMENT --out DIR``: the analyst report of one experiment.

Live: the panel is read from Redis through the analysis worker's own PanelSource
(controller.panel_source.RedisPanelSource) and the running estimates are read from the
estimates topic (from the beginning, filtered by experiment). Offline: ``--panel FILE`` (CSV or
Parquet, the worker's cell table or a simulator panel) and, optionally, ``--estimates FILE``
(JSON lines of estimate and verdict messages); without estimates the worker's computation is
replayed on the panel (analysis.report.replay_estimates), verdicts included when the spec is
known. The page (one self-contained HTML file) comes from analysis/report.
Register with ``streams.client.report.register(app)``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pandas as pd
import typer

from controller.settings import Settings, load_settings
from controller.spec import ExperimentSpec
from streams.errors import OPERATOR, services_answer


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=path.suffix == ".jsonl")
    return pd.read_csv(path)


def design_plans(design: str, df: pd.DataFrame, spec: ExperimentSpec | None = None) -> list[Any]:
    """The design's own estimators, for replaying the analysis worker on a panel: from the
    experiment's spec when there is one, else from the design's example experiment over the
    panel's products and periods (the settings of that example, e.g. an optimal switchback's
    carryover order, are then assumed)."""
    from controller.designs import MarketFacts, get_design

    design_obj = get_design(design)
    if spec is None:
        from datetime import UTC, datetime, timedelta

        units = tuple(str(u) for u in sorted(df["product"].unique()))
        days = int(df["period"].nunique())
        groups: dict[str, tuple[str, ...]] = {"all": units}
        if "class" in df.columns:
            by = df.groupby("class")["product"].unique()
            groups = {str(c): tuple(str(p) for p in ps) for c, ps in by.items()}
        facts = MarketFacts(units, groups, groups, dict.fromkeys(units, 1.0), (), days)
        start = datetime(2026, 1, 5, tzinfo=UTC)
        base = {
            "id": "replay", "design": design, "treatment_policy": "t", "control_policy": "c",
            "start": start, "end": start + timedelta(days=days),
        }  # fmt: skip
        spec = design_obj.example_spec(base, facts)
    return list(design_obj.estimators(spec))


async def _live_panel(
    settings: Settings, experiment: str
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    from controller.store import make_redis

    redis = make_redis(settings)
    try:
        async with services_answer(
            redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
        ):
            return await _read_live(redis, settings, experiment)
    finally:
        await redis.aclose()


async def _read_live(
    redis: Any, settings: Settings, experiment: str
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    from controller.in_force import status_in_force
    from controller.panel_source import RedisPanelSource
    from controller.store import Store
    from streams.client.panel import no_completed_period
    from streams.client.stack_clock import stack_clock
    from streams.errors import NoCompletedPeriod

    store = Store(redis, settings.key_prefix)
    clock = await stack_clock(settings, store)  # the stack's, whatever this shell's
    source = RedisPanelSource(store, clock)
    state = await store.get_experiment(experiment)
    df = await source.panel(experiment, clock.now())
    if df.empty:
        raise NoCompletedPeriod(no_completed_period(state, clock))
    spec = state.spec
    return df, spec.design, {"status": status_in_force(state), "spec": spec}


def _with_unit_costs(df: pd.DataFrame, spec: ExperimentSpec | None) -> pd.DataFrame:
    """The spec's unit costs as the panel's ``unit_cost`` column: a product characteristic
    fixed before assignment, which the balance check compares between the arms (the live
    panel carries no other)."""
    if spec is None or df.empty or not spec.unit_costs or "unit_cost" in df.columns:
        return df
    key = "product" if "product" in df.columns else "unit"
    return df.assign(unit_cost=df[key].astype(str).map(spec.unit_costs).astype(float))


async def _live_estimates(settings: Settings, experiment: str, idle: float = 2.0) -> pd.DataFrame:
    """Every message of ``experiment`` on the estimates topic so far, estimates and verdicts
    (``analysis.report.split_verdicts`` tells them apart; read until idle: the embedded
    broker's end offsets lag its data, docs/broker.md)."""
    from streams.client.estimates import all_estimates

    return pd.DataFrame(await all_estimates(settings, experiment, idle))


async def live_report(
    settings: Settings,
    experiment: str,
    out: Path,
    *,
    truth: float | None = None,
    truths: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Build the report of a live experiment from Redis and the estimates topic."""
    from analysis.report import build_report, normalise_panel, replay_estimates, split_verdicts

    df, the_design, info = await _live_panel(settings, experiment)
    est = await _live_estimates(settings, experiment)
    note = f"Built from the live state (status {info['status']})."
    if split_verdicts(est)[0].empty:
        d = normalise_panel(df)
        plans = design_plans(the_design, d, info["spec"])
        # the replay runs the analysis worker, which runs its own event loop: not on this one
        est = await asyncio.to_thread(
            replay_estimates, d, experiment=experiment, design=the_design, estimators=plans,
            params=info["spec"].model_dump(mode="json"),
        )  # fmt: skip
        note += " Running estimates replayed with the analysis worker's estimators."
    page = build_report(
        _with_unit_costs(df, info["spec"]),
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        truths=truths,
        source_note=note,
    )
    return Path(page.write(out))


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
        typer.Option(help="Offline: a panel file (CSV/Parquet) instead of the live Redis state."),
    ] = None,
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
    """Write the analyst report: the verdict, the scorecard, every metric's running estimates,
    the assignment heatmap, the pre-period fit and the balance checks, as one HTML file."""
    from analysis.report import build_report, normalise_panel, replay_estimates, split_verdicts

    spec = None
    if panel is not None:
        from controller import design_registry
        from controller.spec import load_spec_file

        if spec_path is not None:
            spec = load_spec_file(spec_path)
            if design is not None and design != spec.design:
                _fail(f"--design {design} contradicts the spec's design {spec.design}")
        the_design = spec.design if spec is not None else design
        if the_design is None:
            _fail("an offline report needs the panel's design: give --design or --spec")
        if the_design not in design_registry.names():
            _fail(
                f"unknown design {the_design!r}; choose from {', '.join(design_registry.names())}"
            )
        df = _read_table(panel)
        est = _read_table(estimates) if estimates is not None else None
        if "experiment" in df.columns:
            df = df[df["experiment"] == experiment]
        note = f"Built offline from {panel.name}."
        verdict_note = (
            "No verdict: the report was built offline from a panel file, and a verdict needs "
            "the experiment's spec (--spec: the worker is replayed with it) or the worker's "
            "own messages (--estimates)."
            if spec is None or estimates is not None
            else "No verdict: the analysis worker, replayed with the spec, decided none on "
            "this panel (it needs an estimate of the spec's decision metric)."
        )
        df = _with_unit_costs(df, spec)
    elif spec_path is not None or design is not None:
        _fail("--design and --spec describe an offline --panel; a live report reads its spec")
    else:
        settings = load_settings()
        df, the_design, info = asyncio.run(_live_panel(settings, experiment))
        spec = info["spec"]
        est = asyncio.run(_live_estimates(settings, experiment))
        note = f"Built from the live state (status {info['status']})."
        verdict_note = None
        df = _with_unit_costs(df, spec)
    if df.empty:
        typer.echo(f"no completed periods for {experiment} yet", err=True)
        raise typer.Exit(1)
    if est is None or split_verdicts(est)[0].empty:  # verdicts alone are no running estimates
        d = normalise_panel(df)
        plans = design_plans(the_design, d, spec)
        params = None if spec is None else spec.model_dump(mode="json")
        est = replay_estimates(
            d, experiment=experiment, design=the_design, estimators=plans, params=params
        )
        note += " Running estimates replayed with the analysis worker's estimators."
    page = build_report(
        df,
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        source_note=note,
        verdict_note=verdict_note,
    )
    index = page.write(out)
    typer.echo(f"wrote {index}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
