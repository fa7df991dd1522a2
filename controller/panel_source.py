"""Redis implementations of the analysis worker's ports: the panel source and the sequence
tuning store (``core.ports``).

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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from controller.clock import Clock
from controller.designs import DesignContext, design_of, design_sampler
from controller.errors import StoreError
from controller.periods import n_periods, period_bounds, period_index
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store, decode_record, to_ms
from controller.store.chunks import ProductNames, RecordsSpan
from controller.store.columns import (
    NO_RECORD,
    ColumnsError,
    Header,
    PeriodColumns,
    PeriodRecords,
    from_live,
    records_of,
)
from core import status as status_word
from core.ports import CellGrid, ExperimentInfo, GridLayout

#: an experiment whose periods can have data: opened (running, paused) or final
_OPENED = frozenset(status_word.STORED) - {status_word.CREATING}

log = logging.getLogger("pricelab.panel")


def experiment_info(
    spec: ExperimentSpec, status: str, triggers: Mapping[str, int] | None = None
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
    )


_BUFFERS = {
    "product": np.int32,  # code into the sorted products
    "period": np.int64,
    "units": np.float64,
    "revenue": np.float64,
    "orders": np.float64,
    "head_units": np.float64,
    "treated": np.int64,
    "arm": np.int8,  # the arm's index in the spec's arm list (a column only for arms: specs)
    "probability": np.float64,
    "whole": np.bool_,  # the record blacks out the whole period (its analysis window)
    "reason": np.int32,  # code into _Known.reasons
}


@dataclass(frozen=True)
class _RecordFields:
    """A period's distinct records decoded, one entry per template: the arm's index in the
    spec, treated (any arm but control), the design probability, whether the record blacks
    out the whole period (its analysis window), and the blackout reason's code."""

    arm: np.ndarray
    treated: np.ndarray
    probability: np.ndarray
    whole: np.ndarray
    reason: np.ndarray


@dataclass
class _Known:
    """What a panel source has read of one experiment: its products, and (for the whole
    panel) the rows of its compacted periods, kept at the front of column buffers sized for
    the whole experiment, allocated at the first write; open periods are written after them
    on every call. A source that reads the experiment in chunks allocates none."""

    spec: ExperimentSpec
    products: pd.Index  # sorted: the order of every period's columns
    classes: pd.Categorical | None  # each product's class, when the spec groups products
    costs: np.ndarray | None  # each product's unit cost, when the spec gives every product one
    buf: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    kept: int = 0  # compacted periods in the buffers
    kept_rows: int = 0
    #: records of periods not yet kept, with the stable records_version they were read at
    records: dict[int, tuple[tuple[int, int], PeriodRecords]] = field(default_factory=dict)
    #: compacted periods' headers (they never change), for reads of chunks of products
    headers: dict[int, Header] = field(default_factory=dict)
    #: open periods' records of chunks of products ``(start, stop)``, read at a stable
    #: records_version, until every chunk of the period is read (then in ``records``)
    spans: dict[int, tuple[tuple[int, int], dict[tuple[int, int], RecordsSpan]]] = field(
        default_factory=dict
    )
    #: chunks' product names as the records script takes them (made once: ~0.1 s a million)
    names: dict[tuple[int, int], ProductNames] = field(default_factory=dict)
    _product_dtype: pd.CategoricalDtype | None = None

    @property
    def product_dtype(self) -> pd.CategoricalDtype:
        """The ``product`` column's categories, made once (a million labels are checked for
        uniqueness each time one is made: ~0.2 s)."""
        if self._product_dtype is None:
            self._product_dtype = pd.CategoricalDtype(self.products)
        return self._product_dtype

    @classmethod
    def of(cls, spec: ExperimentSpec) -> _Known:
        products = pd.Index(sorted(spec.all_products()), dtype=object)
        classes = pd.Categorical([spec.class_of(p) for p in products]) if spec.clusters else None
        listed = spec.costs_of(list(products))
        costs = None if listed is None else np.array(listed, dtype=np.float64)
        return cls(spec, products, classes, costs)

    def rows_for(self, size: int) -> _Known:
        """A holder of ``size`` rows of this experiment's cells (a chunk's long rows), sharing
        its products, classes, costs and blackout reasons."""
        rows = _Known(self.spec, self.products, self.classes, self.costs, reasons=self.reasons)
        rows._product_dtype = self.product_dtype
        rows.buf = {c: np.empty(size, t) for c, t in _BUFFERS.items()}
        return rows

    def fields(self, k: int, templates: tuple[str, ...]) -> _RecordFields:
        """Period k's distinct records decoded (the same for every chunk of the period)."""
        spec = self.spec
        end_ms = to_ms(period_bounds(spec, k)[1])
        control = spec.control_index
        treated: list[int] = []
        index: list[int] = []
        prob: list[float] = []
        whole: list[bool] = []
        reason: list[int] = []
        for rec in templates:
            arm, p, bu, why = decode_record(rec)
            i = spec.index_of(arm)
            index.append(i)
            treated.append(int(i != control))  # any arm but control (two arms: treatment)
            prob.append(p)
            whole.append(bu is not None and to_ms(bu) >= end_ms)
            reason.append(self.reasons.setdefault(why or "", len(self.reasons)))
        return _RecordFields(
            np.asarray(index, dtype=np.int8),
            np.asarray(treated, dtype=np.int64),
            np.asarray(prob, dtype=np.float64),
            np.asarray(whole, dtype=np.bool_),
            np.asarray(reason, dtype=np.int32),
        )

    def write(self, k: int, cols: PeriodColumns, at: int, index: np.ndarray | None = None) -> int:
        """Period k's rows (products with a record, in order) from row ``at``; the row after.
        ``index``: each of the columns' products' position among the experiment's (when they
        are some of them: a chunk's)."""
        fields = self.fields(k, cols.templates)
        rows = np.flatnonzero(cols.codes != NO_RECORD)
        codes = cols.codes[rows].astype(np.intp)
        stop = at + len(rows)
        if not self.buf:
            size = len(self.products) * n_periods(self.spec)
            self.buf = {c: np.empty(size, t) for c, t in _BUFFERS.items()}
        if stop > len(self.buf["period"]):  # more rows than planned (cannot happen today)
            self.buf = {c: np.resize(b, max(stop, 2 * len(b))) for c, b in self.buf.items()}
        b = self.buf
        b["product"][at:stop] = rows if index is None else index[rows]
        b["period"][at:stop] = k
        for name, per_product in zip(
            ("units", "revenue", "orders", "head_units"),
            (cols.units, cols.revenue, cols.orders, cols.head),
            strict=True,
        ):
            b[name][at:stop] = per_product[rows]
        for name, per_record in (
            ("treated", fields.treated),
            ("arm", fields.arm),
            ("probability", fields.probability),
            ("whole", fields.whole),
            ("reason", fields.reason),
        ):
            b[name][at:stop] = per_record[codes]
        return stop


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
        out: list[ExperimentInfo] = []
        for st in await self.store.experiments():
            if st.status in _OPENED and st.flipped_period >= 0:
                spec = st.spec
                uses_triggers = design_of(spec).uses_triggers
                triggers = await self.store.triggers(spec.id) if uses_triggers else {}
                out.append(experiment_info(spec, st.status, triggers))
        # what is kept of experiments no longer analysed is let go
        for gone in set(self._known) - {i.id for i in out}:
            del self._known[gone]
        return out

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
        hits = tuple(_hits(spec, done, spans))
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


def _frame(known: _Known, end: int, done: int, spans: list[tuple[int, int | None]]) -> pd.DataFrame:
    """The panel's rows (period-major, products sorted within a period): views of the
    buffers' first ``end`` rows, valid until the next call for the experiment. Product, class,
    blackout reason and (for a spec with ``arms:``) ``arm``, the cell's arm by name, are
    categoricals over the experiment's own labels (codes, not millions of strings); a cell is
    blackout when its record says so or an exclusion window overlaps its period's analysis
    window. ``treated`` is 1 for any arm but control; a two-arm shorthand spec's panel has
    no ``arm`` column (its arm is ``treated``), as before specs had ``arms:``; a spec whose
    arms give price ratios adds ``price_ratio``, the cell's arm's listed price ratio."""
    if end == 0:
        return pd.DataFrame()
    spec, b = known.spec, known.buf
    starts = [period_bounds(spec, k)[0] for k in range(done)]
    hit = _hits(spec, done, spans)
    period = b["period"][:end]
    codes = b["product"][:end]
    data: dict[str, Any] = {
        "product": pd.Categorical.from_codes(codes, dtype=known.product_dtype),
        "period": period,
        "period_start": pd.DatetimeIndex(starts)[period],
        **{c: b[c][:end] for c in _AS_IS},
        **(
            {
                "arm": pd.Categorical.from_codes(
                    b["arm"][:end], dtype=pd.CategoricalDtype([a.name for a in spec.arm_list()])
                )
            }
            if spec.arms
            else {}
        ),
        **(
            {
                "price_ratio": np.array([a.price_ratio for a in spec.arm_list()], dtype=float)[
                    b["arm"][:end]
                ]
            }
            if spec.arms and spec.arm_list()[0].price_ratio is not None
            else {}
        ),
        "blackout": b["whole"][:end] | np.array(hit, dtype=bool)[period],
        "blackout_reason": pd.Categorical.from_codes(
            b["reason"][:end],
            dtype=pd.CategoricalDtype(pd.Index(list(known.reasons), dtype=object)),
        ),
    }
    units, revenue = data["units"], data["revenue"]
    # the decision metrics (analysis.metrics): the average price paid (no sale: no price), and
    # profit when the spec gives every product a unit cost (never from a made-up cost)
    data["price"] = np.divide(revenue, units, out=np.full(end, np.nan), where=units > 0)
    if known.costs is not None:
        data["profit"] = revenue - units * known.costs[codes]
    if known.classes is not None:
        data["class"] = pd.Categorical.from_codes(
            known.classes.codes[codes], dtype=known.classes.dtype
        )
    return pd.DataFrame(data, copy=False)


def _done(state: ExperimentState, now: datetime) -> int:
    """The periods of the experiment complete at ``now``: strictly before now's, and flipped
    (a final experiment's last flipped period too)."""
    spec = state.spec
    done = min(period_index(spec, now), n_periods(spec))
    return max(0, min(done, state.flipped_period + (1 if state.status in status_word.FINAL else 0)))


def _hits(spec: ExperimentSpec, done: int, spans: list[tuple[int, int | None]]) -> list[bool]:
    """Per period done: whether an exclusion window overlaps its analysis window."""
    out = []
    for k in range(done):
        start, stop = period_bounds(spec, k)
        tail_start, end_ms = to_ms(start + spec.washout), to_ms(stop)
        out.append(any(s < end_ms and (e is None or e > tail_start) for s, e in spans))
    return out


@dataclass(frozen=True)
class _Read:
    """A read in chunks' own state (``GridLayout.token``): the spec, the compacted count it
    saw, the exclusion windows."""

    spec: ExperimentSpec
    compacted: int
    spans: list[tuple[int, int | None]]


@dataclass
class _ChunkRecords:
    """The open periods' records as one read in chunks gets them (:meth:`RedisPanelSource.grids`):
    a period's whole records kept at its current records_version, else each chunk's kept at it,
    else read for the chunk, in its order (``ChunkStore.live_records_span``). At the end of a
    read that stayed stable, each period's chunks are kept, and once they cover every product,
    joined into the period's records (which compaction reuses, as it does the whole read's)."""

    store: Store
    known: _Known
    experiment: str
    versions: dict[int, tuple[int, int]]
    whole: dict[int, PeriodRecords]
    #: per period not kept whole: the chunks' records this read got
    got: dict[int, dict[tuple[int, int], RecordsSpan]]

    @classmethod
    async def start(
        cls, store: Store, known: _Known, experiment: str, live: Sequence[int]
    ) -> _ChunkRecords:
        versions = {k: await store.records_version(experiment, k) for k in live}
        whole: dict[int, PeriodRecords] = {}
        for k, version in versions.items():
            hit = known.records.get(k)
            if hit is not None and hit[0] == version and version[0] == version[1]:
                whole[k] = hit[1]
            kept = known.spans.get(k)
            if kept is not None and kept[0] != version:
                del known.spans[k]
        got: dict[int, dict[tuple[int, int], RecordsSpan]] = {k: {} for k in live if k not in whole}
        return cls(store, known, experiment, versions, whole, got)

    async def of(self, a: int, b: int) -> dict[int, PeriodRecords]:
        """Each open period's records of products ``[a, b)``."""
        out = {k: PeriodRecords(r.templates, r.codes[a:b]) for k, r in self.whole.items()}
        todo = []
        for k, spans in self.got.items():
            kept = self.known.spans.get(k)
            span = None if kept is None else kept[1].get((a, b))
            if span is None:
                todo.append(k)
            else:
                out[k], spans[(a, b)] = span.records, span
        if todo:
            names = self.known.names.get((a, b))
            if names is None:
                names = self.known.names[(a, b)] = ProductNames.of(self.known.products[a:b])
            read = await self.store.live_records_span(self.experiment, todo, names)
            for k, span in zip(todo, read, strict=True):
                out[k], self.got[k][(a, b)] = span.records, span
        return out

    async def keep(self) -> None:
        """Keep what this read got of each period whose records stayed stable throughout it.
        A period whose hash holds more records than its products' (read whole) is refused as
        :func:`~controller.store.columns.records_of` refuses it: a record of another product
        would be dropped silently."""
        n = len(self.known.products)
        for k, spans in self.got.items():
            version = self.versions[k]
            if version[0] != version[1] or (
                await self.store.records_version(self.experiment, k) != version
            ):
                self.known.spans.pop(k, None)
                continue
            kept = self.known.spans.setdefault(k, (version, {}))[1]
            kept.update(spans)
            ordered = sorted(kept.items())
            at = 0
            for (a, b), _ in ordered:
                if a != at:
                    break
                at = b
            if at != n:  # not every chunk read yet (or chunks of two sizes)
                continue
            held = {span.held for _, span in ordered}
            found = sum(span.found for _, span in ordered)
            if len(held) == 1 and (h := held.pop()) > found:
                raise ColumnsError(
                    f"period {k}'s records name {h - found} product(s) not in the experiment"
                )
            self.known.records[k] = (version, _joined([span.records for _, span in ordered]))
            del self.known.spans[k]


def _joined(parts: Sequence[PeriodRecords]) -> PeriodRecords:
    """Consecutive products' records, one period's (their distinct texts in order of first use)."""
    index: dict[str, int] = {}
    codes = []
    for r in parts:
        # a chunk's codes into the joined texts; its NO_RECORD (past its texts) stays one
        remap = np.array(
            [index.setdefault(t, len(index)) for t in r.templates] + [NO_RECORD], dtype=np.uint16
        )
        local = r.codes.astype(np.intp)
        local[local == NO_RECORD] = len(r.templates)
        codes.append(remap[local])
    if len(index) >= NO_RECORD:
        raise ColumnsError(f"more than {NO_RECORD - 1} distinct records in one period")
    return PeriodRecords(
        tuple(index), np.concatenate(codes) if codes else np.empty(0, dtype=np.uint16)
    )


def _grid(
    known: _Known,
    layout: GridLayout,
    a: int,
    b: int,
    cols: list[tuple[int, PeriodColumns]],
    sel: np.ndarray,
    spans: list[tuple[int, int | None]],
) -> CellGrid:
    """Products ``[a, b)`` over the periods of ``cols`` as matrices (``CellGrid``), built as
    the long table's rows are (:meth:`_Known.write`: the same records decoded, the same
    blackout), with the long rows of products ``a + sel``."""
    m, t = b - a, len(cols)
    units = np.zeros((t, m))
    revenue = np.zeros((t, m))
    treated = np.zeros((t, m), dtype=np.bool_)
    probability = np.zeros((t, m))
    blackout = np.ones((t, m), dtype=np.bool_)
    recorded = np.zeros((t, m), dtype=np.bool_)
    rows = known.rows_for(len(sel) * t) if len(sel) else None
    at = 0
    for j, (k, c) in enumerate(cols):
        fields = known.fields(k, c.templates)
        codes = c.codes.astype(np.intp)
        has = codes != NO_RECORD
        code = np.where(has, codes, 0)
        units[j] = c.units
        revenue[j] = c.revenue
        recorded[j] = has
        if len(c.templates):
            treated[j] = fields.treated[code].astype(np.bool_) & has
            probability[j] = fields.probability[code]
            blackout[j] = fields.whole[code] | layout.hits[k] | ~has
        if rows is not None:
            part = PeriodColumns(
                c.templates, c.codes[sel], c.units[sel], c.revenue[sel], c.orders[sel], c.head[sel]
            )
            at = rows.write(k, part, at, a + sel)
    # product x period views of the period-major buffers (column-major: a period's column,
    # and a run of periods, is contiguous; no copy)
    values = {"units": units.T, "revenue": revenue.T}
    if known.costs is not None:
        values["profit"] = values["revenue"] - values["units"] * known.costs[a:b, None]
    classes = None
    if known.classes is not None:
        classes = np.asarray(known.classes[a:b].astype(str))
    return CellGrid(
        a,
        b,
        np.asarray(known.products[a:b], dtype=str),
        np.array([k for k, _ in cols], dtype=np.int64),
        values,
        treated.T,
        probability.T,
        blackout.T,
        recorded.T,
        classes,
        None if rows is None else _frame(rows, at, layout.done, spans),
    )


#: compacted periods fetched per round trip (100,000 products: ~2 MB each, uncompressed)
_FETCH = 16

#: the buffers that are panel columns as they stand
_AS_IS = ("units", "revenue", "orders", "head_units", "treated", "probability")


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
