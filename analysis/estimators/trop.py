"""Triply robust panel estimator (TROP; "DWCP" in early drafts), Athey, Imbens, Qu & Viviano,
"Triply robust panel estimators", arXiv 2508.21536 (2025).

Estimand: the average effect on the treated usable cells. For each treated cell (i, t) the
untreated outcome Y_it(0) is imputed by a weighted fit on the untreated usable cells (j, s):

    min_{a,b,L} sum_{j,s} w_js (Y_js - a_j - b_s - L_js)^2 + lambda_nn ||L||_*,
    w_js = exp(-lambda_time |t - s|) * exp(-lambda_unit * dist(i, j)),

with dist(i, j) the root-mean-square outcome gap between units i and j over the periods where
both are untreated and usable (leaving out period t). The effect of the cell is
Y_it - a_i - b_t - L_it, and the estimate averages the cells. The three ingredients - unit
weights (synthetic-control-like), time weights (recent periods count more) and the two-way +
low-rank outcome model (matrix completion) - each protect against a different failure, hence
"triply robust". With lambda_time = lambda_unit = 0 and no low-rank term every cell uses the
same unweighted two-way fixed-effects fit on the untreated cells, i.e. the imputation form of
two-way fixed effects, which for a block design equals the DID estimate.

Choices (the paper leaves some open; written down here and in docs/analysis-advanced.md):

- lambda_nn is given as a fraction of the reference penalty 2*sigma_1(residual of the unweighted
  two-way fit on the untreated cells), at which the unweighted low-rank term vanishes; ``inf``
  (the default grid's first value) means no low-rank term.
- lambda_unit is given per unit of the median pairwise distance (so the grid is scale free);
  ``details['lambda_unit_raw']`` is the rate on the outcome scale.
- Tuning (``tuning="placebo"``, the default): up to ``n_tune`` never-treated units each take a
  treated unit's treatment path; their cells on it are hidden from their own fit and
  distances and imputed, and a grid point scores the mean square of these placebo average
  effects - the task the real fit faces (a whole post-period missing), as the authors'
  replication code tunes. The placebo units and their paths are fixed, not drawn
  (``_spread``: evenly over the controls in panel order, the treated paths shared out
  evenly), so the point estimate does not depend on the seed (issue #27: on Proposition 99
  random draws moved it from -13.1 to -21.0 over seeds 0-7). ``tuning="loo"`` (before
  2026-11-23) left out one control cell at a time, so the unit's neighbouring post-period
  cells stayed in the fit and the criterion favoured interpolation (RMSE 0.287 against 0.244
  on the study DGP). With ``search="coordinate"`` the grid is searched coordinate-wise (time,
  unit, nn; ``n_cycles`` passes) starting at the DID point (0, 0, inf), so at most n_cycles *
  (|grid_time| + |grid_unit| + |grid_nn|) grid points; ``search="grid"`` scores every
  combination (``n_cycles`` unused).
- Inference: bootstrap over units, treated and never-treated units drawn separately, tuning
  parameters held at their selected values - the only random draws, seeded by ``seed``
  (``seeded_rng``: ``None`` is a fixed default); each replicate's convex fits start from the
  full sample's solutions (rows reindexed), which saves 20-30% of the solver's iterations.
- No free rank refit (MC-NNM has one). Refitting each cell's *weighted* model at a fixed rank
  without the penalty is ill-posed under TROP's tuned local weights: the closer the solver
  gets to the weighted rank-r least-squares minimum, the worse the imputed treated cells
  (docs/analysis-advanced.md), so an option that did this was removed. ``relax=True`` refits
  less: the loadings on the convex fit's period factors, a convex least-squares problem
  (``relaxed_refit``).

Cost: one weighted fit per distinct weight pattern. A fit costs O(iters * N * T) without the
low-rank term and O(iters * N * T * min(N, T)) with it (one SVD per iteration). Treated cells
share a fit when the weights coincide (lambda_unit = 0: cells in the same period; lambda_time =
0: cells of the same unit; both 0: one fit), so the number of fits is between 1 and the number
of treated cells. Tuning adds up to n_tune x (path length) fits per grid point (n_loo with
``tuning="loo"``), the bootstrap n_boot times the fits.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from analysis.estimators._resampling import resampled_se, resolve_method
from analysis.estimators.base import PanelEstimator
from analysis.estimators.mcnnm import _check_support, eigenvalue_ratio_rank, fit_fe_lowrank
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng


@dataclass(frozen=True)
class _Rates:
    time: float
    unit: float  # on the outcome scale (already divided by the median distance)
    nn: float | None  # absolute penalty, None = no low-rank term
    relax: bool = False  # refit the loadings without the penalty (``relaxed_refit``)


def relaxed_refit(
    Y: np.ndarray,
    weight: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    L: np.ndarray,
    *,
    min_cells: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undo the nuclear norm's shrinkage, keeping the period factors it chose; batched.

    For each fit k:

    - rank r: the eigenvalue-ratio rule (Ahn & Horenstein 2013) on the singular values of the
      completed matrix ``w (Y - a - b) + (1 - w) L`` (the one the convex solver thresholds),
      over the components the penalty kept - MC-NNM's refit rule (``refit_rank``) with weights;
    - factors V: the top r right singular vectors of L;
    - then the weighted least squares of ``Y - b - a 1' - G V'`` over b and each unit's level
      and loadings (a_i, G_i), solved exactly: each unit's small regression on [1, V] is
      eliminated, which leaves a T x T system for b (no iterations, so no stopping rule).

    With V fixed the model is linear, so this is a least-squares problem; a unit's (a_i, G_i)
    is identified when its weighted cells are enough: a unit whose effective number of cells
    (sum w)^2 / sum w^2 is below ``min_cells`` x (r + 1), or whose weighted design [1, V] is
    numerically singular, keeps its convex loadings (only its level is refit) - with strong
    time decay a treated unit's own pre-period can carry two effective cells, and an
    unpenalised fit there interpolates. This is the relaxed lasso (Meinshausen 2007) carried
    over to the nuclear norm; a free rank-r refit (factors too) under TROP's local weights is
    ill-posed (docs/analysis-advanced.md). Returns (a, b, L) with L[k] = G V'.
    """
    K, N, T = L.shape
    Yb = np.broadcast_to(np.nan_to_num(np.asarray(Y, dtype=float)), (K, N, T))
    w = np.broadcast_to(np.asarray(weight, dtype=float), (K, N, T))
    _, s_l, Vt = np.linalg.svd(L, full_matrices=False)
    kept = (s_l > 1e-8 * np.maximum(s_l[:, :1], 1e-300)).sum(axis=1)
    Z = w * (Yb - a[:, :, None] - b[:, None, :]) + (1.0 - w) * L
    s_z = np.linalg.svd(Z, compute_uv=False)
    ranks = np.array([eigenvalue_ratio_rank(s_z[k], int(kept[k])) for k in range(K)])
    r_max = int(ranks.max())
    if r_max == 0:
        return a, b, L
    # each unit's design [1, V] (factors padded to r_max with zero columns); a unit without
    # enough weighted cells keeps its convex loadings as an offset and refits its level only
    V = np.swapaxes(Vt[:, :r_max], 1, 2) * (np.arange(r_max)[None, :] < ranks[:, None])[:, None]
    X = np.concatenate([np.ones((K, T, 1)), V], axis=2)
    p = r_max + 1
    sw, sw2 = w.sum(axis=2), (w**2).sum(axis=2)
    n_eff = np.where(sw2 > 0, sw**2 / np.maximum(sw2, 1e-300), 0.0)
    gram = np.einsum("kit,ktp,ktq->kipq", w, X, X, optimize=True)
    # collinearity of [1, V] on the unit's weighted cells: smallest eigenvalue of the Gram
    # matrix scaled to unit diagonal (the padding as identity)
    pad = np.zeros((K, 1, p), bool)
    pad[:, 0, 1:] = np.arange(r_max)[None, :] >= ranks[:, None]
    scale = np.sqrt(np.where(pad, 1.0, np.einsum("kipp->kip", gram)))
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_diag = gram / (scale[..., :, None] * scale[..., None, :])
    pad2 = pad[..., :, None] | pad[..., None, :]
    unit_diag = np.where(pad2, np.eye(p), np.nan_to_num(unit_diag))
    ev_min = np.linalg.eigvalsh(unit_diag)[..., 0]
    ok = (n_eff >= min_cells * (ranks[:, None] + 1)) & (ev_min > 1e-8) & (sw > 1e-12)
    free = np.ones((K, N, p), bool)
    free[:, :, 0] = sw > 1e-12  # a unit without weight keeps a = 0, as in the convex fit
    free[:, :, 1:] = ok[..., None] & (np.arange(r_max)[None, None, :] < ranks[:, None, None])
    G0 = L @ V  # the convex loadings on the kept factors (V is orthonormal)
    target = Yb - np.where(ok[..., None], 0.0, G0) @ np.swapaxes(V, 1, 2)
    # exact weighted least squares in (b, a_i, G_i): the units' blocks are eliminated
    # (Schur complement), leaving a T x T system for the period effects
    fm = free[..., :, None] & free[..., None, :]
    A = np.where(fm, gram, 0.0) + np.eye(p) * ~free[..., None, :]  # fixed dims solve to 0
    Bm = w[:, :, None, :] * np.swapaxes(X, 1, 2)[:, None] * free[..., None]
    c = ((w * target) @ X) * free
    D = w.sum(axis=1)
    Ainv = np.linalg.inv(A)
    AiB = Ainv @ Bm
    flat = (K, N * p, T)  # sums over (unit, coefficient) as one matrix product
    S = np.swapaxes(Bm.reshape(flat), 1, 2) @ AiB.reshape(flat)
    S = D[:, :, None] * np.eye(T) - S
    Aic = (Ainv @ c[..., None])[..., 0]
    rhs = (w * target).sum(axis=1) - (Aic.reshape(K, 1, N * p) @ Bm.reshape(flat))[:, 0]
    # S is singular: a constant moves between a and b, and when every unit's loadings are free
    # a shift b + V g moves into the loadings (G_i - g); the fitted values are the same for
    # every solution, so take the minimum-norm one (periods without weight get b = 0)
    ev, U = np.linalg.eigh(S)  # S's pseudo-inverse applied to rhs (as pinv, hermitian)
    size = np.abs(ev)
    inv_ev = np.where(
        size > 1e-10 * size.max(axis=1, keepdims=True), 1.0 / np.where(ev == 0, 1.0, ev), 0.0
    )
    b_new = (U @ (inv_ev * (np.swapaxes(U, 1, 2) @ rhs[..., None])[..., 0])[..., None])[..., 0]
    theta = (Ainv @ (c - (Bm @ b_new[:, None, :, None])[..., 0])[..., None])[..., 0]
    load = np.where(ok[..., None], theta[..., 1:], G0)
    refit = ranks > 0
    a = np.where(refit[:, None], theta[..., 0], a)
    b = np.where(refit[:, None], b_new, b)
    L = np.where(refit[:, None, None], load @ np.swapaxes(V, 1, 2), L)
    return a, b, L


def _spread(m: int, n: int) -> np.ndarray:
    """n indices spread evenly over range(m), in order: (k m) // n for k < n; distinct when
    n <= m, else every index n // m or n // m + 1 times."""
    return (np.arange(n) * m) // n if m > 0 else np.zeros(0, dtype=int)


def pair_stats(Y: np.ndarray, obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of squared gaps and count of common untreated periods, rows x all units."""
    Y0 = np.where(obs, Y, 0.0)
    Of = obs.astype(float)
    Y2 = Y0**2
    S = Y2[rows] @ Of.T + Of[rows] @ Y2.T - 2.0 * Y0[rows] @ Y0.T
    n = Of[rows] @ Of.T
    return np.maximum(S, 0.0), n


def reference_scales(Y: np.ndarray, obs: np.ndarray) -> tuple[float, float]:
    """TROP's scale references on the untreated usable cells ``obs``: the median pairwise
    distance between units (``lambda_unit`` is per this distance) and the reference penalty
    2 sigma_1 of the unweighted two-way residual (``lambda_nn`` is a fraction of it)."""
    N = Y.shape[0]
    S, n = pair_stats(Y, obs, np.arange(N))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sqrt(S / n)
    off = ~np.eye(N, dtype=bool) & (n > 0)
    med = float(np.median(d[off])) if off.any() else 1.0
    a, b, _, _ = fit_fe_lowrank(Y, obs.astype(float), None)
    resid = np.where(obs, Y - a[0][:, None] - b[0][None, :], 0.0)
    return med, float(2.0 * np.linalg.norm(resid, 2))


def trop_predict(
    Y: np.ndarray,
    obs: np.ndarray,
    ti: np.ndarray,
    tt: np.ndarray,
    rates: _Rates,
    *,
    leave_out: bool | np.ndarray,
    chunk: int = 32,
    max_iter: int = 200,
    tol: float = 1e-5,
    rows: np.ndarray | None = None,
    warm: dict[tuple[int, int], np.ndarray] | None = None,
    keep: dict[tuple[int, int], np.ndarray] | None = None,
    threads: int = 1,
    in_limit: bool = False,
    fe_sweeps: int = 4,
) -> np.ndarray:
    """Imputed Y(0) at target cells (ti[k], tt[k]) from the untreated cells ``obs``.

    ``leave_out=True`` removes each target cell from its own fit; treated targets are not in
    ``obs`` anyway. ``leave_out`` may also be a boolean (len(ti), T) mask ``hide``: target k's
    fit then loses the cells (ti[k], s) with hide[k, s] - a whole placebo block of a
    pseudo-treated control unit in tuning - and so does that unit's distance to the others.
    Targets with the same unit, mask and (with time weights) period share a fit.

    Warm starts (convex fits only): a fit is named by its weight pattern, ``(unit, period)``
    with the unit's id in ``rows`` (the original unit of each row of ``Y``; default: the row
    itself) and -1 for a dimension the weights do not depend on. ``keep`` receives each fit's
    low-rank term (from a call on the original rows); a later call on resampled rows (a bootstrap
    replicate) passes it as ``warm`` and starts each fit from the full sample's solution,
    rows reindexed, instead of from zero: the same convex problem's minimum, reached in fewer
    iterations.

    ``threads``: chunks of fits solved on this many threads (numpy's linear algebra releases
    the GIL); each chunk is its own fits and targets, so the numbers do not depend on it.
    ``in_limit``: the caller already holds BLAS to one thread (``TROPEstimator`` does).
    """
    N, T = Y.shape
    row_ids = np.arange(N) if rows is None else np.asarray(rows)
    rows, inv = np.unique(ti, return_inverse=True)
    S, n = pair_stats(Y, obs, rows)
    periods = np.arange(T)
    use_unit = rates.unit > 0
    use_time = rates.time > 0
    hide: np.ndarray | None = None
    if isinstance(leave_out, np.ndarray):
        hide = np.asarray(leave_out, dtype=bool)
        if hide.shape != (len(ti), T) or not hide[np.arange(len(ti)), tt].all():
            raise ValueError("leave_out mask must be (targets, T) and hide each target's cell.")
        leave_out = False
    # targets sharing the same weight pattern share one fit
    if leave_out:
        keys = np.arange(len(ti))
    elif hide is not None:
        kt = tt if use_time else np.zeros_like(tt)
        _, mask_id = np.unique(np.packbits(hide, axis=1), axis=0, return_inverse=True)
        mask_id = mask_id.reshape(-1)
        keys = np.unique(np.stack([ti, mask_id, kt], axis=1), axis=0, return_inverse=True)[1]
        keys = keys.reshape(-1)
    else:
        ku = ti if use_unit else np.zeros_like(ti)
        kt = tt if use_time else np.zeros_like(tt)
        keys = np.unique(ku * (T + 1) + kt, return_inverse=True)[1]
    uniq = np.unique(keys)
    rep = np.array([np.flatnonzero(keys == k)[0] for k in uniq])
    pred = np.empty(len(ti))

    def solve(start: int) -> None:
        sel = rep[start : start + chunk]
        K = len(sel)
        Wt = np.repeat(obs[None].astype(float), K, axis=0)
        if leave_out:
            Wt[np.arange(K), ti[sel], tt[sel]] = 0.0
        if hide is not None:
            Wt[np.arange(K), ti[sel]] *= ~hide[sel]
        if use_unit:
            Sk, nk = S[inv[sel]].copy(), n[inv[sel]].copy()
            if leave_out:
                gap = obs[:, tt[sel]].T * (Y[ti[sel], tt[sel]][:, None] - Y[:, tt[sel]].T) ** 2
                Sk -= gap
                nk -= obs[:, tt[sel]].T.astype(float)
            if hide is not None:
                # the hidden periods of the target unit no longer count in its distances
                both = obs[None] & obs[ti[sel]][:, None, :] & hide[sel][:, None, :]
                d2 = (Y[ti[sel]][:, None, :] - Y[None]) ** 2
                Sk -= np.where(both, d2, 0.0).sum(axis=2)
                nk -= both.sum(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                dist = np.sqrt(np.maximum(Sk, 0.0) / nk)
            dist[np.arange(K), ti[sel]] = 0.0
            dist = np.nan_to_num(dist, nan=np.inf, posinf=np.inf)  # no common period: no weight
            uw = np.where(nk > 0, np.exp(-rates.unit * dist), 0.0)
            uw[np.arange(K), ti[sel]] = 1.0
            Wt *= uw[:, :, None]
        if use_time:
            Wt *= np.exp(-rates.time * np.abs(periods[None, :] - tt[sel][:, None]))[:, None, :]
        # a placebo block's fit is its unit's whatever the weights (the unit's cells are hidden)
        by_unit = use_unit or hide is not None
        names = [
            (int(row_ids[ti[s]]) if by_unit else -1, int(tt[s]) if use_time else -1) for s in sel
        ]
        L0 = None
        if warm and rates.nn is not None and not leave_out:
            L0 = np.zeros((K, N, T))
            for j, name in enumerate(names):
                init = warm.get(name)
                if init is not None and init.shape[1] == T:  # not on a panel cut in time
                    L0[j] = init[row_ids]
        a, b, L, _ = fit_fe_lowrank(
            Y,
            Wt,
            rates.nn,
            L0=L0,
            max_iter=max_iter,
            tol=tol,
            limit_blas=not in_limit,
            fe_sweeps=fe_sweeps,
        )
        if keep is not None and rates.nn is not None and not leave_out:
            for j, name in enumerate(names):
                keep[name] = L[j]  # the convex solution: warm starts solve the convex problem
        if rates.relax and rates.nn is not None:
            a, b, L = relaxed_refit(Y, Wt, a, b, L)
        for j, s in enumerate(sel):
            idx = np.flatnonzero(keys == keys[s])
            pred[idx] = a[j, ti[idx]] + b[j, tt[idx]] + L[j, ti[idx], tt[idx]]

    starts = range(0, len(rep), chunk)
    if threads > 1 and len(starts) > 1:
        # chunks are independent fits writing disjoint targets: the same numbers in any order
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(solve, starts))
    else:
        for start in starts:
            solve(start)

    return pred


class TROPEstimator(PanelEstimator):
    """TROP (Athey, Imbens, Qu & Viviano 2025) with placebo-path tuning over the whole grid
    and a relaxed refit of the low-rank term.

    Parameters
    ----------
    lambda_time, lambda_unit, lambda_nn : fix a tuning parameter (``None`` = tune it).
        lambda_unit is per median pairwise distance; lambda_nn is a fraction of the reference
        penalty, ``math.inf`` = no low-rank term.
    lambda_time_grid, lambda_unit_grid, lambda_nn_grid : tuning grids (kept small on purpose).
    tuning : "placebo" (default): each grid point is scored by the mean square of placebo
        average effects - up to ``n_tune`` never-treated units (spread evenly over the
        controls in panel order), each given a treated unit's treatment path (shared out
        evenly) and its cells on that path imputed together, as the authors' replication code
        tunes; "loo": single control cells left out one at a time (up to ``n_loo``, spread
        evenly over the candidate cells), squared cell errors averaged (this library's rule
        before 2026-11-23). Neither draws at random: the estimate does not depend on ``seed``.
    search : "grid" (default since 2026-11-23): every combination (64 points on the default
        grids); "coordinate": coordinate-wise passes over the grids from the DID point (at
        most 24), which on the factor DGP stops at worse points (RMSE 0.285 against 0.227 on
        40 development seeds; docs/analysis-advanced.md).
    relax : (default True since 2026-11-23) refit every unit's loadings on the convex fit's
        period factors without the penalty (``relaxed_refit``); ``relax=False,
        search="coordinate"`` is the estimator before that date (the paper's convex fit).
    n_tune : pseudo-treated control units for placebo tuning.
    n_loo : pseudo-treated control cells for leave-one-out tuning.
    n_cycles : passes of the coordinate-wise grid search.
    warm_tuning : (default True) along each (lambda_time, lambda_unit) pair of the grid, start
        every placebo fit of a smaller nuclear-norm penalty from its fit at the previous, larger
        one (a continuation path, as soft-impute's warm starts): the same convex problems,
        fewer solver iterations. ``False`` starts every grid point from zero (the exact path
        the benchmark compares it with: benchmarks/bench_estimators_advanced.py).
    threads : threads that solve independent chunks of fits (BLAS itself stays on one
        thread); the estimate does not depend on it. Warm tuning and 2 threads (the defaults)
        take Proposition 99's fit with its SE from the exact path's 15.1 s (no warm start, 1
        thread) to 9.4 s on a 2-core machine (benchmarks/README.md).
    n_boot : bootstrap replicates; n_placebo for one treated unit.
    max_iter, tol : solver cap and relative-change tolerance of each weighted fit. 1e-4 moved
        effects by at most 5e-4 and SEs by at most 1% of their size against 1e-5 on the study
        panels, for 37-39% less time.
    fe_sweeps : (default 4 since 2026-11-25; 1 before) alternating sweeps of the unit and period
        effects per solver step. One sweep left the effects short of their minimum under
        strongly varying weights, so the solver took more steps, each an eigendecomposition;
        with 4 the effects are settled at every step (6 moves Proposition 99's estimate by 2e-9)
        and Proposition 99's fit takes 20% fewer steps of its low-rank fits (6,217 -> 4,946)
        and 58% fewer of its two-way-only fits (979 -> 413). Its estimate: -13.8872 with 1,
        -13.8874 with 4.
    se : ``None`` (bootstrap, or placebo with one treated unit), "bootstrap", "placebo",
        "time_placebo" (alias "unit_conditional"; see ``_resampling.time_placebo_effects``),
        "two_way" (bootstrap + the shared period part, ``_resampling.period_component``),
        "none".
    seed : seeds the bootstrap / placebo draws of the SE (``None``: ``analysis.seeding.DEFAULT_SEED``).
    """

    name = "trop"

    def __init__(
        self,
        lambda_time: float | None = None,
        lambda_unit: float | None = None,
        lambda_nn: float | None = None,
        *,
        lambda_time_grid: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0),
        lambda_unit_grid: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0),
        lambda_nn_grid: tuple[float, ...] = (math.inf, 0.1, 0.03, 0.01),
        tuning: str = "placebo",
        search: str = "grid",
        relax: bool = True,
        n_tune: int = 20,
        n_loo: int = 40,
        n_cycles: int = 2,
        warm_tuning: bool = True,
        threads: int = 2,
        n_boot: int = 100,
        n_placebo: int = 50,
        chunk: int = 32,
        max_iter: int = 200,
        tol: float = 1e-4,
        fe_sweeps: int = 4,
        se: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.lambda_time = lambda_time
        self.lambda_unit = lambda_unit
        self.lambda_nn = lambda_nn
        self.lambda_time_grid = lambda_time_grid
        self.lambda_unit_grid = lambda_unit_grid
        self.lambda_nn_grid = lambda_nn_grid
        self.tuning = tuning
        self.search = search
        self.relax = relax
        self.n_tune = n_tune
        self.n_loo = n_loo
        self.n_cycles = n_cycles
        self.warm_tuning = warm_tuning
        self.threads = threads
        self.n_boot = n_boot
        self.n_placebo = n_placebo
        self.chunk = chunk
        self.max_iter = max_iter
        self.tol = tol
        self.fe_sweeps = fe_sweeps
        self.se = se
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _rates(self, lt: float, lu: float, nn: float, med: float, ref: float) -> _Rates:
        return _Rates(
            time=float(lt),
            unit=float(lu) / med if med > 0 else 0.0,
            nn=None if not math.isfinite(nn) else float(nn) * ref,
            relax=self.relax,
        )

    def _predict(
        self,
        Y: np.ndarray,
        obs: np.ndarray,
        ti: np.ndarray,
        tt: np.ndarray,
        r: _Rates,
        leave_out: bool | np.ndarray,
        **warm_start: Any,
    ) -> np.ndarray:
        return trop_predict(
            Y,
            obs,
            ti,
            tt,
            r,
            leave_out=leave_out,
            chunk=self.chunk,
            max_iter=self.max_iter,
            tol=self.tol,
            threads=self.threads,
            in_limit=True,
            fe_sweeps=self.fe_sweeps,
            **warm_start,
        )

    def _tune(
        self,
        Y: np.ndarray,
        obs: np.ndarray,
        W: np.ndarray,
        med: float,
        ref: float,
    ) -> tuple[tuple[float, float, float], list[tuple[float, float, float, float]]]:
        placebo = self._placebo_targets(obs, W) if self.tuning == "placebo" else None
        if placebo is not None:
            li, lt_, hide, group = placebo
            leave_out: bool | np.ndarray = hide
        else:  # single cells (also the fallback when no control unit can take a path)
            li, lt_ = self._loo_cells(obs, W)
            leave_out, group = True, np.arange(len(li))
        truth = Y[li, lt_]
        n_groups = int(group.max()) + 1 if group.size else 0
        cache: dict[tuple[float, float, float], float] = {}
        # per (lambda_time, lambda_unit): the placebo fits' low-rank terms at the last finite
        # lambda_nn scored, the warm start of the next (placebo tuning only: loo's fits drop
        # a different cell each and are not named)
        path: dict[tuple[float, float], dict[tuple[int, int], np.ndarray]] = {}
        warm_ok = self.warm_tuning and placebo is not None

        def loss(p: tuple[float, float, float]) -> float:
            # mean square of the pseudo-treated units' average effects (one cell each for loo)
            if p not in cache:
                warm: dict[str, Any] = {}
                if warm_ok and math.isfinite(p[2]):
                    kept: dict[tuple[int, int], np.ndarray] = {}
                    warm = {"warm": path.get((p[0], p[1])), "keep": kept}
                    path[(p[0], p[1])] = kept
                rates = self._rates(*p, med, ref)
                pred = self._predict(Y, obs, li, lt_, rates, leave_out, **warm)
                err = np.bincount(group, truth - pred, n_groups) / np.bincount(group)
                cache[p] = float(np.mean(err**2))
            return cache[p]

        fixed = (self.lambda_time, self.lambda_unit, self.lambda_nn)
        grids = (self.lambda_time_grid, self.lambda_unit_grid, self.lambda_nn_grid)
        cur = [f if f is not None else g[0] for f, g in zip(fixed, grids, strict=True)]
        if self.search == "grid":  # every combination of the free parameters' grids
            axes = [g if f is None else (f,) for f, g in zip(fixed, grids, strict=True)]
            combos = [(float(a), float(b), float(c)) for a, b, c in itertools.product(*axes)]
            best = min(combos, key=loss)
            cur = list(best)
        for _ in range(self.n_cycles if self.search == "coordinate" else 0):
            for d in range(3):
                if fixed[d] is not None:
                    continue
                scores = {}
                for v in grids[d]:
                    trial = list(cur)
                    trial[d] = v
                    scores[v] = loss((trial[0], trial[1], trial[2]))
                cur[d] = min(scores, key=scores.__getitem__)
        if not cache:
            cache[(cur[0], cur[1], cur[2])] = float("nan")
        trace = [(*k, v) for k, v in cache.items()]
        return (cur[0], cur[1], cur[2]), trace

    def _loo_cells(self, obs: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to n_loo untreated cells of never-treated units, in treated periods if possible,
        spread evenly over them (in unit, then period order)."""
        never = np.asarray(~W.any(axis=1))
        cand = obs & never[:, None]
        treated_periods = np.asarray(W.any(axis=0))
        if (cand & treated_periods[None]).sum() >= 5:
            cand &= treated_periods[None]
        if cand.sum() < 5:
            cand = obs.copy()
        cells = np.argwhere(cand)
        pick = cells[_spread(len(cells), min(self.n_loo, len(cells)))]
        return pick[:, 0], pick[:, 1]

    def _placebo_targets(
        self, obs: np.ndarray, W: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Placebo blocks for tuning: up to n_tune never-treated units spread evenly over the
        controls in panel order, each given the treatment path of a treated unit, the paths
        shared out evenly (its untreated usable cells on that path), as (units, periods, hide
        mask, trial index) of the placebo cells; None when no control unit has a cell on any
        path. Nothing is drawn: a random choice made the point estimate depend on the seed
        (issue #27), and with exchangeable units a fixed choice has the same distribution."""
        ever = np.asarray(W.any(axis=1))
        tr, co = np.flatnonzero(ever), np.flatnonzero(~ever)
        if tr.size == 0 or co.size < 2:
            return None
        pseudo = co[_spread(co.size, min(self.n_tune, co.size))]
        paths = W[tr[_spread(tr.size, pseudo.size)]] & obs[pseudo]
        # a unit needs a cell on the path and an observed cell off it (its level to learn from;
        # e.g. a product added late has none before the path), as real treated units do
        keep = paths.any(axis=1) & (obs[pseudo] & ~paths).any(axis=1)
        pseudo, paths = pseudo[keep], paths[keep]
        if pseudo.size == 0:
            return None
        trial, lt_ = np.nonzero(paths)
        return pseudo[trial], lt_, paths[trial], trial

    # ------------------------------------------------------------------ fit
    def _fit(self, panel: Panel) -> EstimateResult:
        # single-threaded BLAS throughout: many small dense problems (see fit_fe_lowrank)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit_single_threaded(panel)

    def _fit_single_threaded(self, panel: Panel) -> EstimateResult:
        n_treated_units = int((panel.W & panel.usable).any(axis=1).sum())
        method = resolve_method(self.se, "TROP", n_treated_units)
        if self.tuning not in ("placebo", "loo"):
            raise ValueError(f"tuning must be 'placebo' or 'loo', not {self.tuning!r}.")
        if self.search not in ("coordinate", "grid"):
            raise ValueError(f"search must be 'coordinate' or 'grid', not {self.search!r}.")
        if self.fe_sweeps < 1:
            raise ValueError(f"fe_sweeps must be at least 1, not {self.fe_sweeps!r}.")
        for nm, g in (("time", self.lambda_time_grid), ("unit", self.lambda_unit_grid)):
            if any(v < 0 for v in g):
                raise ValueError(f"lambda_{nm}_grid must be non-negative.")
        Y, W, usable = panel.Y, panel.W, panel.usable
        obs = usable & ~W
        treated = usable & W
        _check_support(obs, treated, panel.units)
        med, ref = reference_scales(Y, obs)
        trace: list[tuple[float, float, float, float]] = []
        if None in (self.lambda_time, self.lambda_unit, self.lambda_nn):
            (lt, lu, nn), trace = self._tune(Y, obs, W & usable, med, ref)
        else:
            lt, lu, nn = self.lambda_time, self.lambda_unit, self.lambda_nn  # type: ignore[assignment]
        rates = self._rates(lt, lu, nn, med, ref)
        ti, tt = np.nonzero(treated)
        fits: dict[tuple[int, int], np.ndarray] = {}
        pred = self._predict(Y, obs, ti, tt, rates, False, keep=fits)
        cell_effects = Y[ti, tt] - pred
        tau = float(cell_effects.mean())

        def cell_effect(
            Yb: np.ndarray, Wb: np.ndarray, Ub: np.ndarray, rows: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray]:
            Ob, Tb = Ub & ~Wb, Ub & Wb
            i, t = np.nonzero(Tb)
            pred_b = self._predict(Yb, Ob, i, t, rates, False, rows=rows, warm=fits)
            return i, Yb[i, t] - pred_b

        def effect(Yb: np.ndarray, Wb: np.ndarray, Ub: np.ndarray, rows: np.ndarray) -> float:
            return float(cell_effect(Yb, Wb, Ub, rows)[1].mean())

        se, df, draw_info = resampled_se(
            method,
            effect,
            Y,
            W,
            usable,
            n_boot=self.n_boot,
            n_placebo=self.n_placebo,
            rng=seeded_rng(self.seed),
            cell_effect=cell_effect,
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
                "lambda_time": lt,
                "lambda_unit": lu,
                "lambda_nn": nn,
                "lambda_unit_raw": rates.unit,
                "lambda_nn_raw": rates.nn,
                "median_distance": med,
                "tuning_trace": trace,
                "search": self.search,
                "relax": self.relax,
                **draw_info,
            },
        )
