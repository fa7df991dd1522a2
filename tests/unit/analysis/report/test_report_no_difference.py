"""The report's verdict band and ``pricelab estimates``' verdict lines show *no difference*
(keep the control) and a k-arm verdict's guardrails per arm (issue #54, items 1 and 5)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.report.verdict import verdict_section
from analysis.verdict import GuardrailReading, decide, decide_arms
from streams.client.estimates import render_verdict


def _fields(effect: float, low: float, high: float) -> dict[str, Any]:
    return {
        "estimator": "fe", "effect": effect, "se": 1.0, "cs_low": low, "cs_high": high,
        "n_units": 40, "n_periods": 7, "control_mean": 100.0,
        "relative_effect": effect / 100.0, "relative_cs_low": low / 100.0,
        "relative_cs_high": high / 100.0,
    }  # fmt: skip


def _message(doc: dict[str, Any]) -> dict[str, Any]:
    return doc | {"kind": "verdict", "experiment": "e1", "as_of": "2026-03-09T00:00:00Z"}


def test_no_difference_reads_as_keep_the_control() -> None:
    doc = _message(decide(metric="profit", fields=_fields(0.5, -2.0, 3.0), mde_pct=5.0).to_dict())
    band = verdict_section(pd.DataFrame([doc]))
    assert '<section class="verdict same"' in band
    assert '<p class="word">No difference: keep the control</p>' in band
    assert "within +-5%" in band and "planned MDE 5.0%" in band
    assert "more days" not in band
    lines = render_verdict(doc)
    assert "NO DIFFERENCE - KEEP THE CONTROL" in lines.splitlines()[0]


def test_a_k_arm_verdict_shows_each_arms_guardrail() -> None:
    guards = {
        "p95": [GuardrailReading("units", 2.0, -0.06, -0.09, -0.03, arm="p95")],
        "p105": [GuardrailReading("units", 2.0, 0.0, -0.01, 0.01, arm="p105")],
    }
    v = decide_arms(
        metric="profit",
        fields={"p95": _fields(3.0, 1.0, 5.0), "p105": _fields(-1.0, -3.0, 0.5)},
        guardrails=guards,
    )
    doc = _message(v.to_dict())
    band = verdict_section(pd.DataFrame([doc]))
    assert "<th>arm</th><th>guardrail</th>" in band
    assert "<td>p95</td><td>units</td><td>not below -2.0%</td>" in band
    assert '<td class="warn">breached</td>' in band
    lines = render_verdict(doc)
    assert "arm p95: guardrail units not below -2%" in lines
    assert "arm p105: guardrail units not below -2%" in lines
    # two arms: the table as it was, no arm column
    reading = GuardrailReading("units", 2.0, 0.0, -0.01, 0.01)
    two = _message(
        decide(metric="profit", fields=_fields(3.0, 1.0, 5.0), guardrails=[reading]).to_dict()
    )
    band = verdict_section(pd.DataFrame([two]))
    assert "<th>guardrail</th>" in band and "<th>arm</th>" not in band
    assert "<td>units</td><td>not below -2.0%</td>" in band
