"""An adaptive ladder at its arms' allocations is the fixed ladder, cell for cell, in every
design that can adapt (random days, the optimal switchback, the cluster switchback): the
flip's new DesignContext.probabilities must leave a fixed ladder's cells as they were, and
an adaptive period drawn through the shares path (probabilities not exactly the allocations)
keeps every cell's uniform, so it differs from the fixed draw only where the probabilities
do (docs/adaptive.md, "The draw")."""

from __future__ import annotations

from typing import Any

import pytest

from controller.designs import DesignContext, period_assignments
from controller.spec import ExperimentSpec, load_spec

ARMS = [
    {"name": "list", "policy": "p-list", "allocation": 0.4, "price_ratio": 1.0, "control": True},
    {"name": "p90", "policy": "p-90", "allocation": 0.3, "price_ratio": 0.9},
    {"name": "p110", "policy": "p-110", "allocation": 0.3, "price_ratio": 1.1},
]
PRODUCTS = [f"P{i:02d}" for i in range(60)]
DESIGNS = ["random-days", "optimal-switchback", "cluster"]


def _spec(design: str, adaptive: bool) -> ExperimentSpec:
    data: dict[str, Any] = {
        "id": "ladder", "products": PRODUCTS, "start": "2026-05-04", "end": "2026-05-18",
        "arms": ARMS, "seed": 5, "design": design, "washout": "PT2H",
    }  # fmt: skip
    if design == "cluster":
        del data["products"]
        data["clusters"] = {f"c{j}": PRODUCTS[j::12] for j in range(12)}
        data["cluster"] = {"mode": "switchback"}
    if design == "optimal-switchback":
        data["optimal_switchback"] = {"carryover_order": 1}
    if adaptive:
        data["adaptive"] = {"warmup": 2}
    return load_spec(data)


def _cells(spec: ExperimentSpec, k: int, ctx: DesignContext | None) -> list[tuple[Any, ...]]:
    return [
        (a.product, a.index, a.arm, a.probability, a.blackout_reason)
        for a in period_assignments(spec, k, ctx)
    ]


@pytest.mark.parametrize("design", DESIGNS)
def test_at_the_allocations_an_adaptive_ladder_is_the_fixed_one_cell_for_cell(
    design: str,
) -> None:
    fixed, adaptive = _spec(design, False), _spec(design, True)
    alloc = adaptive.allocations()
    every = DesignContext(probabilities={k: alloc for k in range(14)})
    for k in range(14):
        before = _cells(fixed, k, None)
        # a fixed ladder's cells do not change with a context (the flip's path)
        assert _cells(fixed, k, DesignContext()) == before
        assert _cells(adaptive, k, every) == before, (design, k)


@pytest.mark.parametrize("design", DESIGNS)
def test_the_shares_path_keeps_every_cell_s_uniform(design: str) -> None:
    """Probabilities a hair off the allocations take the shares path, not the fixed one: the
    same keyed uniforms pick the same arms (a cell moves only when its uniform lies within
    the hair of a boundary, which none of these does)."""
    fixed, adaptive = _spec(design, False), _spec(design, True)
    a = adaptive.allocations()
    hair = (a[0] - 1e-12, a[1], a[2] + 1e-12)
    nudged = DesignContext(probabilities={k: hair for k in range(14)})
    for k in range(14):
        got = [(c.product, c.index) for c in period_assignments(adaptive, k, nudged)]
        assert got == [(c.product, c.index) for c in period_assignments(fixed, k)], (design, k)
