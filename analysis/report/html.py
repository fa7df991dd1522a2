"""The report page: one self-contained HTML file, its PNG figures inline as data URIs."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.adaptive_offline import moving_allocation
from analysis.errors import AnalysisError
from analysis.report.adaptive_ratio import CSS as ADAPTIVE_RATIO_CSS
from analysis.report.adaptive_ratio import adaptive_ratio_html, arm_rows
from analysis.report.allocation import CSS as ALLOCATION_CSS
from analysis.report.allocation import allocation_section, latest_adaptive
from analysis.report.arm_scorecard import CSS as ARM_CARD_CSS
from analysis.report.arm_scorecard import arm_order, arm_scorecard_section, primary_estimators
from analysis.report.curves import CSS as CURVES_CSS
from analysis.report.curves import curves_section, latest_demand
from analysis.report.figures import (
    _png,
    assignment_heatmap,
    balance_figure,
    pre_period_figure,
    running_estimates_figure,
)
from analysis.report.scorecard import has_arms, message_metrics, scorecard_section
from analysis.report.stats import (
    COVARIATE_CANDIDATES,
    arm_sample_ratio_check,
    covariate_balance,
    normalise_panel,
    pre_period_fits,
    sample_ratio_check,
    split_verdicts,
    to_panel,
)
from analysis.report.verdict import ARMS_CSS, latest_verdict, verdict_section
from analysis.report.verdict import CSS as VERDICT_CSS
from analysis.sample_ratio import DesignDraws
from core.ports import EFFECT_UNITS


# --------------------------------------------------------------------------- page
def _control_arm(d: pd.DataFrame) -> str | None:
    """The control arm's name in a k-arm panel: the arm of its untreated cells (None when
    the panel names no arm, or more than one such)."""
    if "arm" not in d.columns:
        return None
    names = d.loc[d["treated"] == 0, "arm"].dropna().astype(str).unique()
    return str(names[0]) if len(names) == 1 else None


def _arm_ratio_html(
    d: pd.DataFrame, allocations: Mapping[str, float] | None, control: str | None
) -> str:
    """Every arm's sample ratio against the spec's allocations (a k-arm chi-square), or why
    there is none."""
    srm = (
        None
        if not allocations or control is None
        else arm_sample_ratio_check(d, allocations, control)
    )
    if srm is None:
        return (
            "<p class='note'>No per-arm sample-ratio check: it needs the spec's allocations "
            "(a live report reads them; offline, give --spec).</p>"
        )
    bad = srm.pvalue < 0.001
    rows = arm_rows(srm.observed, srm.expected, srm.n)
    return (
        f"<p class='{'warn' if bad else 'ok'}'>Sample ratio per arm: {srm.n} independent draws "
        f"({srm.level}s) against the spec's allocations; chi-square {srm.statistic:.2f} on "
        f"{len(srm.expected) - 1} degrees of freedom, p = {srm.pvalue:.3g}"
        f"{' - investigate the assignment pipeline' if bad else ''}.</p>"
        "<table class='arm-ratio'><tr><th>arm</th><th>draws</th><th>expected</th>"
        f"<th>share</th><th>expected share</th></tr>{rows}</table>"
    )


@dataclass(frozen=True)
class Report:
    """The report: one self-contained HTML page, its figures inline as PNG data URIs (it can
    be mailed or served alone); ``figures`` keeps each figure's PNG (name -> bytes)."""

    html: str
    figures: dict[str, bytes]

    def write(self, out: Path) -> Path:
        """Write the page to ``out`` when it names an ``.html`` file, else to
        ``out/index.html``; nothing else is written. Returns the page's path."""
        page = out if out.suffix.lower() in (".html", ".htm") else out / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(self.html, encoding="utf-8")
        return page


def _table(df: pd.DataFrame, cols: Sequence[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c, _, f in cols:
            v = r.get(c)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                s = "-"
            elif f:
                s = format(v, f)
            else:
                s = str(v)
            cells.append(f"<td>{html.escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}
.ok{color:#1a7f37}.warn{color:#b42318;font-weight:bold}
table.scorecard td:first-child{text-align:left;font-weight:bold}
p.reading{font-size:15px;background:#f6f8fa;padding:8px 12px;border-left:4px solid #888}
"""


def _running_section(
    estimates: pd.DataFrame, truths: Mapping[str, float], img: Any, arms: Sequence[str] = ()
) -> str:
    """Every metric's running estimates: the latest look of each (metric, estimator) as a
    table, and the figure of every look with its interval and confidence sequence; with
    ``arms``, of each arm against the control."""
    if estimates.empty:
        return "<h2>Running estimates</h2><p class='note'>No estimates published yet.</p>"
    order = {m: i for i, m in enumerate(EFFECT_UNITS)}
    key = ["metric", "estimator", "arm"] if arms else ["metric", "estimator"]
    latest = (
        estimates.sort_values("n_periods", kind="stable")
        .groupby(key, sort=False, dropna=False)
        .tail(1)
        .sort_values("metric", key=lambda m: m.map(order), kind="stable")
    )
    if arms:  # each estimator's arms in the page's order; periods whole (demand rows had none)
        at = {a: i for i, a in enumerate(arms)}
        rank = latest["arm"].map(lambda a: at.get(str(a), len(at)))
        first = latest["estimator"].map(
            {e: i for i, e in enumerate(dict.fromkeys(latest["estimator"]))}
        )
        latest = latest.assign(_m=latest["metric"].map(order), _e=first, _a=rank).sort_values(
            ["_m", "_e", "_a"], kind="stable"
        )
        latest["n_periods"] = latest["n_periods"].astype(int)
    cols = [
        ("metric", "metric", ""),
        ("estimator", "estimator", ""),
        ("n_periods", "periods", ""),
        ("effect", "effect", "+.3f"),
        ("se", "SE", ".3f"),
        ("ci_low", "95% low", "+.3f"),
        ("ci_high", "95% high", "+.3f"),
        ("cs_low", "CS low", "+.3f"),
        ("cs_high", "CS high", "+.3f"),
    ]
    note = (
        '<p class="note">Every metric the experiment publishes, each estimator in its own '
        "panel, effect per product-period (price: the average price paid). Shaded: the 95% "
        "interval at each look (valid for one look). Dashed: the anytime-valid confidence "
        "sequence, valid at every look simultaneously.</p>"
    )
    if arms:
        cols[2:2] = [("arm", "arm", "")]
        cols[-2:-2] = [("sim_ci_low", "sim. low", "+.3f"), ("sim_ci_high", "sim. high", "+.3f")]
        note = (
            '<p class="note">Every metric the experiment publishes, each arm against the '
            "control; the figure draws each metric's primary estimator, an arm a panel, effect "
            "per product-period (price: the average price paid). Shaded: the 95% interval at "
            "each look (valid for one look and one arm). Dashed: the anytime-valid confidence "
            "sequence, valid at every look, each at alpha / (k - 1) so that the arms' hold "
            "together. sim.: the interval simultaneous over the arms at the latest look.</p>"
        )
    return (
        "<h2>Running estimates</h2>"
        + _table(latest, cols)
        + note
        + img("running_estimates.png", "running estimates of every metric")
    )


def build_report(
    df: pd.DataFrame,
    estimates: pd.DataFrame | None,
    *,
    title: str,
    design: str | None = None,
    truth: float | None = None,
    truths: Mapping[str, tuple[float, float]] | None = None,
    outcome: str = "units",
    source_note: str = "",
    verdict_note: str | None = None,
    seed: int = 0,
    arm_truths: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    true_optimum: float | None = None,
    allocations: Mapping[str, float] | None = None,
    adaptive_draws: DesignDraws | None = None,
) -> Report:
    """Figures and the self-contained HTML page for one experiment.

    ``estimates``: the estimates topic's messages of the experiment, verdicts included
    (estimator, metric, n_periods, effect, se, ci_low, ci_high, cs_low, cs_high); None or
    empty gives a page without running estimates. The page opens with the latest verdict
    (:mod:`analysis.report.verdict`; none: ``verdict_note`` says why), then the decision
    scorecard (:func:`scorecard_section`; ``truths``: per metric the true absolute and
    relative effect, where a simulation knows them), then every metric's running estimates
    (``truth``: units' true effect when ``truths`` does not give it). ``outcome`` is the
    metric of the pre-period fit and the balance checks.

    An experiment of more than two arms (its estimates name their ``arm``) gets the per-arm
    scorecard (:mod:`analysis.report.arm_scorecard`; ``arm_truths``: per (metric, arm) the
    true absolute and relative effect), its running estimates an arm a panel and its heatmap
    an arm a colour; a price ladder's demand message (``kind: demand``) adds the demand and
    profit curves with the recommended price (:mod:`analysis.report.curves`;
    ``true_optimum``: the true profit-maximising ratio, where a simulation knows it); an
    adaptive ladder's look (``kind: adaptive``) adds its arms and the allocation over time
    (:mod:`analysis.report.allocation`).
    ``allocations``: each arm's share in the spec (by name); with more than two arms it gives
    the sample-ratio check of every arm (:func:`arm_sample_ratio_check`).
    An adaptive ladder (``adaptive_draws``, what its spec makes a draw; else a look of ``kind:
    adaptive`` or a panel whose ``probability_<arm>`` columns move) is checked against the
    probabilities recorded for each period instead, never the allocations
    (:mod:`analysis.report.adaptive_ratio`).
    """
    d = normalise_panel(df, outcome)
    figs: dict[str, bytes] = {}
    sections: list[str] = []

    def img(name: str, alt: str) -> str:
        data_uri = "data:image/png;base64," + base64.b64encode(figs[name]).decode()
        return f'<img src="{data_uri}" alt="{html.escape(alt)}" data-figure="{name}">'

    n_prod, n_per = d["product"].nunique(), d["period"].nunique()
    n_black = int(d["blackout"].sum())
    head = (
        f"<p>{n_prod} products x {n_per} periods; design <b>{html.escape(design or 'unknown')}</b>; "
        f"{int(d['treated'].sum())} treated cells, {n_black} blackout cells. {html.escape(source_note)}</p>"
    )

    demand = latest_demand(estimates)
    adaptive = latest_adaptive(estimates)
    estimates, verdicts = split_verdicts(estimates)
    k_arm = has_arms(estimates)
    control, arms = None, []
    if k_arm:  # the arms in price order on a ladder, else as published
        control = _control_arm(d)
        priced = [str(p["arm"]) for p in (demand or {}).get("points") or ()]
        arms = arm_order(estimates, priced)
        names = ", ".join([f"{control} (control)"] * (control is not None) + arms)
        head = head.replace("</p>", f" Arms: {html.escape(names)}.</p>", 1)
    sections.append(verdict_section(verdicts, verdict_note, arms))
    segments = None
    if len(estimates):
        if k_arm:
            card, _ = arm_scorecard_section(
                estimates, control=control, order=arms, truths=arm_truths
            )
        else:
            card, _ = scorecard_section(estimates, truths)
        if card:
            sections.append(card)
        estimates = estimates.assign(metric=message_metrics(estimates))
        estimates = estimates[estimates["metric"].isin(list(EFFECT_UNITS))]
        if "identified" in estimates.columns:  # said not identified (spillover): no number
            estimates = estimates[estimates["identified"].astype(object).ne(False)]
        if "segment" in estimates.columns:
            # segment estimates (spec-named segments) get their own table, not the running lines
            tagged = estimates["segment"].fillna("").astype(str) != ""
            segments, estimates = estimates[tagged], estimates[~tagged]
    if adaptive is not None:  # an adaptive ladder: its arms and the allocation over time
        sections.append(allocation_section(adaptive))
    if demand is not None:
        sections.append(curves_section(demand, true_optimum, latest_verdict(verdicts)))
    elif (
        adaptive is None
        and k_arm
        and "price_ratio" in d.columns
        and d["price_ratio"].nunique() >= 3
    ):
        sections.append(
            "<h2>Demand and profit curves</h2><p class='note'>No demand curve among the "
            "estimates: the analysis worker publishes one at each look of a price ladder "
            "whose spec gives every arm a price_ratio (offline: give --spec).</p>"
        )
    true_effects = {m: t[0] for m, t in (truths or {}).items()}
    if truth is not None:
        true_effects.setdefault("units", truth)
    if len(estimates):
        if k_arm:
            primary = primary_estimators(estimates)
            drawn = estimates[estimates["estimator"] == estimates["metric"].map(primary)]
            arm_true = {k: t[0] for k, t in (arm_truths or {}).items()}
            fig = running_estimates_figure(drawn, arms=arms, arm_truths=arm_true)
        else:
            fig = running_estimates_figure(estimates, true_effects)
        figs["running_estimates.png"] = _png(fig)
    sections.append(_running_section(estimates, true_effects, img, arms=arms))

    figs["assignment.png"] = _png(assignment_heatmap(d, arms=arms))
    sections.append("<h2>Assignment</h2>" + img("assignment.png", "assignment heatmap"))

    if segments is not None and len(segments):
        # the latest look's rows only: its p (BH) was adjusted across those very segments
        at = "as_of" if "as_of" in segments.columns else "n_periods"
        last = segments[segments[at] == segments[at].max()].sort_values(
            ["segment", "estimator"], kind="stable"
        )
        sections.append(
            "<h2>Segments (latest look)</h2>"
            + _table(
                last,
                [
                    ("segment", "segment", ""),
                    ("estimator", "estimator", ""),
                    ("n_units", "products", ""),
                    ("effect", "effect", "+.3f"),
                    ("se", "SE", ".3f"),
                    ("ci_low", "95% low", "+.3f"),
                    ("ci_high", "95% high", "+.3f"),
                    ("pvalue", "p", ".3g"),
                    ("pvalue_bh", "p (BH)", ".3g"),
                ],
            )
            + '<p class="note">p (BH): Benjamini-Hochberg adjusted across the segments '
            "estimated at that look.</p>"
        )

    try:
        fits = pre_period_fits(to_panel(d, outcome), seed=seed)
    except AnalysisError:
        fits = []
    if fits:
        figs["pre_period_fit.png"] = _png(pre_period_figure(fits))
        sections.append(
            "<h2>Pre-period fit (synthetic-control estimators)</h2>"
            + _table(
                pd.DataFrame(
                    [
                        {"estimator": f.estimator, "rmse": f.pre_rmse, "effect": f.effect}
                        for f in fits
                    ]
                ),
                [
                    ("estimator", "estimator", ""),
                    ("rmse", "pre-period RMSE", ".3f"),
                    ("effect", "effect", "+.3f"),
                ],
            )
            + img("pre_period_fit.png", "pre-period fit")
        )
    else:
        sections.append(
            "<h2>Pre-period fit</h2><p class='note'>No pre-period fit: synthetic-control "
            "estimators need a common pre-period and no blackout cells (a block design without "
            "washout), and this panel is not one.</p>"
        )

    srm = sample_ratio_check(d)
    bal = covariate_balance(d, outcome)
    figs["balance.png"] = _png(balance_figure(d, bal))
    adaptive_ladder = (
        adaptive_draws is not None or adaptive is not None or moving_allocation(d, "period")
    )
    if adaptive_ladder:  # against the recorded probabilities, as the Health section
        srm_html = adaptive_ratio_html(d, design, adaptive_draws)
    elif srm is None:
        srm_html = "<p class='note'>No randomised cells yet.</p>"
    else:
        cls = "warn" if srm.pvalue < 0.001 else "ok"
        srm_html = (
            f"<p class='{cls}'>Sample ratio: {srm.treated} of {srm.n} independent draws "
            f"({srm.level}s) treated, share {srm.share:.3f} against design probability "
            f"{srm.expected_share:.3f}; binomial test p = {srm.pvalue:.3g}"
            f"{' - investigate the assignment pipeline' if srm.pvalue < 0.001 else ''}.</p>"
        )
        if k_arm:
            srm_html += _arm_ratio_html(d, allocations, control) + (
                "<p class='note'>Above, treated is any arm but the control "
                f"{html.escape(control or '')}, against the design's probability of not being "
                "in control; the balance compares the same two groups.</p>"
            )
    if bal.empty:
        # the covariates are product characteristics (a simulator panel's; the live report
        # adds the spec's unit costs) and the pre-period outcome: a panel with neither has
        # nothing to compare, and an empty table would look like a broken one
        bal_html = (
            "<p class='note'>No covariate balance: the panel carries no product "
            f"characteristics ({', '.join(COVARIATE_CANDIDATES)}) and the design has no "
            "pre-period.</p>"
        )
    else:
        bal_html = _table(
            bal,
            [
                ("covariate", "covariate", ""),
                ("mean_treated", "treated", ".3f"),
                ("mean_control", "control", ".3f"),
                ("smd", "SMD", "+.3f"),
            ],
        )
    sections.append(
        "<h2>Balance and sample ratio</h2>" + srm_html + bal_html + img("balance.png", "balance")
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}{VERDICT_CSS}{ADAPTIVE_RATIO_CSS if adaptive_ladder else ""}{ARMS_CSS + ARM_CARD_CSS + CURVES_CSS + ALLOCATION_CSS if k_arm else ""}</style></head>
<body><h1>{html.escape(title)}</h1>{sections[0]}{head}
{"".join(sections[1:])}
<p class="note">pricelab report: one self-contained page, its figures inline.</p>
</body></html>
"""
    return Report(page, figs)
