"""The spec's held-cells bound (controller.adaptive.check_held) on the lab's adaptive loop
(lab/adaptive.py): the bound is the loop's own lowest probability (the rule starves the clearly
bad prices down to it), and it separates floors under which a starved arm is held in no cell
in many periods from floors under which it rarely is. Seeded and cheap: 10 products, 5 prices,
28 days, a few runs a floor."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.adaptive import window_paths
from controller.adaptive import (
    MIN_HELD_DRAWS,
    adaptive_step,
    check_held,
    effective_floor,
    floor_for,
    held_draws,
)
from controller.spec import ExperimentSpec
from lab.adaptive import ladder_market, ladder_spec, run_ladder

#: the lab study's 5-price world without carryover (random days: one draw a window)
RATIOS = (1.0, 0.7, 0.85, 1.15, 1.3)
PRODUCTS, DAYS, RUNS = 10, 28, 6


def _at_floor(floor: float, seed: int) -> ExperimentSpec:
    """A ladder at ``floor``, bypassing the spec's refusal (the point is to look below it)."""
    spec = ladder_spec(RATIOS, PRODUCTS, DAYS, seed, {"floor": 0.15})
    assert spec.adaptive is not None
    return spec.model_copy(update={"adaptive": spec.adaptive.model_copy(update={"floor": floor})})


def _unheld_share(floor: float) -> tuple[float, float]:
    """Over RUNS seeded runs: the share of adaptive periods in which a starved arm (0.7, 0.85)
    was held by no product, and the lowest probability the loop recorded for any arm."""
    unheld, lowest = [], 1.0
    for seed in range(RUNS):
        spec = _at_floor(floor, 300 + seed)
        market = ladder_market(spec, 0.733, order=0, decay=0.5, seed=400 + seed, demand=500 + seed)
        run = run_ladder(spec, market, lag=0)
        held, _ = window_paths(run.panel, 0)
        assert spec.adaptive is not None
        warmup = int(spec.adaptive.warmup)
        after = np.asarray(held)[:, warmup:, 1:3]
        unheld.append(float((after.sum(axis=0) == 0).mean()))
        lowest = min(lowest, float(run.probabilities.min()))
    return float(np.mean(unheld)), lowest


def test_the_bound_is_the_loop_s_lowest_probability_and_it_separates_unheld_periods() -> None:
    spec = ladder_spec(RATIOS, PRODUCTS, DAYS, 1, {"floor": 0.15})
    settings = spec.adaptive
    assert settings is not None
    step = adaptive_step(settings, DAYS - 1)
    # the floor the refusal names for 10 products and 5 prices: 0.07 (0.0644 in hundredths)
    need = floor_for(settings, 5, PRODUCTS, 1, step)
    assert need == 0.07
    below, above = 0.03, 0.15
    for floor, refused in ((below, True), (need, False), (above, False)):
        s = settings.model_copy(update={"floor": floor})
        assert (check_held(s, 5, PRODUCTS, ("product", "products"), 1, DAYS) is not None) == refused
    lows = {}
    for floor in (below, above):
        share, lowest = _unheld_share(floor)
        s = settings.model_copy(update={"floor": floor})
        bound = effective_floor(s, 5, step)
        # the check's lowest probability is the loop's: the starved prices reach it
        assert abs(lowest - bound) < 1e-9, (floor, lowest, bound)
        lows[floor] = (share, held_draws(PRODUCTS, bound, 1))
    (unheld_below, held_below), (unheld_above, held_above) = lows[below], lows[above]
    assert held_below < MIN_HELD_DRAWS <= held_above  # 0.75 and 1.63 held products a period
    # a starved arm goes unheld in (1 - p)^10 of the periods, at most 0.46 at the bound 0.075
    # and 0.17 at 0.163 (its probability is at or above the bound): measured 0.39 and 0.15
    assert unheld_below > 0.3 and unheld_above < 0.25, lows
    assert unheld_below > 2 * unheld_above


def _ever_missed(floor: float, runs: int) -> float:
    """The share of ``runs`` seeded runs
    in which some arm's anytime-valid sequence excluded its truth at some look."""
    missed = 0
    for seed in range(runs):
        spec = ladder_spec(RATIOS, PRODUCTS, DAYS, 1000 + seed, {"floor": 0.15})
        assert spec.adaptive is not None
        spec = spec.model_copy(
            update={"adaptive": spec.adaptive.model_copy(update={"floor": floor})}
        )
        market = ladder_market(
            spec, 0.733, order=0, decay=0.5, seed=5000 + seed, demand=9000 + seed
        )
        # the study's loop (delay 0), which docs/adaptive.md's figures are for; the live
        # path's one-period delay (the loop's default since cb8a021) gives 17 of 300 below
        run = run_ladder(spec, market, lag=0, delay=0)
        truth = run.truths()
        miss = (run.looks.low > truth + 1e-9) | (run.looks.high < truth - 1e-9)
        missed += bool(miss.any())
    return missed / runs


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 600 runs: 2:15 alone, past 5 minutes beside the slow suite's others
def test_below_the_bound_the_sequences_miss_more_than_the_target() -> None:
    """300 runs a floor (about 2 minutes): below the bound (floor 0.05: 0.89 held products a
    period) some sequence ever missed its truth in 7.0% of runs, above the 5% target; above
    it (floor 0.15: 1.63 held) in 3.3%. The difference is about two standard errors: the
    bound is where the target starts to fail on 10 products, not a sharp edge."""
    below, above = _ever_missed(0.05, 300), _ever_missed(0.15, 300)
    assert below == pytest.approx(21 / 300) and above == pytest.approx(10 / 300)
    assert below > 0.05 >= above
