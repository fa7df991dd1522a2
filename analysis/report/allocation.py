"""The report's adaptive-ladder section (issue #57): each arm's mean and its contrast with the
control with the simultaneous anytime-valid sequence, the best set, the allocation over time
(the probabilities the controller recorded for every period, drawn as an inline SVG of
stacked shares and listed in a table) and why the fixed-allocation methods are not
published. Every figure is the analysis worker's ``kind: adaptive`` message's
(:meth:`analysis.adaptive_live.AdaptiveFit.to_dict`); nothing is estimated here."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from analysis.report.verdict import _num, latest_verdict

CSS = """
svg.allocation{background:#fff;border:1px solid #eee}svg.allocation text{font-size:11px;fill:#333}
table.allocation td{text-align:right}
"""
#: the arms' colours in the allocation figure (cycled)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def latest_adaptive(messages: pd.DataFrame | None) -> dict[str, Any] | None:
    """The adaptive look of the latest look among the estimates topic's messages (``kind:
    adaptive``), its missing fields dropped; None when none was published."""
    if messages is None or messages.empty or "kind" not in messages.columns:
        return None
    return latest_verdict(messages[messages["kind"] == "adaptive"])


def _int(v: object) -> str:
    """A count as a whole number (a message table's column of counts may hold floats)."""
    x = _num(v)
    return "-" if x is None else str(int(x))


def _fmt(v: object, spec: str) -> str:
    x = _num(v)
    return "-" if x is None else format(x, spec)


def allocation_svg(names: list[str], rows: list[tuple[int, list[float]]]) -> str:
    """The allocation over time: one stacked bar per period, each arm's share a colour."""
    width, height, left, top, bar_h = 560, 40 + 16 * len(rows), 60, 24, 12
    span = width - left - 16
    out = [
        f'<svg class="allocation" id="allocation-chart" width="{width}" height="{height}" '
        'role="img" aria-label="the arms\' probabilities per period">'
    ]
    x = left
    for i, name in enumerate(names):  # the legend
        colour = COLOURS[i % len(COLOURS)]
        out.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="15">{html.escape(name)}</text>')
        x += 24 + 7 * len(name)
    for j, (period, probs) in enumerate(rows):
        y = top + 16 * j
        out.append(f'<text x="{left - 6}" y="{y + 10}" text-anchor="end">{period}</text>')
        x0 = float(left)
        for i, p in enumerate(probs):
            w = span * max(float(p), 0.0)
            colour = COLOURS[i % len(COLOURS)]
            out.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}" '
                f'data-period="{period}" data-arm="{html.escape(names[i] if i < len(names) else "")}"'
                f' data-probability="{float(p):.6g}"/>'
            )
            x0 += w
    out.append("</svg>")
    return "".join(out)


def allocation_section(doc: dict[str, Any]) -> str:
    """The section's HTML from an adaptive look ``doc``."""
    arms = list(doc.get("arms") or ())
    names = [str(a["arm"]) for a in arms]
    rows = [
        (int(p["period"]), [float(x) for x in p["probabilities"]])
        for p in doc.get("allocation") or ()
    ]
    alpha = float(doc.get("alpha") or 0.05)
    head = (
        f"<h2>Adaptive allocation</h2><p>Look of {html.escape(str(doc.get('as_of')))}, after "
        f"{_int(doc.get('n_periods'))} period(s): {html.escape(str(doc.get('metric')))} by AIPW on the "
        f"recorded probabilities (carryover lag {_int(doc.get('lag'))}), each contrast with the "
        f"control with its {1 - alpha:.0%} simultaneous anytime-valid sequence. Best set: "
        f"{html.escape(', '.join(doc.get('best_set') or ()))}; largest mean: "
        f"{html.escape(str(doc.get('recommended')))}.</p>"
    )
    body = [
        "<table class='adaptive-arms'><tr><th>arm</th><th>mean</th><th>SE</th>"
        "<th>against the control</th><th>anytime-valid</th><th>best set</th><th>held cells</th></tr>"
    ]
    for a in arms:
        control = bool(a.get("control"))
        name = html.escape(str(a["arm"])) + (" (control)" if control else "")
        effect = "-" if control else _fmt(a.get("effect"), "+.4g")
        cs = (
            "-"
            if control
            else f"[{_fmt(a.get('cs_low'), '+.4g')}, {_fmt(a.get('cs_high'), '+.4g')}]"
        )
        body.append(
            f"<tr data-arm='{html.escape(str(a['arm']))}'><td>{name}</td>"
            f"<td>{_fmt(a.get('mean'), '.4g')}</td><td>{_fmt(a.get('mean_se'), '.2g')}</td>"
            f"<td>{effect}</td><td>{cs}</td><td>{'yes' if a.get('in_best_set') else ''}</td>"
            f"<td>{_int(a.get('n_cells'))}</td></tr>"
        )
    body.append("</table>")
    alloc = ["<h3>The allocation over time</h3>", allocation_svg(names, rows)]
    alloc.append(
        "<table class='allocation'><tr><th>period</th>"
        + "".join(f"<th>{html.escape(n)}</th>" for n in names)
        + "</tr>"
    )
    for period, probs in rows:
        cells = "".join(f"<td>{p:.1%}</td>" for p in probs)
        alloc.append(f"<tr data-period='{period}'><td>{period}</td>{cells}</tr>")
    alloc.append("</table>")
    note = doc.get("note")
    tail = f"<p class='note'>{html.escape(str(note))}</p>" if note else ""
    return head + "".join(body) + "".join(alloc) + tail
