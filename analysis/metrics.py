"""The decision metrics of a price experiment, each estimated from the same cell table.

A pricing decision is made in money, so every experiment is measured on:

- ``units``, ``revenue`` and ``profit`` (revenue - units x unit cost): sums per cell, fitted
  by the design's own estimators exactly as units always were;
- ``price``, the average price actually paid: an arm's revenue over its units. It is a ratio
  metric, and its difference between the arms, ``P_T - P_C``, is not a difference in cell
  means. Where the design compares products with themselves (the ``fe`` plan) each arm's
  price is taken over the products' own arm means (:func:`_price_within`: the product mix
  of the arms cannot move it: docs/relative-effects.md measures the gain). Pooled (the
  ``dm`` plan), its standard error is the delta method's (Deng, Knoblich & Lu 2018, "Applying the
  delta method in metric analytics", KDD): each cell's linearised outcome
  ``z = (revenue - P_a units) / mean units of arm a`` is fitted by the design's difference in
  means, with its clustering, so a product that sits in both arms enters with its covariance.
  The arm means' covariance that fit reports is the covariance of ``(P_T, P_C)``, and the
  relative effect ``P_T / P_C - 1`` takes its Fieller interval from it (analysis.ratio).
- ``elasticity``: analysis.elasticity (the within-product Wald estimate).

Where costs come from, and why profit is absent without them: the panel source adds a
``profit`` column only when the experiment's spec gives every product a unit cost
(docs/relative-effects.md). Nothing here makes a cost up.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import NotEstimable, PanelError
from analysis.estimators import registry
from analysis.estimators.sums import MeansPartial
from analysis.panel import Panel
from analysis.results import EstimateResult
from core.ports import EstimatorPlan

#: the per-cell and ratio metrics, in the order they are published
METRICS = ("units", "revenue", "profit", "price")
#: every ``metric`` an estimate message may carry
ALL_METRICS = (*METRICS, "elasticity")
#: the estimators that measure the price paid (within products; pooled by the delta method;
#: over a switchback's lag-p windows, by the delta method on the Hajek means)
PRICE_ESTIMATORS = ("fe", "dm", "hajek")


def metrics_of(columns: pd.Index | list[str]) -> tuple[str, ...]:
    """The metrics a cell table can give: units always; revenue, and the price paid, when it
    has revenue; profit when it has a profit column (every product has a unit cost)."""
    cols = set(columns)
    out = ["units"]
    if "revenue" in cols:
        out.append("revenue")
        if "profit" in cols:
            out.append("profit")
        out.append("price")
    return tuple(out)


def fit_price(plan: EstimatorPlan, units: Panel, revenue: Panel, seed: int = 0) -> EstimateResult:
    """The difference in the average price paid between the arms (see the module): within
    products for an ``fe`` plan, pooled with the delta method for a ``dm`` plan (with its
    clustering); ``units`` and ``revenue`` are the same cells' panels. Other estimators are
    not linearised: they raise NotEstimable."""
    if plan.name == "fe":
        return _price_within(plan, units, revenue)
    if plan.name == "hajek":
        return _price_windows(plan, units, revenue, seed)
    if plan.name != "dm":
        raise NotEstimable(
            f"the price paid is estimated by the difference in means or within products, "
            f"not by {plan.label}"
        )
    if revenue.shape != units.shape:
        raise PanelError(f"revenue has shape {revenue.shape}; units has {units.shape}")
    est: Any = registry.make(plan.name, seed=seed, **dict(plan.params))
    return price_from_parts(plan, est, est.partial(units), est.partial(revenue))


def price_from_parts(
    plan: EstimatorPlan, est: Any, units: MeansPartial, revenue: MeansPartial
) -> EstimateResult:
    """The price paid by ``dm`` (pooled) or ``hajek`` (over the lag-p windows) from the
    estimator's partial statistics of the units and the revenue of the same cells (merged
    over every chunk of products, or of the whole panel: ``analysis.estimators.sums``).

    Each arm's price is its (weighted) revenue over its (weighted) units, ``P_a = R_a / U_a``;
    the linearised outcome ``z = (revenue - P_a units) / mean units of arm a`` is linear in
    the cells, so its per-cluster sums are the same combination of the units' and revenue's,
    ``(s_R - P_a s_U) / mean_U``, over the same weights: the estimator's ``finish`` of them is
    its fit of ``z`` (clustered as the plan clusters)."""
    su, sr = units.sums, revenue.sums
    if len(su.keys) != len(sr.keys) or not np.array_equal(su.keys, sr.keys):
        raise PanelError("the units' and the revenue's sums are not over the same clusters")
    if plan.name == "dm":
        n1, n0 = su.totals
        if n1 == 0 or n0 == 0:
            raise PanelError("the price paid needs usable, randomised cells in both arms")
    else:
        est.finish(units)  # its own refusal when an arm has no window yet
    u_t, u_c = su.means()
    _check_sold(u_t, u_c)
    p_t = float(sr.s1.sum() / su.s1.sum())
    p_c = float(sr.s0.sum() / su.s0.sum())
    z = su.outcome((sr.s1 - p_t * su.s1) / u_t, (sr.s0 - p_c * su.s0) / u_c)
    fit = est.finish(replace(units, sums=z))
    means = "mean units" if plan.name == "dm" else "Hajek mean units"
    return _as_price(fit, plan, p_t, p_c, means)


def _check_sold(u_t: float, u_c: float) -> None:
    """Refuse arms in which no unit was sold: their average price paid is undefined."""
    if u_c <= 0 or u_t <= 0:
        arm = "control" if u_c <= 0 else "treatment"
        raise PanelError(f"no unit was sold in the {arm} arm: the average price paid is undefined")


def _as_price(
    fit: EstimateResult, plan: EstimatorPlan, p_t: float, p_c: float, means: str
) -> EstimateResult:
    """The fit of the delta method's linearised outcome as the difference in the price paid,
    ``p_t - p_c``; ``means``: what each arm's units are divided by (its details say)."""
    details = dict(fit.details) | {
        "mean_treated": p_t,
        "mean_control": p_c,
        # the linearised arm means are zero, so the CR2 df dm computed for the ratio's pivot
        # was at a meaningless ratio: Fieller takes the difference's df instead
        "df_ratio": fit.df,
        "linearised": f"delta method: z = (revenue - P_arm units) / {means} of the arm",
    }
    return replace(fit, method=plan.label, effect=p_t - p_c, metric="price", details=details)


def _price_windows(
    plan: EstimatorPlan, units: Panel, revenue: Panel, seed: int = 0
) -> EstimateResult:
    """The price paid over a switchback's lag-p windows (the ``hajek`` plan): each arm's price
    is its window-weighted revenue over its window-weighted units (the ratio of the two Hajek
    means, same weights), linearised as ``dm``'s pooled price is, and the linearised outcome
    fitted by the same plan, so the SE is clustered by unit over the same windows
    (:func:`price_from_parts`)."""
    if revenue.shape != units.shape:
        raise PanelError(f"revenue has shape {revenue.shape}; units has {units.shape}")
    est: Any = registry.make(plan.name, seed=seed, **dict(plan.params))
    return price_from_parts(plan, est, est.partial(units), est.partial(revenue))


def _price_within(plan: EstimatorPlan, units: Panel, revenue: Panel) -> EstimateResult:
    """The price paid compared within products (the ``fe`` plan): each arm's price is the sum
    over products of their mean revenue per cell in the arm over the sum of their mean units
    per cell in the arm, over the products with cells in both arms. Every product enters both
    arms with the same weight, so which products the draw happened to treat more often (the
    product mix, most of the pooled ratio's noise when prices differ tenfold) does not move
    it; its estimand is the pooled ratio's when every product has the same number of cells.
    SE: per cluster (product, or class) influence ``(rbar - P ubar) / mean ubar`` of each
    arm's ratio, G/(G-1), Student t on G - 1. A plan clustered by class x period (the
    cluster switchback's ``fe``) clusters the price by class: its influences are per product,
    and a split of them into periods is not validated."""
    cluster = dict(plan.params).get("cluster", "unit")
    if cluster == "class_period":
        cluster = "class"
    if cluster not in ("unit", "class"):
        raise NotEstimable(
            f"the price paid within products clusters by unit or class, not {cluster}"
        )
    use = units.randomised
    t, c = use & units.W, use & ~units.W
    n_t, n_c = t.sum(axis=1), c.sum(axis=1)
    ok = (n_t > 0) & (n_c > 0)
    if ok.sum() < 2:
        raise PanelError("the price paid within products needs 2 products with cells in both arms")
    U, R = np.where(use, units.Y, 0.0), np.where(use, revenue.Y, 0.0)
    u_t, u_c = (U * t).sum(axis=1)[ok] / n_t[ok], (U * c).sum(axis=1)[ok] / n_c[ok]
    r_t, r_c = (R * t).sum(axis=1)[ok] / n_t[ok], (R * c).sum(axis=1)[ok] / n_c[ok]
    b_t, b_c = float(u_t.mean()), float(u_c.mean())
    _check_sold(b_t, b_c)
    p_t, p_c = float(r_t.mean() / b_t), float(r_c.mean() / b_c)
    n = int(ok.sum())
    psi_t, psi_c = (r_t - p_t * u_t) / (b_t * n), (r_c - p_c * u_c) / (b_c * n)
    if cluster == "class":
        if units.groups is None:
            raise PanelError(
                "Clustering by class needs each unit's class: give the panel a class column."
            )
        _, labels = np.unique(units.groups[ok], return_inverse=True)
    else:
        labels = np.arange(n)
    G = int(labels.max()) + 1
    if G < 2:
        raise PanelError(f"A clustered SE needs at least 2 clusters; the {cluster} level has {G}.")
    g_t = np.bincount(labels, weights=psi_t, minlength=G)
    g_c = np.bincount(labels, weights=psi_c, minlength=G)
    f = G / (G - 1)
    v_tt, v_cc, v_tc = float(f * g_t @ g_t), float(f * g_c @ g_c), float(f * g_t @ g_c)
    df = float(G - 1)
    return EstimateResult(
        method=plan.label,
        effect=p_t - p_c,
        se=math.sqrt(max(v_tt + v_cc - 2.0 * v_tc, 0.0)),
        n_units=n,
        n_periods=int(use[ok].any(axis=0).sum()),
        se_method=f"cluster_{cluster}",
        n_cells=int((t | c)[ok].sum()),
        metric="price",
        df=df,
        details={
            "mean_treated": p_t,
            "mean_control": p_c,
            "mean_covariance": (v_tt, v_cc, v_tc),
            "df_ratio": df,
            "n_clusters": G,
            "linearised": "within products: sum of product arm means, delta method by cluster",
        },
    )


def negative_margins(df: pd.DataFrame, costs: dict[str, float]) -> list[str]:
    """Products whose average price paid is below their unit cost: allowed (a negative margin
    is real), but worth a sentence to the analyst reading the profit."""
    if not costs or "revenue" not in df.columns:
        return []
    sums = df.groupby("product", observed=True)[["revenue", "units"]].sum()
    sold = sums[sums["units"] > 0]
    paid = sold["revenue"] / sold["units"]
    cost = pd.Series(costs).reindex(paid.index.astype(str)).to_numpy()
    below = paid.to_numpy() < cost  # a product without a cost compares False
    return [str(p) for p, b in zip(paid.index, below, strict=True) if b]
