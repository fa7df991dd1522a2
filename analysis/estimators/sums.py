"""Sufficient statistics of the estimators that are sums over products (issue #42).

The difference in means (``dm``), the Hajek switchback means (``hajek``) and the
Horvitz-Thompson switchback sum (``ht``) are functions of sums over products. Each of them
computes its *partial* on a part of the panel - some of its products (a chunk read from Redis)
or, where the estimator allows it, some of its periods - and its *finish* turns the merged
partials into the published :class:`~analysis.results.EstimateResult`. The in-memory fit is
``finish(partial(panel))``: the chunked path is the same code on parts, not a copy of it.

Merges are exact sums and unions, so they are associative and commutative: the partials of two
workers over disjoint products merge into what one worker publishes (up to the order of
floating-point additions, ~1e-15 relative). Two merges exist, by the axis the parts split:

- :meth:`merge_units`: parts over disjoint products, the same periods (every estimator here);
- :meth:`merge_periods`: parts over the same products, disjoint periods - only where every
  cell's contribution is its own (``period_additive``): the difference in means, and ``ht`` /
  ``hajek`` with lag 0 and a draw every period (random days). A window of several periods
  (lag p > 0, or randomisation points) ties periods together, and its parts do not add up.

:class:`ArmSums` is what the clustered estimators share: per cluster, each arm's weight (its
cells, or the Hajek windows' inverse probabilities) and weighted outcome sum. The arm means,
their CR1 (Liang-Zeger, G/(G-1)) and CR2 (Bell-McCaffrey, Imbens-Kolesar df) covariances are
functions of these per-cluster sums alone: with residuals ``y - m_arm``, a cluster's residual
sum is ``s - n m``, and CR2's adjustment ``(1 - n_g / n)^(-1/2)`` needs only the cluster's
count (see ``analysis.estimators.crossover.cr2_mean_covariance``). Memory is O(clusters):
four float vectors per (estimator, metric) when products are the clusters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

import numpy as np

from analysis.errors import AnalysisError, InferenceError
from core.errors import kept

if TYPE_CHECKING:
    from analysis.panel import Panel


class PartsMismatch(AnalysisError):
    """Two partials cannot be merged: they were computed on parts that do not fit together
    (different periods for a product merge, a windowed estimator split by periods, different
    estimator settings). The worker then fits the estimator in one piece or not at all."""


class Partial(Protocol):
    def merge_units(self, other: Self) -> Self: ...

    def merge_periods(self, other: Self) -> Self: ...


S = TypeVar("S")
P = TypeVar("P")


def same_cells(panels: Mapping[str, Panel]) -> bool:
    """Whether ``panels`` are one panel's cells with other outcomes (``Panel.with_outcome``:
    one experiment's metrics), so that the masks made of their treatment, blackout and
    probabilities are the same: the same arrays, not equal ones."""
    first = next(iter(panels.values()), None)
    return first is not None and all(
        p.W is first.W
        and p.blackout is first.blackout
        and p.probability is first.probability
        and p.units is first.units
        and p.times is first.times
        and p.groups is first.groups
        for p in panels.values()
    )


def partials_sharing(
    shared_of: Callable[[Panel], S],
    partial_with: Callable[[S, Panel], P],
    panels: Mapping[str, Panel],
) -> dict[str, P | Exception]:
    """Each panel's partial, ``partial_with(shared_of(panel), panel)``, with what does not
    depend on the outcome (``shared_of``: the masks, the counts) made once when the panels
    share their cells (:func:`same_cells`), else once per panel: the same numbers, in the same
    operations, as each panel's own partial. An entry is the exception its partial raised
    (an error of the shared part is every panel's)."""
    out: dict[str, P | Exception] = {}
    shared: S | Exception | None = None
    share = same_cells(panels)
    for metric, panel in panels.items():
        try:
            if shared is None or not share:
                try:
                    shared = shared_of(panel)
                except (AnalysisError, ValueError) as exc:
                    shared = kept(exc)
            if isinstance(shared, Exception):
                raise shared
            out[metric] = partial_with(shared, panel)
        except (AnalysisError, ValueError) as exc:
            out[metric] = kept(exc)
    return out


def _union_of(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else _union(a, b)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) and len(b) and a[-1] < b[0]:  # ordered, disjoint parts (chunks in order)
        return np.concatenate([a, b])
    if len(a) == len(b) and np.array_equal(a, b):  # the same products' other periods
        return a
    return np.union1d(a, b)


@dataclass(frozen=True)
class ArmSums:
    """Per cluster (``keys``, sorted and distinct): each arm's weight ``n1``/``n0`` and weighted
    outcome sum ``s1``/``s0``. For the difference in means the weights are cell counts; for
    the Hajek means, the windows' inverse probabilities. A cluster with no weight in either arm
    is carried (a product with no usable cell in this part) and not counted in ``G``."""

    keys: np.ndarray
    n1: np.ndarray
    n0: np.ndarray
    s1: np.ndarray
    s0: np.ndarray

    @classmethod
    def of(
        cls,
        keys: np.ndarray,
        n1: np.ndarray,
        n0: np.ndarray,
        s1: np.ndarray,
        s0: np.ndarray,
    ) -> ArmSums:
        """From per-key sums whose keys may repeat or be unsorted (they are added up)."""
        keys = np.asarray(keys)
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            uniq, inv = np.unique(keys, return_inverse=True)
            m = len(uniq)
            return cls(
                uniq,
                *(
                    np.bincount(inv, weights=np.asarray(v, dtype=float), minlength=m)
                    for v in (n1, n0, s1, s0)
                ),
            )
        return cls(keys, *(np.asarray(v, dtype=float) for v in (n1, n0, s1, s0)))

    def merge(self, other: ArmSums) -> ArmSums:
        """Per-cluster sums of both (exact: associative and commutative)."""
        a, b = self.keys, other.keys
        if len(a) == len(b) and bool(np.array_equal(a, b)):
            return ArmSums(
                a,
                self.n1 + other.n1,
                self.n0 + other.n0,
                self.s1 + other.s1,
                self.s0 + other.s0,
            )
        if len(a) and len(b) and a[-1] < b[0]:
            return ArmSums(
                np.concatenate([a, b]),
                *(
                    np.concatenate([x, y])
                    for x, y in zip(
                        (self.n1, self.n0, self.s1, self.s0),
                        (other.n1, other.n0, other.s1, other.s0),
                        strict=True,
                    )
                ),
            )
        return ArmSums.of(
            np.concatenate([a, b]),
            np.concatenate([self.n1, other.n1]),
            np.concatenate([self.n0, other.n0]),
            np.concatenate([self.s1, other.s1]),
            np.concatenate([self.s0, other.s0]),
        )

    @classmethod
    def concat(cls, parts: list[ArmSums]) -> ArmSums:
        """The merge of parts over ordered, disjoint clusters (chunks of products in order),
        in one copy; any other parts are merged pairwise."""
        if len(parts) == 1:
            return parts[0]
        ordered = all(
            len(a.keys) and len(b.keys) and a.keys[-1] < b.keys[0]
            for a, b in zip(parts[:-1], parts[1:], strict=True)
        )
        if not ordered:
            half = len(parts) // 2
            return cls.concat(parts[:half]).merge(cls.concat(parts[half:]))
        return cls(
            np.concatenate([p.keys for p in parts]),
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("n1", "n0", "s1", "s0")),
        )

    @property
    def present(self) -> np.ndarray:
        """Clusters with weight in either arm (the ``G`` the variance counts)."""
        return (self.n1 > 0) | (self.n0 > 0)

    @property
    def G(self) -> int:
        return int(self.present.sum())

    @property
    def totals(self) -> tuple[float, float]:
        """Each arm's total weight (cells, for the difference in means)."""
        return float(self.n1.sum()), float(self.n0.sum())

    def means(self) -> tuple[float, float]:
        """Each arm's weighted mean (NaN for an arm without weight)."""
        w1, w0 = self.totals
        m1 = float(self.s1.sum()) / w1 if w1 > 0 else math.nan
        m0 = float(self.s0.sum()) / w0 if w0 > 0 else math.nan
        return m1, m0

    def outcome(self, s1: np.ndarray, s0: np.ndarray) -> ArmSums:
        """The same clusters and weights with other weighted outcome sums (a linearised
        outcome of the same cells, e.g. the price paid's)."""
        return replace(self, s1=np.asarray(s1, dtype=float), s0=np.asarray(s0, dtype=float))

    def _influence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(e1, e0, n1g, n0g) over the present clusters: each cluster's residual sums
        ``s - n m`` of the two arms, and its weights."""
        keep = self.present
        m1, m0 = self.means()
        n1g, n0g = self.n1[keep], self.n0[keep]
        return self.s1[keep] - n1g * m1, self.s0[keep] - n0g * m0, n1g, n0g

    def cr1(self) -> tuple[tuple[float, float, float], float]:
        """Liang-Zeger covariance of the two arm means (var treated, var control, covariance)
        with the G/(G-1) factor, and G - 1 degrees of freedom."""
        e1, e0, _, _ = self._influence()
        w1, w0 = self.totals
        return cr1_from_clusters(e1 / w1, e0 / w0)

    def cr2(
        self, level: str = "cluster", contrasts: tuple[tuple[float, float], ...] = ((1.0, -1.0),)
    ) -> tuple[tuple[float, float, float], list[float]]:
        """The CR2 covariance of the two arm means and each contrast's Satterthwaite df
        (:func:`cr2_from_clusters`); the weights must be cell counts."""
        e1, e0, n1g, n0g = self._influence()
        return cr2_from_clusters(n1g, n0g, e1, e0, level, contrasts)


def cr1_from_clusters(p1: np.ndarray, p0: np.ndarray) -> tuple[tuple[float, float, float], float]:
    """Liang-Zeger covariance from each cluster's influence on the two means (its residual sum
    over the arm's total weight), with G/(G-1), and G - 1 degrees of freedom."""
    G = len(p1)
    f = G / (G - 1)
    return (f * _dot(p1, p1), f * _dot(p0, p0), f * _dot(p1, p0)), float(G - 1)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` without BLAS: OpenBLAS threads a dot product of a million products, and on a
    busy machine its threads' waits cost ~10x the product (measured in bench_scale.py: 0.28 s
    for a CR2 covariance of 100,000 products under load, 0.02 s unthreaded)."""
    return float(np.einsum("i,i->", a, b))


def cr2_from_clusters(
    n1g: np.ndarray,
    n0g: np.ndarray,
    e1: np.ndarray,
    e0: np.ndarray,
    level: str = "cluster",
    contrasts: tuple[tuple[float, float], ...] = ((1.0, -1.0),),
) -> tuple[tuple[float, float, float], list[float]]:
    """The CR2 covariance of the two arm means (Bell & McCaffrey 2002) and, for each contrast
    ``(w1, w0)``, the Satterthwaite degrees of freedom of ``w1 * treated + w0 * control``
    (Imbens & Kolesar 2016), from each cluster's cell counts ``n1g``/``n0g`` and residual sums
    ``e1``/``e0`` (see ``analysis.estimators.crossover.cr2_mean_covariance`` for the algebra)."""
    G = len(n1g)
    n1, n0 = float(n1g.sum()), float(n0g.sum())
    if (n1g > 0).sum() < 2 or (n0g > 0).sum() < 2:
        raise InferenceError(
            f"The bias-reduced clustered SE needs treated cells in at least two {level}s and "
            f"control cells in at least two; there are {int((n1g > 0).sum())} and "
            f"{int((n0g > 0).sum())}. Use correction='cr1' or more {level}s."
        )
    s1 = 1.0 / np.sqrt(1.0 - n1g / n1)
    s0 = 1.0 / np.sqrt(1.0 - n0g / n0)
    p1 = s1 * e1 / n1
    p0 = s0 * e0 / n0
    cov = (_dot(p1, p1), _dot(p0, p0), _dot(p1, p0))
    dfs = []
    for w1, w0 in contrasts:
        d = w1**2 * s1**2 * n1g / n1**2 + w0**2 * s0**2 * n0g / n0**2
        a = w1 * s1 * n1g / n1 / math.sqrt(n1)
        b = w0 * s0 * n0g / n0 / math.sqrt(n0)
        aa, bb, ab = _dot(a, a), _dot(b, b), _dot(a, b)
        tr_b = float(d.sum()) - aa - bb
        tr_b2 = float((d**2).sum()) - 2 * _dot(d, a**2) - 2 * _dot(d, b**2) + aa**2 + bb**2
        tr_b2 += 2 * ab**2
        dfs.append(float(tr_b**2 / tr_b2) if tr_b2 > 0 else float(G - 1))
    return cov, dfs


@dataclass(frozen=True)
class MeansPartial:
    """The partial of an estimator of two arm means clustered by ``level`` (``dm``,
    ``hajek``): the per-cluster :class:`ArmSums`, the units and periods that entered (labels:
    they are unions across parts), the contributing cells, and ``settings``, which parts must
    share (the estimator's parameters, and a windowed estimator's periods)."""

    sums: ArmSums
    #: the units with a used cell, where the clusters are not the units (None: they are)
    units: np.ndarray | None
    periods: np.ndarray
    cells: int
    settings: tuple[object, ...]
    period_additive: bool
    #: every unit of the part, used or not (``ht``/``hajek`` count the panel's units)
    all_units: int = 0
    #: the periods the estimator saw (``hajek``: the kept periods; a product merge needs them
    #: equal, a period merge disjoint)
    seen: np.ndarray | None = None

    def _check(self, other: MeansPartial) -> None:
        if self.settings != other.settings:
            raise PartsMismatch(
                f"partials of different settings: {self.settings} and {other.settings}"
            )

    def merge_units(self, other: MeansPartial) -> MeansPartial:
        self._check(other)
        seen, theirs = self.seen, other.seen
        if seen is not None and theirs is not None and not np.array_equal(seen, theirs):
            raise PartsMismatch(
                "the parts kept different periods (a period without a usable cell in one "
                "part's products): fit them in one piece with the periods kept by all"
            )
        return MeansPartial(
            self.sums.merge(other.sums),
            _union_of(self.units, other.units),
            _union(self.periods, other.periods),
            self.cells + other.cells,
            self.settings,
            self.period_additive,
            self.all_units + other.all_units,
            self.seen,
        )

    def merge_periods(self, other: MeansPartial) -> MeansPartial:
        self._check(other)
        if not (self.period_additive and other.period_additive):
            raise PartsMismatch("this estimator's windows tie periods together")
        seen = None
        if self.seen is not None and other.seen is not None:
            seen = _union(self.seen, other.seen)
        return MeansPartial(
            self.sums.merge(other.sums),
            _union_of(self.units, other.units),
            _union(self.periods, other.periods),
            self.cells + other.cells,
            self.settings,
            self.period_additive,
            max(self.all_units, other.all_units),
            seen,
        )


@dataclass(frozen=True)
class SumPartial:
    """The partial of the Horvitz-Thompson switchback sum: its scalar sums (contributions,
    variance bound, windows counted), the units of the part and the periods kept."""

    x_sum: float
    bound: float
    n: int
    n1: int
    n0: int
    all_units: int
    seen: np.ndarray
    settings: tuple[object, ...]
    period_additive: bool

    def merge_units(self, other: SumPartial) -> SumPartial:
        if self.settings != other.settings:
            raise PartsMismatch("partials of different settings")
        if not np.array_equal(self.seen, other.seen):
            raise PartsMismatch(
                "the parts kept different periods: fit them in one piece with the periods "
                "kept by all"
            )
        return SumPartial(
            self.x_sum + other.x_sum,
            self.bound + other.bound,
            self.n + other.n,
            self.n1 + other.n1,
            self.n0 + other.n0,
            self.all_units + other.all_units,
            self.seen,
            self.settings,
            self.period_additive,
        )

    def merge_periods(self, other: SumPartial) -> SumPartial:
        if self.settings != other.settings:
            raise PartsMismatch("partials of different settings")
        if not (self.period_additive and other.period_additive):
            raise PartsMismatch("this estimator's windows tie periods together")
        return SumPartial(
            self.x_sum + other.x_sum,
            self.bound + other.bound,
            self.n + other.n,
            self.n1 + other.n1,
            self.n0 + other.n0,
            max(self.all_units, other.all_units),
            _union(self.seen, other.seen),
            self.settings,
            self.period_additive,
        )
