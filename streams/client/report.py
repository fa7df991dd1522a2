"""The analyst report of one experiment, read from the running stack or from files (the
command, ``pricelab report EXPERIMENT --out DIR``, is streams/cli/report.py).

Live: the panel is read from Redis through the analysis worker's own PanelSource
(controller.panel_source.RedisPanelSource) and the running estimates are read from the
estimates topic (from the beginning, filtered by experiment). Offline: ``--panel FILE`` (CSV or
Parquet, the worker's cell table or a simulator panel) and, optionally, ``--estimates FILE``
(JSON lines of estimate and verdict messages); without estimates the worker's computation is
replayed on the panel (analysis.report.replay_estimates), verdicts included when the spec is
known. The page (one self-contained HTML file) comes from analysis/report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.reader import ReadPolicy, TableSource, load_table, periods, to_cells
from analysis.sample_ratio import DesignDraws
from analysis.table_input import check_decimal_commas
from controller.settings import Settings
from controller.spec import ExperimentSpec
from streams.errors import OPERATOR, services_answer

#: the id columns of a panel or estimates file, read as text (``00121`` keeps its zeros)
ID_COLUMNS = ("product", "unit", "arm", "class", "experiment")


def read_table(
    path: Path,
    table: str | None = None,
    query: str | None = None,
    *,
    sep: str | None = None,
    decimal: str = ".",
) -> pd.DataFrame:
    """A panel (CSV, Parquet, a DuckDB database with ``table`` or ``query``) or an estimates
    file (JSON lines), read by the one reader (:func:`analysis.reader.load_table`): ids as
    text, a CSV's ``sep`` and ``decimal`` as ``analyze`` takes them; a missing file or a bad
    table is a PricelabError or OSError with one sentence."""
    return load_table(
        TableSource(path, table=table, query=query, sep=sep, decimal=decimal), ID_COLUMNS
    )


def read_panel(
    path: Path,
    table: str | None = None,
    query: str | None = None,
    *,
    sep: str | None = None,
    decimal: str = ".",
) -> pd.DataFrame:
    """A panel as :func:`read_table` reads it; a number written with a decimal comma without
    ``decimal=","`` is refused in the reader's sentence (pass --decimal ,), in the columns a
    report reads as numbers (a note or a label column of ``1,5 kg`` is not one of them)."""
    df = read_table(path, table, query, sep=sep, decimal=decimal)
    check_decimal_commas(df, number_columns(df.columns))
    return df


#: a panel's additive columns: summed over a cell's rows (a return netted into its sale)
SUM_COLUMNS = ("units", "revenue", "profit")


def number_columns(columns: Iterable[Any]) -> list[str]:
    """The columns of a panel that a report reads as numbers: the metrics, the design's
    treated, probability and blackout, a price ladder's price ratios, the balance check's
    product characteristics and an adaptive ladder's ``probability_<arm>``."""
    from analysis.adaptive_offline import PREFIX
    from analysis.report.stats import COVARIATE_CANDIDATES

    read = {*SUM_COLUMNS, "treated", "probability", "blackout", "price_ratio"}
    read |= set(COVARIATE_CANDIDATES)
    return [c for c in columns if isinstance(c, str) and (c in read or c.startswith(PREFIX))]


def panel_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A panel of several rows per product and period (one per sale, a return as a negative
    row) as one row per cell, by the one reader (:func:`analysis.reader.to_cells`): the
    additive columns summed, every other column one value per cell (a TableError otherwise);
    no cell is added. A panel of cells is returned as it is."""
    unit = next((c for c in ("product", "unit") if c in df.columns), None)
    time = next((c for c in ("period", "day") if c in df.columns), None)
    if unit is None or time is None or not df.duplicated([unit, time]).any():
        return df
    sums = [c for c in SUM_COLUMNS if c in df.columns]
    describe = [c for c in df.columns if c not in (unit, time, *sums)]
    cells = to_cells(df, unit=unit, time=time, sums=sums, describe=describe,
                     policy=ReadPolicy(missing="drop"), what="panel")  # fmt: skip
    out = cells.frame[list(df.columns)]
    # the periods as the panel writes them (the reader compares dates as instants)
    written = dict(zip(periods(df[time], time), df[time], strict=True))
    return out.assign(**{time: out[time].map(written)})


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


async def live_panel(
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
    from streams.client.known import known
    from streams.client.panel import no_completed_period
    from streams.client.stack_clock import stack_clock
    from streams.errors import NoCompletedPeriod

    store = Store(redis, settings.key_prefix)
    await known(store, experiment)
    clock = await stack_clock(settings, store)  # the stack's, whatever this shell's
    source = RedisPanelSource(store, clock)
    state = await store.get_experiment(experiment)
    df = await source.panel(experiment, clock.now())
    if df.empty:
        raise NoCompletedPeriod(no_completed_period(state, clock))
    spec = state.spec
    if spec.adaptive is not None:  # the record its replay weighs and its sample ratio tests
        from analysis.adaptive_offline import with_recorded

        names = [a.name for a in spec.arm_list()]
        df = with_recorded(df, names, await source.allocations(experiment))
    return df, spec.design, {"status": status_in_force(state), "spec": spec}


def with_unit_costs(df: pd.DataFrame, spec: ExperimentSpec | None) -> pd.DataFrame:
    """The spec's unit costs as the panel's ``unit_cost`` column: a product characteristic
    fixed before assignment, which the balance check compares between the arms (the live
    panel carries no other)."""
    if spec is None or df.empty or not spec.unit_costs or "unit_cost" in df.columns:
        return df
    key = "product" if "product" in df.columns else "unit"
    return df.assign(unit_cost=df[key].astype(str).map(spec.unit_costs).astype(float))


async def live_estimates(settings: Settings, experiment: str, idle: float = 2.0) -> pd.DataFrame:
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
    arm_truths: dict[tuple[str, str], tuple[float, float]] | None = None,
    true_optimum: float | None = None,
) -> Path:
    """Build the report of a live experiment from Redis and the estimates topic (``truths``,
    ``arm_truths``, ``true_optimum``: what a simulation knows, :func:`build_report`)."""
    from analysis.report import build_report, normalise_panel, replay_estimates, split_verdicts

    df, the_design, info = await live_panel(settings, experiment)
    est = await live_estimates(settings, experiment)
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
        with_unit_costs(df, info["spec"]),
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        truths=truths,
        source_note=note,
        arm_truths=arm_truths,
        true_optimum=true_optimum,
        allocations=allocations_of(info["spec"]),
        adaptive_draws=adaptive_draws_of(info["spec"]),
    )
    return Path(page.write(out))


def allocations_of(spec: ExperimentSpec | None) -> dict[str, float] | None:
    """Each arm's share by name, for the report's per-arm sample-ratio check (None: no spec)."""
    return None if spec is None else {a.name: a.allocation for a in spec.arm_list()}


def adaptive_draws_of(spec: ExperimentSpec | None) -> DesignDraws | None:
    """What an adaptive ladder's independent draw is, for the report's sample-ratio check
    against its recorded probabilities (None: no spec, or not an adaptive ladder)."""
    from streams.client.adaptive_health import design_draws

    return None if spec is None or spec.adaptive is None else design_draws(spec)
