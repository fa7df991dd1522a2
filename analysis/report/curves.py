"""The report's price-ladder section: the demand curve and the profit curve with the
recommended price, drawn as inline SVG from the analysis worker's demand message
(``kind: demand``, :meth:`analysis.demand.DemandResult.to_dict`).

Nothing is estimated here: every point, interval, fitted curve and the recommendation are the
message's. The demand curve's band is the elasticity's interval drawn through
:func:`analysis.demand.units_ratio_band`. The figures are SVG, not PNG like the others, so that
a reader (and a test) finds each arm's point, its label and the recommended price as elements
of the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.demand import units_ratio_band
from analysis.evidence import demand_reading
from analysis.report.verdict import _num, latest_verdict

CSS = """
.curves{display:flex;flex-wrap:wrap;gap:16px}.curves figure{margin:0}
.curves figcaption{font-size:13px;color:#555;max-width:560px}
svg.curve{background:#fff;border:1px solid #eee;font-family:inherit}
svg.curve text{font-size:11px;fill:#333}svg.curve .tick{fill:#555;font-size:10px}
svg.curve .axis-label{font-size:11px;fill:#222}
p.recommendation{font-size:15px;background:#f6f8fa;padding:8px 12px;border-left:4px solid #b35900}
"""

#: the figures' colours: the fit and its band, the points, the recommendation, the truth
FIT, POINT, RECOMMENDED, TRUTH, EDGE = "#1f77b4", "#222222", "#b35900", "#2ca02c", "#b42318"


def latest_demand(messages: pd.DataFrame | None) -> dict[str, Any] | None:
    """The demand curve of the latest look among the estimates topic's messages (``kind:
    demand``; the look rule every reader follows, as for verdicts), its missing fields
    dropped; None when none was published."""
    if messages is None or messages.empty or "kind" not in messages.columns:
        return None
    return latest_verdict(messages[messages["kind"] == "demand"])


@dataclass(frozen=True)
class _Frame:
    """A plot's data ranges and its box in pixels."""

    x: tuple[float, float]
    y: tuple[float, float]
    width: int = 540
    height: int = 340
    left: int = 70
    right: int = 18
    top: int = 40
    bottom: int = 46

    def px(self, v: float) -> float:
        a, b = self.x
        return self.left + (self.width - self.left - self.right) * (v - a) / (b - a)

    def py(self, v: float) -> float:
        a, b = self.y
        return (
            self.height - self.bottom - (self.height - self.top - self.bottom) * (v - a) / (b - a)
        )

    def path(self, xs: Iterable[float], ys: Iterable[float]) -> str:
        pts = [f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys, strict=True)]
        return "M" + " L".join(pts)

    def axes(self, xlabel: str, ylabel: str) -> str:
        """The plot's frame, its ticks and tick labels, and the axis labels."""
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.top, self.height - self.bottom
        out = [f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
               'fill="none" stroke="#999"/>']  # fmt: skip
        for v, label in _ticks(*self.x):
            x = self.px(v)
            out.append(
                f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y1 + 4}" stroke="#999"/>'
                f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#eee"/>'
                f'<text class="tick" x="{x:.1f}" y="{y1 + 16}" text-anchor="middle">{label}</text>'
            )
        for v, label in _ticks(*self.y):
            y = self.py(v)
            out.append(
                f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#999"/>'
                f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text class="tick" x="{x0 - 7}" y="{y + 3.5:.1f}" text-anchor="end">{label}</text>'
            )
        mid_y = (y0 + y1) / 2
        out.append(
            f'<text class="axis-label" x="{(x0 + x1) / 2:.1f}" y="{self.height - 8}" '
            f'text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text class="axis-label" transform="translate(14,{mid_y:.1f}) rotate(-90)" '
            f'text-anchor="middle">{html.escape(ylabel)}</text>'
        )
        return "".join(out)


def _ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Round tick values inside ``[lo, hi]`` and their labels, to the ticks' own precision."""
    locator = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    values = [float(v) for v in locator.tick_values(lo, hi) if lo <= v <= hi]
    step = values[1] - values[0] if len(values) > 1 else abs(hi - lo) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [(v, f"{v:,.{decimals}f}") for v in values]


def _padded(values: Iterable[float | None], share: float = 0.08) -> tuple[float, float]:
    vs = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = min(vs), max(vs)
    pad = share * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - pad, hi + pad


def _points(demand: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(p) for p in demand.get("points") or () if _num(p.get("price_ratio")) is not None]


def _control(points: Sequence[Mapping[str, Any]]) -> str | None:
    """The control's point: its price ratio is 1, and its units ratio 1 by definition."""
    return next((str(p["arm"]) for p in points if p["price_ratio"] == 1.0), None)


def _point(frame: _Frame, arm: str, x: float, y: float, lo: float | None, hi: float | None,
           control: bool, tip: str) -> str:  # fmt: skip
    """An arm's point: its interval as a vertical bar, the point (hollow for the control)
    and its name above it."""
    px, py = frame.px(x), frame.py(y)
    parts = [f'<g class="point" data-arm="{html.escape(arm)}" data-price-ratio="{x:g}">',
             f"<title>{html.escape(tip)}</title>"]  # fmt: skip
    if lo is not None and hi is not None and hi > lo:
        a, b = frame.py(lo), frame.py(hi)
        parts.append(
            f'<line class="interval" x1="{px:.1f}" y1="{a:.1f}" x2="{px:.1f}" y2="{b:.1f}" '
            f'stroke="{POINT}" stroke-width="1.5"/>'
            f'<line x1="{px - 4:.1f}" y1="{a:.1f}" x2="{px + 4:.1f}" y2="{a:.1f}" stroke="{POINT}"/>'
            f'<line x1="{px - 4:.1f}" y1="{b:.1f}" x2="{px + 4:.1f}" y2="{b:.1f}" stroke="{POINT}"/>'
        )
        top = min(a, b, py)
    else:
        top = py
    fill = "#fff" if control else POINT
    parts.append(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="{fill}" stroke="{POINT}" '
        'stroke-width="1.5"/>'
        f'<text class="point-label" x="{px:.1f}" y="{max(top - 7, frame.top + 11):.1f}" '
        f'text-anchor="middle" font-weight="bold">{html.escape(arm)}</text></g>'
    )
    return "".join(parts)


def _values(points: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    """Each arm's ``key`` and its interval's ends (a figure's range covers them)."""
    return [_num(p.get(k)) for p in points for k in (key, f"{key}_ci_low", f"{key}_ci_high")]


def _arm_points(
    frame: _Frame, points: Sequence[Mapping[str, Any]], key: str, what: str, fmt: str
) -> list[str]:
    """Every arm's point of ``key`` with its interval, labelled, the control hollow."""
    control = _control(points)
    out = []
    for p in points:
        arm, x = str(p["arm"]), float(p["price_ratio"])
        y = _num(p.get(key))
        if y is None:
            continue
        lo, hi = _num(p.get(f"{key}_ci_low")), _num(p.get(f"{key}_ci_high"))
        tip = f"{arm}: price x{x:.3f}, {what} {y:{fmt}}{_interval(lo, hi, fmt)}"
        out.append(_point(frame, arm, x, y, lo, hi, arm == control, tip))
    return out


def _svg(kind: str, frame: _Frame, label: str, body: str) -> str:
    return (
        f'<svg class="curve" id="{kind}-curve" width="{frame.width}" height="{frame.height}" '
        f'viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{html.escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(label)}</title>{body}</svg>'
    )


def _interval(lo: object, hi: object, fmt: str) -> str:
    a, b = _num(lo), _num(hi)
    return "" if a is None or b is None else f" [{a:{fmt}}, {b:{fmt}}]"


def demand_svg(demand: Mapping[str, Any]) -> str:
    """The demand curve: each arm's units relative to the control's at its listed price, with
    its interval; the fitted elasticity's curve ``r^eps`` and its band (the elasticity's
    interval)."""
    points = _points(demand)
    curve = [c for c in demand.get("curve") or () if _num(c.get("units_ratio")) is not None]
    xs = np.array([c["price_ratio"] for c in curve], float)
    fit = np.array([c["units_ratio"] for c in curve], float)
    lo_e, hi_e = _num(demand.get("elasticity_ci_low")), _num(demand.get("elasticity_ci_high"))
    band = (
        units_ratio_band(xs, lo_e, hi_e)
        if len(xs) and lo_e is not None and hi_e is not None
        else None
    )
    x_all = [p["price_ratio"] for p in points] + list(xs)
    y_all = (
        _values(points, "units_ratio")
        + list(fit)
        + ([] if band is None else list(band[0]) + list(band[1]))
    )
    frame = _Frame(_padded(x_all, 0.06), _padded([*y_all, 1.0]))
    body = [frame.axes("listed price relative to the control's", "units relative to the control's")]
    if band is not None:
        outline = frame.path(xs, band[1]) + " L" + frame.path(xs[::-1], band[0][::-1])[1:] + " Z"
        body.append(
            f'<path class="band" d="{outline}" fill="{FIT}" fill-opacity="0.18" stroke="none"/>'
        )
    if len(xs):
        body.append(
            f'<path class="fit" d="{frame.path(xs, fit)}" fill="none" stroke="{FIT}" stroke-width="2"/>'
        )
    body += _arm_points(frame, points, "units_ratio", "units ratio", ".3f")
    eps = _num(demand.get("elasticity"))
    label = "Demand curve" + ("" if eps is None else f": elasticity {eps:+.2f}")
    return _svg("demand", frame, label, "".join(body))


def profit_svg(demand: Mapping[str, Any], true_optimum: float | None = None) -> str | None:
    """The profit curve: expected profit per product-period at each listed ratio (fitted),
    each arm's profit per product-period with its interval, the recommended price with its
    interval, flagged when it is an end of the tested range; ``true_optimum`` (a simulation
    knows it) dashed. None without a profit curve (no unit costs)."""
    curve = [c for c in demand.get("curve") or () if _num(c.get("profit")) is not None]
    if not curve:
        return None
    points = _points(demand)
    xs = np.array([c["price_ratio"] for c in curve], float)
    ys = np.array([c["profit"] for c in curve], float)
    best = _num(demand.get("optimal_price_ratio"))
    lo_r, hi_r = (
        _num(demand.get("optimal_price_ratio_ci_low")),
        _num(demand.get("optimal_price_ratio_ci_high")),
    )
    truth = _num(true_optimum)
    y_all = list(ys) + _values(points, "profit_per_cell")
    x_all = [*xs, *(p["price_ratio"] for p in points), best, lo_r, hi_r, truth]
    frame = _Frame(_padded(x_all, 0.06), _padded(y_all, 0.12))
    body = [frame.axes("listed price relative to the control's", "profit per product-period")]
    y0, y1 = frame.top, frame.height - frame.bottom
    if best is not None and lo_r is not None and hi_r is not None:
        a, b = frame.px(lo_r), frame.px(hi_r)
        body.append(
            f'<rect class="recommended-interval" x="{a:.1f}" y="{y0}" '
            f'width="{max(b - a, 2):.1f}" height="{y1 - y0}" fill="{RECOMMENDED}" '
            'fill-opacity="0.14"/>'
        )
    body.append(
        f'<path class="fit" d="{frame.path(xs, ys)}" fill="none" stroke="{FIT}" stroke-width="2"/>'
    )
    if truth is not None:
        x = frame.px(truth)
        body.append(
            f'<g class="true-optimum" data-price-ratio="{truth:g}"><line x1="{x:.1f}" y1="{y0}" '
            f'x2="{x:.1f}" y2="{y1}" stroke="{TRUTH}" stroke-width="1.5" stroke-dasharray="2 3"/>'
            f'<text x="{x + 4:.1f}" y="{y1 - 6}" fill="{TRUTH}">true optimum x{truth:.3f}</text></g>'
        )
    body += _arm_points(frame, points, "profit_per_cell", "profit per product-period", ",.2f")
    if best is not None:
        x = frame.px(best)
        right = x > (frame.left + frame.width - frame.right) / 2 + 60
        anchor, dx = ("end", -5) if right else ("start", 5)
        # the fitted curve's peak: evidence for the verdict, not a price to set by itself
        text = f"curve peaks at x{best:.3f}{_interval(lo_r, hi_r, '.3f')}"
        # its label in the margin above the plot, clear of the arms' labels
        body.append(
            f'<g class="recommended" data-price-ratio="{best:g}"><line x1="{x:.1f}" y1="{y0 - 22}" '
            f'x2="{x:.1f}" y2="{y1}" stroke="{RECOMMENDED}" stroke-width="2"/>'
            f'<text x="{x + dx:.1f}" y="{y0 - 24}" text-anchor="{anchor}" fill="{RECOMMENDED}" '
            f'font-weight="bold">{html.escape(text)}</text></g>'
        )
        if demand.get("at_range_edge"):
            body.append(
                f'<text class="edge-flag" x="{x + dx:.1f}" y="{y0 - 9}" text-anchor="{anchor}" '
                f'fill="{EDGE}" font-weight="bold">at the edge of the tested range</text>'
            )
    label = "Profit curve" + ("" if best is None else f": fitted peak x{best:.3f}")
    return _svg("profit", frame, label, "".join(body))


def recommendation(demand: Mapping[str, Any], verdict: Mapping[str, Any] | None = None) -> str:
    """Where the fitted profit curve peaks, as one paragraph labelled as evidence beside
    ``verdict`` (analysis.evidence: the verdict decides): the ratio with its interval and how
    it was made (or why a look has none), the edge flag, the expected profit change against
    the control at that ratio, and how it reads beside the verdict."""
    best = _num(demand.get("optimal_price_ratio"))
    if best is None:
        return (
            '<p class="recommendation">No recommended price: the demand message gives no '
            "profit curve (the experiment's spec gives no unit costs).</p>"
        )
    reading = demand_reading(demand, verdict)
    method = str(demand.get("interval_method") or "")
    how = "product Poisson bootstrap" if method.startswith("product_poisson_bootstrap") else method
    shown = demand.get("identified") is not False
    ci = (
        f"{_interval(demand.get('optimal_price_ratio_ci_low'), demand.get('optimal_price_ratio_ci_high'), '.3f')}"
        f" ({1 - (_num(demand.get('alpha')) or 0.05):.0%} interval, {html.escape(how)})"
        if shown
        else f" (no interval: {html.escape(str(demand.get('reason') or ''))})"
    )
    head = reading.headline[:1].upper() + reading.headline[1:]
    parts = [
        f'<span class="evidence">{html.escape(head)}:</span> the fitted profit curve peaks at '
        f"<b>x{best:.3f}</b> of the control's{ci}"
    ]
    change = _num(demand.get("profit_change_at_optimum"))
    if change is not None:
        rel = _num(demand.get("relative_profit_change_at_optimum"))
        pci = (
            _interval(demand.get("profit_change_at_optimum_ci_low"),
                      demand.get("profit_change_at_optimum_ci_high"), "+,.2f")
            if shown else ""
        )  # fmt: skip
        parts.append(
            f"expected profit change there against the control {change:+,.2f} per "
            f"product-period{pci}" + ("" if rel is None else f" ({rel:+.1%})")
        )
    line = "; ".join(parts) + "."
    if demand.get("at_range_edge"):
        line += (
            ' <span class="warn edge-flag">At the edge of the tested range: the best price may '
            "lie outside what was tested.</span>"
        )
    line += f' <span class="reading">{html.escape(reading.text)}</span>'
    return f'<p class="recommendation" data-decided="{str(reading.decided).lower()}">{line}</p>'


def _points_table(demand: Mapping[str, Any]) -> str:
    points = _points(demand)
    control = _control(points)

    def cell(p: Mapping[str, Any], key: str, fmt: str) -> str:
        v = _num(p.get(key))
        return (
            "-"
            if v is None
            else f"{v:{fmt}}{_interval(p.get(key + '_ci_low'), p.get(key + '_ci_high'), fmt)}"
        )

    rows = []
    for p in points:
        name = str(p["arm"]) + (" (control)" if p["arm"] == control else "")
        cells = [name, f"x{p['price_ratio']:.3f}", cell(p, "price_paid_ratio", ".3f"),
                 cell(p, "units_ratio", ".3f"), cell(p, "revenue_per_cell", ",.2f"),
                 cell(p, "profit_per_cell", ",.2f"), str(p.get("n_cells", "-"))]  # fmt: skip
        rows.append(
            f'<tr data-arm="{html.escape(str(p["arm"]))}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("arm", "listed price", "price paid", "units", "revenue per product-period",
                  "profit per product-period", "cells")
    )  # fmt: skip
    return f'<table class="ladder-points"><tr>{head}</tr>{"".join(rows)}</table>'


def curves_section(
    demand: Mapping[str, Any],
    true_optimum: float | None = None,
    verdict: Mapping[str, Any] | None = None,
) -> str:
    """The ladder's section: where the fitted profit curve peaks, read beside ``verdict``
    (the latest; it decides), the demand and profit curves side by side, each arm's figures
    and the fit's notes."""
    eps = _num(demand.get("elasticity"))
    el = (
        f"elasticity {eps:+.3f}"
        f"{_interval(demand.get('elasticity_ci_low'), demand.get('elasticity_ci_high'), '+.3f')}"
        if eps is not None
        else "no elasticity (not identified)"
    )
    curv = _num(demand.get("curvature_pvalue"))
    curvature = (
        "" if curv is None else f"; one elasticity for every price: curvature test p = {curv:.3g}"
    )
    demand_fig = (
        f"<figure>{demand_svg(demand)}<figcaption>Demand: each arm's units relative to the "
        f"control's, with its 95% interval (product bootstrap); the line is the within-product "
        f"fit, {html.escape(el)}, the band its interval{html.escape(curvature)}.</figcaption></figure>"
    )
    profit = profit_svg(demand, true_optimum)
    profit_fig = (
        f"<figure>{profit}<figcaption>Profit per product-period: the fitted curve (the "
        "products balanced across the arms), each arm's own pooled over its cells with its "
        "95% interval (its own mix of products: the interval carries their spread), and the "
        "fitted curve's peak with its interval (shaded): evidence for the verdict, which "
        "decides"
        + ("; dotted: the true optimum (simulation)" if _num(true_optimum) is not None else "")
        + ".</figcaption></figure>"
        if profit is not None
        else "<p class='note'>No profit curve: the experiment's spec gives no unit costs.</p>"
    )
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in demand.get("notes") or ())
    at = pd.to_datetime(demand.get("as_of"), utc=True, errors="coerce", format="ISO8601")
    when = "" if pd.isna(at) else f"as of {at:%Y-%m-%d %H:%M} UTC, "
    look = f" ({when}{demand.get('n_units', '-')} products)"
    return (
        f'<h2 id="ladder">Demand and profit curves{look}</h2>'
        + recommendation(demand, verdict)
        + f'<div class="curves">{demand_fig}{profit_fig}</div>'
        + _points_table(demand)
        + (f'<ul class="note">{notes}</ul>' if notes else "")
        + '<p class="note">Each arm against the control, with 95% intervals in brackets (units: '
        "its ratio to the control's; price paid: the average price paid over the control's). "
        "The curves are the analysis worker's demand message of the latest "
        'look (docs/pricing-methods.md, "Price ladders"): prices are listed ratios to the '
        "control's; the curve's peak maximises the fitted profit within the tested range. The "
        "verdict above is the decision: it ships only a tested arm.</p>"
    )
