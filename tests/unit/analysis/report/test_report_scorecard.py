"""The report's scorecard: per metric the design's primary estimator at the latest look, even
when a look reaches the topic more than once (a worker cycle cut short by a shutdown
republished part of the final look; the demo's report then showed ``ht`` as profit's primary,
with no relative interval: CI, 2026-11-25)."""

from __future__ import annotations

import pandas as pd

from analysis.report.scorecard import scorecard_section
from analysis.report.stats import split_verdicts

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
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    return next(c for c in cells if ";" in c).split(";")[0]  # the "estimator; effect per" cell


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


def _verdict(look: int) -> dict[str, object]:
    """A verdict message as the analysis worker publishes it (docs/contracts: kind verdict)."""
    return {
        "v": 1,
        "kind": "verdict",
        "experiment": "exp",
        "as_of": f"2026-06-0{look}T23:59:59Z",
        "verdict": "do_not_ship",
        "metric": "profit",
        "estimator": "fe",
        "rule": "ship when ... lies wholly above 0%",
        "reason": "profit -7.8% [-10.9%, -4.6%] lies wholly below 0%",
        "relative_effect": -0.078,
        "relative_cs_low": -0.109,
        "relative_cs_high": -0.046,
        "effect": -58.0,
        "cs_low": -80.1,
        "cs_high": -35.9,
        "guardrails": [{"metric": "units", "max_drop_pct": 2.0, "status": "ok"}],
        "mde_pct": 2.0,
        "more_days": None,
        "more_days_note": None,
        "n_units": 200,
        "n_periods": 28,
    }


def test_a_verdict_on_the_topic_is_not_read_as_an_estimate() -> None:
    # the verdict names profit and fe and carries an effect of -58: read as an estimate it
    # would be profit's primary at the latest look, with no 95% interval
    plain, _ = scorecard_section(pd.DataFrame(_cycle(1) + _cycle(2)))
    mixed = _cycle(1) + [_verdict(1)] + _cycle(2) + [_verdict(2)]
    card, reading = scorecard_section(pd.DataFrame(mixed))
    assert card == plain
    assert "-58.000" not in card and reading.startswith("units +2.0%")


def test_split_verdicts_routes_each_kind() -> None:
    tagged = [dict(m, kind="estimate") for m in _cycle(1, ("units",))]
    frame = pd.DataFrame(_cycle(1, ("profit",)) + tagged + [_verdict(1), {"kind": "future"}])
    estimates, verdicts = split_verdicts(frame)
    assert len(estimates) == 6 and len(verdicts) == 1
    assert verdicts.iloc[0]["verdict"] == "do_not_ship"
    # the columns only verdicts fill are gone: the estimates look as they did before verdicts
    assert not {"kind", "verdict", "rule", "reason", "guardrails"} & set(estimates.columns)
    assert "effect" in estimates.columns and "ci_low" in estimates.columns
    only_estimates, none = split_verdicts(pd.DataFrame(_cycle(1)))
    assert len(only_estimates) == 6 and none.empty


def test_the_truth_column_is_shown_only_when_a_truth_is_known() -> None:
    # an analyst's own experiment has no truth: an empty column would read as "truth: none"
    card, _ = scorecard_section(pd.DataFrame(_cycle(2)))
    assert "<th>truth</th>" not in card
    row = card.split("<tr><td>units</td>")[1].split("</tr>")[0]
    assert row.count("<td>") == 7  # effect, interval, relative x3, control mean, estimator
    known, _ = scorecard_section(pd.DataFrame(_cycle(2)), truths={"units": (0.3, 0.03)})
    assert "<th>truth</th>" in known
    assert "+0.300 (+3.00%)" in known.split("<tr><td>units</td>")[1].split("</tr>")[0]
