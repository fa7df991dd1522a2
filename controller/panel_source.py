"""Redis implementations of the analysis worker's ports: the panel source and the sequence
tuning store (``core.ports``).

The panel: a row per product x *completed* period of an experiment (the period in progress is
left out until it ends). ``units`` is units sold in the period's analysis window (after the
washout-length head), which is the same stretch of the day for every product; a cell is
``blackout`` when an exclusion window (pause, stop, freeze) overlaps it or its record says the
whole period was blacked out; ``class`` is the product's class when the spec groups products.

The experiment info carries the design's own estimators (``Design.estimators``), whether its
periods share draws, and a sampler of the design (``design_sampler``), so the worker estimates
what the design was validated with and never decides by design name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from controller.clock import Clock
from controller.designs import DesignContext, design_of, design_sampler
from controller.periods import n_periods, period_bounds, period_index
from controller.spec import ExperimentSpec
from controller.store import Store, decode_record, to_ms
from core.ports import ExperimentInfo


def experiment_info(
    spec: ExperimentSpec, status: str, triggers: Mapping[str, int] | None = None
) -> ExperimentInfo:
    """What the analysis worker is told of an experiment: its design's own estimators, whether
    its periods share draws, and a sampler of its design (with the experiment's triggers)."""
    design = design_of(spec)
    return ExperimentInfo(
        id=spec.id,
        design=spec.design,
        status=status,
        params=spec.model_dump(mode="json") | {"n_periods": n_periods(spec)},
        estimators=design.estimators(spec),
        planned_periods=n_periods(spec),
        periods_share_draws=design.periods_share_draws(spec),
        spillover=design.spillover(spec),
        sampler=design_sampler(spec, DesignContext(triggers=dict(triggers or {}))),
    )


@dataclass
class RedisPanelSource:
    store: Store
    clock: Clock

    async def experiments(self) -> list[ExperimentInfo]:
        await self.clock.sync()
        out = []
        for st in await self.store.experiments():
            if st.status in ("running", "paused", "ended", "stopped") and st.flipped_period >= 0:
                spec = st.spec
                uses_triggers = design_of(spec).uses_triggers
                triggers = await self.store.triggers(spec.id) if uses_triggers else {}
                out.append(experiment_info(spec, st.status, triggers))
        return out

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        state = await self.store.get_experiment(exp_id)
        spec = state.spec
        now = as_of
        done = min(period_index(spec, now), n_periods(spec))  # periods strictly before now's
        done = min(done, state.flipped_period + (1 if state.status in ("ended", "stopped") else 0))
        windows = await self.store.windows(exp_id)
        freezes = [
            f
            for f in await self.store.freezes()
            if f.get("experiments") is None or exp_id in f["experiments"]
        ]
        # returning from a freeze to the design's policy is a switch: its washout is excluded
        # too (blackout.apply_freezes), so a freeze blacks out every cell it or its washout touch
        washout_ms = int(spec.washout.total_seconds() * 1000)
        spans = [(w["start_ms"], w["end_ms"]) for w in windows] + [
            (f["start_ms"], f["end_ms"] + washout_ms) for f in freezes
        ]
        cells = await self.store.cells(exp_id)
        sums: dict[tuple[int, str], dict[str, float]] = {}
        for field, value in cells.items():
            period, product, f = field.rsplit("|", 2)
            sums.setdefault((int(period), product), {})[f] = float(value)
        rows: list[dict[str, Any]] = []
        periods = range(max(done, 0))
        all_records = await self.store.assignment_records_for(exp_id, periods)
        for k, records in zip(periods, all_records, strict=True):
            start, end = period_bounds(spec, k)
            tail_start = to_ms(start + spec.washout)
            end_ms = to_ms(end)
            window_hit = any(s < end_ms and (e is None or e > tail_start) for s, e in spans)
            for product, rec in records.items():
                arm, prob, bu, why = decode_record(rec)
                whole = bu is not None and to_ms(bu) >= end_ms
                c = sums.get((k, product), {})
                row = {
                    "product": product,
                    "period": k,
                    "period_start": start,
                    "units": c.get("u", 0.0),
                    "revenue": c.get("r", 0.0),
                    "orders": c.get("n", 0.0),
                    "head_units": c.get("h", 0.0),
                    "treated": int(arm.value == "treatment"),
                    "probability": prob,
                    "blackout": bool(window_hit or whole),
                    "blackout_reason": why or "",
                }
                if spec.clusters:
                    row["class"] = spec.class_of(product)
                rows.append(row)
        return pd.DataFrame(rows)


@dataclass
class RedisSequenceTuning:
    """Each confidence sequence's target SE, fixed at its first look (first writer wins)."""

    store: Store

    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        return await self.store.fix_sequence_target(experiment, key, target_se)
