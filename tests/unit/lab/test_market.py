"""Behaviour of the market simulator (lab/market.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from lab.market import DayOutcome, Market, MarketConfig

# A market whose treatment effect has a closed form: one elasticity for every product, no extra
# heterogeneity, Poisson counts and no spikes.
HOMOGENEOUS = dict(
    elasticity_mean=-2.0,
    elasticity_sd=0.0,
    elasticity_modifiers={},
    effect_modifiers={},
    outlier_probability=0.0,
)


def _bernoulli(n: int, t: int, seed: int, p: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).random((n, t)) < p


# ---------------------------------------------------------------- determinism and shapes
def test_same_seed_same_market_and_panel_other_seed_differs() -> None:
    cfg = MarketConfig(n_products=30)
    W = _bernoulli(30, 6, 1)
    a, b, c = Market(cfg, seed=3), Market(cfg, seed=3), Market(cfg, seed=4)
    pd.testing.assert_frame_equal(a.products, b.products)
    pd.testing.assert_frame_equal(a.simulate_panel(W), b.simulate_panel(W))
    assert nx.utils.graphs_equal(a.substitutes, b.substitutes)
    assert not a.products["base_price"].equals(c.products["base_price"])
    assert not np.array_equal(a.simulate_panel(W)["units"], c.simulate_panel(W)["units"])


def test_demand_seed_redraws_the_days_but_keeps_the_products() -> None:
    cfg = MarketConfig(n_products=30)
    W = _bernoulli(30, 5, 1)
    a, b = Market(cfg, seed=3), Market(cfg, seed=3, demand_seed=99)
    pd.testing.assert_frame_equal(a.products, b.products)
    np.testing.assert_array_equal(a.elasticity, b.elasticity)
    assert not np.array_equal(a.simulate_panel(W)["units"], b.simulate_panel(W)["units"])
    assert Market(cfg, seed=3, demand_seed=3).simulate_panel(W).equals(a.simulate_panel(W))


def test_potential_outcomes_are_fixed_and_monotone_in_treatment() -> None:
    # A product's count depends only on its own mean (inverse-CDF draws from its own uniform):
    # treating other products leaves it unchanged, and a price cut never lowers it.
    n = 60
    m = Market(MarketConfig(n_products=n, **HOMOGENEOUS), seed=2)
    control = m.day_outcomes(4, np.zeros((n, 1), bool)).units
    treated = m.day_outcomes(4, np.ones((n, 1), bool)).units
    half = np.arange(n) < n // 2
    mixed = m.day_outcomes(4, half[:, None]).units
    assert np.all(treated >= control) and treated.sum() > control.sum()
    np.testing.assert_array_equal(mixed[half], treated[half])
    np.testing.assert_array_equal(mixed[~half], control[~half])


def test_poisson_quantile_agrees_with_scipy_and_has_poisson_moments() -> None:
    from scipy import stats

    from lab.market import poisson_quantile

    rng = np.random.default_rng(0)
    q = rng.random(5_000)
    mu = np.exp(rng.uniform(-3.0, 9.0, size=q.size))
    np.testing.assert_array_equal(poisson_quantile(q, mu), stats.poisson.ppf(q, mu))
    draws = poisson_quantile(rng.random(50_000), np.full(50_000, 7.5))
    assert abs(draws.mean() - 7.5) < 4 * np.sqrt(7.5 / 50_000)


def test_a_day_does_not_depend_on_which_days_were_computed_before() -> None:
    cfg = MarketConfig(n_products=20, carryover_order=1)
    W = _bernoulli(20, 10, 2)
    late_first = Market(cfg, seed=5).day_outcomes(9, W)
    m = Market(cfg, seed=5)
    for d in range(9):
        m.day_outcomes(d, W[:, : d + 1])
    in_order = m.day_outcomes(9, W)
    np.testing.assert_array_equal(late_first.units, in_order.units)
    np.testing.assert_allclose(late_first.expected_units, in_order.expected_units)


def test_products_and_outcome_shapes() -> None:
    m = Market(MarketConfig(n_products=50, n_categories=5), seed=0)
    assert list(m.products["product"]) == m.product_ids
    assert m.product_ids[0] == "P0001" and len(set(m.product_ids)) == 50
    assert m.products["category"].nunique() == 5
    for col in ("base_price", "width", "battery", "rating", "weight"):
        assert m.products[col].dtype.kind == "f"
    out = m.day_outcomes(0, np.zeros((50, 1), dtype=bool))
    assert isinstance(out, DayOutcome)
    assert out.units.dtype.kind == "i" and out.units.shape == (50,)
    np.testing.assert_allclose(out.revenue, out.units * out.price)
    # Defaults: mean demand in the 20-50 units/day range.
    assert 15 < out.expected_units_control.mean() < 60


def test_treated_price_is_base_price_changed_by_configured_percentage() -> None:
    m = Market(MarketConfig(n_products=10, price_change=-0.1), seed=0)
    arms = np.array([True] * 5 + [False] * 5)
    out = m.day_outcomes(0, arms[:, None])
    base = m.products["base_price"].to_numpy()
    np.testing.assert_allclose(out.price[:5], np.round(base[:5] * 0.9, 2))
    np.testing.assert_allclose(out.price[5:], base[5:])


def test_arms_history_with_wrong_shape_is_rejected() -> None:
    m = Market(MarketConfig(n_products=10), seed=0)
    with pytest.raises(ValueError, match="n_products=10"):
        m.day_outcomes(0, np.zeros((9, 1), dtype=bool))
    with pytest.raises(ValueError, match="1..3 columns"):
        m.day_outcomes(2, np.zeros((10, 4), dtype=bool))
    with pytest.raises(ValueError, match="day"):
        m.day_outcomes(-1, np.zeros((10, 1), dtype=bool))


# ---------------------------------------------------------------- ground truth
def test_true_effect_has_closed_form_in_homogeneous_market() -> None:
    m = Market(MarketConfig(n_products=40, **HOMOGENEOUS), seed=1)
    out = m.day_outcomes(3, np.zeros((40, 4), dtype=bool))
    expected = out.expected_units_control * (0.95**-2.0 - 1.0)
    np.testing.assert_allclose(out.true_effect, expected, rtol=1e-12)
    np.testing.assert_allclose(out.direct_effect, expected, rtol=1e-12)


def test_effect_is_heterogeneous_in_characteristics() -> None:
    cfg = MarketConfig(n_products=400, elasticity_sd=0.0, effect_modifiers={})
    m = Market(cfg, seed=2)
    rel = m.effects(0)[2] / m.effects(0)[0]  # relative lift per product
    # elasticity_modifiers default: higher rating -> less elastic -> smaller lift from a price cut
    corr = np.corrcoef(m.products["rating"], rel)[0, 1]
    assert corr < -0.5


def _ht_check(panel: pd.DataFrame, lags: int, p: float) -> tuple[float, float, float]:
    """Horvitz-Thompson estimate of the lag-`lags` effect (Bojinov, Simchi-Levi & Zhao 2023).

    A product-day counts if its last lags+1 arms are all treated (+) or all control (-), weighted
    by the inverse probability of that path under independent Bernoulli(p) coins. Y minus the
    (assignment-independent) y0_expected is used as a control variate; it keeps the estimator
    unbiased. Products are independent given the latent demand (their coins and count draws
    are), but a product's overlapping windows share coins when lags > 0, so the SE is the sample
    SD of per-product mean terms over sqrt(n_products). Returns (estimate, se, mean truth).
    """
    wide_w = panel.pivot(index="product", columns="day", values="treated").to_numpy()
    r = (panel["units"] - panel["y0_expected"]).to_numpy()
    wide_r = r.reshape(wide_w.shape)
    truth = panel.pivot(index="product", columns="day", values="true_effect").to_numpy()
    k = lags + 1
    all_t = np.ones_like(wide_w[:, lags:], dtype=bool)
    all_c = np.ones_like(all_t)
    for lag in range(k):
        window = wide_w[:, lags - lag : wide_w.shape[1] - lag]
        all_t &= window
        all_c &= ~window
    terms = all_t * wide_r[:, lags:] / p**k - all_c * wide_r[:, lags:] / (1 - p) ** k
    per_product = terms.mean(axis=1)
    se = per_product.std(ddof=1) / np.sqrt(len(per_product))
    return float(terms.mean()), float(se), float(truth[:, lags:].mean())


def test_true_effect_matches_randomised_contrast_default_market() -> None:
    m = Market(MarketConfig(n_products=400), seed=11)
    panel = m.simulate_panel(_bernoulli(400, 40, 12))
    est, se, truth = _ht_check(panel, lags=0, p=0.5)
    assert truth > 1.0  # a -5% price cut with elasticity about -2 sells more
    assert abs(est - truth) < 4 * se, (est, se, truth)
    assert 4 * se < 0.25 * truth  # the check has power against a wrong-size truth
    assert m.true_effect() == pytest.approx(
        np.mean([m.day_outcomes(d, np.zeros((400, 1), bool)).true_effect.mean() for d in range(28)])
    )


def test_lag1_true_effect_matches_randomised_contrast_with_carryover() -> None:
    cfg = MarketConfig(n_products=400, carryover_order=1, carryover_decay=0.6)
    m = Market(cfg, seed=21)
    panel = m.simulate_panel(_bernoulli(400, 40, 22))
    est, se, truth = _ht_check(panel, lags=1, p=0.5)
    assert abs(est - truth) < 4 * se, (est, se, truth)
    # the lag-1 effect is larger than the same-day-only effect by the carried-over part
    lag0_only = (np.exp(m.treatment_log_lift) - 1) * m.effects(0)[0]
    assert m.effects(0)[2].mean() > 1.3 * lag0_only.mean()


# ---------------------------------------------------------------- carryover
def test_yesterdays_arm_changes_todays_expected_units_with_carryover() -> None:
    n = 30
    today_control = np.zeros(n, dtype=bool)
    yesterday_treated = np.column_stack([np.ones(n, bool), today_control])
    yesterday_control = np.column_stack([np.zeros(n, bool), today_control])

    m1 = Market(MarketConfig(n_products=n, carryover_order=1, carryover_decay=0.5, **HOMOGENEOUS))
    a = m1.day_outcomes(5, yesterday_treated).expected_units
    b = m1.day_outcomes(5, yesterday_control).expected_units
    np.testing.assert_allclose(a / b, 0.95 ** (-2.0 * 0.5), rtol=1e-12)

    m0 = Market(MarketConfig(n_products=n, carryover_order=0, **HOMOGENEOUS))
    np.testing.assert_allclose(
        m0.day_outcomes(5, yesterday_treated).expected_units,
        m0.day_outcomes(5, yesterday_control).expected_units,
    )


def test_carryover_fades_beyond_order_m() -> None:
    n = 10
    m = Market(MarketConfig(n_products=n, carryover_order=2, **HOMOGENEOUS), seed=0)
    hist = np.zeros((n, 6), dtype=bool)
    base = m.day_outcomes(5, hist).expected_units
    three_days_ago = hist.copy()
    three_days_ago[:, 2] = True  # day 2 is 3 days before day 5: outside m = 2
    np.testing.assert_allclose(m.day_outcomes(5, three_days_ago).expected_units, base)
    two_days_ago = hist.copy()
    two_days_ago[:, 3] = True
    assert np.all(m.day_outcomes(5, two_days_ago).expected_units > base)


# ---------------------------------------------------------------- spillover
@pytest.mark.parametrize("spillover", [-0.3, 0.3])
def test_treated_substitutes_move_control_demand_in_configured_direction(spillover: float) -> None:
    cfg = MarketConfig(n_products=200, spillover=spillover)
    m = Market(cfg, seed=4)
    assert m.spillover == spillover
    g = m.substitutes
    cats = m.products.set_index("product")["category"]
    assert all(cats[u] == cats[v] for u, v in g.edges)  # substitutes share a category

    # Expected demand: a control product whose substitutes are all treated.
    focal = next(p for p in m.product_ids if g.degree(p) > 0)
    idx = {p: i for i, p in enumerate(m.product_ids)}
    arms = np.zeros(200, dtype=bool)
    arms[[idx[q] for q in g.neighbors(focal)]] = True
    with_nbrs = m.day_outcomes(0, arms[:, None]).expected_units[idx[focal]]
    alone = m.day_outcomes(0, np.zeros((200, 1), bool)).expected_units[idx[focal]]
    assert np.sign(with_nbrs - alone) == np.sign(spillover)

    # Realised demand of control product-days rises or falls with the treated share.
    panel = m.simulate_panel(_bernoulli(200, 30, 5))
    ctrl = panel[~panel["treated"] & (panel["substitutes_treated_share"].notna())]
    ratio = ctrl["units"] / ctrl["y0_expected"]
    high = ratio[ctrl["substitutes_treated_share"] >= 2 / 3]
    low = ratio[ctrl["substitutes_treated_share"] <= 1 / 3]
    diff = high.mean() - low.mean()
    se = np.sqrt(high.var() / len(high) + low.var() / len(low))
    assert np.sign(diff) == np.sign(spillover) and abs(diff) > 4 * se


def test_global_effect_includes_spillover_direct_effect_does_not() -> None:
    m = Market(MarketConfig(n_products=100, spillover=-0.2), seed=6)
    mu0, direct, total = m.effects(0)
    assert m.true_effect(0) < m.direct_effect(0)
    none = Market(MarketConfig(n_products=100, spillover=0.0), seed=6)
    assert none.true_effect(0) == pytest.approx(none.direct_effect(0))
    np.testing.assert_allclose(direct, none.effects(0)[1])


# ---------------------------------------------------------------- events
def test_sale_events_sum_to_daily_units_and_lie_inside_the_day() -> None:
    m = Market(MarketConfig(n_products=40, timezone="Europe/Berlin"), seed=8)
    out = m.day_outcomes(2, _bernoulli(40, 3, 9))
    start, end = m.day_window(2)
    events = m.sale_events(2, start, end, out, np.random.default_rng(3))
    again = m.sale_events(2, start, end, out, np.random.default_rng(3))
    assert events == again
    per_product = pd.DataFrame(events).groupby("product")["units"].sum()
    for i, pid in enumerate(m.product_ids):
        assert per_product.get(pid, 0) == out.units[i]
    assert all(start <= e["occurred_at"] < end and e["occurred_at"].tzinfo for e in events)
    assert all(1 <= e["units"] <= 3 for e in events)
    assert all(e["revenue"] == e["units"] * e["unit_price"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(len(e["event_id"]) == 32 for e in events)
    hours = np.array([e["occurred_at"].hour for e in events])
    assert (hours >= 18).mean() > (hours < 6).mean()  # evening peak, night trough


def test_sale_events_follow_a_custom_window() -> None:
    m = Market(MarketConfig(n_products=5), seed=0)
    out = m.day_outcomes(0, np.zeros((5, 1), bool))
    start = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)
    end = start + dt.timedelta(minutes=10)
    events = m.sale_events(0, start, end, out, np.random.default_rng(0))
    assert sum(e["units"] for e in events) == out.units.sum()
    assert all(start <= e["occurred_at"] < end for e in events)
    with pytest.raises(ValueError, match="timezone-aware"):
        m.sale_events(0, start.replace(tzinfo=None), end, out, np.random.default_rng(0))


def test_competitor_undercuts_drop_below_base_price_during_episode() -> None:
    cfg = MarketConfig(n_products=50, undercut_probability=0.3, undercut_depth_min=0.12)
    m = Market(cfg, seed=1)
    start, end = m.day_window(0)
    events = m.competitor_events(0, start, end, np.random.default_rng(0))
    assert events and set(events[0]) == {"product", "competitor", "price", "observed_at"}
    assert all(start <= e["observed_at"] < end for e in events)
    base = m.products.set_index("product")["base_price"]
    episodes = m.undercut_episodes(0)
    assert len(episodes) > 5
    for ep in episodes.itertuples():
        at = start + (end - start) * ep.start_fraction
        hit = [
            e
            for e in events
            if e["product"] == ep.product
            and e["competitor"] == ep.competitor
            and abs((e["observed_at"] - at).total_seconds()) < 1e-3
        ]
        assert hit and hit[0]["price"] <= base[ep.product] * (1 - 0.12) + 0.01
    undercut = {(p, c) for p, c in zip(episodes["product"], episodes["competitor"], strict=True)}
    normal = [e for e in events if (e["product"], e["competitor"]) not in undercut]
    assert all(e["price"] > base[e["product"]] * 0.9 for e in normal)


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_products": 0}, "n_products"),
        ({"price_change": -1.5}, "price_change"),
        ({"outlier_probability": 2.0}, "outlier_probability"),
        ({"weekly_profile": (1.0, 1.0)}, "weekly_profile"),
        ({"effect_modifiers": {"colour": 1.0}}, "effect_modifiers"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"carryover_order": -1}, "carryover_order"),
        ({"price_min": 50.0, "price_max": 10.0}, "price_min"),
        ({"n_prodcts": 10}, "n_prodcts"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        MarketConfig(**kwargs)


def test_config_reads_yaml_and_json(tmp_path) -> None:
    (tmp_path / "m.yaml").write_text("n_products: 12\ncarryover_order: 1\n")
    (tmp_path / "m.json").write_text(json.dumps({"n_products": 13, "spillover": -0.1}))
    assert MarketConfig.from_file(tmp_path / "m.yaml").carryover_order == 1
    assert MarketConfig.from_file(tmp_path / "m.json").n_products == 13
    (tmp_path / "bad.yaml").write_text("n_products: -3\n")
    with pytest.raises(ValidationError, match="n_products"):
        MarketConfig.from_file(tmp_path / "bad.yaml")


def test_panel_is_accepted_by_the_analysis_panel_type() -> None:
    from analysis.panel import Panel

    m = Market(MarketConfig(n_products=12), seed=0)
    long = m.simulate_panel(_bernoulli(12, 7, 0))
    panel = Panel.from_long(long, unit="product", time="day", outcome="units", treated="treated")
    assert panel.Y.shape == (12, 7)
    assert list(panel.units) == m.product_ids


#: every field of every outcome of :func:`_merge_draws`, drawn by the code before
#: period_outcomes drew the one treatment, the price ladder and day_outcomes through one path
#: (dd8828b, the parent of the merge e383c4b, which promised the same draws). Recorded by
#: running this module's ``_merge_draws`` with that commit's ``lab`` first on the path:
#: ``PYTHONPATH=<checkout of dd8828b> python tests/unit/lab/test_market.py``
DRAWS_BEFORE_MERGE = Path(__file__).with_name("draws_before_merge.npz")
DRAW_FIELDS = ("units", "price", "revenue", "treated", "expected_units", "expected_units_control",
               "true_effect", "direct_effect", "outlier", "substitutes_treated_share")  # fmt: skip


def _merge_draws() -> dict[str, np.ndarray]:
    """Each field of every outcome of the merge's cases, concatenated in order."""
    drawn: dict[str, list[np.ndarray]] = {f: [] for f in DRAW_FIELDS}

    def add(outcomes: list) -> None:
        for o in outcomes:
            for f in DRAW_FIELDS:
                drawn[f].append(np.ravel(np.asarray(getattr(o, f))))

    for carry in (0, 2):
        m = Market(MarketConfig(n_products=60, carryover_order=carry), seed=3)
        add(m.run(np.random.default_rng(1).random((60, 20)) < 0.5))  # day_outcomes
        m = Market(MarketConfig(n_products=60, carryover_order=carry, effect_modifiers={}), seed=3)
        R = np.random.default_rng(2).choice([1.0, 0.9, 0.95, 1.05], size=(60, 20))
        add(m.run_slots(R != 1.0, m.slots([m.day_window(d) for d in range(20)], 1), ratios=R))
    m = Market(MarketConfig(n_products=30, carryover_order=2, effect_modifiers={}), seed=5)
    bounds = []
    for d in range(3):
        a, _ = m.day_window(d)
        bounds += [
            (a + dt.timedelta(hours=6 * i), a + dt.timedelta(hours=6 * i + 6)) for i in range(4)
        ]
    R = np.random.default_rng(4).choice([1.0, 0.9, 1.1], size=(30, 12))
    add(m.run_slots(R != 1.0, m.slots(bounds, 4), ratios=R))
    add(m.run_slots(R != 1.0, m.slots(bounds, 4)))
    return {f: np.concatenate(v) for f, v in drawn.items()}


def test_one_period_draw_keeps_every_draw_of_before_the_merge() -> None:
    """The same draws: every count and flag equal, every float to 1e-12 of the recorded one.

    Not byte for byte: a SHA-256 of the bytes, recorded on a machine with AVX-512, failed on an
    AVX2-only one with the old code as well as the new (numpy's float64 exp and log have
    AVX-512 kernels; the last bits differ). A different draw moves values by far more than that."""
    with np.load(DRAWS_BEFORE_MERGE) as recorded:
        before = {f: recorded[f] for f in recorded.files}
    now = _merge_draws()
    assert set(now) == set(before) == set(DRAW_FIELDS)
    for f in DRAW_FIELDS:
        assert now[f].dtype == before[f].dtype, f
        assert now[f].shape == before[f].shape, f
        if np.issubdtype(before[f].dtype, np.floating):
            np.testing.assert_allclose(now[f], before[f], rtol=1e-12, atol=1e-12, err_msg=f)
        else:
            np.testing.assert_array_equal(now[f], before[f], err_msg=f)


if __name__ == "__main__":
    import sys

    import lab.market

    # the draws of before the merge, never the code under test's: refuse this checkout's lab
    if Path(lab.market.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[3]):
        sys.exit(
            "put a checkout of dd8828b first on PYTHONPATH: this would record this lab's draws"
        )
    np.savez_compressed(DRAWS_BEFORE_MERGE, **_merge_draws())
