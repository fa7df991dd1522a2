"""Staggered adoption: Callaway & Sant'Anna group-time ATTs versus pooled TWFE."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import PanelError
from analysis.estimators.registry import make
from analysis.estimators.staggered import StaggeredDIDEstimator
from analysis.panel import Panel

N, T = 60, 20
COHORTS = (5, 10, 15, T)  # T = never treated


def effect(start: np.ndarray) -> np.ndarray:
    """Heterogeneous and dynamic: grows 0.3 per period since start, doubled for cohort 5."""
    e = np.arange(T)[None] - start[:, None]
    return np.where(e >= 0, (1 + 0.3 * e) * (1 + (start[:, None] == 5)), 0.0)


def simulate(seed: int) -> tuple[Panel, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = rng.choice(COHORTS, size=N)
    W = np.arange(T)[None] >= start[:, None]
    tau = effect(start)
    Y = rng.normal(size=(N, 1)) + np.linspace(0, 2, T)[None] + rng.normal(size=(N, T)) + tau
    return Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros_like(W)), tau


def population_att() -> float:
    # cohorts equally likely: the cell-weighted average of the (g, t) effects
    cells = [(1 + 0.3 * (t - g)) * (1 + (g == 5)) for g in COHORTS[:-1] for t in range(g, T)]
    return float(np.mean(cells))


def test_unbiased_where_pooled_twfe_is_not() -> None:
    bias, bias_twfe = [], []
    for seed in range(60):
        p, tau = simulate(seed)
        r = StaggeredDIDEstimator(se="none").fit(p).result_
        truth = tau[p.W].mean()
        bias.append(r.effect - truth)
        bias_twfe.append(r.details["twfe_static"] - truth)
    assert abs(np.mean(bias)) < 0.1  # Monte-Carlo SE about 0.03
    assert np.mean(bias_twfe) < -1.0


def test_group_time_att_is_the_two_by_two_did() -> None:
    p, _ = simulate(0)
    r = StaggeredDIDEstimator(se="none").fit(p).result_
    start = np.where(p.W.any(axis=1), p.W.argmax(axis=1), T)
    g, t = 10, 12
    d = p.Y[:, t] - p.Y[:, g - 1]
    ref = d[start == g].mean() - d[start > t].mean()
    got = [x["att"] for x in r.details["group_time"] if x["cohort"] == g and x["period"] == t]
    assert got == [pytest.approx(ref, abs=1e-12)]


def test_bootstrap_coverage_of_population_att() -> None:
    truth = population_att()
    cover = []
    for seed in range(100):
        p, _ = simulate(seed)
        lo, hi = StaggeredDIDEstimator(n_boot=200, seed=seed).fit(p).result_.conf_int()
        cover.append(lo <= truth <= hi)
    assert 0.88 <= np.mean(cover) <= 0.99


def test_errors() -> None:
    p, _ = simulate(0)
    W = p.W.copy()
    W[0] = False
    W[0, 8:12] = True  # on for four periods, then off again
    with pytest.raises(PanelError, match="stops being treated"):
        StaggeredDIDEstimator().fit(p.with_treatment(W))
    W = p.W.copy()
    W[0, :] = True
    with pytest.raises(PanelError, match="first period"):
        StaggeredDIDEstimator().fit(p.with_treatment(W))
    with pytest.raises(PanelError, match="ever treated"):
        StaggeredDIDEstimator().fit(p.with_treatment(np.zeros_like(W)))
    assert isinstance(make("staggered"), StaggeredDIDEstimator)
