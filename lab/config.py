"""Configuration of the simulated market: one frozen, validated pydantic model.

Every field has a default, so ``MarketConfig()`` is the documented default market
(see docs/simulator.md). Validation errors are pydantic ``ValidationError`` (a ``ValueError``)
whose message starts with the offending field's name. Unknown fields are rejected, so a typo in
a YAML file is reported rather than silently ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Numeric product characteristics the simulator draws for every product.
CHARACTERISTICS: tuple[str, ...] = ("width", "battery", "rating", "weight")

#: Default weekly demand profile, Monday first (weekend peak); normalised to geometric mean 1.
DEFAULT_WEEKLY_PROFILE: tuple[float, ...] = (0.95, 0.92, 0.92, 0.96, 1.04, 1.14, 1.10)

#: Default intra-day order profile: relative order intensity for each of 24 equal slices of the
#: day (night trough, lunch and evening peaks).
DEFAULT_INTRADAY_PROFILE: tuple[float, ...] = (
    0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.1, 1.3,
    1.5, 1.3, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 1.8, 1.6, 1.0, 0.5,
)  # fmt: skip


class MarketConfig(BaseModel):
    """Parameters of the simulated market. Defaults give the demo market.

    Demand of product i on day t (log scale, before the count draw) is
    ``log(level_i) + trend_i * t + log(weekly[dow(t)]) + common_t + category_{c(i),t} + ar_{i,t}
    + undercut_{i,t} + treatment + spillover``; see docs/simulator.md for every term.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- products
    n_products: int = Field(default=200, ge=2, le=100_000, description="Number of products.")
    n_categories: int = Field(
        default=8,
        ge=1,
        description="Number of product categories (default: 8, at most n_products).",
    )
    price_min: float = Field(default=5.0, gt=0, description="Lowest category median price.")
    price_max: float = Field(default=200.0, gt=0, description="Highest category median price.")

    # --- baseline demand
    mean_units_min: float = Field(default=20.0, gt=0, description="Lowest product mean units/day.")
    mean_units_max: float = Field(default=50.0, gt=0, description="Highest product mean units/day.")
    trend_sd: float = Field(default=0.003, ge=0, description="SD of product log-trend per day.")
    weekly_profile: tuple[float, ...] = Field(
        default=DEFAULT_WEEKLY_PROFILE, description="7 positive demand multipliers, Monday first."
    )
    common_shock_sd: float = Field(
        default=0.05, ge=0, description="SD of the daily common log shock."
    )
    category_shock_sd: float = Field(
        default=0.05, ge=0, description="SD of daily category log shocks."
    )
    product_ar_sd: float = Field(
        default=0.10,
        ge=0,
        description="Stationary SD of the product-level AR(1) log demand deviation.",
    )
    product_ar_rho: float = Field(default=0.7, ge=0, lt=1, description="AR(1) coefficient per day.")
    nb_dispersion: float | None = Field(
        default=20.0,
        gt=0,
        description="Negative-binomial size r (variance mu + mu^2/r); None gives Poisson counts.",
    )

    # --- outliers
    outlier_probability: float = Field(
        default=0.002, ge=0, le=1, description="Probability of a demand spike per product-day."
    )
    outlier_scale: float = Field(
        default=2.0,
        ge=0,
        description="Spike size as a multiple of control mean demand (times Lomax).",
    )
    outlier_tail: float = Field(
        default=2.5,
        gt=1,
        description="Lomax (Pareto II) tail index of spike sizes; > 2 for finite var.",
    )

    # --- treatment: a price change with product-specific elasticity
    price_change: float = Field(
        default=-0.05,
        gt=-1,
        le=1,
        description="Relative price change of the treatment arm (-0.05 = -5%).",
    )
    unit_cost_share: float = Field(
        default=0.7,
        ge=0,
        description="Each product's unit cost as a share of its base price (profit = revenue "
        "- units x unit cost; the treatment changes the price, not the cost).",
    )
    elasticity_mean: float = Field(default=-2.0, description="Mean own-price elasticity.")
    elasticity_sd: float = Field(default=0.3, ge=0, description="SD of idiosyncratic elasticity.")
    elasticity_modifiers: dict[str, float] = Field(
        default_factory=lambda: {"rating": 0.3, "battery": -0.2},
        description="Elasticity slope per standardised characteristic.",
    )
    effect_modifiers: dict[str, float] = Field(
        default_factory=lambda: {"width": 0.02},
        description="Extra log-lift of treated demand per standardised characteristic.",
    )

    # --- carryover
    carryover_order: int = Field(default=0, ge=0, le=30, description="Carryover order m (days).")
    carryover_decay: float = Field(
        default=0.5, gt=0, le=1, description="Weight of the treatment l days ago is decay**l."
    )

    # --- spillover through the substitutes graph
    substitutes_per_product: int = Field(
        default=3, ge=0, description="Nearest within-category neighbours each product links to."
    )
    spillover: float = Field(
        default=0.0,
        description=(
            "Log-demand change of a product when all its substitutes are treated today "
            "(negative: treated neighbours steal demand; positive: they give demand)."
        ),
    )

    # --- competitors
    n_competitors: int = Field(
        default=3, ge=1, le=26, description="Competitors watching each product."
    )
    competitor_observations_per_day: float = Field(
        default=4.0, ge=0, description="Mean price observations per product, competitor and day."
    )
    competitor_markup_mean: float = Field(
        default=0.03, description="Mean relative gap of competitor prices above our base price."
    )
    competitor_markup_sd: float = Field(default=0.02, ge=0, description="SD of that relative gap.")
    undercut_probability: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Probability an undercut episode starts per product-day.",
    )
    undercut_depth_min: float = Field(
        default=0.10, gt=0, lt=1, description="Smallest undercut below our base price (0.10 = 10%)."
    )
    undercut_depth_max: float = Field(
        default=0.25, gt=0, lt=1, description="Largest undercut depth."
    )
    undercut_hours_min: float = Field(
        default=2.0, gt=0, le=24, description="Shortest episode (hours)."
    )
    undercut_hours_max: float = Field(
        default=8.0, gt=0, le=24, description="Longest episode (hours)."
    )
    undercut_demand_effect: float = Field(
        default=-0.15,
        description="Log-demand change over a whole day of undercut (pro rata for shorter).",
    )

    # --- calendar and sales events
    start_date: dt.date = Field(default=dt.date(2026, 1, 5), description="Calendar date of day 0.")
    timezone: str = Field(default="UTC", description="IANA zone of the market's days.")
    horizon_days: int = Field(
        default=28, ge=1, description="Days averaged by Market.true_effect()."
    )
    intraday_profile: tuple[float, ...] = Field(
        default=DEFAULT_INTRADAY_PROFILE,
        description="Order intensities over equal slices of the day (24 = hourly).",
    )
    intraday_profile_weekend: tuple[float, ...] | None = Field(
        default=None,
        description="Saturday and Sunday's intraday profile (default: the same as weekdays).",
    )
    max_order_units: int = Field(
        default=3, ge=1, description="Largest number of units in one order."
    )

    @field_validator("weekly_profile")
    @classmethod
    def _weekly(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 7 or any(not (x > 0 and math.isfinite(x)) for x in v):
            raise ValueError("must be 7 positive finite multipliers, Monday first")
        return v

    @field_validator("intraday_profile", "intraday_profile_weekend")
    @classmethod
    def _intraday(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if len(v) == 0 or any(not (x >= 0 and math.isfinite(x)) for x in v) or sum(v) <= 0:
            raise ValueError("must be non-negative finite intensities with a positive sum")
        return v

    @field_validator("elasticity_modifiers", "effect_modifiers")
    @classmethod
    def _modifiers(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(CHARACTERISTICS))
        if unknown:
            raise ValueError(
                f"unknown characteristic(s) {unknown}; choose from {list(CHARACTERISTICS)}"
            )
        if any(not math.isfinite(x) for x in v.values()):
            raise ValueError("coefficients must be finite")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _ranges(self) -> MarketConfig:
        pairs = [
            ("price_min", "price_max"),
            ("mean_units_min", "mean_units_max"),
            ("undercut_depth_min", "undercut_depth_max"),
            ("undercut_hours_min", "undercut_hours_max"),
        ]
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must not exceed {hi}")
        if self.n_categories > self.n_products and "n_categories" not in self.model_fields_set:
            # the default 8 categories shrink to fit a tiny market; an explicit value must fit
            object.__setattr__(self, "n_categories", self.n_products)
        if self.n_categories > self.n_products:
            raise ValueError(
                f"n_categories ({self.n_categories}) must not exceed n_products ({self.n_products})"
            )
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> MarketConfig:
        """Read a config from a ``.yaml``/``.yml`` or ``.json`` file (a mapping of fields)."""
        p = Path(path)
        text = p.read_text()
        data: Any
        if p.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"market config {p}: use a .yaml, .yml or .json file")
        if not isinstance(data, dict):
            raise ValueError(f"market config {p}: expected a mapping of field names to values")
        return cls.model_validate(data)
