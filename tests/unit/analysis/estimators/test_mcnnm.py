"""MC-NNM: known-effect recovery, invariances and input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import InferenceError, PanelError
from analysis.estimators.mcnnm import (
    MCNNMEstimator,
    eigenvalue_ratio_rank,
    fit_fe_lowrank,
    fit_fe_rank,
    singular_value_threshold,
    truncate_rank,
)
from analysis.estimators.registry import make
from analysis.panel import Panel

DATA = Path(__file__).resolve().parents[3] / "data"


def factor_panel(
    seed: int, W: np.ndarray, tau: float = 2.0, rank: int = 2, noise: float = 0.5
) -> Panel:
    rng = np.random.default_rng(seed)
    N, T = W.shape
    L = rng.normal(size=(N, rank)) @ rng.normal(size=(T, rank)).T
    Y = L + rng.normal(size=(N, 1)) + np.linspace(0, 3, T)[None] + noise * rng.normal(size=(N, T))
    return Panel(
        Y=Y + tau * W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros((N, T), bool)
    )


def block_W(N: int = 40, T: int = 30, n_tr: int = 8, t0: int = 20) -> np.ndarray:
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return W


def test_recovers_block_effect_within_bootstrap_interval() -> None:
    res = MCNNMEstimator(seed=1, n_boot=20).fit(factor_panel(0, block_W())).result_
    assert res.se > 0
    lo, hi = res.conf_int(0.003)  # 3 SE
    assert lo <= 2.0 <= hi
    assert res.method == "mc" and res.n_cells == 8 * 10


@pytest.mark.parametrize("pattern", ["staggered", "switchback"])
def test_any_assignment_pattern(pattern: str) -> None:
    rng = np.random.default_rng(5)
    N, T = 24, 16
    if pattern == "staggered":
        start = rng.choice([6, 9, 12, 16], size=N)
        W = np.arange(T)[None] >= start[:, None]
    else:
        W = rng.random((N, T)) < 0.5
    res = MCNNMEstimator(seed=2, n_boot=20).fit(factor_panel(1, W, tau=1.5)).result_
    assert abs(res.effect - 1.5) < 3 * res.se


def test_invariances() -> None:
    # exact at convergence, so solve tightly
    p = factor_panel(2, block_W(30, 20, 6, 14))
    est = MCNNMEstimator(lambda_=0.01, se="none", tol=1e-10, max_iter=20_000)
    base = est.fit(p).result_.effect
    shift = p.with_outcome(p.Y + np.arange(20)[None] * 0.7)
    assert est.fit(shift).result_.effect == pytest.approx(base, abs=1e-6)
    plus = p.with_outcome(p.Y + 3.0 * p.W)
    assert est.fit(plus).result_.effect == pytest.approx(base + 3.0, abs=1e-6)
    cv = MCNNMEstimator(seed=4, se="none").fit(p).result_.effect
    scaled = MCNNMEstimator(seed=4, se="none").fit(p.with_outcome(10 * p.Y)).result_.effect
    assert scaled == pytest.approx(10 * cv, rel=1e-3)


def test_single_treated_unit_uses_placebo() -> None:
    res = MCNNMEstimator(seed=0, n_placebo=10).fit(factor_panel(3, block_W(15, 12, 1, 9))).result_
    assert res.se_method == "placebo" and np.isfinite(res.se) and res.se > 0
    with pytest.raises(InferenceError):
        MCNNMEstimator(se="bootstrap").fit(factor_panel(3, block_W(20, 20, 1, 15)))


def test_errors() -> None:
    W = block_W(10, 8, 2, 4)
    W[0, :] = True
    with pytest.raises(PanelError, match="untreated period"):
        MCNNMEstimator(se="none").fit(factor_panel(0, W))
    with pytest.raises(InferenceError):
        MCNNMEstimator(se="jackknife").fit(factor_panel(0, block_W(10, 8, 2, 4)))
    assert isinstance(make("mc", se="none"), MCNNMEstimator)


def test_placebo_with_several_treated_units_and_its_limits() -> None:
    res = MCNNMEstimator(lambda_=0.05, se="placebo", n_placebo=10, seed=0)
    out = res.fit(factor_panel(4, block_W(15, 10, 3, 7))).result_
    assert out.se_method == "placebo" and np.isfinite(out.se) and out.se > 0
    with pytest.raises(InferenceError, match="more control units"):
        MCNNMEstimator(lambda_=0.05, se="placebo").fit(factor_panel(4, block_W(8, 10, 4, 7)))


def test_truncate_rank_matches_svd_truncation() -> None:
    rng = np.random.default_rng(7)
    for shape in [(12, 7), (7, 12)]:
        Z = rng.normal(size=shape)
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        expected = (U[:, :3] * s[:3]) @ Vt[:3]
        np.testing.assert_allclose(truncate_rank(Z[None], 3)[0], expected, atol=1e-10)
    assert not truncate_rank(Z[None], 0).any()


def _threshold_without_skip(Z: np.ndarray, thr: float) -> np.ndarray:
    """The thresholding before the skip: every problem through the eigendecomposition."""
    G = np.swapaxes(Z, 1, 2) @ Z if Z.shape[2] <= Z.shape[1] else Z @ np.swapaxes(Z, 1, 2)
    ev, V = np.linalg.eigh(G)
    s = np.sqrt(np.maximum(ev, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(s > thr, (s - thr) / np.where(s > 0, s, 1.0), 0.0)
    P = (V * f[:, None, :]) @ np.swapaxes(V, 1, 2)
    return Z @ P if Z.shape[2] <= Z.shape[1] else P @ Z


def test_singular_value_threshold_skips_only_problems_with_nothing_above_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a batch of 7: three matrices whose every singular value is far below the threshold
    # (scaled down), three with some above, and one on the bound's blind side: two equal
    # singular values just under the threshold, so ||Z'Z||_F = sqrt(2) s^2 passes thr^2 and it
    # goes through the eigendecomposition, to come out zero. The result equals the
    # thresholding without the skip bit for bit, and the skipped ones never reach eigh.
    rng = np.random.default_rng(5)
    sizes: list[int] = []
    real_eigh = np.linalg.eigh

    def counting_eigh(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(G))
        return real_eigh(G)  # type: ignore[no-any-return]

    scale = np.array([0.05, 3.0, 0.05, 3.0, 0.05, 3.0])[:, None, None]
    for shape in [(9, 6), (6, 9)]:
        Z = rng.normal(size=(6, *shape)) * scale
        two = np.zeros(shape)
        two[0, 0] = two[1, 1] = 1.9  # singular values 1.9, 1.9 against a threshold of 2
        Z = np.concatenate([Z, two[None]])
        sizes.clear()
        with monkeypatch.context() as m:
            m.setattr(np.linalg, "eigh", counting_eigh)
            got = singular_value_threshold(Z, np.full(7, 2.0))
        assert sizes == [4]
        assert np.array_equal(got, _threshold_without_skip(Z, 2.0))
        for k in range(7):
            U, s, Vt = np.linalg.svd(Z[k], full_matrices=False)
            expected = (U * np.maximum(s - 2.0, 0.0)) @ Vt
            np.testing.assert_allclose(got[k], expected, atol=1e-10)
        assert not got[[0, 2, 4, 6]].any()
        assert all(np.abs(got[k]).max() > 0.1 for k in (1, 3, 5))


def test_singular_value_threshold_still_refuses_non_finite_input() -> None:
    Z = np.ones((2, 4, 3))
    Z[1, 0, 0] = np.nan
    with pytest.raises(np.linalg.LinAlgError):
        singular_value_threshold(Z, np.full(2, 100.0))


def test_more_effect_sweeps_per_step_reach_the_minimum_in_fewer_steps() -> None:
    # TROP's weights at a point of its default grid on Proposition 99 (unit rate 2 per median
    # distance, time rate 1, penalty 20.4): each problem a control state whose post-1988 cells
    # are hidden, weighted by its distance to the others and by time from a post period. The
    # unit and period effects then move slowly under one alternating sweep a step, so the
    # solver (same tolerance) takes more steps and stops farther from the minimum than with 4
    df = pd.read_csv(DATA / "california_prop99.csv", sep=";")
    p = Panel.from_long(df, unit="State", time="Year", outcome="PacksPerCapita", treated="treated")
    Y, obs = p.Y, ~p.W
    N, T = Y.shape
    d = np.sqrt(((Y[:, None, :19] - Y[None, :, :19]) ** 2).mean(axis=2))
    med = np.median(d[~np.eye(N, dtype=bool)])
    K = 12
    w = np.repeat(obs[None].astype(float), K, axis=0)
    for k in range(K):
        w[k, k, 19:] = 0.0
        w[k] *= np.exp(-1.0 * np.abs(np.arange(T) - (19 + k)))[None, :]
        w[k] *= np.exp(-2.0 / med * d[k])[:, None]

    def fitted(sweeps: int, tol: float) -> tuple[np.ndarray, int]:
        pen = np.full(K, 20.4)
        a, b, L, steps = fit_fe_lowrank(Y, w, pen, max_iter=50000, tol=tol, fe_sweeps=sweeps)
        return a[:, :, None] + b[:, None, :] + L, steps

    best, _ = fitted(4, 1e-12)
    best_one, _ = fitted(1, 1e-12)
    assert np.abs(best - best_one).max() < 1e-6  # one minimum, reached either way
    one, steps_one = fitted(1, 1e-4)
    four, steps_four = fitted(4, 1e-4)
    assert steps_four < 0.7 * steps_one, (steps_four, steps_one)
    assert np.abs(four - best).max() < np.abs(one - best).max()
    with pytest.raises(ValueError, match="fe_sweeps"):
        fit_fe_lowrank(Y, w, 1.0, fe_sweeps=0)


def test_rank_refit_recovers_missing_block_of_noise_free_factor_panel() -> None:
    # two-way effects + rank 2, no noise: the untreated block is identified exactly, and the
    # unpenalised refit must impute it exactly; the nuclear norm cannot (it shrinks)
    rng = np.random.default_rng(3)
    N, T = 30, 20
    Y0 = (
        rng.normal(size=(N, 2)) @ rng.normal(size=(T, 2)).T
        + rng.normal(size=(N, 1))
        + rng.normal(size=(1, T))
    )
    W = block_W(N, T, 6, 14)
    a, b, L, _ = fit_fe_rank(Y0, ~W, 2, tol=1e-12, max_iter=20_000)
    fit = a[0][:, None] + b[0][None, :] + L[0]
    np.testing.assert_allclose(fit[W], Y0[W], atol=1e-4)
    p = Panel(
        Y=Y0 + 1.5 * W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W)
    )
    res = MCNNMEstimator(seed=0, se="none").fit(p).result_
    assert res.details["rank"] == 2
    assert res.effect == pytest.approx(1.5, abs=1e-3)
    assert abs(res.details["effect_convex"] - 1.5) > 10 * abs(res.effect - 1.5)


def test_rank_zero_refit_is_two_way_fixed_effects() -> None:
    p = factor_panel(6, block_W(20, 12, 4, 8))
    obs = ~p.W
    a, b, L, _ = fit_fe_rank(p.Y, obs, 0, tol=1e-12, max_iter=20_000)
    assert not L.any()
    # two-way fixed effects on the untreated cells, solved as least squares with dummies
    N, T = p.Y.shape
    i, t = np.nonzero(obs)
    X = np.zeros((len(i), N + T))
    X[np.arange(len(i)), i] = 1.0
    X[np.arange(len(i)), N + t] = 1.0
    coef = np.linalg.lstsq(X, p.Y[i, t], rcond=None)[0]
    full = coef[:N][:, None] + coef[N:][None, :]
    np.testing.assert_allclose(a[0][:, None] + b[0][None, :], full, atol=1e-6)


def test_eigenvalue_ratio_rank() -> None:
    assert eigenvalue_ratio_rank(np.array([20.0, 15.0, 1.5, 1.2, 1.0]), 4) == 2
    assert eigenvalue_ratio_rank(np.array([20.0, 15.0, 1.5, 1.2, 1.0]), 1) == 1
    assert eigenvalue_ratio_rank(np.array([5.0, 4.0]), 0) == 0


def test_debiased_invariances_and_convex_option() -> None:
    p = factor_panel(2, block_W(30, 20, 6, 14))
    est = MCNNMEstimator(seed=4, se="none")
    base = est.fit(p).result_
    assert base.details["debiased"] and base.details["rank"] == 2
    shift = p.with_outcome(p.Y + np.arange(20)[None] * 0.7)
    assert est.fit(shift).result_.effect == pytest.approx(base.effect, abs=1e-4)
    plus = p.with_outcome(p.Y + 3.0 * p.W)
    assert est.fit(plus).result_.effect == pytest.approx(base.effect + 3.0, abs=1e-4)
    scaled = est.fit(p.with_outcome(10 * p.Y)).result_.effect
    assert scaled == pytest.approx(10 * base.effect, rel=1e-4)
    convex = MCNNMEstimator(seed=4, se="none", debias=False).fit(p).result_
    assert convex.effect == base.details["effect_convex"]


def test_time_placebo_variance_is_offered_and_unknown_names_are_refused() -> None:
    rng = np.random.default_rng(2)
    N, T = 16, 14
    W = np.zeros((N, T), dtype=bool)
    W[:4, 10:] = True
    Y = rng.normal(size=(N, 1)) + rng.normal(size=(1, T)) + 0.3 * rng.normal(size=(N, T))
    p = Panel(Y=Y + W, W=W, units=np.arange(N), times=np.arange(T), blackout=W & False)
    r = MCNNMEstimator(se="time_placebo", seed=0).fit(p).result_
    assert r.se_method == "time_placebo"
    assert r.details["n_draws"] == 5  # L = min(4 post, 10 pre // 2) = 4: starts 2, 3, 4, 5, 6
    assert r.df is not None and 1.0 < r.df < 5
    with pytest.raises(InferenceError, match="bootstrap"):
        MCNNMEstimator(se="jackknife").fit(p)
