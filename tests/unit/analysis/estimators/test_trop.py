"""TROP: reduction to two-way fixed effects, effect recovery, invariances, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.errors import InferenceError
from analysis.estimators.registry import make
from analysis.estimators.trop import TROPEstimator
from analysis.inference import time_placebo_df
from analysis.panel import Panel


def make_panel(seed: int, W: np.ndarray, tau: float = 2.0) -> Panel:
    rng = np.random.default_rng(seed)
    N, T = W.shape
    L = rng.normal(size=(N, 2)) @ rng.normal(size=(T, 2)).T
    Y = L + rng.normal(size=(N, 1)) + np.linspace(0, 3, T)[None] + 0.5 * rng.normal(size=(N, T))
    return Panel(
        Y=Y + tau * W, W=W, units=np.arange(N), times=np.arange(T), blackout=np.zeros((N, T), bool)
    )


def block_W(N: int, T: int, n_tr: int, t0: int) -> np.ndarray:
    W = np.zeros((N, T), bool)
    W[:n_tr, t0:] = True
    return W


TWFE = {"lambda_time": 0.0, "lambda_unit": 0.0, "lambda_nn": math.inf, "se": "none"}


def test_reduces_to_did_on_block_design() -> None:
    p = make_panel(0, block_W(30, 20, 6, 14))
    Y = p.Y
    did = (Y[:6, 14:].mean() - Y[:6, :14].mean()) - (Y[6:, 14:].mean() - Y[6:, :14].mean())
    est = TROPEstimator(**TWFE, tol=1e-12, max_iter=10_000).fit(p).result_.effect
    assert est == pytest.approx(did, abs=1e-8)


def test_reduces_to_twfe_imputation_on_staggered_design() -> None:
    rng = np.random.default_rng(1)
    N, T = 20, 12
    start = rng.choice([4, 7, 10, 12], size=N)
    W = np.arange(T)[None] >= start[:, None]
    p = make_panel(2, W)
    # independent reference: least squares on unit and period dummies over untreated cells
    i, t = np.nonzero(~W)
    X = np.zeros((len(i), N + T))
    X[np.arange(len(i)), i] = 1.0
    X[np.arange(len(i)), N + t] = 1.0
    coef = np.linalg.lstsq(X, p.Y[i, t], rcond=None)[0]
    ti, tt = np.nonzero(W)
    ref = float((p.Y[ti, tt] - coef[ti] - coef[N + tt]).mean())
    est = TROPEstimator(**TWFE, tol=1e-12, max_iter=20_000).fit(p).result_.effect
    assert est == pytest.approx(ref, abs=1e-7)


def test_recovers_effect_with_tuning_and_bootstrap() -> None:
    p = make_panel(3, block_W(20, 14, 4, 10))
    res = TROPEstimator(seed=0, n_loo=15, n_boot=15).fit(p).result_
    assert res.se > 0 and res.se_method == "bootstrap"
    assert abs(res.effect - 2.0) < 3 * res.se
    d = res.details
    assert d["lambda_time"] in (0.0, 0.1, 0.3, 1.0) and len(d["tuning_trace"]) >= 4


def test_unit_weights_follow_the_nearest_control() -> None:
    # the treated unit's only parallel twin is control 1; other controls trend differently
    T = 16
    t = np.arange(T, dtype=float)
    Y = np.vstack([np.sin(t), np.sin(t) + 0.5, np.cos(t) * 3, -np.cos(t) * 3, t / 4, -t / 4])
    W = np.zeros_like(Y, dtype=bool)
    W[0, 10:] = True
    Y = Y + 1.0 * W
    p = Panel(Y=Y, W=W, units=np.arange(6), times=t, blackout=np.zeros_like(W))
    near = TROPEstimator(0.0, 50.0, math.inf, se="none").fit(p).result_.effect
    flat = TROPEstimator(**TWFE).fit(p).result_.effect
    assert abs(near - 1.0) < 1e-3
    assert abs(flat - 1.0) > 0.1


def test_adding_a_period_effect_changes_nothing() -> None:
    p = make_panel(4, block_W(20, 14, 4, 10))
    est = TROPEstimator(0.3, 1.0, 0.03, se="none", tol=1e-10, max_iter=20_000)
    base = est.fit(p).result_.effect
    shifted = est.fit(p.with_outcome(p.Y + 0.8 * np.arange(14)[None])).result_.effect
    assert shifted == pytest.approx(base, abs=1e-5)
    plus = est.fit(p.with_outcome(p.Y + 2.5 * p.W)).result_.effect
    assert plus == pytest.approx(base + 2.5, abs=1e-5)


def test_errors() -> None:
    p = make_panel(0, block_W(10, 8, 2, 4))
    with pytest.raises(InferenceError):
        TROPEstimator(se="jackknife").fit(p)
    with pytest.raises(ValueError, match="non-negative"):
        TROPEstimator(lambda_time_grid=(-1.0, 0.0), se="none").fit(p)
    with pytest.raises(InferenceError, match="placebo"):
        TROPEstimator(**{**TWFE, "se": "bootstrap"}).fit(make_panel(0, block_W(10, 8, 1, 4)))
    assert isinstance(make("trop"), TROPEstimator)


def test_bootstrap_warm_start_reaches_the_cold_start_minimum_in_fewer_iterations() -> None:
    # a bootstrap replicate's convex fits start from the full sample's solution, rows
    # reindexed: the same problem's minimum, so the predictions agree with a cold start to
    # the solver's tolerance, reached in fewer iterations
    import analysis.estimators.trop as trop_mod

    p = make_panel(3, block_W(24, 14, 5, 10))
    obs, treated = ~p.W, p.W
    rates = trop_mod._Rates(time=0.1, unit=1.0, nn=0.3)
    ti, tt = np.nonzero(treated)
    fits: dict[tuple[int, int], np.ndarray] = {}
    kw = {"max_iter": 2000, "tol": 1e-8}
    trop_mod.trop_predict(p.Y, obs, ti, tt, rates, leave_out=False, keep=fits, **kw)
    assert len(fits) == len(ti)  # both decay rates positive: one fit per treated cell
    rows = np.sort(np.random.default_rng(0).choice(24, 24))
    rows[:5] = [0, 0, 2, 3, 4]  # treated units first, one repeated
    Yb, ob = p.Y[rows], obs[rows]
    i, t = np.nonzero(treated[rows])
    iters: list[int] = []
    real_fit = trop_mod.fit_fe_lowrank

    def counting_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_fit(*args, **kwargs)
        iters.append(out[3])
        return out

    trop_mod.fit_fe_lowrank = counting_fit
    try:
        cold = trop_mod.trop_predict(Yb, ob, i, t, rates, leave_out=False, **kw)
        n_cold = sum(iters)
        iters.clear()
        warm = trop_mod.trop_predict(
            Yb, ob, i, t, rates, leave_out=False, rows=rows, warm=fits, **kw
        )
        n_warm = sum(iters)
    finally:
        trop_mod.fit_fe_lowrank = real_fit
    assert warm == pytest.approx(cold, abs=1e-4)
    assert n_warm < 0.9 * n_cold, (n_warm, n_cold)


def test_time_placebo_variance_and_method_names() -> None:
    p = make_panel(4, block_W(20, 16, 4, 10))
    # with a low-rank term, so that the placebo fits (on panels cut short) meet the warm starts
    r = TROPEstimator(0.1, 0.5, 0.05, se="unit_conditional").fit(p).result_
    assert r.se_method == "time_placebo"
    assert r.details["n_draws"] == 4  # L = min(6 post, 10 pre // 2) = 5: starts 2, 3, 4, 5
    assert r.df is not None and 1.0 < r.df < r.details["n_draws"]
    assert np.isfinite(r.se) and r.se > 0
    with pytest.raises(InferenceError, match="time_placebo"):
        TROPEstimator(**{**TWFE, "se": "jackknife"}).fit(p)


def test_a_hidden_placebo_block_equals_the_same_cells_unobserved() -> None:
    # tuning's placebo blocks: hiding a control unit's cells on a treatment path from its own
    # fit (and from its distances) is the same as those cells not being observed at all
    import analysis.estimators.trop as trop_mod

    p = make_panel(5, block_W(16, 12, 3, 8))
    obs = ~p.W
    rates = trop_mod._Rates(time=0.2, unit=1.0, nn=0.3)
    unit, path = 9, np.arange(8, 12)
    hide = np.zeros((path.size, 12), bool)
    hide[:, path] = True
    kw = {"max_iter": 2000, "tol": 1e-9}
    ti = np.full(path.size, unit)
    hidden = trop_mod.trop_predict(p.Y, obs, ti, path, rates, leave_out=hide, **kw)
    cut = obs.copy()
    cut[unit, path] = False
    missing = trop_mod.trop_predict(p.Y, cut, ti, path, rates, leave_out=False, **kw)
    assert hidden == pytest.approx(missing, abs=1e-6)
    # and it is not the single-cell leave-one-out, which keeps the unit's other path cells
    loo = trop_mod.trop_predict(p.Y, obs, ti, path, rates, leave_out=True, **kw)
    assert np.max(np.abs(loo - hidden)) > 1e-3
    with pytest.raises(ValueError, match="hide each target"):
        trop_mod.trop_predict(p.Y, obs, ti, path, rates, leave_out=np.zeros_like(hide), **kw)


def _twfe_impute(Y: np.ndarray, obs: np.ndarray, unit: int, periods: np.ndarray) -> np.ndarray:
    """Y(0) of (unit, periods) from a least-squares two-way fit on the observed cells."""
    N, T = Y.shape
    i, t = np.nonzero(obs)
    X = np.zeros((i.size, N + T - 1))
    X[np.arange(i.size), i] = 1.0
    X[t > 0, N + t[t > 0] - 1] = 1.0
    coef = np.linalg.lstsq(X, Y[i, t], rcond=None)[0]
    b = np.concatenate([[0.0], coef[N:]])
    return coef[unit] + b[periods]


def test_placebo_tuning_scores_whole_placebo_paths() -> None:
    # block design, every control unit used (n_tune >= controls): the loss at the DID point
    # (0, 0, inf) is the mean square over controls of the average error when the unit's whole
    # post-period is imputed by two-way fixed effects without it - computed here by lstsq
    p = make_panel(6, block_W(14, 10, 4, 7))
    fixed = {"lambda_unit": 0.0, "lambda_nn": math.inf, "se": "none", "n_tune": 50}
    r = TROPEstimator(**fixed, seed=1).fit(p).result_
    trace = {row[0]: row[3] for row in r.details["tuning_trace"]}
    post = np.arange(7, 10)
    errs = []
    for j in range(4, 14):
        obs = ~p.W
        obs[j, post] = False
        errs.append(np.mean(p.Y[j, post] - _twfe_impute(p.Y, obs, j, post)))
    assert trace[0.0] == pytest.approx(np.mean(np.square(errs)), rel=1e-4)
    loo = TROPEstimator(**fixed, seed=1, tuning="loo").fit(p).result_
    assert {row[0]: row[3] for row in loo.details["tuning_trace"]}[0.0] != pytest.approx(
        trace[0.0], rel=1e-2
    )
    with pytest.raises(ValueError, match="tuning must be"):
        TROPEstimator(tuning="cv", se="none").fit(p)


def test_two_way_variance_adds_the_period_part_to_the_bootstrap() -> None:
    from analysis.estimators.mcnnm import MCNNMEstimator

    p = make_panel(7, block_W(20, 16, 4, 10))
    # the treated units share a period shock the controls do not have: a shared error part
    shock = np.zeros((20, 16))
    shock[:4] = 1.5 * np.random.default_rng(2).normal(size=16)
    p = Panel(Y=p.Y + shock, W=p.W, units=p.units, times=p.times, blackout=p.blackout)
    fixed = (0.1, 0.5, 0.05)
    two = TROPEstimator(*fixed, se="two_way", seed=3, n_boot=20).fit(p).result_
    boot = TROPEstimator(*fixed, se="bootstrap", seed=3, n_boot=20).fit(p).result_
    d = two.details
    # same seed, same bootstrap draws; the two-way variance is the treated units' own part
    # (the treated stratum) plus the shared period part - the control part is not added, the
    # shared part holds the control noise already
    assert d["var_treated"] + d["var_control"] == pytest.approx(boot.se**2)
    v_t, v_p = d["var_treated"], d["var_period"]
    assert v_p > 0.0 and two.se**2 == pytest.approx(v_t + v_p)
    df_p = time_placebo_df(10, 6)  # all 5 windows of 5 periods usable here
    assert two.df == pytest.approx((v_t + v_p) ** 2 / (v_t**2 / 3 + v_p**2 / df_p))
    with pytest.raises(InferenceError, match="MC-NNM supports"):
        MCNNMEstimator(se="two_way").fit(p)


def test_placebo_tuning_skips_a_control_with_nothing_observed_off_the_path() -> None:
    # a product added late (blackout over the whole pre-period) has no level to learn before
    # the path: it must not be a placebo unit (its "error" would be its whole level)
    p = make_panel(8, block_W(12, 12, 3, 8))
    B = np.zeros((12, 12), bool)
    B[4, :8] = True
    p = Panel(Y=p.Y + 5.0, W=p.W, units=p.units, times=p.times, blackout=B)
    est = TROPEstimator(se="none", n_tune=50)
    obs = p.usable & ~p.W
    li, _, hide, _ = est._placebo_targets(obs, p.W & p.usable)
    assert 4 not in set(li.tolist()) and set(li.tolist()) == set(range(3, 12)) - {4}
    assert hide.any(axis=1).all()


@pytest.mark.parametrize("rank", [2, 3])
def test_relaxed_refit_removes_the_nuclear_norms_shrinkage(rank: int) -> None:
    # noiseless two-way + low-rank outcomes, a treated block missing: the convex fit shrinks
    # every singular value by the threshold, and the cells it imputes are shrunk again (they
    # are filled from its own shrunk solution); refitting the loadings on its period factors
    # removes most of that. Not all: those factors were fitted to the shrunk completion too.
    import analysis.estimators.trop as trop_mod
    from analysis.estimators.mcnnm import fit_fe_lowrank

    rng = np.random.default_rng(11)
    N, T = 30, 20
    Y = (
        rng.normal(size=(N, rank)) @ rng.normal(size=(T, rank)).T * 2.0
        + rng.normal(size=(N, 1))
        + rng.normal(size=(1, T))
    )
    obs = ~block_W(N, T, 5, 14)
    w = obs.astype(float)[None]
    a, b, L, _ = fit_fe_lowrank(Y, w, 2.0, max_iter=5000, tol=1e-10)
    ra, rb, rL = trop_mod.relaxed_refit(Y, w, a, b, L)
    miss = ~obs

    def block_error(a_: np.ndarray, b_: np.ndarray, L_: np.ndarray) -> float:
        fit = a_[0][:, None] + b_[0][None, :] + L_[0]
        return float(np.sqrt(np.mean((fit - Y)[miss] ** 2)))

    convex, relaxed = block_error(a, b, L), block_error(ra, rb, rL)
    assert convex > 0.1  # the shrinkage is visible
    assert relaxed < 0.5 * convex, (convex, relaxed)
    # every factor is kept (a rank rule on the kept singular values alone cut 3 to 1)
    assert np.linalg.matrix_rank(rL[0], tol=1e-6) == rank


def test_relaxed_refit_keeps_the_convex_loadings_of_a_unit_with_too_few_cells() -> None:
    # unit 0 is observed in 2 periods: with rank 2 its level and loadings would interpolate
    # them, and the least-squares problem would have no unique solution (a refit from another
    # start point ended elsewhere); it keeps its convex loadings and only its level is refit
    import analysis.estimators.trop as trop_mod
    from analysis.estimators.mcnnm import fit_fe_lowrank

    rng = np.random.default_rng(1)
    N, T = 30, 20
    Y = (
        rng.normal(size=(N, 2)) @ rng.normal(size=(T, 2)).T * 2.0
        + rng.normal(size=(N, 1))
        + rng.normal(size=(1, T))
        + 0.3 * rng.normal(size=(N, T))
    )
    obs = np.ones((N, T), bool)
    obs[0, 2:] = False
    obs[1:5, 14:] = False
    w = obs.astype(float)[None]
    a, b, L, _ = fit_fe_lowrank(Y, w, 20.0, max_iter=3000, tol=1e-9)
    ra, rb, rL = trop_mod.relaxed_refit(Y, w, a, b, L)
    _, s, Vt = np.linalg.svd(L[0])
    V = Vt[: np.linalg.matrix_rank(rL[0], tol=1e-6)].T
    assert V.shape[1] == 2
    assert rL[0, 0] == pytest.approx(L[0, 0] @ V @ V.T, abs=1e-10)  # convex loadings
    assert not np.allclose(rL[0, 1:5], L[0, 1:5] @ V @ V.T)  # the others are refit
    shifted = a.copy()
    shifted[0, 0] += 3.0
    sa, sb, sL = trop_mod.relaxed_refit(Y, w, shifted, b, L)
    assert sa[:, :, None] + sb[:, None, :] + sL == pytest.approx(
        ra[:, :, None] + rb[:, None, :] + rL, abs=1e-4
    )


def test_relaxed_refit_lowers_the_weighted_loss_at_its_minimum() -> None:
    import analysis.estimators.trop as trop_mod
    from analysis.estimators.mcnnm import fit_fe_lowrank

    p = make_panel(12, block_W(20, 15, 4, 10))
    rng = np.random.default_rng(1)
    w = (~p.W)[None] * rng.uniform(0.05, 1.0, size=(2, 20, 15))  # local-looking weights
    a, b, L, _ = fit_fe_lowrank(p.Y, w, 5.0, max_iter=3000, tol=1e-9)
    ra, rb, rL = trop_mod.relaxed_refit(p.Y, w, a, b, L)
    whole = 0
    for k in range(2):

        def rank(M: np.ndarray) -> int:
            return int(np.linalg.matrix_rank(M, tol=1e-8 * np.abs(M).max()))

        def loss(a_: np.ndarray, b_: np.ndarray, L_: np.ndarray, k: int = k) -> float:
            return float((w[k] * (p.Y - a_[k][:, None] - b_[k][None, :] - L_[k]) ** 2).sum())

        # where the rank rule keeps every component of the convex fit, the convex solution
        # is a feasible start of the refit's alternating least squares, whose loss then
        # cannot end above it (fit 0 here: singular values of the completed matrix 17.0,
        # 5.1, 2.0, so the eigenvalue ratio keeps one of the two components)
        if rank(rL[k]) < rank(L[k]):
            continue
        whole += 1
        assert loss(ra, rb, rL) < loss(a, b, L)
        assert not np.allclose(rL[k], L[k])
    assert whole >= 1
    # with the factors fixed the refit is a linear least-squares problem, solved exactly:
    # the same fitted values as a dense weighted least squares on unit dummies, period
    # dummies and unit-specific slopes on the factors
    N, T = p.Y.shape
    for k in range(2):
        r = int(np.linalg.matrix_rank(rL[k], tol=1e-8 * np.abs(rL[k]).max()))
        V = np.linalg.svd(L[k])[2][:r].T
        cols = [np.kron(np.eye(N), np.ones((T, 1))), np.kron(np.ones((N, 1)), np.eye(T))]
        cols += [np.kron(np.eye(N), V[:, [j]]) for j in range(r)]
        X = np.hstack(cols)
        sw = np.sqrt(w[k].reshape(-1))
        beta = np.linalg.lstsq(X * sw[:, None], p.Y.reshape(-1) * sw, rcond=None)[0]
        dense = (X @ beta).reshape(N, T)
        fit = ra[k][:, None] + rb[k][None, :] + rL[k]
        assert fit == pytest.approx(dense, abs=1e-8)


def test_grid_search_finds_the_grids_minimum_and_relax_needs_a_low_rank_term() -> None:
    p = make_panel(13, block_W(16, 12, 3, 8))
    grids = {
        "lambda_time_grid": (0.0, 0.3),
        "lambda_unit_grid": (0.0, 1.0),
        "lambda_nn_grid": (math.inf, 0.05),
    }
    g = TROPEstimator(**grids, search="grid", se="none", seed=2).fit(p).result_
    trace = {tuple(row[:3]): row[3] for row in g.details["tuning_trace"]}
    assert len(trace) == 8  # every combination scored
    chosen = (g.details["lambda_time"], g.details["lambda_unit"], g.details["lambda_nn"])
    assert trace[chosen] == min(trace.values())
    c = TROPEstimator(**grids, search="coordinate", se="none", seed=2).fit(p).result_
    c_chosen = (c.details["lambda_time"], c.details["lambda_unit"], c.details["lambda_nn"])
    assert trace[c_chosen] >= trace[chosen]
    with pytest.raises(ValueError, match="search must be"):
        TROPEstimator(search="random", se="none").fit(p)
    # no low-rank term: nothing to refit, the estimate is unchanged
    plain = TROPEstimator(0.3, 1.0, math.inf, se="none", relax=False).fit(p).result_
    relaxed = TROPEstimator(0.3, 1.0, math.inf, se="none", relax=True).fit(p).result_
    assert relaxed.effect == plain.effect
    assert (
        TROPEstimator(0.3, 1.0, 0.05, se="none", relax=True).fit(p).result_.effect
        != TROPEstimator(0.3, 1.0, 0.05, se="none", relax=False).fit(p).result_.effect
    )


def test_placebo_units_are_spread_over_the_controls_and_share_out_the_treated_paths() -> None:
    # 3 treated units adopting at periods 4, 6, 8 and 10 controls; n_tune = 5 takes every
    # second control (3, 5, 7, 9, 11) and the paths in order, each at most twice: the first
    # two placebo units take unit 0's path, the next two unit 1's, the last unit 2's
    W = np.zeros((13, 10), bool)
    for unit, start in ((0, 4), (1, 6), (2, 8)):
        W[unit, start:] = True
    p = make_panel(4, W)
    est = TROPEstimator(se="none", n_tune=5)
    li, lt, hide, trial = est._placebo_targets(p.usable & ~p.W, p.W)
    starts = {3: 4, 5: 4, 7: 6, 9: 6, 11: 8}
    assert sorted(set(li.tolist())) == sorted(starts)
    for unit, start in starts.items():
        assert sorted(lt[li == unit].tolist()) == list(range(start, 10))
    assert hide.sum(axis=1).tolist() == [10 - starts[int(u)] for u in li]
    assert np.unique(trial).size == 5


def test_the_estimate_does_not_depend_on_the_seed_and_none_is_a_fixed_seed() -> None:
    # 16 controls, 6 placebo units: the tuning used to draw which ones (and the estimate moved
    # with the seed, issue #27); now only the bootstrap draws, and seed=None is one fixed seed
    p = make_panel(9, block_W(20, 12, 4, 8))
    grids = {"lambda_time_grid": (0.0, 0.3), "lambda_unit_grid": (0.0, 1.0), "n_tune": 6}
    fits = [TROPEstimator(**grids, n_boot=8, seed=s).fit(p).result_ for s in (None, None, 1, 2)]
    none_a, none_b, one, two = fits
    assert none_a.effect == none_b.effect and none_a.se == none_b.se
    assert one.effect == two.effect == none_a.effect
    assert one.details["tuning_trace"] == two.details["tuning_trace"]
    assert one.se != two.se  # the seed still drives the bootstrap
    assert TROPEstimator(**grids, n_boot=8, seed=0).fit(p).result_.se == none_a.se


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_warm_tuning_scores_the_grid_as_the_exact_path_does_with_fewer_iterations() -> None:
    # along each (time, unit) pair the placebo fits of a smaller nuclear-norm penalty start from
    # the larger one's solutions: the same convex problems, so the same grid point, the same
    # estimate and the losses as close as the solver's stopping rule allows (measured against
    # fits run to tol 1e-7: exact path max 0.8% off, warm 0.8%), for fewer problem-iterations
    # (singular-value thresholdings of one problem; measured 10% fewer here)
    import analysis.estimators.mcnnm as mcnnm_mod

    p = make_panel(21, block_W(30, 16, 4, 11))
    real_svt = mcnnm_mod.singular_value_threshold
    work = [0]

    def counting_svt(Z, thr):  # type: ignore[no-untyped-def]
        work[0] += Z.shape[0]
        return real_svt(Z, thr)

    results, spent = {}, {}
    mcnnm_mod.singular_value_threshold = counting_svt
    try:
        for warm in (False, True):
            work[0] = 0
            results[warm] = TROPEstimator(warm_tuning=warm, se="none").fit(p).result_
            spent[warm] = work[0]
    finally:
        mcnnm_mod.singular_value_threshold = real_svt
    exact, fast = results[False], results[True]
    pick = ("lambda_time", "lambda_unit", "lambda_nn")
    assert [fast.details[k] for k in pick] == [exact.details[k] for k in pick]
    assert round(fast.effect, 3) == round(exact.effect, 3)
    losses = {tuple(r[:3]): r[3] for r in exact.details["tuning_trace"]}
    assert len(losses) == 64
    for *point, loss in fast.details["tuning_trace"]:
        assert loss == pytest.approx(losses[tuple(point)], rel=0.02), point
    assert spent[True] < spent[False], spent


def test_threads_change_nothing_but_the_time() -> None:
    # chunks of fits on several threads: each chunk its own fits and targets, so tuning, the
    # estimate and its bootstrap SE are the same numbers, bit for bit
    p = make_panel(8, block_W(20, 10, 4, 7))
    kw = {"lambda_time_grid": (0.0, 0.3), "lambda_unit_grid": (0.0, 1.0), "chunk": 3}
    one = TROPEstimator(threads=1, n_boot=20, **kw).fit(p).result_
    three = TROPEstimator(threads=3, n_boot=20, **kw).fit(p).result_
    assert (three.effect, three.se) == (one.effect, one.se)
    assert three.details["tuning_trace"] == one.details["tuning_trace"]
