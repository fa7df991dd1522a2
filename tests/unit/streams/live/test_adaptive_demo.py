"""The adaptive demo's pure parts (streams/live/adaptive_demo.py): the floor sized by the held
cells rule, the spec it builds, and the profit figures against the fixed ladder."""

from __future__ import annotations

import numpy as np
import pytest

from controller.adaptive_draw import period_arms
from streams.live.adaptive_demo import Regret, adaptive_block, demo_floor, regret, report_adaptive
from streams.live.demo import DemoConfig, demo_market, demo_spec
from streams.live.driver import LiveRun


def test_the_floor_keeps_a_few_held_cells_per_arm() -> None:
    # (4 / N)^(1 / (m + 1)), at least 0.05, up to the hundredth
    assert demo_floor(200, 4) == 0.05  # 0.02 -> the default
    assert demo_floor(40, 4) == 0.10
    assert demo_floor(30, 4) == 0.14  # 0.1333...
    assert demo_floor(200, 4, lag=1) == 0.15  # sqrt(0.02) = 0.1414...
    with pytest.raises(ValueError, match="use more products"):
        demo_floor(16, 4)  # 0.25 x 4 arms leaves nothing to adapt


def test_the_demo_spec_is_an_adaptive_ladder_with_that_floor() -> None:
    cfg = DemoConfig(products=40, days=8, seed=3, ladder=True, adaptive=True)
    spec = demo_spec(cfg, demo_market(cfg))
    assert spec.id == "demo-adaptive-3"
    assert spec.adaptive is not None and spec.adaptive.floor == 0.10
    assert spec.adaptive.warmup == 3 and spec.adaptive.rule == "thompson"
    assert spec.adaptive_metric() == "profit"
    assert adaptive_block(40, 4)["floor"] == 0.10
    fixed = demo_spec(DemoConfig(products=40, days=8, seed=3, ladder=True), demo_market(cfg))
    assert fixed.adaptive is None and fixed.id == "demo-ladder-3"


def test_a_run_played_at_the_allocations_earns_what_the_fixed_ladder_does() -> None:
    cfg = DemoConfig(products=30, days=5, seed=4, ladder=True, adaptive=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    run = LiveRun(spec, market)
    products = list(market.product_ids)
    for d in range(cfg.days):
        run.arm_index[:, d] = period_arms(spec, products, d, spec.allocations())
    r = regret(run, cfg.days)
    assert r.adaptive == pytest.approx(r.fixed, rel=1e-12)
    assert r.best >= r.fixed and r.ratio == pytest.approx(1.0)
    # every product at the best arm throughout earns exactly the best figure
    best = [a.name for a in spec.arm_list()].index(r.best_arm)
    run.arm_index[:] = best
    assert regret(run, cfg.days).adaptive == pytest.approx(r.best, rel=1e-12)
    assert np.isfinite(r.best)


def test_the_ratio_is_the_adaptive_regret_over_the_fixed_one() -> None:
    assert Regret(adaptive=95.0, fixed=90.0, best=100.0, best_arm="a").ratio == 0.5
    assert np.isnan(Regret(adaptive=100.0, fixed=100.0, best=100.0, best_arm="a").ratio)


def _played(days: int = 4) -> LiveRun:
    """A small adaptive demo run played at the allocations (no workers): its cells in force,
    analysed, and the market drawn, as the driver records them."""
    cfg = DemoConfig(products=30, days=days, seed=4, ladder=True, adaptive=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    run = LiveRun(spec, market)
    ratios = np.array([a.price_ratio for a in spec.arm_list()])
    for d in range(days):
        run.arm_index[:, d] = period_arms(spec, list(market.product_ids), d, spec.allocations())
        assert run.ratios is not None
        run.ratios[:, d] = ratios[run.arm_index[:, d]]
        run.arms[:, d] = run.arm_index[:, d] != spec.control_index
        run.analysed[:, d] = True
        run.draw_period(d)
    return run


def _publish(run: LiveRun, look: int, width: float) -> None:
    """The worker's messages at ``look``: each arm's adaptive contrast, its sequence the truth
    +- ``width`` off centre by 2 (0 < width < 2: the sequence misses), and the look."""
    for metric in ("units", "revenue", "profit"):
        for arm in ("p90", "p95", "p105"):
            t = run.arm_truth(arm, look, metric)
            run.estimates.append(
                {"_look": look, "arm": arm, "estimator": "aipw_adaptive", "metric": metric,
                 "effect": t + 2, "sim_ci_low": t + 2 - width, "sim_ci_high": t + 2 + width}
            )  # fmt: skip
    run.adaptive.append({"_look": look, "metric": "profit", "arms": []})


@pytest.mark.parametrize("width, covered", [(5.0, True), (1.0, False)])
def test_the_end_says_whether_the_adaptive_sequences_cover_the_truths(
    width: float, covered: bool
) -> None:
    run = _played()
    _publish(run, 4, width)
    said: list[str] = []
    ok = report_adaptive(lambda line, always=False: said.append(line), run, 4, "ESTIMATES")
    text = "\n".join(said)
    assert ok is covered
    assert "$ pricelab estimates demo-adaptive-4\n  ESTIMATES" in text
    assert text.count("covered" if covered else "MISSED") == 9
    word = "COVER every arm's" if covered else "MISS the true effect of p90, p95, p105"
    assert f"the adaptive sequences of profit {word}" in text
    assert "the adaptive ladder gave up 1.00 of the fixed ladder's regret" in text


def test_the_end_without_an_adaptive_look_is_an_error() -> None:
    run = _played()
    said: list[str] = []
    assert not report_adaptive(lambda line, always=False: said.append(line), run, 4, "")
    assert "ERROR: no adaptive look published at the look after 4 periods" in said
