"""The report's scorecard: per metric the design's primary estimator at the latest look, even
when a look reaches the topic more than once (a worker cycle cut short by a shutdown
republished part of the final look; the demo's report then showed ``ht`` as profit's primary,
with no relative interval: CI, 2026-11-25)."""

from __future__ import annotations

import pandas as pd

from analysis.report.html import scorecard_section

ESTIMATORS = ("fe", "dm", "ht")


def _message(metric: str, estimator: str, look: int, effect: float) -> dict[str, object]:
    relative = estimator != "ht"  # ht reports no arm means: no relative form
    return {
        "metric": metric,
        "estimator": estimator,
        "as_of": f"2026-06-0{look}T23:59:59Z",
        "effect": effect,
        "ci_low": effect - 1.0,
        "ci_high": effect + 1.0,
        "control_mean": 10.0,
        "relative_effect": effect / 10.0 if relative else None,
        "relative_ci_low": (effect - 1.0) / 10.0 if relative else None,
        "relative_ci_high": (effect + 1.0) / 10.0 if relative else None,
    }


def _cycle(look: int, metrics: tuple[str, ...] = ("units", "profit")) -> list[dict[str, object]]:
    return [
        _message(m, est, look, 0.1 * look + i) for m in metrics for i, est in enumerate(ESTIMATORS)
    ]


def _primary(card: str, metric: str) -> str:
    row = card.split(f"<tr><td>{metric}</td>")[1].split("</tr>")[0]
    return row.split("<td>")[-2].split(";")[0]  # the "estimator; effect per" cell


def test_primary_is_the_first_estimator_published_at_the_latest_look() -> None:
    card, reading = scorecard_section(pd.DataFrame(_cycle(1) + _cycle(2)))
    assert _primary(card, "units") == "fe" and _primary(card, "profit") == "fe"
    assert card.count("<svg") == 2
    assert reading.startswith("units +2.0%")  # look 2's fe: 0.2 / 10


def test_a_look_republished_in_part_keeps_the_primary() -> None:
    # the final look, then the same look again cut short after profit's fe and dm
    partial = [m for m in _cycle(2) if not (m["metric"] == "profit" and m["estimator"] == "ht")]
    card, _ = scorecard_section(pd.DataFrame(_cycle(1) + _cycle(2) + partial))
    assert _primary(card, "units") == "fe" and _primary(card, "profit") == "fe"
    assert card.count("<svg") == 2


def test_a_republished_look_shows_its_latest_values() -> None:
    again = [dict(m, effect=float(m["effect"]) + 0.5) for m in _cycle(2, ("units",))]  # type: ignore[arg-type]
    card, _ = scorecard_section(pd.DataFrame(_cycle(2, ("units",)) + again))
    assert "<td>units</td><td>+0.700</td>" in card  # fe's second message: 0.2 + 0.5
