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
independently); by default the bias-reduced CR2 sandwich with Imbens-Kolesar degrees of freedom
for its Student t reference (``cr2_variance``), or CR1 with G - 1 (``correction="cr1"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.errors import InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.estimators.sums import (
    ArmSums,
    MeansPartial,
    cr1_from_clusters,
    cr2_from_clusters,
    partials_sharing,
)
from analysis.inference import cluster_covariance
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
        if not (panel.W & use).any() or not (~panel.W & use).any():
            raise PanelError("The crossover estimate needs both treated and control usable cells.")
        units_used = use.any(axis=1)
        G = int(units_used.sum())
        if self.se != "none" and G < 2:
            raise InferenceError("Cluster-robust SE needs at least 2 units.")
        labels = np.broadcast_to((np.cumsum(units_used) - 1)[:, None], use.shape)[use]
        fit = _within_fit(
            panel,
            use,
            labels,
            G,
            self.se != "none",
            "Treatment does not vary once unit and period effects are removed; the design "
            "has no within-unit or between-unit contrast left after the blackout.",
        )
        return EstimateResult(
            method=self.name,
            effect=fit.tau,
            se=fit.se,
            n_units=G,
            n_periods=int(use.any(axis=0).sum()),
            se_method="cluster_unit" if self.se != "none" else "none",
            n_cells=int((panel.W & use).sum()),
            df=fit.df,
            details=fit.details
            | {
                "n_blackout_cells": int(panel.blackout.sum()),
                "n_usable_cells": int(use.sum()),
            },
        )


@dataclass(frozen=True)
class _WithinFit:
    tau: float
    se: float
    df: float | None
    details: dict[str, object]


def _within_fit(
    panel: Panel,
    use: np.ndarray,
    labels: np.ndarray,
    G: int,
    with_se: bool,
    no_contrast: str,
    *,
    nested: bool = True,
    df: float | None = None,
    cluster_params: int | None = None,
) -> _WithinFit:
    """The two-way fixed-effects coefficient on W over the cells in ``use``, its clustered
    SE (``labels``: each used cell's cluster, row-major; t on G - 1), and the arm means with
    their covariance from the clusters' influence on ``tau`` and on the control mean ``m0``
    (``mean_treated = m0 + tau``), for the relative form (analysis.ratio).

    CR1's factor: G/(G-1) when the product effects are nested in the clusters (``nested``:
    products, or classes of products); otherwise also the regression's (n-1)/(n-k), with k
    the product and period effects and tau, which clusters that cut across products do not
    absorb (Cameron & Miller 2015, "A practitioner's guide to cluster-robust inference",
    section VI); or, given ``cluster_params`` (the effects fitted at the clusters' own level),
    G / (G - cluster_params). ``df``: the t reference's degrees of freedom when not G - 1."""
    c_cells = ~panel.W & use
    Y = np.where(use, panel.Y, 0.0)
    wt = two_way_demean(panel.W.astype(float), use)
    yt = two_way_demean(Y, use)
    sww = float((wt**2).sum())
    if sww < 1e-10 * use.sum():
        raise PanelError(no_contrast)
    tau = float((wt * yt).sum() / sww)
    m0 = float(Y[c_cells].mean())
    n0 = int(c_cells.sum())
    details: dict[str, object] = {
        "mean_treated": m0 + tau,
        "mean_control": m0,
        "n_treated_cells": int((panel.W & use).sum()),
        "n_clusters": G,
    }
    if not with_se:
        return _WithinFit(tau, float("nan"), None, details)
    e = (yt - tau * wt)[use]
    psi = np.bincount(labels, weights=wt[use] * e, minlength=G) / sww
    phi = np.bincount(labels, weights=np.where(c_cells[use], Y[use] - m0, 0.0), minlength=G) / n0
    f = G / (G - 1)
    if cluster_params is not None:
        if cluster_params >= G:
            raise InferenceError(
                f"A clustered SE needs more clusters than the effects fitted at their level; "
                f"there are {G} clusters and {cluster_params} effects."
            )
        f = G / (G - cluster_params)
    elif not nested:
        n, k = int(use.sum()), int(use.any(axis=1).sum() + use.any(axis=0).sum())
        if n <= k:
            raise InferenceError(
                f"Clusters across products need more cells than product and period effects; "
                f"there are {n} cells and {k} effects."
            )
        f *= (n - 1) / (n - k)
    v_tau, v_0, c_t0 = f * psi @ psi, f * phi @ phi, f * psi @ phi
    df = float(G - 1) if df is None else df
    # (var m1, var m0, cov(m1, m0)) with m1 = m0 + tau, as analysis.ratio reads them
    details["mean_covariance"] = (float(v_tau + v_0 + 2.0 * c_t0), float(v_0), float(c_t0 + v_0))
    details["df_ratio"] = df
    return _WithinFit(tau, float(np.sqrt(v_tau)), df, details)


@dataclass(frozen=True)
class _ArmCells:
    """What the difference in means' partial makes of a part's cells before its outcome: the
    usable, randomised cells, each arm's, and per cluster each arm's count (by cell: the
    used cells' treatment instead); the units (when not the clusters) and periods used, and
    the cells."""

    use: np.ndarray
    t: np.ndarray
    c: np.ndarray
    n1: np.ndarray | None
    n0: np.ndarray | None
    w: np.ndarray | None
    keys: np.ndarray | None
    units: np.ndarray | None
    periods: np.ndarray
    count: int


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
    correction : "cr2" (default): the bias-reduced cluster-robust variance of Bell & McCaffrey
        with the Satterthwaite degrees of freedom of Imbens & Kolesar (2016), which stay honest
        when one arm has few clusters; "cr1": Liang-Zeger with G/(G-1) and G - 1 degrees of
        freedom (see :func:`cr2_variance`).
    se : ``None`` or "cluster", "none".

    Intervals use Student t with the correction's degrees of freedom.
    """

    name = "dm"

    def __init__(
        self,
        *,
        cluster: str = "unit",
        correction: str = "cr2",
        se: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.cluster = cluster
        self.correction = correction
        self.se = se
        self.seed = seed

    def _check(self, panel: Panel, clusters: tuple[str, ...]) -> None:
        """The settings this estimator supports, and a class for every unit when it clusters
        by class."""
        if self.correction not in ("cr1", "cr2"):
            raise ValueError(f"correction must be 'cr1' or 'cr2', not {self.correction!r}.")
        if self.cluster not in clusters:
            names = " or ".join((", ".join(map(repr, clusters[:-1])), repr(clusters[-1])))
            raise ValueError(f"cluster must be {names}, not {self.cluster!r}.")
        if self.se not in (None, "cluster", "none"):
            raise InferenceError(f"{self.name} supports se='cluster' or 'none', not {self.se!r}.")
        if self.cluster in ("class", "class_period") and panel.groups is None:
            raise PanelError(
                "Clustering by class needs each unit's class: give the panel a class column."
            )

    def _cluster_labels(self, panel: Panel, use: np.ndarray) -> np.ndarray:
        """Cluster index 0..G-1 of every used cell (row-major order, as ``Y[use]``)."""
        N, T = panel.shape
        if self.cluster == "cell":
            return np.arange(int(use.sum()))
        if self.cluster == "unit":
            per_unit = np.arange(N)
        else:
            assert panel.groups is not None
            _, codes = np.unique(panel.groups, return_inverse=True)
            per_unit = codes.ravel()
        if self.cluster == "class_period":
            # a class in a period: numbered by class, then period, over those with a used cell
            cell = (per_unit[:, None] * T + np.arange(T)[None, :])[use]
            present_cell = np.zeros(int(per_unit.max() + 1) * T, dtype=bool)
            present_cell[cell] = True
            return (np.cumsum(present_cell) - 1)[cell]
        # clusters with a used cell, numbered in order: a rank per unit, then per cell (O(cells);
        # np.unique over the cells sorted them, ~0.3 s at 9M cells)
        present = np.zeros(int(per_unit.max()) + 1, dtype=bool)
        present[per_unit[use.any(axis=1)]] = True
        label_of_unit = np.cumsum(present) - 1
        return np.broadcast_to(label_of_unit[per_unit][:, None], (N, T))[use]

    def _compared(self, panel: Panel, what: str) -> np.ndarray:
        """The usable, randomised cells the arms compare; a PanelError naming ``what`` when
        an arm has none."""
        use = panel.randomised
        if not (panel.W & use).any() or not (~panel.W & use).any():
            raise PanelError(
                f"{what} needs both treated and control cells among the usable, randomised cells."
            )
        return use

    def _fit(self, panel: Panel) -> EstimateResult:
        return self.finish(self.partial(panel))

    # ------------------------------------------------------------------ in parts
    def chunkable(self) -> str | None:
        """None when the estimate can be fitted from parts of the panel (chunks of products,
        merged by :meth:`~analysis.estimators.sums.MeansPartial.merge_units`); else why not."""
        if self.cluster not in ("unit", "class"):
            return f"its clusters ({self.cluster}) are not products or classes of products"
        return None

    def period_additive(self) -> bool:
        """Parts split by periods add up: every cell counts on its own."""
        return True

    def partial(self, panel: Panel, periods: np.ndarray | None = None) -> MeansPartial:
        """The sufficient statistics of a part of the panel (some of its products, or some
        of its periods): per cluster, each arm's usable, randomised cells and their outcome
        sum (``analysis.estimators.sums``). ``periods`` is unused (no period is dropped)."""
        return self._partial_with(self._cells(panel), panel)

    def partials(self, panels: Mapping[str, Panel]) -> dict[str, MeansPartial | Exception]:
        """:meth:`partial` of each of one part's metrics (``panels``), the cells each arm
        compares and their counts made once (``analysis.estimators.sums.partials_sharing``)."""
        return partials_sharing(self._cells, self._partial_with, panels)

    def _cells(self, panel: Panel) -> _ArmCells:
        self._check(panel, ("unit", "class", "cell"))
        use = panel.randomised
        t, c = panel.W & use, ~panel.W & use
        used = use.any(axis=1)
        # with products as the clusters, the units used are the clusters present
        units = None if self.cluster == "unit" else np.sort(np.asarray(panel.units)[used])
        periods = np.sort(np.asarray(panel.times)[use.any(axis=0)])
        count = int(use.sum())
        if self.cluster == "cell":  # each used cell its own cluster, row-major as Y[use]
            return _ArmCells(use, t, c, None, None, panel.W[use], None, units, periods, count)
        if self.cluster == "unit":
            keys = np.asarray(panel.units)
        else:
            assert panel.groups is not None
            keys = np.asarray(panel.groups)
        n1, n0 = t.sum(axis=1), c.sum(axis=1)
        return _ArmCells(use, t, c, n1, n0, None, keys, units, periods, count)

    def _partial_with(self, cells: _ArmCells, panel: Panel) -> MeansPartial:
        use = cells.use
        if cells.w is not None:  # by cell
            w = cells.w
            y = panel.Y[use]
            sums = ArmSums(
                np.arange(len(y)), w.astype(float), (~w).astype(float), np.where(w, y, 0.0),
                np.where(w, 0.0, y),
            )  # fmt: skip
        else:
            assert cells.n1 is not None and cells.n0 is not None and cells.keys is not None
            # the outcome is read where used only (it may be NaN in a blackout cell)
            s1 = np.sum(panel.Y, axis=1, where=cells.t)
            s0 = np.sum(panel.Y, axis=1, where=cells.c)
            sums = ArmSums.of(cells.keys, cells.n1, cells.n0, s1, s0)
        return MeansPartial(
            sums,
            units=cells.units,
            periods=cells.periods,
            cells=cells.count,
            settings=(self.name, self.cluster, self.correction, self.se),
            period_additive=True,
        )

    def finish(self, part: MeansPartial) -> EstimateResult:
        """The estimate from the merged partials of the whole panel: ``m1 - m0`` with the
        clustered covariance of the two means (CR2 with its Satterthwaite df, or CR1)."""
        sums = part.sums
        n1, n0 = sums.totals
        if n1 == 0 or n0 == 0:
            raise PanelError(
                "Difference in means needs both treated and control cells among the usable, "
                "randomised cells."
            )
        m1, m0 = sums.means()
        G = sums.G
        se = float("nan")
        df: float | None = None
        details: dict[str, object] = {}
        if self.se != "none":
            if G < 2:
                raise InferenceError(
                    f"A clustered SE needs at least 2 clusters; the {self.cluster} level has {G}."
                )
            # the arm means' covariance: the difference's variance, and the ratio's
            # (analysis.ratio: Fieller, with the df of the pivot m1 - R m0 at R = m1 / m0)
            ratio = m1 / m0 if m0 != 0.0 else 1.0
            if self.correction == "cr1":
                cov, df = sums.cr1()
                df_ratio = df
            else:
                cov, (df, df_ratio) = sums.cr2(self.cluster, ((1.0, -1.0), (1.0, -ratio)))
            se = float(np.sqrt(max(cov[0] + cov[1] - 2.0 * cov[2], 0.0)))
            details["mean_covariance"] = cov
            details["df_ratio"] = df_ratio
        return EstimateResult(
            method=self.name,
            effect=m1 - m0,
            se=se,
            n_units=G if part.units is None else len(part.units),
            n_periods=len(part.periods),
            se_method=f"cluster_{self.cluster}" if self.se != "none" else "none",
            n_cells=part.cells,
            df=df,
            details=details
            | {
                "mean_treated": m1,
                "mean_control": m0,
                "n_treated_cells": int(n1),
                "n_clusters": G,
                "correction": self.correction,
            },
        )

    def _result(
        self,
        panel: Panel,
        use: np.ndarray,
        m1: float,
        m0: float,
        resid: np.ndarray,
        extra: dict[str, object],
        design: np.ndarray,
        labels: np.ndarray,
    ) -> EstimateResult:
        """The estimate ``m1 - m0`` of two arm means of a regression over the cells in
        ``use`` (``cuped``), with the clustered covariance of the means from each used cell's
        residual (row-major, as ``Y[use]``) and the regression's ``design`` (one row per used
        cell; its first two coefficients are the arm means;
        :func:`analysis.inference.cluster_covariance`); ``labels``: each used cell's cluster.
        The difference in means' own is :meth:`finish`, from its sufficient statistics."""
        t_cells = panel.W & use
        n1, n0 = int(t_cells.sum()), int((~panel.W & use).sum())
        tau = m1 - m0
        G = int(labels.max()) + 1 if labels.size else 0
        se = float("nan")
        df: float | None = None
        details: dict[str, object] = {}
        if self.se != "none":
            if G < 2:
                raise InferenceError(
                    f"A clustered SE needs at least 2 clusters; the {self.cluster} level has {G}."
                )
            # the arm means' covariance: the difference's variance, and the ratio's
            # (analysis.ratio: Fieller, with the df of the pivot m1 - R m0 at R = m1 / m0)
            ratio = m1 / m0 if m0 != 0.0 else 1.0
            cov, (df, df_ratio) = cluster_covariance(
                design,
                resid,
                labels,
                G,
                self.correction,
                self.cluster,
                ((1.0, -1.0), (1.0, -ratio)),
            )
            se = float(np.sqrt(max(cov[0] + cov[1] - 2.0 * cov[2], 0.0)))
            details["mean_covariance"] = cov
            details["df_ratio"] = df_ratio
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=int(use.any(axis=1).sum()),
            n_periods=int(use.any(axis=0).sum()),
            se_method=f"cluster_{self.cluster}" if self.se != "none" else "none",
            n_cells=n1 + n0,
            df=df,
            details=details
            | {
                "mean_treated": m1,
                "mean_control": m0,
                "n_treated_cells": n1,
                "n_clusters": G,
                "correction": self.correction,
            }
            | extra,
        )


class WithinProductEstimator(DifferenceInMeansEstimator):
    """The within-product difference ("fe"): each product compared with itself, net of the
    common shocks of each period - the coefficient on W in the two-way fixed-effects
    regression ``Y_it = a_i + b_t + tau W_it + e_it`` over the randomised, usable cells (those
    the difference in means compares). For designs that randomise within products (random
    days, switchbacks) it removes the products' own levels from the comparison, which is most
    of the noise of a difference in means across products whose sales (and prices) differ
    tenfold: the variance reduction of unit fixed effects (CUPED's aim, with the product's own
    other periods as its covariate; no covariate the treatment could touch enters).

    With p = 1/2 in every cell the regression weights each product by the within-product
    variance of its arm, ``n_iT n_iC / n_i``, equal in expectation, so the estimand is the
    difference in means' (validated against the simulator's truth: docs/relative-effects.md).
    SE: cluster-robust (Liang-Zeger, CR1) with Student t on G - 1 df, by ``cluster``:

    - "unit" (default) or "class": G/(G-1); products are nested in the clusters.
    - "class_period": each class in each period its own cluster, for a cluster switchback
      that draws every class's arm afresh each period, independently of the other periods.
      Under that design the cross-period terms of the estimate's variance vanish, so
      class x period clusters are what the assignment makes independent. Class clusters also
      count each class's own effect, fixed by the design, as sampling noise once per class:
      on the simulated cluster switchback their SE was 1.07-1.12 times the estimate's spread
      (coverage 0.970-0.973), class x period clusters' 0.97-0.98
      (``python -m lab.studies cluster-fe-variance``). These clusters do not absorb the
      class and period effects, which tie each class's periods together: with C
      class-periods of K classes over T periods CR1's factor is C / (C - K - T) and the t
      reference takes C - K - T degrees of freedom, those of the class-periods' regression
      (:meth:`_class_period_dof`). Assumes no carryover past the washout: an effect that
      outlasts it ties a class's periods together again, and class clusters would be the
      safe choice.

    For the relative form the arm means' covariance comes from the clusters' influence on
    ``tau`` and on the control mean ``m0`` (``mean_treated = m0 + tau``).
    """

    name = "fe"

    def __init__(
        self, *, cluster: str = "unit", se: str | None = None, seed: int | None = None
    ) -> None:
        super().__init__(cluster=cluster, correction="cr1", se=se, seed=seed)

    def _fit(self, panel: Panel) -> EstimateResult:
        self._check(panel, ("unit", "class", "class_period"))
        use = self._compared(panel, "The within-product difference")
        t_cells, c_cells = panel.W & use, ~panel.W & use
        n1, n0 = int(t_cells.sum()), int(c_cells.sum())
        labels = self._cluster_labels(panel, use)
        G = int(labels.max()) + 1 if labels.size else 0
        if self.se != "none" and G < 2:
            raise InferenceError(
                f"A clustered SE needs at least 2 clusters; the {self.cluster} level has {G}."
            )
        fit = _within_fit(
            panel,
            use,
            labels,
            G,
            self.se != "none",
            "No product is in both arms among the usable cells: the design does not "
            "randomise within products, so there is no within-product difference.",
            nested=self.cluster != "class_period",
            **(
                self._class_period_dof(panel, use, G)
                if self.cluster == "class_period" and self.se != "none"
                else {}
            ),
        )
        return EstimateResult(
            method=self.name,
            effect=fit.tau,
            se=fit.se,
            n_units=int(use.any(axis=1).sum()),
            n_periods=int(use.any(axis=0).sum()),
            se_method=f"cluster_{self.cluster}" if self.se != "none" else "none",
            n_cells=n1 + n0,
            df=fit.df,
            details=fit.details,
        )

    @staticmethod
    def _class_period_dof(panel: Panel, use: np.ndarray, G: int) -> dict[str, Any]:
        """CR1's factor and the t reference for C = G class x period clusters: the effects
        fitted at the clusters' level are p = K + T (the K classes' and T periods' effects
        and ``tau``, with products nested in classes), so the factor is C / (C - p) and the
        df C - p, as for a regression of the class-periods' cells on them with each
        class-period its own observation (HC1 there).

        The treatment varies by class-period, so the leverage of the fit sits at that level:
        the regression's own (n - 1) / (n - k) over cells, used before, left the SE short
        where the clusters are few next to the effects (a ladder's arm at its first looks:
        about a third of the classes each period). Fewer than two classes seen in both arms
        among the compared cells: no SE (:class:`InferenceError`); the estimate would rest
        on one class's switches, like a single treated cluster. Figures:
        ``python -m lab.studies cluster-fe-arms`` (docs/validation.md)."""
        assert panel.groups is not None
        used = use.any(axis=1)
        codes = np.unique(panel.groups, return_inverse=True)[1].reshape(-1)
        n_codes = int(codes.max()) + 1 if codes.size else 0
        in_t = np.bincount(codes[used & (panel.W & use).any(axis=1)], minlength=n_codes) > 0
        in_c = np.bincount(codes[used & (~panel.W & use).any(axis=1)], minlength=n_codes) > 0
        switching = int((in_t & in_c).sum())
        if switching == 0:  # no contrast at all: _within_fit says so
            return {}
        if switching < 2:
            raise InferenceError(
                "A class x period clustered SE needs at least 2 classes seen in both arms; "
                "1 is among the compared cells."
            )
        p = int(np.bincount(codes[used], minlength=n_codes).astype(bool).sum())
        p += int(use.any(axis=0).sum())
        return {"cluster_params": p, "df": float(G - p) if p < G else None}


def cr1_variance(
    labels: np.ndarray, treated: np.ndarray, resid: np.ndarray, G: int
) -> tuple[float, float]:
    """Liang-Zeger variance of the difference in means with the G/(G-1) factor, and G - 1
    degrees of freedom. ``labels``: each cell's cluster; ``resid``: each cell's deviation from
    its arm's mean."""
    cov, df = cr1_mean_covariance(labels, treated, resid, G)
    return cov[0] + cov[1] - 2.0 * cov[2], df


def cr1_mean_covariance(
    labels: np.ndarray, treated: np.ndarray, resid: np.ndarray, G: int
) -> tuple[tuple[float, float, float], float]:
    """Liang-Zeger covariance of the two arm means (var treated, var control, covariance),
    with the G/(G-1) factor, and G - 1 degrees of freedom."""
    n1, n0 = int(treated.sum()), int((~treated).sum())
    p1 = np.bincount(labels, weights=np.where(treated, resid / n1, 0.0), minlength=G)
    p0 = np.bincount(labels, weights=np.where(treated, 0.0, resid / n0), minlength=G)
    return cr1_from_clusters(p1, p0)


def cr2_variance(
    labels: np.ndarray, treated: np.ndarray, resid: np.ndarray, G: int, level: str = "cluster"
) -> tuple[float, float]:
    """Bias-reduced cluster-robust variance of the difference in means (CR2, Bell & McCaffrey
    2002) and its Satterthwaite degrees of freedom (Imbens & Kolesar 2016, "Robust standard
    errors in small samples: some practical advice", REStat 98(4)).

    The difference in means is OLS of Y on (1, W). CR2 replaces each cluster's residuals e_g by
    (I - H_gg)^(-1/2) e_g. With these two regressors H_gg is (1/n1) t t' + (1/n0) c c' (t, c the
    cluster's treated and control cells), so the adjustment scales the cluster's treated
    residuals by (1 - n1g/n1)^(-1/2) and its control residuals by (1 - n0g/n0)^(-1/2): where
    one arm has few clusters (a triggered design's treated products, a class design's treated
    classes) CR1's G/(G-1) understates that arm's share, and CR2 does not. Exactly unbiased
    under homoskedastic errors. (:func:`cr2_mean_covariance`, contrast (1, -1).)
    """
    cov, (df,) = cr2_mean_covariance(labels, treated, resid, G, level)
    return cov[0] + cov[1] - 2.0 * cov[2], df


def cr2_mean_covariance(
    labels: np.ndarray,
    treated: np.ndarray,
    resid: np.ndarray,
    G: int,
    level: str = "cluster",
    contrasts: tuple[tuple[float, float], ...] = ((1.0, -1.0),),
) -> tuple[tuple[float, float, float], list[float]]:
    """The CR2 covariance of the two arm means (var treated, var control, covariance) and,
    for each contrast (w1, w0), the Satterthwaite degrees of freedom of
    ``w1 * treated + w0 * control`` (the difference by default; (1, -R) for the Fieller
    pivot of a ratio R).

    The degrees of freedom are those of the contrast's variance estimate as a quadratic form
    in the errors, under the same working model: df = tr(B)^2 / tr(B^2), B = Q'(I - H)Q with
    q_g the cluster's adjusted contrast vector; B is diagonal minus two rank-one terms, so
    both traces are sums over clusters.
    """
    n1g = np.bincount(labels, weights=treated.astype(float), minlength=G)
    n0g = np.bincount(labels, weights=(~treated).astype(float), minlength=G)
    e1 = np.bincount(labels, weights=np.where(treated, resid, 0.0), minlength=G)
    e0 = np.bincount(labels, weights=np.where(treated, 0.0, resid), minlength=G)
    return cr2_from_clusters(n1g, n0g, e1, e0, level, contrasts)
