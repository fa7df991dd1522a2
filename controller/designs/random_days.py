"""Random days: every product-period independently draws an arm with P(arm) = its allocation.

The switchback of the origin article: each product is redrawn every period, so each product is
compared with itself on other days. Analysed by the difference in means with a product-clustered
SE (robust to serial correlation within a product) and by the Horvitz-Thompson switchback
estimator at lag 0.
"""

from __future__ import annotations

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
from controller.spec import ExperimentSpec
from core.ports import EstimatorPlan


def keyed_arms(
    spec: ExperimentSpec, products: Sequence[str], suffix: tuple[object, ...]
) -> np.ndarray:
    """``categorical(spec, product, *suffix)`` for every product, bit for bit the scalar
    draws; the last periods' arrays are kept with the spec (the next flip's previous period,
    for the washout, is this flip's period)."""
    cache: dict[tuple[object, ...], np.ndarray] = spec._memo.setdefault("arm-codes", {})
    arms = cache.get(suffix)
    if arms is None or len(arms) != len(products):
        arms = categorical_many(spec, products, suffix)
        if len(cache) >= 3:
            del cache[next(iter(cache))]
        cache[suffix] = arms
    return arms


def coin_draws(spec: ExperimentSpec, arms: np.ndarray) -> tuple[np.ndarray, list[Draw]]:
    """Whole-period draws from each product's drawn arm (P(not control) in every cell)."""
    return arm_draws(spec, arms, spec.allocation)


class RandomDays(Design):
    name = "random-days"

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        p = period_shares(spec, k, ctx)
        return arm_draw(spec, categorical(spec, product, k, shares=p), not_control(spec, p))

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        p = period_shares(spec, k, ctx)
        if p is not None:  # an adaptive period: the same uniforms, its own probabilities
            arms = categorical_many(spec, products, (k,), shares=p)
            return arm_draws(spec, arms, not_control(spec, p))
        if list(products) != spec.all_products():
            return super().period_draws(spec, products, k, ctx)
        return coin_draws(spec, keyed_arms(spec, products, (k,)))

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        return float(p_arm(spec, target) ** len(window))

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return False

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        """The within-product difference first: every product is in both arms, so comparing
        each with itself removes its own level, the bulk of the noise of revenue and profit
        (measured, with its coverage, in docs/relative-effects.md); the difference in means
        and Horvitz-Thompson beside it."""
        return (
            EstimatorPlan("fe", {"cluster": "unit"}),
            EstimatorPlan("dm", {"cluster": "unit"}),
            EstimatorPlan("ht", {"p": 0}),
        )

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        return ExperimentSpec(**base, products=market.products)


DESIGN = register(RandomDays())
