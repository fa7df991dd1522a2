"""Per-arm means and contrasts of an adaptive price ladder, valid while the allocation learns.

An adaptive ladder (issue #57; docs/adaptive.md) draws every cell (product i, period t) of a
period with arm probabilities ``pi_t`` that the controller set from the looks before the period
started, and records them with the cell. This module estimates, on a metric ``Y`` (units,
revenue or profit per product-period):

- each arm's mean ``theta_a = (1/n) sum_t mu_t(a)``, ``mu_t(a)`` the mean over the period's
  cells (not blacked out) of the outcome the cell would have had with arm ``a`` in force for
  its last ``lag + 1`` periods (the lag-m potential outcome of Bojinov, Simchi-Levi & Zhao's
  switchback framework: with carryover of order m, a cell's outcome depends on its arm in
  periods t - m .. t);
- each arm's contrast with the control, ``theta_a - theta_control``;

by inverse probability weighting of the recorded probabilities, or its augmented (doubly
robust) form::

    IPW:   phi_it(a) = 1{A_i,t-m..t = a} Y_it / Pi_it(a)
    AIPW:  phi_it(a) = mhat_t(i, a) + 1{A_i,t-m..t = a} (Y_it - mhat_t(i, a)) / Pi_it(a)
    Z_t(a) = mean over the period's cells of phi_it(a)

with ``Pi_it(a)`` the product of the recorded probabilities of arm a over the window's draws
(a period that shares the previous period's draw, as in an optimal switchback block, adds no
factor), and ``mhat_t`` an outcome model fitted on periods up to t - m - 1 only (each product's
level times each arm's ratio to it). Every probability in the window was fixed before its
period, and the model before the window, so ``E[Z_t(a) | periods before t - m] = mu_t(a)``
whatever the allocation did: the per-period pseudo-outcomes are (m-dependent) martingale
increments, the setting of the doubly robust confidence sequences of Waudby-Smith, Arbour,
Sinha, Kennedy & Ramdas ("Time-uniform central limit theory and asymptotic confidence
sequences", Annals of Statistics 2024) and Cook, Mishler & Ramdas ("Semiparametric efficient
inference in adaptive experiments", CLeaR 2024), and of Liang & Bojinov's MAD design.

The estimate after n periods is the mean of the ``Z_t``; its variance the sample variance of
the increments with their autocovariances up to lag m (the m-dependence of overlapping
windows), never below the plain variance. Each look's anytime-valid sequence is the normal-
mixture boundary of :mod:`analysis.confseq` with its rho fixed by the planned number of
periods (not by the data), the Student t reference of the n - 1 increments, and, for the k - 1
contrasts at once, Bonferroni (each at alpha / (k - 1)). The guarantee is asymptotic in the
number of periods (each increment averages many cells, so it is close to normal from the first
looks on); the lab's study measures it (lab/studies/adaptive_ladder.py).

Blackout: a cell in blackout (a washout the operator or the design set, a freeze) is neither
in the estimand nor in the estimate; its arm still counts in the windows of the cells after it.
A blackout must not depend on the cell's own arm.

Not built: Hadad, Hirshberg, Zhan, Wager & Athey's adaptively weighted AIPW (fixed-time
intervals; the sequences here weigh every period alike).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator

from analysis.confseq import ConfidenceSequence
from analysis.errors import PanelError

#: the fewest periods a look needs (a variance of the increments, and a t reference)
MIN_PERIODS = 3
#: the outcome model's weight of a product's outcome one period older (its recent level)
RECENCY = 0.5


@dataclass(frozen=True)
class AdaptivePanel:
    """The cells of an adaptive ladder: ``Y`` (N x T outcomes, NaN only in blackout), ``arm``
    (N x T arm indices), ``probability`` (N x T x k: each cell's recorded probability of every
    arm; a T x k array is the same for every product), ``blackout`` (N x T) and ``redraw`` (T:
    whether period t drew afresh, False where it kept the previous period's draw, as within
    an optimal switchback block; default all True)."""

    Y: np.ndarray
    arm: np.ndarray
    probability: np.ndarray
    blackout: np.ndarray | None = None
    redraw: np.ndarray | None = None

    def __post_init__(self) -> None:
        Y = np.asarray(self.Y, dtype=float)
        A = np.asarray(self.arm)
        if Y.ndim != 2 or A.shape != Y.shape:
            raise PanelError(
                f"Y and arm must be N x T arrays of one shape; got {Y.shape} and {A.shape}"
            )
        n, t = Y.shape
        P = np.asarray(self.probability, dtype=float)
        if P.ndim == 2:
            P = np.broadcast_to(P[None, :, :], (n, *P.shape))
        if P.ndim != 3 or P.shape[:2] != (n, t) or P.shape[2] < 2:
            raise PanelError(
                f"probability must be T x k or N x T x k with k >= 2 arms; got {P.shape}"
            )
        k = P.shape[2]
        if not (np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()):
            raise PanelError("every recorded probability must be a number in [0, 1]")
        if np.abs(P.sum(axis=2) - 1.0).max() > 1e-6:
            raise PanelError("each cell's probabilities must sum to 1 over the arms")
        if not np.issubdtype(A.dtype, np.integer) or A.min() < 0 or A.max() >= k:
            raise PanelError(f"arm must hold arm indices 0..{k - 1}")
        B = np.zeros((n, t), bool) if self.blackout is None else np.asarray(self.blackout, bool)
        if B.shape != (n, t):
            raise PanelError(f"blackout must be {n} x {t}; got {B.shape}")
        bad = ~B & ~np.isfinite(Y)
        if bad.any():
            raise PanelError(
                f"{int(bad.sum())} cell(s) outside blackout have no finite outcome; fill "
                "them or mark them as blackout"
            )
        drawn = np.take_along_axis(P, A[:, :, None], axis=2)[:, :, 0]
        if (drawn[~B] <= 0).any():
            raise PanelError(
                "a cell's own arm had probability 0: its probability was not the one it was drawn with"
            )
        R = np.ones(t, bool) if self.redraw is None else np.asarray(self.redraw, bool)
        if R.shape != (t,):
            raise PanelError(f"redraw must have one flag per period ({t})")
        for name, value in (("Y", Y), ("arm", A), ("probability", P), ("blackout", B),
                            ("redraw", R)):  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def excluded(self) -> np.ndarray:
        """The blackout mask (N x T), all False when none was given."""
        assert self.blackout is not None  # filled at the door
        return self.blackout

    @property
    def fresh(self) -> np.ndarray:
        """Whether each period drew afresh (T), all True when not given."""
        assert self.redraw is not None  # filled at the door
        return self.redraw

    @property
    def shape(self) -> tuple[int, int, int]:
        """(products, periods, arms)."""
        n, t, k = self.probability.shape
        return int(n), int(t), int(k)


def window_paths(panel: AdaptivePanel, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """For every cell and arm: whether the arm held in the cell's last ``lag + 1`` periods
    (N x T x k bool), and the probability of that path from the recorded draws (N x T x k;
    NaN for the first ``lag`` periods, whose windows reach before the experiment)."""
    n, t, k = panel.shape
    onehot = panel.arm[:, :, None] == np.arange(k)[None, None, :]
    held = onehot.copy()
    for j in range(1, lag + 1):
        held[:, j:] &= onehot[:, :-j]
    P = panel.probability
    # a window t - lag .. t: the draw at t - lag, then every later period's own fresh draw
    # (a period that kept the previous period's draw adds no factor)
    fresh = np.where(panel.fresh[None, :, None], P, 1.0)
    prob = np.full(P.shape, np.nan)
    last = max(t - lag, 0)  # the windows that fit in the panel (none when lag >= t)
    acc = P[:, :last].copy()
    for j in range(1, lag + 1):
        acc *= fresh[:, j : last + j]
    prob[:, lag:] = acc
    prob[:, :lag] = np.nan
    held[:, :lag] = False
    return held, prob


def _outcome_model(panel: AdaptivePanel, held: np.ndarray, lag: int, recency: float) -> np.ndarray:
    """``mhat_t(i, a)`` for every cell (N x T x k), fitted on periods up to t - lag - 1 only:
    each product's recent level times each arm's ratio of its held cells' outcomes to their
    products' mean levels (additive when an outcome up to t - lag - 1 is negative); 0 before
    any data.

    The recent level is the product's outcomes, each divided by its arm's ratio, weighted by
    ``recency ** age`` (a product's demand wanders: its last periods predict the next better
    than its long-run mean); ``recency`` 1 is the plain mean."""
    n, t, k = panel.shape
    ok = ~panel.excluded
    Y = np.where(ok, panel.Y, 0.0)
    # whether the outcomes so far are all at least 0, per period (the model's form, chosen on
    # the model's own periods: a later loss must not change an earlier period's model)
    nonneg_upto = np.logical_and.accumulate((Y >= 0).all(axis=0))
    out = np.zeros((n, t, k))
    cy = np.cumsum(Y, axis=1)
    cn = np.cumsum(ok, axis=1)
    for s in range(t):
        last = s - lag - 1  # the model may use periods 0..last
        if last < 0:
            continue
        sum_y, cnt = cy[:, last], cn[:, last]
        total = float(sum_y.sum()) / max(int(cnt.sum()), 1)
        level = np.where(cnt > 0, sum_y / np.maximum(cnt, 1), total)
        h = held[:, : last + 1] & ok[:, : last + 1, None]
        ya = np.einsum("it,ita->a", Y[:, : last + 1], h)
        la = np.einsum("i,ita->a", level, h)
        ca = h.sum(axis=(0, 1))
        if nonneg_upto[last]:
            ratio = np.where(la > 0, ya / np.where(la > 0, la, 1.0), 1.0)
            ratio = np.where(ratio > 0, ratio, 1.0)
            own = ratio[panel.arm[:, : last + 1]]
            w = recency ** np.arange(last, -1, -1.0)[None, :] * ok[:, : last + 1]
            den = w.sum(axis=1)
            recent = (w * Y[:, : last + 1] / own).sum(axis=1) / np.where(den > 0, den, 1.0)
            recent = np.where(den > 0, recent, total)
            out[:, s, :] = recent[:, None] * ratio[None, :]
        else:
            shift = np.where(ca > 0, (ya - la) / np.maximum(ca, 1), 0.0)
            own = shift[panel.arm[:, : last + 1]]
            w = recency ** np.arange(last, -1, -1.0)[None, :] * ok[:, : last + 1]
            den = w.sum(axis=1)
            recent = (w * (Y[:, : last + 1] - own)).sum(axis=1) / np.where(den > 0, den, 1.0)
            recent = np.where(den > 0, recent, total)
            out[:, s, :] = recent[:, None] + shift[None, :]
    return out


def pseudo_outcomes(
    panel: AdaptivePanel,
    lag: int = 0,
    method: Literal["aipw", "ipw"] = "aipw",
    recency: float = RECENCY,
) -> tuple[np.ndarray, np.ndarray]:
    """Each period's per-arm pseudo-outcome ``Z_t(a)`` (periods x k) and the periods it
    covers (their indices): periods from ``lag`` on with at least one cell out of blackout."""
    if lag < 0:
        raise ValueError(f"lag must be at least 0; got {lag}")
    n, t, k = panel.shape
    held, prob = window_paths(panel, lag)
    Y = np.where(panel.excluded, 0.0, panel.Y)[:, :, None]
    w = np.where(held, 1.0 / np.where(held, prob, 1.0), 0.0)
    if method == "ipw":
        phi = w * Y
    elif method == "aipw":
        m = _outcome_model(panel, held, lag, recency)
        phi = m + w * (Y - m)
    else:
        raise ValueError(f"method must be 'aipw' or 'ipw'; got {method!r}")
    ok = ~panel.excluded
    count = ok.sum(axis=0)
    periods = np.array([s for s in range(lag, t) if count[s] > 0], dtype=int)
    z = np.einsum("ita,it->ta", phi, ok)[periods] / count[periods, None]
    return z, periods


def long_run_variance(x: np.ndarray, lag: int) -> np.ndarray:
    """The variance of the mean's increments ``x`` (n x d) with their autocovariances up to
    ``lag`` (uniform weights: exact for lag-dependent increments), never below the plain
    sample variance; per column."""
    n = x.shape[0]
    c = x - x.mean(axis=0)
    g0 = (c**2).sum(axis=0) / (n - 1)
    total = g0.copy()
    for j in range(1, min(lag, n - 1) + 1):
        total += 2.0 * (c[j:] * c[:-j]).sum(axis=0) / (n - 1)
    return np.maximum(total, g0)


@functools.lru_cache(maxsize=4096)
def cs_multiplier(n: int, horizon: int, alpha: float) -> float:
    """The sequence's half-width over the SE after ``n`` periods: the normal-mixture boundary
    (:class:`analysis.confseq.ConfidenceSequence`) tightest at ``horizon`` periods, at the
    Student t reference of the n - 1 increments."""
    cs = ConfidenceSequence(target_se=1.0 / math.sqrt(horizon), alpha=alpha)
    return float(cs.radius(1.0 / math.sqrt(n), df=n - 1)) * math.sqrt(n)


@dataclass(frozen=True)
class Looks:
    """The running estimates at every look (after each covered period from the
    ``MIN_PERIODS``-th on): ``period`` (the last period of the look, 0-based), per arm
    ``mean`` and ``mean_se`` (looks x k), per arm the contrast with the control ``effect``,
    ``effect_se`` and its simultaneous sequence ``low``/``high`` (the control's 0), the per-arm
    means' covariance ``cov`` (looks x k x k), and ``best_set`` (looks x k): the arms not shown
    worse than another by the simultaneous sequences."""

    period: np.ndarray
    mean: np.ndarray
    mean_se: np.ndarray
    cov: np.ndarray
    effect: np.ndarray
    effect_se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    best_set: np.ndarray
    control: int

    def recommended(self) -> np.ndarray:
        """Each look's recommended arm: the largest estimated mean."""
        return np.asarray(self.mean.argmax(axis=1))

    def decided(self) -> np.ndarray:
        """Whether each look's sequences single out one best arm."""
        return np.asarray(self.best_set.sum(axis=1) == 1)

    def differs(self) -> np.ndarray:
        """Whether each look's simultaneous sequences exclude 0 for some arm (a difference
        from the control declared)."""
        others = np.arange(self.effect.shape[1]) != self.control
        return np.asarray(((self.low > 0) | (self.high < 0))[:, others].any(axis=1))


class AdaptiveArms(BaseEstimator):  # type: ignore[misc]
    """Per-arm means and contrasts with the control of an adaptive ladder, by AIPW (or IPW) on
    the recorded probabilities, with anytime-valid simultaneous sequences at every look
    (module docstring). ``lag``: the carryover order m; ``horizon``: the planned number of
    periods, where the sequences are tightest (fixed before the data)."""

    def __init__(
        self,
        method: Literal["aipw", "ipw"] = "aipw",
        lag: int = 0,
        control: int = 0,
        alpha: float = 0.05,
        horizon: int = 28,
    ) -> None:
        self.method = method
        self.lag = lag
        self.control = control
        self.alpha = alpha
        self.horizon = horizon

    def fit(self, panel: AdaptivePanel) -> AdaptiveArms:
        """Estimate every look's means and contrasts (``looks_``; ``mean_``, ``effect_``,
        ``low_``, ``high_`` at the last)."""
        z, periods = pseudo_outcomes(panel, self.lag, self.method)
        k = z.shape[1]
        if not 0 <= self.control < k:
            raise ValueError(f"control must be an arm index 0..{k - 1}")
        if len(periods) < MIN_PERIODS:
            raise PanelError(
                f"an adaptive ladder's look needs {MIN_PERIODS} periods past the carryover "
                f"lag; this panel has {len(periods)}"
            )
        d = z - z[:, [self.control]]
        alpha_each = self.alpha / max(k - 1, 1)
        rows = range(MIN_PERIODS, len(periods) + 1)
        mean, mean_se, eff, eff_se, covs, mult = [], [], [], [], [], []
        for n in rows:
            zn, dn = z[:n], d[:n]
            mean.append(zn.mean(axis=0))
            eff.append(dn.mean(axis=0))
            mean_se.append(np.sqrt(long_run_variance(zn, self.lag) / n))
            eff_se.append(np.sqrt(long_run_variance(dn, self.lag) / n))
            c = zn - zn.mean(axis=0)
            covs.append(c.T @ c / (n - 1) / n)
            mult.append(cs_multiplier(n, self.horizon, alpha_each))
        e, s = np.array(eff), np.array(eff_se)
        r = np.array(mult)[:, None] * s
        low, high = e - r, e + r
        low[:, self.control] = high[:, self.control] = 0.0
        best = high >= low.max(axis=1, keepdims=True)
        self.looks_ = Looks(
            period=periods[MIN_PERIODS - 1 :],
            mean=np.array(mean),
            mean_se=np.array(mean_se),
            cov=np.array(covs),
            effect=e,
            effect_se=s,
            low=low,
            high=high,
            best_set=best,
            control=self.control,
        )
        self.pseudo_ = z
        self.periods_ = periods
        self.mean_ = self.looks_.mean[-1]
        self.effect_ = e[-1]
        self.low_, self.high_ = low[-1], high[-1]
        return self


__all__ = [
    "MIN_PERIODS",
    "AdaptiveArms",
    "AdaptivePanel",
    "Looks",
    "cs_multiplier",
    "long_run_variance",
    "pseudo_outcomes",
    "window_paths",
]
