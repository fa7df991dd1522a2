"""The Health section of an adaptive ladder (issue #57): its arms' draws follow the looks'
probabilities, not the spec's allocations, so the per-arm sample-ratio check against those
allocations would call every adaptation a broken assignment pipeline (a PROBLEM on a healthy
ladder). It is checked against the probabilities recorded for each period instead
(streams.client.adaptive_health; the test's uniformity under the real draw is in
test_adaptive_sample_ratio.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from controller.spec import load_spec
from streams.client.adaptive_health import recorded_sample_ratio_check
from streams.client.health import OK, PROBLEM, panel_figures, sample_ratio_check

START = datetime(2026, 6, 1, tzinfo=UTC)
ARMS = [("ctl", 0.5, True), ("a", 0.25, False), ("b", 0.25, False)]


def _spec(adaptive: bool) -> Any:
    doc: dict[str, Any] = {
        "id": "shoes",
        "products": [f"p{i:03d}" for i in range(200)],
        "start": START.isoformat(),
        "end": (START + timedelta(days=10)).isoformat(),
        "timezone": "UTC",
        "seed": 1,
        "arms": [{"name": n, "policy": n, "allocation": a, "control": c} for n, a, c in ARMS],
    }
    if adaptive:
        doc["adaptive"] = {"warmup": 3}
    return load_spec(doc)


def _panel() -> pd.DataFrame:
    """A period after the warmup in which the looks moved most cells to arm b (recorded
    probabilities 0.1 / 0.1 / 0.8, P(not control) 0.9): 20 / 20 / 160 of 200. Against the
    spec's allocations (the control at the cells' P(not control), the others split as 0.25 :
    0.25) that is 20 / 90 / 90 expected: chi-square 0 + 70^2/90 + 70^2/90 = 108.9."""
    arm_of = ["ctl"] * 20 + ["a"] * 20 + ["b"] * 160
    return pd.DataFrame(
        {
            "product": [f"p{i:03d}" for i in range(200)],
            "period": 4,
            "units": 1.0,
            "treated": [int(a != "ctl") for a in arm_of],
            "probability": 0.9,
            "blackout": False,
            "arm": arm_of,
        }
    )


def test_an_adaptive_ladder_s_draws_are_checked_against_its_recorded_probabilities() -> None:
    # recorded for period 4: 0.1 / 0.1 / 0.8, so 20 / 20 / 160 of 200 is exactly as expected
    figures = panel_figures(_panel(), _spec(adaptive=True), probabilities={4: (0.1, 0.1, 0.8)})
    assert figures["srm"] is None and figures["adaptive"] is True
    srm = figures["srm_recorded"]
    assert srm.observed == {"ctl": 20, "a": 20, "b": 160} and srm.statistic == pytest.approx(0)
    assert srm.expected == pytest.approx({"ctl": 20.0, "a": 20.0, "b": 160.0})
    check = recorded_sample_ratio_check(srm)
    assert check.flag == OK and check.detail["against"] == "recorded"
    assert check.sentence.startswith(
        "The arms' draws match the probabilities recorded for their periods (chi-square 0.00 "
        "on 2 degree(s) of freedom, p = 1, over 200 independent draws (products) in 1 period(s)"
    )
    # recorded as the warmup's 0.5 / 0.25 / 0.25, the same draws are a broken pipeline:
    # (20-100)^2/100 + (20-50)^2/50 + (160-50)^2/50 = 64 + 18 + 242 = 324
    broken = panel_figures(_panel(), _spec(adaptive=True), probabilities={4: (0.5, 0.25, 0.25)})
    assert broken["srm_recorded"].statistic == pytest.approx(324.0)
    assert recorded_sample_ratio_check(broken["srm_recorded"]).flag == PROBLEM
    # no recorded period: nothing to check
    none = panel_figures(_panel(), _spec(adaptive=True), probabilities={})
    assert none["srm_recorded"] is None
    assert recorded_sample_ratio_check(None).sentence.startswith("No drawn period")


def test_the_same_draws_of_a_fixed_ladder_are_a_problem() -> None:
    srm = panel_figures(_panel(), _spec(adaptive=False))["srm"]
    assert srm is not None and abs(srm.statistic - 2 * 70**2 / 90) < 1e-9  # worked out above
    check = sample_ratio_check(srm.observed, srm.expected, srm.statistic, srm.pvalue)
    assert check.flag == "problem"
