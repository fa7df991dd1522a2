"""The one result type every estimator returns and the analysis worker publishes.

Shaped after EconML's inference results: a point estimate with its standard error, a
confidence interval at any level, a p-value against zero and the sample actually used.
Intervals are normal-approximation unless the estimator supplies degrees of freedom (``df``:
Student t) or exact bounds (randomisation inference) in ``ci_override``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class EstimateResult:
    """Point estimate of an average treatment effect on the treated cells, with its uncertainty.

    ``se_method`` names how ``se`` was obtained (placebo, jackknife, bootstrap, clt, ...).
    ``n_units``/``n_periods`` count the units and periods that entered the estimate;
    ``n_cells`` counts the treated cells (or, for switchbacks, the contributing cells).
    ``details`` carries estimator-specific diagnostics (weights, per-unit effects, lambdas).
    ``df`` set: intervals and p-values use Student t with these degrees of freedom (the SE was
    estimated from few independent units), else the normal approximation.
    """

    method: str
    effect: float
    se: float
    n_units: int
    n_periods: int
    se_method: str = "none"
    n_cells: int | None = None
    metric: str = "outcome"
    ci_override: tuple[float, float] | None = None
    df: float | None = None
    pvalue_override: float | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided (1 - alpha) interval; exact bounds when the estimator supplied them at 5%."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if self.ci_override is not None and math.isclose(alpha, 0.05):
            return self.ci_override
        if not math.isfinite(self.se):
            return (-math.inf, math.inf)
        z = float(self._reference().ppf(1.0 - alpha / 2.0))
        return (self.effect - z * self.se, self.effect + z * self.se)

    @property
    def pvalue(self) -> float:
        """Two-sided p-value for a zero effect."""
        if self.pvalue_override is not None:
            return self.pvalue_override
        if not math.isfinite(self.se) or self.se <= 0.0:
            return math.nan
        return float(2.0 * self._reference().sf(abs(self.effect) / self.se))

    def _reference(self) -> Any:
        """The reference distribution of effect / se: t(df) when df is set, else normal."""
        if self.df is not None and math.isfinite(self.df) and self.df > 0:
            return stats.t(self.df)
        return stats.norm

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        lo, hi = self.conf_int(alpha)
        return {
            "method": self.method,
            "metric": self.metric,
            "effect": self.effect,
            "se": self.se,
            "se_method": self.se_method,
            "ci_low": lo,
            "ci_high": hi,
            "alpha": alpha,
            "pvalue": self.pvalue,
            "df": self.df,
            "n_units": self.n_units,
            "n_periods": self.n_periods,
            "n_cells": self.n_cells,
        }

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict(alpha)])
