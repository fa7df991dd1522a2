"""Experiments with k arms on a panel: each non-control arm against the control, with intervals
that hold for the k - 1 comparisons at once.

A panel's arm column names every cell's arm. Comparing arm ``j`` with the control fits the
ordinary two-arm estimator on the *pair*: the same panel with ``treated = (arm == j)`` and every
cell of a third arm blacked out (:func:`pair_frame`), so the estimator sees exactly the cells of
the two arms it compares, on the panel's full grid of products and periods.

Simultaneous intervals (:func:`simultaneous`) widen each comparison's interval from its own
critical value to one that covers all k - 1 effects together with probability 1 - alpha:

- ``dunnett-t`` / ``dunnett-normal``: the k - 1 comparisons share the control's cells, so their
  estimates are correlated (about 0.5 with equal arms). Where the joint distribution is
  available - the difference in means, whose estimates are sums over product clusters - the
  critical value is the (1 - alpha) quantile of max_j |T_j| for T multivariate t (df the
  smallest of the comparisons' own) or normal with the comparisons' correlation, estimated from
  each product's influence on every comparison (:func:`dm_correlation`). This is Dunnett's
  (1955) construction with a cluster-robust correlation in place of the equal-variance one.
- ``bonferroni``: otherwise, each interval at level 1 - alpha / (k - 1), which holds whatever
  the correlation.

Each comparison's interval keeps its own SE; only the critical value is shared. Holm's adjusted
p-values (:func:`holm_adjust`) go beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from analysis.best import FULL_POINTS, BestRow, coarse_gap, hsu_mcb, joint_cdf, quantile_root
from analysis.errors import AnalysisError, InferenceError
from analysis.panel import blackout_flags
from analysis.reference import reference
from core.ports import EstimatorPlan

#: methods whose comparisons' joint distribution :func:`dm_correlation` gives
JOINT_METHODS = frozenset({"dm"})


def joint_plan(plan: EstimatorPlan) -> bool:
    """Whether a design's estimator ``plan`` has comparisons whose joint distribution
    :func:`dm_correlation` gives (the difference in means clustered by product), so that the
    worker's simultaneous intervals for it are Dunnett-type (Bonferroni otherwise)."""
    return plan.name in JOINT_METHODS and plan.cluster in (None, "unit")


@dataclass(frozen=True)
class Arms:
    """The arms of a panel's arm column (``unit`` names its products): the control's name and
    the others, in sorted order."""

    column: str
    control: str
    others: tuple[str, ...]
    unit: str


def read_arms(df: pd.DataFrame, column: str, control: str, unit: str) -> Arms:
    """The arms named in ``column``; one sentence when the column, the control or a second arm
    is missing."""
    if column not in df.columns:
        raise AnalysisError(f"--arm {column!r} is not a column of the panel.")
    names = df[column].dropna().astype(str)
    present = sorted(set(names))
    if control not in present:
        raise AnalysisError(
            f"--control {control!r} is not an arm of column {column!r} "
            f"(its arms: {', '.join(present) or 'none'})."
        )
    others = tuple(a for a in present if a != control)
    if not others:
        raise AnalysisError(
            f"column {column!r} has only the control arm {control!r}: nothing to compare."
        )
    return Arms(column, control, others, unit)


#: the columns :func:`pair_frame` adds (names a panel would not use)
TREATED, BLACKOUT = "_pair_treated", "_pair_blackout"


def pair_frame(
    df: pd.DataFrame, arms: Arms, arm: str, blackout: str | None
) -> tuple[pd.DataFrame, bool]:
    """The panel for ``arm`` against the control, and whether it has blacked-out cells:
    ``TREATED`` is 1 on ``arm``'s cells, 0 on the control's. A product that the design put in a
    third arm (it has cells of another arm and none of ``arm``: time-bound, triggered and
    cluster designs draw per product) is left out whole, as in a two-arm experiment of these
    two arms (in a per-cell design, a product that by chance never drew ``arm``: the draw
    alone decides it, not the outcomes); the third arms' cells of the other products (random
    days, switchbacks) and cells with no arm are blacked out (``BLACKOUT`` = 1), with the given ``blackout``. One sentence when an arm has no
    usable cell. (A design probability column goes to the pair's panel as it is: the
    estimators that compare randomised cells only, as ``dm`` does, read it there.)"""
    names = df[arms.column].astype(str).where(df[arms.column].notna(), "").to_numpy()
    off = np.zeros(len(df), dtype=bool) if blackout is None else blackout_flags(df, blackout)
    blank = df[arms.column].isna().to_numpy()  # a cell with no arm: blacked out, no third arm
    units = pd.factorize(df[arms.unit], use_na_sentinel=False)[0]
    keep, on, third = pair_cells(names, units, arm, arms.control, blank)
    out = df.loc[keep].assign(**{TREATED: on[keep].astype(int)})
    dark = (third | blank | np.asarray(off, dtype=bool))[keep]
    out[BLACKOUT] = dark.astype(int)
    for name in (arm, arms.control):
        if not ((names[keep] == name) & ~dark).any():
            raise AnalysisError(f"arm {name!r} has no usable cells (outside blackouts).")
    return out, bool(dark.any())


def pair_cells(
    names: np.ndarray,
    units: np.ndarray,
    arm: Any,
    control: Any,
    blank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair of ``arm`` and ``control`` over cells that name their arm (``names``: names, or
    the arms' indices in a design's matrix) and their unit (``units``: codes from 0): the cells
    kept, ``arm``'s cells, and the third arms' cells. A unit with cells of a third arm and none
    of ``arm`` is left out whole; ``blank`` marks cells that name no arm, which are no third
    arm's. The one rule of :func:`pair_frame` (a long table) and the planner (lab.plan, a
    design's units x periods matrices)."""
    on = np.asarray(names == arm, dtype=bool)
    third = ~on & np.asarray(names != control, dtype=bool)
    if blank is not None:
        third &= ~blank
    n = int(units.max()) + 1 if len(units) else 0
    has_arm = np.bincount(units, weights=on, minlength=n) > 0
    has_third = np.bincount(units, weights=third, minlength=n) > 0
    return (has_arm | ~has_third)[units], on, third


def dm_correlation(
    df: pd.DataFrame,
    arms: Arms,
    outcome: str,
    blackout: str | None,
    probability: str | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
) -> np.ndarray:
    """The correlation of the k - 1 differences in means, each over its own pair's cells
    (:func:`pair_frame`; with ``probability``, the randomised ones, those strictly between 0
    and 1, as ``dm`` compares), clustered by product: a product's influence on comparison j is the
    sum of its arm-j cells' deviations from the pair's arm-j mean over their count, minus the
    same for its control cells in that pair (0 for a product the pair leaves out); the
    covariance of comparisons j and l is the sum over products of their influences' product
    (the sandwich whose diagonal is the CR0 variance). ``frames``: the pairs' frames, when the
    caller has them already (each arm's :func:`pair_frame` of ``df`` with ``blackout``)."""
    units, index = np.unique(df[arms.unit].astype(str), return_inverse=True)
    where = pd.Series(index, index=df.index)
    psi = []
    for name in arms.others:
        pair = pair_frame(df, arms, name, blackout)[0] if frames is None else frames[name]
        y = pd.to_numeric(pair[outcome], errors="coerce")
        use = (pair[BLACKOUT] == 0) & y.notna()
        if probability is not None:
            p = pd.to_numeric(pair[probability], errors="coerce")
            use &= (p > 0) & (p < 1)
        use = use.to_numpy()
        y_u, codes = y.to_numpy(dtype=float)[use], where[pair.index].to_numpy()[use]
        on = pair[TREATED].to_numpy()[use] == 1
        psi.append(dm_influence(y_u, codes, on, len(units)))
    return influence_correlation(psi)


def dm_influence(y: np.ndarray, units: np.ndarray, on: np.ndarray, n_units: int) -> np.ndarray:
    """Each unit's influence on one difference in means over the cells ``y`` (their units'
    codes ``units``; ``on`` the arm's cells, the others the control's): the sum of its arm
    cells' deviations from the arm's mean over their count, minus the same for its control
    cells (0 for a unit with no cell)."""
    part = np.zeros(n_units)
    for side, sign in ((on, 1.0), (~on, -1.0)):
        dev = np.where(side, y - y[side].mean(), 0.0) / side.sum()
        part += sign * np.bincount(units, weights=dev, minlength=n_units)
    return part


def influence_correlation(psi: Sequence[np.ndarray]) -> np.ndarray:
    """The correlation of estimates whose influences per cluster are ``psi`` (one array each):
    their covariance is the sum over clusters of the influences' products (the sandwich whose
    diagonal is the CR0 variance); 1 on the diagonal, NaN where an estimate has no variance."""
    cov = np.stack(psi) @ np.stack(psi).T
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return corr


def max_abs_quantile(corr: np.ndarray, df: float | None, alpha: float) -> float:
    """The q with P(max_j |T_j| <= q) = 1 - alpha, for T multivariate t with ``df`` degrees
    of freedom (normal when ``df`` is None or infinite) and correlation ``corr``: Dunnett's
    two-sided critical value. It lies between the one-comparison quantile and Bonferroni's."""
    m = corr.shape[0]
    t = reference(df)
    low, high = float(t.ppf(1 - alpha / 2)), float(t.ppf(1 - alpha / (2 * m)))
    if m == 1:
        return low

    def gap(q: float, points: int = FULL_POINTS) -> float:
        x = np.full(m, q)
        return joint_cdf(corr, df, x, -x, points=points) - (1 - alpha)

    return quantile_root(gap, low, high, coarse=coarse_gap(gap, df))


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass(frozen=True)
class Simultaneous:
    """Each comparison's simultaneous interval, the shared critical value (None for Bonferroni,
    whose critical value is each comparison's own at alpha / (k - 1)) and the method's name."""

    intervals: tuple[tuple[float, float], ...]
    method: str
    critical_value: float | None


def simultaneous(
    results: Sequence[object], alpha: float, corr: np.ndarray | None = None
) -> Simultaneous:
    """Intervals for ``results`` (one per non-control arm, each with ``effect``, ``se``,
    ``df`` and ``conf_int``) that cover every effect at once with probability 1 - alpha:
    Dunnett-type with ``corr`` (the comparisons' correlation), else Bonferroni."""
    m = len(results)
    if corr is None or m == 1 or not np.isfinite(corr).all():
        return Simultaneous(
            tuple(r.conf_int(alpha / m) for r in results),  # type: ignore[attr-defined]
            "bonferroni",
            None,
        )
    dfs = [r.df for r in results]  # type: ignore[attr-defined]
    finite = [d for d in dfs if d is not None and math.isfinite(d)]
    df = min(finite) if len(finite) == m else None
    q = max_abs_quantile(corr, df, alpha)
    intervals = []
    for r in results:
        e, s = float(r.effect), float(r.se)  # type: ignore[attr-defined]
        intervals.append((e - q * s, e + q * s) if math.isfinite(s) else (-math.inf, math.inf))
    return Simultaneous(tuple(intervals), "dunnett-t" if df else "dunnett-normal", q)


#: methods that fit a pair of arms as a two-arm panel (the CLI's ``--arm`` and the worker).
#: ``cuped`` reads the design probability only to tell the randomised cells (0 < P < 1) from a
#: product's baseline before it, and P(not control) tells them apart as P(the pair's arm) would.
#: ht and hajek weigh each cell by its design probability of the pair's arm, which neither an
#: analyst's table nor the worker's cells give per arm yet
PAIR_METHODS = frozenset({"dm", "fe", "did", "sdid", "cuped"})
NEEDS_PROBABILITY = frozenset({"ht", "hajek"})


def not_on_pairs(method: str) -> str:
    """Why ``method`` gives no estimate of one arm against the control (one sentence)."""
    if method in NEEDS_PROBABILITY:
        return (
            f"{method} is not identified per arm yet: it needs each cell's design probability "
            "of the pair's arm, and the panel gives P(not control) only (issue #41)"
        )
    return f"{method} is not estimated per arm of a k-arm experiment yet (issue #41)"


@dataclass(frozen=True)
class ArmComparison:
    """Every non-control arm against the control: the pair fits and their simultaneous
    intervals."""

    arms: Arms
    results: tuple[Any, ...]
    simultaneous: Simultaneous
    pvalues_holm: tuple[float, ...]
    #: the comparisons' correlation (None: not known) and the level, for :attr:`best`
    corr: np.ndarray | None = field(default=None, repr=False, compare=False)
    alpha: float = 0.05

    @cached_property
    def best(self) -> tuple[BestRow, ...] | None:
        """Hsu's MCB for every arm, the control first (analysis.best), where the comparisons'
        joint distribution is known (as for the Dunnett-type intervals); None otherwise.
        Computed when first read (a critical value per arm)."""
        return best_of(self.arms, self.results, self.corr, self.alpha)

    @property
    def best_set(self) -> tuple[str, ...] | None:
        """The arms MCB cannot rule out as the best (None without MCB)."""
        return None if self.best is None else tuple(b.arm for b in self.best if b.in_best_set)


def compare_pairs(
    arms: Arms,
    fit: Callable[[str], Any],
    alpha: float,
    corr: Callable[[], np.ndarray | None] = lambda: None,
) -> ArmComparison:
    """``fit(arm)`` (the estimate of that arm against the control on their pair's cells) for
    every non-control arm, with the k - 1 results' simultaneous intervals (Dunnett-type with
    the correlation ``corr()`` gives, else Bonferroni) and Holm's p-values. One sentence naming
    the arm when a fit fails."""
    results = []
    for name in arms.others:
        try:
            results.append(fit(name))
        except (AnalysisError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AnalysisError(f"arm {name!r} against {arms.control!r}: {first}") from None
    joint = corr()
    sim = simultaneous(results, alpha, joint)
    holm = holm_adjust([r.pvalue() for r in results])
    return ArmComparison(arms, tuple(results), sim, tuple(holm), joint, alpha)


def best_of(
    arms: Arms, results: Sequence[Any], corr: np.ndarray | None, alpha: float
) -> tuple[BestRow, ...] | None:
    """Hsu's constrained MCB (analysis.best) of every arm, the control first, from the
    comparisons' estimates, SEs and joint correlation (None without a correlation or a
    finite, positive SE for every arm: no joint distribution, no MCB)."""
    if corr is None or not np.isfinite(corr).all():
        return None
    se = np.array([float(r.se) for r in results])
    if not (np.isfinite(se).all() and (se > 0).all()):
        return None
    dfs = [r.df for r in results]
    df = min(dfs) if all(d is not None and math.isfinite(d) for d in dfs) else None
    cov = corr * np.outer(se, se)
    names = (arms.control, *arms.others)
    try:
        return tuple(hsu_mcb(names, [float(r.effect) for r in results], cov, df, alpha))
    except InferenceError:
        return None
