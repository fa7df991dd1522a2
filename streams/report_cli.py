"""``pricelab report EXPERIMENT --out DIR``: the analyst report of one experiment.

Live: the panel is read from Redis through the analysis worker's own PanelSource
(controller.panel_source.RedisPanelSource) and the running estimates are read from the
estimates topic (from the beginning, filtered by experiment). Offline: ``--panel FILE`` (CSV or
Parquet, the worker's cell table or a simulator panel) and, optionally, ``--estimates FILE``
(JSON lines of estimate messages); without estimates the worker's computation is replayed on
the panel (analysis.report.replay_estimates). Figures and HTML come from analysis/report.py.
Register with ``streams.report_cli.register(app)``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from controller.settings import Settings
from controller.spec import ExperimentSpec


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
    from controller.panel_source import RedisPanelSource
    from controller.store import Store, make_redis
    from streams.runtime import make_clock

    redis = make_redis(settings)
    try:
        store = Store(redis, settings.key_prefix)
        clock = make_clock(settings, store)
        source = RedisPanelSource(store, clock)
        await clock.sync()
        state = await store.get_experiment(experiment)
        df = await source.panel(experiment, clock.now())
        spec = state.spec
        return df, spec.design, {"status": state.status, "spec": spec}
    finally:
        await redis.aclose()


async def _live_estimates(
    settings: Settings, experiment: str, timeout: float = 10.0
) -> pd.DataFrame:
    """Every estimate message of ``experiment`` on the estimates topic so far."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    await consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        topic = settings.topics.estimates
        await consumer._client.force_metadata_update()  # noqa: SLF001 - unsubscribed topic metadata
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            positions = [await consumer.position(p) for p in parts]
            if all(pos >= ends[p] for pos, p in zip(positions, parts, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        doc = json.loads(r.value)
                    except ValueError:
                        continue
                    if doc.get("experiment") == experiment and "estimator" in doc:
                        rows.append(doc)
    finally:
        await consumer.stop()
    return pd.DataFrame(rows)


async def live_report(
    settings: Settings, experiment: str, out: Path, *, truth: float | None = None
) -> Path:
    """Build the report of a live experiment from Redis and the estimates topic."""
    from analysis.report import build_report, normalise_panel, replay_estimates

    df, the_design, info = await _live_panel(settings, experiment)
    est = await _live_estimates(settings, experiment)
    note = f"Built from the live state (status {info['status']})."
    if est.empty:
        d = normalise_panel(df)
        plans = design_plans(the_design, d, info["spec"])
        est = replay_estimates(d, experiment=experiment, design=the_design, estimators=plans)
        note += " Running estimates replayed with the analysis worker's estimators."
    page = build_report(
        df,
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        source_note=note,
    )
    return Path(page.write(out))


def report(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option(help="Directory for index.html and the PNG figures.")],
    panel: Annotated[
        Path | None,
        typer.Option(help="Offline: a panel file (CSV/Parquet) instead of the live Redis state."),
    ] = None,
    estimates: Annotated[
        Path | None, typer.Option(help="Offline: estimate messages as JSON lines.")
    ] = None,
    design: Annotated[
        str | None, typer.Option(help="Offline: the design (picks the replayed estimators).")
    ] = None,
    truth: Annotated[
        float | None, typer.Option(help="A known true effect to draw (simulations).")
    ] = None,
    embed: Annotated[
        bool, typer.Option(help="Put the figures into the page as data URIs.")
    ] = False,
) -> None:
    """Write the analyst report (assignment heatmap, running estimates, pre-period fit, balance)."""
    from analysis.report import build_report, normalise_panel, replay_estimates

    spec = None
    if panel is not None:
        df = _read_table(panel)
        est = _read_table(estimates) if estimates is not None else None
        if "experiment" in df.columns:
            df = df[df["experiment"] == experiment]
        the_design = design or "random-days"
        note = f"Built offline from {panel.name}."
    else:
        settings = Settings()
        df, the_design, info = asyncio.run(_live_panel(settings, experiment))
        spec = info["spec"]
        est = asyncio.run(_live_estimates(settings, experiment))
        note = f"Built from the live state (status {info['status']})."
    if df.empty:
        typer.echo(f"no completed periods for {experiment} yet", err=True)
        raise typer.Exit(1)
    if est is None or est.empty:
        d = normalise_panel(df)
        plans = design_plans(the_design, d, spec)
        est = replay_estimates(d, experiment=experiment, design=the_design, estimators=plans)
        note += " Running estimates replayed with the analysis worker's estimators."
    page = build_report(
        df,
        est,
        title=f"pricelab report: {experiment}",
        design=the_design,
        truth=truth,
        source_note=note,
        embed=embed,
    )
    index = page.write(out)
    typer.echo(f"wrote {index}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
