"""Crossover (blackout) and plain switchback estimators.

``CrossoverEstimator`` ("crossover"): for crossover designs in which groups swap arms between
phases and the first part of each phase is a blackout (washout) whose data is discarded, as in
the price-experiment article (Amazon, Cooprider & Nassiri 2023). Blackout cells are dropped and
the effect is the coefficient on W in the two-way fixed-effects regression

    Y_it = a_i + b_t + tau W_it + e_it   over the usable cells,

so tau compares each product with itself across phases (unit effects) net of common shocks
(period effects); this is the classical AB/BA crossover analysis (Jones & Kenward, "Design and
analysis of cross-over trials", 3rd ed., 2014). Assumption: after the washout the carryover has
died down (no carryover into usable cells) and effects are homogeneous enough that the
regression weights, which are equal across units in a balanced crossover, do not matter.
Standard error: cluster-robust by unit (Liang-Zeger with the G/(G-1) correction), intervals and
p-values from Student t with G-1 degrees of freedom, since price experiments often have few
products.

``DifferenceInMeansEstimator`` ("dm"): mean of treated minus mean of control cells among the
usable cells the design randomised, for designs with a constant assignment probability.
Unbiased under the design when assignments are independent of the outcomes and there is no
carryover. SE: clustered by unit (default; robust to serial correlation within a product), by
class (the randomisation unit of a cluster design) or by cell ("cell": each product-period its
own cluster, the Neyman variance for random days where every product-period is randomised
independently); Student t with G - 1 degrees of freedom.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult


def two_way_demean(
    X: np.ndarray, mask: np.ndarray, *, tol: float = 1e-10, max_iter: int = 10_000
) -> np.ndarray:
    """Residual of X on unit and period dummies over the cells in ``mask`` (zeros elsewhere).

    Alternating projections (method of Guimaraes & Portugal 2010); exact for balanced masks
    after one sweep, geometric convergence otherwise.
    """
    m = mask.astype(float)
    R = np.where(mask, X, 0.0)
    rn = np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    cn = np.maximum(m.sum(axis=0, keepdims=True), 1.0)
    scale = np.sqrt((R**2).sum()) + 1e-300
    for _ in range(max_iter):
        R_old = R
        R = (R - R.sum(axis=1, keepdims=True) / rn) * m
        R = (R - R.sum(axis=0, keepdims=True) / cn) * m
        if np.sqrt(((R - R_old) ** 2).sum()) < tol * scale:
            break
    return R


class CrossoverEstimator(PanelEstimator):
    """Two-way fixed effects on the non-blackout cells, unit-clustered SE (t with G-1 df).

    se : ``None`` or "cluster" (by unit), "none".
    """

    name = "crossover"

    def __init__(self, *, se: str | None = None, seed: int | None = None) -> None:
        self.se = se
        self.seed = seed

    def _fit(self, panel: Panel) -> EstimateResult:
        if self.se not in (None, "cluster", "none"):
            raise InferenceError(
                f"The crossover estimator supports se='cluster' or 'none', not {self.se!r}."
            )
        use = panel.usable
        W = panel.W.astype(float)
        if not (panel.W & use).any() or not (~panel.W & use).any():
            raise PanelError("The crossover estimate needs both treated and control usable cells.")
        wt = two_way_demean(W, use)
        yt = two_way_demean(panel.Y, use)
        sww = float((wt**2).sum())
        if sww < 1e-10 * use.sum():
            raise PanelError(
                "Treatment does not vary once unit and period effects are removed; the design "
                "has no within-unit or between-unit contrast left after the blackout."
            )
        tau = float((wt * yt).sum() / sww)
        units_used = use.any(axis=1)
        G = int(units_used.sum())
        se = float("nan")
        df: float | None = None
        if self.se != "none":
            if G < 2:
                raise InferenceError("Cluster-robust SE needs at least 2 units.")
            e = np.where(use, yt - tau * wt, 0.0)
            score = (wt * e).sum(axis=1)[units_used]
            se = float(np.sqrt(G / (G - 1) * (score**2).sum()) / sww)
            df = float(G - 1)
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=G,
            n_periods=int(use.any(axis=0).sum()),
            se_method="cluster_unit" if self.se != "none" else "none",
            n_cells=int((panel.W & use).sum()),
            df=df,
            details={
                "n_blackout_cells": int(panel.blackout.sum()),
                "n_usable_cells": int(use.sum()),
            },
        )


class DifferenceInMeansEstimator(PanelEstimator):
    """Treated minus control mean over the randomised cells, with a clustered SE.

    The cells compared are the usable (non-blackout) cells that the design randomised: when
    the panel carries design probabilities, those strictly between 0 and 1. Cells that could
    not have been treated (a time-bound pre-period, a triggered product before or after its
    window, a matched control) are not part of the randomised comparison and are left out.

    cluster : the level the SE clusters at - "unit" (default: robust to serial correlation
        within a product), "class" (the panel's unit groups, e.g. the classes a cluster design
        randomises), or "cell" (each product-period its own cluster: the Neyman variance when
        every cell is an independent draw and outcomes are not serially correlated).
    se : ``None`` or "cluster", "none".

    Intervals use Student t with G - 1 degrees of freedom, G the number of clusters.
    """

    name = "dm"

    def __init__(
        self, *, cluster: str = "unit", se: str | None = None, seed: int | None = None
    ) -> None:
        self.cluster = cluster
        self.se = se
        self.seed = seed

    def _fit(self, panel: Panel) -> EstimateResult:
        if self.cluster not in ("unit", "cell", "class"):
            raise ValueError(f"cluster must be 'unit', 'class' or 'cell', not {self.cluster!r}.")
        if self.se not in (None, "cluster", "none"):
            raise InferenceError(f"dm supports se='cluster' or 'none', not {self.se!r}.")
        if self.cluster == "class" and panel.groups is None:
            raise PanelError(
                "Clustering by class needs each unit's class: give the panel a class column."
            )
        use = panel.usable
        if panel.probability is not None:
            use = use & (panel.probability > 0.0) & (panel.probability < 1.0)
        t_cells = panel.W & use
        c_cells = ~panel.W & use
        n1, n0 = int(t_cells.sum()), int(c_cells.sum())
        if n1 == 0 or n0 == 0:
            raise PanelError(
                "Difference in means needs both treated and control cells among the usable, "
                "randomised cells."
            )
        Y = np.where(use, panel.Y, 0.0)
        m1, m0 = float(Y[t_cells].mean()), float(Y[c_cells].mean())
        tau = m1 - m0
        # influence of each cell on tau; summed within clusters
        infl = np.where(t_cells, (Y - m1) / n1, 0.0) - np.where(c_cells, (Y - m0) / n0, 0.0)
        if self.cluster == "cell":
            scores = infl[use]
        else:
            per_unit = infl.sum(axis=1)[use.any(axis=1)]
            if self.cluster == "class":
                assert panel.groups is not None
                labels = panel.groups[use.any(axis=1)]
                _, inverse = np.unique(labels, return_inverse=True)
                per_unit = np.bincount(inverse.ravel(), weights=per_unit)
            scores = per_unit
        G = len(scores)
        se = float("nan")
        df: float | None = None
        if self.se != "none":
            if G < 2:
                raise InferenceError(
                    f"A clustered SE needs at least 2 clusters; the {self.cluster} level has {G}."
                )
            se = float(np.sqrt(G / (G - 1) * (scores**2).sum()))
            df = float(G - 1)
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=int(use.any(axis=1).sum()),
            n_periods=int(use.any(axis=0).sum()),
            se_method=f"cluster_{self.cluster}" if self.se != "none" else "none",
            n_cells=n1 + n0,
            df=df,
            details={
                "mean_treated": m1,
                "mean_control": m0,
                "n_treated_cells": n1,
                "n_clusters": G,
            },
        )


def _register() -> None:
    from analysis.estimators.registry import register

    register("crossover", CrossoverEstimator, __name__)
    register("dm", DifferenceInMeansEstimator, __name__)


_register()
