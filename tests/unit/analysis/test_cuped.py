"""Regression adjustment on each product's baseline ("cuped") and the regression's clustered
covariance it reports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis.errors import PanelError
from analysis.estimators import registry
from analysis.estimators.crossover import cr1_mean_covariance, cr2_mean_covariance
from analysis.estimators.cuped import baseline_cells, shrunk_baseline
from analysis.inference import cluster_covariance
from analysis.panel import Panel


def staggered_panel(
    seed: int, n: int = 60, t: int = 28, window: int = 7, effect: float = 0.10
) -> tuple[Panel, float]:
    """Products with levels spread tenfold, each randomised (p = 1/2) for ``window`` periods
    from a random period, as a triggered design does; Poisson sales, +10% under treatment.
    Returns the panel and the true mean effect over the randomised cells."""
    rng = np.random.default_rng(seed)
    level = np.exp(rng.normal(np.log(5.0), 0.8, n))
    mu = level[:, None] * np.exp(rng.normal(0.0, 0.1, t))[None, :]
    start = rng.integers(0, t - window + 1, n)
    arm = rng.random(n) < 0.5
    cols = np.arange(t)[None, :]
    inside = (cols >= start[:, None]) & (cols < start[:, None] + window)
    P = np.where(inside, 0.5, 0.0)
    W = inside & arm[:, None]
    Y = rng.poisson(np.where(W, mu * (1 + effect), mu)).astype(float)
    truth = float((mu[inside] * effect).mean())
    panel = Panel(
        Y=Y,
        W=W,
        units=np.array([f"p{i}" for i in range(n)]),
        times=np.arange(t),
        blackout=np.zeros((n, t), bool),
        probability=P,
    )
    return panel, truth


def test_it_recovers_the_effect_covers_and_beats_the_difference_in_means() -> None:
    runs, hits, rel_hits = 300, 0, 0
    errors, ratio = [], []
    for seed in range(runs):
        panel, truth = staggered_panel(seed)
        cu = registry.make("cuped").fit(panel).result
        dm = registry.make("dm").fit(panel).result
        lo, hi = cu.conf_int(0.05)
        hits += lo <= truth <= hi
        rel = cu.relative(0.05)
        rel_hits += rel["relative_ci_low"] <= 0.10 <= rel["relative_ci_high"]
        errors.append(cu.effect - truth)
        ratio.append(cu.se / dm.se)
    assert 0.925 <= hits / runs <= 0.975
    assert 0.925 <= rel_hits / runs <= 0.975
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(runs)
    # the products' levels are most of a difference in means' noise here; the baseline
    # removes most of it (median SE ratio about 0.3 on this market)
    assert np.median(ratio) < 0.5


def test_without_a_baseline_it_is_the_difference_in_means() -> None:
    panel, _ = staggered_panel(3)
    everything = panel.randomised.any(axis=0)
    # randomise every product from the first period: no cell comes before its randomisation
    P = np.where(np.ones_like(panel.Y, bool) & everything[None, :], 0.5, 0.0)
    flat = Panel(Y=panel.Y, W=panel.W, units=panel.units, times=panel.times,
                 blackout=panel.blackout, probability=P)  # fmt: skip
    assert not baseline_cells(flat).any()
    cu = registry.make("cuped").fit(flat).result
    dm = registry.make("dm").fit(flat).result
    assert cu.effect == pytest.approx(dm.effect, abs=1e-10)
    assert cu.se == pytest.approx(dm.se, rel=1e-9)
    assert cu.df == pytest.approx(dm.df, rel=1e-9)


def test_cells_after_a_window_or_never_randomised_are_not_a_baseline() -> None:
    panel, _ = staggered_panel(4)
    base = baseline_cells(panel)
    rand = panel.randomised
    for i in range(panel.n_units):
        first = int(np.argmax(rand[i]))
        assert base[i, :first].all() and not base[i, first:].any()
    # what comes after the window (carryover could reach it) cannot move the estimate
    after = ~base & ~rand
    assert after.any()
    moved = panel.with_outcome(np.where(after, panel.Y * 50.0 + 1000.0, panel.Y))
    a = registry.make("cuped").fit(panel).result
    b = registry.make("cuped").fit(moved).result
    assert b.effect == pytest.approx(a.effect, abs=1e-10)
    assert b.se == pytest.approx(a.se, rel=1e-10)


def test_shifting_or_scaling_the_outcome() -> None:
    panel, _ = staggered_panel(5)
    a = registry.make("cuped").fit(panel).result
    shifted = registry.make("cuped").fit(panel.with_outcome(panel.Y + 100.0)).result
    scaled = registry.make("cuped").fit(panel.with_outcome(panel.Y * 3.0)).result
    assert shifted.effect == pytest.approx(a.effect, abs=1e-8)
    assert shifted.se == pytest.approx(a.se, rel=1e-8)
    assert scaled.effect == pytest.approx(3.0 * a.effect, rel=1e-10)
    assert scaled.se == pytest.approx(3.0 * a.se, rel=1e-10)


def test_shrinkage_follows_how_much_history_a_product_has() -> None:
    # three products, known cells: the grand mean is 4; k = 2 keeps n / (n + 2) of a mean
    Y = np.array([[2.0, 2.0, 2.0, 2.0], [10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    base = np.array([[True, True, True, True], [True, False, False, False], [False] * 4])
    x, info = shrunk_baseline(Y, base, shrink=2.0)
    grand = (8.0 + 10.0) / 5
    assert info["grand_mean"] == pytest.approx(grand)
    assert x[0] == pytest.approx((8.0 + 2 * grand) / 6)
    assert x[1] == pytest.approx((10.0 + 2 * grand) / 3)
    assert x[2] == pytest.approx(grand)  # no history: the grand mean


def test_no_within_product_spread_keeps_own_means_and_gives_the_rest_the_grand_mean() -> None:
    # every product's baseline cells equal (zero sales, say): k = 0, no shrinkage; a product
    # without baseline cells once got 0 / 0 (NaN, with a RuntimeWarning) instead of the grand mean
    Y = np.array([[0.0, 0.0, 5.0], [3.0, 3.0, 1.0], [7.0, 7.0, 7.0]])
    base = np.array([[True, True, False], [True, True, False], [False, False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, info = shrunk_baseline(Y, base)
    assert info["within_variance"] == 0.0 and info["k"] == 0.0
    assert x.tolist() == [0.0, 3.0, 1.5]


def test_empirical_bayes_shrinkage_tracks_the_levels_share_of_the_noise() -> None:
    rng = np.random.default_rng(0)
    n, t = 400, 10
    # true levels with variance 4, cells with noise variance 16: k = 16 / 4 = 4
    Y = rng.normal(0, 2.0, n)[:, None] + rng.normal(0, 4.0, (n, t))
    _, info = shrunk_baseline(Y, np.ones((n, t), bool))
    assert 3.0 < info["k"] < 5.3
    # levels that do not vary: nothing to learn from a product's own history
    flat = rng.normal(0, 4.0, (n, t))
    x, info = shrunk_baseline(flat, np.ones((n, t), bool))
    assert info["k"] > 20


def test_no_probabilities_is_one_sentence() -> None:
    panel, _ = staggered_panel(6)
    bare = Panel(Y=panel.Y, W=panel.W, units=panel.units, times=panel.times,
                 blackout=panel.blackout)  # fmt: skip
    with pytest.raises(PanelError, match="needs the design's probabilities"):
        registry.make("cuped").fit(bare)


# --- the clustered covariance of a regression ---------------------------------------------


def _definition_cr2(
    Z: np.ndarray, e: np.ndarray, labels: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, float]:
    """CR2 and its Imbens-Kolesar df straight from the definitions, with n x n matrices."""
    n, _ = Z.shape
    A = np.linalg.inv(Z.T @ Z)
    H = Z @ A @ Z.T
    meat = np.zeros_like(A)
    Q = np.zeros((n, labels.max() + 1))
    for g in range(labels.max() + 1):
        idx = np.flatnonzero(labels == g)
        mu, U = np.linalg.eigh(np.eye(len(idx)) - H[np.ix_(idx, idx)])
        root = U @ np.diag(mu**-0.5) @ U.T
        s = Z[idx].T @ root @ e[idx]
        meat += np.outer(s, s)
        Q[idx, g] = root @ Z[idx] @ A @ c
    B = Q.T @ (np.eye(n) - H) @ Q
    lam = np.linalg.eigvalsh(B)
    return A @ meat @ A, float(lam.sum() ** 2 / (lam**2).sum())


def test_cr2_of_a_regression_matches_its_definition() -> None:
    rng = np.random.default_rng(1)
    G = 12
    labels = np.repeat(np.arange(G), rng.integers(2, 7, G))
    n = len(labels)
    t = (rng.random(n) < 0.5).astype(float)
    x = rng.normal(size=G)[labels] + 0.3 * rng.normal(size=n)
    Z = np.column_stack([t, 1 - t, t * x, (1 - t) * x])
    y = 1.0 + 0.5 * t + 2.0 * x + rng.standard_t(4, n)
    beta = np.linalg.lstsq(Z, y, rcond=None)[0]
    e = y - Z @ beta
    cov, dfs = cluster_covariance(Z, e, labels, G, "cr2", contrasts=((1.0, -1.0), (1.0, -0.7)))
    for (w0, w1), df in zip(((1.0, -1.0), (1.0, -0.7)), dfs, strict=True):
        V, want_df = _definition_cr2(Z, e, labels, np.array([w0, w1, 0.0, 0.0]))
        assert cov == pytest.approx((V[0, 0], V[1, 1], V[0, 1]), rel=1e-8)
        assert df == pytest.approx(want_df, rel=1e-8)


def test_on_the_two_arms_alone_it_is_the_difference_in_means_covariance() -> None:
    rng = np.random.default_rng(2)
    G = 15
    labels = np.repeat(np.arange(G), 4)
    treated = rng.random(len(labels)) < 0.4
    y = rng.exponential(size=len(labels))
    m1, m0 = y[treated].mean(), y[~treated].mean()
    resid = np.where(treated, y - m1, y - m0)
    Z = np.column_stack([treated, ~treated]).astype(float)
    contrasts = ((1.0, -1.0), (1.0, -m1 / m0))
    got, dfs = cluster_covariance(Z, resid, labels, G, "cr2", contrasts=contrasts)
    want, want_dfs = cr2_mean_covariance(labels, treated, resid, G, contrasts=contrasts)
    assert got == pytest.approx(want, rel=1e-9)
    assert dfs == pytest.approx(want_dfs, rel=1e-9)
    got1, dfs1 = cluster_covariance(Z, resid, labels, G, "cr1")
    want1, df1 = cr1_mean_covariance(labels, treated, resid, G)
    assert got1 == pytest.approx(want1, rel=1e-9)
    assert dfs1 == [df1]


def test_an_arm_of_two_products_keeps_its_plain_mean() -> None:
    panel, _ = staggered_panel(1, n=20)
    two = np.flatnonzero(panel.W.any(axis=1))[:2]
    W = panel.W & np.isin(np.arange(20), two)[:, None]
    few = panel.with_treatment(W)
    cu = registry.make("cuped").fit(few).result
    treated_cells = few.Y[W & few.randomised]
    assert cu.details["slope_treated"] == 0.0
    assert cu.details["mean_treated"] == pytest.approx(treated_cells.mean())
    assert np.isfinite(cu.se) and cu.se > 0
    assert cu.details["slope_control"] != 0.0


def test_an_analyst_runs_it_from_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import typer
    from typer.testing import CliRunner

    from analysis.cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command so "analyze" stays a subcommand
        typer.echo("0")

    panel, _ = staggered_panel(0)
    path = tmp_path / "panel.csv"
    panel.to_long().to_csv(path, index=False)
    cols = ["--unit", "unit", "--time", "time", "--outcome", "outcome", "--treated", "treated"]
    args = ["analyze", str(path), *cols, "--method", "cuped"]
    res = CliRunner().invoke(app, [*args, "--probability", "probability", "--relative", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    direct = registry.make("cuped").fit(panel).result
    assert row["effect"] == pytest.approx(direct.effect)
    assert row["relative_effect"] == pytest.approx(direct.effect / row["control_mean"])
    assert row["relative_ci_low"] < row["relative_effect"] < row["relative_ci_high"]
    # without the design's probabilities there is no telling a baseline: one sentence, exit 2
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "needs the design's probabilities" in res.output
    assert "Traceback" not in res.output


def test_an_arm_of_one_product_is_one_sentence() -> None:
    from analysis.errors import InferenceError

    panel, _ = staggered_panel(1, n=20)
    one = np.flatnonzero(panel.W.any(axis=1))[:1]
    few = panel.with_treatment(panel.W & np.isin(np.arange(20), one)[:, None])
    with pytest.raises(InferenceError, match="treated cells in at least two units"):
        registry.make("cuped").fit(few)


def test_an_arm_whose_history_is_one_products_keeps_its_plain_mean() -> None:
    # every treated product triggered in period 0 (no history: the grand mean) but one:
    # that one alone would determine the slope; the arm keeps its plain mean, and the
    # estimate is published rather than lost to an undefined variance
    panel, _ = staggered_panel(2, n=30)
    P, W = panel.probability.copy(), panel.W.copy()
    treated = np.flatnonzero(W.any(axis=1))
    for i in treated[1:]:
        P[i], W[i] = 0.0, False
        P[i, :7], W[i, :7] = 0.5, True
    assert P[treated[0], 0] == 0.0  # the one with a history
    odd = Panel(Y=panel.Y, W=W, units=panel.units, times=panel.times,
                blackout=panel.blackout, probability=P)  # fmt: skip
    cu = registry.make("cuped").fit(odd).result
    assert cu.details["slope_treated"] == 0.0 and np.isfinite(cu.se)


def test_a_product_never_randomised_has_no_baseline() -> None:
    panel, _ = staggered_panel(3, n=20)
    P, W = panel.probability.copy(), panel.W.copy()
    P[0], W[0] = 0.0, False  # e.g. a matched control: in the panel, in no comparison
    bare = Panel(Y=panel.Y, W=W, units=panel.units, times=panel.times,
                 blackout=panel.blackout, probability=P)  # fmt: skip
    assert not baseline_cells(bare)[0].any()
    a = registry.make("cuped").fit(bare).result
    moved = registry.make("cuped").fit(bare.with_outcome(bare.Y + np.eye(20)[0][:, None] * 1000))
    assert moved.result.effect == pytest.approx(a.effect, abs=1e-10)
    assert moved.result.details["shrink_k"] == pytest.approx(a.details["shrink_k"], rel=1e-12)
