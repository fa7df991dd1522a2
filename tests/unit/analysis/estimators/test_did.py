"""DID / two-way fixed effects: block formula, general assignment, cluster-by-unit SE."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import InferenceError, PanelError
from analysis.estimators.did import DIDEstimator, twfe
from analysis.panel import Panel
from tests.unit._panel_dgp import factor_panel


def _switching_panel(
    seed: int, n_units: int = 40, n_periods: int = 12, tau: float = 2.0, blackout_share: float = 0.1
) -> Panel:
    """Units x periods with i.i.d. coin-flip treatment, blackout cells and unit/period effects."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 3, n_units)
    b = rng.normal(0, 3, n_periods)
    W = rng.random((n_units, n_periods)) < 0.5
    B = rng.random((n_units, n_periods)) < blackout_share
    Y = a[:, None] + b[None, :] + tau * W + rng.normal(0, 1, (n_units, n_periods))
    Y[B] = np.nan
    return Panel(Y=Y, W=W, units=np.arange(n_units), times=np.arange(n_periods), blackout=B)


def _dummy_regression(panel: Panel) -> tuple[float, float]:
    """tau and CR1-by-unit SE from an explicit dummy-variable regression (independent check)."""
    U = panel.usable
    i, t = np.nonzero(U)
    N, T = panel.shape
    X = np.column_stack(
        [
            panel.W[i, t].astype(float),
            np.eye(N)[i],
            np.eye(T)[t][:, 1:],
        ]
    )
    y = panel.Y[i, t]
    XtX_inv = np.linalg.pinv(X.T @ X)
    beta = XtX_inv @ X.T @ y
    e = y - X @ beta
    meat = np.zeros((X.shape[1], X.shape[1]))
    for g in np.unique(i):
        s = X[i == g].T @ e[i == g]
        meat += np.outer(s, s)
    G = len(np.unique(i))
    V = G / (G - 1) * XtX_inv @ meat @ XtX_inv
    return float(beta[0]), float(np.sqrt(V[0, 0]))


def test_twfe_equals_a_dummy_variable_regression_with_blackout() -> None:
    p = _switching_panel(1)
    r = DIDEstimator().fit(p).result
    tau, se = _dummy_regression(p)
    assert r.effect == pytest.approx(tau, abs=1e-8)
    assert r.se == pytest.approx(se, rel=1e-6)
    assert r.se_method == "cluster"
    assert r.n_cells == int((p.W & p.usable).sum())


def test_block_double_difference_equals_the_regression() -> None:
    p = factor_panel(2, n_treated=4)
    block = DIDEstimator(se="none").fit(p).result.effect
    reg = DIDEstimator(se="cluster").fit(p).result.effect
    assert block == pytest.approx(reg, abs=1e-9)
    Yt = p.Y[p.treated_units]
    Yc = p.Y[~p.treated_units]
    manual = (Yt[:, 15:].mean() - Yt[:, :15].mean()) - (Yc[:, 15:].mean() - Yc[:, :15].mean())
    assert block == pytest.approx(manual, abs=1e-9)


def test_cluster_interval_covers_at_nominal_rate() -> None:
    hits = 0
    n = 300
    for s in range(n):
        r = DIDEstimator().fit(_switching_panel(1000 + s)).result
        lo, hi = r.conf_int()
        hits += lo <= 2.0 <= hi
    # 300 draws: binomial sd 1.3 points around 95
    assert 0.91 <= hits / n <= 0.99


def test_period_effect_and_scaling_invariance_general_design() -> None:
    p = _switching_panel(3)
    a = DIDEstimator().fit(p).result
    b = DIDEstimator().fit(p.with_outcome(p.Y + np.arange(p.n_periods) ** 2)).result
    c = DIDEstimator().fit(p.with_outcome(-4.0 * p.Y)).result
    assert b.effect == pytest.approx(a.effect, abs=1e-8)
    assert b.se == pytest.approx(a.se, rel=1e-8)
    assert c.effect == pytest.approx(-4.0 * a.effect, rel=1e-8)
    assert c.se == pytest.approx(4.0 * a.se, rel=1e-8)


def test_any_period_effect_leaves_block_did_unchanged() -> None:
    p = factor_panel(4, n_treated=1)
    shift = np.random.default_rng(0).normal(0, 10, p.n_periods)
    a = DIDEstimator(se="placebo").fit(p).result
    b = DIDEstimator(se="placebo").fit(p.with_outcome(p.Y + shift)).result
    assert b.effect == pytest.approx(a.effect, abs=1e-9)
    assert b.se == pytest.approx(a.se, abs=1e-9)


def test_cluster_se_refused_with_one_treated_unit() -> None:
    with pytest.raises(InferenceError, match="at least two treated units"):
        DIDEstimator(se="cluster").fit(factor_panel(5, n_treated=1))


def test_block_only_variances_refused_for_general_designs() -> None:
    with pytest.raises(InferenceError, match="block design"):
        DIDEstimator(se="placebo").fit(_switching_panel(6))


def test_treatment_without_variation_is_refused() -> None:
    p = factor_panel(7)
    W = np.zeros(p.shape, dtype=bool)
    W[:, 10:] = True  # a pure period pattern: absorbed by the period effects
    with pytest.raises(PanelError):
        DIDEstimator().fit(p.with_treatment(W))


def test_twfe_recovers_effect_on_unbalanced_usable_cells() -> None:
    est = [
        DIDEstimator().fit(_switching_panel(50 + s, blackout_share=0.3)).result.effect
        for s in range(50)
    ]
    assert abs(np.mean(est) - 2.0) < 0.05


def test_twfe_function_reports_clusters() -> None:
    p = _switching_panel(8)
    _, _, G = twfe(np.where(p.usable, p.Y, 0.0), p.W & p.usable, p.usable)
    assert p.n_units == G
