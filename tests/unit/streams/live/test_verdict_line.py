"""The one-line verdict the demo and ``simulate --live`` print at each look: early looks carry
the metric's unit and percent, and a jump of the days still needed says why."""

from __future__ import annotations

from typing import Any

from analysis.verdict import more_days_change
from streams.live.driver import verdict_line


def _keep(n: int, more: float | None, low: float, high: float, **extra: Any) -> dict[str, Any]:
    return {
        "verdict": "keep_running", "metric": "profit", "effect": 12.0, "n_periods": n,
        "cs_low": -40.0, "cs_high": 64.0, "relative_effect": 0.03, "relative_cs_low": low,
        "relative_cs_high": high, "more_days": more, "mde_pct": 5.0,
    } | extra  # fmt: skip


def test_an_early_verdict_gives_the_unit_and_the_percent() -> None:
    # two periods in: the control mean's interval still reaches 0, so Fieller's relative
    # interval is unbounded, but the point and the absolute sequence are known
    early = _keep(2, None, 0.0, 0.0) | {"relative_cs_low": None, "relative_cs_high": None}
    line = verdict_line(early)
    assert "profit +12 [-40, +64] anytime-valid profit per product-period" in line
    assert "(+3.0%, relative interval not bounded yet)" in line


def test_a_jump_of_the_days_still_needed_says_why() -> None:
    before, after = _keep(5, 58.0, -0.20, 0.20), _keep(6, 111.0, -0.31, 0.29)
    line = verdict_line(after, before)
    assert "about 111 more days for 80% power at 5%" in line
    assert "was about 58 after 5 periods" in line
    assert "half-width went from 20.0% to 30.0%" in line


def test_a_steady_estimate_says_nothing_more() -> None:
    # 58 -> 55: within a quarter; the line is the plain one
    assert more_days_change(_keep(5, 58.0, -0.2, 0.2), _keep(6, 55.0, -0.19, 0.19)) is None
    assert "was about" not in verdict_line(_keep(6, 55.0, -0.19, 0.19), _keep(5, 58.0, -0.2, 0.2))


def test_days_that_are_gone_say_why() -> None:
    gone = _keep(7, None, -0.3, 0.3, more_days_note="80% power is not reached within 560 periods")
    said = more_days_change(_keep(6, 73.0, -0.2, 0.2), gone)
    assert said == (
        "was about 73 after 6 periods; now none: 80% power is not reached within 560 periods"
    )


def test_a_decided_look_has_no_days_to_explain() -> None:
    shipped = _keep(8, None, 0.01, 0.09) | {"verdict": "ship"}
    assert more_days_change(_keep(7, 30.0, -0.1, 0.2), shipped) is None
    assert more_days_change(None, _keep(7, 30.0, -0.1, 0.2)) is None


def test_the_cli_verdict_gives_the_unit_while_the_relative_interval_is_unbounded() -> None:
    from streams.client.estimates import render_verdict

    early = _keep(2, None, 0.0, 0.0) | {"relative_cs_low": None, "relative_cs_high": None}
    text = render_verdict(early | {"estimator": "fe", "reason": "r", "rule": "x"})
    assert (
        "decision metric profit (fe): +12 [-40, +64] profit per product-period (+3.0%; its "
        "relative interval is not bounded yet), 95% anytime-valid"
    ) in text
