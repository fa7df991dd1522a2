"""Cluster-randomised: each product class is one unit; its products always share an arm.

Classes are the spec's ``clusters`` (e.g. communities of the substitutes graph, from
``pricelab graph cluster``), so substitutes sit in the same arm and less of the treatment
leaks into the control arm through substitution. Mode ``switchback`` redraws every class's arm
every period (by allocation); mode ``fixed`` splits the classes among the arms once (complete
randomisation by allocation).
The class is the randomisation unit, so the difference in means clusters its SE by class.
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
    complete_arms,
    not_control,
    p_arm,
    period_shares,
    register,
)
from controller.errors import SpecError
from controller.spec import ClusterMode, ClusterSettings, ExperimentSpec
from core.ports import EstimatorPlan


def _switchback(spec: ExperimentSpec) -> bool:
    return spec.cluster is not None and spec.cluster.mode == ClusterMode.SWITCHBACK


class Cluster(Design):
    name = "cluster"
    settings_field = "cluster"

    def default_settings(self) -> ClusterSettings:
        return ClusterSettings()

    def validate(self, spec: ExperimentSpec) -> None:
        if not spec.clusters:
            raise SpecError("clusters", "the cluster design needs product classes in 'clusters'")

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        cls = spec.class_of(product)
        if _switchback(spec):
            p = period_shares(spec, k, ctx)
            index = categorical(spec, "class", cls, k, shares=p)
            return arm_draw(spec, index, not_control(spec, p))
        index = complete_arms(spec, {"": tuple(spec.clusters)}, "cluster")[cls or ""]
        return arm_draw(spec, index, spec.allocation)

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        """One keyed draw per class (switchback) or the fixed split of classes, mapped to the
        products: bit for bit the per-product draws, with one hash per class."""
        classes = list(spec.clusters)
        p = None
        if _switchback(spec):
            p = period_shares(spec, k, ctx)
            drawn = categorical_many(spec, classes, (k,), prefix=("class",), shares=p)
            arm_of = dict(zip(classes, drawn.tolist(), strict=True))
        else:
            arm_of = complete_arms(spec, {"": tuple(classes)}, "cluster")
        class_of = spec.class_map()
        index = np.fromiter(
            (arm_of[class_of.get(p, "")] for p in products), dtype=np.int64, count=len(products)
        )
        return arm_draws(spec, index, not_control(spec, p))

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        # switchback: a draw per period; fixed: one draw for the whole experiment
        draws = len(window) if _switchback(spec) else 1
        return float(p_arm(spec, target) ** draws)

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return not _switchback(spec)

    def spillover(self, spec: ExperimentSpec) -> str | None:
        """None: under class randomisation the per-period exposure weighting's design-bootstrap
        SE falls short of the estimates' spread (2026-11-25, 400 runs of
        lab/studies/spillover_worker.py: direct SE 0.84 of the spread, covered 90%; it
        was half the spread, 80%, before each product's level was netted out and before a
        period without the contrast stopped counting in the SE), so nothing is published."""
        return None

    def spillover_note(self, spec: ExperimentSpec) -> str | None:
        if spec.n_arms > 2:
            return super().spillover_note(spec)
        return (
            "under class randomisation the exposure weighting's design-bootstrap SE falls short "
            "of the estimates' spread (docs/validation.md: the direct effect's 95% interval "
            "covered 90%), so no interval would be honest"
        )

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        """Clustered by class (the randomisation unit). Redrawn every period, each product is
        in both arms: the within-product difference first (docs/relative-effects.md), its SE
        clustered by class x period, the draws the design makes independently (class
        clusters overstated it by 7-12%: docs/validation.md); valid while nothing carries
        over past the washout."""
        dm = EstimatorPlan("dm", {"cluster": "class"})
        fe = EstimatorPlan("fe", {"cluster": "class_period"})
        return (fe, dm) if _switchback(spec) else (dm,)

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """Substitute classes of the market's graph, redrawn every day."""
        return ExperimentSpec(
            **base,
            clusters=dict(market.classes),
            cluster=ClusterSettings(mode=ClusterMode.SWITCHBACK),
        )


DESIGN = register(Cluster())
