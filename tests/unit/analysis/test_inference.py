"""Variance algorithms: closed forms against brute force, refusals, seeds, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis import inference
from analysis.errors import InferenceError
from analysis.estimators.did import DIDEstimator, _refit_block
from analysis.estimators.synth import SyntheticControl, SyntheticDID, fit_block, weighted_did
from analysis.panel import Panel
from tests.unit._panel_dgp import factor_panel


def test_jackknife_closed_form_equals_leave_one_out_refits() -> None:
    p = factor_panel(1, n_treated=4).sorted_for_block()
    N0, T0 = p.block_structure()
    fit = fit_block(p.Y, N0, T0, SyntheticDID.spec)
    loo = []
    for k in range(p.n_units):
        keep = np.delete(np.arange(p.n_units), k)
        om = fit.omega[keep[keep < N0]]
        om = om / om.sum()
        loo.append(weighted_did(p.Y[keep], int((keep < N0).sum()), T0, om, fit.lam))
    loo_a = np.array(loo)
    n = p.n_units
    brute = (n - 1) / n * np.sum((loo_a - loo_a.mean()) ** 2)
    assert inference.jackknife_variance(p.Y, N0, T0, fit.omega, fit.lam) == pytest.approx(brute)


def _tiny_block() -> Panel:
    """3 controls with post-minus-pre contrasts 0, 0, 3; 2 treated with 1 and 3."""
    Y = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 3.0], [0.0, 1.0], [0.0, 3.0]])
    W = np.zeros_like(Y, dtype=bool)
    W[3:, 1] = True
    return Panel(
        Y=Y,
        W=W,
        units=np.array(["c1", "c2", "c3", "t1", "t2"]),
        times=np.arange(2),
        blackout=np.zeros_like(W),
    )


def test_jackknife_split_and_df_match_a_hand_computation() -> None:
    # DID = mean(1, 3) - mean(0, 0, 3) = 1. Leave-one-out estimates by hand:
    # drop a zero control 2 - 1.5 = 0.5 (twice), drop the 3: 2 - 0 = 2;
    # drop treated 1: 3 - 1 = 2, drop treated 3: 1 - 1 = 0. Their mean is 1 = the estimate.
    # (N-1)/N = 4/5: treated part 4/5 * ((2-1)^2 + (0-1)^2) = 1.6,
    # control part 4/5 * (0.25 + 0.25 + 1) = 1.2, df = 2.8^2 / (1.6^2/1 + 1.2^2/2) = 7.84/3.28.
    split = inference.jackknife_split(_tiny_block().Y, 3, 1, np.full(3, 1 / 3), np.ones(1))
    assert split.var_treated == pytest.approx(1.6)
    assert split.var_control == pytest.approx(1.2)
    assert split.variance == pytest.approx(2.8)
    assert (split.n_treated, split.n_control) == (2, 3)
    assert split.df == pytest.approx(7.84 / 3.28)
    r = DIDEstimator(se="jackknife").fit(_tiny_block()).result
    assert r.effect == pytest.approx(1.0) and r.se == pytest.approx(np.sqrt(2.8))
    assert r.df == pytest.approx(7.84 / 3.28)
    lo, hi = r.conf_int()
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.975, 7.84 / 3.28) * np.sqrt(2.8))


def test_welch_satterthwaite_df_limits() -> None:
    # all the variance on one side: that side's n - 1 degrees of freedom
    assert inference.welch_satterthwaite_df(2.0, 0.0, 4, 30) == pytest.approx(3.0)
    assert inference.welch_satterthwaite_df(0.0, 2.0, 4, 30) == pytest.approx(29.0)
    # equal parts and sizes: the pooled df 2 (n - 1)
    assert inference.welch_satterthwaite_df(1.0, 1.0, 5, 5) == pytest.approx(8.0)
    with pytest.raises(InferenceError, match="two units"):
        inference.welch_satterthwaite_df(1.0, 1.0, 1, 5)


def test_jackknife_parts_each_depend_on_one_group_only() -> None:
    # with weights held fixed, the treated part is a function of treated rows and the control
    # part (including the between-group term) of control rows: the premise of the df formula
    p = factor_panel(8, n_treated=4).sorted_for_block()
    N0, T0 = p.block_structure()
    fit = fit_block(p.Y, N0, T0, SyntheticDID.spec)
    base = inference.jackknife_split(p.Y, N0, T0, fit.omega, fit.lam)
    rng = np.random.default_rng(0)
    Yt, Yc = p.Y.copy(), p.Y.copy()
    Yt[N0:] += rng.normal(0, 3, Yt[N0:].shape)
    Yc[:N0] += rng.normal(0, 3, Yc[:N0].shape)
    moved_t = inference.jackknife_split(Yt, N0, T0, fit.omega, fit.lam)
    moved_c = inference.jackknife_split(Yc, N0, T0, fit.omega, fit.lam)
    assert moved_t.var_control == pytest.approx(base.var_control)
    assert moved_t.var_treated != pytest.approx(base.var_treated)
    assert moved_c.var_treated == pytest.approx(base.var_treated)
    assert moved_c.var_control != pytest.approx(base.var_control)
    # zero-weight controls (SC's sparse weights) carry no degree of freedom
    sc = fit_block(p.Y, N0, T0, SyntheticControl.spec)
    sc_split = inference.jackknife_split(p.Y, N0, T0, sc.omega, sc.lam)
    assert sc_split.n_control == np.count_nonzero(sc.omega) < N0


def test_every_block_variance_reports_its_df() -> None:
    # the placebo SE comes from the 27 controls' spread: t(N0 - 1) intervals
    p = factor_panel(9, n_treated=3)
    r = DIDEstimator(se="placebo", seed=0, replications=20).fit(p).result
    assert r.df == 26.0
    lo, hi = r.conf_int(0.05)
    assert (hi - lo) / 2 == pytest.approx(stats.t.ppf(0.975, 26) * r.se)
    for se in ("jackknife", "bootstrap"):
        r = SyntheticDID(se=se, seed=0, replications=20).fit(p).result
        assert r.df is not None and 2.0 <= r.df <= 3.0 + 26.0


def test_stratified_bootstrap_variance_of_did_is_unbiased_by_stratum() -> None:
    # DID with uniform weights is a difference of the treated and control mean contrasts: its
    # unbiased variance is s_t^2/n_t + s_c^2/n_c. The stratified bootstrap with n - 1 draws
    # per stratum estimates each part (Algorithm 2's joint n-of-n resampling would shrink the
    # treated part by (n_t - 1)/n_t, a third with 3 treated units).
    p = factor_panel(4, n_treated=3)
    q = p.sorted_for_block()
    N0, T0 = q.block_structure()
    contrast = q.Y[:, T0:].mean(1) - q.Y[:, :T0].mean(1)
    c_co, c_tr = contrast[:N0], contrast[N0:]
    v_t, v_c = c_tr.var(ddof=1) / len(c_tr), c_co.var(ddof=1) / len(c_co)
    split = inference.bootstrap_split(
        q.Y,
        N0,
        T0,
        _refit_block,
        np.full(N0, 1.0 / N0),
        np.full(T0, 1.0 / T0),
        replications=40_000,
        rng=np.random.default_rng(0),
    )
    # relative Monte-Carlo error of a variance from 20,000 draws is about 1%
    assert split.var_treated == pytest.approx(v_t, rel=0.05)
    assert split.var_control == pytest.approx(v_c, rel=0.05)
    assert split.df == pytest.approx((v_t + v_c) ** 2 / (v_t**2 / 2 + v_c**2 / (N0 - 1)), rel=0.1)


def test_time_placebo_df_matches_a_hand_computation() -> None:
    # T0 = 15, T1 = 5: windows of L = 5 starting at 2..10 (9). Overlap correlations
    # 1 - gap/5 = .8, .6, .4, .2 for gaps 1-4, with 8, 7, 6, 5 pairs each way:
    # sum rho^2 = 9 + 2 (8 .64 + 7 .36 + 6 .16 + 5 .04) = 26.6, df = 81 / 26.6
    assert inference.time_placebo_df(15, 5) == pytest.approx(81 / 26.6)
    # windows of one period do not overlap: as many degrees of freedom as windows (2..9)
    assert inference.time_placebo_df(10, 1) == pytest.approx(8.0)
    r = DIDEstimator(se="time_placebo").fit(factor_panel(9)).result
    assert r.df == pytest.approx(81 / 26.6)
    lo, hi = r.conf_int()
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.975, 81 / 26.6) * r.se)


def test_placebo_with_one_treated_unit_uses_every_control_once() -> None:
    p = factor_panel(2, n_treated=1, n_units=15)
    a = DIDEstimator(se="placebo", seed=1).fit(p).result.se
    b = DIDEstimator(se="placebo", seed=99).fit(p).result.se
    assert a == b  # no randomness left: 14 controls, 14 placebo assignments
    q = p.sorted_for_block()
    N0, T0 = q.block_structure()
    contrast = q.Y[:N0, T0:].mean(1) - q.Y[:N0, :T0].mean(1)
    placebo = np.array([contrast[j] - np.delete(contrast, j).mean() for j in range(N0)])
    assert a == pytest.approx(placebo.std())


def test_bootstrap_is_reproducible_by_seed() -> None:
    p = factor_panel(3, n_treated=4)
    a = DIDEstimator(se="bootstrap", seed=5, replications=50).fit(p).result.se
    b = DIDEstimator(se="bootstrap", seed=5, replications=50).fit(p).result.se
    c = DIDEstimator(se="bootstrap", seed=6, replications=50).fit(p).result.se
    assert a == b and a != c and a > 0


@pytest.mark.parametrize(
    ("se", "kwargs", "match"),
    [
        ("jackknife", {"n_treated": 1}, "single treated unit"),
        ("bootstrap", {"n_treated": 1}, "single treated unit"),
        ("placebo", {"n_treated": 10, "n_units": 18}, "more control units than treated"),
        ("time_placebo", {"n_pre": 3, "n_periods": 6}, "pre-period"),
    ],
)
def test_invalid_methods_are_refused_with_a_sentence(se: str, kwargs: dict, match: str) -> None:
    with pytest.raises(InferenceError, match=match):
        DIDEstimator(se=se).fit(factor_panel(4, **kwargs))


def test_jackknife_refused_when_one_control_has_all_weight() -> None:
    p = factor_panel(5, n_treated=3).sorted_for_block()
    N0, T0 = p.block_structure()
    omega = np.zeros(N0)
    omega[0] = 1.0
    with pytest.raises(InferenceError, match="single control unit"):
        inference.jackknife_variance(p.Y, N0, T0, omega, np.full(T0, 1 / T0))


def test_unknown_method_is_a_value_error_listing_choices() -> None:
    with pytest.raises(ValueError, match="placebo"):
        SyntheticDID(se="wild").fit(factor_panel(6))


def test_aliases_and_defaults() -> None:
    assert inference.canonical_method("unit_conditional") == "time_placebo"
    assert inference.canonical_method("time_conditional") == "placebo"
    assert inference.default_block_method(N0=20, N1=1) == "placebo"
    assert inference.default_block_method(N0=3, N1=5) == "jackknife"
    # controls that barely outnumber the treated cannot spare a placebo group
    assert inference.default_block_method(N0=101, N1=99) == "jackknife"
    assert inference.default_block_method(N0=27, N1=3) == "placebo"
    r = DIDEstimator(se="unit_conditional").fit(factor_panel(7)).result
    assert r.se_method == "time_placebo" and r.se > 0


def test_did_placebo_interval_covers_under_random_assignment() -> None:
    hits = 0
    n = 200
    for s in range(n):
        p = factor_panel(500 + s, n_units=30, n_treated=2, noise=1.0, rank=1)
        r = DIDEstimator(se="placebo", seed=s, replications=100).fit(p).result
        lo, hi = r.conf_int()
        hits += lo <= 1.0 <= hi
    # 200 draws: binomial sd 1.5 points around 95
    assert 0.90 <= hits / n <= 0.99


@pytest.mark.parametrize(
    ("n_units", "n_treated", "expected"),
    [
        (30, 14, "bootstrap"),  # where the default is the jackknife: the bootstrap
        (30, 10, "placebo"),  # twice as many controls as treated: the default's placebo
        (30, 1, "placebo"),  # one treated unit, where the bootstrap is invalid
    ],
)
def test_auto_bootstrap_replaces_only_the_jackknife(
    n_units: int, n_treated: int, expected: str
) -> None:
    """What the time-bound design asks of sdid below a day (controller.designs.time_bound)."""
    p = factor_panel(7, n_units=n_units, n_treated=n_treated)
    auto = SyntheticDID(se="auto_bootstrap", seed=3, replications=20).fit(p).result
    assert auto.se_method == expected
    named = SyntheticDID(se=expected, seed=3, replications=20).fit(p).result
    assert auto.se == named.se and auto.df == named.df
