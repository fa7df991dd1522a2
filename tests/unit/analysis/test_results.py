"""The one inference path: every interval and p-value follows from effect, se and df."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.estimators.crossover import CrossoverEstimator, DifferenceInMeansEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult

# Student t and normal quantiles from published tables (not computed by the code under test)
T5_975, T5_95, T5_995 = 2.570582, 2.015048, 4.032143
Z_975, Z_95 = 1.959964, 1.644854


@pytest.mark.parametrize(
    "alpha, q_t5, q_z", [(0.05, T5_975, Z_975), (0.10, T5_95, Z_95), (0.01, T5_995, 2.575829)]
)
def test_conf_int_is_effect_plus_minus_the_reference_quantile_at_every_alpha(
    alpha: float, q_t5: float, q_z: float
) -> None:
    t5 = EstimateResult("x", effect=1.0, se=0.5, n_units=3, n_periods=2, df=5.0)
    z = EstimateResult("x", effect=1.0, se=0.5, n_units=3, n_periods=2)
    assert t5.conf_int(alpha) == pytest.approx((1.0 - q_t5 * 0.5, 1.0 + q_t5 * 0.5), abs=1e-6)
    assert z.conf_int(alpha) == pytest.approx((1.0 - q_z * 0.5, 1.0 + q_z * 0.5), abs=1e-6)


def test_pvalue_against_any_value_and_the_summary_frame() -> None:
    r = EstimateResult("dm", effect=2.0, se=0.5, n_units=10, n_periods=4, df=5.0)
    # |2 - 0.99| / 0.5 = 2.02 ~ the t(5) 95% quantile: p ~ 0.10
    assert r.pvalue(value=2.0 - T5_95 * 0.5) == pytest.approx(0.10, abs=1e-6)
    assert r.pvalue(value=2.0) == pytest.approx(1.0)
    frame = r.summary_frame(alpha=0.10, value=1.0)
    row = frame.loc["dm"]
    assert row["stat"] == pytest.approx(2.0)
    assert row["df"] == 5.0
    # 90% interval from the t(5) table; two-sided p of t = 2 with 5 df is 0.10194
    assert row["ci_lower"] == pytest.approx(2.0 - T5_95 * 0.5, abs=1e-6)
    assert row["ci_upper"] == pytest.approx(2.0 + T5_95 * 0.5, abs=1e-6)
    assert row["pvalue"] == pytest.approx(0.10194, abs=1e-5)


def test_a_randomisation_pvalue_answers_only_the_zero_null() -> None:
    r = EstimateResult("ht", 1.0, 0.5, 3, 2, pvalue_randomization=0.03)
    assert r.pvalue() == 0.03
    assert r.pvalue(value=1.0) == pytest.approx(1.0)


def test_alpha_outside_the_unit_interval_is_refused() -> None:
    r = EstimateResult("x", 1.0, 0.5, 3, 2)
    with pytest.raises(ValueError, match="alpha"):
        r.conf_int(2.0)


def _switchback_panel(seed: int, groups: bool = False) -> Panel:
    rng = np.random.default_rng(seed)
    N, T = 12, 10
    W = rng.random((N, T)) < 0.5
    Y = 5.0 + rng.normal(size=(N, 1)) + rng.normal(size=(N, T)) + 1.0 * W
    return Panel(
        Y=Y,
        W=W,
        units=np.arange(N),
        times=np.arange(T),
        blackout=np.zeros((N, T), bool),
        probability=np.full((N, T), 0.5),
        groups=np.repeat(np.array(["a", "b", "c", "d"]), 3) if groups else None,
    )


def test_dm_and_crossover_record_their_t_reference_in_df() -> None:
    p = _switchback_panel(0)
    dm = DifferenceInMeansEstimator(correction="cr1").fit(p).result
    assert dm.df == 11.0  # 12 product clusters
    cr2 = DifferenceInMeansEstimator().fit(p).result
    assert cr2.df is not None and 5.0 < cr2.df < 11.0
    lo, hi = dm.conf_int(0.2)
    q = (hi - dm.effect) / dm.se
    assert q == pytest.approx(1.363430, rel=1e-6)  # t(11) 90% quantile, from a table
    xo = CrossoverEstimator().fit(p).result
    assert xo.df == 11.0


def test_dm_clusters_by_class_when_asked() -> None:
    p = _switchback_panel(1, groups=True)
    r = DifferenceInMeansEstimator(cluster="class", correction="cr1").fit(p).result
    assert r.df == 3.0 and r.se_method == "cluster_class"
    unit = DifferenceInMeansEstimator(cluster="unit").fit(p).result
    assert r.effect == pytest.approx(unit.effect, rel=1e-12)  # the same point; sums in another order
    with pytest.raises(ValueError, match="class"):
        DifferenceInMeansEstimator(cluster="class").fit(_switchback_panel(1))


def test_dm_compares_only_the_cells_the_design_randomised() -> None:
    p = _switchback_panel(2)
    P = np.array(p.probability)
    P[:, :3] = 0.0  # a pre-period: nobody could be treated
    W = np.array(p.W)
    W[:, :3] = False
    Y = np.array(p.Y)
    Y[:, :3] += 100.0  # would pull the control mean up if the pre-period counted
    shifted = Panel(Y, W, p.units, p.times, p.blackout, probability=P)
    r = DifferenceInMeansEstimator().fit(shifted).result
    post = Panel(Y[:, 3:], W[:, 3:], p.units, p.times[3:], p.blackout[:, 3:], P[:, 3:])
    assert r.effect == pytest.approx(DifferenceInMeansEstimator().fit(post).result.effect)
    assert math.isfinite(r.se)


def _brute_force_cr2(y: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """CR2 variance and Imbens-Kolesar df of the DM slope, from the textbook matrices."""
    X = np.column_stack([np.ones_like(y), w.astype(float)])
    XtX_inv = np.linalg.inv(X.T @ X)
    beta = XtX_inv @ X.T @ y
    e = y - X @ beta
    H = X @ XtX_inv @ X.T
    n = len(y)
    ell = np.array([0.0, 1.0])
    Q = []
    var = 0.0
    for c in np.unique(g):
        idx = np.flatnonzero(g == c)
        M = np.eye(len(idx)) - H[np.ix_(idx, idx)]
        vals, vecs = np.linalg.eigh(M)
        A = vecs @ np.diag(vals**-0.5) @ vecs.T
        row = ell @ XtX_inv @ X[idx].T @ A  # this cluster's weights on its residuals
        var += float(row @ e[idx]) ** 2
        q = np.zeros(n)
        q[idx] = row
        Q.append(q)
    Qm = np.array(Q).T
    B = Qm.T @ (np.eye(n) - H) @ Qm
    return var, float(np.trace(B) ** 2 / np.trace(B @ B))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cr2_and_its_degrees_of_freedom_equal_the_textbook_matrices(seed: int) -> None:
    from analysis.estimators.crossover import cr2_variance

    rng = np.random.default_rng(seed)
    n_clusters = 9
    g = np.repeat(np.arange(n_clusters), rng.integers(2, 6, size=n_clusters))
    w = rng.random(len(g)) < 0.4
    w[:2] = [True, False]
    w[-2:] = [True, False]  # both arms in at least two clusters
    y = rng.normal(size=len(g)) + 2.0 * w
    var_ref, df_ref = _brute_force_cr2(y, w, g)
    resid = np.where(w, y - y[w].mean(), y - y[~w].mean())
    var, df = cr2_variance(g, w, resid, n_clusters)
    assert var == pytest.approx(var_ref, rel=1e-10)
    assert df == pytest.approx(df_ref, rel=1e-10)


def test_cr2_widens_the_interval_when_one_arm_has_few_clusters() -> None:
    # 3 treated products among 30, each product entirely in one arm (as in a triggered design)
    rng = np.random.default_rng(5)
    N, T = 30, 8
    W = np.zeros((N, T), bool)
    W[:3] = True
    Y = rng.normal(size=(N, T)) + rng.normal(size=(N, 1))
    p = Panel(Y, W, np.arange(N), np.arange(T), np.zeros((N, T), bool), np.full((N, T), 0.5))
    cr1 = DifferenceInMeansEstimator(correction="cr1").fit(p).result
    cr2 = DifferenceInMeansEstimator().fit(p).result
    assert cr1.df == 29.0
    assert cr2.se > cr1.se and cr2.df is not None and cr2.df < 5  # few treated clusters
    lo1, hi1 = cr1.conf_int()
    lo2, hi2 = cr2.conf_int()
    assert hi2 - lo2 > 1.3 * (hi1 - lo1)
