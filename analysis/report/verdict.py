"""The report's first section: the latest verdict the analysis worker published.

A verdict is its own message on the estimates topic (``"kind": "verdict"``): ship, do not
ship, no difference (keep the control) or keep running on the decision metric, the rule that decided it, the guardrails, and for
keep running the days still needed. This module only shows it; the rule lives with the worker.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.verdict import latest

#: the verdict's word and the band's colour
WORDS: dict[str, tuple[str, str]] = {
    "ship": ("Ship", "ship"),
    "do_not_ship": ("Do not ship", "stop"),
    "no_difference": ("No difference: keep the control", "same"),
    "keep_running": ("Keep running", "wait"),
}

CSS = """
.verdict{margin:8px 0 18px;padding:12px 16px;border-left:8px solid #6e7781;background:#f6f8fa}
.verdict.ship{border-color:#1a7f37;background:#eef8f0}.verdict.stop{border-color:#b42318;background:#fdf0ef}
.verdict.wait{border-color:#9a6700;background:#fff8e5}
.verdict.same{border-color:#0969da;background:#eef4fd}.verdict.same .word{color:#0969da}
.verdict .word{font-size:28px;font-weight:bold;margin:0 0 4px}
.verdict.ship .word{color:#1a7f37}.verdict.stop .word{color:#b42318}.verdict.wait .word{color:#9a6700}
.verdict p{margin:4px 0}.verdict .reason{font-size:16px}.verdict .rule{color:#555;font-size:13px}
.verdict table{background:#fff}
"""
#: a k-arm verdict's arms table (only on a k-arm page: a two-arm page is as it was)
ARMS_CSS = ".verdict tr.named td{font-weight:bold}\n"


def latest_verdict(verdicts: pd.DataFrame) -> dict[str, Any] | None:
    """The verdict of the latest look (the last published of that look), or None: the rule
    every reader follows (:func:`analysis.verdict.latest`), its missing fields dropped; the
    same for any one kind of message of the estimates topic (a demand curve's)."""
    if verdicts is None or verdicts.empty:
        return None
    row = latest(verdicts.to_dict("records"))
    return None if row is None else {k: v for k, v in row.items() if not _missing(v)}


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v: object) -> float | None:
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def _rel(point: object, lo: object, hi: object) -> str:
    p, a, b = _num(point), _num(lo), _num(hi)
    if p is None:
        return "-"
    interval = f" [{a:+.1%}, {b:+.1%}]" if a is not None and b is not None else ""
    return f"{p:+.1%}{interval}"


def _more_days(v: Mapping[str, Any]) -> str:
    days = _num(v.get("more_days"))
    note = v.get("more_days_note")
    if days is not None and days > 0:
        return f"Inconclusive: about {math.ceil(days)} more days needed (80% power at the MDE)."
    if note:  # also when 80% power is already reached (more_days 0): the note says so
        return f"Inconclusive: {note}"
    return "Inconclusive: the days still needed are unknown."


def _figures(v: Mapping[str, Any]) -> str:
    """The figures the verdict rests on: the relative effect with its anytime-valid set, or
    (an estimate without a relative form, e.g. a difference in differences) the absolute
    effect and its sequence."""
    if _num(v.get("relative_effect")) is not None:
        rel = _rel(v.get("relative_effect"), v.get("relative_cs_low"), v.get("relative_cs_high"))
        return f"relative effect {rel}"
    effect, lo, hi = _num(v.get("effect")), _num(v.get("cs_low")), _num(v.get("cs_high"))
    if effect is None:
        return "effect -"
    interval = f" [{lo:+.4g}, {hi:+.4g}]" if lo is not None and hi is not None else ""
    return f"effect {effect:+.4g}{interval}"


def _guardrails(rows: object) -> str:
    if not isinstance(rows, list | tuple) or not rows:
        return ""
    # k arms: one reading per arm and guardrail, the arm in a first column
    per_arm = any(isinstance(g, Mapping) and g.get("arm") is not None for g in rows)
    body = []
    for g in rows:
        if not isinstance(g, Mapping):
            continue
        drop = _num(g.get("max_drop_pct"))
        limit = f"not below {-drop:+.1f}%" if drop is not None else "-"
        status = str(g.get("status", "-"))
        cls = ' class="warn"' if status == "breached" else ""
        cells = (
            *((str(g.get("arm", "-")),) if per_arm else ()),
            str(g.get("metric", "-")),
            limit,
            _rel(g.get("relative_effect"), g.get("relative_cs_low"), g.get("relative_cs_high")),
        )
        body.append(
            "<tr>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + f"<td{cls}>{html.escape(status)}</td></tr>"
        )
    if not body:
        return ""
    heads = ("guardrail", "limit", "relative effect [sequence]", "status")
    head = "".join(f"<th>{h}</th>" for h in (("arm", *heads) if per_arm else heads))
    return f'<table class="guardrails"><tr>{head}</tr>{"".join(body)}</table>'


def _arms(rows: object, named: object, order: Sequence[str] = ()) -> str:
    """A k-arm verdict's every arm: its decision-metric sequence against the control, the
    named arm marked; the arms of ``order`` first, in its order."""
    if not isinstance(rows, list | tuple) or not rows:
        return ""
    rank = {a: i for i, a in enumerate(order)}
    arms = [a for a in rows if isinstance(a, Mapping)]
    body = []
    for a in sorted(arms, key=lambda a: rank.get(str(a.get("arm")), len(rank))):
        mark = "named" if a.get("arm") == named else ""
        rel = _rel(a.get("relative_effect"), a.get("relative_cs_low"), a.get("relative_cs_high"))
        effect, lo, hi = _num(a.get("effect")), _num(a.get("cs_low")), _num(a.get("cs_high"))
        absolute = "-" if effect is None else f"{effect:+.4g}"
        if effect is not None and lo is not None and hi is not None:
            absolute += f" [{lo:+.4g}, {hi:+.4g}]"
        cells = (str(a.get("arm", "-")), rel, absolute, mark)
        cls = ' class="named"' if mark else ""
        body.append(
            f'<tr{cls} data-arm="{html.escape(cells[0])}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("arm", "relative effect [sequence]", "effect [sequence]", "the verdict")
    )
    return f'<table class="arms"><tr>{head}</tr>{"".join(body)}</table>'


def verdict_section(
    verdicts: pd.DataFrame, missing_note: str | None = None, order: Sequence[str] = ()
) -> str:
    """The verdict band: the word, the decision metric and estimator, this look's reason, the
    relative effect with its anytime-valid sequence, the guardrails, the rule; for keep
    running the days still needed. With no verdict: ``missing_note``, or that none has been
    published yet. A k-arm verdict names its arm and lists every arm's sequence (``order``:
    the arms' order on the page)."""
    v = latest_verdict(verdicts)
    if v is None:
        note = missing_note or (
            "No verdict published yet: the analysis worker publishes one at each look."
        )
        return (
            '<section class="verdict" id="verdict"><p class="word">No verdict</p>'
            f"<p>{html.escape(note)}</p></section>"
        )
    kind = str(v.get("verdict", ""))
    word, cls = WORDS.get(kind, (kind or "Unknown verdict", ""))
    metric, estimator = str(v.get("metric", "-")), str(v.get("estimator", "-"))
    arm = v.get("arm")  # k arms: the arm the verdict names
    if arm is not None and kind == "ship":
        word = f"{word} {arm}"
    whose = "" if arm is None else f", {'shipped' if kind == 'ship' else 'leading'} arm {arm}"
    parts = [
        f'<section class="verdict {cls}" id="verdict">',
        f'<p class="word">{html.escape(word)}</p>',
        f"<p>Decision metric <b>{html.escape(metric)}</b> (estimator {html.escape(estimator)})"
        f"{html.escape(whose)}: {html.escape(_figures(v))} "
        f"({1 - (_num(v.get('alpha')) or 0.05):.0%} anytime-valid confidence sequence).</p>",
    ]
    if v.get("reason"):
        parts.append(f'<p class="reason">{html.escape(str(v["reason"]))}</p>')
    parts.append(_arms(v.get("arms"), arm, order))
    if kind == "keep_running":
        parts.append(f'<p class="more"><b>{html.escape(_more_days(v))}</b></p>')
    parts.append(_guardrails(v.get("guardrails")))
    look = []
    if v.get("as_of") is not None:
        at = pd.to_datetime(v["as_of"], utc=True, errors="coerce", format="ISO8601")
        look.append(f"as of {v['as_of'] if pd.isna(at) else at.strftime('%Y-%m-%d %H:%M UTC')}")
    if _num(v.get("n_units")) is not None and _num(v.get("n_periods")) is not None:
        look.append(f"{int(v['n_units'])} products x {int(v['n_periods'])} periods")
    if _num(v.get("mde_pct")) is not None:
        look.append(f"planned MDE {float(v['mde_pct']):.1f}%")
    if look:
        parts.append(f'<p class="rule">{html.escape("; ".join(look))}.</p>')
    if v.get("rule"):
        parts.append(f'<p class="rule">Rule: {html.escape(str(v["rule"]))}</p>')
    parts.append("</section>")
    return "".join(parts)
