"""An adaptive period's draw and its probabilities (docs/adaptive.md).

**The draw** (:func:`period_arms`): each unit's arm from the period's probabilities, with the
design's own keyed uniforms. The keys are the design's: random days key each product-period,
the optimal switchback each product-block, the cluster design's switchback each class-period;
the draw is the design's own (``Design.period_draws`` with the period's probabilities in its
:class:`~controller.designs.DesignContext`, the flip's path). So with the arms' allocations as
the probabilities, the draw is the design's, cell for cell (a test checks it), and an
adaptive ladder and a fixed one of the same seed share every cell's uniform: the two differ
only where the probabilities do.

**The probabilities** (:func:`period_probabilities`, pure): what the flip of period ``t``
records before any of its assignments goes out. The warmup's are the arms' allocations; at an
update point the rule of :mod:`controller.adaptive` on the newest look that used no period at
or after ``t`` (and at least :data:`MIN_LOOK_PERIODS`); anything else holds the last recorded
period's. An optimal switchback's update points are its randomisation points (a block keeps
one draw): the first point at or after each of the rule's update periods.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from controller.adaptive import (
    ADAPTIVE_DESIGNS,
    AdaptiveAllocation,
    adaptive_step,
    next_probabilities,
    update_periods,
)
from controller.designs.base import DesignContext, arm_index, design_of
from controller.designs.optimal_switchback import block, points
from controller.periods import n_periods
from controller.spec import ExperimentSpec
from core.ports import AdaptiveLook

#: the fewest periods a look must have used to steer the allocation: the analysis' own
#: minimum (``analysis.adaptive.MIN_PERIODS``; a test keeps the two equal)
MIN_LOOK_PERIODS = 3


def period_arms(
    spec: ExperimentSpec,
    products: Sequence[str],
    period: int,
    probabilities: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The arm index of each of ``products`` in 0-based ``period`` drawn with
    ``probabilities`` (one per arm, in the spec's arm order)."""
    if spec.design not in ADAPTIVE_DESIGNS:
        raise ValueError(f"the {spec.design} design has no adaptive draw")
    p = np.asarray(probabilities, dtype=float)
    if p.shape != (spec.n_arms,) or abs(float(p.sum()) - 1.0) > 1e-9 or (p < 0).any():
        raise ValueError(f"need {spec.n_arms} probabilities summing to 1; got {p.tolist()}")
    ctx = DesignContext(probabilities={period: tuple(float(x) for x in p)})
    codes, draws = design_of(spec).period_draws(spec, products, period, ctx)
    index = np.array([arm_index(spec, d) for d in draws], dtype=np.int64)
    return np.asarray(index[np.asarray(codes, dtype=np.int64)])


# ----------------------------------------------------------------------------- probabilities
Source = Literal["recorded", "warmup", "look", "held"]


@dataclass(frozen=True)
class PeriodProbabilities:
    """A period's arm probabilities (spec arm order) and where they come from: ``recorded``
    (drawn before: reused, never recomputed), ``warmup`` (the arms' allocations), ``look``
    (the rule on the look of ``look_periods`` periods, adaptive step ``step``) or ``held``
    (the last recorded period's, or the allocations before any; ``why``: the reason)."""

    probabilities: tuple[float, ...]
    source: Source
    step: int
    look_periods: int | None = None
    why: str | None = None


def update_points(spec: ExperimentSpec) -> list[int]:
    """The 0-based periods at whose start an adaptive ladder's probabilities may change: the
    rule's update periods (``controller.adaptive.update_periods``), each moved for an optimal
    switchback to the first randomisation point at or after it (a block keeps one draw)."""
    settings = _settings(spec)
    n = n_periods(spec)
    ups = update_periods(settings, n)
    if spec.design != "optimal-switchback":
        return ups
    pts = points(spec)
    out: list[int] = []
    for u in ups:
        i = bisect.bisect_left(pts, u)
        if i < len(pts) and (not out or pts[i] > out[-1]):
            out.append(pts[i])
    return out


def look_refusal(spec: ExperimentSpec, period: int, look: AdaptiveLook | None) -> str | None:
    """Why ``look`` cannot steer ``period`` (one clause), or None when it can."""
    if look is None:
        return "no look yet"
    if look.experiment != spec.id:
        return f"the look is of experiment {look.experiment!r}"
    if look.periods > period:
        return f"the look used {look.periods} periods, period {period} among them"
    if look.periods < MIN_LOOK_PERIODS:
        return f"the look used {look.periods} periods, fewer than {MIN_LOOK_PERIODS}"
    metric = spec.adaptive_metric()
    if look.metric != metric:
        return f"the look is of {look.metric}, the allocation seeks the best {metric}"
    k = spec.n_arms
    cov = np.asarray(look.cov, dtype=float)
    means = np.asarray(look.means, dtype=float)
    if means.shape != (k,) or cov.shape != (k, k):
        return f"the look has {means.size} means and a {cov.shape} covariance for {k} arms"
    if not (np.isfinite(means).all() and np.isfinite(cov).all()):
        return "the look's means or covariance are not finite"
    return None


def period_probabilities(
    spec: ExperimentSpec,
    period: int,
    recorded: Mapping[int, Sequence[float]],
    look: AdaptiveLook | None,
) -> PeriodProbabilities:
    """The arm probabilities of ``period`` of an adaptive ladder, given the periods recorded
    so far and the latest stored look (module docstring)."""
    settings = _settings(spec)
    step = adaptive_step(settings, period)
    if period in recorded:
        return PeriodProbabilities(tuple(map(float, recorded[period])), "recorded", step)
    alloc = tuple(map(float, spec.allocations()))
    if step == 0:
        return PeriodProbabilities(alloc, "warmup", 0)
    last = max((s for s in recorded if s < period), default=-1)
    held = tuple(map(float, recorded[last])) if last >= 0 else alloc
    start = block(spec, period) if spec.design == "optimal-switchback" else period
    if last >= start:
        return PeriodProbabilities(held, "held", step, why="a block keeps one draw")
    ups = update_points(spec)
    i = bisect.bisect_right(ups, last)
    if i >= len(ups) or ups[i] > period:
        return PeriodProbabilities(held, "held", step, why="not an update period")
    why = look_refusal(spec, period, look)
    if why is not None:
        return PeriodProbabilities(held, "held", step, why=why)
    assert look is not None
    try:
        p = next_probabilities(
            settings, look.means, cov=np.asarray(look.cov, dtype=float), step=step, seed=spec.seed
        )
    except (ValueError, np.linalg.LinAlgError) as e:
        return PeriodProbabilities(held, "held", step, why=f"the rule refused the look: {e}")
    return PeriodProbabilities(tuple(float(x) for x in p), "look", step, look.periods)


def _settings(spec: ExperimentSpec) -> AdaptiveAllocation:
    if spec.adaptive is None:
        raise ValueError(f"experiment {spec.id!r} has a fixed allocation")
    return spec.adaptive


__all__ = [
    "MIN_LOOK_PERIODS",
    "PeriodProbabilities",
    "look_refusal",
    "period_arms",
    "period_probabilities",
    "update_points",
]
