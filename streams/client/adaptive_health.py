"""The sample-ratio check of an adaptive ladder in the Health section: its draws against the
probabilities the controller recorded for each period (docs/adaptive.md, "The sample ratio").

The test, its flag and its sentence are analysis.sample_ratio's (the HTML report runs the same
one on an exported panel); here the spec says what a draw is (:func:`design_draws`: random
days, every product-period; an optimal switchback, each product's block at its randomisation
points; the cluster design, each class-period) and :func:`recorded_sample_ratio_check` makes
the flag and sentence a Health :class:`~streams.client.health_rules.Check`.
"""

from __future__ import annotations

import pandas as pd

from analysis.sample_ratio import (
    NOTHING_TO_CHECK,
    DesignDraws,
    RecordedSampleRatio,
    recorded_sample_ratio,
    recorded_verdict,
)
from analysis.sample_ratio import draw_counts as _draw_counts
from controller.spec import ExperimentSpec
from streams.client.health_rules import Check


def design_draws(spec: ExperimentSpec) -> DesignDraws:
    """What the spec's design makes an independent draw: every product-period (random days),
    each product's block at the optimal switchback's randomisation points, each class-period
    (the cluster design)."""
    arms = tuple(a.name for a in spec.arm_list())
    if spec.design == "optimal-switchback":
        from controller.designs.optimal_switchback import points

        return DesignDraws(arms, points=tuple(points(spec)))
    if spec.design == "cluster":
        return DesignDraws(arms, classes=spec.class_map())
    return DesignDraws(arms)


def draw_counts(df: pd.DataFrame, spec: ExperimentSpec) -> tuple[dict[int, list[int]], str]:
    """Each period's count of every arm (spec arm order) among the spec's design's independent
    draws in the panel ``df`` (:func:`analysis.sample_ratio.draw_counts`), and what a draw is
    (``product``, ``block`` or ``class``)."""
    draws = design_draws(spec)
    return _draw_counts(df, draws.arms, points=draws.points, classes=draws.classes)


def recorded_sample_ratio_check(srm: RecordedSampleRatio | None) -> Check:
    """An adaptive ladder's sample-ratio check: the flag and sentence of
    :func:`analysis.sample_ratio.recorded_verdict` (a p-value below ``SRM_PROBLEM`` a problem,
    below ``SRM_WARN`` a warning), with the test's figures as its detail."""
    flag, sentence = recorded_verdict(srm)
    detail = (
        {}
        if srm is None or sentence == NOTHING_TO_CHECK
        else {
            "observed": dict(srm.observed),
            "expected": dict(srm.expected),
            "statistic": srm.statistic,
            "df": srm.df,
            "pvalue": srm.pvalue,
            "n": srm.n,
            "periods": srm.periods,
            "level": srm.level,
            "against": "recorded",
        }  # fmt: skip
    )
    return Check("sample_ratio", "Sample ratio per arm", flag, sentence, detail)


__all__ = [
    "RecordedSampleRatio",
    "design_draws",
    "draw_counts",
    "recorded_sample_ratio",
    "recorded_sample_ratio_check",
]
