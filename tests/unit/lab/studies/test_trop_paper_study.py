"""The semi-synthetic design of TROP's paper (lab/studies/trop_paper.py): its pieces against
known answers, and the panels shipped for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.estimators.registry import make
from analysis.panel import Panel
from lab.studies import trop_paper as study

ROOT = Path(__file__).resolve().parents[4]


def test_ar2_recovers_known_coefficients_of_a_simulated_panel() -> None:
    rng = np.random.default_rng(0)
    N, T, phi1, phi2 = 200, 60, 0.5, -0.2
    E = np.zeros((N, T + 50))
    eps = rng.normal(size=E.shape)
    for t in range(2, E.shape[1]):
        E[:, t] = phi1 * E[:, t - 1] + phi2 * E[:, t - 2] + eps[:, t]
    got = study.ar2(E[:, 50:])
    assert got == pytest.approx((phi1, phi2), abs=0.02)


def test_noise_covariance_is_the_ar2_autocorrelation_scaled_to_the_residual() -> None:
    rng = np.random.default_rng(1)
    E = rng.normal(size=(30, 20)).cumsum(axis=1) * 0.1
    phi1, phi2 = study.ar2(E)
    C = study.noise_covariance(E)
    R = C / C[0, 0]
    # Yule-Walker: rho_1 = phi1 / (1 - phi2), rho_k = phi1 rho_{k-1} + phi2 rho_{k-2}
    assert R[0, 1] == pytest.approx(phi1 / (1 - phi2))
    assert R[0, 3] == pytest.approx(phi1 * R[0, 2] + phi2 * R[0, 1])
    assert np.allclose(np.diag(R), 1.0) and np.allclose(C, C.T)
    assert np.linalg.norm(C) == pytest.approx(np.linalg.norm(E.T @ E / E.shape[0]))


def test_a_replication_treats_ten_random_units_in_the_last_ten_periods() -> None:
    L, cov = study.components("smoking")
    assert L.shape == (39, 31) and np.linalg.matrix_rank(L) == 4
    picked = set()
    for r in range(5):
        p = study.draw(L, cov, np.random.default_rng([1, r]))
        units = np.flatnonzero(p.W.any(axis=1))
        assert len(units) == 10
        assert (p.W[units][:, -10:]).all() and not p.W[:, :-10].any()
        picked.add(tuple(units))
    assert len(picked) == 5  # a new draw each replication
    # the same seed gives the same replication
    a = study.draw(L, cov, np.random.default_rng([1, 0]))
    b = study.draw(L, cov, np.random.default_rng([1, 0]))
    assert np.array_equal(a.Y, b.Y) and np.array_equal(a.W, b.W)


def test_noise_of_the_draws_has_the_design_covariance() -> None:
    L, cov = study.components("smoking")
    rng = np.random.default_rng(2)
    noise = np.concatenate([study.draw(L, cov, rng).Y - L for _ in range(200)])
    emp = np.cov(noise, rowvar=False)
    # 7,800 rows: the variance and the lag-1 covariance within a few percent of the design's
    assert np.diag(emp).mean() == pytest.approx(np.diag(cov).mean(), rel=0.05)
    assert np.diag(emp, 1).mean() == pytest.approx(np.diag(cov, 1).mean(), rel=0.08)


def test_authors_trop_without_weights_or_low_rank_is_two_way_fixed_effects() -> None:
    # all rates 0 and no nuclear norm: one unweighted fit of Y = a + b + tau W is the two-way
    # fixed-effects regression, which for a block design is the DID estimate
    L, cov = study.components("basque")
    p = study.draw(L, cov, np.random.default_rng(3))
    did = make("did", se="none").fit(p).result_.effect
    assert study.authors_trop(p.Y, p.W, 0.0, 0.0, np.inf) == pytest.approx(did, abs=1e-8)


def test_authors_trop_without_low_rank_is_the_weighted_regression() -> None:
    # rates > 0, no nuclear norm: the weighted least squares of Y on unit and period dummies
    # and W, weights delta^2 as the replication code defines them (distance to the treated
    # units' average path over the pre-periods, time from the middle of the treated block)
    L, cov = study.components("basque")
    p = study.draw(L, cov, np.random.default_rng(6))
    Y, W = p.Y, p.W
    N, T = Y.shape
    lu, lt = 1.2, 0.3
    post = W.any(axis=0)
    avg = Y[W.any(axis=1)].mean(axis=0)
    d = np.sqrt(((Y - avg)[:, ~post] ** 2).mean(axis=1))
    dt = np.abs(np.arange(T) - (T - post.sum() / 2))
    w = (np.exp(-lu * d)[:, None] * np.exp(-lt * dt)[None, :]).ravel() ** 2
    X = np.column_stack(
        [
            np.kron(np.eye(N), np.ones((T, 1))),
            np.kron(np.ones((N, 1)), np.eye(T))[:, 1:],
            W.ravel().astype(float),
        ]
    )
    coef = np.linalg.lstsq(X * np.sqrt(w)[:, None], Y.ravel() * np.sqrt(w), rcond=None)[0]
    assert study.authors_trop(Y, W, lu, lt, np.inf) == pytest.approx(coef[-1], abs=1e-7)
    # a penalty so large that L stays 0 is the same fit (the solver must not stop because
    # L does not move while tau still does)
    assert study.authors_trop(Y, W, lu, lt, 1e6) == pytest.approx(coef[-1], abs=1e-7)


def test_paper_rates_are_the_authors_rates_in_pricelabs_units() -> None:
    # the converted rates, given to the estimator, come back on the outcome scale as twice
    # the authors' (their weights enter squared) and the penalty as theirs
    L, cov = study.components("smoking")
    p = study.draw(L, cov, np.random.default_rng(7))
    rates = study.paper_rates("smoking", p)
    res = study.TROPEstimator(se="none", **rates).fit(p).result_
    lu, lt, nn = study.AUTHORS_LAMBDAS["smoking"]
    assert res.details["lambda_unit_raw"] == pytest.approx(2 * lu)
    assert res.details["lambda_time"] == pytest.approx(2 * lt)
    assert res.details["lambda_nn_raw"] == pytest.approx(nn)


def test_authors_trop_recovers_an_effect_added_to_the_treated_block() -> None:
    L, cov = study.components("smoking")
    p = study.draw(L, cov, np.random.default_rng(4))
    base = study.authors_trop(p.Y, p.W, *study.AUTHORS_LAMBDAS["smoking"])
    shifted = Panel(Y=p.Y + 0.7 * p.W, W=p.W, units=p.units, times=p.times, blackout=p.blackout)
    moved = study.authors_trop(shifted.Y, shifted.W, *study.AUTHORS_LAMBDAS["smoking"])
    assert moved - base == pytest.approx(0.7, abs=1e-5)


@pytest.mark.parametrize(
    ("file", "unit", "time", "shape", "treated_unit", "start"),
    [
        ("basque_gdpcap.csv", "region", "year", (18, 43), "Basque Country (Pais Vasco)", 1970),
        ("germany_gdp.csv", "country", "year", (17, 44), "West Germany", 1990),
    ],
)
def test_shipped_panels_are_balanced_with_one_treated_unit(
    file: str, unit: str, time: str, shape: tuple[int, int], treated_unit: str, start: int
) -> None:
    df = pd.read_csv(ROOT / "tests" / "data" / file, sep=";")
    assert (df[unit].nunique(), df[time].nunique()) == shape
    assert len(df) == shape[0] * shape[1] and not df.isna().any().any()
    tr = df[df.treated == 1]
    assert set(tr[unit]) == {treated_unit} and tr[time].min() == start
    assert tr[time].max() == df[time].max()


def test_mc_keeps_the_convex_estimate_when_its_rank_refit_has_no_minimum() -> None:
    # a Basque replication (10 of 18 regions treated in the last 10 years): the rank-1 least
    # squares keeps improving while the treated block's imputation runs off, so the refit
    # never settles; MC-NNM reports its convex estimate instead of the run-off one
    from analysis.estimators.mcnnm import REFIT_MAX_ITER, MCNNMEstimator, fit_fe_rank

    L, cov = study.components("basque")
    p = study.draw(L, cov, np.random.default_rng([2508, 13]))
    obs = ~p.W
    taus = []
    for iters in (200, 2000):
        a, b, L1, n = fit_fe_rank(p.Y, obs, 1, max_iter=iters, tol=1e-12)
        assert n == iters  # not settled
        taus.append(float((p.Y - a[0][:, None] - b[0][None, :] - L1[0])[p.W].mean()))
    assert abs(taus[1]) > abs(taus[0]) + 0.5  # running off
    res = MCNNMEstimator(se="none").fit(p).result_
    assert res.details["refit_settled"] is False and res.details["debiased"] is False
    assert abs(res.details["effect_refit"]) > 1.0  # where the refit had run off to
    assert res.details["refit_iterations"] == REFIT_MAX_ITER
    assert res.effect == res.details["effect_convex"]
    assert abs(res.effect) < 0.2
