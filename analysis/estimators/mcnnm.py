"""Matrix completion with nuclear-norm minimisation (MC-NNM), Athey, Bayati, Doudchenko,
Imbens & Khosravi, "Matrix completion methods for causal panel data models", JASA 2021.

Estimand: the average effect on the treated usable cells, tau = mean over (i,t) with W=1 of
Y_it(1) - Y_it(0). Each missing Y_it(0) is imputed from the untreated usable cells O by

    min_{L,u,v} (1/|O|) sum_{(i,t) in O} (Y_it - u_i - v_t - L_it)^2 + lambda ||L||_*

(unit and period fixed effects unpenalised, low-rank remainder with a nuclear-norm penalty).
Assumption: the untreated outcomes are two-way effects plus a low-rank matrix plus noise, and
which cells are treated is unrelated to the noise. Any assignment pattern works (block,
staggered, switchback) as long as every unit and period has an untreated usable cell.

Solver: soft-impute (Mazumder, Hastie & Tibshirani 2010) alternating exact-in-one-sweep fixed
effect updates with a singular-value soft-threshold at lambda|O|/2 of the residual filled with
the current L outside O. lambda: K-fold cross-validation over cells of O on a log grid from the
smallest lambda that sets L = 0 down by two decades (smaller penalties converge
slowly and were never selected in our simulations), warm-started from large to small; the
folds are solved together as one batched problem.

Post-selection refit (``debias=True``, the default). The nuclear norm shrinks every retained
singular value by the same threshold, so the part of the treated units' untreated outcomes that
the factors explain is pulled towards the two-way fit. That shrinkage bias is common to all
treated cells, differs with each realisation of the factors, and is invisible to any resampling
of units: in our factor-model simulation the convex estimate's spread was 0.23 while the
bootstrap SE was 0.14 (95% interval coverage 82-85%). The default therefore uses the convex
solution only to choose the rank r - the eigenvalue-ratio rule of Ahn & Horenstein (2013,
Econometrica) on the singular values of the imputed residual matrix, over the components the
cross-validated penalty kept - and then refits the unpenalised two-way + rank-r model on the
untreated cells by least squares (hard-impute), the interactive fixed effects model of Bai
(2009, Econometrica) used for imputation as in Xu (2017, Political Analysis). Removing the
shrinkage before inference is the device of Chernozhukov, Hansen, Liao & Zhu ("Inference for
low-rank models", Annals of Statistics 2023). ``details['effect_convex']`` keeps the paper's
estimate; ``debias=False`` reports it as the effect. The refit's least squares need not have a
minimum: on the Basque panel of TROP's paper study (18 regions, 10 treated in the last 10 of
43 years, 8 controls) the rank-1 refit's objective kept falling (5.29 after 100 iterations,
4.37 after 30,000) while the treated block's imputed values ran off (effect 0.80, 2.14, 5.16;
the convex fit 0.02). Refits did not settle in 42 of 100 Basque replications, 15 of 100 West
Germany (17 x 44) and 2 of 200 Smoking (39 x 31) ones. A refit that has not settled within
``REFIT_MAX_ITER`` iterations is dropped: the convex estimate and its SE are reported and
``details['refit_settled']`` is False.

Inference: unit bootstrap, treated and never-treated units redrawn separately (n - 1 units per
stratum, Student t with Welch-Satterthwaite df; see ``_resampling.stratified_unit_bootstrap``),
with lambda (and, when refitting, the rank) kept at the values selected on the full panel (not
re-tuned per replicate: cheaper; re-tuning lambda changed the SE by less than Monte-Carlo noise
in our checks, re-selecting the rank was not tried). With one treated unit, placebo (a control
unit takes the treated unit's path).
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_limits

from analysis.errors import PanelError
from analysis.estimators._resampling import METHODS, EffectFn, resampled_se, resolve_method
from analysis.estimators.base import PanelEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng

_TINY = 1e-12
#: the rank refit's iteration cap: a refit still moving there has no least-squares minimum to
#: reach (the objective keeps falling while the treated block's imputation runs off), and the
#: convex estimate is kept (``details['refit_settled']``)
REFIT_MAX_ITER = 2000


def _settled(fit: np.ndarray, fit_old: np.ndarray, tol: float) -> bool:
    """True when every problem's fit moved by less than ``tol`` relative to its size."""
    d = fit - fit_old
    delta = np.sqrt(np.einsum("kit,kit->k", d, d))
    scale = np.sqrt(np.einsum("kit,kit->k", fit, fit)) + 1e-8
    return bool(np.all(delta / scale < tol))


def singular_value_threshold(Z: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Batched soft-threshold of singular values: U diag((s - thr)_+) V' for each Z[k].

    Uses the eigendecomposition of the smaller Gram matrix (Z'Z or ZZ'), about ten times faster
    than a full SVD here; singular values far below the threshold lose relative precision, but
    they are set to zero anyway.

    A problem whose Gram matrix has Frobenius norm below thr^2 has every singular value below
    the threshold (the Frobenius norm bounds the largest eigenvalue), so its result is zero
    without an eigendecomposition: the same numbers, and on TROP's tuning grid a third of the
    problems (the large penalties) skip the step that takes three quarters of the time.
    """
    K, N, T = Z.shape
    small_cols = T <= N
    G = np.swapaxes(Z, 1, 2) @ Z if small_cols else Z @ np.swapaxes(Z, 1, 2)
    t = np.broadcast_to(np.asarray(thr, dtype=float).reshape(-1), (K,))
    # not "norm >= thr^2": a NaN norm stays live, and eigh refuses it as it always did
    live = ~(np.sqrt((G**2).sum(axis=(1, 2))) < t**2 * (1.0 - 1e-9))
    out = np.zeros_like(Z)
    if not live.any():
        return out
    Gl, Zl, tl = (G, Z, t) if live.all() else (G[live], Z[live], t[live])
    ev, V = np.linalg.eigh(Gl)
    s = np.sqrt(np.maximum(ev, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(s > tl[:, None], (s - tl[:, None]) / np.where(s > 0, s, 1.0), 0.0)
    P = (V * f[:, None, :]) @ np.swapaxes(V, 1, 2)
    out[live] = Zl @ P if small_cols else P @ Zl
    return out


def fit_fe_lowrank(
    Y: np.ndarray,
    weight: np.ndarray,
    penalty: float | np.ndarray | None,
    *,
    L0: np.ndarray | None = None,
    max_iter: int = 500,
    tol: float = 1e-6,
    limit_blas: bool = True,
    fe_sweeps: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Weighted two-way effects + nuclear-norm-penalised low rank; see ``_fit_fe_lowrank``.

    Runs BLAS single-threaded: the problems are many small eigendecompositions, for which
    multi-threaded OpenBLAS was 30-80x slower on a loaded 2-core machine. ``limit_blas=False``:
    the caller holds that limit already (entering it costs about 3 ms a call, 3% of a TROP fit
    on Proposition 99).
    """
    if not limit_blas:
        return _fit_fe_lowrank(
            Y, weight, penalty, L0=L0, max_iter=max_iter, tol=tol, fe_sweeps=fe_sweeps
        )
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_fe_lowrank(
            Y, weight, penalty, L0=L0, max_iter=max_iter, tol=tol, fe_sweeps=fe_sweeps
        )


def _fit_fe_lowrank(
    Y: np.ndarray,
    weight: np.ndarray,
    penalty: float | np.ndarray | None,
    *,
    L0: np.ndarray | None = None,
    max_iter: int = 500,
    tol: float = 1e-6,
    fe_sweeps: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Weighted two-way effects + nuclear-norm-penalised low rank, batched over problems.

    Minimises, separately for each leading index k,
    ``sum_it weight[k,i,t] (Y[k,i,t] - a[k,i] - b[k,t] - L[k,i,t])^2 + penalty * ||L[k]||_*``
    with weights in [0, 1] (0 = cell left out). ``penalty=None`` drops the low-rank term (pure
    weighted two-way fixed effects). Proximal-gradient (soft-impute) steps with step 1/2, which
    is valid because weights are at most 1, accelerated with FISTA momentum and adaptive
    restart (plain soft-impute needs thousands of steps at small penalties); fixed effects by
    ``fe_sweeps`` alternating weighted-mean sweeps per step (an extra sweep is two
    matrix-vector products over the weights, no eigendecomposition: the low-rank part's
    weighted sums are taken once a step; with strongly varying weights they save more solver
    steps than they cost). ``Y`` may be 2-D (shared by all problems) or 3-D; returns
    ``(a, b, L, iterations)``.
    """
    if fe_sweeps < 1:
        raise ValueError(f"fe_sweeps must be at least 1, not {fe_sweeps!r}.")
    weight = np.asarray(weight, dtype=float)
    if weight.ndim == 2:
        weight = weight[None]
    K, N, T = weight.shape
    Yb = np.broadcast_to(np.nan_to_num(np.asarray(Y, dtype=float)), (K, N, T))
    row_w = weight.sum(axis=2)
    col_w = weight.sum(axis=1)
    row_ok, col_ok = row_w > _TINY, col_w > _TINY
    row_w, col_w = np.where(row_ok, row_w, 1.0), np.where(col_ok, col_w, 1.0)
    low_rank = penalty is not None
    L = np.zeros((K, N, T)) if L0 is None or not low_rank else np.array(L0, dtype=float)
    thr = None if penalty is None else np.broadcast_to(np.asarray(penalty, float), (K,)) / 2.0
    a = np.zeros((K, N))
    b = np.zeros((K, T))
    fit_old = np.zeros((K, N, T))
    M = L.copy()  # extrapolated point (FISTA momentum, Beck & Teboulle 2009)
    mom = np.ones(K)
    # the sweeps' weighted sums, split so that each step makes few passes over (K, N, T):
    # sum_t w (Y - M - b) = sum_t wY - sum_t wM - (w b), the last a matrix product
    wY = weight * Yb
    wY_row, wY_col = wY.sum(axis=2), wY.sum(axis=1)
    off = 1.0 - weight
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        wM = weight * M
        r_row, r_col = wY_row - wM.sum(axis=2), wY_col - wM.sum(axis=1)
        for _ in range(fe_sweeps):
            a = np.where(row_ok, (r_row - (weight @ b[:, :, None])[..., 0]) / row_w, 0.0)
            b = np.where(col_ok, (r_col - (a[:, None, :] @ weight)[:, 0]) / col_w, 0.0)
        if low_rank:
            # w (Y - a - b) + (1 - w) M
            Z = wY - weight * (a[:, :, None] + b[:, None, :]) + off * M
            L_new = singular_value_threshold(Z, thr)  # type: ignore[arg-type]
            # adaptive restart (O'Donoghue & Candes 2015): drop momentum when it points uphill
            step = L_new - L
            uphill = np.einsum("kit,kit->k", M - L_new, step) > 0
            mom = np.where(uphill, 1.0, mom)
            mom_new = (1.0 + np.sqrt(1.0 + 4.0 * mom**2)) / 2.0
            beta = np.where(uphill, 0.0, (mom - 1.0) / mom_new)
            M = L_new + beta[:, None, None] * step
            L, mom = L_new, mom_new
        fit = a[:, :, None] + b[:, None, :] + L
        converged = _settled(fit, fit_old, tol)
        fit_old = fit
        if converged:
            break
    return a, b, L, it


def truncate_rank(Z: np.ndarray, rank: int) -> np.ndarray:
    """Best rank-``rank`` approximation of each Z[k] (Eckart-Young), batched over the leading
    axis, via the smaller Gram matrix's eigendecomposition (as in ``singular_value_threshold``)."""
    if rank <= 0:
        return np.zeros_like(Z)
    small_cols = Z.shape[2] <= Z.shape[1]
    Zt = np.swapaxes(Z, 1, 2)
    _, V = np.linalg.eigh(Zt @ Z if small_cols else Z @ Zt)
    V = V[:, :, -rank:]
    Vt = np.swapaxes(V, 1, 2)
    return (Z @ V) @ Vt if small_cols else V @ (Vt @ Z)


def fit_fe_rank(
    Y: np.ndarray,
    weight: np.ndarray,
    rank: int,
    *,
    max_iter: int = 2000,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Unpenalised two-way effects + rank-``rank`` matrix by weighted least squares, batched.

    Minimises, separately for each leading index k,
    ``sum_it weight[k,i,t] (Y_it - a[k,i] - b[k,t] - L[k,i,t])^2`` over a, b and
    rank(L[k]) <= rank, with weights in [0, 1] (0 = cell left out), by hard-impute: alternate one
    fixed-effect sweep with the best rank-r approximation of ``weight * residual + (1 - weight)
    * L`` (a majorise-minimise step, so the objective never increases; it converges to a
    stationary point, not necessarily the global minimum). ``rank=0`` is the weighted two-way
    fixed-effects fit. ``Y`` is 2-D and shared; ``weight`` 2-D or 3-D. Returns
    ``(a, b, L, iterations)`` with a leading batch axis, as ``fit_fe_lowrank``.
    """
    w = np.asarray(weight, dtype=float)
    if w.ndim == 2:
        w = w[None]
    K, N, T = w.shape
    Yn = np.nan_to_num(np.asarray(Y, dtype=float))[None]
    row_w = np.maximum(w.sum(axis=2), _TINY)
    col_w = np.maximum(w.sum(axis=1), _TINY)
    a, b, L = np.zeros((K, N)), np.zeros((K, T)), np.zeros((K, N, T))
    fit_old = np.zeros((K, N, T))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        R = Yn - L
        a = ((R - b[:, None, :]) * w).sum(axis=2) / row_w
        b = ((R - a[:, :, None]) * w).sum(axis=1) / col_w
        if rank > 0:
            E = Yn - a[:, :, None] - b[:, None, :]
            L = truncate_rank(w * E + (1.0 - w) * L, rank)
        fit = a[:, :, None] + b[:, None, :] + L
        converged = _settled(fit, fit_old, tol)
        fit_old = fit
        if converged:
            break
    return a, b, L, it


def eigenvalue_ratio_rank(singular_values: np.ndarray, k_max: int) -> int:
    """Number of factors by the eigenvalue-ratio rule (Ahn & Horenstein 2013): the k in
    1..k_max maximising s_k^2 / s_{k+1}^2 (s sorted descending); 0 when k_max is 0.

    k_max is also capped at half the number of singular values: after removing two-way effects
    the residual has rank at most min(N, T) - 1, so the last ratios divide by numerical zeros
    (TROP's small penalties kept 19 of 20 components, and the uncapped rule picked rank 19).
    """
    s = np.sort(np.asarray(singular_values, dtype=float))[::-1]
    k_max = min(int(k_max), (len(s) - 1) // 2)
    if k_max <= 0:
        return 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = s[:k_max] / np.maximum(s[1 : k_max + 1], _TINY * max(s[0], 1.0))
    return int(np.argmax(ratio)) + 1


def numerical_rank(L: np.ndarray) -> int:
    """Rank of a fitted low-rank matrix, ignoring singular values below 1e-8 of its scale."""
    return int(np.linalg.matrix_rank(L, tol=1e-8 * max(1.0, np.abs(L).max())))


def refit_rank(
    Y: np.ndarray, observed: np.ndarray, a: np.ndarray, b: np.ndarray, L: np.ndarray
) -> int:
    """Rank for the unpenalised refit, from a convex fit (a, b, L) on the ``observed`` cells.

    Eigenvalue ratio on the spectrum of the imputed residual (residual on observed cells, L
    elsewhere), over the components the penalty kept.
    """
    Z = np.where(observed, Y - a[:, None] - b[None, :], L)
    return eigenvalue_ratio_rank(np.linalg.svd(Z, compute_uv=False), numerical_rank(L))


def _check_support(untreated: np.ndarray, treated: np.ndarray, units: np.ndarray) -> None:
    if not treated.any():
        raise PanelError("No treated usable cell: nothing to estimate.")
    no_base = treated.any(axis=1) & ~untreated.any(axis=1)
    if no_base.any():
        raise PanelError(
            f"Unit {units[np.argmax(no_base)]!r} is treated in every usable period; MC-NNM "
            "needs at least one untreated period per treated unit to learn its level."
        )
    no_ctrl = treated.any(axis=0) & ~untreated.any(axis=0)
    if no_ctrl.any():
        raise PanelError(
            "Some period has every unit treated or in blackout; there is no control to impute "
            "from in that period."
        )


def lambda_max(Y: np.ndarray, observed: np.ndarray) -> float:
    """Smallest lambda at which the MC-NNM low-rank term is zero (objective scaled by 1/|O|)."""
    a, b, _, _ = fit_fe_lowrank(Y, observed.astype(float), None)
    E = np.where(observed, Y - a[0][:, None] - b[0][None, :], 0.0)
    return float(2.0 * np.linalg.norm(E, 2) / max(observed.sum(), 1))


def cross_validate_lambda(
    Y: np.ndarray,
    observed: np.ndarray,
    grid: np.ndarray,
    *,
    n_folds: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean held-out squared error for each lambda of ``grid`` (descending), K-fold over O.

    Lambdas after the path stopped improving (two rises in a row) are left at ``inf``.
    """
    cells = np.flatnonzero(observed.ravel())
    fold = rng.permutation(len(cells)) % n_folds
    weight = np.repeat(observed[None].astype(float), n_folds, axis=0)
    held = np.zeros_like(weight, dtype=bool)
    for k in range(n_folds):
        flat = cells[fold == k]
        w = weight[k].ravel()
        w[flat] = 0.0
        weight[k] = w.reshape(observed.shape)
        h = held[k].ravel()
        h[flat] = True
        held[k] = h.reshape(observed.shape)
    n_train = weight.sum(axis=(1, 2))
    mse = np.full(len(grid), np.inf)
    L = None
    for g, lam in enumerate(grid):
        a, b, L, _ = fit_fe_lowrank(Y, weight, lam * n_train, L0=L)
        pred = a[:, :, None] + b[:, None, :] + L
        err = np.where(held, (np.nan_to_num(Y)[None] - pred) ** 2, 0.0)
        mse[g] = float(err.sum() / held.sum())
        # stop once the held-out error has risen twice in a row: smaller penalties only
        # overfit more, and they are the slow ones to solve
        if g >= 2 and mse[g] > mse[g - 1] > mse[g - 2]:
            break
    return mse


class MCNNMEstimator(PanelEstimator):
    """MC-NNM (Athey et al. 2021): two-way effects + low rank, lambda by cross-validation.

    Parameters
    ----------
    lambda_ : fixed penalty (objective scaled by 1/|O|); ``None`` cross-validates.
    n_lambda, n_folds : size of the log grid and number of CV folds.
    n_boot : bootstrap replicates (``se='bootstrap'``); n_placebo for ``se='placebo'``.
    se : ``None`` (bootstrap, or placebo with one treated unit), "bootstrap", "placebo",
        "time_placebo" (alias "unit_conditional"; see ``_resampling.time_placebo_effects``),
        "none".
    debias : refit the unpenalised two-way + rank-r model at the rank the convex fit selected
        (default; see the module docstring for why). ``False`` reports the convex estimate.
    seed : seeds CV folds and resampling.
    """

    name = "mc"

    def __init__(
        self,
        lambda_: float | None = None,
        *,
        n_lambda: int = 10,
        n_folds: int = 5,
        n_boot: int = 100,
        n_placebo: int = 100,
        max_iter: int = 300,
        tol: float = 1e-5,
        se: str | None = None,
        debias: bool = True,
        seed: int | None = None,
    ) -> None:
        self.lambda_ = lambda_
        self.n_lambda = n_lambda
        self.n_folds = n_folds
        self.n_boot = n_boot
        self.n_placebo = n_placebo
        self.max_iter = max_iter
        self.tol = tol
        self.se = se
        self.debias = debias
        self.seed = seed

    def _effect(self, lam: float, rank: int | None, dropped: list[int]) -> EffectFn:
        """tau(Y, W, usable) at a fixed penalty (convex) or a fixed rank (refit); a replicate
        whose refit does not settle takes the convex fit instead, as the full sample does
        (counted in ``dropped``)."""

        def effect(Y: np.ndarray, W: np.ndarray, usable: np.ndarray, rows: np.ndarray) -> float:
            obs = usable & ~W
            treated = usable & W
            if rank is not None:
                a1, b1, L1, n = fit_fe_rank(Y, obs, rank, max_iter=REFIT_MAX_ITER)
                if n < REFIT_MAX_ITER:
                    Y0 = a1[0][:, None] + b1[0][None, :] + L1[0]
                    return float((Y - Y0)[treated].mean())
                dropped.append(1)
            a, b, L, _ = fit_fe_lowrank(
                Y, obs.astype(float), lam * obs.sum(), max_iter=self.max_iter, tol=self.tol
            )
            Y0 = a[0][:, None] + b[0][None, :] + L[0]
            return float((Y - Y0)[treated].mean())

        return effect

    def _fit(self, panel: Panel) -> EstimateResult:
        # single-threaded BLAS throughout: many small dense problems (see fit_fe_lowrank)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit_single_threaded(panel)

    def _fit_single_threaded(self, panel: Panel) -> EstimateResult:
        n_treated_units = int((panel.W & panel.usable).any(axis=1).sum())
        method = resolve_method(
            self.se, "MC-NNM", n_treated_units, tuple(m for m in METHODS if m != "two_way")
        )
        rng = seeded_rng(self.seed)
        Y, W, usable = panel.Y, panel.W, panel.usable
        obs = usable & ~W
        treated = usable & W
        _check_support(obs, treated, panel.units)
        lmax = lambda_max(Y, obs)
        grid = lmax * np.logspace(0, -2, self.n_lambda)
        cv_mse = None
        if self.lambda_ is None:
            cv_mse = cross_validate_lambda(Y, obs, grid, n_folds=self.n_folds, rng=rng)
            lam = float(grid[int(np.argmin(cv_mse))])
        else:
            lam = float(self.lambda_)
        a, b, L, n_iter = fit_fe_lowrank(
            Y, obs.astype(float), lam * obs.sum(), max_iter=self.max_iter, tol=self.tol
        )
        Y0 = a[0][:, None] + b[0][None, :] + L[0]
        tau_convex = float((Y - Y0)[treated].mean())
        convex_rank = numerical_rank(L[0])
        rank: int | None = None
        tau, n_refit_iter, refit_settled, tau_refit = tau_convex, 0, True, math.nan
        if self.debias:
            rank = refit_rank(Y, obs, a[0], b[0], L[0])
            a1, b1, L1, n_refit_iter = fit_fe_rank(Y, obs, rank, max_iter=REFIT_MAX_ITER)
            refit_settled = n_refit_iter < REFIT_MAX_ITER
            tau_refit = float((Y - a1[0][:, None] - b1[0][None, :] - L1[0])[treated].mean())
            if refit_settled:
                tau = tau_refit
            else:
                # no least-squares minimum to refit to: the convex estimate and its SE stand
                rank = None
        dropped: list[int] = []
        effect = self._effect(lam, rank, dropped)
        se, df, draw_info = resampled_se(
            method, effect, Y, W, usable, n_boot=self.n_boot, n_placebo=self.n_placebo, rng=rng
        )
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            df=df,
            n_units=panel.n_units,
            n_periods=panel.n_periods,
            se_method=method,
            n_cells=int(treated.sum()),
            details={
                "lambda": lam,
                "lambda_grid": grid.tolist(),
                "cv_mse": None if cv_mse is None else cv_mse.tolist(),
                "rank": convex_rank if rank is None else rank,
                "convex_rank": convex_rank,
                "debiased": bool(self.debias and refit_settled),
                "effect_convex": tau_convex,
                "iterations": n_iter,
                "refit_iterations": n_refit_iter,
                "refit_settled": refit_settled,
                "effect_refit": tau_refit,  # where the refit stopped, reported or not
                "replicate_refits_dropped": len(dropped),
                **draw_info,
            },
        )
