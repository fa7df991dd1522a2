"""The price ladder of the ladder studies: its arms and calendar, the spec of one ladder on
a design, and the cell table the live panel source would hand the worker. Shared by
:mod:`lab.studies.ladder` (coverage of every arm) and :mod:`lab.studies.ladder_profit` (the
profit change at the recommended price), so neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from controller.spec import ExperimentSpec, load_spec
from lab.simulate import SimulatedExperiment

SEED = 0
#: the ladder: arm name -> listed price ratio, the control first
RATIOS = {"list": 1.0, "p90": 0.90, "p95": 0.95, "p105": 1.05}
CONTROL = "list"
START = pd.Timestamp("2026-05-04", tz="UTC")
#: the columns of the cell table the live panel source hands the worker for a ladder
CELLS = ("product", "period", "units", "revenue", "profit", "price", "treated", "probability",
         "blackout", "arm", "price_ratio", "class")  # fmt: skip


def design_settings(design: str, days: int) -> dict[str, Any]:
    """Each design's block: the crossover's four phases (a third of each blacked out, as its
    example), time-bound's pre-period (the first half), the switchback's blocks of 2 days."""
    if design == "crossover":
        phase = days // len(RATIOS)
        return {"crossover": {"phase_periods": phase, "blackout_periods": phase // 3}}
    if design == "time-bound":
        return {"time_bound": {"start_period": days // 2}}
    if design == "optimal-switchback":
        return {"optimal_switchback": {"carryover_order": 2}}
    return {}


def ladder_spec(
    design: str, products: int, days: int, seed: int, costs: Mapping[str, float] | None = None
) -> ExperimentSpec:
    """The four-price ladder of ``design`` on ``products`` products over ``days`` days."""
    arms = [
        {"name": name, "policy": f"price-{name}", "price_ratio": r, "allocation": 0.25}
        | ({"control": True} if name == CONTROL else {})
        for name, r in RATIOS.items()
    ]
    return load_spec(
        {
            "id": "ladder",
            "design": design,
            "products": [f"P{i:03d}" for i in range(products)],
            "arms": arms,
            "start": START.isoformat(),
            "end": (START + pd.Timedelta(days=days)).isoformat(),
            "seed": seed,
            **design_settings(design, days),
            **({"unit_costs": dict(costs)} if costs is not None else {}),
        }
    )


def live_cells(sim: SimulatedExperiment) -> pd.DataFrame:
    """The cell table the live panel source would hand the worker: the price paid is revenue
    over units (none without a sale), no truth column."""
    panel = sim.panel.copy()
    units = panel["units"].to_numpy(dtype=float)
    revenue = panel["revenue"].to_numpy(dtype=float)
    panel["price"] = np.divide(revenue, units, out=np.full(len(units), np.nan), where=units > 0)
    return panel[[c for c in CELLS if c in panel.columns]]
