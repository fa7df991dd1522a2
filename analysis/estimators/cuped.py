"""Regression adjustment on each product's own baseline ("cuped").

``RegressionAdjustedEstimator`` compares the same cells as the difference in means (the
usable cells the design randomised) and adjusts each arm's mean for the product's **baseline**:
its mean outcome over its own cells before the design first randomised it. Those cells are in
the panel because the controller records every product of an experiment from its first period
("recorded from creation", docs/analysis.md): a time-bound design's pre-period, a triggered
product's periods before its trigger. They are cells with design probability 0 that come before
the product's first randomised cell, so nothing the treatment could have touched enters: a
triggered product's cells after its window (carryover) and a matched control's are not
baseline cells.

The baseline of a product with little history is shrunk toward the grand mean, as
cluster-experiments' ``TargetAggregation`` smooths a target by ``(sum + k * mean) / (n + k)``;
here ``k`` is the empirical-Bayes ratio of the within-product variance of a baseline cell to
the variance of the products' true levels (method of moments), so a product with n baseline
cells keeps the share ``n / (n + k)`` of its own mean, and a product with none takes the grand
mean. ``shrink=k`` fixes it instead.

The adjustment is Lin's (2013, "Agnostic notes on regression adjustments to experimental
data", Ann. Appl. Stat. 7(1)): a slope per arm, the covariate centred at its mean over the
compared cells, so that

    m_a = mean_a(Y) - theta_a * (mean_a(X) - mean(X)),   tau = m1 - m0,

the CUPED estimator of Deng, Xu, Kohavi & Walker (2013) with the arms' own slopes. ``m0`` is
the control mean of the compared cells at their common baseline: the counterfactual control
mean that the relative effect divides by. With no baseline cell the covariate is constant and
the estimate is the difference in means.

SE: the regression's cluster-robust covariance of the two adjusted means (by unit, class or
cell; by default CR2 with the Satterthwaite degrees of freedom of Imbens & Kolesar, the slopes'
leverage included: :func:`analysis.inference.cluster_covariance`). The covariate is treated as
fixed: the products in the experiment are the population whose effect is estimated.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import InferenceError, PanelError
from analysis.estimators.crossover import DifferenceInMeansEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult


def baseline_cells(panel: Panel) -> np.ndarray:
    """Each unit's baseline cells: usable, not randomised, and before its first randomised cell
    (N x T bool). Needs the design's probabilities."""
    if panel.probability is None:
        raise PanelError(
            "The regression adjustment needs the design's probabilities, to tell each "
            "product's baseline (its cells before it was randomised) from its experiment cells."
        )
    rand = panel.randomised
    N, T = rand.shape
    ever: np.ndarray = np.asarray(rand.any(axis=1))
    first = np.where(ever, rand.argmax(axis=1), T)
    before = np.arange(T)[None, :] < first[:, None]
    # a product the design never randomised (a matched control, one still pending) has no
    # baseline: its cells may sit beside treated substitutes, and it is in no comparison
    return panel.usable & ~rand & before & ever[:, None]


def shrunk_baseline(
    Y: np.ndarray, base: np.ndarray, shrink: float | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Each unit's baseline mean shrunk toward the grand mean, and how (``k``, the grand mean,
    the within and between variances). A unit without baseline cells gets the grand mean."""
    n = base.sum(axis=1).astype(float)
    total = float(n.sum())
    if total == 0.0:
        return np.zeros(len(n)), {"k": float("inf"), "grand_mean": float("nan")}
    Yb = np.where(base, Y, 0.0)
    s = Yb.sum(axis=1)
    grand = float(s.sum() / total)
    has = n > 0
    means = np.divide(s, n, out=np.full(len(n), grand), where=has)
    info = {"grand_mean": grand}
    if shrink is None:
        # within: pooled variance of a baseline cell around its product's mean
        dev = np.where(base, Y - means[:, None], 0.0)
        dof = float((n[has] - 1).sum())
        within = float((dev**2).sum() / dof) if dof > 0 else float("nan")
        # between: the spread of the products' means less what their own noise adds
        m = int(has.sum())
        if m >= 2 and np.isfinite(within):
            spread = float(((means[has] - means[has].mean()) ** 2).sum() / (m - 1))
            between = spread - within * float((1.0 / n[has]).mean())
        else:
            between = float("nan")
        k = within / between if between > 0 else float("inf")
        info |= {"within_variance": within, "between_variance": between}
    else:
        if not (np.isfinite(shrink) and shrink >= 0):
            raise ValueError(f"shrink must be a finite number >= 0, not {shrink!r}.")
        k = float(shrink)
    info["k"] = k
    if not np.isfinite(k):
        return np.full(len(n), grand), info
    # k = 0 (no spread within products) keeps each product's own mean; one with no baseline
    # cell then has none, and takes the grand mean
    return np.divide(s + k * grand, n + k, out=np.full(len(n), grand), where=n + k > 0), info


def _varies_without_any_one(x: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``x`` still varies once any single cluster's cells are left out."""
    _, g = np.unique(labels, return_inverse=True)
    if g.max(initial=-1) < 2:  # fewer than three clusters
        return False
    n = np.bincount(g).astype(float)
    s, q = np.bincount(g, weights=x), np.bincount(g, weights=x * x)
    rest_n = n.sum() - n
    rest_mean = (s.sum() - s) / rest_n
    rest_var = (q.sum() - q) / rest_n - rest_mean**2
    scale = max(float(np.abs(x).max()) ** 2, 1e-300)
    return bool(rest_var.min() > 1e-12 * scale)


class RegressionAdjustedEstimator(DifferenceInMeansEstimator):
    """The difference in means adjusted for each product's shrunk baseline (Lin's per-arm
    slopes); see the module docstring.

    cluster, correction, se : as the difference in means'.
    shrink : ``None`` (empirical Bayes) or a fixed smoothing count ``k`` >= 0.
    """

    name = "cuped"

    def __init__(
        self,
        *,
        cluster: str = "unit",
        correction: str = "cr2",
        shrink: float | None = None,
        se: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(cluster=cluster, correction=correction, se=se, seed=seed)
        self.shrink = shrink

    def _fit(self, panel: Panel) -> EstimateResult:
        self._check(panel, ("unit", "class", "cell"))
        base = baseline_cells(panel)
        use = self._compared(panel, "The regression adjustment")
        x, info = shrunk_baseline(panel.Y, base, self.shrink)
        X = np.broadcast_to(x[:, None], use.shape)[use]
        X = X - X.mean()
        Y = panel.Y[use]
        treated = panel.W[use]
        labels = self._cluster_labels(panel, use)
        per_arm = [len(np.unique(labels[arm])) for arm in (treated, ~treated)]
        if self.se != "none" and min(per_arm) < 2:
            raise InferenceError(
                f"A clustered SE needs treated cells in at least two {self.cluster}s and control "
                f"cells in at least two; there are {per_arm[0]} and {per_arm[1]}."
            )
        resid = np.empty_like(Y)
        means, slopes = [], []
        columns = [treated.astype(float), (~treated).astype(float)]
        for arm in (treated, ~treated):
            y, xa = Y[arm], X[arm]
            xd = xa - xa.mean()
            sxx = float(xd @ xd)
            # a slope needs the covariate to vary across the arm's clusters even without any
            # one of them (else that cluster alone determines it, and no clustered variance
            # exists): with two clusters, or all but one at the grand mean (products with no
            # history), the arm keeps its plain mean
            fitted = sxx > 1e-12 * max(len(xd), 1) and _varies_without_any_one(xa, labels[arm])
            theta = float(xd @ (y - y.mean()) / sxx) if fitted else 0.0
            means.append(float(y.mean() - theta * xa.mean()))
            resid[arm] = y - y.mean() - theta * xd
            slopes.append(theta)
            if fitted:
                columns.append(np.where(arm, X, 0.0))
        design = np.column_stack(columns)
        n_base = base.sum(axis=1)
        in_use = use.any(axis=1)
        return self._result(
            panel,
            use,
            means[0],
            means[1],
            resid,
            {
                "slope_treated": slopes[0],
                "slope_control": slopes[1],
                "shrink_k": info["k"],
                "baseline_cells": int(base[in_use].sum()),
                "units_with_baseline": int((n_base[in_use] > 0).sum()),
                "unadjusted_effect": float(Y[treated].mean() - Y[~treated].mean()),
            },
            design,
            labels,
        )
