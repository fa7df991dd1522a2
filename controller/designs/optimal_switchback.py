"""Optimal switchback (Bojinov, Simchi-Levi & Zhao, "Design and analysis of switchback
experiments", Management Science 69(7), 2023) for carryover order m.

Each product redraws its arm (by allocation, among all the arms) only at the design's randomisation points: for T = n*m periods
(n >= 4) the points are periods 1, 2m+1, 3m+1, ..., (n-2)m+1 (1-based), i.e. blocks of m periods
except the first and the last, which are 2m long; this minimises the worst-case risk of the
Horvitz-Thompson lag-m estimator when outcomes depend on at most m past periods. With m = 0
every period is redrawn (random days). Analysed by that estimator with p = m and the design's
own points, and by the difference in means.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from controller.designs.base import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    arm_draw,
    arm_draws,
    categorical,
    categorical_many,
    not_control,
    p_arm,
    period_shares,
    register,
)
from controller.designs.random_days import coin_draws, keyed_arms
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import ExperimentSpec, OptimalSwitchbackSettings
from core.ports import EstimatorPlan


def randomisation_points(t: int, m: int) -> list[int]:
    """0-based periods at which the optimal switchback redraws (every period when m = 0).

    Theorem 3 of the paper: with T = n*m, randomise at (1-based) periods 1, 2m+1, 3m+1, ...,
    (n-2)m+1. Needs n >= 4 when m > 0.
    """
    if t < 1 or m < 0:
        raise ValueError(f"T must be >= 1 and m >= 0; got T={t}, m={m}.")
    if m == 0:
        return list(range(t))
    if t % m or t // m < 4:
        raise ValueError(f"the construction needs T = n*m with n >= 4 (T={t}, m={m})")
    return [0] + [j * m for j in range(2, t // m - 1)]


def points(spec: ExperimentSpec) -> list[int]:
    """The randomisation points of an optimal-switchback experiment (memoised on the spec)."""
    assert spec.optimal_switchback is not None
    cached = spec._memo.get("osb-points")
    if cached is None:
        cached = randomisation_points(n_periods(spec), spec.optimal_switchback.carryover_order)
        spec._memo["osb-points"] = cached
    return list(cached)


def block(spec: ExperimentSpec, k: int) -> int:
    """The randomisation point that period k's draw belongs to (the last one at or before k)."""
    p = points(spec)
    return int(p[bisect.bisect_right(p, k) - 1]) if k >= 0 else k


class OptimalSwitchback(Design):
    name = "optimal-switchback"
    settings_field = "optimal_switchback"
    settings_required = True

    def validate(self, spec: ExperimentSpec) -> None:
        assert spec.optimal_switchback is not None
        m = spec.optimal_switchback.carryover_order
        t = n_periods(spec)
        if m and (t % m or t // m < 4):
            raise SpecError(
                "optimal_switchback.carryover_order",
                f"the published design needs T = n*m periods with n >= 4; T = {t}, m = {m}",
            )

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        # an adaptive ladder's probabilities change only at randomisation points
        # (controller.adaptive_draw.period_probabilities): a block keeps one draw
        p = period_shares(spec, k, ctx)
        index = categorical(spec, product, "osb", block(spec, k), shares=p)
        return arm_draw(spec, index, not_control(spec, p))

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        p = period_shares(spec, k, ctx)
        if p is not None:
            arms = categorical_many(spec, products, ("osb", block(spec, k)), shares=p)
            return arm_draws(spec, arms, not_control(spec, p))
        if list(products) != spec.all_products():
            return super().period_draws(spec, products, k, ctx)
        return coin_draws(spec, keyed_arms(spec, products, ("osb", block(spec, k))))

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        blocks = len({block(spec, s) for s in window})
        return float(p_arm(spec, target) ** blocks)

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        assert spec.optimal_switchback is not None
        return spec.optimal_switchback.carryover_order > 0

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        assert spec.optimal_switchback is not None
        m = spec.optimal_switchback.carryover_order
        design = {"p": m, "randomization_points": tuple(points(spec)), "point_periods": True}
        # primary: the Hajek form of HT's windows (same estimand, a fraction of HT's SE, arm
        # means for the relative form and the price paid); HT beside it, exactly unbiased with
        # a conservative bound. Not a plain difference in means: under the carryover the
        # design guards against it counts the other arm's carryover (docs/analysis-advanced.md,
        # lab/studies/switchback_carryover.py)
        return (EstimatorPlan("hajek", design), EstimatorPlan("ht", dict(design)))

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """The market's carryover order, at least 1 (the design guards against a day of
        carryover even where none is known), or the largest order below it that the
        construction allows for the length (T = n*m, n >= 4)."""
        t = market.days
        wanted = max(market.carryover_order, 1)
        m = next((m for m in range(wanted, 0, -1) if t % m == 0 and t // m >= 4), 0)
        return ExperimentSpec(
            **base,
            products=market.products,
            optimal_switchback=OptimalSwitchbackSettings(carryover_order=m),
        )


DESIGN = register(OptimalSwitchback())
