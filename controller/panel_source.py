"""Redis implementations of the analysis worker's ports: the panel source and the sequence
tuning store (``core.ports``).

The panel: a row per product x *completed* period (a period's rows in sorted product order) of an experiment (the period in progress is
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from controller.clock import Clock
from controller.designs import DesignContext, design_of, design_sampler
from controller.periods import n_periods, period_bounds, period_index
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store, decode_record, to_ms
from controller.store.columns import NO_RECORD, PeriodColumns, from_hashes
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
class _Known:
    """What a panel source has read of one experiment: its products and compacted periods."""

    products: pd.Index  # sorted: the order of every period's columns
    classes: pd.Categorical | None  # each product's class, when the spec groups products
    periods: dict[int, PeriodColumns] = field(default_factory=dict)


@dataclass
class RedisPanelSource:
    """The panel from Redis. Closed periods are read once, as columns, and kept; each call
    reads only the periods not yet compacted. With ``lateness`` set (the analysis worker's),
    a call first compacts the periods whose sales window has closed: end + lateness passed."""

    store: Store
    clock: Clock
    lateness: timedelta | None = None
    _known: dict[str, _Known] = field(default_factory=dict, repr=False)

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

    def _known_of(self, spec: ExperimentSpec) -> _Known:
        known = self._known.get(spec.id)
        if known is None:
            products = pd.Index(sorted(spec.all_products()), dtype=object)
            classes = (
                pd.Categorical([spec.class_of(p) for p in products]) if spec.clusters else None
            )
            known = self._known[spec.id] = _Known(products, classes)
        return known

    async def _compact(self, state: ExperimentState, done: int, now: datetime) -> int:
        """Compact the periods whose sales window closed; the compacted count after."""
        spec, compacted = state.spec, state.compacted
        if self.lateness is None:
            return compacted
        known = self._known_of(spec)
        while compacted < done and period_bounds(spec, compacted)[1] + self.lateness <= now:
            await self.store.compact_period(spec.id, compacted, known.products)
            compacted += 1
        return compacted

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        state = await self.store.get_experiment(exp_id)
        spec = state.spec
        now = as_of
        done = min(period_index(spec, now), n_periods(spec))  # periods strictly before now's
        done = max(
            0,
            min(done, state.flipped_period + (1 if state.status in ("ended", "stopped") else 0)),
        )
        compacted = await self._compact(state, done, now)
        known = self._known_of(spec)
        new = [k for k in range(min(compacted, done)) if k not in known.periods]
        for k, cols in zip(new, await self.store.compacted_periods(exp_id, new), strict=True):
            known.periods[k] = cols
        periods: list[PeriodColumns] = [known.periods[k] for k in range(min(compacted, done))]
        for k in range(min(compacted, done), done):  # done, not yet closed: live hashes
            records, cells = await self.store.live_period(exp_id, k)
            periods.append(from_hashes(known.products, records, cells))
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
        return _frame(spec, known, periods, spans)


def _frame(
    spec: ExperimentSpec,
    known: _Known,
    periods: list[PeriodColumns],
    spans: list[tuple[int, int | None]],
) -> pd.DataFrame:
    """The panel's rows (period-major, products sorted within a period) from the periods'
    columns, built array by array. Product, class and blackout reason are categoricals over
    the experiment's own labels: codes, not millions of strings."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
    starts = []
    reasons: dict[str, int] = {}
    for k, cols in enumerate(periods):
        start, end = period_bounds(spec, k)
        starts.append(start)
        tail_start = to_ms(start + spec.washout)
        end_ms = to_ms(end)
        window_hit = any(s < end_ms and (e is None or e > tail_start) for s, e in spans)
        treated, prob, whole, reason = [], [], [], []
        for rec in cols.templates:
            arm, p, bu, why = decode_record(rec)
            treated.append(int(arm.value == "treatment"))
            prob.append(p)
            whole.append(bu is not None and to_ms(bu) >= end_ms)
            reason.append(reasons.setdefault(why or "", len(reasons)))
        rows = np.flatnonzero(cols.codes != NO_RECORD)
        codes = cols.codes[rows].astype(np.intp)
        parts["product"].append(rows)
        parts["period"].append(np.full(len(rows), k, dtype=np.int64))
        parts["units"].append(cols.units[rows].astype(np.float64))
        parts["revenue"].append(cols.revenue[rows].astype(np.float64))
        parts["orders"].append(cols.orders[rows].astype(np.float64))
        parts["head_units"].append(cols.head[rows].astype(np.float64))
        parts["treated"].append(np.array(treated, dtype=np.int64)[codes])
        parts["probability"].append(np.array(prob, dtype=np.float64)[codes])
        parts["blackout"].append(window_hit | np.array(whole, dtype=bool)[codes])
        parts["blackout_reason"].append(np.array(reason, dtype=np.int32)[codes])
    if not any(len(p) for p in parts["product"]):
        return pd.DataFrame()
    data: dict[str, Any] = {c: np.concatenate(v) for c, v in parts.items() if v}
    rows = data["product"]
    data["product"] = pd.Categorical.from_codes(rows, dtype=pd.CategoricalDtype(known.products))
    data["blackout_reason"] = pd.Categorical.from_codes(
        data["blackout_reason"], dtype=pd.CategoricalDtype(pd.Index(list(reasons), dtype=object))
    )
    if known.classes is not None:
        data["class"] = pd.Categorical.from_codes(
            known.classes.codes[rows], dtype=known.classes.dtype
        )
    data["period_start"] = pd.DatetimeIndex(starts)[data["period"]]
    order = ["product", "period", "period_start", *_COLUMNS[2:]]
    return pd.DataFrame({c: data[c] for c in order if c in data}, copy=False)


_COLUMNS = (
    "product",
    "period",
    "units",
    "revenue",
    "orders",
    "head_units",
    "treated",
    "probability",
    "blackout",
    "blackout_reason",
    "class",
)


@dataclass
class RedisSequenceTuning:
    """Each confidence sequence's target SE, fixed at its first look (first writer wins)."""

    store: Store

    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        return await self.store.fix_sequence_target(experiment, key, target_se)
