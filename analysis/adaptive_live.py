"""An adaptive price ladder's look in the analysis worker (issue #57; docs/adaptive.md).

The worker's other estimators assume each cell's arm was drawn with the spec's fixed
allocation; an adaptive ladder's cells were drawn with probabilities that followed the earlier
looks, so those estimators are biased for it and are not published. What is published is
:class:`analysis.adaptive.AdaptiveArms` - the estimator the lab study validates
(lab/studies/adaptive_ladder.py) - fitted on the live long cell table and on the probabilities
the controller recorded for every period before its cells were drawn (``AllocationSource``;
never the spec's allocations):

- per metric (units, revenue, profit where the cells have it) and non-control arm, the
  contrast with the control and its simultaneous anytime-valid sequence (at alpha / (k - 1)),
  as an :class:`AdaptiveEstimate` (an :class:`analysis.results.EstimateResult` whose interval
  *is* the sequence: a fixed-time interval is not valid under the adaptation, docs/adaptive.md);
- the look itself (:class:`AdaptiveFit`): each arm's mean, the best set, the recorded
  probabilities per period, and why the other methods are not published (``kind: adaptive``
  on the estimates topic, :meth:`AdaptiveFit.to_dict`).

The carryover order is the design's: the lag its estimators use (an optimal switchback's
``p``, 0 otherwise), and an optimal switchback's periods redraw only at its randomisation
points. The horizon (where the sequences are tightest) is the planned number of periods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.adaptive import AdaptiveArms, AdaptivePanel, long_run_variance, window_paths
from analysis.errors import PanelError
from analysis.ratio import relative_fields
from analysis.results import EstimateResult
from analysis.verdict import decision_metric
from core.ports import AdaptiveLook, EstimatorPlan

#: the name the adaptive ladder's estimates are published under
ESTIMATOR = "aipw_adaptive"
#: the metrics estimated per arm (the price paid is a ratio of sums: not a per-cell mean)
METRICS = ("units", "revenue", "profit")

#: why the worker's other methods are not published for an adaptive ladder (said at every look)
NOT_VALID = (
    "Under an adaptive allocation each period's arm probabilities follow the earlier looks, so "
    "the estimators that assume the spec's fixed allocation ({methods}) are biased and are not "
    "published; every estimate of this ladder is AIPW on the probabilities recorded before "
    "each period, with anytime-valid sequences that hold while the allocation learns "
    "(docs/adaptive.md)."
)
#: what the fixed-allocation path publishes besides the design's estimators
OTHER_METHODS = (
    "the demand curve and recommended price",
    "Hsu's MCB",
    "segments",
    "the elasticity",
    "spillover",
)


def is_adaptive(params: Mapping[str, Any]) -> bool:
    """Whether the spec (as JSON) is an adaptive ladder."""
    return params.get("adaptive") is not None


def adaptive_metric(params: Mapping[str, Any]) -> str:
    """The metric the allocation seeks the best arm on: ``adaptive.metric``, else the
    decision metric (as ``controller.spec.ExperimentSpec.adaptive_metric``)."""
    block = params.get("adaptive") or {}
    return str(block.get("metric") or decision_metric(params))


def carryover(plans: Sequence[EstimatorPlan]) -> tuple[int, tuple[int, ...] | None]:
    """The carryover lag the design's estimators use (their ``p``; 0 without one) and, where
    they name them, the randomisation points (periods whose draw is fresh)."""
    lag = max((int(p.params.get("p") or 0) for p in plans), default=0)
    points = next(
        (tuple(int(x) for x in p.params["randomization_points"])
         for p in plans if p.params.get("randomization_points") is not None),
        None,
    )  # fmt: skip
    return lag, points


def not_valid_note(plans: Sequence[EstimatorPlan]) -> str:
    """The sentence that says which methods are not published, and why."""
    names = [p.label for p in plans] + list(OTHER_METHODS)
    return NOT_VALID.format(methods=", ".join(names))


@dataclass(frozen=True)
class AdaptiveEstimate(EstimateResult):
    """One arm's contrast with the control of an adaptive ladder. Its interval is the
    simultaneous anytime-valid sequence ``sequence`` (valid at any look, so also at this
    one); no fixed-time interval or p-value is published (not valid under the adaptation)."""

    sequence: tuple[float, float] = (math.nan, math.nan)

    def conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        return self.sequence

    def pvalue(self, value: float = 0.0) -> float:
        return math.nan

    def relative(self, alpha: float = 0.05, q_sequence: float | None = None) -> dict[str, Any]:
        out = relative_fields(self, alpha, q_sequence)
        # the relative interval is the relative sequence, as the absolute one is
        out["relative_ci_low"] = out.get("relative_cs_low")
        out["relative_ci_high"] = out.get("relative_cs_high")
        return out


@dataclass(frozen=True)
class LadderCells:
    """The live cells of an adaptive ladder as matrices: the products, the periods used
    (``0 .. periods - 1``), each metric's N x T values, the arm indices, the blackout and the
    recorded probabilities (T x k)."""

    products: np.ndarray
    periods: int
    values: Mapping[str, np.ndarray]
    arm: np.ndarray
    blackout: np.ndarray
    probability: np.ndarray
    redraw: np.ndarray

    def panel(self, metric: str) -> AdaptivePanel:
        y = self.values[metric]
        out = self.blackout | ~np.isfinite(y)
        return AdaptivePanel(np.where(out, np.nan, y), self.arm, self.probability, out,
                             self.redraw)  # fmt: skip


def ladder_cells(
    df: pd.DataFrame,
    names: Sequence[str],
    allocations: Mapping[int, Sequence[float]],
    lag: int,
    points: Sequence[int] | None = None,
) -> LadderCells:
    """The long cell table ``df`` (``PanelSource.panel``: product, period, arm by name, the
    metrics, blackout) over the periods ``0 .. P - 1`` that have cells and recorded
    probabilities. A period without a record ends them, unless every cell of it is blacked out
    (a pause, a freeze: it is in no estimate, and the windows through it, the ``lag``
    periods after it, are blacked out too: their weights are not known). A product without a
    row in a period is blacked out there and in the ``lag`` periods after it (its arm is not
    known, so no window through it holds an arm)."""
    if "arm" not in df.columns:
        raise PanelError("the cell table has no arm column: an adaptive ladder needs arms:")
    k = len(names)
    period_of = df["period"].to_numpy().astype(int)
    done = int(period_of.max()) + 1 if len(df) else 0
    dark = np.ones(done, bool)  # every cell of the period blacked out (or none there)
    np.logical_and.at(dark, period_of, df["blackout"].to_numpy().astype(bool))
    periods, unrecorded = 0, []
    while periods < done and (periods in allocations or dark[periods]):
        if periods not in allocations:
            unrecorded.append(periods)
        periods += 1
    while unrecorded and unrecorded[-1] == periods - 1:  # nothing after them: not a period yet
        unrecorded.pop()
        periods -= 1
    if periods == 0 or len(unrecorded) == periods:
        raise PanelError("no period has both cells and recorded probabilities yet")
    rows_p: list[list[float]] = []
    for t in range(periods):
        if t in allocations:
            rows_p.append([float(x) for x in allocations[t]])
        else:  # any valid row: no cell of it, nor of a window through it, is estimated
            rows_p.append(rows_p[-1] if rows_p else [1.0 / k] * k)
    if any(len(r) != k for r in rows_p):
        raise PanelError(f"the recorded probabilities are not one per arm ({k}) for every period")
    probs = np.array(rows_p, dtype=float)
    rows = df[period_of < periods]
    product = rows["product"].astype(str).to_numpy()
    products, pi = np.unique(product, return_inverse=True)
    ti = rows["period"].to_numpy().astype(int)
    index = {name: i for i, name in enumerate(names)}
    arm_names = rows["arm"].astype(str).to_numpy()
    try:
        ai = np.array([index[a] for a in arm_names], dtype=np.int64)
    except KeyError as exc:
        raise PanelError(f"a cell's arm {exc.args[0]!r} is not one of the spec's arms") from exc
    n = len(products)
    seen = np.zeros((n, periods), bool)
    seen[pi, ti] = True
    seen[:, unrecorded] = False  # its arms' probabilities are not known
    arm = np.broadcast_to(probs.argmax(axis=1)[None, :], (n, periods)).copy()
    arm[pi, ti] = ai
    arm[:, unrecorded] = probs[unrecorded].argmax(axis=1)[None, :]
    blackout = np.ones((n, periods), bool)
    blackout[pi, ti] = rows["blackout"].to_numpy().astype(bool)
    missing = ~seen
    for j in range(1, lag + 1):  # the windows through a missing cell
        missing[:, j:] |= ~seen[:, :-j]
    blackout |= missing
    values = {}
    for metric in METRICS:
        if metric in rows.columns:
            y = np.full((n, periods), np.nan)
            y[pi, ti] = rows[metric].to_numpy().astype(float)
            values[metric] = y
    redraw = np.ones(periods, bool)
    if points is not None:
        redraw = np.isin(np.arange(periods), np.asarray(points, dtype=int))
        redraw[0] = True
    return LadderCells(products, periods, values, arm, blackout, probs, redraw)


@dataclass
class AdaptiveFit:
    """One look at an adaptive ladder on one metric: the fitted :class:`AdaptiveArms` and
    what is published of it."""

    metric: str
    names: tuple[str, ...]
    control: int
    estimator: AdaptiveArms
    cells: LadderCells
    alpha: float
    lag: int
    n_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @property
    def periods(self) -> int:
        """The periods the look used (0 .. periods - 1)."""
        return self.cells.periods

    def look(self, experiment: str, as_of: datetime) -> AdaptiveLook:
        """What the controller's rule steers on (``AdaptiveLookSink``): the last look's
        per-arm means of this metric and their covariance, over the periods it used. The
        worker leaves this for the flip; ``pricelab simulate`` steers its loop on it."""
        looks = self.estimator.looks_
        return AdaptiveLook(
            experiment=experiment,
            periods=self.periods,
            metric=self.metric,
            means=tuple(float(x) for x in looks.mean[-1]),
            cov=tuple(tuple(float(x) for x in row) for row in looks.cov[-1]),
            as_of=as_of,
        )

    def mean_covariance(self) -> np.ndarray:
        """The per-arm means' covariance at the last look with the increments'
        autocovariances up to the lag (the sequences' variance), k x k."""
        z = self.estimator.pseudo_
        n = z.shape[0]
        c = z - z.mean(axis=0)
        cov = c.T @ c / (n - 1)
        for j in range(1, min(self.lag, n - 1) + 1):
            g = c[j:].T @ c[:-j] / (n - 1)
            cov = cov + g + g.T
        return np.asarray(cov / n)

    def estimates(self) -> list[AdaptiveEstimate]:
        """Each non-control arm's contrast with the control, its interval the simultaneous
        sequence."""
        looks = self.estimator.looks_
        z = self.estimator.pseudo_
        n = z.shape[0]
        cov = self.mean_covariance()
        mean = looks.mean[-1]
        k, c = len(self.names), self.control
        out = []
        for a in range(k):
            if a == c:
                continue
            # the contrast's SE as the sequence uses it (never below the plain one)
            se = float(math.sqrt(long_run_variance((z[:, a] - z[:, c])[:, None], self.lag)[0] / n))
            out.append(
                AdaptiveEstimate(
                    method=ESTIMATOR,
                    effect=float(looks.effect[-1, a]),
                    se=se,
                    n_units=len(self.cells.products),
                    n_periods=self.periods,
                    se_method="martingale_increments",
                    n_cells=int(self.n_cells[a]) if len(self.n_cells) else None,
                    metric=self.metric,
                    df=float(n - 1),
                    arm=self.names[a],
                    sim_ci=(float(looks.low[-1, a]), float(looks.high[-1, a])),
                    sim_method="bonferroni",
                    cs_split=max(k - 1, 1),
                    best_set=tuple(self.best_set()),
                    details={
                        "mean_treated": float(mean[a]),
                        "mean_control": float(mean[c]),
                        "mean_covariance": (
                            float(cov[a, a]),
                            float(cov[c, c]),
                            float(cov[a, c]),
                        ),  # fmt: skip
                        "df_ratio": float(n - 1),
                    },
                    sequence=(float(looks.low[-1, a]), float(looks.high[-1, a])),
                )
            )
        return out

    def sequence(self, arm: str) -> tuple[float, float]:
        """An arm's simultaneous sequence at the last look."""
        a = self.names.index(arm)
        looks = self.estimator.looks_
        return float(looks.low[-1, a]), float(looks.high[-1, a])

    def best_set(self) -> list[str]:
        """The arms the sequences do not show worse than another at the last look."""
        return [n for n, b in zip(self.names, self.estimator.looks_.best_set[-1], strict=True) if b]

    def to_dict(
        self, allocations: Mapping[int, Sequence[float]], note: str, horizon: int
    ) -> dict[str, Any]:
        """The ``kind: adaptive`` message's fields: the look's arms (mean, its SE, the
        contrast with the control and its simultaneous sequence, whether in the best set, the
        cells whose window held the arm), the best set, the recommended arm (the largest
        mean), the recorded probabilities of every period so far, and ``note``."""
        looks = self.estimator.looks_
        best = set(self.best_set())
        arms = []
        for a, name in enumerate(self.names):
            arms.append(
                {
                    "arm": name,
                    "control": a == self.control,
                    "mean": float(looks.mean[-1, a]),
                    "mean_se": float(looks.mean_se[-1, a]),
                    "effect": float(looks.effect[-1, a]),
                    "effect_se": float(looks.effect_se[-1, a]),
                    "cs_low": float(looks.low[-1, a]),
                    "cs_high": float(looks.high[-1, a]),
                    "in_best_set": name in best,
                    "n_cells": int(self.n_cells[a]) if len(self.n_cells) else None,
                }
            )
        return {
            "metric": self.metric,
            "method": self.estimator.method,
            "lag": self.lag,
            "horizon": horizon,
            "alpha": self.alpha,
            "n_units": len(self.cells.products),
            "n_periods": self.periods,
            "arms": arms,
            "best_set": sorted(best, key=self.names.index),
            "recommended": self.names[int(looks.mean[-1].argmax())],
            "allocation": [
                {"period": int(t), "probabilities": [float(p) for p in allocations[t]]}
                for t in sorted(allocations)
            ],
            "note": note,
        }


def fit_ladder(
    cells: LadderCells,
    metric: str,
    names: Sequence[str],
    control: int,
    *,
    lag: int,
    horizon: int,
    alpha: float = 0.05,
    method: Literal["aipw", "ipw"] = "aipw",
) -> AdaptiveFit:
    """:class:`AdaptiveArms` on one metric of the cells (PanelError: too few periods, or a
    cell whose arm had no recorded probability)."""
    if metric not in cells.values:
        raise PanelError(f"the cells have no {metric}")
    panel = cells.panel(metric)
    # the horizon is the plan's, fixed before the data (the look's periods only without one)
    planned = horizon if horizon > 0 else cells.periods
    est = AdaptiveArms(method=method, lag=lag, control=control, alpha=alpha,
                       horizon=planned).fit(panel)  # fmt: skip
    held, _ = window_paths(panel, lag)
    n_cells = (held & ~panel.excluded[:, :, None]).sum(axis=(0, 1))
    return AdaptiveFit(metric, tuple(names), control, est, cells, alpha, lag, n_cells)


__all__ = [
    "ESTIMATOR",
    "METRICS",
    "AdaptiveEstimate",
    "AdaptiveFit",
    "LadderCells",
    "adaptive_metric",
    "carryover",
    "fit_ladder",
    "is_adaptive",
    "ladder_cells",
    "not_valid_note",
]
