"""``pricelab panel export EXPERIMENT --out FILE``: the panel the analysis worker analyses.

Read through the worker's own panel source (``controller.panel_source.RedisPanelSource``),
as of the stack's clock (the one its controller records: streams.client.stack_clock), so the file
holds exactly the completed periods, outcomes, arms, probabilities and blackouts the live
estimates were computed from; an adaptive ladder's panel adds each period's recorded
probability of every arm (``probability_<arm>``, the weights of its estimates). No completed
period yet is one sentence (NoCompletedPeriod, exit 2), never an empty file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.adaptive_offline import with_recorded
from controller.clock import Clock
from controller.panel_labels import label
from controller.panel_source import RedisPanelSource
from controller.periods import n_periods, period_bounds
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store, make_redis
from streams.client.known import known
from streams.client.stack_clock import describe, stack_clock
from streams.errors import OPERATOR, NoCompletedPeriod, services_answer


async def read_panel(settings: Settings, experiment: str) -> pd.DataFrame:
    """The panel the analysis worker analyses, with the columns that place each cell
    (``controller.panel_labels``: ``period_start`` in the experiment's time zone, the spec's
    ``segment``); :func:`export_panel` writes it, ``pricelab.panel`` returns it."""
    df, _ = await _read(settings, experiment)
    return df


async def _read(settings: Settings, experiment: str) -> tuple[pd.DataFrame, ExperimentState]:
    redis = make_redis(settings)
    try:
        async with services_answer(
            redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
        ):
            store = Store(redis, settings.key_prefix)
            await known(store, experiment)
            clock = await stack_clock(settings, store)
            state = await store.get_experiment(experiment)
            source = RedisPanelSource(store, clock)
            df = await source.panel(experiment, clock.now())
            if state.spec.adaptive is not None and not df.empty:
                # the probabilities each period was drawn with, as the worker weighs them
                names = [a.name for a in state.spec.arm_list()]
                df = with_recorded(df, names, await source.allocations(experiment))
    finally:
        await redis.aclose()
    if df.empty:
        raise NoCompletedPeriod(no_completed_period(state, clock))
    return label(df, state.spec), state


def no_completed_period(state: ExperimentState, clock: Clock) -> str:
    """Why a live experiment's panel is empty, in one sentence: the time on the stack's
    clock, in the experiment's time zone, and when its first period ends (or that the
    controller has closed none although it has ended)."""
    spec = state.spec
    now = clock.now().astimezone(spec.zone).isoformat()
    first_end = period_bounds(spec, 0)[1]
    head = f"experiment {spec.id!r} has no completed period as of {now} on {describe(clock)}"
    if clock.now() < first_end:
        return f"{head}: its first period ends at {first_end.astimezone(spec.zone).isoformat()}"
    return f"{head} ({state.phase}): the controller has not closed its first period yet"


async def export_panel(
    settings: Settings, experiment: str, out: Path
) -> tuple[int, int, ExperimentSpec]:
    """Write the panel; returns (cells, completed periods, the experiment's spec). A spec
    with ``arms:`` gives the panel an ``arm`` column, each cell's arm by name (``treated``
    is 1 for every arm but control); a two-arm shorthand spec's has no such column."""
    df, state = await _read(settings, experiment)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)
    periods = int(df["period"].nunique()) if len(df) else 0
    assert periods <= n_periods(state.spec)
    return len(df), periods, state.spec
