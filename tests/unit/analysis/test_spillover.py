"""Exposure mapping, exposure probabilities and the Hajek spillover estimator."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from analysis.clustering import cluster_graph
from analysis.pricing_dgp import planted_substitute_graph, simulate_spillover_outcomes
from analysis.results import EstimateResult
from analysis.spillover import (
    ExposureMapping,
    SpilloverError,
    adjacency,
    bernoulli_design,
    bernoulli_exposure_probabilities,
    cluster_design,
    estimate_spillover,
    exposure_probabilities,
)


def _star() -> tuple[nx.Graph, list[str]]:
    G = nx.star_graph(["hub", "a", "b", "c"])  # hub joined to a, b, c
    G.add_node("iso")
    return G, ["hub", "a", "b", "c", "iso"]


def test_exposure_codes_by_hand() -> None:
    G, nodes = _star()
    A, deg = adjacency(G, nodes)
    z = np.array([False, True, False, False, True])  # a and iso treated
    m = ExposureMapping()
    names = np.array(m.names)[m.exposures(A, deg, z)]
    assert names.tolist() == ["C:any", "T:none", "C:none", "C:none", "T:none"]
    m3 = ExposureMapping((0.0, 0.5))
    z2 = np.array([True, False, True, True, False])
    names3 = np.array(m3.names)[m3.exposures(A, deg, z2)]
    # hub sees 2 of 3 treated (> half); a sees its only neighbour treated
    assert names3.tolist() == ["T:most", "C:most", "T:most", "T:most", "C:none"]


def test_bernoulli_probabilities_match_closed_form() -> None:
    G, nodes = _star()
    p, R = 0.3, 20_000
    P = exposure_probabilities(G, bernoulli_design(5, p), nodes=nodes, n_draws=R, seed=1)
    exact_hub_c_none = (1 - p) * (1 - p) ** 3
    exact_leaf_t_any = p * p
    tol = 4 * np.sqrt(0.25 / R)
    assert P.loc["hub", "C:none"] == pytest.approx(exact_hub_c_none, abs=tol)
    assert P.loc["a", "T:any"] == pytest.approx(exact_leaf_t_any, abs=tol)
    assert P.loc["iso", "T:any"] == 0.0 and P.loc["iso", "C:any"] == 0.0
    assert np.allclose(P.sum(axis=1), 1.0)


def test_cluster_design_moves_clusters_together() -> None:
    G, nodes = _star()
    labels = np.array([0, 0, 0, 0, 1])
    draw = cluster_design(labels, 0.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = draw(rng)
        assert len(set(z[:4].tolist())) == 1
    P = exposure_probabilities(G, draw, nodes=nodes, n_draws=500, seed=2)
    assert P.loc["hub", "T:none"] == 0.0 and P.loc["a", "C:any"] == 0.0


@pytest.fixture(scope="module")
def world():
    G, _ = planted_substitute_graph(30, seed=5)
    nodes = list(G.nodes)
    base = np.random.default_rng(6).normal(10, 2, len(nodes))
    return G, nodes, base


def test_recovers_direct_and_spillover_effects(world) -> None:
    G, nodes = world[0], world[1]
    design = bernoulli_design(len(nodes), 0.5)
    z = design(np.random.default_rng(7))
    y = simulate_spillover_outcomes(
        G, z, nodes=nodes, base=world[2], direct=2.0, spill_control=-1.0, spill_treated=-0.5,
        seed=8,
    )  # fmt: skip
    res = estimate_spillover(G, z, y, design, nodes=nodes, n_draws=1000, seed=9)
    eff = res.effects
    for name, truth in [
        ("direct", 2.0),
        ("spillover_control:any", -1.0),
        ("spillover_treated:any", -0.5),
    ]:
        assert eff.loc[name, "ci_low"] <= truth <= eff.loc[name, "ci_high"], name
        assert 0 < eff.loc[name, "se"] < 1.0
    assert res.details["max_weight"] <= 1 / 0.02
    results = res.to_results()
    assert all(isinstance(r, EstimateResult) for r in results)
    assert {r.method for r in results} >= {"spillover_ipw:direct", "naive_difference"}


def test_hajek_contrasts_ignore_a_constant_shift(world) -> None:
    G, nodes, base = world
    design = bernoulli_design(len(nodes), 0.5)
    z = design(np.random.default_rng(10))
    y = simulate_spillover_outcomes(G, z, nodes=nodes, base=base, seed=11)
    a = estimate_spillover(G, z, y, design, nodes=nodes, n_draws=300, n_variance_draws=50, seed=3)
    b = estimate_spillover(
        G, z, y + 100, design, nodes=nodes, n_draws=300, n_variance_draws=50, seed=3
    )
    np.testing.assert_allclose(b.effects["effect"], a.effects["effect"], atol=1e-8)
    np.testing.assert_allclose(b.effects["se"], a.effects["se"], atol=1e-8)


def test_cluster_randomisation_cuts_naive_bias(world) -> None:
    G, nodes, base = world
    labels = cluster_graph(G, seed=0).label_array(nodes)
    deg = np.array([G.degree(n) for n in nodes])
    direct, s_c, s_t = 2.0, -1.0, -0.5
    global_effect = direct + s_t * (deg > 0).mean()
    bias = {}
    for name, design in [
        ("bernoulli", bernoulli_design(len(nodes))),
        ("cluster", cluster_design(labels)),
    ]:
        rng = np.random.default_rng(12)
        naive = []
        for r in range(60):
            z = design(rng)
            y = simulate_spillover_outcomes(
                G, z, nodes=nodes, base=base, direct=direct, spill_control=s_c,
                spill_treated=s_t, mode="fraction", seed=r,
            )  # fmt: skip
            naive.append(y[z].mean() - y[~z].mean())
        bias[name] = np.mean(naive) - global_effect
    assert abs(bias["cluster"]) < 0.5 * abs(bias["bernoulli"])


def test_inputs_are_checked(world) -> None:
    G, nodes, _ = world
    design = bernoulli_design(len(nodes))
    z = design(np.random.default_rng(0))
    with pytest.raises(SpilloverError, match="not in the graph"):
        estimate_spillover(G, z, np.zeros(len(nodes)), design, nodes=[*nodes[:-1], "ghost"])
    with pytest.raises(SpilloverError, match="one value per product"):
        estimate_spillover(G, z[:-1], np.zeros(len(nodes)), design, nodes=nodes)
    with pytest.raises(SpilloverError, match="drew"):
        estimate_spillover(G, z, np.zeros(len(nodes)), bernoulli_design(3), nodes=nodes)


def test_panel_spillover_detrends_then_weights(world) -> None:
    from analysis.panel import Panel
    from analysis.spillover import panel_spillover

    G, nodes, base = world
    n, T0, T1 = len(nodes), 28, 14
    design = bernoulli_design(n, 0.5)
    z = design(np.random.default_rng(20))
    post_effect = simulate_spillover_outcomes(G, z, nodes=nodes, noise_sd=0.0, seed=0)
    rng = np.random.default_rng(21)
    t = np.arange(T0 + T1)
    slope = rng.normal(0, 0.5, n)  # strong product trends: post means alone would be useless
    Y = (
        base[:, None]
        + slope[:, None] * t[None]
        + post_effect[:, None] * (t >= T0)[None]
        + rng.normal(0, 1.0, (n, T0 + T1))
    )
    W = z[:, None] & (t >= T0)[None]
    panel = Panel(Y, W, np.array(nodes), t, np.zeros(Y.shape, dtype=bool))
    res = panel_spillover(panel, G, design, n_draws=800, n_variance_draws=200, seed=22)
    for name, truth in [("direct", 2.0), ("spillover_control:any", -1.0)]:
        assert res.effects.loc[name, "ci_low"] <= truth <= res.effects.loc[name, "ci_high"]
    assert res.effects.loc["direct", "se"] < 0.5


def test_exact_bernoulli_probabilities_agree_with_monte_carlo(world) -> None:
    from analysis.spillover import bernoulli_exposure_probabilities

    G, nodes, base = world
    m3 = ExposureMapping((0.0, 0.5))
    exact = bernoulli_exposure_probabilities(G, nodes=nodes, p=0.3, mapping=m3)
    assert np.allclose(exact.sum(axis=1), 1.0)
    hub = nodes[int(np.argmax([G.degree(v) for v in nodes]))]
    d = G.degree(hub)
    assert exact.loc[hub, "C:none"] == pytest.approx(0.7 * 0.7**d)
    R = 4000
    mc = exposure_probabilities(
        G, bernoulli_design(len(nodes), 0.3), nodes=nodes, mapping=m3, n_draws=R, seed=3
    )
    assert np.abs(mc.to_numpy() - exact.to_numpy()).max() < 5 * np.sqrt(0.25 / R)
    design = bernoulli_design(len(nodes), 0.5)
    z = design(np.random.default_rng(30))
    y = simulate_spillover_outcomes(G, z, nodes=nodes, base=base, seed=31)
    ex = bernoulli_exposure_probabilities(G, nodes=nodes, p=0.5)
    a = estimate_spillover(G, z, y, design, nodes=nodes, probabilities=ex, n_variance_draws=100)
    b = estimate_spillover(G, z, y, design, nodes=nodes, n_draws=2000, n_variance_draws=100)
    assert a.effects.loc["direct", "effect"] == pytest.approx(
        b.effects.loc["direct", "effect"], abs=0.5 * a.effects.loc["direct", "se"]
    )


def test_residuals_are_scaled_by_their_leverage_in_the_hajek_mean() -> None:
    from analysis.spillover import leverage_adjusted

    # one group of 4 equal weights: factor 1 - 2/4 + 4/16 = 3/4; a singleton keeps its
    # residual; then every residual times sqrt((5 - 1) / 5)
    resid = np.array([1.0, -1.0, 2.0, -2.0, 0.0])
    e_obs = np.array([0, 0, 0, 0, 1])
    inv_pi = np.full((5, 2), 2.0)
    out = leverage_adjusted(resid, e_obs, inv_pi, np.ones((5, 2), bool))
    np.testing.assert_allclose(out[:4], resid[:4] / np.sqrt(0.75) * np.sqrt(0.8))
    assert out[4] == 0.0
    # weights 1, 1, 2: h = 1/4, 1/4, 1/2, sum h^2 = 3/8
    out = leverage_adjusted(
        np.array([1.0, 1.0, 1.0]), np.zeros(3, int), np.array([[1.0], [1.0], [2.0]]),
        np.ones((3, 1), bool),
    )  # fmt: skip
    expected = np.sqrt(2 / 3) / np.sqrt([1 - 0.5 + 0.375, 1 - 0.5 + 0.375, 0.375])
    np.testing.assert_allclose(out, expected)


def test_the_design_bootstrap_variance_is_the_exact_design_variance_with_small_groups() -> None:
    """8 products, no edges, 4 treated: all 70 assignments. With constant effects the exact
    design variance of the direct effect is the variance over the 70; the bootstrap's mean
    variance matches it (unscaled residuals gave 0.85 of it: a residual from a mean of 4
    keeps 3/4 of its deviation's square, and 6/7 overall)."""
    import itertools

    n = 8
    nodes = [f"p{i}" for i in range(n)]
    g = nx.Graph()
    g.add_nodes_from(nodes)
    level = np.random.default_rng(0).normal(20.0, 4.0, size=n)
    probs = bernoulli_exposure_probabilities(g, nodes=nodes)

    def complete(rng: np.random.Generator) -> np.ndarray:
        return np.isin(np.arange(n), rng.choice(n, n // 2, replace=False))

    est, var = [], []
    for i, idx in enumerate(itertools.combinations(range(n), n // 2)):
        z = np.isin(np.arange(n), idx)
        r = estimate_spillover(
            g, z, level + 2.0 * z, complete, nodes=nodes, probabilities=probs,
            n_variance_draws=400, seed=i,
        )  # fmt: skip
        est.append(r.effects.loc["direct", "effect"])
        var.append(r.effects.loc["direct", "se"] ** 2)
    assert np.mean(est) == pytest.approx(2.0, abs=1e-9)  # exactly unbiased over the design
    assert 0.95 <= np.mean(var) / np.var(est) <= 1.05


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_the_conditional_spillover_study_runs_the_workers_path_and_writes_its_figures(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    # finding 3's study (docs/validation.md): a world's outcomes fixed, the design redrawn; a
    # tiny run that the study still works and that its draws differ within a world
    import json

    from lab.studies import spillover_conditional
    from lab.studies.harness import run_study

    study = spillover_conditional.STUDY.with_options(
        worlds=2, draws=3, hajek_worlds=3, hajek_draws=400
    )
    run_study(study, figures=tmp_path / "figures", root=tmp_path)
    d = json.loads((tmp_path / "figures" / "spillover-random-days-conditional.json").read_text())
    assert (d["worlds"], d["draws"]) == (2, 3)
    assert d["within_sd"] > 0 and d["mean_se"] > 0  # the redraws move the estimate
    # every published contrast is recorded, each moved by the redraws
    assert set(d["contrasts"]) == {"direct", "spillover_control:any", "spillover_treated:any"}
    for name, c in d["contrasts"].items():
        assert c["within_sd"] > 0 and c["mean_se"] > 0, name
    # the exact-probability part, with exact and with the worker's Monte-Carlo weights
    h = d["hajek"]
    assert (h["worlds"], h["draws"]) == (3, 400)
    assert set(h["contrasts"]) == set(d["contrasts"])
    for name, c in h["contrasts"].items():
        assert set(c) == {"exact", "monte_carlo"}, name
        # Monte-Carlo weights differ from the exact ones, so the errors do too
        assert c["exact"]["period_sd"] > 0 and c["exact"] != c["monte_carlo"], name
    # and the rendered finding carries a row per contrast and the exact part's figures
    import pandas as pd

    from lab.studies import validation_page as vp

    figures = tmp_path / "figures"
    text = vp.section("spillover_conditional.md.j2", vp.spillover_conditional(figures))
    for name, c in d["contrasts"].items():
        assert f"| {name} | {c['se_over_within_sd']:.2f} |" in text, text
    # an SE that missed 19% of the variance, over 400 runs: +- 2 * 0.81 / sqrt(798) = 6%
    raw = pd.Series({"mean_se": 0.9, "emp_sd": 1.0, "published": 400})
    exact = vp.section("hajek_shared_bias.md.j2", vp.hajek_shared_bias(figures, raw, raw))
    direct = h["contrasts"]["direct"]["exact"]["world_bias_sd"]
    assert f"{direct:.3f} for direct" in " ".join(exact.split()), exact
    share = h["contrasts"]["spillover_control:any"]["exact"]["between_share"]
    said = " ".join(exact.split())
    # within 2 MC SE the missed share is 0.19 -+ 2 * 0.0573: the shared part's share spans that
    mcse = 2 * 0.81 / math.sqrt(2 * 399)
    span = f"{share / (0.19 + 2 * mcse):.0%} to {share / (0.19 - 2 * mcse):.0%} within 2 MC SE"
    assert f"about {share / 0.19:.0%} ({span}) of the variance the raw SE missed (19% +- 6%" in said
    assert "For direct the shared part is" in said


def test_the_conditional_studys_exposures_are_the_planted_outcomes_contrasts() -> None:
    """The exact part's exposure effects and contrasts are read from the simulator and the
    mapping, and each contrast's difference is the worker study's truth."""
    from lab.studies import spillover_conditional as study

    assert ExposureMapping().names == ["C:none", "C:any", "T:none", "T:any"]
    for name, (k, ref) in study.CONTRAST_EXPOSURES.items():
        effect = study.EXPOSURE_EFFECTS[k] - study.EXPOSURE_EFFECTS[ref]
        assert effect == study.TRUTHS[name], name
    assert study.TRUTHS == {
        "direct": 2.0,
        "spillover_control:any": -1.0,
        "spillover_treated:any": -0.5,
    }


def test_the_between_world_share_recovers_a_planted_world_bias() -> None:
    """summarise_hajek on synthetic errors: each world's bias drawn with SD 0.1, the draws'
    noise SD 1.7: the between-world SD net of noise and the share over 10 periods come back."""
    import pandas as pd

    from lab.studies import spillover_conditional as study

    rng = np.random.default_rng(7)
    worlds = [rng.normal(rng.normal(0.0, 0.1), 1.7, size=4000) for _ in range(400)]
    out = study.summarise_hajek(pd.DataFrame([study.world_stats(w) for w in worlds]), periods=10)
    expected_share = 0.01 / (0.01 + 1.7**2 / 10)  # 0.0334
    assert out["world_bias_sd"] == pytest.approx(0.1, abs=0.015)
    assert out["period_sd"] == pytest.approx(1.7, rel=0.01)
    assert out["between_share"] == pytest.approx(expected_share, abs=2 * out["between_share_mcse"])
    # no world bias: the share is the noise's only, near zero
    flat = study.summarise_hajek(
        pd.DataFrame([study.world_stats(rng.normal(0.0, 1.7, 4000)) for _ in range(400)]),
        periods=10,
    )
    assert flat["between_share"] < 0.005


def test_past_levels_by_hand() -> None:
    """Two products, one exposure besides (C, none): the level before each period is the mean
    of the earlier cells net of the effect fitted within products on them."""
    from analysis.spillover import past_levels

    Y = np.array([[10.0, 14.0, 11.0], [5.0, 2.0, 6.0]])
    exposure = np.array([[0, 1, 0], [1, 0, 1]])
    levels = past_levels(Y, np.ones_like(Y, dtype=bool), exposure, 2)
    assert np.isnan(levels[:, 0]).all()  # no history before the first period
    # one earlier cell each: no product has varied, the effect is not identified (0)
    assert levels[:, 1].tolist() == [10.0, 5.0]
    # demeaned cells: A (-2, +2) at dummies (-.5, +.5), B (+1.5, -1.5) at (+.5, -.5): the fit
    # is 3.5; A's level (24 - 3.5) / 2, B's (7 - 3.5) / 2
    assert levels[:, 2] == pytest.approx([10.25, 1.75])
    # a cell that is not usable is not history
    usable = np.ones_like(Y, dtype=bool)
    usable[0, 0] = False
    held = past_levels(Y, usable, exposure, 2)
    assert np.isnan(held[0, 1]) and held[1, 1] == 5.0
    # before period 2, only B has varied: (+1.5, -1.5) at (+.5, -.5) fits 3; A has one cell
    assert held[:, 2] == pytest.approx([14.0 - 3.0, (7.0 - 3.0) / 2])


def _random_days_spillover(Y: np.ndarray, W: np.ndarray, G: nx.Graph, nodes: list[str]) -> dict:
    from analysis.panel import Panel
    from analysis.spillover import design_spillover

    def sampler(seed: int, units: list[str], periods: list[int]) -> np.ndarray:
        return np.random.default_rng(seed).uniform(size=(len(units), len(periods))) < 0.5

    panel = Panel(
        Y=Y,
        W=W,
        units=np.array(nodes),
        times=np.arange(Y.shape[1]),
        blackout=np.zeros(Y.shape, dtype=bool),
        probability=np.full(Y.shape, 0.5),
    )
    out = design_spillover(panel, G, "per-period", sampler, n_draws=200, n_variance_draws=60)
    return {r.method: (r.effect, r.se, r.n_periods) for r in out}


def test_random_days_spillover_does_not_see_the_products_levels() -> None:
    """Finding 3's cause, and its fix: on raw outcomes each period's Hajek means carry the
    products' levels, the same in every period, so what they add does not average out; netted
    of each product's level from its earlier periods, the estimate and its SE do not move when
    the levels do."""
    from analysis import spillover

    G, _ = planted_substitute_graph(2, category_size=(20, 25), seed=3)
    nodes = sorted(G.nodes)
    rng = np.random.default_rng(4)
    W = rng.uniform(size=(len(nodes), 6)) < 0.5
    Y = np.column_stack(
        [
            simulate_spillover_outcomes(G, W[:, t], nodes=nodes, base=np.zeros(len(nodes)), seed=t)
            for t in range(6)
        ]
    )
    shift = rng.normal(0.0, 30.0, size=(len(nodes), 1))  # products' levels, spread 30
    flat, spread = (
        _random_days_spillover(Y, W, G, nodes),
        _random_days_spillover(Y + shift, W, G, nodes),
    )
    assert set(flat) >= {"spillover_ipw:direct", "spillover_ipw:spillover_control:any"}
    for name, (effect, se, n_periods) in flat.items():
        assert n_periods == 5  # the first period has no history
        assert spread[name][0] == pytest.approx(effect, abs=1e-8), name
        assert spread[name][1] == pytest.approx(se, rel=1e-8), name
    # the path before the fix, raw outcomes in every period: the levels move it
    saved = spillover.past_levels
    spillover.past_levels = lambda Y, *_: np.zeros(Y.shape)  # type: ignore[assignment]
    try:
        raw_flat = _random_days_spillover(Y, W, G, nodes)
        raw_spread = _random_days_spillover(Y + shift, W, G, nodes)
    finally:
        spillover.past_levels = saved  # type: ignore[assignment]
    moved = abs(raw_spread["spillover_ipw:direct"][0] - raw_flat["spillover_ipw:direct"][0])
    assert moved > 5 * flat["spillover_ipw:direct"][1], (moved, flat)
    assert raw_flat["spillover_ipw:direct"][2] == 6


def test_periods_without_a_contrast_are_not_counted_in_its_mean_or_se() -> None:
    """A period whose contrast had no overlap (NaN), or no variance, is left out of that
    contrast: it once lowered the SE by counting in the divisor (sqrt(sum se^2) / T)."""
    import pandas as pd

    from analysis.spillover import average_periods

    def period(direct: tuple[float, float], control: tuple[float, float]) -> pd.DataFrame:
        return pd.DataFrame(
            {"effect": [direct[0], control[0]], "se": [direct[1], control[1]], "n_units": 40},
            index=["direct", "spillover_control:any"],
        )

    nan = float("nan")
    out = average_periods(
        [period((2.0, 0.3), (-1.0, 0.4)), period((nan, nan), (-2.0, 0.4)),
         period((4.0, 0.4), (-3.0, nan))],
        "units",
    )  # fmt: skip
    got = {r.method: r for r in out}
    direct, control = got["spillover_ipw:direct"], got["spillover_ipw:spillover_control:any"]
    assert (direct.effect, direct.n_periods) == (3.0, 2)
    assert direct.se == pytest.approx(math.sqrt(0.3**2 + 0.4**2) / 2)
    assert (control.effect, control.n_periods) == (-1.5, 2)
    assert control.se == pytest.approx(math.sqrt(0.4**2 + 0.4**2) / 2)
