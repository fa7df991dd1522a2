"""The demand curve that arms at several prices trace, and the price that maximises profit.

A price ladder gives each arm a listed price ``r_a`` relative to the control's (``r = 1``).
From the arms' usable cells, summed per product and arm (:class:`ArmTotals`):

**The elasticity** is the within-product instrumental-variable slope of log units on log price
paid, with the arm's log listed ratio ``z_a = log r_a`` as the instrument. Per product ``i``,
with ``n_ia`` cells, ``q_ia = log(units / n)`` and ``p_ia = log(revenue / units)`` (the price
paid) in each arm it has sales in, the n-weighted slopes on ``z`` are

    bq_i = sum_a n_ia (z_a - zbar_i) q_ia / w_i,   bp_i = (the same with p),
    w_i  = sum_a n_ia (z_a - zbar_i)^2,            zbar_i = n-weighted mean of z,

and ``elasticity = sum_i w_i bq_i / sum_i w_i bp_i``, with Fieller's interval from the
products' cluster-robust covariance (:func:`analysis.elasticity.pooled_wald`). With two arms
this *is* the two-arm estimator (analysis.elasticity): ``w_i`` becomes ``n_T n_C / (n_T + n_C)``
times the squared log ratio and the slopes the arms' differences over the log ratio, which
cancels. Products seen in fewer than two arms (a design that assigns whole products to one arm:
time-bound, triggered, cluster) give no within-product slope: the elasticity needs a design
that varies each product's price (random days, switchbacks, crossover).

**Curvature** asks whether one elasticity fits every price: the within-product (product fixed
effects, n-weighted) regression of ``q`` on ``z`` and ``z^2``, with a product-clustered (CR1)
variance and Student t on G - 1 degrees of freedom; ``curvature_pvalue`` tests the ``z^2``
coefficient. It needs three prices. It stays valid when products differ in elasticity (each
product's own curve is then still linear in log price).

**The profit curve**: at a listed ratio ``r`` applied to every product, expected profit per
product-period is ``Pi(r) = R0 r^(1 + e_R) - C0 r^e_C``, with ``R0`` and ``C0`` the control
arm's revenue and cost of goods per product-period, and ``e_R``, ``e_C`` the *aggregate*
elasticities of revenue and of cost of goods: through the origin, the log of each arm's
product-balanced total over the control's (revenue net of the price itself) on the log ratio,
the arms weighted by their cells. Profit sums over products, so the products that sell more
weigh more in it: with one within-product elasticity (which weighs the products alike) in
their place, the recommendation was off by +0.048 in a market whose big sellers were more
elastic than the average product (the ladder validation study of issue #41, and
tests/unit/analysis/test_demand.py). With one elasticity for every
product, ``e_R = e_C = eps`` and ``Pi(r) = r^eps (r R0 - C0)``. The recommended ratio
maximises ``Pi`` over the tested range ``[min r_a, max r_a]``: the stationary point
``r^(1 + e_R - e_C) = e_C C0 / ((1 + e_R) R0)`` where it lies inside, else an end of the
range. At an end, ``at_range_edge`` is set: the best price may lie outside what was tested.

**Uncertainty of the recommendation: a product-cluster bootstrap** (Poisson(1) weights per
product, B = 999, percentile intervals). Not the delta method: the argmax has no derivative
where the range clamps it, and near ``eps = -1`` the ratio ``eps / (1 + eps)`` is so skewed
that a symmetric interval misleads. Poisson weights (Hanley & MacGibbon 2006; Chamandy et al.
2012) rather than a multinomial resample because each product's weight is drawn on its own, so
products stream through in chunks and memory does not grow with their number. The same
replicates give the intervals of the arms' points and of the profit change;
``optimal_price_ratio_bias`` is the replicates' mean minus the estimate, ``p_edge`` their share
at an end of the range.

**The profit change** (``profit_change_at_optimum``) is the change of expected profit per
product-period at the recommended ratio ``r*`` against the control's price,
``Pi(r*) - Pi(1)``, and its interval is the replicates' curves evaluated at that same ``r*``
(held fixed): an interval for the change of the price the analyst is shown. It is not each
replicate's own maximum: every replicate's maximum over a range holding the control's price
is at least its profit there, so an interval of those maxima never reaches below 0, and read
as proof of a gain where the best price is the control's (issue #54). Held at ``r*``, a
replicate's change is negative wherever its curve lies below its control's there; the
ladder validation study measures the coverage of the true change at ``r*``, where the best
price is the control's and where it lies inside the range (docs/ladder-validation.md).

**When the recommendation has no interval** (``identified`` false, ``reason`` says why):
without unit costs or an identified elasticity; and when the bootstrap cannot place the
interval's ends. Two ways, each read off the percentile interval itself, not a tuned
threshold. (1) The range clamps the optimum: a replicate whose curve peaks beyond an end of
the tested range has that end as its optimum, so once at least ``1 - alpha / 2`` of them
peak beyond the same end, both percentiles are that end and the interval has zero width
(early looks: a few periods of a few products, the aggregate elasticity far from its truth
and the replicates' spread around it too narrow to reach back into the range). The data then
say only that the best price lies beyond what was tested, where they do not reach. (2) More
than ``alpha / 2`` of the replicates give no curve at all (every product that an arm shares
with the control drew weight 0: too few products sold at two prices): the undefined ones may
lie on either side, so the interval's ends are not located.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.arms import Arms, read_arms
from analysis.elasticity import ElasticityResult, pooled_wald
from analysis.errors import AnalysisError
from analysis.panel import blackout_flags

#: bootstrap replicates and their fixed seed (the same panel gives the same interval)
BOOTSTRAP_REPLICATES = 999
BOOTSTRAP_SEED = 20261126
#: products per chunk of bootstrap weights (B x chunk float64: 999 x 4096 is 33 MB)
_CHUNK = 4096
#: points on the published curves
CURVE_POINTS = 101


@dataclass(frozen=True)
class ArmTotals:
    """An experiment's usable cells summed per product (rows) and arm (columns); column 0 is
    the control. ``cost`` is the cost of goods (units times unit cost), None without costs."""

    names: tuple[str, ...]
    ratios: np.ndarray
    n: np.ndarray
    units: np.ndarray
    revenue: np.ndarray
    cost: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.names)
        shape = self.n.shape
        if self.ratios.shape != (k,) or len(shape) != 2 or shape[1] != k:
            raise AnalysisError(f"{k} arms need {k} price ratios and {k} columns of totals.")
        if self.units.shape != shape or self.revenue.shape != shape:
            raise AnalysisError("units and revenue need one total per product and arm.")
        if self.cost is not None and self.cost.shape != shape:
            raise AnalysisError("cost needs one total per product and arm.")
        if not (np.isfinite(self.ratios).all() and (self.ratios > 0).all()):
            raise AnalysisError("every arm's price ratio must be a positive number.")
        if self.ratios[0] != 1.0:
            raise AnalysisError(
                f"the control arm {self.names[0]!r} has price ratio {self.ratios[0]:g}; "
                "prices are relative to the control's, so its ratio is 1."
            )

    @property
    def k(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ArmPoint:
    """One arm on the curves: its listed ratio; the price paid and units relative to control,
    each a ratio of the two arms' totals over the products seen in both, every product
    weighted ``n_a n_c / (n_a + n_c)`` in both (so the arms' product mixes are the same); and
    revenue and profit per product-period, pooled over the arm's cells."""

    arm: str
    price_ratio: float
    price_paid_ratio: float
    units_ratio: float
    units_ratio_ci: tuple[float, float]
    revenue_per_cell: float
    revenue_per_cell_ci: tuple[float, float]
    profit_per_cell: float | None
    profit_per_cell_ci: tuple[float, float] | None
    n_cells: int

    def to_dict(self) -> dict[str, Any]:
        pr = self.profit_per_cell_ci
        return {
            "arm": self.arm,
            "price_ratio": self.price_ratio,
            "price_paid_ratio": self.price_paid_ratio,
            "units_ratio": self.units_ratio,
            "units_ratio_ci_low": self.units_ratio_ci[0],
            "units_ratio_ci_high": self.units_ratio_ci[1],
            "revenue_per_cell": self.revenue_per_cell,
            "revenue_per_cell_ci_low": self.revenue_per_cell_ci[0],
            "revenue_per_cell_ci_high": self.revenue_per_cell_ci[1],
            "profit_per_cell": self.profit_per_cell,
            "profit_per_cell_ci_low": None if pr is None else pr[0],
            "profit_per_cell_ci_high": None if pr is None else pr[1],
            "n_cells": self.n_cells,
        }


@dataclass(frozen=True)
class DemandResult:
    """The demand and profit curves of a price ladder and the recommended price."""

    elasticity: ElasticityResult
    curvature: float | None
    curvature_se: float | None
    curvature_pvalue: float | None
    points: tuple[ArmPoint, ...]
    control_revenue: float  # R0: revenue per product-period in the control arm
    control_cost: float | None  # C0: cost of goods per product-period in the control arm
    range: tuple[float, float]
    optimal_price_ratio: float | None
    optimal_price_ratio_ci: tuple[float, float] | None
    optimal_price_ratio_bias: float | None
    at_range_edge: bool | None
    p_edge: float | None
    profit_change: float | None
    profit_change_ci: tuple[float, float] | None
    relative_profit_change: float | None
    #: the profit curve's aggregate elasticities of revenue and of cost of goods
    profit_elasticities: tuple[float, float] | None
    replicates: int
    alpha: float
    notes: tuple[str, ...] = field(default=())
    #: whether the recommendation has intervals (the best price's and the profit change's);
    #: when not, ``reason`` says why in one sentence and the intervals are None
    identified: bool = False
    reason: str | None = None

    def curve(self) -> list[dict[str, Any]]:
        """The fitted curves on a grid over the tested range: units relative to control (the
        within-product elasticity), and revenue and (with costs) profit per product-period (the
        profit curve's aggregate elasticities; without costs, revenue by the elasticity)."""
        eps = self.elasticity.elasticity
        lo, hi = self.range
        out = []
        for r in np.linspace(lo, hi, CURVE_POINTS):
            units = float(units_ratio(r, eps)) if math.isfinite(eps) else None
            row: dict[str, Any] = {"price_ratio": float(r), "units_ratio": units}
            if self.profit_elasticities is not None and self.control_cost is not None:
                e_r, e_g = self.profit_elasticities
                row["revenue"] = float(self.control_revenue * r ** (1.0 + e_r))
                row["profit"] = float(profit(r, e_r, self.control_revenue, self.control_cost, e_g))
            else:
                row["revenue"] = None if units is None else units * r * self.control_revenue
                row["profit"] = None
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The result as ``analyze --json`` prints it and the demand message carries it: JSON
        values (no NaN: a figure that does not exist is None)."""
        e = self.elasticity
        ok = e.identified
        ci = self.optimal_price_ratio_ci
        pc = self.profit_change_ci
        pe = self.profit_elasticities
        return _json_ready(
            {
                "method": "demand",
                "elasticity": e.elasticity if ok else None,
                "elasticity_ci_low": e.interval.low,
                "elasticity_ci_high": e.interval.high,
                "elasticity_se": e.se if ok else None,
                "elasticity_df": e.df,
                "elasticity_identified": ok,
                "curvature": self.curvature,
                "curvature_se": self.curvature_se,
                "curvature_pvalue": self.curvature_pvalue,
                "price_ratio_low": self.range[0],
                "price_ratio_high": self.range[1],
                "revenue_elasticity": None if pe is None else pe[0],
                "cost_elasticity": None if pe is None else pe[1],
                "control_revenue_per_cell": self.control_revenue,
                "control_cost_per_cell": self.control_cost,
                "optimal_price_ratio": self.optimal_price_ratio,
                "optimal_price_ratio_ci_low": None if ci is None else ci[0],
                "optimal_price_ratio_ci_high": None if ci is None else ci[1],
                "optimal_price_ratio_bias": self.optimal_price_ratio_bias,
                "at_range_edge": self.at_range_edge,
                "p_edge": self.p_edge,
                "profit_change_at_optimum": self.profit_change,
                "profit_change_at_optimum_ci_low": None if pc is None else pc[0],
                "profit_change_at_optimum_ci_high": None if pc is None else pc[1],
                "relative_profit_change_at_optimum": self.relative_profit_change,
                "identified": self.identified,
                "reason": self.reason,
                "interval_method": f"product_poisson_bootstrap_percentile_{self.replicates}",
                "alpha": self.alpha,
                "n_units": e.n_products,
                "n_dropped": e.n_dropped,
                "points": [p.to_dict() for p in self.points],
                "curve": self.curve(),
                "notes": list(self.notes),
            }
        )


def _json_ready(value: Any) -> Any:
    """``value`` as JSON holds it, through dicts and lists: a non-finite number as None (JSON
    has no NaN), a numpy scalar as the Python one."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def units_ratio(r: Any, eps: Any) -> Any:
    """The demand curve: units relative to the control's at listed ratio ``r``, ``r^eps``."""
    return np.power(r, eps)


def units_ratio_band(r: Any, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The demand curve's pointwise band at ratios ``r`` from the elasticity's interval
    ``[low, high]``: ``r^eps`` is monotone in ``eps`` at each ``r``, so the band's ends are
    ``r^low`` and ``r^high`` (which of them is the lower turns at ``r = 1``, where the band
    is the point 1). It carries the elasticity's uncertainty only, not the control's level."""
    a, b = units_ratio(np.asarray(r, float), low), units_ratio(np.asarray(r, float), high)
    return np.minimum(a, b), np.maximum(a, b)


def profit(r: Any, eps: Any, revenue: Any, cost: Any, eps_cost: Any = None) -> Any:
    """``Pi(r) = R0 r^(1 + eps) - C0 r^eps_cost``: expected profit per product-period at listed
    ratio r, revenue and cost of goods each following its own power of r (one elasticity for
    both, ``eps_cost`` None: ``r^eps (r R0 - C0)``)."""
    eps_c = eps if eps_cost is None else eps_cost
    return revenue * np.power(r, 1.0 + np.asarray(eps)) - cost * np.power(r, eps_c)


def optimal_ratio(
    eps: Any, revenue: Any, cost: Any, lo: float, hi: float, eps_cost: Any = None
) -> np.ndarray:
    """The ratio in ``[lo, hi]`` that maximises :func:`profit` (vectorised over its array
    arguments): the best of the range's ends and the stationary point, ``r^(1 + eps -
    eps_cost) = eps_cost C0 / ((1 + eps) R0)``, where it lies inside. (Profit has at most one
    stationary point in r > 0, so these are all the candidates.)"""
    eps_c = eps if eps_cost is None else eps_cost
    eps, revenue, cost, eps_c = np.broadcast_arrays(
        np.asarray(eps, float), np.asarray(revenue, float), np.asarray(cost, float),
        np.asarray(eps_c, float),
    )  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        base = eps_c * cost / ((1.0 + eps) * revenue)
        power = 1.0 + eps - eps_c
        stationary = np.where((base > 0) & (power != 0), np.power(base, 1.0 / power), np.nan)
        inside = np.isfinite(stationary) & (stationary > lo) & (stationary < hi)
        cands = np.stack([np.full(eps.shape, lo), np.full(eps.shape, hi), stationary])
        value = profit(cands, eps, revenue, cost, eps_c)
    value[2] = np.where(inside, value[2], -np.inf)
    value = np.where(np.isfinite(value) | (value == -np.inf), value, -np.inf)
    best = np.take_along_axis(cands, np.argmax(value, axis=0)[None], axis=0)[0]
    # no ratio without its inputs (a bootstrap replicate that drew no product of an arm)
    known = np.isfinite(eps) & np.isfinite(revenue) & np.isfinite(cost) & np.isfinite(eps_c)
    return np.where(known, best, np.nan)


@dataclass(frozen=True)
class _Within:
    """Each product's within-product logs and slopes."""

    N: np.ndarray  # (G, k) cells of the product-arms kept (sales and revenue > 0)
    q: np.ndarray  # log units per cell (0 where not kept)
    p: np.ndarray  # log price paid (0 where not kept)
    w: np.ndarray  # (G,) sum_a N (z - zbar)^2: 0 without two prices
    bq: np.ndarray
    bp: np.ndarray
    n_dropped: int


def _within(t: ArmTotals) -> _Within:
    z = np.log(t.ratios)
    keep = (t.n > 0) & (t.units > 0) & (t.revenue > 0)
    N = np.where(keep, t.n, 0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(keep, np.log(t.units / np.where(keep, t.n, 1)), 0.0)
        p = np.where(keep, np.log(t.revenue / np.where(keep, t.units, 1)), 0.0)

    def centred(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cells x (z - zbar) and the weights sum cells (z - zbar)^2, per product"""
        tot = cells.sum(axis=1)
        zbar = (cells @ z) / np.where(tot > 0, tot, 1.0)
        dz = z[None, :] - zbar[:, None]
        w = (cells * dz**2).sum(axis=1)
        return cells * dz, np.where(w > 1e-12, w, 0.0)

    d, w = centred(N)
    safe = np.where(w > 0, w, 1.0)
    bq, bp = (d * q).sum(axis=1) / safe, (d * p).sum(axis=1) / safe
    had = centred(t.n.astype(float))[1] > 0  # cells at two prices, before the dropping
    return _Within(N, q, p, w, bq, bp, int((had & (w == 0)).sum()))


def _curvature(t: ArmTotals, x: _Within) -> tuple[float, float, float] | None:
    """(coefficient, SE, p-value) of ``z^2`` in the within-product regression of log units on
    ``z`` and ``z^2`` (see the module), or None with fewer than three prices sold at."""
    z = np.log(t.ratios)
    if len(np.unique(z[(x.N > 0).any(axis=0)])) < 3:
        return None
    rows = x.w > 0
    N, q = x.N[rows], x.q[rows]
    tot = N.sum(axis=1, keepdims=True)

    def demean(v: np.ndarray) -> np.ndarray:
        return v - (N * v).sum(axis=1, keepdims=True) / tot

    X = np.stack([demean(np.broadcast_to(z, N.shape)), demean(np.broadcast_to(z**2, N.shape))], -1)
    y = demean(q)
    A = np.einsum("ga,gai,gaj->ij", N, X, X)
    if np.linalg.cond(A) > 1e12:
        return None
    beta = np.linalg.solve(A, np.einsum("ga,gai,ga->i", N, X, y))
    e = np.where(N > 0, y - X @ beta, 0.0)
    s = np.einsum("ga,gai,ga->gi", N, X, e)
    G = len(s)
    Ainv = np.linalg.inv(A)
    V = G / (G - 1) * Ainv @ (s.T @ s) @ Ainv
    se = math.sqrt(V[1, 1])
    pvalue = 2.0 * float(stats.t.sf(abs(beta[1]) / se, G - 1)) if se > 0 else math.nan
    return float(beta[1]), se, pvalue


def fit_demand(
    t: ArmTotals,
    alpha: float = 0.05,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> DemandResult:
    """The demand and profit curves and the recommended price of a ladder (see the module);
    one sentence when the panel cannot give them."""
    sold = t.units.sum(axis=0)
    none = [name for name, u, r in zip(t.names, sold, t.revenue.sum(axis=0), strict=True)
            if not (u > 0 and r > 0)]  # fmt: skip
    if none:
        raise AnalysisError(
            f"arm {none[0]!r} sold nothing in its usable cells: its price gives no point on "
            "the demand curve."
        )
    distinct = np.unique(t.ratios)
    if len(distinct) < 2:
        raise AnalysisError("the demand curve needs arms at two prices at least; all are at one.")
    x = _within(t)
    rows = x.w > 0
    if rows.sum() < 2:
        raise AnalysisError(
            "the demand curve compares each product's own sales at two or more prices; "
            f"{int(rows.sum())} product(s) sold at two prices (a design that puts each "
            "product in one arm cannot give it)."
        )
    n_periods = 0
    elasticity = pooled_wald(x.w[rows], x.bq[rows], x.bp[rows], alpha, x.n_dropped, n_periods)
    curv = _curvature(t, x)
    notes: list[str] = []
    if curv is None:
        notes.append("the curvature test needs three prices; one elasticity is assumed.")
    elif curv[2] < alpha:
        notes.append(
            f"one elasticity does not fit every price (curvature p = {curv[2]:.3g}): the "
            "recommendation rests on a log-log curve the data reject."
        )

    k, c = t.k, 0
    cost = t.cost
    # every statistic below is a ratio of sums over products: one column per sum, so a
    # bootstrap replicate is one weighted column sum (Poisson weights per product)
    cols: dict[str, np.ndarray] = {
        "wq": np.where(rows, x.w * x.bq, 0.0),
        "wp": np.where(rows, x.w * x.bp, 0.0),
        "n_c": t.n[:, c].astype(float),
        "rev_c": t.revenue[:, c].astype(float),
    }
    if cost is not None:
        cols["cost_c"] = cost[:, c].astype(float)

    def mean_cell(tot: np.ndarray) -> np.ndarray:
        return np.divide(tot, t.n, out=np.zeros(t.n.shape), where=t.n > 0)

    per_cell, revenue_cell = mean_cell(t.units), mean_cell(t.revenue)
    cost_cell = None if cost is None else mean_cell(cost)
    for a in range(k):
        # arm a against control on the same products, each weighted as a difference of two
        # means is (n_a n_c / (n_a + n_c)): the arms' product mixes balanced, no log of a mean
        both = (t.n[:, a] > 0) & (t.n[:, c] > 0)
        na, nc = t.n[:, a].astype(float), t.n[:, c].astype(float)
        wa = np.where(both, na * nc / np.maximum(na + nc, 1.0), 0.0)
        cols[f"u{a}_a"] = wa * per_cell[:, a]
        cols[f"u{a}_c"] = wa * per_cell[:, c]
        # the same for revenue and cost of goods: the profit curve's aggregate response
        cols[f"R{a}_a"] = wa * revenue_cell[:, a]
        cols[f"R{a}_c"] = wa * revenue_cell[:, c]
        if cost_cell is not None:
            cols[f"G{a}_a"] = wa * cost_cell[:, a]
            cols[f"G{a}_c"] = wa * cost_cell[:, c]
        # the price paid: its log change within product (a price is all but fixed per cell,
        # so no log-of-a-mean bias), where both arms sold
        sold = (x.N[:, a] > 0) & (x.N[:, c] > 0)
        cols[f"w{a}"] = np.where(sold, wa, 0.0)
        cols[f"dp{a}"] = np.where(sold, wa * (x.p[:, a] - x.p[:, c]), 0.0)
        cols[f"n{a}"] = t.n[:, a].astype(float)
        cols[f"rev{a}"] = t.revenue[:, a].astype(float)
        if cost is not None:
            cols[f"pro{a}"] = (t.revenue[:, a] - cost[:, a]).astype(float)
    names = list(cols)
    M = np.column_stack([cols[nm] for nm in names])
    full = dict(zip(names, M.sum(axis=0), strict=True))
    boot = dict(zip(names, _poisson_sums(M, replicates, seed).T, strict=True))

    def ratio(s: dict[str, Any], num: str, den: str) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(s[num], s[den])

    def interval(draws: np.ndarray) -> tuple[float, float]:
        ok = draws[np.isfinite(draws)]
        if len(ok) == 0:
            return (math.nan, math.nan)
        lo, hi = np.quantile(ok, [alpha / 2.0, 1.0 - alpha / 2.0])
        return float(lo), float(hi)

    points = []
    for a in range(k):
        if a == c:
            units, units_ci, paid = 1.0, (1.0, 1.0), 1.0
        else:
            units = float(ratio(full, f"u{a}_a", f"u{a}_c"))
            units_ci = interval(ratio(boot, f"u{a}_a", f"u{a}_c"))
            paid = float(np.exp(ratio(full, f"dp{a}", f"w{a}")))
        prof = float(ratio(full, f"pro{a}", f"n{a}")) if cost is not None else None
        points.append(
            ArmPoint(
                arm=t.names[a],
                price_ratio=float(t.ratios[a]),
                price_paid_ratio=paid,
                units_ratio=units,
                units_ratio_ci=units_ci,
                revenue_per_cell=float(ratio(full, f"rev{a}", f"n{a}")),
                revenue_per_cell_ci=interval(ratio(boot, f"rev{a}", f"n{a}")),
                profit_per_cell=prof,
                profit_per_cell_ci=None
                if cost is None
                else interval(ratio(boot, f"pro{a}", f"n{a}")),
                n_cells=int(full[f"n{a}"]),
            )
        )

    lo, hi = float(distinct[0]), float(distinct[-1])
    R0 = float(ratio(full, "rev_c", "n_c"))
    rec: dict[str, Any] = {
        "optimal_price_ratio": None,
        "optimal_price_ratio_ci": None,
        "optimal_price_ratio_bias": None,
        "at_range_edge": None,
        "p_edge": None,
        "profit_change": None,
        "profit_change_ci": None,
        "relative_profit_change": None,
    }
    C0: float | None = None
    profit_curve: tuple[float, float] | None = None
    reason: str | None = None
    if cost is None:
        reason = "no unit costs: no profit curve and no recommended price."
        notes.append(reason)
    elif not elasticity.identified:
        C0 = float(ratio(full, "cost_c", "n_c"))
        reason = "the elasticity is not identified: no recommended price."
        notes.append(reason)
    else:
        C0 = float(ratio(full, "cost_c", "n_c"))
        z = np.log(t.ratios)

        def slopes(S: dict[str, Any]) -> tuple[Any, Any]:
            """The aggregate elasticities of revenue and of cost of goods: through the origin,
            the log of each arm's product-balanced total over the control's (revenue net of
            the price itself) on the log ratio, the arms weighted by their cells."""
            num_r = num_g = den = 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                for a in range(1, k):
                    weight = S[f"n{a}"] * z[a]
                    num_r = num_r + weight * (np.log(ratio(S, f"R{a}_a", f"R{a}_c")) - z[a])
                    num_g = num_g + weight * np.log(ratio(S, f"G{a}_a", f"G{a}_c"))
                    den = den + weight * z[a]
                return np.divide(num_r, den), np.divide(num_g, den)

        eps_r, eps_g = (float(v) for v in slopes(full))
        r_star = float(optimal_ratio(eps_r, R0, C0, lo, hi, eps_g))
        eps_rb, eps_gb = slopes(boot)
        R_b, C_b = ratio(boot, "rev_c", "n_c"), ratio(boot, "cost_c", "n_c")
        r_b = optimal_ratio(eps_rb, R_b, C_b, lo, hi, eps_gb)
        change = float(profit(r_star, eps_r, R0, C0, eps_g) - (R0 - C0))
        # each replicate's curve at the recommended ratio itself, not at its own optimum
        # (whose change against the control is never below 0: see the module)
        change_b = profit(r_star, eps_rb, R_b, C_b, eps_gb) - (R_b - C_b)
        profit_curve = (eps_r, eps_g)
        edge = r_star in (lo, hi)
        drawn = r_b[np.isfinite(r_b)]  # none where every replicate's curve is undefined
        optimum_ci, change_ci = interval(r_b), interval(change_b)
        reason = _unplaced(r_b, optimum_ci, lo, hi, alpha)
        rec = {
            "optimal_price_ratio": r_star,
            "optimal_price_ratio_ci": None if reason else optimum_ci,
            "optimal_price_ratio_bias": float(drawn.mean() - r_star) if drawn.size else math.nan,
            "at_range_edge": edge,
            "p_edge": float(np.mean((drawn == lo) | (drawn == hi))) if drawn.size else math.nan,
            "profit_change": change,
            "profit_change_ci": None if reason else change_ci,
            "relative_profit_change": change / (R0 - C0) if R0 - C0 > 0 else None,
        }
        if reason:
            notes.append(reason)
        elif change_ci[0] == change_ci[1]:
            # the control's own price (an end of a ladder that only raises or only cuts): the
            # change is 0 there by definition, and the optimum's interval still says how far
            # the best price may lie from it
            notes.append(
                "the recommended price is the control's: the profit change there is 0 by "
                "definition."
            )
        if edge:
            notes.append(
                f"profit is highest at the {'top' if r_star == hi else 'bottom'} of the tested "
                f"range ({r_star:g}): the best price may lie outside what was tested."
            )
    return DemandResult(
        elasticity=elasticity,
        curvature=None if curv is None else curv[0],
        curvature_se=None if curv is None else curv[1],
        curvature_pvalue=None if curv is None else curv[2],
        points=tuple(sorted(points, key=lambda pt: pt.price_ratio)),
        control_revenue=R0,
        control_cost=C0,
        range=(lo, hi),
        profit_elasticities=profit_curve,
        replicates=replicates,
        alpha=alpha,
        notes=tuple(notes),
        identified=reason is None,
        reason=reason,
        **rec,
    )


def _unplaced(
    r_b: np.ndarray,
    optimum_ci: tuple[float, float],
    lo: float,
    hi: float,
    alpha: float,
) -> str | None:
    """Why the bootstrap cannot place the recommendation's intervals (None: it can): more
    than ``alpha / 2`` of the replicates give no curve, so either end of an interval may lie
    among them; or the optimum's percentile interval has zero width, which under the range's
    clamp means at least ``1 - alpha / 2`` of the replicates peak beyond one end of it (the
    module's "When the recommendation has no interval")."""
    undefined = float(np.mean(~np.isfinite(r_b)))
    if undefined > alpha / 2:
        return (
            f"{undefined:.0%} of the bootstrap replicates give no profit curve (every product "
            "an arm shares with the control drew weight 0: too few products sold at two "
            "prices), so the intervals' ends are not located: no interval yet."
        )
    low, high = optimum_ci
    if low == high:
        drawn = r_b[np.isfinite(r_b)]
        end, word = (lo, "below") if low == lo else (hi, "above")
        share = float(np.mean(drawn == end))
        return (
            f"{share:.1%} of the bootstrap replicates' profit curves peak {word} the tested "
            f"range: the data place the best price at or {word} x{end:g}, where no price was "
            "tested, so the interval is not identified within the range."
        )
    return None


def fit_ladder_cells(
    cells: pd.DataFrame,
    ratios: Mapping[str, float],
    control: str,
    alpha: float = 0.05,
    replicates: int = BOOTSTRAP_REPLICATES,
) -> DemandResult:
    """The demand curve of a ladder's cell table as the live panel source hands it to the
    analysis worker (``product``, ``period``, ``arm``, ``units``, ``revenue``, ``blackout``,
    ``probability`` and, with unit costs, ``profit``), each arm listed at ``ratios[arm]``:
    the usable, randomised cells per product and arm, the cost of goods from profit (revenue
    - profit), as ``pricelab analyze --method demand --profit profit`` fits them. The
    analysis worker's fit, and the ladder validation studies'."""
    table = cells.assign(price_ratio=cells["arm"].astype(str).map(dict(ratios)).astype(float))
    profit = "profit" if "profit" in table.columns else None
    arms = read_arms(table, "arm", control, "product")
    totals = arm_totals(table, arms, "units", "revenue", "price_ratio", None,
                        "blackout", "probability", profit, "period")  # fmt: skip
    return fit_demand(totals, alpha, replicates)


def arm_totals(
    df: pd.DataFrame,
    arms: Arms,
    units: str,
    revenue: str,
    ratio: str,
    cost: str | None = None,
    blackout: str | None = None,
    probability: str | None = None,
    profit: str | None = None,
    time: str | None = None,
) -> ArmTotals:
    """A long panel's usable cells (an arm named, not blacked out and, with ``probability``,
    randomised: strictly between 0 and 1) summed per product and arm, the control first;
    ``ratio`` is each cell's listed price ratio (one per arm); the cost of goods comes from
    ``cost``, each cell's unit cost (units x unit cost), or from ``profit`` (revenue -
    profit, as pricelab's panels have it), not both. One sentence for a missing column, a
    product twice in one ``time`` period, an arm with no usable cell or with two ratios, or a
    missing or infinite number, or a negative unit cost or cost of goods (in a cell that sold),
    in a usable cell; units and revenue may be negative (returns netted into a cell)."""
    if cost is not None and profit is not None:
        raise AnalysisError("give the unit cost (--cost) or the profit (--profit), not both.")
    named = [arms.unit, time, units, revenue, ratio, cost, profit, blackout, probability]
    missing = [c for c in named if c is not None and c not in df.columns]
    if missing:
        raise AnalysisError(f"Column(s) {missing} not found; the table has {list(df.columns)}.")
    if time is not None:
        twice = df.duplicated([arms.unit, time], keep=False)
        if twice.any():
            first = df.loc[twice].iloc[0]
            raise AnalysisError(
                f"Unit {str(first[arms.unit])!r} appears more than once at {time} "
                f"{first[time]}; "
                "a panel has one row per unit and period."
            )
    use = df[arms.column].notna()
    if blackout is not None:
        use &= ~blackout_flags(df, blackout)
    if probability is not None:
        p = pd.to_numeric(df[probability], errors="coerce")
        use &= (p > 0) & (p < 1)
    cells = df.loc[use]
    numbers = [units, revenue, ratio] + [c for c in (cost, profit) if c is not None]
    for col in numbers:
        values = pd.to_numeric(cells[col], errors="coerce").to_numpy(dtype=float)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise AnalysisError(
                f"column {col!r} has {bad} missing, infinite or non-numeric value(s) in usable "
                "cells."
            )
        # a cell's units and revenue may be negative: returns netted into it (analysis.reader)
        negative = int((values < 0).sum()) if col == cost else 0
        if negative:
            raise AnalysisError(f"column {col!r} has {negative} negative value(s) in usable cells.")
    if profit is not None:
        goods = pd.to_numeric(cells[revenue]) - pd.to_numeric(cells[profit])
        sold = pd.to_numeric(cells[units]) >= 0  # a net return gives goods back
        above = int((sold & (goods < -1e-9 * (1 + pd.to_numeric(cells[revenue]).abs()))).sum())
        if above:
            raise AnalysisError(
                f"column {profit!r} is above revenue in {above} usable cell(s): a negative "
                "cost of goods."
            )
    order = (arms.control, *arms.others)
    names = cells[arms.column].astype(str)
    ratios = []
    for name in order:
        if not (names == name).any():
            raise AnalysisError(
                f"arm {name!r} has no usable cells (outside blackouts"
                + (", among those the design randomised)." if probability else ").")
            )
        seen = pd.to_numeric(cells.loc[names == name, ratio]).unique()
        if len(seen) != 1:
            raise AnalysisError(
                f"arm {name!r} has {len(seen)} values of {ratio!r} in its usable cells; "
                "the demand curve needs one listed price ratio per arm."
            )
        ratios.append(float(seen[0]))
    frame = pd.DataFrame(
        {
            "unit": cells[arms.unit].to_numpy(),
            "arm": pd.Categorical(names, categories=order),
            "n": 1.0,
            "units": pd.to_numeric(cells[units]).to_numpy(dtype=float),
            "revenue": pd.to_numeric(cells[revenue]).to_numpy(dtype=float),
        }
    )
    if cost is not None:
        frame["cost"] = frame["units"] * pd.to_numeric(cells[cost]).to_numpy(dtype=float)
    elif profit is not None:
        frame["cost"] = frame["revenue"] - pd.to_numeric(cells[profit]).to_numpy(dtype=float)
    sums = frame.groupby(["unit", "arm"], observed=False, sort=True).sum()
    k = len(order)

    def grid(col: str) -> np.ndarray:
        return sums[col].to_numpy(dtype=float).reshape(-1, k)

    return ArmTotals(
        order, np.array(ratios), grid("n"), grid("units"), grid("revenue"),
        grid("cost") if "cost" in frame.columns else None,
    )  # fmt: skip


def _poisson_sums(M: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """(replicates, columns): each replicate's sum of ``M``'s rows with a Poisson(1) weight
    per row, drawn a chunk of rows at a time (the same seed gives the same sums)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((replicates, M.shape[1]))
    for start in range(0, len(M), _CHUNK):
        block = M[start : start + _CHUNK]
        out += rng.poisson(1.0, size=(replicates, len(block))).astype(float) @ block
    return out
