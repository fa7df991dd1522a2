"""Synthetic control family: solver, weights, invariances and recovery of a known effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from analysis.errors import PanelError
from analysis.estimators.synth import (
    SyntheticControl,
    SyntheticControlIntercept,
    SyntheticDID,
    fit_block,
    fit_block_batch,
    simplex_least_squares,
    sparsify,
)
from analysis.panel import Panel
from tests.unit._panel_dgp import factor_panel

FAMILY = [SyntheticDID, SyntheticControl, SyntheticControlIntercept]


def _objective(A: np.ndarray, b: np.ndarray, zeta: float, x: np.ndarray) -> float:
    r = A @ x - b
    return zeta**2 * float(x @ x) + float(r @ r) / A.shape[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frank_wolfe_approaches_the_simplex_optimum(seed: int) -> None:
    """Plain Frank-Wolfe converges sublinearly (gap ~ 1/steps); restarting from the sparsified
    weights, as the estimators do, reaches the optimum of an independent SQP solver."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(25, 12))
    b = A @ rng.dirichlet(np.ones(12)) + rng.normal(0, 0.3, 25)
    zeta = 0.2
    ref = minimize(
        lambda v: _objective(A, b, zeta, v),
        np.full(12, 1 / 12),
        method="SLSQP",
        bounds=[(0, 1)] * 12,
        constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
        options={"ftol": 1e-15, "maxiter": 1000},
    ).fun

    def gap(x: np.ndarray) -> float:
        return _objective(A, b, zeta, x) / ref - 1.0

    x1k = simplex_least_squares(A, b, zeta, intercept=False, min_decrease=1e-12, max_iter=1000)
    x10k = simplex_least_squares(A, b, zeta, intercept=False, min_decrease=1e-12, max_iter=10_000)
    assert x10k.min() >= 0 and abs(x10k.sum() - 1) < 1e-12
    assert -1e-9 <= gap(x10k) < gap(x1k) / 5
    x0 = sparsify(
        simplex_least_squares(A, b, zeta, intercept=False, min_decrease=1e-12, max_iter=100)
    )
    x = simplex_least_squares(
        A, b, zeta, intercept=False, x0=x0, min_decrease=1e-12, max_iter=10_000
    )
    assert -1e-9 <= gap(x) < 1e-4


def test_intercept_makes_the_fit_ignore_levels() -> None:
    rng = np.random.default_rng(3)
    A = rng.normal(size=(20, 8))
    b = A[:, 2] + 50.0  # column 2 shifted by a constant
    x = simplex_least_squares(A, b, 1e-6, intercept=True, min_decrease=1e-10, max_iter=10_000)
    assert x[2] > 0.99


def test_batched_fit_equals_one_at_a_time() -> None:
    panels = [factor_panel(s, n_treated=2).sorted_for_block() for s in range(3)]
    N0, T0 = panels[0].block_structure()
    spec = SyntheticDID.spec
    single = [
        fit_block(p.Y, N0, T0, spec, zeta_omega=0.7, zeta_lambda=1e-6, min_decrease=1e-5)
        for p in panels
    ]
    taus, omegas, _ = fit_block_batch(
        np.stack([p.Y for p in panels]),
        N0,
        T0,
        spec,
        zeta_omega=0.7,
        zeta_lambda=1e-6,
        min_decrease=1e-5,
    )
    np.testing.assert_allclose(taus, [f.tau for f in single], atol=1e-9)
    np.testing.assert_allclose(omegas, np.stack([f.omega for f in single]), atol=1e-9)


@pytest.mark.parametrize("cls", FAMILY)
def test_weights_are_on_the_simplex_and_reported(cls: type) -> None:
    est = cls(se="none").fit(factor_panel(4))
    w = np.array(list(est.omega_.values()))
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-9
    assert abs(sum(est.result.details["unit_weights"].values()) - 1) < 1e-9
    assert est.result.n_units == 30 and est.result.n_cells == 3 * 5


def test_sc_has_no_time_weights_and_difp_uniform_ones() -> None:
    p = factor_panel(5)
    sc = SyntheticControl(se="none").fit(p)
    difp = SyntheticControlIntercept(se="none").fit(p)
    assert all(v == 0 for v in sc.lambda_.values())
    assert np.allclose(list(difp.lambda_.values()), 1 / 15)


@pytest.mark.parametrize("cls", FAMILY)
def test_period_trend_on_all_units_changes_nothing(cls: type) -> None:
    """As in synthdid's test suite: Y_it + b_t with b_t = 2t leaves estimate and SE unchanged."""
    p = factor_panel(6)
    shift = 2.0 * np.arange(p.n_periods)
    a = cls(se="jackknife").fit(p).result
    b = cls(se="jackknife").fit(p.with_outcome(p.Y + shift[None, :])).result
    assert b.effect == pytest.approx(a.effect, abs=1e-6)
    assert b.se == pytest.approx(a.se, abs=1e-6)


@pytest.mark.parametrize("cls", FAMILY)
def test_any_period_effect_changes_nothing_at_fixed_regularisation(cls: type) -> None:
    """An arbitrary period effect leaves the weight objectives unchanged (weights sum to one);
    only the data-driven noise level sigma (sd of first differences) moves, so at a fixed
    zeta the fit is identical. See docs/analysis-core.md for why sigma is kept as in R."""
    p = factor_panel(6).sorted_for_block()
    N0, T0 = p.block_structure()
    shift = np.random.default_rng(0).normal(0, 10, p.n_periods)
    kw = {"zeta_omega": 0.9, "zeta_lambda": 1e-6, "min_decrease": 1e-5}
    a = fit_block(p.Y, N0, T0, cls.spec, **kw)
    b = fit_block(p.Y + shift[None, :], N0, T0, cls.spec, **kw)
    assert b.tau == pytest.approx(a.tau, abs=1e-6)
    np.testing.assert_allclose(b.omega, a.omega, atol=1e-8)


@pytest.mark.parametrize("cls", [SyntheticDID, SyntheticControlIntercept])
def test_unit_level_shift_changes_nothing_with_an_intercept(cls: type) -> None:
    p = factor_panel(7)
    shift = np.random.default_rng(1).normal(0, 10, p.n_units)
    a = cls(se="none").fit(p).result
    b = cls(se="none").fit(p.with_outcome(p.Y + shift[:, None])).result
    assert b.effect == pytest.approx(a.effect, abs=1e-6)


@pytest.mark.parametrize("cls", FAMILY)
def test_scaling_y_scales_effect_and_se(cls: type) -> None:
    p = factor_panel(8)
    a = cls(se="jackknife").fit(p).result
    b = cls(se="jackknife").fit(p.with_outcome(3.5 * p.Y)).result
    assert b.effect == pytest.approx(3.5 * a.effect, rel=1e-6)
    assert b.se == pytest.approx(3.5 * a.se, rel=1e-6)


@pytest.mark.parametrize("cls", FAMILY)
def test_adding_c_to_treated_post_cells_adds_c(cls: type) -> None:
    p = factor_panel(9)
    a = cls(se="none").fit(p).result
    b = cls(se="none").fit(p.with_outcome(p.Y + 2.0 * p.W)).result
    assert b.effect == pytest.approx(a.effect + 2.0, abs=1e-6)


def test_sdid_recovers_a_confounded_effect_that_did_misses() -> None:
    """Treated units load most on the first factor: DID is biased, SDID is not (on average)."""
    from analysis.estimators.did import DIDEstimator

    sdid, did = [], []
    for s in range(30):
        p = factor_panel(100 + s, n_units=40, n_treated=4, confounded=True, noise=0.5)
        sdid.append(SyntheticDID(se="none").fit(p).result.effect - 1.0)
        did.append(DIDEstimator(se="none").fit(p).result.effect - 1.0)
    assert abs(np.mean(sdid)) < 0.15
    assert np.sqrt(np.mean(np.square(sdid))) < np.sqrt(np.mean(np.square(did)))


@pytest.mark.parametrize("cls", FAMILY)
def test_needs_a_block_design(cls: type) -> None:
    p = factor_panel(10)
    W = p.W.copy()
    W[0, 5] = True  # a control unit switches on once: not a block design
    with pytest.raises(PanelError, match="block design"):
        cls().fit(p.with_treatment(W))


@pytest.mark.parametrize("cls", FAMILY)
def test_refuses_blackout_cells(cls: type) -> None:
    p = factor_panel(11)
    B = np.zeros(p.shape, dtype=bool)
    B[0, 0] = True
    with pytest.raises(PanelError, match="blackout"):
        cls().fit(Panel(Y=p.Y, W=p.W, units=p.units, times=p.times, blackout=B))


def test_control_order_does_not_matter() -> None:
    p = factor_panel(12)
    order = np.random.default_rng(2).permutation(p.n_units)
    a = SyntheticDID(se="none").fit(p).result.effect
    b = SyntheticDID(se="none").fit(p.take_units(order)).result.effect
    assert b == pytest.approx(a, abs=1e-4)


def test_weights_reused_only_for_the_same_controls_and_treated_pre_period() -> None:
    """A panel that differs only in treated post-period cells gets the weights a fresh solve
    gives (the weights never read those cells); any other change solves again."""
    from analysis.estimators import synth

    rng = np.random.default_rng(4)
    N0, N1, T0, T1 = 30, 6, 10, 4
    Y = rng.normal(size=(N0 + N1, T0 + T1)).cumsum(axis=1)
    spec = synth.SyntheticDID.spec
    synth._SOLVED.clear()
    base = synth.fit_block(Y, N0, T0, spec)
    shifted = Y.copy()
    shifted[N0:, T0:] += 3.0  # an effect on the treated post-period only
    synth._SOLVED.clear()
    fresh = synth.fit_block(shifted, N0, T0, spec)
    synth._SOLVED.clear()
    synth.fit_block(Y, N0, T0, spec)
    remembered = list(synth._SOLVED)
    reused = synth.fit_block(shifted, N0, T0, spec)  # served from the remembered solves
    assert list(synth._SOLVED) == remembered  # nothing was solved anew
    np.testing.assert_array_equal(reused.omega, fresh.omega)
    np.testing.assert_array_equal(reused.lam, fresh.lam)
    assert reused.tau == fresh.tau and abs(reused.tau - base.tau - 3.0) < 1e-9
    # a changed control cell is a new problem: solved, not served
    other = Y.copy()
    other[0, 0] += 1.0
    synth._SOLVED.clear()
    alone = synth.fit_block(other, N0, T0, spec)
    synth.fit_block(Y, N0, T0, spec)
    assert len(synth._SOLVED) == 4  # other's two solves and Y's two
    after = synth.fit_block(other, N0, T0, spec)
    np.testing.assert_array_equal(after.omega, alone.omega)
    assert not np.array_equal(alone.omega, base.omega)
