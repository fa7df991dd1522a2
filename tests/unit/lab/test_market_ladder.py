"""The market simulator runs price ladders (issue #41 part 6): every arm of an ``arms:`` list
of more than two arms is sold at its own listed price ratio, and the truths are per arm.

The expected values are computed here from the market's parameters (``market.elasticity``,
``market.products``, the substitutes graph) and the panel's ``y0_expected``, following the
demand model of docs/simulator.md ("Price ladders"), not by calling the truths under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.errors import SpecError
from controller.spec import load_spec
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import Market
from lab.simulate import experiment_slots, market_for_spec, run_spec
from streams.cli import app

RATIOS = {"list": 1.0, "p90": 0.9, "p95": 0.95, "p105": 1.05}
TWO = {"treatment_policy": "t", "control_policy": "c", "price_ratio": 0.9}


def ladder(n_products: int = 48, days: int = 28, **extra: Any) -> dict[str, Any]:
    arms = [
        {"name": name, "policy": f"price-{name}", "price_ratio": r, "allocation": 0.25}
        | ({"control": True} if name == "list" else {})
        for name, r in RATIOS.items()
    ]
    end = pd.Timestamp("2026-05-04") + pd.Timedelta(days=days)
    return {
        "id": "ladder",
        "design": "random-days",
        "products": [f"P{i:03d}" for i in range(n_products)],
        "arms": arms,
        "start": "2026-05-04T00:00:00+00:00",
        "end": end.strftime("%Y-%m-%dT00:00:00+00:00"),
        "seed": 3,
    } | extra


LADDER_YAML = """
id: ladder
design: random-days
products: [a, b, c, d, e, f, g, h, i, j, k, l]
arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.25, control: true}
  - {name: p90, policy: price-90, price_ratio: 0.9, allocation: 0.25}
  - {name: p95, policy: price-95, price_ratio: 0.95, allocation: 0.25}
  - {name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.25}
start: 2026-05-04
end: 2026-06-01
seed: 3
unit_costs: {a: 5, b: 5, c: 5, d: 5, e: 5, f: 5, g: 5, h: 5, i: 5, j: 5, k: 5, l: 5}
"""


def quiet(**kw: Any) -> MarketConfig:
    """A market without spikes (y0_expected is mu0) whose only treatment is the price."""
    return MarketConfig.model_validate({"outlier_probability": 0.0, "effect_modifiers": {}} | kw)


def analysed(panel: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    p = panel["probability"].to_numpy()
    return ((p > 0) & (p < 1) & (panel["blackout"].to_numpy() == 0)).reshape(shape)


def global_lift(market: Market, ratio: float, carry: float, spillover: float) -> np.ndarray:
    """elasticity_i * log(r) * sum_l decay**l + spillover where i has substitutes (r != 1)."""
    has = np.array([market.substitutes.degree(p) > 0 for p in market.product_ids])
    return market.elasticity * np.log(ratio) * carry + spillover * has * (ratio != 1.0)


# ------------------------------------------------------------------ the market's demand
def test_a_two_price_ladder_is_the_one_treatment_market() -> None:
    cfg = MarketConfig(n_products=30, effect_modifiers={}, carryover_order=1, spillover=-0.2)
    one = Market(cfg.model_copy(update={"price_change": -0.1}), seed=4)
    ladder_market = Market(cfg, seed=4)
    slots = one.slots([one.day_window(d) for d in range(10)], per_day=1)
    W = np.random.default_rng(2).random((30, 10)) < 0.5
    a = one.run_slots(W, slots)
    b = ladder_market.run_slots(W, slots, ratios=np.where(W, 0.9, 1.0))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(y.expected_units, x.expected_units, rtol=1e-12)
        np.testing.assert_allclose(
            y.true_effect[y.treated], x.true_effect[x.treated], rtol=1e-10, atol=1e-12
        )
        assert (y.true_effect[~y.treated] == 0).all()  # a control cell's own arm: no effect
        assert (y.price == x.price).all() and (y.treated == x.treated).all()


def test_each_cell_sells_at_its_arms_price_and_demand_follows_it() -> None:
    spec = load_spec(ladder(n_products=12, days=7))
    market = market_for_spec(spec, quiet(), seed=1)
    sim = run_spec(spec, market)
    panel = sim.panel
    base = panel["base_price"].to_numpy()
    assert (panel["price"].to_numpy() == np.round(base * panel["price_ratio"], 2)).all()
    eps = np.repeat(market.elasticity, 7)
    lift = np.log(panel["expected_units"] / panel["y0_expected"])
    np.testing.assert_allclose(lift, eps * np.log(panel["price_ratio"]), atol=1e-12)


def test_carryover_weighs_the_log_ratios_of_the_last_periods() -> None:
    market = Market(quiet(n_products=5, carryover_order=2, carryover_decay=0.5), seed=2)
    slots = market.slots([market.day_window(d) for d in range(4)], per_day=1)
    R = np.ones((5, 4))
    R[:, 0] = 0.5  # three periods before the last: beyond order 2
    R[:, 1], R[:, 2] = 0.8, 1.1  # lags 2 and 1 (weights 0.25 and 0.5); the last at control's
    out = market.run_slots(R != 1, slots, ratios=R)[3]
    lift = np.log(out.expected_units / out.expected_units_control)
    assert not out.treated.any() and (out.true_effect == 0).all()
    expected = market.elasticity * (0.5 * np.log(1.1) + 0.25 * np.log(0.8))
    np.testing.assert_allclose(lift, expected, atol=1e-12)


def test_a_market_with_effect_modifiers_refuses_ratios() -> None:
    market = Market(MarketConfig(n_products=5), seed=0)  # the default width modifier
    slots = market.slots([market.day_window(0)], per_day=1)
    with pytest.raises(ValueError, match="^a market with effect_modifiers cannot run") as err:
        market.run_slots(np.ones((5, 1), bool), slots, ratios=np.full((5, 1), 0.9))
    assert str(err.value).count(". ") == 0
    spec = load_spec(ladder(n_products=5, days=7))
    modifiers = MarketConfig(n_products=5, effect_modifiers={"width": 0.1})
    with pytest.raises(LabError, match="effect_modifiers cannot run with the price ladder"):
        market_for_spec(spec, modifiers, seed=0)
    with pytest.raises(LabError, match="^a market with effect_modifiers cannot run"):
        run_spec(spec, Market(modifiers, seed=0, product_ids=spec.all_products()))


def test_the_default_effect_modifiers_are_dropped_for_a_ladder_only() -> None:
    spec = load_spec(ladder(n_products=5, days=7))
    assert market_for_spec(spec, MarketConfig(), seed=0).cfg.effect_modifiers == {}
    two = load_spec(ladder(n_products=5, days=7) | {"arms": ()} | TWO)
    assert market_for_spec(two, MarketConfig(), seed=0).cfg.effect_modifiers == {"width": 0.02}


# ------------------------------------------------------------------ the truths per arm
@pytest.mark.parametrize(
    "carryover, spillover", [(0, 0.0), (1, -0.15)], ids=["plain", "carryover-spillover"]
)
def test_each_arms_truth_is_its_price_against_control(carryover: int, spillover: float) -> None:
    spec = load_spec(ladder())
    cfg = quiet(carryover_order=carryover, carryover_decay=0.5, spillover=spillover)
    market = market_for_spec(spec, cfg, seed=5)
    sim = run_spec(spec, market)
    panel, shape = sim.panel, sim.matrices.arm.shape
    cells = analysed(panel, shape)
    y0 = panel["y0_expected"].to_numpy().reshape(shape)  # mu0: no spikes
    base = market.products["base_price"].to_numpy()[:, None] * np.ones(shape)
    carry = 1.0 + 0.5 * carryover
    for arm, r in RATIOS.items():
        if arm == "list":
            continue
        te = y0 * np.expm1(global_lift(market, r, carry, spillover))[:, None]
        units = te[cells].mean()
        assert sim.metric_truth("units", arm=arm) == pytest.approx(units, rel=1e-12)
        rel = sim.metric_truth("units", relative=True, arm=arm)
        assert rel == pytest.approx(units / y0[cells].mean(), rel=1e-12)
        price = np.round(base * r, 2)
        revenue = (price * (y0 + te) - base * y0)[cells].mean()
        assert sim.metric_truth("revenue", arm=arm) == pytest.approx(revenue, rel=1e-12)
        assert np.isnan(sim.metric_truth("profit", arm=arm))  # the spec gives no costs
    assert cells.all()  # random days analyse every cell, whichever arm it drew


def test_the_truths_of_a_ladder_name_their_arm() -> None:
    spec = load_spec(ladder(n_products=8, days=7))
    sim = run_spec(spec, market_for_spec(spec, quiet(), seed=0))
    for call in (
        lambda: sim.metric_truth("units"),
        lambda: sim.truth,
        lambda: sim.metric_truth("units", arm="list"),
        lambda: sim.metric_truth("units", arm="p80"),
        lambda: sim.metric_truth("elasticity", arm="p90"),
    ):
        with pytest.raises(LabError) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(LabError, match="name one of p90, p95, p105"):
        sim.metric_truth("units")


def test_the_observed_units_ratio_of_each_arm_recovers_its_truth() -> None:
    spec = load_spec(ladder(n_products=240, days=42, seed=17))
    sim = run_spec(spec, market_for_spec(spec, MarketConfig(effect_modifiers={}), seed=17))
    panel = sim.panel
    ok = analysed(panel, sim.matrices.arm.shape).ravel()
    units, arm = panel["units"].to_numpy(dtype=float)[ok], panel["arm"].to_numpy()[ok]
    control = units[arm == "list"]
    mc = control.mean()
    for name in ("p90", "p95", "p105"):
        x = units[arm == name]
        ratio = x.mean() / mc
        se = ratio * np.sqrt(
            x.var(ddof=1) / (len(x) * x.mean() ** 2) + control.var(ddof=1) / (len(control) * mc**2)
        )
        truth = sim.metric_truth("units", relative=True, arm=name)
        assert abs(ratio - 1 - truth) < 4 * se, (name, ratio - 1, truth, se)
        assert se < 0.03  # a test with power: the arms are 9-24% apart


# ------------------------------------------------------------------ the optimum
@pytest.mark.parametrize(
    "carryover, spillover", [(0, 0.0), (1, -0.2), (0, 0.05)], ids=["plain", "steal", "give"]
)
def test_the_optimal_ratio_is_the_argmax_of_true_profit(carryover: int, spillover: float) -> None:
    plain = load_spec(ladder())
    cfg = quiet(carryover_order=carryover, spillover=spillover)
    market = market_for_spec(plain, cfg, seed=9)
    base = market.products["base_price"].to_numpy()
    costs = dict(zip(market.product_ids, np.round(0.5 * base, 2), strict=True))
    spec = load_spec(ladder() | {"unit_costs": costs})
    sim = run_spec(spec, market)
    shape = sim.matrices.arm.shape
    cells = analysed(sim.panel, shape)
    y0 = sim.panel["y0_expected"].to_numpy().reshape(shape)
    exposure = np.where(cells, y0, 0.0).sum(axis=1)
    c = np.array([costs[p] for p in market.product_ids])
    carry = 1.0 + 0.5 * carryover
    grid = np.append(np.linspace(0.9, 1.05, 15001), 1.0)
    profit = [
        ((r * base - c) * exposure * np.exp(global_lift(market, r, carry, spillover))).sum()
        for r in grid
    ]
    best = float(grid[int(np.argmax(profit))])
    assert sim.optimal_ratio_truth() == pytest.approx(best, abs=2e-5)
    if spillover < 0:
        assert best == 1.0  # stealing from every neighbour: the list price wins
    else:  # interior: eps / (1 + eps) * c / p is 1 at eps -2, less for the more elastic
        assert 0.9 < best < 1.05


def test_the_optimal_ratio_is_nan_without_costs() -> None:
    spec = load_spec(ladder(n_products=8, days=7))
    sim = run_spec(spec, market_for_spec(spec, quiet(), seed=0))
    assert np.isnan(sim.optimal_ratio_truth())


def test_untreated_means_are_the_panels_control_expectation() -> None:
    spec = load_spec(ladder(n_products=6, days=7))
    market = market_for_spec(spec, quiet(), seed=0)
    sim = run_spec(spec, market)
    mu0 = market.untreated_means(experiment_slots(spec, market))
    np.testing.assert_array_equal(mu0.ravel(), sim.panel["y0_expected"].to_numpy())


# ------------------------------------------------------------------ the command line
def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def test_simulate_writes_a_ladders_arms_and_prices(tmp_path: Path) -> None:
    (tmp_path / "ladder.yaml").write_text(LADDER_YAML)
    out = tmp_path / "x.csv"
    res = _invoke(["simulate", "--spec", str(tmp_path / "ladder.yaml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "p90 (ratio 0.9) +" in res.output and "p105 (ratio 1.05) -" in res.output
    assert "true profit-maximising listed ratio" in res.output
    panel = pd.read_csv(out)
    cols = list(panel.columns)
    assert cols[cols.index("arm") : cols.index("arm") + 3] == ["arm", "price_ratio", "treated"]
    assert set(panel["arm"]) == set(RATIOS)
    assert (panel["price_ratio"] == panel["arm"].map(RATIOS)).all()
    assert (panel["treated"] == (panel["arm"] != "list")).all()
    assert (panel["probability"] == 0.75).all()
    np.testing.assert_allclose(
        panel["price"], np.round(panel["base_price"] * panel["price_ratio"], 2)
    )
    assert "profit" in cols  # the spec gives every product a cost


@pytest.mark.parametrize(
    "edit, extra, says",
    [
        (
            lambda t: (
                t.replace(", price_ratio: 0.9,", ",")
                .replace(", price_ratio: 1.0,", ",")
                .replace(", price_ratio: 0.95,", ",")
                .replace(", price_ratio: 1.05,", ",")
            ),
            [],
            "arms: the simulator models prices only: give every arm a price_ratio",
        ),
        (lambda t: t, ["--price-change", "0.1"], "--price-change 0.1 names one treatment price"),
        (
            lambda t: t,
            ["--config", "modifiers.yaml"],
            "the market config's effect_modifiers cannot run with the price ladder",
        ),
        (
            lambda t: t,
            ["--config", "price.yaml"],
            "the market config's price_change 0.05 names one treatment price",
        ),
        (
            lambda t: t,
            ["--live", "--config", "modifiers.yaml"],
            "the market config's effect_modifiers cannot run with the price ladder",
        ),
    ],
    ids=["no-ratios", "price-change", "effect-modifiers", "config-price-change", "live-modifiers"],
)
def test_what_a_ladder_cannot_be_simulated_with_is_one_sentence(
    tmp_path: Path, edit: Any, extra: list[str], says: str
) -> None:
    (tmp_path / "ladder.yaml").write_text(edit(LADDER_YAML))
    (tmp_path / "modifiers.yaml").write_text("effect_modifiers: {width: 0.02}\n")
    (tmp_path / "price.yaml").write_text("price_change: 0.05\n")
    extra = [str(tmp_path / a) if a.endswith(".yaml") else a for a in extra]
    out = [] if "--live" in extra else ["--out", str(tmp_path / "x.csv")]
    res = _invoke(["simulate", "--spec", str(tmp_path / "ladder.yaml"), *out, *extra])
    assert res.exit_code == 2, res.output
    assert says in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def test_a_ladder_without_ratios_is_refused_by_the_library_too() -> None:
    arms = [{k: v for k, v in a.items() if k != "price_ratio"} for a in ladder()["arms"]]
    spec = load_spec(ladder(n_products=5, days=7) | {"arms": arms})
    with pytest.raises(SpecError, match="^arms: the simulator models prices only"):
        market_for_spec(spec, MarketConfig(), seed=0)
