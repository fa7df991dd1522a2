"""The report's scorecard of an experiment of more than two arms: each arm against the
control at the latest look, per metric, by the design's primary estimator (the first the
worker published for it): the effect with its 95% interval and the interval simultaneous over
the k - 1 comparisons, the relative effect with its interval drawn as a bar on a scale the rows
share; then which arms may be the best (Hsu's MCB set, published on the difference in means of
units, revenue and profit). The figures are the estimates topic's; nothing is recomputed."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.report.scorecard import _bar, _finite, _latest
from core.ports import EFFECT_UNITS

#: the metrics whose best arm the worker's MCB names (higher is better)
BEST_METRICS = ("units", "revenue", "profit")

CSS = "table.arms tr.metric th{text-align:left;background:#f8f8f8}\n"

#: how each kind of simultaneous interval is named on the page
SIM_METHODS = {
    "dunnett-t": "Dunnett (multivariate t)",
    "dunnett-normal": "Dunnett (multivariate normal)",
    "bonferroni": "Bonferroni",
}


def arm_order(estimates: pd.DataFrame, first: Sequence[str] = ()) -> list[str]:
    """The arms the estimates compare with the control: those of ``first`` (e.g. a ladder's
    arms by price) in its order, then the others in the order first published."""
    named = list(dict.fromkeys(estimates["arm"].dropna().astype(str)))
    return [a for a in first if a in named] + [a for a in named if a not in first]


def _fig(v: Any, fmt: str) -> str:
    return format(float(v), fmt) if _finite(v) else "-"


def _pair(lo: Any, hi: Any, fmt: str) -> str:
    return f"[{_fig(lo, fmt)}, {_fig(hi, fmt)}]" if _finite(lo, hi) else "-"


def _primary_rows(last: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric, the latest look's rows of its primary estimator (the first published that
    is identified), one per arm."""
    out: dict[str, pd.DataFrame] = {}
    usable = last
    if "identified" in last.columns:
        usable = last[last["identified"].astype(object).ne(False)]
    usable = usable[usable["effect"].map(lambda v: _finite(v))]
    for metric in EFFECT_UNITS:
        mine = usable[usable["metric"] == metric]
        if len(mine):
            out[metric] = mine[mine["estimator"] == mine.iloc[0]["estimator"]]
    return out


def primary_estimators(estimates: pd.DataFrame) -> dict[str, str]:
    """Per metric, its primary estimator at the latest look (:func:`_primary_rows`)."""
    last = _latest(estimates)
    return {m: str(rows.iloc[0]["estimator"]) for m, rows in _primary_rows(last).items()}


def _best_rows(last: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric of :data:`BEST_METRICS`, the rows of the first estimator that carries an
    MCB set."""
    out: dict[str, pd.DataFrame] = {}
    if "best_set" not in last.columns:
        return out
    for metric in BEST_METRICS:
        mine = last[(last["metric"] == metric) & last["best_set"].map(_is_list)]
        if len(mine):
            out[metric] = mine[mine["estimator"] == mine.iloc[0]["estimator"]]
    return out


def _is_list(v: object) -> bool:
    return isinstance(v, list | tuple)


def arm_scorecard_section(
    estimates: pd.DataFrame,
    *,
    control: str | None = None,
    order: Sequence[str] = (),
    truths: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> tuple[str, str]:
    """The per-arm scorecard (HTML) and its one-line reading. ``control``: the control arm's
    name; ``order``: the arms' order on the page (:func:`arm_order`); ``truths``: per
    (metric, arm) the true absolute and relative effect, where a simulation knows them."""
    last = _latest(estimates)
    last = last[last["arm"].notna()].assign(arm=lambda d: d["arm"].astype(str))
    primary = _primary_rows(last)
    if not primary:
        return "", ""
    arms = arm_order(last, order)
    spans = [0.0]
    for rows in primary.values():
        for _, r in rows.iterrows():
            if _finite(r.get("relative_ci_low"), r.get("relative_ci_high")):
                spans += [float(r["relative_ci_low"]), float(r["relative_ci_high"])]
    pad = 0.08 * (max(spans) - min(spans) or 1.0)
    span = (min(spans) - pad, max(spans) + pad)
    versus = html.escape(control or "control")
    body = []
    for metric, rows in primary.items():
        by_arm = {str(r["arm"]): r for _, r in rows.iterrows()}
        first = rows.iloc[0]
        how = SIM_METHODS.get(str(first.get("sim_method")), str(first.get("sim_method") or "-"))
        body.append(
            f'<tr class="metric"><th colspan="9">{html.escape(metric)}: '
            f"{html.escape(str(first['estimator']))}; {html.escape(EFFECT_UNITS[metric])}; "
            f"simultaneous intervals: {html.escape(how)}</th></tr>"
        )
        for arm in arms:
            r = by_arm.get(arm)
            if r is None:
                continue
            rel = ["-", "", "-"]
            if _finite(
                r.get("relative_effect"), r.get("relative_ci_low"), r.get("relative_ci_high")
            ):
                p, lo, hi = (
                    float(r[k]) for k in ("relative_effect", "relative_ci_low", "relative_ci_high")
                )
                rel = [f"{p:+.2%}", _bar(lo, p, hi, span), f"[{lo:+.2%}, {hi:+.2%}]"]
            elif r.get("relative_note"):
                rel[2] = html.escape(str(r["relative_note"]))
            truth = ""
            if truths and (metric, arm) in truths:
                t_abs, t_rel = truths[(metric, arm)]
                truth = f"{t_abs:+.3f} ({t_rel:+.2%})"
            cells = [
                html.escape(arm),
                _fig(r["effect"], "+.3f"),
                _pair(r.get("ci_low"), r.get("ci_high"), "+.3f"),
                _pair(r.get("sim_ci_low"), r.get("sim_ci_high"), "+.3f"),
                *rel,
                _fig(r.get("control_mean"), ".3f"),
                *([truth] if truths else []),  # a truth column only where a truth is known
            ]
            body.append(
                f'<tr data-metric="{html.escape(metric)}" data-arm="{html.escape(arm)}">'
                + "".join(f"<td>{c}</td>" for c in cells)
                + "</tr>"
            )
    head = "".join(
        f"<th>{h}</th>"
        for h in (f"arm (against {versus})", "effect", "95% interval", "simultaneous 95%",
                  "relative", "", "relative 95% interval", "control mean",
                  *(["truth"] if truths else []))
    )  # fmt: skip
    table = f'<table class="scorecard arms"><tr>{head}</tr>{"".join(body)}</table>'
    best, best_words = _best_table(last, arms, control)
    reading = _reading(primary, arms, control, best_words)
    section = (
        "<h2>Scorecard</h2>"
        + '<p class="note evidence">Evidence for the verdict above, not a decision of its '
        "own: the verdict decides.</p>"
        + (f'<p class="reading">{html.escape(reading)}</p>' if reading else "")
        + table
        + f'<p class="note">Each arm against {versus} at the latest look, by the design\'s '
        "primary estimator of each metric (the first it publishes). The 95% interval holds "
        "for one comparison; the simultaneous one holds for all the arms' comparisons at once. "
        "Relative: the effect over the control mean, with Fieller's interval; the bars share "
        "one scale, zero marked. These intervals hold for one look; the verdict rests on the "
        "anytime-valid confidence sequences, which hold at every look.</p>" + best
    )
    return section, reading


def _best_table(
    last: pd.DataFrame, arms: Sequence[str], control: str | None
) -> tuple[str, dict[str, list[str]]]:
    """Which arms may be the best on units, revenue and profit (Hsu's MCB): the set, and each
    arm's MCB interval for its effect minus the best other arm's."""
    best = _best_rows(last)
    if not best:
        return "", {}
    words: dict[str, list[str]] = {}
    rows = []
    for metric, mine in best.items():
        by_arm = {str(r["arm"]): r for _, r in mine.iterrows()}
        first = mine.iloc[0]
        kept = [str(a) for a in first["best_set"]]
        words[metric] = kept
        named = ", ".join(a + (" (control)" if a == control else "") for a in kept)
        cells = [html.escape(metric), html.escape(str(first["estimator"])), html.escape(named)]
        for arm in arms:
            r = by_arm.get(arm)
            if r is None or not _finite(r.get("mcb_low"), r.get("mcb_high")):
                cells.append("-")
                continue
            inside = "may be best" if arm in kept else "not the best"
            cells.append(f"{_pair(r['mcb_low'], r['mcb_high'], '+.3f')} {inside}")
        rows.append(
            f'<tr data-metric="{html.escape(metric)}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    head = "".join(
        f"<th>{html.escape(h)}</th>" for h in ("metric", "estimator", "may be best", *arms)
    )
    return (
        "<h3>Which arm is best (Hsu's multiple comparisons with the best)</h3>"
        f'<table class="best"><tr>{head}</tr>{"".join(rows)}</table>'
        '<p class="note">May be best: the arms, the control included, that MCB cannot rule out '
        "as the best at 95% confidence. Each arm's interval bounds its effect minus the best "
        "other arm's (higher is better); an interval reaching above zero keeps the arm in the "
        'set (docs/analysis-core.md, "k arms").</p>',
        words,
    )


def _reading(
    primary: Mapping[str, pd.DataFrame],
    arms: Sequence[str],
    control: str | None,
    best: Mapping[str, list[str]],
) -> str:
    """One line: each arm's relative effect on profit (else revenue, else units) against the
    control, and the arms that may be best on it."""
    metric = next((m for m in ("profit", "revenue", "units") if m in primary), None)
    if metric is None:
        return ""
    by_arm: dict[str, Any] = {str(r["arm"]): r for _, r in primary[metric].iterrows()}
    parts = []
    for arm in arms:
        r = by_arm.get(arm)
        if r is not None and _finite(
            r.get("relative_effect"), r.get("relative_ci_low"), r.get("relative_ci_high")
        ):
            parts.append(
                f"{arm} {float(r['relative_effect']):+.1%} "
                f"[{float(r['relative_ci_low']):+.1%}, {float(r['relative_ci_high']):+.1%}]"
            )
    if not parts:
        return ""
    line = f"{metric} against {control or 'control'}: " + ", ".join(parts)
    if metric in best:
        line += f"; may be best on {metric}: {', '.join(best[metric])}"
    return line
