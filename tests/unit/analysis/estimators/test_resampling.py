"""The stratified unit bootstrap shared by MC-NNM and TROP."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import InferenceError
from analysis.estimators._resampling import stratified_unit_bootstrap
from analysis.results import EstimateResult


def test_bootstrap_variance_of_a_difference_in_means_is_unbiased() -> None:
    # a linear statistic: mean outcome of treated rows minus mean of control rows. Its
    # unbiased variance is s_t^2/n_t + s_c^2/n_c; the plain n-out-of-n bootstrap would give
    # (n_t - 1)/n_t s_t^2/n_t + ..., i.e. 25% too small a treated part with 4 treated units.
    rng = np.random.default_rng(0)
    n_t, n_c, T = 4, 12, 3
    Y = rng.normal(size=(n_t + n_c, T)) * np.r_[np.full(n_t, 3.0), np.ones(n_c)][:, None]
    W = np.zeros_like(Y, dtype=bool)
    W[:n_t, -1] = True
    usable = np.ones_like(W)

    def effect(Yb: np.ndarray, Wb: np.ndarray, Ub: np.ndarray, rows: np.ndarray) -> float:
        tr = Wb.any(axis=1)
        return float(Yb[tr, 0].mean() - Yb[~tr, 0].mean())

    boot = stratified_unit_bootstrap(
        effect, Y, W, usable, n_boot=20_000, rng=np.random.default_rng(1)
    )
    x_t, x_c = Y[:n_t, 0], Y[n_t:, 0]
    v_t, v_c = x_t.var(ddof=1) / n_t, x_c.var(ddof=1) / n_c
    # Monte-Carlo relative error of a variance from 10,000 draws per stratum is about 1.4%
    assert boot.var_treated == pytest.approx(v_t, rel=0.05)
    assert boot.var_control == pytest.approx(v_c, rel=0.05)
    assert boot.se**2 == pytest.approx(v_t + v_c, rel=0.05)
    plain = (n_t - 1) / n_t * v_t + (n_c - 1) / n_c * v_c
    assert abs(boot.se**2 - plain) > 0.1 * (v_t + v_c)
    # Welch-Satterthwaite df of the two-part variance
    df = (v_t + v_c) ** 2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
    assert boot.df == pytest.approx(df, rel=0.1)
    assert n_t - 1 <= boot.df < n_t + n_c - 2


def test_student_t_intervals_when_df_is_set() -> None:
    normal = EstimateResult("x", effect=1.0, se=0.5, n_units=3, n_periods=2)
    t5 = EstimateResult("x", effect=1.0, se=0.5, n_units=3, n_periods=2, df=5.0)
    assert normal.conf_int()[1] == pytest.approx(1.0 + 1.959964 * 0.5, rel=1e-6)
    assert t5.conf_int()[1] == pytest.approx(1.0 + 2.570582 * 0.5, rel=1e-6)  # t(5) 97.5%
    assert t5.pvalue() > normal.pvalue()
    assert t5.to_dict()["df"] == 5.0


def test_time_placebo_windows_stay_in_the_pre_period_and_df_counts_overlap() -> None:
    from analysis.errors import InferenceError
    from analysis.estimators._resampling import time_placebo_effects

    N, T, t0 = 6, 12, 8
    W = np.zeros((N, T), dtype=bool)
    W[:2, t0:] = True  # 2 treated units, 4 post-periods: L = min(4, 8 // 2) = 4
    usable = np.ones_like(W)
    Y = np.arange(N * T, dtype=float).reshape(N, T)
    seen: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []

    def effect(Yp: np.ndarray, Wp: np.ndarray, Up: np.ndarray, rows: np.ndarray) -> float:
        i, t = np.nonzero(Wp)
        seen.append((Yp.shape[1], tuple(sorted(set(i.tolist()))), tuple(sorted(set(t.tolist())))))
        return float(len(seen))  # placebo "estimates" 1, 2, 3

    tp = time_placebo_effects(effect, Y, W, usable)
    # starts 2..4 (each leaves 2 earlier periods), the panel cut at the window's end
    assert [s for s in tp.starts] == [2, 3, 4]
    assert seen == [(6, (0, 1), (2, 3, 4, 5)), (7, (0, 1), (3, 4, 5, 6)), (8, (0, 1), (4, 5, 6, 7))]
    assert tp.window == 4
    assert tp.se == pytest.approx(np.sqrt((1 + 4 + 9) / 3))
    # overlap correlations 1 - gap/4: 1, 0.75, 0.5 -> sum of squares 3 + 4 * 0.5625 + 2 * 0.25
    assert tp.df == pytest.approx(9 / (3 + 4 * 0.5625 + 2 * 0.25))

    # one-period windows do not overlap: the df is the number of windows
    W1 = np.zeros((N, T), dtype=bool)
    W1[:2, t0] = True
    assert time_placebo_effects(effect, Y, W1, usable).df == pytest.approx(6.0)

    W_late = np.zeros((N, T), dtype=bool)
    W_late[:2, 3:] = True  # 3 pre-periods: no two windows fit
    with pytest.raises(InferenceError, match="pre-period"):
        time_placebo_effects(effect, Y, W_late, usable)


def test_period_component_estimates_the_shared_part_without_the_units_own_noise() -> None:
    # effects built by hand: cell (i, t) has effect g_t + u_it, g a period shock every treated
    # unit shares, u the unit's own noise. A window of L periods then has shared part mean(g)
    # (variance sd_g^2 / L) and the units' own parts, which the estimator must subtract.
    from analysis.estimators._resampling import period_component

    def cell_effect(Yb, Wb, Ub, rows):  # type: ignore[no-untyped-def]
        i, t = np.nonzero(Ub & Wb)
        return i, Yb[i, t]

    N, T, n_tr, t0 = 20, 16, 5, 10
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    usable = np.ones_like(W)
    rng = np.random.default_rng(0)
    for sd_g, want in ((0.0, 0.0), (1.0, 1.0 / 5)):  # L = min(6, 10 // 2) = 5
        raw, floored = [], []
        for _ in range(400):
            Y = sd_g * rng.normal(size=(1, T)) + rng.normal(size=(N, T))
            part = period_component(cell_effect, Y, W, usable)
            raw.append(part.per_window.mean())
            floored.append(part.variance)
        assert np.mean(raw) == pytest.approx(want, abs=0.02)
        assert min(floored) >= 0.0
    with pytest.raises(InferenceError, match="2 treated units"):
        W1 = np.zeros((N, T), bool)
        W1[0, t0:] = True
        period_component(cell_effect, rng.normal(size=(N, T)), W1, usable)


def test_period_component_leaves_out_units_unobserved_before_a_window() -> None:
    # a treated unit in blackout early in the pre-period has no level before the first windows:
    # those windows use the other treated units only, instead of taking its level for an error
    from analysis.estimators._resampling import period_component

    seen: list[set[int]] = []

    def cell_effect(Yb, Wb, Ub, rows):  # type: ignore[no-untyped-def]
        i, t = np.nonzero(Ub & Wb)
        seen.append(set(i.tolist()))
        return i, Yb[i, t]

    N, T, n_tr, t0 = 12, 16, 3, 10
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    usable = np.ones_like(W)
    usable[0, :4] = False
    Y = np.random.default_rng(1).normal(size=(N, T))
    part = period_component(cell_effect, Y, W, usable)
    assert part.starts.tolist() == [2, 3, 4, 5]  # L = 5: windows start at 2..5
    assert seen == [{1, 2}, {1, 2}, {1, 2}, {0, 1, 2}]  # unit 0 is first seen in period 4
    usable[1, :3] = False  # now only unit 2 is observed before the windows at 2 and 3
    part = period_component(cell_effect, Y, W, usable)
    assert part.starts.tolist() == [4, 5]
    usable[2, :5] = False  # then one window has two: refused, not a silent zero
    with pytest.raises(InferenceError, match="1 of 4 qualify"):
        period_component(cell_effect, Y, W, usable)


def test_time_placebo_leaves_a_unit_out_of_windows_it_was_not_seen_before() -> None:
    from analysis.estimators._resampling import time_placebo_effects
    from analysis.inference import overlap_df, time_placebo_df

    seen: list[set[int]] = []

    def effect(Yb, Wb, Ub, rows):  # type: ignore[no-untyped-def]
        i, t = np.nonzero(Ub & Wb)
        seen.append(set(i.tolist()))
        return float(Yb[i, t].mean())

    N, T, n_tr, t0 = 12, 16, 3, 10
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    usable = np.ones_like(W)
    Y = np.random.default_rng(2).normal(size=(N, T))
    full = time_placebo_effects(effect, Y, W, usable)
    assert full.starts.tolist() == [2, 3, 4, 5] and full.df == time_placebo_df(10, 6)
    seen.clear()
    usable[:n_tr, :3] = False  # no treated unit is seen before period 3
    part = time_placebo_effects(effect, Y, W, usable)
    assert part.starts.tolist() == [4, 5] and seen == [{0, 1, 2}, {0, 1, 2}]
    assert part.df == overlap_df(np.array([4, 5]), 5) and np.isfinite(part.se)


def test_placebo_uses_each_control_once_when_there_are_few() -> None:
    # one treated unit, 5 controls, up to 50 placebo replicates: each control takes the
    # treated path once, whatever the generator (the statistic here is the pseudo-treated
    # unit's own post-period mean, so the draws are the controls' post means)
    from analysis.estimators._resampling import placebo_effects

    Y = np.arange(6 * 4, dtype=float).reshape(6, 4)
    W = np.zeros((6, 4), bool)
    W[0, 2:] = True
    usable = np.ones_like(W)

    def effect(Yb: np.ndarray, Wb: np.ndarray, Ub: np.ndarray, rows: np.ndarray) -> float:
        return float(Yb[Wb].mean())

    draws = [
        placebo_effects(effect, Y, W, usable, n_placebo=50, rng=np.random.default_rng(s))
        for s in (0, 1)
    ]
    assert sorted(draws[0].tolist()) == [6.5, 10.5, 14.5, 18.5, 22.5]
    assert draws[1].tolist() == draws[0].tolist()
