"""An experiment too large to hold whole, estimated chunk by chunk (issue #42).

Above ``Chunking.above`` products the analysis worker does not read an experiment as one long
cell table. It reads it in chunks of products (``core.ports.ChunkedPanelSource``) as product x
period matrices (:func:`grid_panels`), and for every estimator that is a sum over products
(:data:`CHUNKED`: ``dm``, ``ht``, ``hajek``; and the price paid by ``dm`` and ``hajek``) it
adds up the estimator's own partial statistics (``analysis.estimators.sums``): the published
estimate is the estimator's ``finish`` of the merged partials, the code ``fit`` runs in one
piece. Peak memory is one chunk's matrices plus O(products) vectors of sums.

Where the estimator's partials add up over periods too (``period_additive``: ``dm``; ``ht``
and ``hajek`` with lag 0 and a draw every period), each chunk's sums over the compacted
periods are kept between looks, and a look reads only the periods not compacted when the
sums were kept: the cycle after a new period reads that period and the open ones.

Every other estimator (``fe``, ``cuped``, ``crossover``, the synthetic controls, ``mc``,
``trop``; the elasticity) and the checks that need cells (segments, negative margins) run
as on a small experiment, on the long cell rows of a seeded uniform sample of
``Chunking.sample`` products (all of them when there are fewer), read in the same pass. Their
estimates say so by their ``n_units``. Spillover, which needs the whole substitutes graph,
is published as not identified.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, NotEstimable, PanelError
from analysis.estimators import registry
from analysis.estimators.sums import MeansPartial, Partial
from analysis.metrics import price_from_parts
from analysis.panel import Panel
from analysis.results import EstimateResult
from core.errors import kept
from core.ports import CellGrid, EstimatorPlan

#: the estimators fitted from chunks of products (when their settings allow: ``chunkable``)
CHUNKED = ("dm", "ht", "hajek")
#: per-cell metrics a grid may carry, in the order they are published
_CELL_METRICS = ("units", "revenue", "profit")


@dataclass(frozen=True)
class Chunking:
    """When and how the worker reads an experiment in chunks: above ``above`` products,
    ``products`` at a time, with a seeded sample of ``sample`` products for the estimators
    that are not sums over products (``controller.settings.AnalysisSettings``)."""

    above: int = 100_000
    products: int = 65_536
    sample: int = 20_000


def chunk_estimator(plan: EstimatorPlan, seed: int) -> tuple[Any, str | None]:
    """The plan's estimator when it is fitted from chunks, else (None, why not)."""
    if plan.name not in CHUNKED:
        return None, f"{plan.label} is not a sum over products"
    est: Any = registry.make(plan.name, seed=seed, **dict(plan.params))
    why = est.chunkable()
    return (est, None) if why is None else (None, why)


def grid_panels(grid: CellGrid, periods: slice = slice(None)) -> dict[str, Panel]:
    """A chunk's panels of each per-cell metric over ``periods`` of its columns: the cells
    :func:`analysis.worker.metric_panels` makes of the same rows of the long table.

    A period no product has an assignment record for is left out, as the long table has no
    row of it: a missed flip (no controller flipped that boundary; the next one caught up to
    the period in force, ``missed_flips``), whose sales count as unassigned. A period some
    products have a record for and others not is an error."""
    return _panels(grid, periods, np.asarray(grid.recorded[:, periods].any(axis=0)))


def _panels(grid: CellGrid, periods: slice, some: np.ndarray) -> dict[str, Panel]:
    """:func:`grid_panels`, given which of the columns in ``periods`` some product has a
    record of (``some``)."""
    recorded = grid.recorded[:, periods]
    times = grid.periods[periods]
    kept: slice | np.ndarray = periods
    if not some.all():  # whole periods without records (every chunk must agree: ChunkSums.merge)
        kept = np.arange(len(grid.periods))[periods][some]
        recorded, times = recorded[:, some], times[some]
    if not recorded.all():
        i, t = np.argwhere(~recorded)[0]
        raise PanelError(
            f"The panel is unbalanced: product {str(grid.products[i])!r} has no assignment "
            f"record at period {int(times[t])}."
        )
    cols = (slice(None), kept)
    units = Panel(
        Y=grid.values["units"][cols],
        W=grid.treated[cols],
        units=grid.products,
        times=times,
        blackout=grid.blackout[cols],
        probability=grid.probability[cols],
        groups=grid.classes,
        part=True,
    )
    out = {"units": units}
    for metric in _CELL_METRICS[1:]:
        if metric in grid.values:
            out[metric] = units.with_outcome(grid.values[metric][cols])
    return out


def metrics_of_grid(grid_values: Sequence[str]) -> tuple[str, ...]:
    """The metrics published from a grid's values (``analysis.metrics.metrics_of``'s order)."""
    out = [m for m in _CELL_METRICS if m in grid_values]
    if "revenue" in grid_values:
        out.append("price")
    return tuple(out)


def control_sums(panels: Mapping[str, Panel]) -> dict[str, tuple[float, int]]:
    """Each metric's sum and count over the control cells not in blackout (what
    ``analysis.worker._control_baseline`` averages over the long table)."""
    units = panels["units"]
    control = ~units.W & ~units.blackout
    count = int(control.sum())
    return {m: (float(np.sum(p.Y, where=control)), count) for m, p in panels.items()}


def sample_positions(n: int, size: int, experiment: str, seed: int) -> np.ndarray:
    """The sorted positions of a seeded uniform sample of ``size`` of ``n`` products (all of
    them when ``size >= n``): the same on every look and every worker."""
    if size >= n:
        return np.arange(n, dtype=np.intp)
    rng = np.random.default_rng((seed, zlib.crc32(experiment.encode())))
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.intp)


Key = tuple[str, str]  # (estimator label, metric)


@dataclass
class ChunkSums:
    """One chunk's partials of every (estimator, metric) and its control sums over some
    periods; an entry is the exception its partial raised where it could not be computed."""

    parts: dict[Key, Partial | Exception] = field(default_factory=dict)
    control: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: the periods left out because no product of the chunk has a record of them
    #: (:func:`grid_panels`): every chunk of one look must leave out the same ones
    missed: frozenset[int] = frozenset()

    def merge(self, other: ChunkSums, axis: str) -> ChunkSums:
        """Both merged, ``axis`` "units" (other products) or "periods" (other periods). Two
        chunks of other products that left out other periods (a period some products have a
        record of and others not: a flip's records cut short, and the period caught up over)
        give an error in every entry, as an unbalanced panel does."""
        if axis == "units" and self.missed != other.missed:
            k = min(self.missed ^ other.missed)
            err = PanelError(
                f"The panel is unbalanced: period {k} has assignment records for some products "
                "and none for others."
            )
            return ChunkSums(
                parts=dict.fromkeys(self.parts.keys() | other.parts.keys(), err),
                missed=self.missed | other.missed,
            )
        out = ChunkSums(missed=self.missed | other.missed)
        for key in self.parts.keys() | other.parts.keys():
            a, b = self.parts.get(key), other.parts.get(key)
            if a is None or b is None:
                out.parts[key] = a if b is None else b  # type: ignore[assignment]
            elif isinstance(a, Exception):
                out.parts[key] = a
            elif isinstance(b, Exception):
                out.parts[key] = b
            else:
                try:
                    out.parts[key] = a.merge_units(b) if axis == "units" else a.merge_periods(b)
                except AnalysisError as exc:
                    out.parts[key] = kept(exc)
        for m in self.control.keys() | other.control.keys():
            s0, c0 = self.control.get(m, (0.0, 0))
            s1, c1 = other.control.get(m, (0.0, 0))
            out.control[m] = (s0 + s1, c0 + c1)
        return out


def grid_sums(
    fitted: Sequence[tuple[EstimatorPlan, Any]],
    grid: CellGrid,
    periods: slice = slice(None),
    timer: Callable[[Key, float], None] | None = None,
) -> ChunkSums:
    """:func:`chunk_sums` of a grid's panels over ``periods`` of its columns
    (:func:`grid_panels`), with the periods left out for want of any record; nothing but
    them when no period is left."""
    some = np.asarray(grid.recorded[:, periods].any(axis=0))
    missed = frozenset(int(k) for k in grid.periods[periods][~some])
    if not some.any():
        return ChunkSums(missed=missed)
    sums = chunk_sums(fitted, _panels(grid, periods, some), timer)
    sums.missed = missed
    return sums


def chunk_sums(
    fitted: Sequence[tuple[EstimatorPlan, Any]],
    panels: Mapping[str, Panel],
    timer: Callable[[Key, float], None] | None = None,
) -> ChunkSums:
    """The partials of every chunked (plan, metric) on one part's panels: an estimator's
    metrics at once where it shares their masks (``partials``), the seconds split evenly."""
    import time

    out = ChunkSums(control=control_sums(panels))
    for plan, est in fitted:
        t0 = time.perf_counter()
        got = est.partials(panels) if hasattr(est, "partials") else _each(est, panels)
        seconds = (time.perf_counter() - t0) / max(len(panels), 1)
        for metric in panels:
            key = (plan.label, metric)
            out.parts[key] = got[metric]
            if timer is not None:
                timer(key, seconds)
    return out


def _each(est: Any, panels: Mapping[str, Panel]) -> dict[str, Partial | Exception]:
    out: dict[str, Partial | Exception] = {}
    for metric, panel in panels.items():
        try:
            out[metric] = est.partial(panel)
        except (AnalysisError, ValueError) as exc:
            out[metric] = kept(exc)
    return out


def merge_in_order(parts: Sequence[ChunkSums]) -> ChunkSums:
    """The chunks' sums (in chunk order) merged pairwise, in a fixed tree: the same floating-
    point additions whichever worker computed which chunk (a running total would also copy the
    first chunks' sums once per chunk)."""
    mine = list(parts) or [ChunkSums()]
    while len(mine) > 1:
        mine = [
            mine[i].merge(mine[i + 1], "units") if i + 1 < len(mine) else mine[i]
            for i in range(0, len(mine), 2)
        ]
    return mine[0]


def look_plan(
    chunking: Chunking,
    seed: int,
    layout: Any,
    plans: Sequence[EstimatorPlan],
    members: Sequence[str],
) -> tuple[list[tuple[EstimatorPlan, Any]], np.ndarray, tuple[object, ...]]:
    """A look's chunked estimators, the sorted positions of the products whose long rows it
    keeps (the sample and ``members``), and the signature of both (what sums kept between
    looks, or computed by other workers, must share)."""
    fitted = [
        (plan, est)
        for plan in plans
        for est in (chunk_estimator(plan, seed)[0],)
        if est is not None
    ]
    products = pd.Index(layout.products)
    n = len(products)
    keep = sample_positions(n, chunking.sample, layout.experiment, seed)
    if members:
        where = products.get_indexer(list(members))
        keep = np.union1d(keep, where[where >= 0]).astype(np.intp)
    signature = (
        tuple((p.label, p.name, repr(sorted(p.params.items()))) for p, _ in fitted),
        chunking.products,
        n,
        zlib.crc32(keep.tobytes()),
    )
    return fitted, keep, signature


def finish_all(
    fitted: Sequence[tuple[EstimatorPlan, Any]], total: ChunkSums, metrics: Sequence[str]
) -> dict[Key, EstimateResult | Exception]:
    """Each (plan, metric)'s estimate from the merged partials of every chunk (the price paid
    from the units' and revenue's, for ``dm`` and ``hajek``), or the exception that stopped
    it (:class:`~analysis.errors.NotEstimable` where the metric has no such estimate)."""
    out: dict[Key, EstimateResult | Exception] = {}
    for plan, est in fitted:
        for metric in metrics:
            key = (plan.label, metric)
            try:
                if metric == "price":
                    out[key] = _price(plan, est, total)
                    continue
                part = total.parts.get(key)
                if part is None:
                    continue
                if isinstance(part, Exception):
                    raise part
                result = est.finish(part)
                if result.method != plan.label:
                    result = _relabel(result, plan.label)
                out[key] = _with_metric(result, metric)
            except (AnalysisError, ValueError) as exc:
                out[key] = kept(exc)
    return out


def _price(plan: EstimatorPlan, est: Any, total: ChunkSums) -> EstimateResult:
    pu, pr = total.parts.get((plan.label, "units")), total.parts.get((plan.label, "revenue"))
    for part in (pu, pr):
        if isinstance(part, Exception):
            raise part
    if not isinstance(pu, MeansPartial) or not isinstance(pr, MeansPartial):
        raise NotEstimable(
            f"the price paid is estimated by the difference in means or within products, "
            f"not by {plan.label}"
        )
    return price_from_parts(plan, est, pu, pr)


def _relabel(result: EstimateResult, label: str) -> EstimateResult:
    from dataclasses import replace

    return replace(result, method=label)


def _with_metric(result: EstimateResult, metric: str) -> EstimateResult:
    from dataclasses import replace

    return replace(result, metric=metric)


def concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The long rows of the chunks, one table. A categorical column whose chunks share one
    dtype (the product: the experiment's million labels) is put together from its codes:
    pandas would check each chunk's categories against the others' (~0.2 s each)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    shared = [
        c
        for c in frames[0].columns
        if isinstance(frames[0][c].dtype, pd.CategoricalDtype)
        and all(f[c].dtype is frames[0][c].dtype for f in frames)
    ]
    out = pd.concat([f.drop(columns=shared) for f in frames], ignore_index=True, copy=False)
    for c in shared:
        codes = np.concatenate([f[c].cat.codes.to_numpy() for f in frames])
        out[c] = pd.Categorical.from_codes(codes, dtype=frames[0][c].dtype)
    return out[list(frames[0].columns)]


@dataclass(frozen=True)
class Population:
    """One look at an experiment read in chunks: the chunked estimators' results (or the
    exception that stopped each) for every product, the seconds spent on each, each metric's
    control mean (``analysis.worker._control_baseline``'s), the metrics, and the size."""

    results: dict[Key, EstimateResult | Exception]
    seconds: dict[Key, float]
    baseline: dict[str, float]
    metrics: tuple[str, ...]
    n_products: int
    n_periods: int


@dataclass
class _Kept:
    """What is kept of an experiment between looks: each chunk's sums over the compacted
    periods ``[0, final)``, the exclusion windows' blackout they were summed under, and the
    kept products' long rows of those periods."""

    signature: tuple[object, ...]
    final: int = 0
    hits: tuple[bool, ...] = ()
    chunks: dict[int, ChunkSums] = field(default_factory=dict)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class ChunkedLooks:
    """The looks at the experiments read in chunks, with what each keeps between looks."""

    chunking: Chunking
    seed: int = 0
    _kept: dict[str, _Kept] = field(default_factory=dict, repr=False)

    def drop(self, experiment: str) -> None:
        """Let go of what is kept of ``experiment`` (its final look is out)."""
        self._kept.pop(experiment, None)

    def held(self) -> frozenset[str]:
        """The experiments of which something is kept between looks."""
        return frozenset(self._kept)

    async def look(
        self,
        source: Any,
        experiment: str,
        as_of: Any,
        plans: Sequence[EstimatorPlan],
        members: Sequence[str] = (),
        min_periods: int = 2,
        tick: int | None = None,
    ) -> tuple[Population, pd.DataFrame] | None:
        """The chunked estimates of ``plans`` (those that are sums over products) on every
        product as of ``as_of``, and the long rows of the sample and of ``members`` (the
        segments' products); None when fewer than ``min_periods`` periods are done
        (``tick``, the round of looks, matters only to a look spread over workers:
        :meth:`analysis.sharded.ShardedLooks.look`). A read
        that another worker's compaction overtook is read again (once), also when it stopped
        on an error (its open periods' records are read chunk by chunk)."""
        for _ in range(2):
            layout = await source.layout(experiment, as_of)
            if layout is None or layout.done < min_periods:
                return None
            try:
                got = await self._read(source, layout, plans, members)
            except AnalysisError:
                # an open period compacted mid-read has no records left for the chunks read
                # after it (unbalanced): read again, as any read that compaction overtook
                if await source.unchanged(layout):
                    raise
            else:
                if await source.unchanged(layout):
                    return got
            self._kept.pop(experiment, None)
        raise AnalysisError("its open periods were compacted by another worker while read")

    async def _read(
        self, source: Any, layout: Any, plans: Sequence[EstimatorPlan], members: Sequence[str]
    ) -> tuple[Population, pd.DataFrame]:
        import time

        fitted, keep, signature = look_plan(self.chunking, self.seed, layout, plans, members)
        additive = all(est.period_additive() for _, est in fitted)
        n = len(layout.products)
        kept = self._kept.get(layout.experiment)
        if (
            kept is None
            or not additive
            or kept.signature != signature
            or layout.final < kept.final
            or layout.hits[: kept.final] != kept.hits[: kept.final]
        ):
            kept = _Kept(signature)
        first = kept.final
        seconds: dict[Key, float] = {}

        def timer(key: Key, s: float) -> None:
            seconds[key] = seconds.get(key, 0.0) + s

        chunks: dict[int, ChunkSums] = {}
        mine: list[ChunkSums] = []  # each chunk's sums over every period read
        closed_rows, live_rows = [kept.rows], []
        metrics: tuple[str, ...] = ()
        async for grid in source.grids(layout, self.chunking.products, first, keep):
            metrics = metrics_of_grid(list(grid.values))
            split = layout.final - first  # the grid's columns compacted since the sums kept
            if additive:
                closed = (
                    grid_sums(fitted, grid, slice(0, split), timer) if split > 0 else ChunkSums()
                )
                live = (
                    grid_sums(fitted, grid, slice(split, None), timer)
                    if split < len(grid.periods)
                    else ChunkSums()
                )
                before = kept.chunks.get(grid.start)
                chunks[grid.start] = closed if before is None else before.merge(closed, "periods")
                mine.append(chunks[grid.start].merge(live, "periods"))
            else:
                mine.append(grid_sums(fitted, grid, timer=timer))
            if grid.rows is not None and len(grid.rows):
                compacted = grid.rows["period"].to_numpy() < layout.final
                closed_rows.append(grid.rows[compacted])
                live_rows.append(grid.rows[~compacted])
        total = merge_in_order(mine)
        t0 = time.perf_counter()
        results = finish_all(fitted, total, metrics)
        for key in results:
            timer(key, (time.perf_counter() - t0) / max(len(results), 1))
        if additive:
            kept.chunks, kept.final, kept.hits = chunks, layout.final, layout.hits
            kept.rows = concat_rows(closed_rows)
            self._kept[layout.experiment] = kept
        baseline = {m: s / c for m, (s, c) in total.control.items() if c}
        population = Population(results, seconds, baseline, metrics, n, layout.done)
        return population, concat_rows(
            [kept.rows, *live_rows] if additive else closed_rows[1:] + live_rows
        )
