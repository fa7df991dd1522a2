"""Time-bound: a fixed random share of each stratum is treated from ``start_period`` on.

Each product class (or all products) is split among the arms once, by complete randomisation
within the class by allocation, and each product stays in its arm; the periods before ``start_period`` are a pre-period in
which every product runs the control policy. A block design: analysed by difference in
differences and synthetic difference in differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from controller.designs.base import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    Window,
    arm_draw,
    arm_paths,
    complete_arms,
    control_draw,
    member_draws,
    register,
    split_codes,
)
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import ExperimentSpec, TimeBoundSettings
from core.ports import EstimatorPlan

#: periods shorter than this get sdid's bootstrap variance (see :func:`sdid_plan`)
SDID_BOOTSTRAP_BELOW = timedelta(days=1)


def sdid_plan(spec: ExperimentSpec) -> EstimatorPlan:
    """sdid asked for the bootstrap in place of the jackknife at sub-daily periods, and with
    more than two arms.

    With half the products treated sdid's default variance is the jackknife, which holds the
    unit and time weights at their full-sample values (Arkhangelsky et al. 2021, Algorithm 3).
    On the validation market it covered at daily periods and fell short at PT4H; the bootstrap,
    which re-estimates the weights in every replicate (Algorithm 2), covered at both
    (docs/validation.md). ``auto_bootstrap`` (analysis.inference) keeps the placebo where the
    default picks it (one treated product, where the bootstrap is invalid, or at least twice as
    many controls as treated, where it was not validated). It costs
    a weight fit per replicate (200), so daily experiments keep the jackknife, which was
    calibrated there.

    With k arms each arm is compared with the control on their pair's products alone (a
    quarter each on a four-price ladder): there the jackknife's SE was 0.82-0.93 of the
    estimates' spread, and the three arms' simultaneous intervals covered together 0.910-0.915
    of the time (0.93-0.94 per comparison even at four times the products); the bootstrap's
    SE was 1.06-1.11 of it and they covered 0.978 (docs/ladder-validation.md).
    """
    if spec.period < SDID_BOOTSTRAP_BELOW or spec.n_arms > 2:
        return EstimatorPlan("sdid", {"se": "auto_bootstrap"})
    return EstimatorPlan("sdid")


class TimeBound(Design):
    name = "time-bound"
    settings_field = "time_bound"

    def default_settings(self) -> TimeBoundSettings:
        return TimeBoundSettings()

    def validate(self, spec: ExperimentSpec) -> None:
        assert spec.time_bound is not None
        t = n_periods(spec)
        if spec.time_bound.start_period >= t:
            raise SpecError(
                "time_bound.start_period", f"must be a period of the experiment, 0..{t - 1}"
            )

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        assert spec.time_bound is not None
        if k < spec.time_bound.start_period:
            return control_draw(spec, Window.PENDING)
        index = complete_arms(spec, spec.strata(), "time-bound")[product]
        return arm_draw(spec, index, spec.allocation)

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        """The split into arms, drawn once, mapped to the products (the scalar draws)."""
        assert spec.time_bound is not None
        if k < spec.time_bound.start_period:
            pending = control_draw(spec, Window.PENDING)
            return member_draws(products, frozenset(), pending, pending)
        arms = complete_arms(spec, spec.strata(), "time-bound")
        a = spec.allocation
        codes = split_codes(spec, products, arms, "time-bound")
        return codes, [arm_draw(spec, i, a) for i in range(spec.n_arms)]

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        assert spec.time_bound is not None
        s0 = spec.time_bound.start_period
        return arm_paths(spec, window, lambda s: s >= s0, target)

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return True

    def spillover(self, spec: ExperimentSpec) -> str | None:
        assert spec.time_bound is not None
        if spec.n_arms > 2:
            return super().spillover(spec)
        return "block" if spec.time_bound.start_period > 0 else None

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        # cuped: the post-period's difference in means adjusted for each product's pre-period
        # mean; unlike did and sdid it has a relative form (its counterfactual control mean)
        return (EstimatorPlan("did"), sdid_plan(spec), EstimatorPlan("cuped"))

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """Half of each category treated from the middle day (the first half is the
        pre-period)."""
        return ExperimentSpec(
            **base,
            clusters=dict(market.categories),
            time_bound=TimeBoundSettings(start_period=market.days // 2),
        )


DESIGN = register(TimeBound())
