"""The report's sample ratio of an adaptive ladder (issue #57): each arm's draws against the
probabilities the controller recorded for their periods, read off the panel's
``probability_<arm>`` columns (as ``pricelab panel export`` and ``pricelab simulate`` write
them), by the test, flag and sentence of the console's Health section
(:mod:`analysis.sample_ratio`). Never against the spec's allocations: an adaptive ladder's
shares follow its looks, so that test would call every adaptation a broken pipeline; when the
recorded test cannot run, the section says why."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd

from analysis.adaptive_offline import PREFIX, probability_arms, recorded_probabilities
from analysis.errors import AnalysisError
from analysis.sample_ratio import (
    PROBLEM,
    SRM_PROBLEM,
    SRM_WARN,
    WARN,
    DesignDraws,
    RecordedSampleRatio,
    draw_counts,
    recorded_sample_ratio,
    recorded_verdict,
)

CSS = """
p.srm-ok{color:#1a7f37}p.srm-warn{color:#9a6700;font-weight:bold}
p.srm-problem{color:#b42318;font-weight:bold}
"""


def _note(why: str) -> str:
    return (
        "<p class='note' data-check='sample-ratio-recorded' data-flag='none'>No sample-ratio "
        "check of this adaptive ladder: its draws are tested against the probabilities the "
        f"controller recorded for each period, never the spec's allocations, and {why}</p>"
    )


def _design_draws(
    d: pd.DataFrame, design: str | None, names: Sequence[str], draws: DesignDraws | None
) -> DesignDraws:
    """The draws from the spec, else from the panel (a cluster panel's ``class`` column); a
    AnalysisError when they are unknown (an optimal switchback's blocks need its spec)."""
    if draws is not None:
        return draws
    if design == "optimal-switchback":
        raise AnalysisError(
            "an optimal switchback draws once a block, at randomisation points its spec "
            "gives (offline: --spec)."
        )
    if design == "cluster":
        if "class" not in d.columns:
            raise AnalysisError(
                "the cluster design draws once a class and period, and the panel has no "
                "class column (offline: --spec)."
            )
        classes = d.drop_duplicates("product").set_index("product")["class"]
        return DesignDraws(tuple(names), classes={str(p): str(c) for p, c in classes.items()})
    return DesignDraws(tuple(names))


def adaptive_sample_ratio(
    d: pd.DataFrame, design: str | None, draws: DesignDraws | None = None
) -> RecordedSampleRatio | None:
    """The recorded test (:func:`analysis.sample_ratio.recorded_sample_ratio`) of an adaptive
    ladder's panel ``d`` (periods as the experiment's indices): each period's recorded
    probabilities from its ``probability_<arm>`` columns, the design's independent draws from
    ``draws`` (the spec's) or, without, from ``design`` and the panel. None when no recorded
    period has a draw; an AnalysisError (one sentence, what to give) when the record or the
    draws are unknown."""
    names = list(draws.arms) if draws is not None else probability_arms(d.columns)
    missing = [a for a in names if PREFIX + a not in d.columns]
    if not names or missing:
        cols = ", ".join(PREFIX + a for a in missing) or f"{PREFIX}<arm>"
        raise AnalysisError(
            f"the panel has no {cols} column (export the panel with `pricelab panel export`, "
            "which writes each period's recorded probability of every arm)."
        )
    try:
        recorded = recorded_probabilities(d, "period", names)
    except AnalysisError as exc:
        raise AnalysisError(f"its recorded probabilities cannot be read: {exc}") from None
    how = _design_draws(d, design, names, draws)
    counts, level = draw_counts(d, list(how.arms), points=how.points, classes=how.classes)
    return recorded_sample_ratio(counts, recorded, list(how.arms), level)


def adaptive_ratio_html(
    d: pd.DataFrame, design: str | None, draws: DesignDraws | None = None
) -> str:
    """The section's sample ratio of an adaptive ladder's panel ``d`` (the report's normalised
    panel): the flag of :func:`adaptive_sample_ratio`, its sentence and each arm's draws
    against its expected count; or, when it cannot run, a note that says why and what to
    give."""
    try:
        srm = adaptive_sample_ratio(d, design, draws)
    except AnalysisError as exc:
        return _note(html.escape(str(exc)))
    flag, sentence = recorded_verdict(srm)
    head = (
        f"<p class='srm-{flag}' data-check='sample-ratio-recorded' data-flag='{flag}'>"
        f"Sample ratio per arm, against the probabilities recorded for each period: "
        f"<b>{flag}</b>. {html.escape(sentence)}</p>"
    )
    if srm is None:
        return head
    rows = arm_rows(srm.observed, srm.expected, srm.n)
    return (
        head + "<table class='arm-ratio'><tr><th>arm</th><th>draws</th><th>expected</th>"
        f"<th>share</th><th>expected share</th></tr>{rows}</table>"
        "<p class='note'>The test (the console's Health check): each period's draws against "
        "that period's recorded probabilities, summed over the periods; its covariance is the "
        "periods' multinomial ones, so the statistic is chi-square on k - 1 degrees of freedom "
        f'(docs/adaptive.md, "The sample ratio"). {PROBLEM}: p below {SRM_PROBLEM:g}; {WARN}: '
        f"below {SRM_WARN:g}. It includes the control against the other arms, so no separate "
        "two-group check is shown.</p>"
    )


__all__ = ["CSS", "adaptive_ratio_html", "adaptive_sample_ratio"]


def arm_rows(observed: Mapping[str, int], expected: Mapping[str, float], n: int) -> str:
    """A per-arm sample-ratio table's rows: each arm's draws, expected draws and both shares
    (the fixed allocations' check and the recorded probabilities' share them)."""
    return "".join(
        f"<tr><td>{html.escape(a)}</td><td>{observed[a]}</td><td>{expected[a]:.1f}</td>"
        f"<td>{observed[a] / n:.3f}</td><td>{expected[a] / n:.3f}</td></tr>"
        for a in expected
    )
