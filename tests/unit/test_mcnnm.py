"""MC-NNM: known-effect recovery, invariances and input errors."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import InferenceError, PanelError
from analysis.estimators.mcnnm import MCNNMEstimator
from analysis.estimators.registry import make
from analysis.panel import Panel


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
