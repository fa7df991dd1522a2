"""The report's decision scorecard: per metric the primary estimate at the latest look,
absolute and relative with the 95% intervals, the relative interval drawn as an inline SVG bar
on a scale the rows share; the elasticity; the truths where a simulation knows them."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

import pandas as pd

from analysis.report.stats import split_verdicts
from core.ports import EFFECT_UNITS, metric_name


def _finite(*xs: object) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in xs)


def _bar(lo: float, point: float, hi: float, span: tuple[float, float], width: int = 260) -> str:
    """An inline SVG: the relative interval as a bar on a scale shared by every row, the point
    estimate as a dot, zero as a vertical line; green wholly above zero, red wholly below."""
    a, b = span

    def x(v: float) -> float:
        return 6 + (width - 12) * (v - a) / (b - a)

    colour = "#1a7f37" if lo > 0 else "#b42318" if hi < 0 else "#6e7781"
    return (
        f'<svg width="{width}" height="18" role="img" aria-label="{lo:+.1%} to {hi:+.1%}">'
        f'<line x1="{x(0):.1f}" y1="1" x2="{x(0):.1f}" y2="17" stroke="#999"/>'
        f'<rect x="{x(lo):.1f}" y="5" width="{max(x(hi) - x(lo), 1):.1f}" height="8" '
        f'fill="{colour}" opacity="0.55"/>'
        f'<circle cx="{x(point):.1f}" cy="9" r="3.5" fill="{colour}"/></svg>'
    )


def message_metrics(estimates: pd.DataFrame) -> pd.Series:
    """Each message's metric: v1 workers published units as ``"outcome"`` (or none)."""
    if "metric" not in estimates.columns:
        return pd.Series("units", index=estimates.index)
    return estimates["metric"].map(lambda m: metric_name(None if pd.isna(m) else m))


def has_arms(estimates: pd.DataFrame) -> bool:
    """Whether the estimates are a k-arm experiment's: each names the arm it compares with
    the control (a two-arm experiment's name none)."""
    return "arm" in estimates.columns and bool(estimates["arm"].notna().any())


def _latest(estimates: pd.DataFrame) -> pd.DataFrame:
    """The whole experiment's latest look of every (metric, estimator), and of every arm
    when the estimates name arms, in publishing order."""
    e, _ = split_verdicts(estimates)  # a verdict names a metric and estimator: not an estimate
    if "segment" in e.columns:
        e = e[e["segment"].fillna("").astype(str) == ""]
    e = e.assign(metric=message_metrics(e))
    at = "as_of" if "as_of" in e.columns else "n_periods"
    last = e[e[at] == e.groupby("metric")[at].transform("max")]
    # a look can be published more than once (a worker cycle again at the same as_of, one cut
    # short by a shutdown, a reader that stopped mid-cycle): each estimator's latest values,
    # in the order the estimators were first published at that look, so that the first per
    # metric stays the design's primary
    key = ["metric", "estimator"] + (["arm"] if has_arms(last) else [])
    first = last.drop_duplicates(key, keep="first")[key]
    return first.merge(last.drop_duplicates(key, keep="last"), on=key, how="left")


def scorecard_section(
    estimates: pd.DataFrame, truths: Mapping[str, tuple[float, float]] | None = None
) -> tuple[str, str]:
    """The decision scorecard (HTML) and its one-line reading: per metric the primary
    estimate (the design's first estimator that measures it) at the latest look, absolute and
    relative with the 95% intervals, the relative interval drawn as a bar; the elasticity;
    the truths where a simulation knows them."""
    last = _latest(estimates)
    rows, reading, spans = [], [], []
    picked = []
    for metric, unit in EFFECT_UNITS.items():
        mine = last[last["metric"] == metric]
        if mine.empty:
            continue
        r = mine.iloc[0]
        picked.append((metric, unit, r))
        if _finite(r.get("relative_ci_low"), r.get("relative_ci_high")):
            spans += [float(r["relative_ci_low"]), float(r["relative_ci_high"])]
    lo_all, hi_all = min([0.0, *spans]), max([0.0, *spans])
    pad = 0.08 * (hi_all - lo_all or 1.0)
    span = (lo_all - pad, hi_all + pad)
    for metric, unit, r in picked:
        rel_cells = ["-", "", "-"]
        if _finite(r.get("relative_effect"), r.get("relative_ci_low"), r.get("relative_ci_high")):
            rel, rlo, rhi = (
                float(r[k]) for k in ("relative_effect", "relative_ci_low", "relative_ci_high")
            )
            rel_cells = [f"{rel:+.2%}", _bar(rlo, rel, rhi, span), f"[{rlo:+.2%}, {rhi:+.2%}]"]
            reading.append(f"{metric} {rel:+.1%} [{rlo:+.1%}, {rhi:+.1%}]")
        elif r.get("relative_note"):
            rel_cells[2] = html.escape(str(r["relative_note"]))
        truth = ""
        if truths and metric in truths:
            t_abs, t_rel = truths[metric]
            truth = f"{t_abs:+.3f} ({t_rel:+.2%})"
        cells = [
            html.escape(metric),
            f"{float(r['effect']):+.3f}",
            f"[{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}]",
            *rel_cells,
            "-" if not _finite(r.get("control_mean")) else f"{float(r['control_mean']):.3f}",
            html.escape(f"{r['estimator']}; {unit}"),
            *([truth] if truths else []),  # a truth column only where a truth is known
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    el = last[last["metric"] == "elasticity"]
    if not el.empty:
        r = el.iloc[0]
        truth = f"{truths['elasticity'][0]:+.3f}" if truths and "elasticity" in truths else ""
        truth_cell = f"<td>{truth}</td>" if truths else ""
        if r.get("identified", True) is not False and _finite(r.get("effect")):
            rows.append(
                f"<tr><td>elasticity</td><td>{float(r['effect']):+.3f}</td>"
                f"<td>[{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}]</td>"
                "<td colspan=3>log change in units per log change in the price paid</td><td>-</td>"
                f"<td>{html.escape(str(r['estimator']))}; Fieller interval</td>{truth_cell}</tr>"
            )
            reading.append(f"elasticity {float(r['effect']):+.2f}")
        else:
            rows.append(
                f"<tr><td>elasticity</td><td colspan=7>{html.escape(str(r.get('note')))}</td>"
                f"{truth_cell}</tr>"
            )
    if not rows:
        return "", ""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("metric", "effect", "95% interval", "relative", "", "relative 95% interval",
                  "control mean", "estimator; effect per", *(["truth"] if truths else []))
    )  # fmt: skip
    line = "; ".join(reading)
    table = f'<table class="scorecard"><tr>{head}</tr>{"".join(rows)}</table>'
    return (
        "<h2>Scorecard</h2>"
        + (f'<p class="reading">{html.escape(line)}</p>' if line else "")
        + table
        + '<p class="note">Primary estimate of each metric at the latest look (the design\'s '
        "first estimator that measures it). Relative: the effect over the control mean, with "
        "Fieller's interval, which carries the control mean's own uncertainty; the bars share "
        "one scale, zero marked. These 95% intervals hold for one look; the verdict rests on "
        "the wider anytime-valid confidence sequence, which holds at every look.</p>",
        line,
    )
