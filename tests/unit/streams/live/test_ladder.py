"""A price ladder on the live driver (issue #41 part 8), without a broker: a LiveRun records
each cell's arm and listed ratio from its assignment message and draws the market's periods
at those prices, as the offline simulator does for the same spec; its truths are the
simulator's; and the pieces `pricelab demo --ladder` prints its end with."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from controller.errors import SpecError
from controller.settings import Settings
from controller.spec import ExperimentSpec, load_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import experiment_slots, market_for_spec, run_spec
from streams.live.demo import DemoConfig, demo_market, demo_spec
from streams.live.driver import LiveRun, assigned_arm, listed_ratio, verdict_line
from streams.live.ladder import (
    LADDER_ARMS,
    arm_scorecard,
    arm_sequences,
    recommendation,
    text_curve,
    true_best,
)
from streams.live.play import play

RATIOS = {"list": 1.0, "p90": 0.9, "p95": 0.95, "p105": 1.05}
END = datetime.fromisoformat("2026-05-11T00:00:00+00:00")


def ladder_spec(n: int = 12, days: int = 6) -> ExperimentSpec:
    products = [f"P{i:03d}" for i in range(n)]
    arms = [
        {"name": name, "policy": f"price-{name}", "price_ratio": r, "allocation": 0.25}
        | ({"control": True} if name == "list" else {})
        for name, r in RATIOS.items()
    ]
    end = pd.Timestamp("2026-05-04") + pd.Timedelta(days=days)
    return load_spec(
        {
            "id": "ladder",
            "design": "random-days",
            "products": products,
            "arms": arms,
            "start": "2026-05-04T00:00:00+00:00",
            "end": end.strftime("%Y-%m-%dT00:00:00+00:00"),
            "seed": 3,
            "unit_costs": {p: 4.0 + i % 5 for i, p in enumerate(products)},
        }
    )


def message(
    spec: ExperimentSpec, arm: int, analysed: bool, *, ratio: bool = True
) -> dict[str, Any]:
    """An assignment message as the controller publishes it for an ``arms:`` spec."""
    a = spec.arm_list()[arm]
    msg = {
        "arm": "control" if a.control else "treatment",
        "arm_name": a.name,
        "probability": 0.75 if analysed else 1.0,
        "blackout_until": None,
    }
    return msg | ({"price_ratio": a.price_ratio} if ratio else {})


def played(carryover: int = 1) -> tuple[LiveRun, Any]:
    """A ladder run fed the offline simulator's assignment, every period drawn; and the
    simulator's experiment on the same market."""
    spec = ladder_spec()
    market = market_for_spec(
        spec, MarketConfig(carryover_order=carryover, outlier_probability=0.0), seed=5
    )
    sim = run_spec(spec, market)
    run = LiveRun(spec, market)
    m = sim.matrices
    for d in range(m.arm.shape[1]):
        for i, p in enumerate(market.product_ids):
            run.record(d, p, message(spec, int(m.arm[i, d]), bool(m.analysed[i, d])), END)
        run.draw_period(d)
    return run, sim


def test_a_ladder_run_draws_what_the_offline_simulator_draws() -> None:
    run, sim = played()
    m = sim.matrices
    assert (run.arm_index == m.arm).all() and (run.arms == m.treated).all()
    assert run.ratios is not None and np.allclose(run.ratios, sim.ratios[m.arm])
    assert (run.analysed == m.analysed).all()
    shape = m.arm.shape
    units = np.column_stack([run.draw_period(d).units for d in range(shape[1])])
    assert (units == sim.panel["units"].to_numpy().reshape(shape)).all()
    price = np.column_stack([run.draw_period(d).price for d in range(shape[1])])
    assert np.allclose(price, sim.panel["price"].to_numpy().reshape(shape))


def test_a_ladders_truths_are_the_simulators() -> None:
    run, sim = played()
    for arm in ("p90", "p95", "p105"):
        for metric in ("units", "revenue", "profit", "price"):
            for relative in (False, True):
                want = sim.metric_truth(metric, relative=relative, arm=arm)
                got = run.arm_truth(arm, metric=metric, relative=relative)
                assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), (arm, metric)
    assert run.optimal_ratio_truth() == pytest.approx(sim.optimal_ratio_truth(), abs=1e-12)
    assert 0.9 <= run.optimal_ratio_truth() <= 1.05
    # over the first periods: the cells analysed so far
    assert run.arm_truth("p90", 3) != run.arm_truth("p90")
    with pytest.raises(ValueError, match="truth per arm"):
        run.truth()
    with pytest.raises(ValueError, match="no treatment arm"):
        run.arm_truth("list")


def test_the_ratio_in_force_is_the_messages_or_its_arms() -> None:
    spec = ladder_spec()
    assert assigned_arm(spec, message(spec, 2, True)) == 2
    assert listed_ratio(spec, message(spec, 2, True)) == 0.95
    # a message without price_ratio: the ratio of the arm it names
    assert listed_ratio(spec, message(spec, 3, True, ratio=False)) == 1.05
    # a pricing system prices by what it reads
    assert listed_ratio(spec, message(spec, 3, True) | {"price_ratio": 1.07}) == 1.07
    with pytest.raises(ValueError, match="names arm 'p80'"):
        assigned_arm(spec, message(spec, 1, True) | {"arm_name": "p80"})
    two = load_spec(
        {
            "id": "two",
            "design": "random-days",
            "products": ["a", "b"],
            "treatment_policy": "t",
            "control_policy": "c",
            "start": "2026-05-04T00:00:00+00:00",
            "end": "2026-05-11T00:00:00+00:00",
        }
    )
    assert assigned_arm(two, {"arm": "treatment"}) == 0
    assert assigned_arm(two, {"arm": "control"}) == 1


def test_a_two_arm_run_keeps_the_one_treatment_market() -> None:
    spec = load_spec(
        {
            "id": "two",
            "design": "random-days",
            "products": [f"P{i}" for i in range(8)],
            "treatment_policy": "t",
            "control_policy": "c",
            "start": "2026-05-04T00:00:00+00:00",
            "end": "2026-05-08T00:00:00+00:00",
        }
    )
    market = market_for_spec(spec, MarketConfig(), seed=1)  # with its effect modifiers
    run = LiveRun(spec, market)
    assert run.ratios is None and run.ladder is None
    rng = np.random.default_rng(0)
    arms = rng.random((8, 4)) < 0.5
    for d in range(4):
        for i, p in enumerate(market.product_ids):
            run.record(d, p, {"arm": "treatment" if arms[i, d] else "control",
                              "probability": 0.5}, END)  # fmt: skip
        got = run.draw_period(d)
        want = market.period_outcomes(run.slots[d], arms[:, : d + 1])
        assert (got.units == want.units).all() and (got.price == want.price).all()
    assert (run.arm_index == np.where(arms, 0, 1)).all()


def test_a_market_with_effect_modifiers_cannot_play_a_ladder() -> None:
    spec = ladder_spec()
    market = Market(MarketConfig(n_products=12), seed=1, product_ids=list(spec.products))
    with pytest.raises(ValueError, match="effect_modifiers"):
        LiveRun(spec, market)


def test_simulate_live_refuses_arms_without_prices_in_one_sentence() -> None:
    # a ladder is played (tests/integration/test_simulate_live_ladder.py); three arms that
    # give no price (three policies) are refused, naming arms, before any stack is asked
    doc = ladder_spec().model_dump(mode="json")
    doc["arms"] = [{k: v for k, v in a.items() if k != "price_ratio"} for a in doc["arms"]]
    settings = Settings(clock="simulated")
    with pytest.raises(SpecError, match="the simulator models prices only"):
        asyncio.run(play(settings, load_spec(doc), seed=0, periods=None, analysis_metrics="-"))


def test_the_demo_ladders_true_optimum_lies_inside_its_range() -> None:
    cfg = DemoConfig(ladder=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    assert spec.arm_list() == LADDER_ARMS and spec.control_arm.price_ratio == 1.0
    assert len({a.allocation for a in spec.arm_list()}) == 1  # equal shares
    assert spec.costs_of(market.product_ids) == market.unit_cost.tolist()
    untreated = market.untreated_means(experiment_slots(spec, market))
    cost = np.array(spec.costs_of(market.product_ids))
    best = market.optimal_ratio(untreated.sum(axis=1), cost, 0.5, 2.0)  # unconstrained
    assert 0.92 < best < 1.02, best
    # the two-arm demo's market and spec are as they were
    two = demo_market(DemoConfig())
    assert two.cfg.effect_modifiers == MarketConfig().effect_modifiers
    assert demo_spec(DemoConfig(), two).n_arms == 2


# ------------------------------------------------------------------ what the demo prints


def demand(best: float = 0.96, low: float = 0.93, high: float = 0.99) -> dict[str, Any]:
    """A demand message of the ladder: eps -2, revenue 100 and cost 48 per control cell."""
    curve = [
        {"price_ratio": r, "units_ratio": r**-2, "revenue": r**-1 * 100, "profit": r**-2 * (100 * r - 48)}
        for r in np.linspace(0.9, 1.05, 101)
    ]  # fmt: skip
    points = [{"arm": a, "price_ratio": r} for a, r in sorted(RATIOS.items(), key=lambda x: x[1])]
    return {
        "curve": curve,
        "points": points,
        "optimal_price_ratio": best,
        "optimal_price_ratio_ci_low": low,
        "optimal_price_ratio_ci_high": high,
        "interval_method": "bootstrap",
        "at_range_edge": False,
    }


def test_the_text_curve_marks_the_tested_the_recommended_and_the_true_prices() -> None:
    lines = text_curve(demand(), true_optimum=0.955)
    body = lines[1:]
    ratios = [float(line.split()[0][1:]) for line in body]
    assert ratios == sorted(ratios) and ratios[0] == 0.9 and ratios[-1] == 1.05
    for arm in RATIOS:
        assert sum(f"tested ({arm})" in line for line in body) == 1
    (rec,) = [line for line in body if "recommended" in line]
    (true,) = [line for line in body if "true optimum" in line]
    assert rec.split()[0] == "x0.960" and true.split()[0] == "x0.955"
    bars = [line.count("#") for line in body]
    assert max(bars) == 40 and min(bars) == 1
    # profit r^-2 (100 r - 48) is highest at 0.96: the bar there is the longest
    assert bars[ratios.index(0.96)] == max(bars)
    assert text_curve({"curve": [{"price_ratio": 1.0, "profit": None}]})[0].startswith(
        "  (no profit curve"
    )


def test_the_recommendation_says_whether_its_interval_covers_the_true_optimum() -> None:
    lines, covered = recommendation(demand(), 0.955)
    assert covered is True and "COVERS" in lines[-1] and "x0.960" in lines[0]
    assert "[0.930, 0.990]" in lines[0] and "x0.955" in lines[2]
    lines, covered = recommendation(demand(), 1.02)
    assert covered is False and "MISSES" in lines[-1]
    lines, covered = recommendation(demand() | {"optimal_price_ratio": None}, 0.955)
    assert covered is None and "nowhere" in lines[0]


def test_the_recommended_price_reads_as_evidence_beside_the_verdict() -> None:
    """While the verdict keeps running the curve's peak is where the evidence points, not a
    price to set; between two tested prices it is the curve's reading, with the price to test
    next; a decided verdict is the decision, the peak its evidence."""
    running = {"verdict": "keep_running", "arm": "p95"}
    lines, _ = recommendation(demand(), 0.955, running)
    assert lines[0].startswith("WHERE THE EVIDENCE POINTS, NOT YET DECIDED: x0.960")
    assert "leading arm p95 (x0.950), not yet shown" in lines[1]
    assert "between the tested prices of p95 and list" in lines[1]
    assert "not a price to set" in lines[1] and "test x0.96 next" in lines[1]
    shipped = {"verdict": "ship", "arm": "p95"}
    lines, _ = recommendation(demand(), 0.955, shipped)
    assert lines[0].startswith("EVIDENCE FOR THE DECISION, NOT A SECOND DECISION: x0.960")
    assert "Decided: the verdict ships arm p95 (x0.950)" in lines[1]
    kept = {"verdict": "do_not_ship", "arm": "p95"}
    lines, _ = recommendation(demand(), 0.955, kept)
    assert "the verdict keeps the control, list (x1.000)" in lines[1]
    # a look without an interval says why, and scores no coverage
    unplaced = demand() | {"identified": False, "reason": "every replicate peaks below it."}
    lines, covered = recommendation(unplaced, 0.955, running)
    assert covered is None and "no interval: every replicate peaks below it." in lines[0]
    lines, _ = recommendation(demand(0.9, 0.9, 0.95) | {"at_range_edge": True}, 0.92)
    assert "edge of the tested range" in lines[0]


def test_the_truly_best_arm_is_the_control_when_no_arm_beats_it() -> None:
    assert true_best({"p90": 3.0, "p95": 5.0, "p105": -1.0}, "list") == "p95"
    assert true_best({"p90": -3.0, "p95": -0.5}, "list") == "list"


def test_the_verdict_of_a_ladder_names_its_arm_in_one_line() -> None:
    v = {
        "verdict": "ship",
        "metric": "profit",
        "arm": "p95",
        "relative_effect": 0.03,
        "relative_cs_low": 0.01,
        "relative_cs_high": 0.05,
        "arms": [
            {"arm": "p105", "effect": -1.0, "relative_effect": -0.01,
             "relative_cs_low": -0.03, "relative_cs_high": 0.01},
            {"arm": "p95", "effect": 3.0, "relative_effect": 0.03,
             "relative_cs_low": 0.01, "relative_cs_high": 0.05},
        ],
    }  # fmt: skip
    assert verdict_line(v) == "ship (arm p95: profit +3.0% [+1.0%, +5.0%] anytime-valid)"
    lines = arm_sequences(v, ["p90", "p95", "p105"])
    assert [line.split(":")[0].strip() for line in lines] == ["p95", "p105"]
    assert lines[0].endswith("<- named") and "+3.0% [+1.0%, +5.0%]" in lines[0]
    # a two-arm verdict's line is as it was
    two = {k: v[k] for k in ("verdict", "metric", "relative_effect", "relative_cs_low",
                             "relative_cs_high")}  # fmt: skip
    assert verdict_line(two) == "ship (profit +3.0% [+1.0%, +5.0%] anytime-valid)"


def test_the_per_arm_scorecard_compares_each_arm_with_its_truth() -> None:
    run, _ = played()
    look = run.arms.shape[1]
    for metric in ("units", "revenue", "profit"):
        for arm in ("p90", "p95", "p105"):
            t = run.arm_truth(arm, look, metric)
            # fe's interval misses the truth of p105's profit, the simultaneous one covers it
            miss = 2.0 if (metric, arm) == ("profit", "p105") else 0.0
            base = {"_look": look, "metric": metric, "arm": arm, "segment": None}
            run.estimates.append(base | {
                "estimator": "fe", "effect": t + miss, "ci_low": t + miss - 1.0,
                "ci_high": t + miss + 1.0, "sim_ci_low": t + miss - 3.0,
                "sim_ci_high": t + miss + 3.0,
            })  # fmt: skip
            run.estimates.append(base | {
                "estimator": "dm", "effect": t, "ci_low": t - 1, "ci_high": t + 1,
                "best_set": ["p90", "list"],
            })  # fmt: skip
    lines, sim = arm_scorecard(run, look)
    rows = [line for line in lines[1:] if "truly best" not in line][:-1]
    assert len(rows) == 9 and all(r.endswith("(fe)") for r in rows)
    assert sum("yes, yes" in r for r in rows) == 8
    (miss_row,) = [r for r in rows if "NO, yes" in r]
    assert miss_row.split()[:2] == ["profit", "p105"]
    assert all(sim.values()) and len(sim) == 9
    best = [line for line in lines if "truly best" in line]
    assert len(best) == 3 and all("{p90, list} (dm)" in line for line in best)
