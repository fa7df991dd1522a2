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
  "Unit-Placebo" estimator). Aliases: ``unit_placebo``, ``time_conditional``.
- **time_placebo** (the "Time-Placebo" estimator of Almeida et al.): hold the treated units
  fixed, drop the post-period, and move a placebo treatment window of ``L = min(T_post,
  T_pre // 2)`` periods across the pre-period (every start leaving at least 2 earlier periods);
  the mean square of the placebo estimates (their estimand is zero). It adapts to heteroskedasticity
  *across units* (the treated units' own noise), i.e. it targets the variance conditional on the
  units. Alias: ``unit_conditional``. When ``L < T_post`` the window is shorter than the real one;
  with serially independent noise that makes it conservative (documented in docs/analysis-core.md).
- **jackknife** (Algorithm 3): leave one unit out with the weights held fixed (omega renormalised
  over the remaining controls); (N-1)/N times the sum of squared deviations. Needs at least two
  treated units and two controls with positive weight; otherwise it is undefined or degenerate.
- **bootstrap** (Algorithm 2): resample units with replacement (redrawing samples with no treated
  or no control unit), re-estimate; the variance of the replicates. Needs at least two treated
  units (with one, half the replicates lack the treated unit and the rest duplicate it).

Invalid choices raise :class:`analysis.errors.InferenceError` with a sentence saying what to use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from analysis.errors import InferenceError

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


def canonical_method(se: str | None, allowed: tuple[str, ...] = BLOCK_METHODS) -> str | None:
    """Resolve aliases; ``None`` stays ``None`` (the estimator's default)."""
    if se is None:
        return None
    name = ALIASES.get(se.lower(), se.lower())
    if name not in allowed:
        known = ", ".join(sorted(set(allowed) | {a for a, t in ALIASES.items() if t in allowed}))
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


def bootstrap_variance(
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
    """Algorithm 2: variance over unit resamples that contain both treated and control units."""
    N = Y.shape[0]
    draws: list[np.ndarray] = []
    while len(draws) < replications:
        idx = np.sort(rng.integers(0, N, size=N))  # controls (rows < N0) come first
        n0 = int(np.searchsorted(idx, N0))
        if 0 < n0 < N:  # a sample without treated or without controls is redrawn
            draws.append(idx)
    counts = np.array([int(np.searchsorted(d, N0)) for d in draws])
    taus = np.empty(replications)
    for n0 in np.unique(counts):  # one batch per control count
        sel = np.flatnonzero(counts == n0)
        idx = np.stack([draws[k] for k in sel])
        omega0 = _normalise_rows(omega[idx[:, :n0]])
        lam0 = np.broadcast_to(lam, (len(sel), T0))
        taus[sel] = refit(Y[idx], int(n0), T0, omega0, lam0)
    return float(np.mean((taus - taus.mean()) ** 2))


def jackknife_variance(
    Y: np.ndarray, N0: int, T0: int, omega: np.ndarray, lam: np.ndarray
) -> float:
    """Algorithm 3 with fixed weights, all N leave-one-out estimates in closed form."""
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
    # leave control j out: omega renormalised over the rest
    loo_co = tr.mean() - (synth - omega * co) / (1.0 - omega)
    loo_tr = (tr.sum() - tr) / (N1 - 1) - synth
    u = np.concatenate([loo_co, loo_tr])
    return float((N - 1) / N * np.sum((u - u.mean()) ** 2))


def time_placebo_variance(Y: np.ndarray, N0: int, T0: int, refit: Refit) -> float:
    """Mean square of estimates with a placebo treatment window moved over the pre-period."""
    T1 = Y.shape[1] - T0
    L = min(T1, T0 // 2)
    starts = range(2, T0 - L + 1)
    # a shorter pre-period has no fitted weights to start from: each window is a fresh fit
    taus = np.array([float(refit(Y[None, :, : s + L], N0, s, None, None)[0]) for s in starts])
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
) -> tuple[float, str]:
    """(standard error, method used) for a block estimator; ``se=None`` picks the default."""
    N, T = Y.shape
    N1, T1 = N - N0, T - T0
    method = canonical_method(se) or default_block_method(N0, N1)
    check_block_method(method, N0, N1, T0, T1)
    rng = np.random.default_rng(seed)
    if method == "none":
        return float("nan"), "none"
    if method == "placebo":
        var = placebo_variance(Y, N0, T0, refit, omega, lam, replications=replications, rng=rng)
    elif method == "bootstrap":
        var = bootstrap_variance(Y, N0, T0, refit, omega, lam, replications=replications, rng=rng)
    elif method == "jackknife":
        var = jackknife_variance(Y, N0, T0, omega, lam)
    else:
        var = time_placebo_variance(Y, N0, T0, refit)
    return float(np.sqrt(var)), method


__all__ = [
    "ALIASES",
    "BLOCK_METHODS",
    "Refit",
    "block_standard_error",
    "bootstrap_variance",
    "canonical_method",
    "check_block_method",
    "default_block_method",
    "jackknife_variance",
    "placebo_variance",
    "time_placebo_variance",
]
