"""Which arm of a k-arm experiment is the best: Hsu's multiple comparisons with the best (MCB).

For arms ``0`` (the control) to ``k - 1`` with true effects ``theta_0 = 0`` and ``theta_j``
(arm j minus control on a metric where **higher is better**: revenue or profit per
product-period), :func:`hsu_mcb` gives for every arm ``i``, the control included, an interval
for ``theta_i - max_{j != i} theta_j``: how far arm i is behind the best of the others (negative)
or ahead of all of them (positive). Its inputs are the k - 1 estimates ``delta_j`` of
``theta_j`` and their joint covariance ``Sigma`` (in pricelab, from each product's influence on
every comparison: :func:`analysis.arms.dm_correlation`); ``est_0 = 0`` has no variance, so every
difference ``est_i - est_l`` and its covariance with every other follow linearly. For a metric
where lower is better, pass ``-delta``.

The intervals are Hsu's *constrained* MCB intervals in the unequal-variance form of Edwards &
Hsu (1983) (Hsu 1996, *Multiple Comparisons: Theory and Methods*, ch. 4). With ``s_ij`` the SE
of ``est_i - est_j`` and ``d_i`` the one-sided critical value of the k - 1 differences
``est_j - est_i`` with arm i as the reference (:func:`one_sided_quantile` of their correlation:
a one-sided Dunnett value, one per reference arm)::

    D_i^+ = max(0, min_{j != i} (est_i - est_j + d_i s_ij))
    G     = {i : D_i^+ > 0}
    D_i^- = 0                                                 if G == {i}
          = min(0, min_{j in G, j != i} (est_i - est_j - d_j s_ij))   otherwise

and arm i's interval is ``[D_i^-, D_i^+]``.

**Guarantee.** If the estimates are jointly normal around the truth with covariance ``Sigma``
(or multivariate t with ``df`` degrees of freedom: exact when ``Sigma`` is one variance
estimate, chi-square on ``df``, times a fixed matrix, as in a one-way layout with a pooled
variance; otherwise an approximation, as ``df`` is in :mod:`analysis.arms`), all k intervals
hold at once with probability at least ``1 - alpha``, whatever the true effects and whichever
arm the data make look best. The proof needs one event only: the one-sided Dunnett event with
the truly best arm ``b`` as the reference, ``est_j - est_b - (theta_j - theta_b) < d_b s_jb``
for every j (probability exactly ``1 - alpha``). On it ``b`` is in ``G``, so every other arm's
lower bound is at most ``est_i - est_b - d_b s_ib < theta_i - theta_b``, and ``b``'s upper bound
is at least ``min_j (theta_b - theta_j)``. Coverage is close to ``1 - alpha`` when one arm is
clearly best, above it when arms tie at the top.

Reading the result: ``mcb_high > 0`` means arm i cannot be ruled out as the best
(``in_best_set``; these arms are Gupta's subset, which contains a given truly best arm with
probability at least 1 - alpha); ``mcb_high == 0`` means arm i is asserted not the best
(``theta_i <= max_{j != i} theta_j``); ``mcb_low == 0`` means arm i is asserted the best
(``theta_i >= every other``). The intervals are constrained to contain 0: the method says which
arm is the best and how far the others are behind it, not by how much the best leads (that takes
the wider unconstrained MCB, from two-sided critical values).

**Source checked.** The SAS/STAT sample library's ``mcb.sas`` (macros ``%MCB``/``%UMCB`` by R.
Tobias, SAS Institute, 1996, citing Hsu 1996). Its ``%MCB`` runs, for each level as the
control, a one-sided upper Dunnett comparison (``diff=controlu``, each level its own critical
value, as unequal sample sizes require), takes the upper bound
``(min_{j != i} m_i - m_j + d^i s_ij)^+``, forms ``G`` from the positive ones, and sets the lower
bound to 0 when ``G`` is the arm alone, else to a minimum of ``m_i - m_j - d^j s_ij`` (the
critical value of the *other* arm j as the reference); its abstract says these intervals are
"constrained to contain 0". One difference: ``%MCB``'s code (and its comment quoting Hsu 1996
p. 94) takes that minimum over every ``j != i``; the restriction to ``j in G`` used here is the
one its ``%UMCB`` comments quote from the book (p. 120, ``j in S``) and the one the proof above
needs (the true best is in ``G``): never wider, still valid, and the same whenever each arm's
minimum falls in ``G``, as on the macro's worked example (Hsu 1984's seven water filters, whose
published limits the tests reproduce within 0.01). Edwards & Hsu (1983, JASA 78, 965-971)
state the construction for any setting where comparison-with-control intervals can be
computed with each arm in turn as the control, which is how ``Sigma`` enters here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, stats

from analysis.errors import InferenceError
from analysis.reference import reference
from analysis.seeding import CDF_SEED

#: correlations are rounded to this many decimals before their quantile is computed, so a
#: design whose correlation is fixed (a simulation study's, or a pooled variance's) computes
#: each reference arm's critical value once (:func:`_cached_quantile`); far below the
#: integration's own error
_CORR_DECIMALS = 10


def one_sided_quantile(corr: np.ndarray, df: float | None, alpha: float) -> float:
    """The d with P(max_j T_j <= d) = 1 - alpha, for T multivariate t with ``df`` degrees of
    freedom (normal when ``df`` is None or infinite) and correlation ``corr``: the one-sided
    Dunnett critical value. With one comparison it is the reference's ``1 - alpha`` quantile
    exactly; otherwise it lies between that and Bonferroni's ``1 - alpha / m``, and the
    multivariate cdf (quasi-Monte Carlo with a fixed seed, as :mod:`analysis.arms`) is solved for
    it to 1e-4."""
    corr = np.atleast_2d(np.asarray(corr, dtype=float))
    m = corr.shape[0]
    ref = reference(df)
    low, high = float(ref.ppf(1 - alpha)), float(ref.ppf(1 - alpha / m))
    if m == 1:
        return low

    def gap(d: float, points: int = FULL_POINTS) -> float:
        return joint_cdf(corr, df, np.full(m, d), points=points) - (1 - alpha)

    return quantile_root(gap, low, high, coarse=coarse_gap(gap, df))


#: the multivariate t cdf's quasi-Monte Carlo points per dimension: scipy's default (1,000)
#: leaves an error of about 4e-5 in the probability, 4e-4 in a critical value; 4,000, about
#: 5e-6 (measured at m = 6). :data:`COARSE_POINTS` (about 1e-4 in the probability, 1e-3 in a
#: critical value) only locates a root that full-precision evaluations then settle
FULL_POINTS = 4000
COARSE_POINTS = 300


def joint_cdf(
    corr: np.ndarray,
    df: float | None,
    upper: np.ndarray,
    lower: np.ndarray | None = None,
    points: int = FULL_POINTS,
) -> float:
    """P(lower <= T <= upper) for T multivariate t with ``df`` degrees of freedom (normal when
    ``df`` is None or infinite) and correlation ``corr``, ``points`` quasi-Monte Carlo points a
    dimension for the t (the normal's integration stops at scipy's own error bound). Each call
    integrates with a fresh generator seeded :data:`analysis.seeding.CDF_SEED`, so that it is a
    function of its arguments: a root finder that sees the same point give two values can fail
    (a frozen distribution's own generator advances from call to call)."""
    m = corr.shape[0]
    rng = np.random.default_rng(CDF_SEED)
    if df is None or not math.isfinite(df):
        mvn = stats.multivariate_normal(mean=np.zeros(m), cov=corr, allow_singular=True)
        return float(mvn.cdf(upper, lower_limit=lower, rng=rng))
    mvt = stats.multivariate_t(loc=np.zeros(m), shape=corr, df=df, allow_singular=True)
    return float(mvt.cdf(upper, lower_limit=lower, random_state=rng, maxpts=points * m))


def quantile_root(
    gap: Callable[[float], float],
    low: float,
    high: float,
    coarse: Callable[[float], float] | None = None,
) -> float:
    """The root of an increasing ``gap`` between the one-comparison quantile ``low`` and
    Bonferroni's ``high``, to 1e-4: ``high`` when the integration's error leaves none below it
    (the conservative end), ``low`` when the comparisons are perfectly correlated.

    With ``coarse`` (the same gap from a cheaper, less precise integration) the root is first
    located on ``coarse`` to 1e-3, then settled by secant steps on ``gap`` until a step is below
    1e-4 (each step's slope from the last two full evaluations); should those not settle within
    four evaluations, or leave the bracket, Brent's method on ``gap`` decides, as without
    ``coarse``. Two or three full evaluations in place of Brent's seven or eight: most of a
    k-arm look's time in the worker (:mod:`analysis.arms`, :func:`hsu_mcb`)."""
    if coarse is not None:
        settled = _settle(gap, coarse, low, high)
        if settled is not None:
            return settled
    if gap(high) <= 0:
        return high
    if gap(low) >= 0:
        return low
    return float(optimize.brentq(gap, low, high, xtol=1e-4))


def coarse_gap(
    gap: Callable[[float, int], float], df: float | None
) -> Callable[[float], float] | None:
    """``gap`` at :data:`COARSE_POINTS`, for :func:`quantile_root`'s first stage: for the t
    only. The normal's integration stops at scipy's own error bound, so its gap is no
    smoother with fewer points asked for, and secant steps on it can stray by more than the
    tolerance (measured at m = 5): the normal keeps Brent's method."""
    if df is None or not math.isfinite(df):
        return None
    return lambda d: gap(d, COARSE_POINTS)


def _settle(
    gap: Callable[[float], float], coarse: Callable[[float], float], low: float, high: float
) -> float | None:
    """:func:`quantile_root`'s coarse-then-secant path; None when it does not settle (an end
    of the bracket is the root, or the steps leave it), for Brent's method to decide."""
    if not coarse(low) < 0 < coarse(high):
        return None
    x0 = float(optimize.brentq(coarse, low, high, xtol=1e-3))
    h = 2e-3
    x1 = x0 + h
    g0, g1 = gap(x0), gap(x1)
    for _ in range(4):
        if g1 == g0:
            return None
        x2 = x1 - g1 * (x1 - x0) / (g1 - g0)
        if not low < x2 < high:
            return None
        if abs(x2 - x1) < 1e-4:
            return x2
        x0, g0, x1, g1 = x1, g1, x2, gap(x2)
    return None


@lru_cache(maxsize=512)
def _cached_quantile(corr: tuple[float, ...], m: int, df: float | None, alpha: float) -> float:
    return one_sided_quantile(np.array(corr).reshape(m, m), df, alpha)


@dataclass(frozen=True)
class BestRow:
    """One arm's constrained MCB interval for ``theta_arm - max_{other arms} theta`` (higher is
    better), and whether the arm can still be the best (``mcb_high > 0``)."""

    arm: str
    mcb_low: float
    mcb_high: float
    in_best_set: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validated(
    names: Sequence[str], effects: Sequence[float], cov: np.ndarray, df: float | None, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The k estimates (control's 0 first) and their k x k covariance; one sentence when the
    inputs do not describe k arms' comparisons with the control."""
    k = len(names)
    if k < 2:
        raise InferenceError("MCB needs the control and at least one other arm.")
    if len(set(names)) != k:
        raise InferenceError(f"arm names must be distinct: {list(names)}.")
    est = np.asarray(effects, dtype=float).ravel()
    sigma = np.atleast_2d(np.asarray(cov, dtype=float))
    if est.shape != (k - 1,) or sigma.shape != (k - 1, k - 1):
        raise InferenceError(
            f"{k} arms need {k - 1} effects and a {k - 1}x{k - 1} covariance; got "
            f"{est.shape[0]} effects and a {sigma.shape[0]}x{sigma.shape[1]} covariance."
        )
    if not (np.isfinite(est).all() and np.isfinite(sigma).all()):
        raise InferenceError("the effects and their covariance must be finite numbers.")
    scale = float(np.abs(sigma).max())
    if not np.allclose(sigma, sigma.T, rtol=1e-8, atol=1e-12 * scale):
        raise InferenceError("the covariance of the effects must be symmetric.")
    if np.linalg.eigvalsh((sigma + sigma.T) / 2).min() < -1e-10 * scale:
        raise InferenceError("the covariance of the effects is not positive semi-definite.")
    if df is not None and not df > 0:
        raise InferenceError(f"degrees of freedom must be positive or None; got {df}.")
    if not 0 < alpha < 1:
        raise InferenceError(f"alpha must lie strictly between 0 and 1; got {alpha}.")
    full = np.zeros((k, k))
    full[1:, 1:] = (sigma + sigma.T) / 2
    return np.concatenate([[0.0], est]), full


def hsu_mcb(
    names: Sequence[str],
    effects: Sequence[float],
    cov: np.ndarray,
    df: float | None,
    alpha: float = 0.05,
) -> list[BestRow]:
    """Hsu's constrained MCB intervals (module docstring) for ``theta_i - max_{j != i}
    theta_j`` of every arm in ``names`` (the control first), from ``effects`` (the k - 1
    others' estimates against the control, in ``names[1:]`` order), their covariance ``cov``
    and ``df`` (None: normal). Higher is better. All k intervals hold together with probability
    at least ``1 - alpha``. One sentence (:class:`InferenceError`) for inconsistent inputs or
    two arms whose difference has no variance."""
    est, v = _validated(names, effects, cov, df, alpha)
    k = len(est)
    var = np.diag(v)[:, None] + np.diag(v)[None, :] - 2 * v  # Var(est_i - est_j)
    if any(var[i, j] <= 0 for i in range(k) for j in range(k) if i != j):
        i, j = next((i, j) for i in range(k) for j in range(k) if i != j and var[i, j] <= 0)
        raise InferenceError(
            f"arms {names[i]!r} and {names[j]!r}: their difference has no variance."
        )
    s = np.sqrt(np.maximum(var, 0.0))
    diff = est[:, None] - est[None, :]  # est_i - est_j
    m = k - 1
    ref = reference(df)
    # every critical value lies in [one comparison's, Bonferroni's] (one_sided_quantile), so an
    # arm whose upper bound is 0 even at Bonferroni's needs none: each is computed only where
    # a bound depends on it (the same intervals as computing all k; a look with a clear leader
    # computes one or two)
    bonferroni = float(ref.ppf(1 - alpha / m))
    crit: dict[int, float] = {}

    def critical(i: int) -> float:
        if i not in crit:
            others = [j for j in range(k) if j != i]
            # Cov(est_j - est_i, est_l - est_i) for the k - 1 comparisons, i the reference
            a = np.eye(k)[others] - np.eye(k)[i]
            c = a @ v @ a.T
            sd = np.sqrt(np.diag(c))
            corr = np.round(c / np.outer(sd, sd), _CORR_DECIMALS)
            np.fill_diagonal(corr, 1.0)
            crit[i] = _cached_quantile(tuple(corr.ravel().tolist()), m, df, alpha)
        return crit[i]

    def upper_at(i: int, d: float) -> float:
        return max(0.0, min(diff[i, j] + d * s[i, j] for j in range(k) if j != i))

    upper = np.array([upper_at(i, critical(i)) if upper_at(i, bonferroni) > 0 else 0.0
                      for i in range(k)])  # fmt: skip
    best = [i for i in range(k) if upper[i] > 0]
    rows = []
    for i in range(k):
        if best == [i]:
            lower = 0.0
        else:
            lower = min([0.0] + [diff[i, j] - critical(j) * s[i, j] for j in best if j != i])
        rows.append(BestRow(str(names[i]), float(lower), float(upper[i]), bool(upper[i] > 0)))
    return rows
