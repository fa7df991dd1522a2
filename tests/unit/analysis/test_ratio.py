"""Relative effects with honest intervals (analysis.ratio): Fieller's interval on the arm
means' cluster-robust covariance, validated by coverage over seeded simulations, next to the
naive interval that divides the absolute one by a point baseline."""

from __future__ import annotations

import math

import pytest

from analysis.estimators.crossover import DifferenceInMeansEstimator
from analysis.pricing_dgp import simulate_relative_panel
from analysis.ratio import fieller, relative_fields


def test_the_bounds_are_where_the_pivot_meets_its_quantile() -> None:
    a, b, vaa, vbb, vab, q = 12.0, 10.0, 0.8, 0.5, 0.3, 2.1
    r = fieller(a, b, vaa, vbb, vab, q)
    assert r.bounded and r.low < a / b < r.high
    for bound in (r.low, r.high):  # (a - R b)^2 = q^2 var(a - R b) on the boundary
        lhs = (a - bound * b) ** 2
        rhs = q * q * (vaa - 2 * bound * vab + bound * bound * vbb)
        assert lhs == pytest.approx(rhs, rel=1e-9)
    inside = (a - 1.2 * b) ** 2 <= q * q * (vaa - 2 * 1.2 * vab + 1.2**2 * vbb)
    assert inside == (r.low <= 1.2 <= r.high)


def test_a_known_denominator_gives_the_plain_interval_divided_by_it() -> None:
    r = fieller(12.0, 10.0, 0.81, 0.0, 0.0, 1.96)
    assert (r.low, r.high) == pytest.approx(((12 - 1.96 * 0.9) / 10, (12 + 1.96 * 0.9) / 10))


def test_a_denominator_not_distinguishable_from_zero_gives_no_bounded_interval() -> None:
    r = fieller(5.0, 1.0, 1.0, 0.5, 0.0, 2.0)  # g = 4 * 0.5 / 1 = 2
    assert not r.bounded and r.g == pytest.approx(2.0)
    assert "not distinguishable from zero" in (r.note or "")
    assert not fieller(5.0, 0.0, 1.0, 0.5, 0.0, 2.0).bounded  # and never NaN bounds


@pytest.mark.parametrize(
    ("n", "t", "delta", "naive_at_most"),
    [
        (40, 28, 0.08, 0.94),  # measured: Fieller 0.945, naive 0.930
        (10, 6, 0.5, 0.93),  # a large effect on a small, noisy control mean: 0.955, 0.915
    ],
)
def test_the_relative_interval_covers_and_the_naive_one_does_not(n, t, delta, naive_at_most):
    """400 seeded experiments of independent cells (so the cell-level SE is the exact one):
    Fieller's interval covers the true relative effect at the nominal 95% (Monte Carlo SE
    1.1 points); the absolute interval divided by the control mean does not."""
    fieller_hits = naive_hits = bounded = 0
    for seed in range(400):
        panel, _ = simulate_relative_panel(seed, n, t, delta, 0.0)
        result = DifferenceInMeansEstimator(cluster="cell").fit(panel).result
        rel = relative_fields(result)
        lo, hi = result.conf_int()
        m0 = result.details["mean_control"]
        naive_hits += lo / m0 <= delta <= hi / m0
        if rel["relative_ci_low"] is not None:
            bounded += 1
            fieller_hits += rel["relative_ci_low"] <= delta <= rel["relative_ci_high"]
    assert bounded == 400
    assert 0.93 <= fieller_hits / 400 <= 0.97
    assert naive_hits / 400 <= naive_at_most < fieller_hits / 400


def test_an_estimator_without_arm_means_says_so_instead_of_nan() -> None:
    from analysis.results import EstimateResult

    fields = relative_fields(EstimateResult("ht", 1.0, 0.5, 10, 5))
    assert fields["relative_effect"] is None and fields["relative_ci_low"] is None
    assert "no relative form" in str(fields["relative_note"])
    assert not any(isinstance(v, float) and math.isnan(v) for v in fields.values())


def test_a_loss_in_control_has_no_relative_change() -> None:
    # profit -720 in control and -824 when treated: a deeper loss; m1/m0 - 1 would be +14%
    from analysis.results import EstimateResult

    details = {"mean_treated": -824.0, "mean_control": -720.0, "mean_covariance": (25.0, 16.0, 8.0)}
    fields = relative_fields(EstimateResult("dm", -104.0, 5.0, 10, 5, df=9.0, details=details))
    assert fields["relative_effect"] is None and fields["relative_ci_low"] is None
    assert fields["control_mean"] == -720.0 and "negative" in str(fields["relative_note"])
