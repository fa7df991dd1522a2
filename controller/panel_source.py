"""Redis implementations of the analysis worker's ports: the panel source (with an adaptive
ladder's recorded probabilities, ``AllocationSource``), the sequence tuning store and the
adaptive looks (``core.ports``).

The panel: a row per product x *completed* period of an experiment, a period's rows in sorted
product order (the period in progress is left out until it ends). ``units`` is units sold in
the period's analysis window (after the washout-length head), which is the same stretch of the
day for every product; a cell is
``blackout`` when an exclusion window (pause, stop, freeze) overlaps it or its record says the
whole period was blacked out; ``class`` is the product's class when the spec groups products.
``revenue`` is summed from the sales; ``price`` is revenue over units (NaN in a cell without a
sale) and ``profit`` is revenue - units x the spec's unit cost, present only when the spec
gives every product a cost. ``treated`` is 1 for every arm but control; a spec with ``arms:``
adds ``arm``, each cell's arm by name (a two-arm shorthand spec's panel has no such column).

The experiment info carries the design's own estimators (``Design.estimators``), whether its
periods share draws, and a sampler of the design (``design_sampler``), so the worker estimates
what the design was validated with and never decides by design name.

The long cell table is built in :mod:`controller.panel_cells`; a read in chunks of products
(:meth:`RedisPanelSource.grids`) in :mod:`controller.panel_chunks`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from controller.clock import Clock
from controller.designs import DesignContext, design_of, design_sampler
from controller.errors import StoreError
from controller.panel_cells import _frame, _Known, window_hits
from controller.panel_chunks import _ChunkRecords, _grid, _Read
from controller.periods import n_periods, period_bounds, period_index
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store
from controller.store.columns import (
    ColumnsError,
    PeriodColumns,
    PeriodRecords,
    from_live,
    records_of,
)
from core import final_look
from core import status as status_word
from core.ports import AdaptiveLook, CellGrid, ExperimentInfo, GridLayout

#: an experiment whose periods can have data: opened (running, paused) or final
_OPENED = frozenset(status_word.STORED) - {status_word.CREATING}

log = logging.getLogger("pricelab.panel")


def experiment_info(
    spec: ExperimentSpec,
    status: str,
    triggers: Mapping[str, int] | None = None,
    sealed: bool = False,
) -> ExperimentInfo:
    """What the analysis worker is told of an experiment: its design's own estimators, whether
    its periods share draws, a sampler of its design (with the experiment's triggers) and how
    many arms it has. An experiment of more than two arms has no sampler (the design matrices
    are treatment against control): the worker estimates each arm against the control on
    the pair's cells, and publishes no verdict, guardrail check or spillover for it yet
    (issue #41)."""
    design = design_of(spec)
    sampler = (
        design_sampler(spec, DesignContext(triggers=dict(triggers or {})))
        if spec.n_arms == 2
        else None
    )
    return ExperimentInfo(
        id=spec.id,
        design=spec.design,
        status=status,
        params=spec.model_dump(mode="json") | {"n_periods": n_periods(spec)},
        estimators=design.estimators(spec),
        planned_periods=n_periods(spec),
        periods_share_draws=design.periods_share_draws(spec),
        spillover=design.spillover(spec),
        spillover_note=design.spillover_note(spec),
        sampler=sampler,
        arms=spec.n_arms,
        n_products=len(spec.all_products()),
        sealed=sealed,
    )


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
        """The experiments to look at: opened, with a period flipped, and not over (a
        stopped or ended one whose final look is out: ``core.final_look``; neither its spec
        nor its cells are read or kept). Each says whether its data is sealed."""
        await self.clock.sync()
        now = self.clock.now()
        out: list[ExperimentInfo] = []
        for st in await self.store.experiments_unmarked(final_look.FINAL_LOOK):
            if st.status in _OPENED and st.flipped_period >= 0:
                spec = st.spec
                uses_triggers = design_of(spec).uses_triggers
                triggers = await self.store.triggers(spec.id) if uses_triggers else {}
                ran = min(n_periods(spec), st.flipped_period + 1)
                done = final_look.sealed(st.status, ran, _done(st, now), st.compacted)
                out.append(experiment_info(spec, st.status, triggers, done))
        # what is kept of experiments no longer analysed is let go
        for gone in set(self._known) - {i.id for i in out}:
            del self._known[gone]
        return out

    async def allocations(self, exp_id: str) -> dict[int, tuple[float, ...]]:
        """An adaptive ladder's recorded probabilities (``core.ports.AllocationSource``): each
        period the flip drew, each arm's probability (spec arm order), as recorded before the
        period's assignments went out; periods not drawn yet are absent."""
        return await self.store.allocations(exp_id)

    def held(self) -> frozenset[str]:
        """The experiments whose compacted periods (or open periods' records) are kept."""
        return frozenset(self._known)

    def _known_of(self, spec: ExperimentSpec) -> _Known:
        known = self._known.get(spec.id)
        if known is None:
            known = self._known[spec.id] = _Known.of(spec)
        return known

    async def _compact(self, state: ExperimentState, done: int, now: datetime) -> int:
        """Compact the periods whose sales window closed; the compacted count after. An
        experiment created before the compacted layout is never compacted (its cells are in
        the old single hash: compacting would store zeros). A period that cannot be compacted
        is logged and left live, so one experiment cannot stop every other's analysis."""
        spec, compacted = state.spec, state.compacted
        if self.lateness is None or state.n_products is None:
            return compacted
        known = self._known_of(spec)
        while compacted < done and period_bounds(spec, compacted)[1] + self.lateness <= now:
            try:
                await self.store.compact_period(
                    spec.id, compacted, known.products, known.records.get(compacted)
                )
            except ColumnsError as e:
                log.error("experiment %s: period %d left uncompacted: %s", spec.id, compacted, e)
                break
            compacted += 1
        return compacted

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        for _ in range(5):
            state = await self.store.get_experiment(exp_id)
            try:
                got = await self._rows(state, as_of)
            except ColumnsError as e:  # a corrupt period: this experiment only, not all
                log.error("experiment %s: panel not readable: %s", exp_id, e)
                return pd.DataFrame()
            if got is not None:
                return await self._with_windows(state, *got)
        raise StoreError(f"experiment {exp_id!r}: its periods kept being compacted mid-read")

    async def _rows(self, state: ExperimentState, now: datetime) -> tuple[_Known, int, int] | None:
        """The experiment's rows in the buffers: (kept state, rows, periods done); None when
        another worker compacted a period while it was read live (its hashes may have gone)."""
        spec, exp_id = state.spec, state.spec.id
        done = _done(state, now)
        compacted = await self._compact(state, done, now)
        known = self._known_of(spec)
        upto = min(compacted, done)
        if upto < known.kept:  # an earlier as_of than a previous call's: start afresh
            known = self._known[exp_id] = _Known.of(spec)
        for first in range(known.kept, upto, _FETCH):  # new compacted periods, read once
            ks = range(first, min(upto, first + _FETCH))
            for k, cols in zip(ks, await self.store.compacted_periods(exp_id, ks), strict=True):
                known.kept_rows = known.write(k, cols, known.kept_rows)
                known.kept = k + 1
        end = known.kept_rows
        for k in list(known.records):
            if k < known.kept:
                del known.records[k]
        for k in list(known.spans):
            if k < known.kept:
                del known.spans[k]
        for k in range(upto, done):  # done, not yet closed: live sums, read every call
            records = await self._records(known, exp_id, k)
            sums = await self.store.live_sums(exp_id, k)
            end = known.write(k, from_live(known.products, records, sums), end)
        if upto < done and (await self.store.get_experiment(exp_id)).compacted > upto:
            return None
        return known, end, done

    async def _records(self, known: _Known, exp_id: str, k: int) -> PeriodRecords:
        """Period k's records: read once while their version stays stable (a flip, a freeze
        or a resume writes them again and moves it), else read afresh every call."""
        version = await self.store.records_version(exp_id, k)
        hit = known.records.get(k)
        if hit is not None and hit[0] == version and version[0] == version[1]:
            return hit[1]
        known.records.pop(k, None)
        records = records_of(known.products, await self.store.live_records(exp_id, k))
        # kept only when no write was in progress before or after the read
        if version[0] == version[1] and await self.store.records_version(exp_id, k) == version:
            known.records[k] = (version, records)
        return records

    # ------------------------------------------------------------------ in chunks (#42)
    async def layout(self, exp_id: str, as_of: datetime) -> GridLayout | None:
        """What a read of the experiment in chunks as of ``as_of`` covers: the periods done,
        how many of them are compacted (after compacting those whose sales window closed) and
        the exclusion windows' blackout of each. Nothing of the cells is read or kept."""
        state = await self.store.get_experiment(exp_id)
        spec = state.spec
        done = _done(state, as_of)
        if done == 0:
            return None
        compacted = await self._compact(state, done, as_of)
        known = self._known_of(spec)
        final = min(compacted, done)
        for k in list(known.records):
            if k < final:
                del known.records[k]
        for k in list(known.spans):
            if k < final:
                del known.spans[k]
        spans = await self._spans(state)
        hits = tuple(window_hits(spec, done, spans))
        return GridLayout(
            exp_id, known.products, done, final, hits, token=_Read(spec, compacted, spans)
        )

    async def unchanged(self, layout: GridLayout) -> bool:
        read: _Read = layout.token
        if layout.final >= layout.done:  # nothing was read live
            return True
        return (await self.store.get_experiment(layout.experiment)).compacted == read.compacted

    async def grids(
        self,
        layout: GridLayout,
        size: int,
        first: int = 0,
        keep: np.ndarray | None = None,
        only: Collection[int] | None = None,
    ) -> AsyncIterator[CellGrid]:
        """Products ``[a, a + size)`` over periods ``first .. done - 1``, chunk after chunk
        (those of ``only``, by index, when given): a compacted period's blocks of those
        products and an open period's sums of them, each read with one GETRANGE, and its
        records of them (the next chunk's requested before this one is yielded); nothing of a
        chunk's cells is kept after it (the compacted periods' headers and the open periods'
        records, while stable, are)."""
        read: _Read = layout.token
        spec, exp_id = read.spec, layout.experiment
        known = self._known_of(spec)
        closed = list(range(first, layout.final))
        live = list(range(max(first, layout.final), layout.done))
        missing = [k for k in closed if k not in known.headers]
        for at in range(0, len(missing), 256):
            ks = missing[at : at + 256]
            known.headers.update(zip(ks, await self.store.period_headers(exp_id, ks), strict=True))
        n = len(known.products)
        keep = np.empty(0, dtype=np.intp) if keep is None else np.asarray(keep, dtype=np.intp)
        wanted = None if only is None else set(only)
        bounds = [
            (a, min(n, a + size))
            for a in range(0, n, size)
            if wanted is None or a // size in wanted
        ]
        records = await _ChunkRecords.start(self.store, known, exp_id, live)
        ahead = asyncio.ensure_future(records.of(*bounds[0])) if bounds else None
        try:
            for i, (a, b) in enumerate(bounds):
                cols: list[tuple[int, PeriodColumns]] = []
                for at in range(0, len(closed), _FETCH):
                    ks = closed[at : at + _FETCH]
                    got = await self.store.compacted_span(
                        exp_id, [(k, known.headers[k]) for k in ks], a, b
                    )
                    cols.extend(zip(ks, got, strict=True))
                sums = await self.store.live_sums_span(exp_id, live, a, b)
                assert ahead is not None
                parts = await ahead
                ahead = (
                    asyncio.ensure_future(records.of(*bounds[i + 1]))
                    if i + 1 < len(bounds)
                    else None
                )
                for k, raw in zip(live, sums, strict=True):
                    cols.append((k, from_live(known.products[a:b], parts[k], raw or None)))
                sel = keep[(keep >= a) & (keep < b)] - a
                yield _grid(known, layout, a, b, cols, sel, read.spans)
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
            elif ahead is not None and not ahead.cancelled():
                ahead.exception()  # retrieved: the read that raised it ended first
        await records.keep()

    async def _spans(self, state: ExperimentState) -> list[tuple[int, int | None]]:
        """The exclusion windows over the experiment (pauses, stops, its freezes and their
        washouts), as (start ms, end ms or None)."""
        exp_id, spec = state.spec.id, state.spec
        windows = await self.store.windows(exp_id)
        freezes = [
            f
            for f in await self.store.freezes()
            if f.get("experiments") is None or exp_id in f["experiments"]
        ]
        # returning from a freeze to the design's policy is a switch: its washout is excluded
        # too (blackout.apply_freezes), so a freeze blacks out every cell it or its washout touch
        washout_ms = int(spec.washout.total_seconds() * 1000)
        return [(w["start_ms"], w["end_ms"]) for w in windows] + [
            (f["start_ms"], f["end_ms"] + washout_ms) for f in freezes
        ]

    async def _with_windows(
        self, state: ExperimentState, known: _Known, end: int, done: int
    ) -> pd.DataFrame:
        return _frame(known, end, done, await self._spans(state))


def _done(state: ExperimentState, now: datetime) -> int:
    """The periods of the experiment complete at ``now``: strictly before now's, and flipped
    (a final experiment's last flipped period too)."""
    spec = state.spec
    done = min(period_index(spec, now), n_periods(spec))
    return max(0, min(done, state.flipped_period + (1 if state.status in status_word.FINAL else 0)))


#: compacted periods fetched per round trip (100,000 products: ~2 MB each, uncompressed)
_FETCH = 16


@dataclass
class RedisPartialStore:
    """Each chunk's part of a look, for the worker that merges the look (``analysis.sharded``):
    one string per chunk under the experiment's hash tag, gone after ``ttl_ms`` (a look's parts
    are read within seconds; an abandoned one must not stay)."""

    store: Store
    ttl_ms: int = 600_000

    async def put(self, experiment: str, look: str, chunk: int, blob: bytes) -> None:
        await self.store.put_partial(experiment, look, chunk, blob, self.ttl_ms)

    async def get(self, experiment: str, look: str, chunks: Sequence[int]) -> list[bytes | None]:
        return await self.store.partials(experiment, look, chunks)


@dataclass
class RedisSequenceTuning:
    """Each confidence sequence's target SE, fixed at its first look (first writer wins)."""

    store: Store

    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        return await self.store.fix_sequence_target(experiment, key, target_se)

    async def recall(self, experiment: str, key: str) -> float | None:
        return await self.store.sequence_target(experiment, key)


@dataclass
class RedisAdaptiveLooks:
    """Where the analysis worker leaves an adaptive ladder's latest look for the controller's
    flip (``core.ports.AdaptiveLookSink``): kept unless the stored look used more periods
    (``lua/look_put.lua``: an older worker's late write is ignored)."""

    store: Store

    async def put_look(self, look: AdaptiveLook) -> None:
        await self.store.put_adaptive_look(look)

    async def latest(self, exp_id: str) -> AdaptiveLook | None:
        """The stored look, or None before the first."""
        return await self.store.adaptive_look(exp_id)
