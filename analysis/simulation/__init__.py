"""Seeded market simulator: products, demand, price treatment, carryover, spillover, events."""

from analysis.simulation.config import MarketConfig
from analysis.simulation.market import DayOutcome, Market

__all__ = ["DayOutcome", "Market", "MarketConfig"]
