"""The price elasticity a randomised price experiment identifies, compared within products.

What is estimated: the arc elasticity of units with respect to the price actually paid,
``d log(units) / d log(price)``, between the two arms. It is the Wald (indirect least squares)
estimator with the arm as the instrument for log price (Angrist & Pischke 2009, *Mostly
Harmless Econometrics*, sec. 4.1.2), with each product compared with itself (unit fixed
effects), which is what a design that randomises within products allows:

- per product i with randomised, usable cells in both arms: the reduced form
  ``dq_i = log(mean units, treated) - log(mean units, control)`` and the first stage
  ``dp_i = log(price paid, treated) - log(price paid, control)``, the price paid being revenue
  over units of the arm's cells;
- pooled with weights ``w_i = n_iT n_iC / (n_iT + n_iC)`` (the precision of a difference of
  two means): ``elasticity = sum(w dq) / sum(w dp)``.

A ratio of pooled means across products is not used: it lets each arm's product mix drown the
price change (a random-days panel with a 5% cut: an SE of 6 around a true -1.9).

Inference: products are independent clusters; the numerator and denominator means have a
cluster-robust covariance (G/(G-1)) and the interval is Fieller's (analysis.ratio) with
Student t on G - 1 degrees of freedom. When the first stage is not distinguishable from zero
(Fieller's g >= 1: the price did not measurably change), the elasticity is not identified and
no interval is given. Products with no units in an arm (the log is undefined) are left out
and counted. Coverage against the market simulator's true elasticities:
tests/unit/analysis/test_elasticity.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.errors import PanelError
from analysis.panel import Panel
from analysis.ratio import RatioInterval, fieller


@dataclass(frozen=True)
class ElasticityResult:
    """The elasticity, its interval (None when not identified) and what entered it."""

    elasticity: float
    interval: RatioInterval
    df: float
    reduced_form: float  # weighted mean log change in units
    first_stage: float  # weighted mean log change in the price paid
    n_products: int
    n_dropped: int  # products with randomised cells in both arms but no units in one
    alpha: float = 0.05
    #: the delta-method SE (for readers that want one; the interval is Fieller's, not +- q se)
    se: float = math.nan
    n_periods: int = 0  # periods with a usable, randomised cell
    method: str = "wald_within_product"
    metric: str = "elasticity"
    segment: str | None = None

    @property
    def identified(self) -> bool:
        return self.interval.bounded

    @property
    def reason(self) -> str | None:
        """Why there is no interval: one sentence, or None."""
        if self.identified:
            return None
        return (
            "not identified: the price paid did not change measurably between the arms "
            f"(first stage {self.first_stage:+.4f} log points; Fieller's g = "
            f"{self.interval.g:.2f}, at least 1)"
        )

    @property
    def effect(self) -> float:
        return self.elasticity

    def to_dict(self, alpha: float | None = None) -> dict[str, Any]:
        """The estimate as ``analyze --json`` and the estimates topic give it: not identified,
        no effect and no interval, only the reason. ``alpha`` must be the one it was fitted at
        (the interval is Fieller's at that level, not a function of the SE)."""
        if alpha is not None and alpha != self.alpha:
            raise ValueError(f"the elasticity was fitted at alpha {self.alpha}, not {alpha}")
        ok = self.identified
        out: dict[str, Any] = {
            "metric": "elasticity",
            "method": self.method,
            "effect": self.elasticity if ok else None,
            "se": self.se if ok else None,
            "se_method": "cluster_unit_delta" if ok else "none",
            "identified": ok,
            "ci_low": self.interval.low,
            "ci_high": self.interval.high,
            "alpha": self.alpha,
            "df": self.df,
            "n_periods": self.n_periods,
            "reduced_form": self.reduced_form,
            "first_stage": self.first_stage,
            "n_units": self.n_products,
            "n_dropped": self.n_dropped,
        }
        if not self.identified:
            out["reason"] = self.reason
        return out

    def relative(self, alpha: float = 0.05, q_sequence: float | None = None) -> dict[str, Any]:
        """No relative form: an elasticity is already a ratio of relative changes."""
        return {"relative_note": "an elasticity is a ratio of log changes: no relative form"}


def within_product_elasticity(
    panel: Panel, revenue: np.ndarray, alpha: float = 0.05
) -> ElasticityResult:
    """The within-product Wald elasticity (see the module): ``panel`` has units as its
    outcome (its arms, usable cells and design probabilities); ``revenue`` is the same cells'
    revenue, shape ``panel.shape``."""
    R = np.asarray(revenue, dtype=float)
    if R.shape != panel.shape:
        raise PanelError(f"revenue has shape {R.shape}; the panel's is {panel.shape}")
    use = panel.randomised
    Y = np.where(use, panel.Y, 0.0)
    R = np.where(use, R, 0.0)
    t, c = use & panel.W, use & ~panel.W
    n_t, n_c = t.sum(axis=1), c.sum(axis=1)
    u_t, u_c = (Y * t).sum(axis=1), (Y * c).sum(axis=1)
    r_t, r_c = (R * t).sum(axis=1), (R * c).sum(axis=1)
    both = (n_t > 0) & (n_c > 0)
    ok = both & (u_t > 0) & (u_c > 0) & (r_t > 0) & (r_c > 0)
    n_dropped = int((both & ~ok).sum())
    G = int(ok.sum())
    if G < 2:
        raise PanelError(
            f"The within-product elasticity needs at least 2 products with sales in both "
            f"arms; there are {G}."
        )
    nt, nc = n_t[ok].astype(float), n_c[ok].astype(float)
    dq = np.log(u_t[ok] / nt) - np.log(u_c[ok] / nc)
    dp = np.log(r_t[ok] / u_t[ok]) - np.log(r_c[ok] / u_c[ok])
    n_periods = int(use[ok].any(axis=0).sum())
    return pooled_wald(nt * nc / (nt + nc), dq, dp, alpha, n_dropped, n_periods)


def pooled_wald(
    w: np.ndarray,
    dq: np.ndarray,
    dp: np.ndarray,
    alpha: float = 0.05,
    n_dropped: int = 0,
    n_periods: int = 0,
) -> ElasticityResult:
    """The pooled Wald ratio ``sum(w dq) / sum(w dp)`` over products (``w`` each product's
    weight, ``dq``/``dp`` its change in log units and log price paid per unit of the
    instrument), with Fieller's interval from the products' cluster-robust covariance and
    Student t on G - 1 degrees of freedom. Two arms: ``w = n_T n_C / (n_T + n_C)`` and the
    arms' differences; k prices (analysis.demand): each product's slopes on the log price
    ratio."""
    G = len(w)
    sw = float(w.sum())
    num, den = float(w @ dq) / sw, float(w @ dp) / sw
    sn, sd = w * (dq - num) / sw, w * (dp - den) / sw
    f = G / (G - 1)
    df = float(G - 1)
    q = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    interval = fieller(num, den, f * float(sn @ sn), f * float(sd @ sd), f * float(sn @ sd), q)
    value = num / den if den != 0.0 else math.nan
    var = f * float((sn - value * sd) @ (sn - value * sd)) if den != 0.0 else math.nan
    se = math.sqrt(var) / abs(den) if den != 0.0 else math.nan
    return ElasticityResult(value, interval, df, num, den, G, n_dropped, alpha, se, n_periods)
