"""Heterogeneous panel treatment effect (HPTE), the Amazon Pricing Labs estimator.

Estimates the average effect on the treated products of a block design (treated products
switch on together and stay on; a pre-period exists), in four steps described by Cooprider &
Nassiri, "Science of price experimentation at Amazon", Business Economics 58 (2023),
doi:10.1057/s11369-023-00303-9 (summarised in the Amazon Science article of the same year):

1. **Detrended first differences.** Each product's untreated outcome is forecast from its own
   pre-period history by least squares on an intercept, a linear trend and day-of-week
   dummies (one batched solve for all products). The first difference of a product is the mean,
   over its usable post-period cells, of observed minus forecast.
2. **Outlier filtering** with a cutoff quantile inversely proportional to the number of
   products. The rule (unpublished in the paper) chosen here is Chauvenet's criterion with a
   robust scale, applied within each arm: a product is dropped when its robust z-score
   ``|fd - median| / (1.4826 MAD)`` exceeds the normal quantile ``z* = Phi^-1(1 - c / (2 n))``,
   n the arm size. The two-sided tail probability ``c / n`` is inversely proportional to the
   number of products, so on clean data about ``c`` products per arm are dropped whatever n
   is (``c = 0.5`` is Chauvenet's original choice), while any number of gross outliers is
   removed. Doing it within each arm keeps treated products from being trimmed for having an
   effect. The empirical-quantile variant (drop exactly c/n of each tail) cannot adapt to the
   share of outliers; docs/pricing-methods.md compares both.
3. **Forest-matched second difference.** The matched counterfactual first difference of
   treated product i is ``sum_j w_ij fd_j`` over control products j, with honest forest weights
   ``w_ij = (1/B_i) sum_b 1{j in leaf_b(i)} / |leaf_b(i) and controls|`` (Athey, Tibshirani &
   Wager, "Generalized random forests", Ann. Stat. 2019), trees where i's leaf holds no
   estimation control being skipped (B_i counts the others). The default forest is supervised:
   it learns which characteristics predict the untreated first difference of control products.
   Honesty by cross-fitting: the controls are split in two halves; a forest grown on one half
   has its leaves populated by the other half, and vice versa, so no control's own outcome
   chose the leaf that it is averaged in, and every control is used. ``matching="unsupervised"``
   grows totally random trees on the characteristics of all products (no outcome is used, so
   all controls populate the leaves); ``matching="none"`` compares with the mean of all
   controls. The effect of product i is ``fd_i - sum_j w_ij fd_j``; the estimate is the mean
   over kept treated products.
4. **Bootstrap standard error** over products, stratified by arm: products are resampled
   with replacement within each arm and steps 2-3 are recomputed (filter, leaf populations,
   weights), with the trees' split rules held fixed. Refitting the forests would multiply the
   cost by the number of replicates; the split rules are either outcome-free (unsupervised) or
   learned on the other half (honest), so conditional on them the estimate is a smooth
   function of product-level means, which is what the product bootstrap resamples. The
   coverage study in lab/studies/pricing_methods.py checks that this is enough.

5. **Per-product standard errors** (``details["unit_effects"]`` columns ``se``, ``ci_low``,
   ``ci_high``; normal 95% intervals). The error of product i's effect is
   ``tau_hat_i - tau_i = e_i - (m_hat(X_i) - m(X_i))``: its own untreated deviation ``e_i``
   from ``m(X) = E[fd | X, untreated]`` minus the matching error. A control j has the same
   untreated law given X (the assumption below), so its leave-one-out residual
   ``r_j = fd_j - m_hat_{-j}(X_j)``, matched exactly as a treated product is (its own outcome
   removed from the leaves it populates, ``(sum - fd_j) / (count - 1)``, and trees whose split
   rules saw its outcome skipped), is a draw of the same error (with one control fewer in its
   leaves). The squared ``r_j`` therefore estimate the error variance. It is not the same for
   every product: sales noise grows with volume, and the step-1 model gives each first
   difference its own noise variance ``s_i^2`` (:func:`first_differences_and_noise_scales`),
   while the matching error (an average over many controls) and the deviations the forecast
   cannot see are much the same for all products. So the variance function
   ``Var(tau_hat_i - tau_i) = a + b s_i^2`` is fitted to ``r_j^2`` over the estimation controls
   (:func:`fit_variance_function`, ``a, b >= 0``) and ``se_i = sqrt(a + b s_i^2)``; ``b`` near 1
   says the noise model is right, ``b > 1`` absorbs day-to-day correlation it misses. Scaling
   everything by ``s_i`` (``a = 0``) or by nothing (``b = 0``) are the special cases;
   docs/pricing-methods.md measures all three (``python -m lab.studies hpte-unit-effects``): the
   first under-covers quiet products, the second noisy ones. A product whose pre-period leaves
   no residual degree of freedom gets the unscaled ``sqrt(mean r_j^2)``. The variance is an
   average over characteristics: where the untreated deviation changes fast with X, the
   matching's smoothing bias is larger than average, so coverage given X varies around the
   pooled 95%; and ``b`` comes from the controls of one experiment, so with few noisy
   controls it is noisy and the noisiest products lose some coverage (both measured there).
   Outlier-dropped treated products have no effect and no ``se``.

Assumptions: untreated outcomes follow each product's pre-period trend and weekly pattern up to
a post-period deviation that is, on average, the same for treated and control products with
the same characteristics (conditional parallel deviations); products do not interfere (no
spillover, see analysis.spillover); the bootstrap treats products as independent draws. The
per-product intervals need more: treated and control products with the same characteristics
and noise scale have the same distribution of untreated deviations (exchangeability given X),
and the error is close to normal (a mean over post-period days and over leaf controls).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor, RandomTreesEmbedding

from analysis.errors import InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.seeding import seeded_rng

Matching = Literal["supervised", "unsupervised", "none"]


# ---------------------------------------------------------------------------------- step 1
def season_index(times: np.ndarray, period: int) -> np.ndarray:
    """Position of each period in the seasonal cycle: weekday for dates, else index mod period."""
    t = np.asarray(times)
    if period == 7 and (t.dtype.kind == "M" or isinstance(t.flat[0], pd.Timestamp)):
        return pd.DatetimeIndex(t).dayofweek.to_numpy()
    if period == 7 and t.dtype.kind in "OU" and isinstance(t.flat[0], str):
        try:
            return pd.DatetimeIndex(pd.to_datetime(t, format="ISO8601")).dayofweek.to_numpy()
        except (ValueError, TypeError):
            pass
    return np.arange(len(t)) % period


def forecast_design(
    n_periods: int, n_pre: int, season: np.ndarray | None, trend: bool
) -> np.ndarray:
    """Regressors of the untreated-outcome forecast: intercept, trend, seasonal dummies."""
    cols = [np.ones(n_periods)]
    if trend:
        t = np.arange(n_periods, dtype=float)
        cols.append((t - (n_pre - 1) / 2.0) / max(n_pre, 1))
    if season is not None:
        levels = np.unique(season[:n_pre])
        for lv in levels[1:]:
            cols.append((season == lv).astype(float))
    return np.column_stack(cols)


def _forecast_fit(
    Y: np.ndarray, usable: np.ndarray, n_pre: int, season: np.ndarray | None, trend: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design ``Z`` (T x k), coefficients (N x k) and pre-period Gram matrix (k x k when every
    pre-period cell is usable, else one per product, N x k x k) of the step-1 forecast."""
    T = Y.shape[1]
    Z = forecast_design(T, n_pre, season, trend)
    Zpre = Z[:n_pre]
    Mpre = usable[:, :n_pre].astype(float)
    Ypre = np.where(usable[:, :n_pre], Y[:, :n_pre], 0.0)
    if Mpre.all():
        coef, *_ = np.linalg.lstsq(Zpre, Ypre.T, rcond=None)
        return Z, coef.T, Zpre.T @ Zpre
    G = np.einsum("nt,tk,tl->nkl", Mpre, Zpre, Zpre)
    rhs = Ypre @ Zpre
    ridge = 1e-12 * np.eye(Z.shape[1])[None] * (1.0 + np.trace(G, axis1=1, axis2=2))[:, None, None]
    return Z, np.linalg.solve(G + ridge, rhs[..., None])[..., 0], G


def _post_mean_residual(
    Y: np.ndarray, usable: np.ndarray, n_pre: int, Z: np.ndarray, coef: np.ndarray
) -> np.ndarray:
    resid = Y[:, n_pre:] - coef @ Z[n_pre:].T
    Mpost = usable[:, n_pre:]
    n_post = Mpost.sum(axis=1)
    if (n_post == 0).any():
        raise PanelError(
            f"{int((n_post == 0).sum())} product(s) have no usable post-period cell; drop them "
            "or shorten the blackout."
        )
    return np.where(Mpost, resid, 0.0).sum(axis=1) / n_post


def detrended_first_differences(
    Y: np.ndarray,
    usable: np.ndarray,
    n_pre: int,
    season: np.ndarray | None,
    trend: bool = True,
) -> np.ndarray:
    """Per-product mean over usable post-period cells of observed minus forecast outcome.

    The forecast is a least-squares fit, per product, of pre-period outcomes on
    :func:`forecast_design`; all products are solved in one batch. Products whose usable
    pre-period cannot identify the regressors get a tiny ridge, which pins the unidentified
    coefficients to zero.
    """
    Z, coef, _ = _forecast_fit(Y, usable, n_pre, season, trend)
    return _post_mean_residual(Y, usable, n_pre, Z, coef)


def first_differences_and_noise_scales(
    Y: np.ndarray,
    usable: np.ndarray,
    n_pre: int,
    season: np.ndarray | None,
    trend: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`detrended_first_differences` and the standard deviation of each one's noise.

    If a product's outcome is its forecast regressors' line plus white noise of variance
    ``sigma_i^2`` (the model step 1 fits), its first difference deviates from its mean by
    noise of variance ``sigma_i^2 (1 / n_post_i + zbar_i' G_i^+ zbar_i)``: the post-period
    mean of ``n_post_i`` cells plus the forecast's own error at the mean post-period regressor
    row ``zbar_i`` (``G_i`` the pre-period Gram matrix; the trend's extrapolation dominates).
    Only identified directions of the forecast carry noise, hence the pseudo-inverse
    ``G_i^+``. ``sigma_i^2`` is estimated by the pre-period residual sum of squares over its
    degrees of freedom; NaN where the pre-period leaves none.
    """
    Z, coef, G = _forecast_fit(Y, usable, n_pre, season, trend)
    fd = _post_mean_residual(Y, usable, n_pre, Z, coef)
    Zpre, Zpost = Z[:n_pre], Z[n_pre:]
    pre_resid = np.where(usable[:, :n_pre], Y[:, :n_pre] - coef @ Zpre.T, 0.0)
    Mpost = usable[:, n_pre:]
    n_post = Mpost.sum(axis=1)
    zbar = (Mpost @ Zpost) / n_post[:, None]
    eig = np.linalg.eigvalsh(G)
    rank = (eig > 1e-10 * np.maximum(eig[..., -1:], 1e-300)).sum(axis=-1)
    G_plus = np.linalg.pinv(G, rtol=1e-10, hermitian=True)
    if G.ndim == 2:
        extrapolation = np.einsum("nk,kl,nl->n", zbar, G_plus, zbar)
    else:
        extrapolation = np.einsum("nk,nkl,nl->n", zbar, G_plus, zbar)
    dof = usable[:, :n_pre].sum(axis=1) - rank
    rss = np.square(pre_resid).sum(axis=1)
    sigma2 = np.divide(rss, dof, out=np.full(fd.size, np.nan), where=dof > 0)
    return fd, np.sqrt(sigma2 * (1.0 / n_post + extrapolation))


# ---------------------------------------------------------------------------------- step 2
def chauvenet_keep(values: np.ndarray, c: float | None = 0.5) -> np.ndarray:
    """Keep-mask of Chauvenet's criterion on robust z-scores, two-sided tail ``c / n``.

    ``c`` is the expected number of products dropped from clean normal data; ``None``
    disables filtering. A zero MAD (over half the values equal) disables it too.
    """
    v = np.asarray(values, dtype=float)
    n = v.size
    if c is None or n < 3:
        return np.ones(n, dtype=bool)
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    if not mad > 0:
        return np.ones(n, dtype=bool)
    z_cut = NormalDist().inv_cdf(1.0 - min(c / (2.0 * n), 0.25))
    return np.abs(v - med) <= z_cut * mad


def quantile_keep(values: np.ndarray, c: float | None = 2.0) -> np.ndarray:
    """Keep-mask of symmetric empirical trimming: drop below the c/n and above the 1 - c/n quantile.

    The alternative reading of the paper's rule, kept for comparison (docs/pricing-methods.md):
    it always drops about ``c`` products per tail, however many outliers there are.
    """
    v = np.asarray(values, dtype=float)
    n = v.size
    if c is None or n < 3:
        return np.ones(n, dtype=bool)
    q = min(c / n, 0.25)
    lo, hi = np.quantile(v, [q, 1.0 - q])
    return (v >= lo) & (v <= hi)


# ---------------------------------------------------------------------------------- step 3
@dataclass(frozen=True)
class _Forests:
    """Leaf ids of every product in every tree, and which controls populate each tree."""

    leaves: list[np.ndarray]  # per forest: N x B global leaf ids (tree offset added)
    n_leaves: list[int]  # per forest: total number of global leaf ids
    populate: list[np.ndarray]  # per forest: N bool, products allowed to populate its leaves
    trained: list[np.ndarray | None]  # per forest: N x B bool, outcome in the tree's sample


def _covariate_matrix(cov: pd.DataFrame) -> np.ndarray:
    """Characteristics as floats: numbers as they are, other columns one-hot encoded.

    A missing number becomes the column median plus a 0/1 "was missing" column, so products
    with unknown characteristics are still matched (and can be told apart by the trees).
    """
    parts: list[pd.DataFrame] = []
    for col in cov.columns:
        s = cov[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            x = s.astype(float)
            if x.isna().any():
                parts.append(x.isna().astype(float).rename(f"{col}_missing").to_frame())
                x = x.fillna(x.median() if x.notna().any() else 0.0)
            parts.append(x.to_frame())
        else:
            parts.append(pd.get_dummies(s.astype(str), prefix=str(col), dtype=float))
    return pd.concat(parts, axis=1).to_numpy(dtype=float)


def _global_leaves(leaf: np.ndarray) -> tuple[np.ndarray, int]:
    width = int(leaf.max()) + 1
    offsets = np.arange(leaf.shape[1], dtype=np.int64) * width
    return leaf.astype(np.int64) + offsets[None, :], width * leaf.shape[1]


def _grow_forests(
    X: np.ndarray,
    fd: np.ndarray,
    control: np.ndarray,
    keep: np.ndarray,
    matching: Matching,
    n_trees: int,
    min_leaf: int,
    rng: np.random.Generator,
) -> _Forests:
    N = X.shape[0]
    if matching == "unsupervised":
        emb = RandomTreesEmbedding(
            n_estimators=n_trees,
            max_depth=None,
            min_samples_leaf=min_leaf,
            random_state=int(rng.integers(2**31 - 1)),
        ).fit(X[control])
        g, width = _global_leaves(emb.apply(X))
        return _Forests([g], [width], [control.copy()], [None])
    # supervised, cross-fitted: train on one half of the kept controls, populate with the other
    ctrl_idx = np.flatnonzero(control)
    half = np.zeros(N, dtype=bool)
    half[rng.permutation(ctrl_idx)[: ctrl_idx.size // 2]] = True
    halves = [half & control, ~half & control]
    leaves, widths, pops = [], [], []
    trained: list[np.ndarray | None] = []
    for train, other in ((halves[0], halves[1]), (halves[1], halves[0])):
        fit_rows = train & keep
        forest = RandomForestRegressor(
            n_estimators=max(1, n_trees // 2),
            min_samples_leaf=min_leaf,
            max_features=max(1, int(np.ceil(X.shape[1] / 3))),
            max_samples=0.5,
            random_state=int(rng.integers(2**31 - 1)),
            n_jobs=1,
        ).fit(X[fit_rows], fd[fit_rows])
        g, width = _global_leaves(forest.apply(X))
        in_sample = np.zeros(g.shape, dtype=bool)
        fit_idx = np.flatnonzero(fit_rows)
        for b, drawn in enumerate(forest.estimators_samples_):
            in_sample[fit_idx[drawn], b] = True
        leaves.append(g)
        widths.append(width)
        pops.append(other)
        trained.append(in_sample)
    return _Forests(leaves, widths, pops, trained)


def _leaf_sums(
    g: np.ndarray, width: int, fd: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``fd`` and count of ``rows`` in every global leaf of one forest's trees."""
    ids = g[rows].ravel()
    sums = np.bincount(ids, weights=np.repeat(fd[rows], g.shape[1]), minlength=width)
    return sums, np.bincount(ids, minlength=width)


def _matched_controls(
    forests: _Forests | None,
    fd: np.ndarray,
    ctrl_rows: np.ndarray,
    treated_rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Forest-weighted mean control first difference for each treated row.

    ``ctrl_rows``/``treated_rows`` are product indices (repeats allowed: bootstrap draws).
    Returns the matched values and the number of trees that had a populated leaf.
    """
    if forests is None or ctrl_rows.size == 0:
        m = fd[ctrl_rows].mean() if ctrl_rows.size else np.nan
        return np.full(treated_rows.size, m), np.zeros(treated_rows.size, dtype=int)
    total = np.zeros(treated_rows.size)
    valid = np.zeros(treated_rows.size, dtype=int)
    for g, width, pop in zip(forests.leaves, forests.n_leaves, forests.populate, strict=True):
        rows = ctrl_rows[pop[ctrl_rows]]
        if rows.size == 0:
            continue
        sums, counts = _leaf_sums(g, width, fd, rows)
        tg = g[treated_rows]
        c = counts[tg]
        means = np.divide(sums[tg], c, out=np.zeros(tg.shape), where=c > 0)
        total += means.sum(axis=1)
        valid += (c > 0).sum(axis=1)
    fallback = fd[ctrl_rows].mean()
    matched = np.divide(total, valid, out=np.full(total.shape, fallback), where=valid > 0)
    return matched, valid


def _loo_matched_controls(
    forests: _Forests | None, fd: np.ndarray, ctrl_rows: np.ndarray
) -> np.ndarray:
    """Each control's matched value computed as for a treated product, without its own outcome.

    ``ctrl_rows`` are the (distinct) estimation controls. Per tree: where the control
    populates its own leaf, the leaf mean of the others ``(sum - fd_j) / (count - 1)``; trees
    whose split rules were learned with the control in their subsample are skipped (for a
    treated product no tree ever saw its outcome); the rest as for a treated product.
    Falls back to the mean of the other controls.
    """
    n = ctrl_rows.size
    if n < 2:
        return np.full(n, np.nan)
    own_fd = fd[ctrl_rows]
    fallback = (own_fd.sum() - own_fd) / (n - 1)
    if forests is None:
        return fallback
    total = np.zeros(n)
    valid = np.zeros(n, dtype=int)
    for g, width, pop, trained in zip(
        forests.leaves, forests.n_leaves, forests.populate, forests.trained, strict=True
    ):
        inside = pop[ctrl_rows]
        rows = ctrl_rows[inside]
        if rows.size == 0:
            continue
        sums, counts = _leaf_sums(g, width, fd, rows)
        cg = g[ctrl_rows]
        s = sums[cg] - np.where(inside, own_fd, 0.0)[:, None]
        c = counts[cg] - inside[:, None].astype(int)
        ok = c > 0
        if trained is not None:
            ok &= ~trained[ctrl_rows]
        total += np.divide(s, c, out=np.zeros(cg.shape), where=ok).sum(axis=1)
        valid += ok.sum(axis=1)
    return np.divide(total, valid, out=fallback, where=valid > 0)


# ---------------------------------------------------------------------------------- step 5
def fit_variance_function(
    residual: np.ndarray, scale: np.ndarray, n_iter: int = 20
) -> tuple[float, float]:
    """``(a, b) >= 0`` of ``E[r^2] = a + b s^2`` by iteratively reweighted non-negative least
    squares on the squared residuals (weights ``1 / fitted^2``, the Gaussian-likelihood weights
    of a variance, as ``Var(r^2) = 2 (E r^2)^2`` for normal r). Pairs with a non-finite
    value are left out; with fewer than 3 scaled pairs ``b = 0`` and ``a`` is the mean square.
    """
    from scipy.optimize import nnls

    r2 = np.square(np.asarray(residual, dtype=float))
    x = np.square(np.asarray(scale, dtype=float))
    ok = np.isfinite(r2) & np.isfinite(x)
    if ok.sum() < 3:
        finite = r2[np.isfinite(r2)]
        return (float(finite.mean()) if finite.size else float("nan")), 0.0
    r2, x = r2[ok], x[ok]
    unit = x.mean() if x.mean() > 0 else 1.0  # scale-free: fit on s^2 / mean(s^2)
    A = np.column_stack([np.ones(r2.size), x / unit])
    w = np.ones(r2.size)
    coef = np.zeros(2)
    for _ in range(n_iter):
        sw = np.sqrt(w)
        new, _ = nnls(A * sw[:, None], r2 * sw)
        fitted = A @ new
        if not (fitted > 0).all() or np.allclose(new, coef, rtol=1e-8, atol=0.0):
            coef = new
            break
        coef = new
        w = 1.0 / np.square(fitted)
    return float(coef[0]), float(coef[1] / unit)


# ---------------------------------------------------------------------------------- estimator
class HPTEEstimator(PanelEstimator):
    """Heterogeneous panel treatment effect (Cooprider & Nassiri 2023); see the module docstring.

    Parameters
    ----------
    matching: "supervised" (honest cross-fitted regression forest on control first
        differences, default), "unsupervised" (totally random trees on characteristics) or
        "none" (all controls, i.e. a detrended, outlier-filtered DID).
    n_trees: trees in total (split between the two cross-fitted forests).
    min_leaf: minimum products per leaf when growing the trees.
    outlier_c: expected number of clean products dropped per arm (Chauvenet: 0.5);
        ``None`` disables outlier filtering.
    outlier_rule: "chauvenet" (default, see step 2) or "quantile" (drop the ``outlier_c / n``
        empirical tails of each arm; for comparison).
    season_period: length of the seasonal cycle in periods (7: day of week; None: no
        seasonality). Weekday is read from the time labels when they are dates.
    trend: include a linear trend in the forecast.
    n_bootstrap: bootstrap replicates for the standard error.
    se: "bootstrap" (default when None) or "none" for the ATT; the per-product standard
        errors of step 5 are computed either way.
    seed: seed of the forest and the bootstrap (None: a fixed default).
    """

    name = "hpte"

    def __init__(
        self,
        *,
        matching: Matching = "supervised",
        n_trees: int = 100,
        min_leaf: int = 10,
        outlier_c: float | None = 0.5,
        outlier_rule: Literal["chauvenet", "quantile"] = "chauvenet",
        season_period: int | None = 7,
        trend: bool = True,
        n_bootstrap: int = 200,
        se: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.matching = matching
        self.n_trees = n_trees
        self.min_leaf = min_leaf
        self.outlier_c = outlier_c
        self.outlier_rule = outlier_rule
        self.season_period = season_period
        self.trend = trend
        self.n_bootstrap = n_bootstrap
        self.se = se
        self.seed = seed

    def _fit(self, panel: Panel) -> EstimateResult:
        if self.matching not in ("supervised", "unsupervised", "none"):
            raise ValueError(
                f"matching must be 'supervised', 'unsupervised' or 'none'; got {self.matching!r}."
            )
        if self.outlier_rule not in ("chauvenet", "quantile"):
            raise ValueError(
                f"outlier_rule must be 'chauvenet' or 'quantile'; got {self.outlier_rule!r}."
            )
        se_method = self.se or "bootstrap"
        if se_method not in ("bootstrap", "none"):
            raise ValueError(f"HPTE supports se='bootstrap' or 'none'; got {self.se!r}.")
        n_control, n_pre = panel.block_structure()
        treated = panel.treated_units
        if n_control < 2 or treated.sum() < 2:
            raise PanelError(
                "HPTE needs at least 2 treated and 2 control products; got "
                f"{int(treated.sum())} treated and {n_control} control."
            )
        if self.matching != "none" and panel.covariates is None:
            raise PanelError(
                "HPTE matches products on their characteristics: pass covariate columns "
                "(Panel.from_long(..., covariates=[...]) or `--covariates a,b`), or use "
                "matching='none'."
            )
        rng = seeded_rng(self.seed)
        usable = panel.usable
        season = None
        if self.season_period and self.season_period > 1:
            season = season_index(panel.times, self.season_period)
        n_cols = 1 + int(self.trend) + (0 if season is None else len(np.unique(season[:n_pre])) - 1)
        if season is not None and n_pre < n_cols + 2:
            season = None  # too short a pre-period to learn the weekly pattern
        trend = self.trend and n_pre >= 3
        fd, noise_scale = first_differences_and_noise_scales(panel.Y, usable, n_pre, season, trend)

        control = ~treated
        keep = np.ones(panel.n_units, dtype=bool)
        keep[treated] = self._keep(fd[treated])
        keep[control] = self._keep(fd[control])

        forests = None
        if self.matching != "none":
            assert panel.covariates is not None
            X = _covariate_matrix(panel.covariates)
            forests = _grow_forests(
                X, fd, control, keep, self.matching, self.n_trees, self.min_leaf, rng
            )
        t_rows = np.flatnonzero(treated & keep)
        c_rows = np.flatnonzero(control & keep)
        matched, n_trees_used = _matched_controls(forests, fd, c_rows, t_rows)
        unit_tau = fd[t_rows] - matched
        effect = float(unit_tau.mean())

        boot = np.empty(0)
        se = float("nan")
        if se_method == "bootstrap":
            boot = self._bootstrap(fd, treated, forests, rng)
            if np.isfinite(boot).sum() < 2:
                raise InferenceError("Bootstrap failed: too few usable replicates.")
            se = float(np.nanstd(boot, ddof=1))

        # per-product standard errors from the controls' leave-one-out residuals (step 5)
        loo_residual = fd[c_rows] - _loo_matched_controls(forests, fd, c_rows)
        var_a, var_b = fit_variance_function(loo_residual, noise_scale[c_rows])
        finite = loo_residual[np.isfinite(loo_residual)]
        unscaled = float(np.sqrt(np.mean(np.square(finite)))) if finite.size else float("nan")
        s_t = noise_scale[t_rows]
        unit_se = np.where(np.isfinite(s_t), np.sqrt(var_a + var_b * np.square(s_t)), unscaled)
        z = NormalDist().inv_cdf(0.975)

        t_all = np.flatnonzero(treated)
        pos = np.searchsorted(t_all, t_rows)

        def on_kept(values: np.ndarray, fill: float = np.nan) -> np.ndarray:
            out = np.full(t_all.size, fill, dtype=np.result_type(values, type(fill)))
            out[pos] = values
            return out

        unit_effects = pd.DataFrame(
            {
                "first_difference": fd[t_all],
                "matched_control": on_kept(matched),
                "effect": on_kept(unit_tau),
                "outlier": ~keep[t_all],
                "trees_matched": on_kept(n_trees_used, 0),
                "se": on_kept(unit_se),
                "ci_low": on_kept(unit_tau - z * unit_se),
                "ci_high": on_kept(unit_tau + z * unit_se),
                "noise_scale": noise_scale[t_all],
            },
            index=pd.Index(panel.units[t_all], name="unit"),
        )
        usable_post = usable[:, n_pre:]
        return EstimateResult(
            method=self.name,
            effect=effect,
            se=se,
            n_units=int(keep.sum()),
            n_periods=panel.n_periods,
            se_method=se_method,
            n_cells=int(usable_post[t_rows].sum()),
            details={
                "unit_effects": unit_effects,
                "control_first_differences": pd.Series(
                    fd[control], index=pd.Index(panel.units[control], name="unit")
                ),
                "outliers_treated": int((treated & ~keep).sum()),
                "outliers_control": int((control & ~keep).sum()),
                "unmatched_treated": int((n_trees_used == 0).sum()) if forests else 0,
                "matching": self.matching,
                "seasonality": season is not None,
                "trend": trend,
                "n_pre": n_pre,
                "bootstrap": boot,
                "control_residuals": pd.DataFrame(
                    {"loo_residual": loo_residual, "noise_scale": noise_scale[c_rows]},
                    index=pd.Index(panel.units[c_rows], name="unit"),
                ),
                "unit_se_model": {"intercept": var_a, "slope": var_b, "unscaled": unscaled},
            },
        )

    def _keep(self, values: np.ndarray) -> np.ndarray:
        if self.outlier_rule == "quantile":
            return quantile_keep(values, self.outlier_c)
        return chauvenet_keep(values, self.outlier_c)

    def _bootstrap(
        self,
        fd: np.ndarray,
        treated: np.ndarray,
        forests: _Forests | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        t_all = np.flatnonzero(treated)
        c_all = np.flatnonzero(~treated)
        out = np.full(self.n_bootstrap, np.nan)
        for r in range(self.n_bootstrap):
            t_rows = t_all[rng.integers(t_all.size, size=t_all.size)]
            c_rows = c_all[rng.integers(c_all.size, size=c_all.size)]
            t_rows = t_rows[self._keep(fd[t_rows])]
            c_rows = c_rows[self._keep(fd[c_rows])]
            if t_rows.size == 0 or c_rows.size == 0:
                continue
            matched, _ = _matched_controls(forests, fd, c_rows, t_rows)
            out[r] = float((fd[t_rows] - matched).mean())
        return out
