"""A read of an experiment's panel in chunks of products (issue #42), for
:meth:`controller.panel_source.RedisPanelSource.grids`: the read's own state, the open
periods' records as the read gets them chunk by chunk, and a chunk's cells as matrices
(``core.ports.CellGrid``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.panel_cells import _frame, _Known
from controller.spec import ExperimentSpec
from controller.store import Store
from controller.store.chunks import ProductNames, RecordsSpan
from controller.store.columns import NO_RECORD, ColumnsError, PeriodColumns, PeriodRecords
from core.ports import CellGrid, GridLayout


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
