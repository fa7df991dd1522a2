"""Anytime-valid confidence sequences under daily peeking."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.confseq import (
    ConfidenceSequence,
    confidence_sequence,
    confidence_sequence_from_sums,
    normal_mixture_radius,
)


def peeking_errors(
    seed: int, reps: int = 1000, days: int = 30, per_day: int = 100
) -> tuple[float, float]:
    """Share of runs in which the truth (0) is excluded at some daily look."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(5, size=(reps, days * per_day))  # heavy-ish tails, variance 5/3
    n = np.arange(1, days + 1) * per_day
    c1 = np.cumsum(x, axis=1)[:, n - 1]
    c2 = np.cumsum(x**2, axis=1)[:, n - 1]
    mean = c1 / n
    se = np.sqrt((c2 / n - mean**2) / n)
    naive = np.mean(np.any(np.abs(mean) > 1.96 * se, axis=1))
    cs = ConfidenceSequence(target_se=float(np.sqrt(5 / 3 / (days * per_day))), intersect=False)
    anytime = np.mean(np.any(np.abs(mean) > cs.radius(se), axis=1))
    return float(naive), float(anytime)


def test_error_under_daily_peeking_stays_below_alpha() -> None:
    naive, anytime = peeking_errors(0)
    assert anytime <= 0.05
    assert naive > 0.10  # the repeated fixed-horizon interval does not keep its 5%


def test_boundary_shape() -> None:
    # wider than the fixed-horizon interval at every look, shrinking as information grows
    cs = ConfidenceSequence(target_se=0.1)
    se = np.array([1.0, 0.5, 0.2, 0.1, 0.05])
    r = cs.radius(se)
    assert np.all(np.diff(r) < 0)
    assert np.all(r > 1.96 * se)
    # the mixture boundary at v solves the Ville bound exactly
    v, rho, alpha = 50.0, 3.0, 0.05
    s = float(normal_mixture_radius(v, rho, alpha))
    assert np.sqrt(rho / (v + rho)) * np.exp(s**2 / (2 * (v + rho))) == pytest.approx(1 / alpha)


def test_running_intersection_is_monotone_and_sums_api() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, size=3000)
    n = np.arange(100, 3001, 100)
    mean, lo, hi = confidence_sequence_from_sums(
        n, np.cumsum(x)[n - 1], np.cumsum(x**2)[n - 1], target_n=3000
    )
    assert mean[-1] == pytest.approx(x.mean())
    assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) <= 0)
    assert lo[-1] <= 1.0 <= hi[-1]
    lo2, hi2 = confidence_sequence(mean, 2.0 / np.sqrt(n))
    assert lo2.shape == (30,) and np.all(lo2 < hi2)


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ConfidenceSequence(target_se=1.0, alpha=1.5)
    with pytest.raises(ValueError, match="target_se"):
        ConfidenceSequence(target_se=0.0)
    with pytest.raises(ValueError, match="positive"):
        ConfidenceSequence(target_se=1.0).radius(np.array([0.1, 0.0]))
    with pytest.raises(ValueError, match="same length"):
        ConfidenceSequence(target_se=1.0).intervals([1.0, 2.0], [0.1])


def few_cluster_errors(
    seed: int, clusters: int = 8, reps: int = 2000, looks: int = 14
) -> tuple[float, float]:
    """Share of runs whose sequence excludes the truth (0) at some look, when each look's
    estimate is the mean of ``clusters`` cluster means and its SE their own spread (t with
    clusters - 1 df): the plain normal-mixture boundary, and the one at the t reference."""
    rng = np.random.default_rng(seed)
    # each cluster's running mean over the looks: a cluster adds a day's data at each look
    days = rng.normal(size=(reps, clusters, looks))
    running = np.cumsum(days, axis=2) / np.arange(1, looks + 1)
    est = running.mean(axis=1)
    se = running.std(axis=1, ddof=1) / np.sqrt(clusters)
    cs = ConfidenceSequence(target_se=float(np.median(se[:, -1])), intersect=False)
    plain = np.mean(np.any(np.abs(est) > cs.radius(se), axis=1))
    with_t = np.mean(np.any(np.abs(est) > cs.radius(se, clusters - 1), axis=1))
    return float(plain), float(with_t)


def test_with_few_clusters_the_boundary_at_the_t_reference_keeps_its_level() -> None:
    plain, with_t = few_cluster_errors(3)
    assert plain > 0.08  # the studentised estimate is t with 7 df, not normal
    assert with_t <= 0.05


def test_the_t_reference_widens_less_as_df_grows() -> None:
    cs = ConfidenceSequence(target_se=1.0)
    plain = float(cs.radius(1.0))
    widths = [float(cs.radius(1.0, df)) for df in (2, 5, 10, 50, 1e9)]
    assert widths == sorted(widths, reverse=True) and widths[0] > 2 * plain
    assert widths[-1] == pytest.approx(plain, rel=1e-6)
    assert float(cs.radius(1.0, None)) == plain and float(cs.radius(1.0, float("inf"))) == plain
    with pytest.raises(ValueError, match="df must be positive"):
        cs.radius(1.0, 0.0)
