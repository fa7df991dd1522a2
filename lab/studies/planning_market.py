"""The planning studies' market and its histories, shared by the two-arm calibration
(:mod:`lab.studies.planning`) and the k-arm plan's study (:mod:`lab.studies.planning_arms`),
so that neither imports the other's module for them (the page of the first composes the
second's section)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.config import MarketConfig
from lab.market import Market

HISTORY_DAYS = 180
DAYS = 28
SEED = 7
#: 28-day histories (demand draws of their own) the calibration plans on
HISTORIES = 10


def market_config(price_change: float = -0.05) -> MarketConfig:
    return MarketConfig(n_products=200, price_change=price_change)


def history_of(cfg: MarketConfig, days: int = HISTORY_DAYS, draw: int = 0) -> pd.DataFrame:
    """The market under the control policy, on a demand draw no realised run uses."""
    market = Market(cfg, seed=SEED, demand_seed=10_000 + SEED + draw)
    W = np.zeros((cfg.n_products, days), dtype=bool)
    return market.simulate_panel(W)[["product", "day", "units"]]
