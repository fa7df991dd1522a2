"""Variance algorithms: closed forms against brute force, refusals, seeds, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import inference
from analysis.errors import InferenceError
from analysis.estimators.did import DIDEstimator
from analysis.estimators.synth import SyntheticDID, fit_block, weighted_did
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
