"""The time-bound difference in means' deviation in validation.md is its draws' imbalance, not
a bias: the design part of the estimate, computed from expected outcomes alone."""

from __future__ import annotations

import numpy as np
import pytest

from lab.compare import design_imbalance, make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.seeds import run_seed
from lab.simulate import run_spec


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_the_validation_draws_are_imbalanced_and_the_design_is_not() -> None:
    market = Market(MarketConfig(price_change=0.0), seed=0, demand_seed=run_seed(0, 0))
    sim = run_spec(make_spec("time-bound", market, days=28), market)
    y0 = sim.panel["y0_expected"].to_numpy(dtype=float).reshape(market.cfg.n_products, 28)
    # the validation study's 100 design seeds: their arms differ in expected sales by chance
    study = design_imbalance(market, "time-bound", [run_seed(1, r) for r in range(100)], y0)
    assert study.mean() > 2.5 * study.std(ddof=1) / 10
    # fresh draws of the same design: no difference in expectation
    fresh = design_imbalance(market, "time-bound", range(10_000, 11_000), y0)
    assert abs(fresh.mean()) < 3 * fresh.std(ddof=1) / np.sqrt(len(fresh))
    # and a draw's imbalance is most of a difference in means' spread on this design
    # (validation.md: dm's empirical SD 1.32 over 100 A/A runs)
    assert 1.1 < fresh.std(ddof=1) < 1.6
