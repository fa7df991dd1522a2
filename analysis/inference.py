"""Variance of block-design panel estimators: placebo, jackknife, bootstrap, time placebo.

Each function takes the control-first, pre-first outcome matrix ``Y`` (N x T) of a block design
with ``N0`` control units and ``T0`` pre-periods, and either the estimator's ``refit(Ys, n0, t0)``
(re-estimates its weights with the original fit's hyperparameters on a stack of B matrices
sharing ``n0``/``t0``, returning B estimates, so replications run as one vectorised batch) and
its fitted weights. As in the reference implementation (R ``synthdid``, ``vcov``), a
re-estimation starts from the original weights restricted to the units it keeps (renormalised),
and the regularisation strength is not recomputed.

- **placebo** (Arkhangelsky et al. 2021, Algorithm 4): drop the treated units, give the
  treatment to ``N1`` randomly chosen controls, re-estimate; the variance of those placebo
  estimates. Valid with a single treated unit, under homoskedasticity *across units*; needs more
  controls than treated units. When there are no more distinct placebo assignments
  (C(N0, N1)) than replications, each is used exactly once instead of drawing at random (with one
  treated unit: every control is the placebo once), which removes the Monte Carlo noise. It holds the treated periods fixed and draws the units, so it
  targets the variance conditional on the time dimension (Almeida, Olaizola, Lestant, Imbens &
  Athey, "Estimating Variances for Causal Panel Data Estimators", arXiv 2510.11841: the
  "Unit-Placebo" estimator). Aliases: ``unit_placebo``, ``time_conditional``. The SE is
  estimated from the N0 controls' spread, so intervals use Student t with ``N0 - 1`` df
  (:func:`placebo_df`; exact for DID with normal unit contrasts).
- **time_placebo** (the "Time-Placebo" estimator of Almeida et al.): hold the treated units
  fixed, drop the post-period, and move a placebo treatment window of ``L = min(T_post,
  T_pre // 2)`` periods across the pre-period (every start leaving at least 2 earlier periods);
  the mean square of the placebo estimates (their estimand is zero). It adapts to heteroskedasticity
  *across units* (the treated units' own noise), i.e. it targets the variance conditional on the
  units. Alias: ``unit_conditional``. When ``L < T_post`` the window is shorter than the real one;
  with serially independent noise that makes it conservative (documented in docs/analysis-core.md).
  The windows overlap, so the SE has few degrees of freedom: intervals use Student t with
  :func:`time_placebo_df`, as for MC-NNM and TROP.
- **jackknife** (Algorithm 3): leave one unit out with the weights held fixed (omega renormalised
  over the remaining controls); (N-1)/N times the sum of squared deviations. Needs at least two
  treated units and two controls with positive weight; otherwise it is undefined or degenerate.
  With few treated units the variance estimate is itself noisy (its treated part has n_t - 1
  degrees of freedom), so a normal interval under-covers; the variance is split into a treated
  and a control part (:func:`jackknife_split`) and intervals use Student t with their
  Welch-Satterthwaite degrees of freedom, as the matrix estimators' stratified bootstrap does.
- **bootstrap**: resample units with replacement and re-estimate (Algorithm 2), with the treated
  and the control units as strata resampled one at a time, n - 1 draws each, and Student t with
  the Welch-Satterthwaite df of the two parts (:func:`bootstrap_split`; Algorithm 2's joint
  resampling under-covered with few treated units). Needs at least two treated units (with one,
  a replicate either lacks it or repeats it) and two controls.

Invalid choices raise :class:`analysis.errors.InferenceError` with a sentence saying what to use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.errors import InferenceError
from analysis.seeding import seeded_rng

#: re-estimate on a stack (B x N x T) of control-first, pre-first matrices -> B estimates;
#: the last two arguments are warm starts for the unit (B x n0) and time (B x t0) weights, or None
Refit = Callable[[np.ndarray, int, int, np.ndarray | None, np.ndarray | None], np.ndarray]


def _normalise_rows(w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    uniform = np.full_like(w, 1.0 / w.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w / np.where(total > 0, total, 1.0), uniform)


BLOCK_METHODS = ("placebo", "time_placebo", "jackknife", "bootstrap", "none")
ALIASES = {
    "unit_placebo": "placebo",
    "time_conditional": "placebo",
    "unit_conditional": "time_placebo",
}


#: ``se`` for the default method with the bootstrap where the default is the jackknife: the
#: weights re-estimated in every replicate where the jackknife would hold them fixed (the
#: time-bound design asks it of sdid below a day; docs/validation.md), the placebo where the
#: controls can spare the placebo-treated units (one treated unit, or N0 >= 2 N1)
AUTO_BOOTSTRAP = "auto_bootstrap"


def canonical_method(se: str | None, allowed: tuple[str, ...] = BLOCK_METHODS) -> str | None:
    """Resolve aliases; ``None`` stays ``None`` (the estimator's default)."""
    if se is None:
        return None
    name = ALIASES.get(se.lower(), se.lower())
    if name not in allowed:
        extra = {AUTO_BOOTSTRAP} if {"bootstrap", "jackknife"} <= set(allowed) else set()
        known = ", ".join(
            sorted(set(allowed) | {a for a, t in ALIASES.items() if t in allowed} | extra)
        )
        raise ValueError(f"Unknown variance method {se!r}; choose one of: {known}.")
    return name


def default_block_method(N0: int, N1: int) -> str:
    """Placebo when the controls can spare the placebo-treated units, else jackknife.

    The placebo (Arkhangelsky et al. 2021, Algorithm 4) draws N1 of the N0 controls as fake
    treated units and keeps N0 - N1 as their controls. With one treated unit (the paper's
    Table 1) that is the only valid choice. With several, it needs N0 - N1 >= N1: when the
    controls barely outnumber the treated (a half-and-half split), the placebo leaves one or
    two controls and its SE came out 2.4-2.9x too large in docs/validation.md, while the
    jackknife was calibrated (A/A type-I error 0.05, SE/SD 1.01).
    """
    if N0 > N1 and (N1 == 1 or N0 >= 2 * N1):
        return "placebo"
    if N1 >= 2 and N0 >= 2:
        return "jackknife"
    if N0 > N1:
        return "placebo"
    return "none"


def check_block_method(method: str, N0: int, N1: int, T0: int, T1: int) -> None:
    """Raise InferenceError if ``method`` is invalid for a block with these dimensions."""
    if method == "placebo" and N0 <= N1:
        raise InferenceError(
            f"Placebo variance needs more control units than treated units; there are {N0} "
            f"control(s) and {N1} treated. Use 'jackknife' or 'bootstrap' instead."
        )
    if method == "jackknife" and N1 < 2:
        raise InferenceError(
            "Jackknife variance is undefined with a single treated unit (leaving it out leaves "
            "nothing to estimate). Use 'placebo' instead."
        )
    if method == "jackknife" and N0 < 2:
        raise InferenceError("Jackknife variance needs at least two control units.")
    if method == "bootstrap" and N1 < 2:
        raise InferenceError(
            "Bootstrap variance is invalid with a single treated unit (replicates either lack it "
            "or repeat it). Use 'placebo' instead."
        )
    if method == "bootstrap" and N0 < 2:
        raise InferenceError("Bootstrap variance needs at least two control units.")
    if method == "time_placebo":
        L = min(T1, T0 // 2)
        if L < 1 or T0 - L < 3:
            raise InferenceError(
                f"Time-placebo variance needs at least two placebo windows of the pre-period, "
                f"each with two earlier periods; there are only {T0} pre-period(s). "
                "Use 'placebo' instead."
            )


def placebo_variance(
    Y: np.ndarray,
    N0: int,
    T0: int,
    refit: Refit,
    omega: np.ndarray,
    lam: np.ndarray,
    *,
    replications: int,
    rng: np.random.Generator,
) -> float:
    """Algorithm 4: variance of estimates with treatment reassigned among the controls."""
    N1 = Y.shape[0] - N0
    n0 = N0 - N1
    if math.comb(N0, N1) <= replications:
        # few distinct placebo assignments: use each once (the limit of the random draws)
        perms = np.stack(
            [
                np.concatenate([np.setdiff1d(np.arange(N0), c), np.array(c)])
                for c in itertools.combinations(range(N0), N1)
            ]
        )
        replications = len(perms)
    else:
        perms = np.stack([rng.permutation(N0) for _ in range(replications)])
    omega0 = _normalise_rows(omega[perms[:, :n0]])
    lam0 = np.broadcast_to(lam, (replications, T0))
    taus = np.asarray(refit(Y[:N0][perms], n0, T0, omega0, lam0), dtype=float)
    return float(np.mean((taus - taus.mean()) ** 2))


def bootstrap_split(
    Y: np.ndarray,
    N0: int,
    T0: int,
    refit: Refit,
    omega: np.ndarray,
    lam: np.ndarray,
    *,
    replications: int,
    rng: np.random.Generator,
) -> VarianceSplit:
    """Unit bootstrap with the treated and the control units as strata, one at a time.

    Arkhangelsky et al.'s Algorithm 2 resamples all N units together. With a few treated
    units it under-covered here (DID, 3 of 30 treated, 500 seeds: SE/SD 0.87, 81.0%): the
    treated units' share of the variance is estimated from about 3 values, shrunk by the
    plug-in factor (n - 1)/n, with about 2 degrees of freedom, and the number of treated units
    varies between replicates. As the matrix estimators' bootstrap does
    (``analysis.estimators._resampling.stratified_unit_bootstrap``): half the replicates
    redraw the treated units (n_t - 1 draws, McCarthy & Snowden 1985; Rao & Wu 1988: the
    unbiased variance of a stratum mean) with the controls held, half redraw the controls
    (n_c - 1 draws) with the treated held; the two variances add, and their
    Welch-Satterthwaite df give a Student t reference. Each half is one batched refit (its
    replicates share the control count). Needs two treated and two control units.
    """
    if replications < 4:
        raise InferenceError(f"The bootstrap needs at least 4 replications, not {replications}.")
    N = Y.shape[0]
    N1 = N - N0
    n_co = replications // 2
    n_tr = replications - n_co
    controls, treated = np.arange(N0), np.arange(N0, N)
    tr_draws = np.sort(rng.integers(N0, N, size=(n_tr, N1 - 1)), axis=1)
    idx = np.hstack([np.broadcast_to(controls, (n_tr, N0)), tr_draws])
    omega0 = np.broadcast_to(omega, (n_tr, N0))
    taus_t = np.asarray(refit(Y[idx], N0, T0, omega0, np.broadcast_to(lam, (n_tr, T0))))
    co_draws = np.sort(rng.integers(0, N0, size=(n_co, N0 - 1)), axis=1)
    idx = np.hstack([co_draws, np.broadcast_to(treated, (n_co, N1))])
    omega0 = _normalise_rows(omega[co_draws])
    taus_c = np.asarray(refit(Y[idx], N0 - 1, T0, omega0, np.broadcast_to(lam, (n_co, T0))))
    return VarianceSplit(
        var_treated=float(np.var(taus_t, ddof=1)),
        var_control=float(np.var(taus_c, ddof=1)),
        n_treated=N1,
        n_control=N0,
    )


@dataclass(frozen=True)
class VarianceSplit:
    """A variance split into a treated-unit and a control-unit part (jackknife, bootstrap).

    ``var_treated + var_control`` is the variance. For the jackknife ``n_control`` counts the
    controls with positive weight (a zero-weight control's leave-one-out estimate equals the
    estimate, so it adds nothing to the variance and no degree of freedom).
    """

    var_treated: float
    var_control: float
    n_treated: int
    n_control: int

    @property
    def variance(self) -> float:
        return self.var_treated + self.var_control

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom of the variance estimate."""
        return welch_satterthwaite_df(
            self.var_treated, self.var_control, self.n_treated, self.n_control
        )


def welch_satterthwaite_df(v_t: float, v_c: float, n_t: int, n_c: int) -> float:
    """``(v_t + v_c)^2 / (v_t^2/(n_t - 1) + v_c^2/(n_c - 1))`` (Satterthwaite 1946; Welch 1947).

    The degrees of freedom of a scaled chi-square matching the first two moments of a sum of
    two independent variance estimates with n_t - 1 and n_c - 1 degrees of freedom. Infinite
    when both parts are zero (the SE is then zero and the reference distribution moot).
    """
    if n_t < 2 or n_c < 2:
        raise InferenceError(
            f"Degrees of freedom need at least two units on each side; got {n_t} treated and "
            f"{n_c} controls."
        )
    denom = v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1)
    return float((v_t + v_c) ** 2 / denom) if denom > 0 else math.inf


def jackknife_split(
    Y: np.ndarray, N0: int, T0: int, omega: np.ndarray, lam: np.ndarray
) -> VarianceSplit:
    """Algorithm 3 with fixed weights, all N leave-one-out estimates in closed form, split.

    The jackknife variance is ``(N-1)/N * sum_i (u_i - u_bar)^2`` over the N leave-one-out
    estimates u_i, u_bar their mean over all N units. The treated units enter the estimate with
    equal weights, so the mean of their u_i is the estimate tau itself and ``u_i - tau`` depends
    on treated outcomes only; for a control, ``u_j - tau = omega_j (c_j - omega'c) / (1 -
    omega_j)`` depends on control outcomes only. Writing d = u - tau, the variance is
    ``(N-1)/N [sum_tr d_i^2 + sum_co d_j^2 - (sum_co d_j)^2 / N]``; the treated part is the first
    sum, the control part the rest (the between-group term ``N (u_bar - tau)^2`` is a function of
    the controls alone). Each part is thus a function of one group's units, which is what the
    Welch-Satterthwaite df assumes. Splitting around u_bar instead would hand the treated part a
    share of the control-driven between-group term.

    For a difference of means (DID) the treated part is ``(N-1)/N * s_t^2 / (n_t - 1)`` where the
    variance of the treated mean is ``s_t^2 / n_t``: with few treated units among many units the
    jackknife overstates the treated part by ``(N-1)/N * n_t / (n_t - 1)`` (1.45 with 3 of 30).
    """
    N = Y.shape[0]
    N1 = N - N0
    if np.count_nonzero(omega) < 2:
        raise InferenceError(
            "Jackknife variance is undefined when a single control unit carries all the weight "
            "(leaving it out leaves no comparison). Use 'placebo' instead."
        )
    contrast = Y[:, T0:].mean(axis=1) - Y[:, :T0] @ lam
    co, tr = contrast[:N0], contrast[N0:]
    synth = float(omega @ co)
    # leave control j out: omega renormalised over the rest; d_j = u_j - tau
    d_co = omega * (co - synth) / (1.0 - omega)
    # leave treated i out: the other treated units' mean minus the same synthetic control
    d_tr = -(tr - tr.mean()) / (N1 - 1)
    scale = (N - 1) / N
    var_treated = scale * float(np.sum(d_tr**2))
    var_control = scale * (float(np.sum(d_co**2)) - float(np.sum(d_co)) ** 2 / N)
    return VarianceSplit(
        var_treated=var_treated,
        var_control=max(var_control, 0.0),
        n_treated=N1,
        n_control=int(np.count_nonzero(omega)),
    )


def jackknife_variance(
    Y: np.ndarray, N0: int, T0: int, omega: np.ndarray, lam: np.ndarray
) -> float:
    """Algorithm 3 with fixed weights: (N-1)/N times the sum of squared deviations."""
    return jackknife_split(Y, N0, T0, omega, lam).variance


def placebo_df(n_controls: int) -> float:
    """Degrees of freedom of a placebo SE: ``n_controls - 1``.

    The placebo variance is the spread of estimates with the treatment moved to control units,
    so it is estimated from the controls' own variability. For DID it is exactly a multiple of
    the controls' sample variance of their pre/post contrasts, and with normal contrasts the
    estimate over this SE is (up to a factor 0.994 with 27 controls and 3 treated) Student t
    with N0 - 1 df; the other estimators' placebo SEs are used with the same reference (their
    measured coverage is in docs/analysis-core.md).
    """
    return float(n_controls - 1)


def time_placebo_windows(T0: int, T1: int) -> tuple[np.ndarray, int]:
    """(starts, L) of the placebo windows: L = min(T1, T0 // 2), >= 2 earlier periods each."""
    L = min(T1, T0 // 2)
    return np.arange(2, T0 - L + 1), L


def time_placebo_df(T0: int, T1: int) -> float:
    """Degrees of freedom of the time-placebo variance: ``n^2 / sum_jk rho_jk^2``.

    The SE is the root mean square of n placebo estimates on windows that overlap, so it has
    far fewer than n degrees of freedom. Satterthwaite's df for a mean of squares of normals
    correlated by overlap, with ``rho_jk = max(0, 1 - |s_j - s_k| / L)`` (the correlation of two
    window means over serially independent periods) - the same rule MC-NNM and TROP use
    (``_resampling.time_placebo_effects``), where it was fixed before any coverage was measured.
    9 windows of 5 periods (T0 = 15, T1 = 5) carry 3.05 degrees of freedom.
    """
    starts, L = time_placebo_windows(T0, T1)
    return overlap_df(starts, L)


def overlap_df(starts: np.ndarray, L: int) -> float:
    """``n^2 / sum_jk rho_jk^2`` for windows of L periods starting at ``starts`` (see
    :func:`time_placebo_df`); for a subset of the windows when some cannot be used."""
    starts = np.asarray(starts)
    rho = np.maximum(0.0, 1.0 - np.abs(starts[:, None] - starts[None, :]) / L)
    return float(starts.size**2 / np.sum(rho**2))


def time_placebo_variance(Y: np.ndarray, N0: int, T0: int, refit: Refit) -> float:
    """Mean square of estimates with a placebo treatment window moved over the pre-period."""
    starts, L = time_placebo_windows(T0, Y.shape[1] - T0)
    # a shorter pre-period has no fitted weights to start from: each window is a fresh fit
    taus = np.array(
        [float(refit(Y[None, :, : int(s) + L], N0, int(s), None, None)[0]) for s in starts]
    )
    return float(np.mean(taus**2))


def block_standard_error(
    se: str | None,
    Y: np.ndarray,
    N0: int,
    T0: int,
    *,
    refit: Refit,
    omega: np.ndarray,
    lam: np.ndarray,
    replications: int = 200,
    seed: int | None = None,
) -> tuple[float, str, float | None]:
    """(standard error, method used, df) for a block estimator; ``se=None`` picks the default.

    ``df`` is set for every method (intervals use Student t): the placebo's ``N0 - 1``
    (:func:`placebo_df`), Welch-Satterthwaite over the jackknife's and the bootstrap's treated
    and control parts, and the time placebo's windows' overlap df.
    """
    N, T = Y.shape
    N1, T1 = N - N0, T - T0
    if se is not None and se.lower() == AUTO_BOOTSTRAP:
        method = default_block_method(N0, N1)
        method = "bootstrap" if method == "jackknife" else method
    else:
        method = canonical_method(se) or default_block_method(N0, N1)
    check_block_method(method, N0, N1, T0, T1)
    rng = seeded_rng(seed)
    df: float | None = None
    if method == "none":
        return float("nan"), "none", None
    if method == "placebo":
        var = placebo_variance(Y, N0, T0, refit, omega, lam, replications=replications, rng=rng)
        df = placebo_df(N0)
    elif method in ("bootstrap", "jackknife"):
        split = (
            bootstrap_split(Y, N0, T0, refit, omega, lam, replications=replications, rng=rng)
            if method == "bootstrap"
            else jackknife_split(Y, N0, T0, omega, lam)
        )
        var, df = split.variance, split.df
    else:
        var = time_placebo_variance(Y, N0, T0, refit)
        df = time_placebo_df(T0, T1)
    return float(np.sqrt(var)), method, df


__all__ = [
    "ALIASES",
    "AUTO_BOOTSTRAP",
    "BLOCK_METHODS",
    "VarianceSplit",
    "Refit",
    "block_standard_error",
    "bootstrap_split",
    "canonical_method",
    "check_block_method",
    "default_block_method",
    "jackknife_split",
    "jackknife_variance",
    "overlap_df",
    "placebo_df",
    "placebo_variance",
    "time_placebo_df",
    "time_placebo_variance",
    "time_placebo_windows",
    "welch_satterthwaite_df",
]


def bh_adjust(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy's ``false_discovery_control``); NaN stays
    NaN and is not counted as a test."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return [float(x) for x in out]


def _batched_root(M: np.ndarray, power: float, what: str) -> np.ndarray:
    """``M ** power`` of a batch of symmetric positive-definite matrices (G x p x p)."""
    mu, U = np.linalg.eigh(M)
    if (mu <= 1e-12).any():
        raise InferenceError(what)
    return (U * mu[:, None, :] ** power) @ U.transpose(0, 2, 1)


def cluster_covariance(
    Z: np.ndarray,
    resid: np.ndarray,
    labels: np.ndarray,
    G: int,
    correction: str,
    level: str = "cluster",
    contrasts: tuple[tuple[float, float], ...] = ((1.0, -1.0),),
) -> tuple[tuple[float, float, float], list[float]]:
    """Cluster-robust covariance of the first two coefficients of an OLS fit (design ``Z``,
    one row per cell; residuals ``resid``; ``labels`` each cell's cluster 0..G-1), as
    (var b0, var b1, cov), and per contrast (w0, w1) of them its degrees of freedom.

    ``correction="cr2"``: Bell & McCaffrey's bias-reduced sandwich, each cluster's residuals
    premultiplied by ``(I - H_gg)^(-1/2)``, with Bell & McCaffrey's Satterthwaite degrees of
    freedom under the homoskedastic working model (as Imbens & Kolesar 2016 recommend, who
    also give a random-effects working model), ``tr(B)^2 / tr(B^2)`` with
    ``B = Q'(I - H)Q``. ``"cr1"``: Liang-Zeger with G/(G-1), G - 1 degrees of freedom.

    Both are computed from each cluster's p x p Gram matrix ``Z_g'Z_g`` and score ``Z_g'e_g``
    (O(cells p^2), no cell-by-cell matrix): with ``Z_g'Z_g = V L V'`` and
    ``S = L^(1/2) V'AV L^(1/2)`` (A = (Z'Z)^-1), ``Z_g'(I - H_gg)^(-1/2) e_g =
    V L^(1/2) (I - S)^(-1/2) L^(-1/2) V' Z_g'e_g`` over the Gram matrix's range. For the
    difference in means' design (the two arms' indicators) this is
    :func:`analysis.estimators.crossover.cr2_mean_covariance`.
    """
    if correction not in ("cr1", "cr2"):
        raise ValueError(f"correction must be 'cr1' or 'cr2', not {correction!r}.")
    n, p = Z.shape
    A = np.linalg.pinv(Z.T @ Z)
    gram = np.empty((G, p, p))
    for j in range(p):
        for k in range(j, p):
            gram[:, j, k] = gram[:, k, j] = np.bincount(
                labels, weights=Z[:, j] * Z[:, k], minlength=G
            )
    u = np.stack([np.bincount(labels, weights=Z[:, j] * resid, minlength=G) for j in range(p)], 1)
    if correction == "cr1":
        f = G / (G - 1)
        V = f * A @ (u.T @ u) @ A
        dfs = [float(G - 1)] * len(contrasts)
    else:
        lam, Vg = np.linalg.eigh(gram)
        keep = lam > 1e-10 * np.maximum(lam.max(axis=1, keepdims=True), 1e-300)
        sq = np.where(keep, np.sqrt(np.where(keep, lam, 1.0)), 0.0)
        isq = np.where(keep, 1.0 / np.where(keep, sq, 1.0), 0.0)
        Vt = Vg.transpose(0, 2, 1)
        S = sq[:, :, None] * (Vt @ A @ Vg) * sq[:, None, :]
        what = (
            f"The bias-reduced clustered SE is not defined: one {level} alone determines a "
            f"coefficient of the adjustment. Use correction='cr1' or more {level}s."
        )
        half = _batched_root(np.eye(p) - S, -0.5, what)
        full = _batched_root(np.eye(p) - S, -1.0, what)
        M = Vg @ (sq[:, :, None] * half * isq[:, None, :]) @ Vt
        w = np.einsum("gij,gj->gi", M, u)
        V = A @ (w.T @ w) @ A
        k_half = Vg @ (sq[:, :, None] * half * sq[:, None, :]) @ Vt
        k_full = Vg @ (sq[:, :, None] * full * sq[:, None, :]) @ Vt
        dfs = []
        for w0, w1 in contrasts:
            c = np.zeros(p)
            c[:2] = (w0, w1)
            a = A @ c
            d = np.einsum("i,gij,j->g", a, k_full, a)
            F = np.einsum("i,gij->gj", a, k_half)
            AF = A @ (F.T @ F)
            tr_b = float(d.sum() - np.trace(AF))
            tr_b2 = float((d**2).sum() - 2.0 * np.trace(A @ F.T @ (d[:, None] * F)))
            tr_b2 += float(np.trace(AF @ AF))
            dfs.append(tr_b**2 / tr_b2 if tr_b2 > 0 else float(G - 1))
    return (float(V[0, 0]), float(V[1, 1]), float(V[0, 1])), dfs
