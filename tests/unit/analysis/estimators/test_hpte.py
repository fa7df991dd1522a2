"""HPTE: recovery, invariances, outlier rule, matching and the panel/registry plumbing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import PanelError
from analysis.estimators import registry
from analysis.estimators.hpte import (
    HPTEEstimator,
    _Forests,
    _loo_matched_controls,
    chauvenet_keep,
    detrended_first_differences,
    first_differences_and_noise_scales,
    fit_variance_function,
    season_index,
)
from analysis.panel import Panel
from analysis.pricing_dgp import plain_did, simulate_hpte_panel


@pytest.fixture(scope="module")
def sim():
    return simulate_hpte_panel(400, seed=11)


def test_recovers_known_effect_within_interval(sim) -> None:
    res = HPTEEstimator(seed=1, n_bootstrap=100).fit(sim.panel).result
    lo, hi = res.conf_int()
    assert lo <= sim.population_att <= hi
    assert 0.05 < res.se < 1.5
    assert res.se_method == "bootstrap"


def test_adding_a_time_effect_changes_nothing(sim) -> None:
    rng = np.random.default_rng(3)
    shifted = sim.panel.with_outcome(sim.panel.Y + rng.normal(0, 10, sim.panel.n_periods)[None])
    a = HPTEEstimator(seed=2, n_bootstrap=30).fit(sim.panel).result
    b = HPTEEstimator(seed=2, n_bootstrap=30).fit(shifted).result
    assert b.effect == pytest.approx(a.effect, abs=1e-8)
    assert b.se == pytest.approx(a.se, abs=1e-8)


def test_product_trends_and_weekly_patterns_are_removed(sim) -> None:
    """Adding any product-specific line + weekday pattern leaves every first difference as is."""
    rng = np.random.default_rng(4)
    N, T = sim.panel.shape
    dow = pd.DatetimeIndex(sim.panel.times).dayofweek.to_numpy()
    extra = (
        rng.normal(0, 50, N)[:, None]
        + rng.normal(0, 2, N)[:, None] * np.arange(T)[None]
        + rng.normal(0, 20, (N, 7))[:, dow]
    )
    usable = sim.panel.usable
    season = season_index(sim.panel.times, 7)
    fd0 = detrended_first_differences(sim.panel.Y, usable, 56, season)
    fd1 = detrended_first_differences(sim.panel.Y + extra, usable, 56, season)
    np.testing.assert_allclose(fd1, fd0, atol=1e-7)


def test_first_difference_with_blackout_matches_per_product_least_squares() -> None:
    rng = np.random.default_rng(5)
    N, T, T0 = 6, 40, 28
    Y = rng.normal(size=(N, T)) + np.arange(T)[None] * rng.normal(size=(N, 1))
    usable = rng.uniform(size=(N, T)) > 0.2
    usable[:, T0:] |= np.arange(T - T0)[None] == 0  # at least one usable post cell
    fd = detrended_first_differences(Y, usable, T0, season=None, trend=True)
    for i in range(N):
        pre = np.flatnonzero(usable[i, :T0])
        slope, icpt = np.polyfit(pre, Y[i, pre], 1)
        post = T0 + np.flatnonzero(usable[i, T0:])
        assert fd[i] == pytest.approx(np.mean(Y[i, post] - (icpt + slope * post)), abs=1e-8)


def test_scaling_outcome_scales_estimate(sim) -> None:
    a = HPTEEstimator(seed=6, n_bootstrap=30).fit(sim.panel).result
    b = HPTEEstimator(seed=6, n_bootstrap=30).fit(sim.panel.with_outcome(3.0 * sim.panel.Y)).result
    assert b.effect == pytest.approx(3.0 * a.effect, rel=1e-6)
    assert b.se == pytest.approx(3.0 * a.se, rel=1e-6)


def test_chauvenet_drops_gross_outliers_and_few_clean_values() -> None:
    rng = np.random.default_rng(7)
    clean = rng.normal(size=20_000)
    assert (~chauvenet_keep(clean, 0.5)).sum() <= 4  # expected 0.5 dropped
    dirty = clean.copy()
    dirty[:200] += rng.choice([-1, 1], 200) * rng.uniform(10, 20, 200)
    keep = chauvenet_keep(dirty, 0.5)
    assert not keep[:200].any()
    assert keep[200:].mean() > 0.999
    assert chauvenet_keep(dirty, None).all()


def test_beats_plain_did_with_trends_shocks_and_outliers() -> None:
    err_h, err_d = [], []
    for s in range(8):
        sim = simulate_hpte_panel(300, seed=100 + s)
        est = HPTEEstimator(seed=s, se="none").fit(sim.panel).result.effect
        err_h.append(est - sim.population_att)
        err_d.append(plain_did(sim.panel) - sim.population_att)
    assert np.sqrt(np.mean(np.square(err_h))) < np.sqrt(np.mean(np.square(err_d)))


def test_matching_removes_confounding_by_characteristics() -> None:
    """Assignment depends on x3, which drives the post-period shock: matching must beat 'none'."""
    bias_forest, bias_none = [], []
    for s in range(6):
        sim = simulate_hpte_panel(500, seed=200 + s, confounded=True, outlier_share=0.0)
        bias_forest.append(HPTEEstimator(seed=s, se="none").fit(sim.panel).result.effect)
        bias_none.append(HPTEEstimator(matching="none", se="none").fit(sim.panel).result.effect)
    truth = 3.5
    assert abs(np.mean(bias_forest) - truth) < 0.5 * abs(np.mean(bias_none) - truth)


def test_unit_effects_show_heterogeneity(sim) -> None:
    res = HPTEEstimator(seed=8, se="none").fit(sim.panel).result
    ue = res.details["unit_effects"]
    assert isinstance(ue, pd.DataFrame)
    assert set(ue.index) == set(sim.panel.units[sim.treated])
    kept = ue[~ue["outlier"]]
    x1 = sim.panel.covariates.loc[kept.index, "x1"]
    assert np.corrcoef(x1, kept["effect"])[0, 1] > 0.2  # true effect rises with x1
    assert res.effect == pytest.approx(kept["effect"].mean())
    assert ue["outlier"].sum() == res.details["outliers_treated"]


def test_from_long_with_covariates_and_registry(sim) -> None:
    panel = Panel.from_long(
        sim.long,
        unit="product",
        time="date",
        outcome="units",
        treated="treated",
        covariates=["x1", "x2", "x3", "x4", "segment"],
    )
    est = registry.make("hpte", seed=9, n_bootstrap=20)
    res = est.fit(panel).result
    assert res.method == "hpte"
    assert res.details["seasonality"]  # weekday read from ISO date strings
    direct = HPTEEstimator(seed=9, n_bootstrap=20).fit(sim.panel).result
    assert res.effect == pytest.approx(direct.effect, abs=1e-8)


def test_same_seed_same_result_and_default_seed_is_fixed(sim) -> None:
    a = HPTEEstimator(n_bootstrap=20).fit(sim.panel).result
    b = HPTEEstimator(n_bootstrap=20).fit(sim.panel).result
    assert (a.effect, a.se) == (b.effect, b.se)


def test_errors_are_actionable(sim) -> None:
    no_cov = Panel(sim.panel.Y, sim.panel.W, sim.panel.units, sim.panel.times, sim.panel.blackout)
    with pytest.raises(PanelError, match="covariate"):
        HPTEEstimator().fit(no_cov)
    assert np.isfinite(HPTEEstimator(matching="none", se="none").fit(no_cov).result.effect)
    W = sim.panel.W.copy()
    W[np.flatnonzero(sim.treated)[0], -1] = False
    with pytest.raises(PanelError, match="block design"):
        HPTEEstimator().fit(sim.panel.with_treatment(W))
    with pytest.raises(ValueError, match="se="):
        HPTEEstimator(se="jackknife").fit(sim.panel)


def test_missing_characteristics_are_imputed_with_an_indicator(sim) -> None:
    from dataclasses import replace

    cov = sim.panel.covariates.copy()
    cov.iloc[::7, cov.columns.get_loc("x3")] = np.nan
    panel = replace(sim.panel, covariates=cov)
    for matching in ("supervised", "unsupervised"):
        res = HPTEEstimator(matching=matching, se="none").fit(panel).result  # type: ignore[arg-type]
        assert abs(res.effect - sim.population_att) < 1.5


# ---------------------------------------------------------------------------------- per product
def test_unit_intervals_cover_known_effects_pooled_over_seeds() -> None:
    """~800 treated products over 4 seeds: binomial sd of a 95% coverage is 0.8 points, about
    twice that as products of one seed share the fitted variance function; the band is 3 sd."""
    covered, err2, se2 = [], [], []
    for s in range(4):
        sim = simulate_hpte_panel(400, seed=300 + s)
        ue = HPTEEstimator(seed=s, se="none").fit(sim.panel).result.details["unit_effects"]
        kept = ~ue["outlier"].to_numpy()
        tau = sim.tau[sim.treated][kept]
        covered += list((ue["ci_low"][kept] <= tau) & (tau <= ue["ci_high"][kept]))
        err2 += list(np.square(ue["effect"][kept] - tau))
        se2 += list(np.square(ue["se"][kept]))
    assert len(covered) > 700
    assert 0.902 <= np.mean(covered) <= 0.998
    assert 0.8 < np.sqrt(np.mean(se2) / np.mean(err2)) < 1.25  # the SE is the error's scale


def test_noisier_products_get_larger_standard_errors(sim) -> None:
    rng = np.random.default_rng(12)
    noisy = np.arange(sim.panel.n_units) % 4 == 0
    Y = sim.panel.Y + np.where(noisy[:, None], rng.normal(0, 20, sim.panel.shape), 0.0)
    ue = HPTEEstimator(seed=3, se="none").fit(sim.panel.with_outcome(Y)).result
    ue = ue.details["unit_effects"]
    kept = ~ue["outlier"].to_numpy()
    noisy_t = noisy[sim.treated]
    assert ue["se"][kept & noisy_t].min() > ue["se"][kept & ~noisy_t].max()
    half = (ue["ci_high"] - ue["ci_low"]) / 2
    np.testing.assert_allclose(half[kept], 1.959964 * ue["se"][kept], rtol=1e-6)


def test_outlier_products_have_no_effect_and_no_se(sim) -> None:
    ue = HPTEEstimator(seed=4, se="none").fit(sim.panel).result.details["unit_effects"]
    out = ue["outlier"].to_numpy()
    assert out.any() and (~out).any()
    assert ue.loc[out, ["effect", "se", "ci_low", "ci_high"]].isna().all().all()
    assert np.isfinite(ue.loc[~out, ["effect", "se", "ci_low", "ci_high"]].to_numpy()).all()


def test_leave_one_out_match_of_a_control_excludes_its_own_outcome() -> None:
    """Two trees over controls 0-3 (product 4 is treated and never populates a leaf)."""
    fd = np.array([1.0, 2.0, 4.0, 8.0, 100.0])
    leaves = np.array([[0, 2], [0, 3], [0, 3], [1, 2], [1, 3]])  # tree 0: {0,1,2}{3}; 1: {0,3}{1,2}
    populate = np.array([True, True, True, True, False])
    forests = _Forests([leaves], [4], [populate], [None])
    ctrl = np.arange(4)
    loo = _loo_matched_controls(forests, fd, ctrl)
    # control 0: tree 0 -> mean(2, 4); tree 1 -> 8.  control 3: alone in tree 0 (skipped); tree 1 -> 1
    np.testing.assert_allclose(loo, [(3.0 + 8.0) / 2, (2.5 + 4.0) / 2, (1.5 + 2.0) / 2, 1.0])
    # a tree whose split rules saw control 0's outcome is skipped for control 0 only
    trained = np.zeros((5, 2), dtype=bool)
    trained[0, 1] = True
    loo = _loo_matched_controls(_Forests([leaves], [4], [populate], [trained]), fd, ctrl)
    assert loo[0] == pytest.approx(3.0) and loo[3] == pytest.approx(1.0)
    # no matching: the mean of the other controls
    np.testing.assert_allclose(
        _loo_matched_controls(None, fd, ctrl), [14 / 3, 13 / 3, 11 / 3, 7 / 3]
    )


def test_a_controls_own_outcome_moves_its_residual_one_for_one(sim) -> None:
    """Outcome-free trees: shifting one control's post-period moves its LOO residual by the
    shift exactly, i.e. its matched value does not see its own outcome."""
    j = int(np.flatnonzero(~sim.treated)[5])
    Y = sim.panel.Y.copy()
    Y[j, 56:] += 0.7
    fit = HPTEEstimator(matching="unsupervised", seed=5, se="none")
    a = fit.fit(sim.panel).result.details["control_residuals"]
    b = fit.fit(sim.panel.with_outcome(Y)).result.details["control_residuals"]
    unit = sim.panel.units[j]
    assert b.loc[unit, "loo_residual"] - a.loc[unit, "loo_residual"] == pytest.approx(0.7)
    others = a.index != unit
    assert not np.allclose(a["loo_residual"][others], b["loo_residual"][others])


def test_noise_scale_is_the_sd_of_a_first_differences_noise() -> None:
    """Pure white noise of product-specific sd: (fd / s)^2 averages 48/46 (s from 48 residual
    degrees of freedom); sd of that mean over 4,000 products is about 0.025."""
    rng = np.random.default_rng(13)
    N, T = 4000, 84
    Y = rng.normal(size=(N, T)) * np.exp(rng.normal(0, 1, N))[:, None]
    season = season_index(pd.date_range("2024-01-01", periods=T).to_numpy(), 7)
    fd, s = first_differences_and_noise_scales(Y, np.ones((N, T), dtype=bool), 56, season)
    assert np.mean(np.square(fd / s)) == pytest.approx(48 / 46, abs=0.1)
    short = np.zeros((N, T), dtype=bool)
    short[:, 50:] = True  # 6 pre-period cells cannot estimate 9 regressors and a residual
    assert np.isnan(first_differences_and_noise_scales(Y, short, 56, season)[1]).all()


def test_variance_function_recovers_intercept_and_slope() -> None:
    rng = np.random.default_rng(14)
    s = np.exp(rng.normal(0, 0.8, 20_000))
    r = rng.normal(size=s.size) * np.sqrt(2.0 + 0.5 * s**2)
    a, b = fit_variance_function(r, s)
    assert a == pytest.approx(2.0, rel=0.1) and b == pytest.approx(0.5, rel=0.1)
    a, b = fit_variance_function(3.0 * r, s)
    assert a == pytest.approx(18.0, rel=0.1) and b == pytest.approx(4.5, rel=0.1)
    few = fit_variance_function(r[:2], np.array([1.0, np.nan]))  # too few scaled: unscaled
    assert few == (pytest.approx(np.mean(r[:2] ** 2)), 0.0)
