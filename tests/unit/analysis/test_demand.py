"""The demand curve, its curvature test and the recommended price (analysis.demand): the
two-arm elasticity at k = 2, recovery and coverage on seeded ladders with a known optimum, the
edge of the range, and one sentence for what the panel cannot give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.demand import ArmTotals, fit_demand, optimal_ratio, profit
from analysis.elasticity import within_product_elasticity
from analysis.errors import AnalysisError
from lab.compare import elasticity_experiment

LADDER = np.array([1.0, 0.9, 0.95, 1.05])  # the control first, as ArmTotals has it
NAMES = ("list", "p90", "p95", "p105")


def ladder(
    seed: int,
    *,
    eps: float = -2.0,
    eps_sd: float = 0.0,
    cost_share: float = 0.48,
    curvature: float = 0.0,
    products: int = 150,
    periods: int = 40,
    ratios: np.ndarray = LADDER,
) -> ArmTotals:
    """A random-days ladder: every product-period draws an arm uniformly; units are Poisson
    with mean ``mu_i r^eps_i exp(curvature log(r)^2)``; price ``base_i r``; unit cost
    ``cost_share base_i``."""
    rng = np.random.default_rng(seed)
    k = len(ratios)
    base = rng.uniform(5.0, 50.0, products)
    mu = np.exp(rng.uniform(0.0, np.log(20.0), products))
    e = eps + eps_sd * rng.normal(size=products)
    arm = rng.integers(0, k, (products, periods))
    z = np.log(ratios)[arm]
    units = rng.poisson(mu[:, None] * np.exp(e[:, None] * z + curvature * z**2))
    revenue = units * base[:, None] * ratios[arm]
    onehot = arm[..., None] == np.arange(k)
    n = onehot.sum(axis=1)
    u = (units[..., None] * onehot).sum(axis=1)
    r = (revenue[..., None] * onehot).sum(axis=1)
    names = NAMES if k == 4 else tuple(f"a{i}" for i in range(k))
    return ArmTotals(names, ratios, n, u, r, u * (cost_share * base)[:, None])


def test_with_two_arms_it_is_the_two_arm_elasticity() -> None:
    for seed in range(5):
        x = elasticity_experiment(seed)
        panel, R = x.units, x.revenue.Y
        use = panel.randomised
        cells = [use & ~panel.W, use & panel.W]  # control first
        sums = [np.stack([(v * c).sum(axis=1) for c in cells], 1) for v in (panel.Y, R)]
        n = np.stack([c.sum(axis=1) for c in cells], 1)
        # the market cuts the price 5%: the listed ratio's log scales both slopes alike
        totals = ArmTotals(("control", "treatment"), np.array([1.0, 0.95]), n, *sums)
        two = within_product_elasticity(panel, R)
        got = fit_demand(totals, replicates=9).elasticity
        assert got.elasticity == pytest.approx(two.elasticity, rel=1e-10)
        assert got.interval.low == pytest.approx(two.interval.low, rel=1e-10)
        assert got.interval.high == pytest.approx(two.interval.high, rel=1e-10)
        assert got.se == pytest.approx(two.se, rel=1e-10)
        assert (got.n_products, got.n_dropped) == (two.n_products, two.n_dropped)


def test_the_optimum_is_the_best_ratio_of_a_fine_grid() -> None:
    rng = np.random.default_rng(3)
    grid = np.linspace(0.8, 1.2, 40001)
    for _ in range(300):
        eps, rev, cost = rng.uniform(-4, 0.5), rng.uniform(1, 100), rng.uniform(0, 120)
        got = float(optimal_ratio(eps, rev, cost, 0.8, 1.2))
        best = grid[np.argmax(profit(grid, eps, rev, cost))]
        assert profit(got, eps, rev, cost) >= profit(best, eps, rev, cost) - 1e-9
        assert 0.8 <= got <= 1.2


def test_a_homogeneous_ladder_recovers_the_known_optimum_with_nominal_coverage() -> None:
    """Constant elasticity -2 and costs 48% of list price: profit r^-2 (r - 0.48) peaks at
    r = 0.96, inside the ladder [0.9, 1.05]. Over 200 seeds the elasticity's Fieller interval,
    the recommended ratio's bootstrap interval and each arm's units ratio cover within the
    Monte Carlo band of 95% (SE 1.5 points at 200 seeds)."""
    truth = -2.0 * 0.48 / (1.0 - 2.0)
    runs, hits_eps, hits_r, errors = 200, 0, 0, []
    hits_units = np.zeros(3)
    for seed in range(runs):
        res = fit_demand(ladder(seed), replicates=499)
        e = res.elasticity
        hits_eps += e.interval.low <= -2.0 <= e.interval.high
        others = [p for p in res.points if p.arm != "list"]
        for j, p in enumerate(others):  # each arm's units against control: r^-2
            lo, hi = p.units_ratio_ci
            hits_units[j] += lo <= p.price_ratio**-2.0 <= hi
        lo, hi = res.optimal_price_ratio_ci
        hits_r += lo <= truth <= hi
        errors.append(res.optimal_price_ratio - truth)
    assert 0.91 <= hits_eps / runs <= 0.99
    assert 0.91 <= hits_r / runs <= 0.99
    assert ((hits_units / runs >= 0.91) & (hits_units / runs <= 0.99)).all(), hits_units
    assert abs(np.mean(errors)) < 3 * np.std(errors) / math.sqrt(runs)


def test_in_one_market_whose_big_sellers_are_more_elastic_it_finds_the_true_optimum() -> None:
    """One market (fixed products) where elasticity falls with a product's sales: the big
    sellers are more elastic than the average product. Profit sums over products, so its
    optimum follows the big sellers; the within-product elasticity weighs products alike and
    put the optimum too high (ladder study: +0.048). The profit curve's aggregate
    elasticities recover it: over 200 demand draws, the interval covers the true optimum
    (a fine grid of the market's own profit sum) within the Monte Carlo band of 95%, and the
    bias is within 3 MC SE (measured: 94.0%, bias -0.0016 +- 0.0021 around a true 0.978; the
    one-elasticity curve's optimum, +0.035)."""
    world = np.random.default_rng(1000)
    products, periods = 200, 40
    base = world.uniform(5.0, 50.0, products)
    mu = np.exp(world.uniform(0.0, np.log(30.0), products))
    e = -2.0 - 0.15 * (np.log(mu) - np.log(mu).mean()) + 0.1 * world.normal(size=products)
    cost = 0.52 * base
    grid = np.linspace(0.9, 1.05, 15001)
    true_profit = ((grid[:, None] * base - cost) * mu * grid[:, None] ** e).sum(axis=1)
    truth = float(grid[np.argmax(true_profit)])
    # the big sellers pull it to 0.978, below the average product's 1.035
    assert 0.97 < truth < 0.99
    runs, hits, errors = 200, 0, []
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        arm = rng.integers(0, 4, (products, periods))
        r = LADDER[arm]
        units = rng.poisson(mu[:, None] * r ** e[:, None])
        onehot = arm[..., None] == np.arange(4)
        n = onehot.sum(axis=1)
        u = (units[..., None] * onehot).sum(axis=1)
        rev = ((units * base[:, None] * r)[..., None] * onehot).sum(axis=1)
        res = fit_demand(ArmTotals(NAMES, LADDER, n, u, rev, u * cost[:, None]), replicates=499)
        lo, hi = res.optimal_price_ratio_ci
        hits += lo <= truth <= hi
        errors.append(res.optimal_price_ratio - truth)
    assert 0.91 <= hits / runs <= 0.99, hits / runs
    assert abs(np.mean(errors)) < 3 * np.std(errors) / math.sqrt(runs), np.mean(errors)


def test_profit_rising_across_the_ladder_is_flagged_at_the_edge() -> None:
    # costs 70% of list price: the optimum 2 x 0.7 = 1.4 lies above the ladder's top, 1.05
    res = fit_demand(ladder(1, cost_share=0.7))
    doc = res.to_dict()
    assert doc["at_range_edge"] is True and doc["optimal_price_ratio"] == 1.05
    assert doc["p_edge"] > 0.9
    assert any("outside what was tested" in n for n in doc["notes"])
    # and with cheap goods (20%), the bottom: 2 x 0.2 = 0.4 < 0.9
    low = fit_demand(ladder(1, cost_share=0.2)).to_dict()
    assert low["at_range_edge"] is True and low["optimal_price_ratio"] == 0.9


def test_the_curvature_test_holds_its_level_and_finds_a_bent_curve() -> None:
    # under one elasticity per product (here varying across products), p < 0.05 in about 5%
    # of runs; with log units bent by 8 log(r)^2 it finds the curvature nearly always
    null = [fit_demand(ladder(s, eps_sd=0.4), replicates=9).curvature_pvalue for s in range(200)]
    assert 0.02 <= np.mean(np.array(null) < 0.05) <= 0.09
    bent = [
        fit_demand(ladder(s, curvature=8.0, products=400), replicates=9).curvature_pvalue
        for s in range(20)
    ]
    assert np.mean(np.array(bent) < 0.05) >= 0.9


def test_the_points_carry_each_arms_units_and_profit() -> None:
    res = fit_demand(ladder(2, products=600))
    doc = res.to_dict()
    by = {p["arm"]: p for p in doc["points"]}
    assert by["list"]["units_ratio"] == 1.0 and by["list"]["price_ratio"] == 1.0
    for name, r in zip(NAMES, LADDER, strict=True):
        p = by[name]
        assert p["price_ratio"] == r
        assert p["price_paid_ratio"] == pytest.approx(r, abs=1e-9)  # price = base x ratio
        assert p["units_ratio_ci_low"] <= p["units_ratio"] <= p["units_ratio_ci_high"], name
        assert abs(math.log(p["units_ratio"]) + 2.0 * math.log(r)) < 0.05, name
        assert p["profit_per_cell_ci_low"] <= p["profit_per_cell"] <= p["profit_per_cell_ci_high"]
    curve = doc["curve"]
    assert len(curve) == 101 and curve[0]["price_ratio"] == 0.9 and curve[-1]["price_ratio"] == 1.05
    best = max(curve, key=lambda c: c["profit"])
    assert abs(best["price_ratio"] - doc["optimal_price_ratio"]) <= 0.15 / 100


def test_without_costs_there_is_a_demand_curve_and_no_recommendation() -> None:
    t = ladder(4)
    res = fit_demand(ArmTotals(t.names, t.ratios, t.n, t.units, t.revenue))
    doc = res.to_dict()
    assert doc["elasticity"] is not None and doc["optimal_price_ratio"] is None
    assert all(c["profit"] is None for c in doc["curve"])
    assert any("no unit costs" in n for n in doc["notes"])


def test_two_prices_give_the_curve_without_a_curvature_test() -> None:
    res = fit_demand(ladder(5, ratios=np.array([1.0, 0.9])))
    assert res.curvature_pvalue is None
    assert any("needs three prices" in n for n in res.notes)


def test_what_the_panel_cannot_give_is_one_sentence() -> None:
    t = ladder(6)
    one = np.zeros_like(t.n)
    rows = np.arange(len(one))
    one[rows, rows % 4] = t.n.sum(axis=1)  # every product in one arm (a per-product design)
    with pytest.raises(AnalysisError, match="0 product\\(s\\) sold at two prices"):
        fit_demand(ArmTotals(t.names, t.ratios, one, one * 3, one * 30.0))
    with pytest.raises(AnalysisError, match="its ratio is 1"):
        ArmTotals(t.names, t.ratios[::-1].copy(), t.n, t.units, t.revenue)
    with pytest.raises(AnalysisError, match="two prices at least"):
        fit_demand(ArmTotals(("a", "b"), np.array([1.0, 1.0]), t.n[:, :2], t.units[:, :2],
                             t.revenue[:, :2]))  # fmt: skip


def test_a_replicate_without_an_arms_products_gives_no_optimum() -> None:
    # a bootstrap replicate that drew no product of an arm has no elasticity or control
    # mean: no ratio (it was taken for the bottom of the range, and counted in p_edge)
    got = optimal_ratio(np.array([np.nan, -2.0, -2.0]), np.array([1.0, np.nan, 1.0]),
                        np.array([0.5, 0.5, 0.5]), 0.9, 1.05)  # fmt: skip
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == pytest.approx(1.0)
    res = fit_demand(ladder(1, products=3))  # about e^-3 of replicates miss a product
    assert 0 <= res.p_edge <= 1 and res.optimal_price_ratio is not None


def test_a_look_with_too_few_products_for_the_bootstrap_publishes_no_interval() -> None:
    """Three products: a replicate draws weight 0 for all of them with probability about
    e^-3 (5%), more than alpha / 2 of the replicates have no curve, so either end of the
    percentile interval may lie among them: ``identified`` false, the reason, no interval."""
    doc = fit_demand(ladder(1, products=3)).to_dict()
    assert doc["identified"] is False
    assert "give no profit curve" in doc["reason"] and doc["reason"] in doc["notes"]
    assert doc["optimal_price_ratio_ci_low"] is None
    assert doc["optimal_price_ratio_ci_high"] is None
    assert doc["profit_change_at_optimum_ci_low"] is None
    assert doc["profit_change_at_optimum_ci_high"] is None


def test_a_look_whose_replicates_all_peak_beyond_the_range_publishes_no_interval() -> None:
    """Cheap goods (20%): the true optimum 2 x 0.2 = 0.4 lies far below the ladder, every
    replicate's optimum is clamped to its bottom, 0.9, and the percentile interval would be
    [0.9, 0.9]. The look says so instead of publishing an interval of zero width."""
    doc = fit_demand(ladder(1, cost_share=0.2)).to_dict()
    assert doc["p_edge"] == 1.0 and doc["optimal_price_ratio"] == 0.9
    assert doc["identified"] is False and "peak below the tested range" in doc["reason"]
    assert doc["optimal_price_ratio_ci_low"] is None
    assert doc["profit_change_at_optimum_ci_low"] is None
    # an identified look has both intervals, each of positive width
    ok = fit_demand(ladder(1)).to_dict()
    assert ok["identified"] is True and ok["reason"] is None
    assert ok["optimal_price_ratio_ci_low"] < ok["optimal_price_ratio_ci_high"]
    assert ok["profit_change_at_optimum_ci_low"] < ok["profit_change_at_optimum_ci_high"]


def _true_change(seed: int, r: float, cost_share: float, products: int = 150) -> float:
    """The expected profit change per product-period of :func:`ladder`'s market (its first
    two draws: base prices and mean units; elasticity -2) at listed ratio ``r`` against 1."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(5.0, 50.0, products)
    mu = np.exp(rng.uniform(0.0, np.log(20.0), products))
    margin = r * base - cost_share * base
    return float(np.mean(mu * (margin * r**-2.0 - (1.0 - cost_share) * base)))


def test_where_the_control_is_the_best_price_the_profit_change_covers_a_loss() -> None:
    """Elasticity -2 and costs at half the list price: profit r^-2 (r - 0.5) peaks at r = 1,
    the control's price, so the true change at any recommended ratio is at most 0. The fitted
    change at the fitted optimum is never below 0; its interval, the replicates' curves at
    that same ratio, reaches below 0 and covers the true change (a loss) within the Monte
    Carlo band of 95% over 200 seeds (SE 1.5 points)."""
    runs, hits, below = 200, 0, 0
    for seed in range(runs):
        res = fit_demand(ladder(seed, cost_share=0.5), replicates=499)
        assert res.identified and res.profit_change is not None and res.profit_change >= 0
        assert res.profit_change_ci is not None and res.optimal_price_ratio is not None
        truth = _true_change(seed, res.optimal_price_ratio, 0.5)
        assert truth <= 0
        lo, hi = res.profit_change_ci
        hits += lo <= truth <= hi
        below += lo < 0
    assert 0.91 <= hits / runs <= 0.99, hits / runs
    assert below / runs >= 0.9, below / runs


def test_the_same_panel_gives_the_same_interval() -> None:
    a, b = fit_demand(ladder(7)).to_dict(), fit_demand(ladder(7)).to_dict()
    assert a == b


def test_a_ladder_whose_control_is_its_lowest_price_keeps_the_optimums_interval() -> None:
    """A price-rise ladder (1.00, 1.05, 1.10) whose best price is the control's (elasticity
    -2, costs at half the list price: profit peaks at r = 1): the fit recommends the control's
    price, where the profit change is 0 by definition, and its replicates spread over the
    ladder (not all clamped to 1.00). That look was published as ``identified`` false, "no
    interval", with the optimum's interval dropped, at every look of such an experiment (6 of
    8 seeds here); the optimum's interval is placed, and the change at the control's own price
    is exactly 0."""
    doc = fit_demand(ladder(1, cost_share=0.5, ratios=np.array([1.0, 1.05, 1.10]))).to_dict()
    assert doc["optimal_price_ratio"] == 1.0 and doc["p_edge"] < 0.9
    assert doc["identified"] is True and doc["reason"] is None
    assert doc["optimal_price_ratio_ci_low"] == 1.0 < doc["optimal_price_ratio_ci_high"]
    assert doc["profit_change_at_optimum"] == 0.0
    assert doc["profit_change_at_optimum_ci_low"] == doc["profit_change_at_optimum_ci_high"] == 0.0
