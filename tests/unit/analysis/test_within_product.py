"""The within-product difference ("fe"): each product compared with itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import InferenceError, PanelError
from analysis.estimators import registry
from analysis.panel import Panel
from analysis.pricing_dgp import simulate_relative_panel


def test_it_recovers_the_effect_covers_and_beats_the_difference_in_means() -> None:
    runs, hits, rel_hits = 200, 0, 0
    errors, se_fe, se_dm = [], [], []
    for seed in range(runs):
        # product levels spread 20x (lognormal SD 0.8): the noise the products' own levels add
        panel, truth = simulate_relative_panel(seed, n=60, t=20, delta=0.10, level_sd=0.8)
        fe = registry.make("fe").fit(panel).result
        dm = registry.make("dm").fit(panel).result
        lo, hi = fe.conf_int(0.05)
        hits += lo <= truth <= hi
        errors.append(fe.effect - truth)
        rel = fe.relative(0.05)
        rel_hits += rel["relative_ci_low"] <= 0.10 <= rel["relative_ci_high"]
        se_fe.append(fe.se)
        se_dm.append(dm.se)
    assert 0.92 <= hits / runs <= 0.985
    assert 0.92 <= rel_hits / runs <= 0.985
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(runs)
    # more precise in nearly every run (the size of the gain: docs/relative-effects.md)
    assert np.mean(np.array(se_fe) < np.array(se_dm)) > 0.9


def test_adding_a_product_level_or_a_day_shock_changes_nothing() -> None:
    panel, _ = simulate_relative_panel(5, n=30, t=14, delta=0.1, level_sd=0.5)
    base = registry.make("fe").fit(panel).result
    shifted = panel.with_outcome(
        panel.Y + np.arange(30)[:, None] * 7.0 + np.sin(np.arange(14))[None, :] * 50.0
    )
    moved = registry.make("fe").fit(shifted).result
    assert moved.effect == pytest.approx(base.effect, abs=1e-8)
    assert moved.se == pytest.approx(base.se, rel=1e-8)


def test_a_design_without_products_in_both_arms_has_no_within_product_difference() -> None:
    df = pd.DataFrame(
        {"unit": np.repeat(["a", "b", "c", "d"], 5), "period": np.tile(range(5), 4),
         "y": np.arange(20.0), "w": np.repeat([1, 0, 1, 0], 5)}
    )  # fmt: skip
    panel = Panel.from_long(df, unit="unit", time="period", outcome="y", treated="w")
    with pytest.raises(PanelError, match="does not randomise within products"):
        registry.make("fe").fit(panel)


def _cluster_switchback(
    rng: np.random.Generator, y0: np.ndarray, lift: np.ndarray, classes: np.ndarray
) -> Panel:
    """One draw of a cluster switchback: every class's arm drawn afresh each period (p = 1/2)."""
    n_classes, T = int(classes.max()) + 1, y0.shape[1]
    W = (rng.random((n_classes, T)) < 0.5)[classes]
    N = classes.size
    return Panel(
        Y=y0 + W * lift[:, None], W=W, units=np.arange(N), times=np.arange(T),
        blackout=np.zeros((N, T), dtype=bool), probability=np.full((N, T), 0.5),
        groups=classes.astype(str),
    )  # fmt: skip


def test_class_period_se_is_a_dense_ols_sandwich_with_cr1_factor() -> None:
    """Reference: OLS on explicit product and period dummies, the sandwich summed over class x
    period clusters, times G / (G - p) with p the rank of the class-periods' own design (W,
    class and period dummies: HC1 on the class-periods), t on G - p."""
    rng = np.random.default_rng(3)
    classes = np.repeat(np.arange(5), 3)  # 5 classes of 3 products
    N, T = classes.size, 8
    y0 = rng.normal(10.0, 3.0, (N, 1)) + rng.normal(0.0, 1.0, (N, T))
    drawn = _cluster_switchback(rng, y0, np.full(N, 1.5), classes)
    blackout = np.zeros((N, T), dtype=bool)
    blackout[[0, 4, 9], [2, 5, 0]] = True  # an unbalanced panel: three washout cells
    panel = Panel(**(vars(drawn) | {"blackout": blackout}))
    fit = registry.make("fe", cluster="class_period").fit(panel).result
    keep = ~blackout.ravel()
    X = np.column_stack(
        [panel.W.ravel().astype(float), np.kron(np.eye(N), np.ones((T, 1))),
         np.kron(np.ones((N, 1)), np.eye(T))[:, 1:]]
    )[keep]  # fmt: skip
    y = panel.Y.ravel()[keep]
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    e = y - X @ beta
    bread = np.linalg.pinv(X.T @ X)
    cluster = (classes[:, None] * T + np.arange(T)[None, :]).ravel()[keep]
    scores = np.array([X[cluster == c].T @ e[cluster == c] for c in np.unique(cluster)])
    G = len(scores)
    p = _class_period_rank(panel.W[::3], np.ones((5, T), dtype=bool))
    assert p == 5 + T  # W, 5 classes, T - 1 periods beyond the first
    V = G / (G - p) * bread @ (scores.T @ scores) @ bread
    assert fit.effect == pytest.approx(beta[0], abs=1e-9)
    assert fit.se == pytest.approx(float(np.sqrt(V[0, 0])), rel=1e-8)
    assert G == 5 * T and fit.df == G - p
    assert fit.se_method == "cluster_class_period"
    # two periods: 10 class-periods, 5 + 2 effects at their level, 3 df
    two = Panel(**(vars(drawn) | {"Y": drawn.Y[:, :2], "W": drawn.W[:, :2],
                                  "times": drawn.times[:2], "blackout": blackout[:, :2] & False,
                                  "probability": drawn.probability[:, :2]}))  # fmt: skip
    switching = int((drawn.W[::3, 0] != drawn.W[::3, 1]).sum())
    assert switching >= 2  # the seed's draw: the SE is estimable
    assert registry.make("fe", cluster="class_period").fit(two).result.df == 10 - 7


def _class_period_rank(W: np.ndarray, present: np.ndarray) -> int:
    """The rank of the class-periods' design: W, a dummy per class and per period (K x T)."""
    K, T = W.shape
    rows = [
        np.concatenate([[float(W[c, t])], np.eye(K)[c], np.eye(T)[t]])
        for c in range(K)
        for t in range(T)
        if present[c, t]
    ]
    return int(np.linalg.matrix_rank(np.array(rows)))


def test_class_period_se_refuses_one_switching_class_and_too_few_class_periods() -> None:
    """An estimate resting on one class's switches has no class x period SE; nor have
    class-periods no more than the effects at their level (a ladder's first looks)."""
    classes = np.repeat(np.arange(4), 2)
    N, T = classes.size, 3
    rng = np.random.default_rng(5)
    y0 = rng.normal(10.0, 3.0, (N, 1)) + rng.normal(0.0, 1.0, (N, T))
    by_class = np.array(
        [[1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=bool
    )  # class 0 alone switches
    one = Panel(
        Y=y0 + by_class[classes], W=by_class[classes], units=np.arange(N), times=np.arange(T),
        blackout=np.zeros((N, T), dtype=bool), probability=np.full((N, T), 0.5),
        groups=classes.astype(str),
    )  # fmt: skip
    with pytest.raises(InferenceError, match="at least 2 classes seen in both arms"):
        registry.make("fe", cluster="class_period").fit(one)
    # two switching classes over two periods: 4 class-periods, 2 + 2 effects at their level
    two_classes = np.repeat(np.arange(2), 2)
    W = np.array([[1, 0], [0, 1]], dtype=bool)[two_classes]
    few = Panel(
        Y=y0[:4, :2] + W, W=W, units=np.arange(4), times=np.arange(2),
        blackout=np.zeros((4, 2), dtype=bool), probability=np.full((4, 2), 0.5),
        groups=two_classes.astype(str),
    )  # fmt: skip
    with pytest.raises(InferenceError, match="4 clusters and 4 effects"):
        registry.make("fe", cluster="class_period").fit(few)
    # the estimate itself stays: without an SE it is still the within-product difference
    assert np.isfinite(
        registry.make("fe", cluster="class_period", se="none").fit(few).result.effect
    )


def _coverage(lift_sd: float, runs: int = 200) -> tuple[float, float, float, float]:
    """Bias over its Monte Carlo SE, coverage of class x period clusters, and their and class
    clusters' mean SE over the estimates' SD, on a cluster switchback of 30 classes of 4
    products over 28 periods whose potential outcomes are fixed (product levels, period
    shocks, AR(1) noise within products, SD 1.4) and only the class x period draws repeat;
    each class has its own lift, drawn with SD ``lift_sd``."""
    rng = np.random.default_rng(11)
    classes = np.repeat(np.arange(30), 4)
    N, T = classes.size, 28
    noise = np.zeros((N, T))
    for t in range(T):
        noise[:, t] = (0.7 * noise[:, t - 1] if t else 0.0) + rng.normal(0.0, 1.0, N)
    y0 = rng.lognormal(2.0, 0.5, (N, 1)) + rng.normal(0.0, 2.0, (1, T)) + noise
    lift = rng.normal(1.0, lift_sd, 30)[classes]
    truth = float(lift.mean())
    est, se_cp, se_c, hits = [], [], [], 0
    for _ in range(runs):
        panel = _cluster_switchback(rng, y0, lift, classes)
        cp = registry.make("fe", cluster="class_period").fit(panel).result
        lo, hi = cp.conf_int(0.05)
        hits += lo <= truth <= hi
        est.append(cp.effect)
        se_cp.append(cp.se)
        se_c.append(registry.make("fe", cluster="class").fit(panel).result.se)
    sd = float(np.std(est, ddof=1))
    bias_z = (float(np.mean(est)) - truth) / (sd / np.sqrt(runs))
    return bias_z, hits / runs, float(np.mean(se_cp)) / sd, float(np.mean(se_c)) / sd


def test_class_period_clusters_are_the_design_variance_with_equal_lifts() -> None:
    """By design: the draws are independent across periods, so class x period clusters cover
    at the nominal rate although the noise is serially correlated within products."""
    bias_z, coverage, ratio_cp, _ = _coverage(lift_sd=0.0)
    assert abs(bias_z) < 3
    assert 0.92 <= coverage <= 0.98
    assert 0.9 <= ratio_cp <= 1.1


def test_class_clusters_count_the_classes_own_effects_as_noise() -> None:
    """The cause of the cluster switchback's wide class-clustered `fe` intervals: each class's
    own effect, fixed by the design, counted as noise once per class. Class x period clusters
    count it once per class-period, where it is small next to the noise; when the lifts'
    spread is as large as the noise they are conservative too (Neyman's term: measured SE /
    SD about 1.36 at lift SD 1.5, class clusters about 4.9)."""
    _, coverage, ratio_cp, ratio_c = _coverage(lift_sd=1.5)
    assert coverage >= 0.95 and ratio_cp > 1.15
    assert ratio_c > 3 * ratio_cp
