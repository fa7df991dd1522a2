"""An adaptive period's draw: each unit's arm from the period's probabilities, with the
design's own keyed uniforms (docs/adaptive.md).

The keys are the design's: random days key each product-period, the optimal switchback each
product-block, the cluster design's switchback each class-period. So with the arms'
allocations as the probabilities, the draw is the design's, cell for cell (a test checks it),
and an adaptive ladder and a fixed one of the same seed share every cell's uniform: the two
differ only where the probabilities do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.adaptive import ADAPTIVE_DESIGNS
from controller.designs.base import cumulative, pick_many, uniforms
from controller.designs.optimal_switchback import block
from controller.spec import ExperimentSpec


def period_arms(
    spec: ExperimentSpec,
    products: Sequence[str],
    period: int,
    probabilities: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """The arm index of each of ``products`` in 0-based ``period`` drawn with
    ``probabilities`` (one per arm, in the spec's arm order)."""
    if spec.design not in ADAPTIVE_DESIGNS:
        raise ValueError(f"the {spec.design} design has no adaptive draw")
    p = np.asarray(probabilities, dtype=float)
    if p.shape != (spec.n_arms,) or abs(float(p.sum()) - 1.0) > 1e-9 or (p < 0).any():
        raise ValueError(f"need {spec.n_arms} probabilities summing to 1; got {p.tolist()}")
    cum = cumulative(p.tolist())
    head: tuple[object, ...] = (spec.seed, spec.id)
    if spec.design == "random-days":
        return pick_many(cum, uniforms(head, products, (period,)))
    if spec.design == "optimal-switchback":
        return pick_many(cum, uniforms(head, products, ("osb", block(spec, period))))
    classes = [spec.class_of(q) or "" for q in products]
    names = sorted(set(classes))
    drawn = pick_many(cum, uniforms((*head, "class"), names, (period,)))
    index = dict(zip(names, drawn.tolist(), strict=True))
    return np.array([index[c] for c in classes], dtype=np.int64)
