"""The one result type every estimator returns and the analysis worker publishes.

Shaped after EconML's inference results (``econml/inference/_inference.py``) and statsmodels'
``use_t``: a point estimate, its standard error and its reference distribution, from which
every interval and p-value follows. ``df`` set: Student t with ``df`` degrees of freedom (the
SE was estimated from few independent clusters or units); ``df`` None: the normal. There is no
other way to make an interval: ``conf_int(alpha)`` is ``effect +- q * se`` at every alpha, with
q the reference's ``1 - alpha/2`` quantile, so a consumer of a published estimate can recompute
it from ``effect``, ``se`` and ``df``.

The one exception is the p-value of a randomisation test (``pvalue_randomization``): an exact
Fisher p-value of the sharp null of no effect, reported by :meth:`pvalue` for ``value=0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.ratio import relative_fields
from analysis.reference import reference


@dataclass(frozen=True)
class EstimateResult:
    """Point estimate of an average treatment effect on the treated cells, with its uncertainty.

    ``se_method`` names how ``se`` was obtained (placebo, jackknife, bootstrap, cluster_unit,
    ...). ``n_units``/``n_periods`` count the units and periods that entered the estimate;
    ``n_cells`` counts the treated cells (or, for switchbacks, the contributing cells).
    ``details`` carries estimator-specific diagnostics (weights, per-unit effects, lambdas).
    ``segment`` names the product segment the estimate is restricted to (None: all products);
    ``pvalue_bh`` is then its Benjamini-Hochberg adjusted p-value across the segments
    estimated together. ``arm`` names the arm compared with the control in an experiment of
    more than two arms (None: treatment against control), with ``sim_ci``, its interval that
    holds for the k - 1 comparisons at once, and ``sim_method`` saying how
    (``analysis.arms.simultaneous``); ``cs_split`` is then how many comparisons the
    anytime-valid sequence's error is split over (each at alpha / cs_split), ``mcb`` the
    arm's Hsu MCB interval for its effect minus the best other arm's (control included) and
    ``best_set`` the arms MCB cannot rule out as the best (analysis.best), where known.
    """

    method: str
    effect: float
    se: float
    n_units: int
    n_periods: int
    se_method: str = "none"
    n_cells: int | None = None
    metric: str = "outcome"
    df: float | None = None
    pvalue_randomization: float | None = None
    segment: str | None = None
    pvalue_bh: float | None = None
    arm: str | None = None
    sim_ci: tuple[float, float] | None = None
    sim_method: str | None = None
    cs_split: int | None = None
    mcb: tuple[float, float] | None = None
    best_set: tuple[str, ...] | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.df is not None and not (self.df > 0):
            raise ValueError(f"df must be positive (or None for the normal); got {self.df}")

    # ------------------------------------------------------------------ inference
    def reference(self) -> Any:
        """The reference distribution of (effect - truth) / se: t(df) when df is set, else
        the standard normal (an infinite df is the normal)."""
        return reference(self.df)

    def critical_value(self, alpha: float = 0.05) -> float:
        """q with P(|reference| > q) = alpha."""
        _check_alpha(alpha)
        return float(self.reference().ppf(1.0 - alpha / 2.0))

    def conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided (1 - alpha) interval ``effect +- q * se``; unbounded without a finite SE."""
        q = self.critical_value(alpha)
        if not math.isfinite(self.se):
            return (-math.inf, math.inf)
        return (self.effect - q * self.se, self.effect + q * self.se)

    def pvalue(self, value: float = 0.0) -> float:
        """Two-sided p-value of the hypothesis that the effect equals ``value``.

        For ``value=0`` a randomisation test's exact p-value, when the estimator ran one;
        otherwise from the reference distribution. NaN without a positive finite SE.
        """
        if value == 0.0 and self.pvalue_randomization is not None:
            return self.pvalue_randomization
        if not math.isfinite(self.se) or self.se <= 0.0:
            return math.nan
        return float(2.0 * self.reference().sf(abs(self.effect - value) / self.se))

    def statistic(self, value: float = 0.0) -> float:
        """(effect - value) / se: a t statistic when df is set, else a z statistic."""
        if not math.isfinite(self.se) or self.se <= 0.0:
            return math.nan
        return (self.effect - value) / self.se

    def summary_frame(self, alpha: float = 0.05, value: float = 0.0) -> pd.DataFrame:
        """One row: the estimate, its SE, reference df, test statistic and p-value against
        ``value``, and the (1 - alpha) interval (EconML's ``summary_frame`` columns)."""
        lo, hi = self.conf_int(alpha)
        return pd.DataFrame(
            [
                {
                    "point_estimate": self.effect,
                    "stderr": self.se,
                    "df": math.inf if self.df is None else self.df,
                    "stat": self.statistic(value),
                    "pvalue": self.pvalue(value),
                    "ci_lower": lo,
                    "ci_upper": hi,
                }
            ],
            index=pd.Index([self.method], name="estimator"),
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        lo, hi = self.conf_int(alpha)
        segment: dict[str, Any] = {} if self.segment is None else {"segment": self.segment}
        if self.segment is not None:
            segment["pvalue_bh"] = math.nan if self.pvalue_bh is None else self.pvalue_bh
        if self.arm is not None:  # only k-arm estimates have these keys
            sim = self.sim_ci or (math.nan, math.nan)
            segment |= {"arm": self.arm, "sim_ci_low": sim[0], "sim_ci_high": sim[1]}
            segment["sim_method"] = self.sim_method
            segment["cs_split"] = self.cs_split
            if self.mcb is not None:
                segment |= {"mcb_low": self.mcb[0], "mcb_high": self.mcb[1]}
                segment["in_best_set"] = self.mcb[1] > 0
                segment["best_set"] = list(self.best_set or ())
        return segment | {
            "method": self.method,
            "metric": self.metric,
            "effect": self.effect,
            "se": self.se,
            "se_method": self.se_method,
            "ci_low": lo,
            "ci_high": hi,
            "alpha": alpha,
            "pvalue": self.pvalue(),
            "df": self.df,
            "n_units": self.n_units,
            "n_periods": self.n_periods,
            "n_cells": self.n_cells,
        }

    def relative(self, alpha: float = 0.05, q_sequence: float | None = None) -> dict[str, Any]:
        """The relative form (``analysis.ratio.relative_fields``): the control mean, the
        relative effect and its Fieller interval (and the anytime-valid one at
        ``q_sequence``), or a note saying why there is none."""
        return relative_fields(self, alpha, q_sequence)

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict(alpha)])


@dataclass(frozen=True)
class NotIdentified:
    """An estimate the design cannot give, published so that an analyst does not wonder: no
    effect, SE or interval, ``identified: false`` and the reason (the estimates topic's
    ``note``)."""

    method: str
    reason: str
    n_units: int
    n_periods: int
    metric: str = "units"
    arm: str | None = None  # the arm compared with the control (k arms)

    @property
    def effect(self) -> float:
        return math.nan

    @property
    def se(self) -> float:
        return math.nan

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        arm: dict[str, Any] = {} if self.arm is None else {"arm": self.arm}
        return arm | {
            "metric": self.metric,
            "method": self.method,
            "effect": None,
            "se": None,
            "ci_low": None,
            "ci_high": None,
            "alpha": alpha,
            "identified": False,
            "reason": self.reason,
            "n_units": self.n_units,
            "n_periods": self.n_periods,
        }

    def relative(self, alpha: float = 0.05, q_sequence: float | None = None) -> dict[str, Any]:
        return {"relative_note": "not identified: no relative form"}


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def published_fields(
    result: Any, cs: tuple[float, float] | None, alpha: float = 0.05
) -> dict[str, Any]:
    """What the estimates topic says of an estimate (an :class:`EstimateResult` or an
    ``analysis.elasticity.ElasticityResult``) and its anytime-valid sequence ``cs``: its
    fields under ``estimator``, the sequence, the relative form (whose anytime-valid set
    uses the sequence's multiplier of the absolute SE), and ``note`` where it is not
    identified. The worker's sink and the report's replay both publish this."""
    fields: dict[str, Any] = result.to_dict(alpha)
    fields["estimator"] = fields.pop("method")
    if "reason" in fields:  # not identified: why
        fields["note"] = fields.pop("reason")
    q_seq = None
    if cs is not None and math.isfinite(result.se) and result.se > 0:
        q_seq = (cs[1] - result.effect) / result.se
    fields |= result.relative(alpha, q_seq)
    fields["cs_low"], fields["cs_high"] = (None, None) if cs is None else cs
    return fields
