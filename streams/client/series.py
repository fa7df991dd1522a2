"""Each metric's running estimate look by look, as the console's "Over time" chart draws it,
and a price ladder's curves as its "Price ladder" chart draws them: both read off the
messages of the estimates topic (``streams.client.estimates.all_estimates``), by the rules
``pricelab estimates`` follows (the design's primary estimator, the latest demand message,
its reading beside the verdict). Nothing here computes an estimate.
"""

from __future__ import annotations

from typing import Any

from core.ports import metric_name
from streams.client.estimates import (
    demand_reading_of,
    is_estimate,
    latest_demand,
    primary_estimators,
)

#: the figures of an estimate each point of a series carries
FIGURES = ("effect", "ci_low", "ci_high", "cs_low", "cs_high", "relative_effect")
#: the order metrics are shown in after the decision metric
_ORDER = ("units", "revenue", "profit", "price", "elasticity")


def running_estimates(docs: list[dict[str, Any]], lead: str | None = None) -> list[dict[str, Any]]:
    """Each (metric, arm) of the whole experiment (no segment) by its design's primary
    estimator (:func:`primary_estimators`), with one point per look, oldest first: the look's
    ``as_of`` and ``n_periods`` and :data:`FIGURES` (a look published more than once: its
    last message). ``lead`` (the decision metric) comes first, then the other metrics in
    the scorecard's order, then by arm."""
    primary = primary_estimators(docs)
    looks: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for doc in docs:
        if not is_estimate(doc) or doc.get("segment"):
            continue
        metric, arm = metric_name(doc.get("metric")), doc.get("arm") or ""
        if primary.get((metric, "", arm)) != doc.get("estimator"):
            continue
        key = (metric, arm, str(doc["estimator"]))
        looks.setdefault(key, {})[str(doc.get("as_of"))] = doc

    def order(key: tuple[str, str, str]) -> tuple[int, str]:
        metric, arm, _ = key
        rank = -1 if metric == lead else (_ORDER.index(metric) if metric in _ORDER else 9)
        return rank, arm

    out = []
    for key in sorted(looks, key=order):
        metric, arm, estimator = key
        points = [
            {"as_of": as_of, "n_periods": d.get("n_periods")} | {f: d.get(f) for f in FIGURES}
            for as_of, d in sorted(looks[key].items())
        ]
        out.append({"metric": metric, "arm": arm or None, "estimator": estimator, "looks": points})
    return out


def ladder_curves(
    docs: list[dict[str, Any]], verdict: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The latest demand message's curves and points as the ladder chart draws them: the
    fitted units and profit curves over the tested range, each arm's point with its
    interval, and the recommended price with its interval and its reading beside ``verdict``
    (:func:`demand_reading_of`); None when no demand message is published (not a ladder)."""
    doc = latest_demand(docs)
    if doc is None:
        return None
    reading = demand_reading_of(doc, verdict)
    keep = (
        "as_of", "n_units", "elasticity", "elasticity_ci_low", "elasticity_ci_high",
        "price_ratio_low", "price_ratio_high", "optimal_price_ratio",
        "optimal_price_ratio_ci_low", "optimal_price_ratio_ci_high", "at_range_edge",
        "identified", "reason", "profit_change_at_optimum", "profit_change_at_optimum_ci_low",
        "profit_change_at_optimum_ci_high", "control_revenue_per_cell", "control_cost_per_cell",
    )  # fmt: skip
    return {k: doc.get(k) for k in keep} | {
        "curve": list(doc.get("curve") or ()),
        "points": list(doc.get("points") or ()),
        "headline": reading.get("headline"),
        "text": reading.get("text"),
    }
