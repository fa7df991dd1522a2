"""Switchback HT lag-p estimator on the design's optimal points: exact unbiasedness by enumeration of the
design, conservativeness of the variance bound, randomisation test, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.errors import PanelError
from analysis.estimators.registry import make
from analysis.estimators.switchback import SwitchbackHTEstimator
from analysis.panel import Panel
from controller.designs import randomisation_points as optimal_switchback_points

DELTA = np.array([1.0, 0.6, 0.4])  # carryover of order m = 2; lag-2 effect = 2.0


def outcomes(W: np.ndarray, mu: np.ndarray) -> np.ndarray:
    Y = np.broadcast_to(mu, W.shape).astype(float).copy()
    for lag, d in enumerate(DELTA):
        Y[:, lag:] += d * W[:, : W.shape[1] - lag]
    return Y


def panel(Y: np.ndarray, W: np.ndarray, blackout: np.ndarray | None = None) -> Panel:
    N, T = W.shape
    return Panel(
        Y=Y,
        W=W,
        units=np.arange(N),
        times=np.arange(T),
        blackout=np.zeros((N, T), bool) if blackout is None else blackout,
        probability=np.full((N, T), 0.5),
    )


def test_exactly_unbiased_for_p_equal_m_and_biased_for_small_p() -> None:
    T, m = 12, 2  # 4 randomisation points: 16 paths per unit, 256 per pair
    pts = optimal_switchback_points(T, m)
    is_pt = np.zeros(T, bool)
    is_pt[pts] = True
    block = np.cumsum(is_pt) - 1
    mu = 5.0 + np.random.default_rng(1).normal(size=(1, T))
    by_p: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for c1 in itertools.product([False, True], repeat=len(pts)):
        for c2 in itertools.product([False, True], repeat=len(pts)):
            W = np.vstack([np.array(c1)[block], np.array(c2)[block]])
            Y = outcomes(W, mu)
            for p in by_p:
                r = SwitchbackHTEstimator(p, randomization_points=pts, se="none")
                by_p[p].append(r.fit(panel(Y, W)).result_.effect)
    assert np.mean(by_p[2]) == pytest.approx(DELTA.sum(), abs=1e-10)
    assert abs(np.mean(by_p[1]) - DELTA.sum()) > 0.1
    assert abs(np.mean(by_p[0]) - DELTA.sum()) > 0.3


def test_variance_bound_is_conservative_over_the_design() -> None:
    T, m = 12, 2  # 4 randomisation points: 16 paths per unit, 256 per pair
    pts = optimal_switchback_points(T, m)
    is_pt = np.zeros(T, bool)
    is_pt[pts] = True
    block = np.cumsum(is_pt) - 1
    mu = 5.0 + np.random.default_rng(2).normal(size=(2, T))
    est, bound = [], []
    for c1 in itertools.product([False, True], repeat=len(pts)):
        for c2 in itertools.product([False, True], repeat=len(pts)):
            W = np.vstack([np.array(c1)[block], np.array(c2)[block]])
            r = SwitchbackHTEstimator(2, randomization_points=pts).fit(panel(outcomes(W, mu), W))
            est.append(r.result_.effect)
            bound.append(r.result_.se**2)
    assert np.mean(bound) >= np.var(est)


def test_randomisation_test_and_blackout() -> None:
    rng = np.random.default_rng(0)
    N, T = 10, 40
    W = rng.random((N, T)) < 0.5
    Y = 3.0 + rng.normal(size=(N, T)) + 2.0 * W
    res = SwitchbackHTEstimator(0, se="randomization", n_draws=199, seed=1).fit(panel(Y, W))
    assert res.result_.pvalue() == pytest.approx(1 / 200)
    B = np.zeros((N, T), bool)
    B[:, :5] = True
    Y2 = Y.copy()
    Y2[B] = 1e6
    a = SwitchbackHTEstimator(0).fit(panel(Y, W, B)).result_.effect
    b = SwitchbackHTEstimator(0).fit(panel(Y2, W, B)).result_.effect
    assert a == b


def test_errors() -> None:
    W = np.zeros((2, 8), bool)
    W[0, 4:] = True
    Y = np.ones((2, 8))
    p = Panel(Y=Y, W=W, units=np.arange(2), times=np.arange(8), blackout=np.zeros_like(W))
    with pytest.raises(PanelError, match="probabilit"):
        SwitchbackHTEstimator().fit(p)
    with pytest.raises(PanelError, match="randomisation points"):
        SwitchbackHTEstimator(randomization_points=[0, 2], probability=0.5).fit(p)
    with pytest.raises(PanelError, match="lag p"):
        SwitchbackHTEstimator(8, probability=0.5).fit(p)
    fixed = Panel(
        Y=Y,
        W=W,
        units=np.arange(2),
        times=np.arange(8),
        blackout=np.zeros_like(W),
        probability=np.where(W, 1.0, 0.5),
    )
    with pytest.raises(PanelError, match="0 < P"):
        SwitchbackHTEstimator().fit(fixed)
    assert isinstance(make("ht"), SwitchbackHTEstimator)
