"""Difference-in-differences / two-way fixed effects (``did``).

Estimates tau in ``Y_it = a_i + b_t + tau W_it + e_it`` by least squares on the usable
(non-blackout) cells. Assumption: parallel trends - untreated outcomes differ across units only
by a constant - and a constant (or, for a block design, averaged) treatment effect.

- **Block design, no blackout**: the regression coefficient equals the simple double difference
  (treated minus control, post minus pre, all weights uniform), which is the "DID" column of
  Arkhangelsky, Athey, Hirshberg, Imbens & Wager (AER 2021, Table 1). Default variance: placebo
  (their Algorithm 4) when there are more controls than treated units, else jackknife; the
  variance methods of :mod:`analysis.inference` all apply.
- **General assignment** (switching units, blackout cells, staggered starts): the two-way
  fixed-effects regression on the usable cells, solved by alternating projections (within
  transformation for an unbalanced two-way layout), with a standard error clustered by unit
  (Liang & Zeger 1986; Bertrand, Duflo & Mullainathan, QJE 2004), small-sample factor
  G/(G-1). With staggered adoption and heterogeneous effects this coefficient is a
  non-convex average of effects (Goodman-Bacon 2021); use the staggered estimator there.
"""

from __future__ import annotations

import numpy as np

from analysis import inference
from analysis.errors import ConvergenceError, InferenceError, PanelError
from analysis.estimators.base import PanelEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult

_DID_METHODS = (*inference.BLOCK_METHODS, "cluster")


def block_did(Y: np.ndarray, N0: int, T0: int) -> float:
    """Double difference of means on a control-first, pre-first block."""
    contrast = Y[:, T0:].mean(axis=1) - Y[:, :T0].mean(axis=1)
    return float(contrast[N0:].mean() - contrast[:N0].mean())


def _refit_block(
    Ys: np.ndarray, n0: int, t0: int, omega0: np.ndarray | None, lam0: np.ndarray | None
) -> np.ndarray:
    contrast = Ys[:, :, t0:].mean(axis=2) - Ys[:, :, :t0].mean(axis=2)
    return contrast[:, n0:].mean(axis=1) - contrast[:, :n0].mean(axis=1)


def two_way_within(
    Z: np.ndarray, usable: np.ndarray, *, tol: float = 1e-11, max_iter: int = 10_000
) -> np.ndarray:
    """Residuals of each K x N x T layer of ``Z`` on unit and period dummies over ``usable``.

    Alternating demeaning by unit and by period (the method of alternating projections); exact
    after one sweep on a balanced panel. Cells outside ``usable`` are returned as 0.
    """
    M = usable.astype(float)
    n_i = M.sum(axis=1)
    n_t = M.sum(axis=0)
    R = np.where(usable, Z, 0.0)
    scale = max(1.0, float(np.abs(R).max()))
    for _ in range(max_iter):
        R -= (R.sum(axis=2) / n_i)[:, :, None] * M
        col = R.sum(axis=1) / n_t
        R -= col[:, None, :] * M
        if (
            float(np.abs(col).max()) <= tol * scale
            and float(np.abs(R.sum(axis=2) / n_i).max()) <= tol * scale
        ):
            return R
    raise ConvergenceError(
        f"Two-way fixed effects did not converge in {max_iter} sweeps; the usable cells may "
        "split into disconnected groups of units and periods."
    )


def twfe(Y: np.ndarray, W: np.ndarray, usable: np.ndarray) -> tuple[float, float, int]:
    """(tau, cluster-by-unit standard error, clusters) of the two-way FE regression."""
    R = two_way_within(np.stack([Y, W.astype(float)]), usable)
    y, w = R[0], R[1]
    sww = float(np.sum(w * w))
    if sww <= 1e-12 * max(1.0, float(usable.sum())):
        raise PanelError(
            "Treatment does not vary once unit and period effects are removed (e.g. every usable "
            "cell treated, or treatment a pure unit or period pattern); DID cannot separate it."
        )
    tau = float(np.sum(w * y) / sww)
    resid = np.where(usable, y - tau * w, 0.0)
    scores = np.sum(w * resid, axis=1)
    G = int(np.count_nonzero(usable.any(axis=1)))
    var = G / (G - 1) * float(np.sum(scores**2)) / sww**2 if G > 1 else float("nan")
    return tau, float(np.sqrt(var)), G


class DIDEstimator(PanelEstimator):
    """Difference-in-differences / two-way fixed effects on the usable cells (see module doc)."""

    name = "did"

    def __init__(
        self, se: str | None = None, seed: int | None = None, replications: int = 200
    ) -> None:
        self.se = se
        self.seed = seed
        self.replications = replications

    def _fit(self, panel: Panel) -> EstimateResult:
        method = inference.canonical_method(self.se, _DID_METHODS)
        if panel.is_block and not panel.blackout.any() and method != "cluster":
            return self._fit_block(panel, method)
        if method not in (None, "cluster", "none"):
            raise InferenceError(
                f"The {method!r} variance needs a block design without blackout cells; this "
                "panel has switching, staggered or blacked-out cells. Use se='cluster'."
            )
        return self._fit_general(panel, method or "cluster")

    def _fit_block(self, panel: Panel, method: str | None) -> EstimateResult:
        p = panel.sorted_for_block()
        N0, T0 = p.block_structure()
        Y = p.Y
        N, T = Y.shape
        tau = block_did(Y, N0, T0)
        se, used, df = inference.block_standard_error(
            method,
            Y,
            N0,
            T0,
            refit=_refit_block,
            omega=np.full(N0, 1.0 / N0),
            lam=np.full(T0, 1.0 / T0),
            replications=self.replications,
            seed=self.seed,
        )
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=N,
            n_periods=T,
            se_method=used,
            df=df,
            n_cells=(N - N0) * (T - T0),
            details={"design": "block", "n_treated_units": N - N0, "n_pre_periods": T0},
        )

    def _fit_general(self, panel: Panel, method: str) -> EstimateResult:
        usable = panel.usable
        keep_u = usable.any(axis=1)
        keep_t = usable.any(axis=0)
        Y = np.where(usable, panel.Y, 0.0)[np.ix_(keep_u, keep_t)]
        W = (panel.W & usable)[np.ix_(keep_u, keep_t)]
        U = usable[np.ix_(keep_u, keep_t)]
        if not W[U].any() or W[U].all():
            raise PanelError("DID needs both treated and untreated usable cells.")
        tau, se, G = twfe(Y, W, U)
        treated_units = int(np.count_nonzero(W.any(axis=1)))
        if method == "cluster" and (treated_units < 2 or G < 3):
            raise InferenceError(
                f"A cluster-by-unit standard error needs at least two treated units and three "
                f"units in all; there are {treated_units} treated of {G}. With a block design "
                "use se='placebo'."
            )
        if method == "none":
            se = float("nan")
        return EstimateResult(
            method=self.name,
            effect=tau,
            se=se,
            n_units=int(keep_u.sum()),
            n_periods=int(keep_t.sum()),
            se_method=method,
            n_cells=int(np.count_nonzero(W & U)),
            details={
                "design": "general",
                "n_usable_cells": int(U.sum()),
                "n_treated_units": treated_units,
            },
        )


__all__ = ["DIDEstimator", "block_did", "two_way_within", "twfe"]
