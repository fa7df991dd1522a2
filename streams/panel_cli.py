"""``pricelab panel export EXPERIMENT --out FILE``: the panel the analysis worker analyses.

Read through the worker's own panel source (``controller.panel_source.RedisPanelSource``),
as of the configured clock, so the file holds exactly the completed periods, outcomes, arms,
probabilities and blackouts the live estimates were computed from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from controller.errors import StoreError
from controller.panel_labels import label
from controller.panel_source import RedisPanelSource
from controller.periods import n_periods
from controller.settings import Settings
from controller.store import ExperimentState, Store, make_redis
from controller.store.clock import SharedSimulatedClock
from streams.errors import OPERATOR, services_answer
from streams.runtime import make_clock


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
            clock = make_clock(settings, store)
            await clock.sync()
            if isinstance(clock, SharedSimulatedClock) and not clock.ready:
                raise StoreError("the simulated clock has not been set: no period is complete")
            state = await store.get_experiment(experiment)
            df = await RedisPanelSource(store, clock).panel(experiment, clock.now())
    finally:
        await redis.aclose()
    return label(df, state.spec), state


async def export_panel(settings: Settings, experiment: str, out: Path) -> tuple[int, int]:
    """Write the panel; returns (cells, completed periods)."""
    df, state = await _read(settings, experiment)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)
    periods = int(df["period"].nunique()) if len(df) else 0
    assert periods <= n_periods(state.spec)
    return len(df), periods
