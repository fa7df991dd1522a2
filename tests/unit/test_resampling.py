"""The stratified unit bootstrap shared by MC-NNM and TROP."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert t5.pvalue > normal.pvalue
    assert t5.to_dict()["df"] == 5.0
