"""The panel's cell table: what a panel source keeps of one experiment (its products, the
column buffers of its rows, its records decoded) and the long product x period table built from
those buffers, with the exclusion windows' blackout (used by :mod:`controller.panel_source` and
:mod:`controller.panel_chunks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from controller.periods import n_periods, period_bounds
from controller.spec import ExperimentSpec
from controller.store import decode_record, to_ms
from controller.store.chunks import ProductNames, RecordsSpan
from controller.store.columns import NO_RECORD, Header, PeriodColumns, PeriodRecords

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
    hit = window_hits(spec, done, spans)
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


def window_hits(spec: ExperimentSpec, done: int, spans: list[tuple[int, int | None]]) -> list[bool]:
    """Per period done: whether an exclusion window overlaps its analysis window."""
    out = []
    for k in range(done):
        start, stop = period_bounds(spec, k)
        tail_start, end_ms = to_ms(start + spec.washout), to_ms(stop)
        out.append(any(s < end_ms and (e is None or e > tail_start) for s, e in spans))
    return out


#: the buffers that are panel columns as they stand
_AS_IS = ("units", "revenue", "orders", "head_units", "treated", "probability")
