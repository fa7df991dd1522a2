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


def _bound_by_pairs(Y: np.ndarray, W: np.ndarray, usable: np.ndarray, pts: np.ndarray,
                    q: np.ndarray, p: int) -> float:  # fmt: skip
    """The variance bound written out pair by pair of windows, one unit at a time: windows
    [t-p, t] and [u-p, u] overlap when they share a randomisation block; the shared blocks'
    coins all landing the same way has probability cap."""
    N, T = Y.shape
    total = 0.0
    for n in range(N):
        block = np.cumsum(pts[n]) - 1
        for t in range(p, T):
            win_t = set(block[t - p : t + 1].tolist())
            pi1_t = float(np.prod(q[n, sorted(win_t)]))
            pi0_t = float(np.prod(1 - q[n, sorted(win_t)]))
            a1_t, a0_t = W[n, t - p : t + 1].all(), (~W[n, t - p : t + 1]).all()
            if not usable[n, t]:
                continue
            y1_t = Y[n, t] / pi1_t if a1_t else 0.0
            y0_t = Y[n, t] / pi0_t if a0_t else 0.0
            g_t = Y[n, t] ** 2 * ((1 / pi1_t if a1_t else 0.0) + (1 / pi0_t if a0_t else 0.0))
            for u in range(p, T):
                win_u = set(block[u - p : u + 1].tolist())
                shared = win_t & win_u
                if not shared or not usable[n, u]:
                    continue
                pi1_u = float(np.prod(q[n, sorted(win_u)]))
                pi0_u = float(np.prod(1 - q[n, sorted(win_u)]))
                a1_u, a0_u = W[n, u - p : u + 1].all(), (~W[n, u - p : u + 1]).all()
                y1_u = Y[n, u] / pi1_u if a1_u else 0.0
                y0_u = Y[n, u] / pi0_u if a0_u else 0.0
                cap1 = float(np.prod(q[n, sorted(win_t | win_u)])) / pi1_t / pi1_u
                cap0 = float(np.prod(1 - q[n, sorted(win_t | win_u)])) / pi0_t / pi0_u
                # 1 - P(both all treated) / (pi_t pi_u) = 1 - prod over the shared blocks
                total += y1_t * (1 - 1 / cap1) * y1_u + y0_t * (1 - 1 / cap0) * y0_u
                total += g_t
    return total


@pytest.mark.parametrize("chunk_cells", [1, 40, 1 << 20])  # a unit per chunk ... all at once
@pytest.mark.parametrize("p, every", [(0, 1), (1, 1), (1, 3), (2, 4), (3, 2)])
def test_the_banded_bound_equals_the_bound_written_pair_by_pair(
    p: int, every: int, chunk_cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit sums over chunks of units (each unit's bound alone); whatever the chunks, the
    bound is the pair-by-pair one and the estimate the HT sum written out below."""
    import analysis.estimators.switchback as sb

    monkeypatch.setattr(sb, "_CHUNK_CELLS", chunk_cells)
    rng = np.random.default_rng(10 * p + every)
    N, T = 7, 16
    pts = np.zeros((N, T), bool)
    for n in range(N):  # each unit its own block lengths around `every`
        k = 0
        while k < T:
            pts[n, k] = True
            k += int(rng.integers(1, 2 * every + 1))
    n_blocks = pts.sum(axis=1)
    q = np.full((N, T), 0.5)
    for n in range(N):
        q[n, : n_blocks[n]] = rng.uniform(0.2, 0.8, n_blocks[n])
    block = np.cumsum(pts, axis=1) - 1
    coins = rng.random((N, T)) < q  # one coin per block
    W = coins[np.arange(N)[:, None], block]
    Y = 5.0 + rng.normal(size=(N, T)) + 2.0 * W
    blackout = rng.random((N, T)) < 0.1
    P = q[np.arange(N)[:, None], block]
    pan = Panel(Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=blackout, probability=P)
    res = SwitchbackHTEstimator(p, randomization_points=pts).fit(pan).result_
    by_pairs = _bound_by_pairs(Y, W, ~blackout, pts, q, p)
    assert res.n_cells == int((~blackout[:, p:]).sum())
    assert res.se**2 * res.n_cells**2 == pytest.approx(by_pairs, rel=1e-10)
    ht = 0.0  # sum over usable windows of Y/pi1 (all treated) - Y/pi0 (all control)
    for n in range(N):
        for t in range(p, T):
            if blackout[n, t]:
                continue
            win = sorted(set(block[n, t - p : t + 1].tolist()))
            if W[n, t - p : t + 1].all():
                ht += Y[n, t] / float(np.prod(q[n, win]))
            elif not W[n, t - p : t + 1].any():
                ht -= Y[n, t] / float(np.prod(1 - q[n, win]))
    assert res.effect == pytest.approx(ht / res.n_cells, rel=1e-12)
    usable = ~blackout[:, p:]
    windows = np.lib.stride_tricks.sliding_window_view(W, p + 1, axis=1)
    assert res.details["n_all_treated_windows"] == int((windows.all(axis=2) & usable).sum())
    assert res.details["n_all_control_windows"] == int((~windows.any(axis=2) & usable).sum())
    # the randomisation test ties the observed path with itself whatever the chunks: a
    # design whose every draw is the observed one gives p = 1
    fixed = np.where(q > 0.5, 1 - 1e-12, 1e-12)[np.arange(N)[:, None], block]
    forced = Panel(
        Y=Y * 1e6, W=fixed > 0.5, units=np.arange(N), times=np.arange(T), blackout=blackout,
        probability=fixed,
    )  # fmt: skip
    rt = SwitchbackHTEstimator(p, randomization_points=pts, se="randomization", n_draws=20)
    assert rt.fit(forced).result_.pvalue_randomization == 1.0


def test_windows_far_apart_do_not_overflow_the_bound() -> None:
    """A unit redrawn daily at a tiny probability next to one drawn once: the pairs of windows
    that share no block must not be exponentiated (exp of +13.8 per block overflows at ~51)."""
    N, T, p = 2, 80, 1
    pts = np.zeros((N, T), bool)
    pts[0, 0] = True  # one block
    pts[1, :] = True  # a block per period
    q = np.full((N, T), 1e-6)
    q[0, 0] = 0.5
    rng = np.random.default_rng(3)
    block = np.cumsum(pts, axis=1) - 1
    coins = rng.random((N, T)) < q
    coins[0, 0] = True
    W = coins[np.arange(N)[:, None], block]
    Y = 5.0 + rng.normal(size=(N, T))
    P = q[np.arange(N)[:, None], block]
    pan = Panel(
        Y=Y, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros((N, T), bool),
        probability=P,
    )  # fmt: skip
    res = SwitchbackHTEstimator(p, randomization_points=pts).fit(pan).result_  # warnings = errors
    by_pairs = _bound_by_pairs(Y, W, np.ones((N, T), bool), pts, q, p)
    assert np.isfinite(res.se)
    assert res.se**2 * res.n_cells**2 == pytest.approx(by_pairs, rel=1e-10)


# --------------------------------------------------------------------------- Hajek form
def _random_switchback(seed: int, N: int = 40, T: int = 24, m: int = 2):  # type: ignore[no-untyped-def]
    """Products with their own levels and noise on the optimal design for order m, carryover
    DELTA (lag-2 effect 2.0)."""
    rng = np.random.default_rng(seed)
    pts = optimal_switchback_points(T, m)
    is_pt = np.zeros(T, bool)
    is_pt[pts] = True
    block = np.cumsum(is_pt) - 1
    coins = rng.random((N, len(pts))) < 0.5
    W = coins[:, block]
    mu = rng.uniform(5.0, 40.0, size=(N, 1)) + rng.normal(0.0, 2.0, size=(N, T))
    return outcomes(W, mu), W, pts


def test_hajek_recovers_the_lag_m_effect_and_covers_where_a_plain_comparison_does_not() -> None:
    hits, errors, naive = 0, [], []
    runs = 300
    for seed in range(runs):
        Y, W, pts = _random_switchback(seed)
        r = make("hajek", p=2, randomization_points=pts).fit(panel(Y, W)).result_
        lo, hi = r.conf_int()
        hits += lo <= DELTA.sum() <= hi
        errors.append(r.effect - DELTA.sum())
        naive.append(Y[W].mean() - Y[~W].mean() - DELTA.sum())
    mcse = np.std(errors) / np.sqrt(runs)
    assert abs(np.mean(errors)) < 3 * mcse  # the lag-2 effect, 2.0
    assert 0.92 <= hits / runs <= 0.98  # 300 runs: a nominal 0.95 has an MC SE of 0.013
    # the current-arm comparison counts the other arm's carryover: far off the lag-2 effect
    assert np.mean(naive) < -0.4


def test_hajek_does_not_move_with_the_outcomes_level_and_beats_ht_on_spread() -> None:
    Y, W, pts = _random_switchback(7)
    hajek = make("hajek", p=2, randomization_points=pts)
    ht = make("ht", p=2, randomization_points=pts)
    a, b = hajek.fit(panel(Y, W)).result_, hajek.fit(panel(Y + 100.0, W)).result_
    assert b.effect == pytest.approx(a.effect, abs=1e-9)
    assert b.se == pytest.approx(a.se, rel=1e-9)
    shifted = ht.fit(panel(Y + 100.0, W)).result_
    assert abs(shifted.effect - ht.fit(panel(Y, W)).result_.effect) > 1.0  # HT is not
    assert a.se < 0.5 * ht.fit(panel(Y, W)).result_.se
    assert a.details["mean_treated"] - a.details["mean_control"] == pytest.approx(a.effect)
    assert a.df == a.details["clusters"] - 1 == 39
    assert a.relative()["relative_effect"] == pytest.approx(
        a.details["mean_treated"] / a.details["mean_control"] - 1.0
    )


def test_hajek_needs_both_arms_over_a_whole_window() -> None:
    T = 12
    pts = optimal_switchback_points(T, 2)
    W = np.zeros((3, T), bool)
    with pytest.raises(PanelError, match="treated over a whole window"):
        make("hajek", p=2, randomization_points=pts).fit(panel(np.ones((3, T)), W))
