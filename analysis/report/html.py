"""The report page: one HTML file with its PNG figures next to it (or embedded)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError
from analysis.report.figures import (
    _png,
    assignment_heatmap,
    balance_figure,
    pre_period_figure,
    running_estimates_figure,
)
from analysis.report.stats import (
    covariate_balance,
    normalise_panel,
    pre_period_fits,
    sample_ratio_check,
    to_panel,
)


# --------------------------------------------------------------------------- page
@dataclass(frozen=True)
class Report:
    """The report's content: figures (name -> PNG bytes) and the HTML page referencing them."""

    html: str
    figures: dict[str, bytes]

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in self.figures.items():
            (out_dir / name).write_bytes(data)
        index = out_dir / "index.html"
        index.write_text(self.html, encoding="utf-8")
        return index


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
"""


def build_report(
    df: pd.DataFrame,
    estimates: pd.DataFrame | None,
    *,
    title: str,
    design: str | None = None,
    truth: float | None = None,
    outcome: str = "units",
    source_note: str = "",
    embed: bool = False,
    seed: int = 0,
) -> Report:
    """Figures and the HTML page for one experiment.

    ``estimates``: running estimates (estimator, n_periods, effect, se, ci_low, ci_high,
    cs_low, cs_high); None or empty gives a page without the running-estimate figure.
    ``embed`` puts the PNGs into the page as data URIs (one self-contained file).
    """
    d = normalise_panel(df, outcome)
    figs: dict[str, bytes] = {}
    sections: list[str] = []

    def img(name: str, alt: str) -> str:
        data_uri = "data:image/png;base64," + base64.b64encode(figs[name]).decode()
        src = data_uri if embed else name
        return f'<img src="{src}" alt="{html.escape(alt)}" onerror="this.dataset.broken=1">'

    n_prod, n_per = d["product"].nunique(), d["period"].nunique()
    n_black = int(d["blackout"].sum())
    head = (
        f"<p>{n_prod} products x {n_per} periods; design <b>{html.escape(design or 'unknown')}</b>; "
        f"{int(d['treated'].sum())} treated cells, {n_black} blackout cells. {html.escape(source_note)}</p>"
    )

    figs["assignment.png"] = _png(assignment_heatmap(d))
    sections.append("<h2>Assignment</h2>" + img("assignment.png", "assignment heatmap"))

    segments = None
    if estimates is not None and "segment" in estimates.columns:
        # segment estimates (spec-named segments) get their own table, not the running lines
        tagged = estimates["segment"].fillna("").astype(str) != ""
        segments, estimates = estimates[tagged], estimates[~tagged]
    if estimates is not None and len(estimates):
        figs["running_estimates.png"] = _png(running_estimates_figure(estimates, truth))
        latest = (
            estimates.sort_values("n_periods", kind="stable")
            .groupby("estimator", sort=False)
            .tail(1)
        )
        sections.append(
            "<h2>Running estimates</h2>"
            + _table(
                latest,
                [
                    ("estimator", "estimator", ""),
                    ("n_periods", "periods", ""),
                    ("effect", "effect", "+.3f"),
                    ("se", "SE", ".3f"),
                    ("ci_low", "95% low", "+.3f"),
                    ("ci_high", "95% high", "+.3f"),
                    ("cs_low", "CS low", "+.3f"),
                    ("cs_high", "CS high", "+.3f"),
                ],
            )
            + '<p class="note">Shaded: 95% interval at each look (valid for one look). Dashed: the '
            "anytime-valid confidence sequence, valid at every look simultaneously.</p>"
            + img("running_estimates.png", "running estimates")
        )
    else:
        sections.append("<h2>Running estimates</h2><p class='note'>No estimates published yet.</p>")
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
            "<h2>Pre-period fit</h2><p class='note'>The design has no common pre-period "
            "(not a block design), so synthetic-control estimators do not apply.</p>"
        )

    srm = sample_ratio_check(d)
    bal = covariate_balance(d, outcome)
    figs["balance.png"] = _png(balance_figure(d, bal))
    if srm is None:
        srm_html = "<p class='note'>No randomised cells yet.</p>"
    else:
        cls = "warn" if srm.pvalue < 0.001 else "ok"
        srm_html = (
            f"<p class='{cls}'>Sample ratio: {srm.treated} of {srm.n} independent draws "
            f"({srm.level}s) treated, share {srm.share:.3f} against design probability "
            f"{srm.expected_share:.3f}; binomial test p = {srm.pvalue:.3g}"
            f"{' - investigate the assignment pipeline' if srm.pvalue < 0.001 else ''}.</p>"
        )
    sections.append(
        "<h2>Balance and sample ratio</h2>"
        + srm_html
        + _table(
            bal,
            [
                ("covariate", "covariate", ""),
                ("mean_treated", "treated", ".3f"),
                ("mean_control", "control", ".3f"),
                ("smd", "SMD", "+.3f"),
            ],
        )
        + img("balance.png", "balance")
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>{head}
{"".join(sections)}
<p class="note">pricelab report; figures are PNG files next to this page.</p>
</body></html>
"""
    return Report(page, {} if embed else figs)
