"""The adaptive demo's pure parts (streams/live/adaptive_demo.py): the floor sized by the held
cells rule, the spec it builds, and the profit figures against the fixed ladder."""

from __future__ import annotations

import numpy as np
import pytest

from controller.adaptive_draw import period_arms
from streams.live.adaptive_demo import Regret, adaptive_block, demo_floor, regret
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
