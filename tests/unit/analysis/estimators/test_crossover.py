"""Crossover (blackout) two-way estimator and clustered difference in means."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import InferenceError, PanelError
from analysis.estimators.crossover import CrossoverEstimator, DifferenceInMeansEstimator
from analysis.estimators.registry import make
from analysis.panel import Panel

N, T, PHASE, WASH = 20, 42, 21, 7


def crossover_panel(seed: int, blackout: bool = True, tau: float = 1.0) -> Panel:
    """AB/BA crossover; the effect builds up over 5 periods after a switch and decays likewise."""
    rng = np.random.default_rng(seed)
    A = rng.permutation(N) < N // 2
    W = np.zeros((N, T), bool)
    W[A, :PHASE] = True
    W[~A, PHASE:] = True
    since = np.concatenate([np.arange(PHASE), np.arange(T - PHASE)])
    ramp = np.minimum(since / 5, 1.0)[None]
    decay = np.concatenate([np.zeros(PHASE), np.maximum(1 - np.arange(T - PHASE) / 5, 0)])[None]
    Y = (
        2 * rng.normal(size=(N, 1))
        + np.sin(np.arange(T))[None]
        + 0.5 * rng.normal(size=(N, T))
        + tau * W * ramp
        + tau * (~W) * decay * A[:, None]
    )
    B = np.zeros((N, T), bool)
    if blackout:
        B[:, :WASH] = True
        B[:, PHASE : PHASE + WASH] = True
    return Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=B)


def test_blackout_removes_carryover_bias_and_covers() -> None:
    est, cover, naive = [], [], []
    for seed in range(100):
        r = CrossoverEstimator().fit(crossover_panel(seed)).result_
        est.append(r.effect)
        lo, hi = r.conf_int()
        cover.append(lo <= 1.0 <= hi)
        naive.append(CrossoverEstimator(se="none").fit(crossover_panel(seed, False)).result_.effect)
    assert abs(np.mean(est) - 1.0) < 0.03  # Monte-Carlo SE about 0.006
    assert np.mean(naive) < 0.9  # without washout the ramp-up biases towards zero
    assert 0.88 <= np.mean(cover) <= 0.99


def test_difference_in_means_random_days() -> None:
    cover_cell, se_unit, se_cell, est = [], [], [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        W = rng.random((N, T)) < 0.5
        Y = rng.normal(size=(N, 1)) + rng.normal(size=(N, T)) + 0.5 * W
        p = Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W))
        c = DifferenceInMeansEstimator(cluster="cell").fit(p).result_
        u = DifferenceInMeansEstimator().fit(p).result_
        lo, hi = c.conf_int()
        cover_cell.append(lo <= 0.5 <= hi)
        se_cell.append(c.se)
        se_unit.append(u.se)
        est.append(c.effect)
    assert abs(np.mean(est) - 0.5) < 0.02
    assert 0.92 <= np.mean(cover_cell) <= 0.98
    # unit effects are balanced out by the randomisation, so both SEs agree with the spread
    assert np.mean(se_cell) == pytest.approx(np.std(est), rel=0.15)
    assert np.mean(se_unit) == pytest.approx(np.std(est), rel=0.2)


def test_invariances() -> None:
    p = crossover_panel(0)
    base = CrossoverEstimator().fit(p).result_
    shifted = CrossoverEstimator().fit(p.with_outcome(p.Y + 3 * np.cos(np.arange(T))[None]))
    assert shifted.result_.effect == pytest.approx(base.effect, abs=1e-8)
    scaled = CrossoverEstimator().fit(p.with_outcome(-4 * p.Y)).result_
    assert scaled.effect == pytest.approx(-4 * base.effect, rel=1e-8)
    assert scaled.se == pytest.approx(4 * base.se, rel=1e-8)
    plus = CrossoverEstimator().fit(p.with_outcome(p.Y + 2.0 * p.W)).result_
    assert plus.effect == pytest.approx(base.effect + 2.0, abs=1e-8)


def test_errors() -> None:
    p = crossover_panel(0)
    with pytest.raises(PanelError):
        CrossoverEstimator().fit(p.with_treatment(np.zeros((N, T), bool)))
    with pytest.raises(InferenceError):
        CrossoverEstimator(se="bootstrap").fit(p)
    with pytest.raises(ValueError, match="cluster"):
        DifferenceInMeansEstimator(cluster="week").fit(p)
    # every unit treated in every usable cell of a period and never otherwise: no contrast
    W = np.zeros((N, T), bool)
    W[:, 30:] = True
    with pytest.raises(PanelError, match="does not vary"):
        CrossoverEstimator().fit(p.with_treatment(W))
    assert isinstance(make("crossover"), CrossoverEstimator)
    assert isinstance(make("dm"), DifferenceInMeansEstimator)
