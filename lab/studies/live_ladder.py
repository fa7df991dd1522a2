"""The live study's three-arm price ladder (:mod:`streams.live.coverage_arms`), as pure
definitions: its arms, calendar, world and the market and spec of one ladder. Here, in the tools
layer, so that an offline study can run the same ladders (``lab.studies.cluster_fe_arms``)
without importing the edge that drives them live.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from controller.arms import ArmSpec
from controller.spec import ExperimentSpec, load_spec
from lab.compare import make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.studies.ladder import WORLDS

START = date(2026, 3, 2)  # a Monday, as the two-arm batches
TIMEZONE = "Europe/Berlin"
#: the ladder: the list price (the control) and two cuts, a third each
LADDER = (
    ArmSpec(name="list", policy="list-price", price_ratio=1.0, allocation=1 / 3, control=True),
    ArmSpec(name="p95", policy="price-minus-5pct", price_ratio=0.95, allocation=1 / 3),
    ArmSpec(name="p90", policy="price-minus-10pct", price_ratio=0.90, allocation=1 / 3),
)
#: unit costs as a share of each product's list price: the offline ladder study's world
#: ``cost-48`` (lab/studies/ladder.py), whose true optimum lies about 0.96 over markets (a
#: product of elasticity e has its optimum at the share times e / (1 + e), 0.96 at e = -2):
#: inside this ladder's 0.90-1.00 for most markets, so that its interval is tested
WORLD = "cost-48"
COST_SHARE = WORLDS[WORLD]


def ladder_spec(
    design: str, market: Market, days: int, seed: int, classes: Mapping[str, Any] | None = None
) -> ExperimentSpec:
    """``design``'s example spec on ``market`` (``lab.compare.make_spec``, with the market's
    unit costs) with :data:`LADDER` in place of the two-arm shorthand. A crossover of three
    arms needs three phases: its phases are a third of the days, the first third of each
    blacked out (the example's share)."""
    two = make_spec(design, market, days=days, seed=seed, classes=classes)
    data = two.model_dump(mode="json")
    for shorthand in ("treatment_policy", "control_policy", "allocation", "price_ratio"):
        data.pop(shorthand, None)
    data["arms"] = [a.model_dump(mode="json") for a in LADDER]
    if design == "crossover":
        data["crossover"] = crossover_phases(days)
    return load_spec(data)


def crossover_phases(days: int) -> dict[str, int]:
    """A three-arm crossover's block over ``days`` days: a phase per arm, each a third of the
    days, the first third of each phase blacked out (the design's example's share)."""
    phase = days // len(LADDER)
    return {"phase_periods": phase, "blackout_periods": phase // 3}


def ladder_market(products: int, seed: int, prefix: str) -> Market:
    """A market whose only treatment is the price (no effect modifiers: a ladder's arms differ
    by their prices alone) and whose unit costs are :data:`COST_SHARE` of the list price."""
    cfg = MarketConfig(
        n_products=products,
        start_date=START,
        timezone=TIMEZONE,
        effect_modifiers={},
        unit_cost_share=COST_SHARE,
    )
    return Market(cfg, seed=seed, product_ids=[f"{prefix}{i:03d}" for i in range(products)])
