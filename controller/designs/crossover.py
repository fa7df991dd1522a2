"""Crossover with blackout: groups A and B swap arms every phase; each phase opens in blackout.

Group A (the allocated share of each class, by complete randomisation within the class) is
treated in even phases and group B in odd ones. The first ``blackout_periods`` periods of every
phase are blacked out whole (their data is discarded), as in the origin article's 3-week phases
with a 1-week blackout. Analysed by two-way fixed effects on the usable cells (each product
against itself across phases) and by the difference in means.
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
    complete_share,
    fixed_path,
    member_draws,
    register,
)
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import Arm, CrossoverSettings, ExperimentSpec
from core.ports import EstimatorPlan


def phase(spec: ExperimentSpec, k: int) -> int:
    assert spec.crossover is not None
    return k // spec.crossover.phase_periods


class Crossover(Design):
    name = "crossover"
    settings_field = "crossover"
    settings_required = True

    def validate(self, spec: ExperimentSpec) -> None:
        c = spec.crossover
        assert c is not None
        if c.blackout_periods >= c.phase_periods:
            raise SpecError(
                "crossover.blackout_periods", f"must be shorter than a phase ({c.phase_periods})"
            )
        t = n_periods(spec)
        if t < 2 * c.phase_periods:
            raise SpecError(
                "crossover.phase_periods",
                f"two phases ({2 * c.phase_periods} periods) must fit in the experiment ({t})",
            )

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        in_a = product in complete_share(spec, spec.strata(), "crossover")
        even = phase(spec, k) % 2 == 0
        p = spec.allocation if even else 1.0 - spec.allocation
        return Draw(Arm.TREATMENT if in_a == even else Arm.CONTROL, p)

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        """Group A's membership, drawn once, mapped to the products (the scalar draws)."""
        group_a = complete_share(spec, spec.strata(), "crossover")
        even = phase(spec, k) % 2 == 0
        p = spec.allocation if even else 1.0 - spec.allocation
        a_arm, b_arm = (Arm.TREATMENT, Arm.CONTROL) if even else (Arm.CONTROL, Arm.TREATMENT)
        return member_draws(products, group_a, Draw(a_arm, p), Draw(b_arm, p))

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: Arm, ctx: DesignContext
    ) -> float:
        in_a = [Arm.TREATMENT if phase(spec, s) % 2 == 0 else Arm.CONTROL for s in window]
        in_b = [Arm.CONTROL if x == Arm.TREATMENT else Arm.TREATMENT for x in in_a]
        return fixed_path(spec.allocation, in_a, in_b, target)

    def phase_blackout(self, spec: ExperimentSpec, k: int) -> bool:
        c = spec.crossover
        assert c is not None
        return k % c.phase_periods < c.blackout_periods

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return True

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        return (EstimatorPlan("crossover"), EstimatorPlan("dm", {"cluster": "unit"}))

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """Groups (half of each category) swap at the middle day; the first third of each phase
        is a blackout (the article's 3-week phases with a 1-week blackout, scaled)."""
        length = market.days // 2
        return ExperimentSpec(
            **base,
            clusters=dict(market.categories),
            crossover=CrossoverSettings(phase_periods=length, blackout_periods=length // 3),
        )


DESIGN = register(Crossover())
