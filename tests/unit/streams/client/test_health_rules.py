"""The Health section's rules (streams.client.health): each check's flag and sentence for
figures whose expected values are worked out here by hand (the chi-square's p-value by its
closed form for 2 degrees of freedom, the lateness from the calendar), not by the code."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from scipy import stats

from controller.spec import load_spec
from streams.client import health
from streams.client.health import (
    OK,
    PROBLEM,
    WARN,
    balance_check,
    dead_letters_check,
    flip_check,
    flip_lateness,
    freshness_check,
    panel_figures,
    sales_check,
    sample_ratio_check,
    worst,
)

START = datetime(2026, 6, 1, tzinfo=UTC)


def _spec(arms: list[tuple[str, float, bool]] | None = None, **extra: Any) -> Any:
    doc: dict[str, Any] = {
        "id": "shoes",
        "products": [f"p{i:03d}" for i in range(200)],
        "start": START.isoformat(),
        "end": (START + timedelta(days=10)).isoformat(),
        "timezone": "UTC",
        "period": "P1D",
        "seed": 1,
    }
    if arms is None:
        doc |= {"treatment_policy": "new", "control_policy": "old"}
    else:
        doc["arms"] = [{"name": n, "policy": n, "allocation": a, "control": c} for n, a, c in arms]
    return load_spec(doc | extra)


def _panel(arm_of: list[str], control: str, p_leave: float) -> pd.DataFrame:
    """One period of a panel as the live source gives it: each product's arm, treated when
    not in the control, and P(not control)."""
    return pd.DataFrame(
        {
            "product": [f"p{i:03d}" for i in range(len(arm_of))],
            "period": 0,
            "units": 1.0,
            "treated": [int(a != control) for a in arm_of],
            "probability": p_leave,
            "blackout": False,
            "arm": arm_of,
        }
    )


def test_the_sample_ratio_per_arm_is_the_report_s_chi_square() -> None:
    # three arms, the control half: 200 products expected 100 / 50 / 50, seen 70 / 70 / 60;
    # chi-square = 30^2/100 + 20^2/50 + 10^2/50 = 9 + 8 + 2 = 19 on 2 df, whose survival
    # function is exp(-x / 2): p = exp(-9.5)
    spec = _spec([("ctl", 0.5, True), ("a", 0.25, False), ("b", 0.25, False)])
    df = _panel(["ctl"] * 70 + ["a"] * 70 + ["b"] * 60, "ctl", 0.5)
    srm = panel_figures(df, spec)["srm"]
    assert srm.observed == {"ctl": 70, "a": 70, "b": 60}
    assert srm.expected == pytest.approx({"ctl": 100.0, "a": 50.0, "b": 50.0})
    assert srm.statistic == pytest.approx(19.0)
    assert srm.pvalue == pytest.approx(math.exp(-9.5), rel=1e-9)
    check = sample_ratio_check(srm.observed, srm.expected, srm.statistic, srm.pvalue)
    assert check.flag == PROBLEM
    assert "p = 7.49e-05" in check.sentence and "ctl 70 (expected 100.0)" in check.sentence


def test_a_two_arm_shorthand_is_checked_per_arm_too() -> None:
    # 200 products at 50/50, 110 treated: chi-square = 2 * 10^2 / 100 = 2 on 1 df
    spec = _spec()
    df = _panel(["treatment"] * 110 + ["control"] * 90, "control", 0.5).drop(columns="arm")
    srm = panel_figures(df, spec)["srm"]
    assert srm.observed == {"treatment": 110, "control": 90}
    assert srm.statistic == pytest.approx(2.0)
    assert srm.pvalue == pytest.approx(stats.chi2.sf(2.0, 1))  # 0.157
    assert sample_ratio_check(srm.observed, srm.expected, srm.statistic, srm.pvalue).flag == OK


@pytest.mark.parametrize(
    ("pvalue", "flag"), [(0.0009, PROBLEM), (0.001, WARN), (0.0099, WARN), (0.01, OK), (0.5, OK)]
)
def test_the_sample_ratio_flag_follows_its_p_value(pvalue: float, flag: str) -> None:
    check = sample_ratio_check({"a": 1, "b": 1}, {"a": 1.0, "b": 1.0}, 0.0, pvalue)
    assert check.flag == flag


def test_no_draw_yet_is_nothing_to_check() -> None:
    check = sample_ratio_check(None, None, None, None)
    assert (check.flag, check.sentence) == (OK, "No randomised draw yet: nothing to check.")


def test_sales_flowing_in() -> None:
    events = {"ok": 220.0, "dup": 3.0}
    # median of 100 and 90 is 95: 30 is under half of it
    dropped = sales_check({0: 100.0, 1: 90.0, 2: 30.0}, events, running=True)
    assert dropped.flag == WARN
    assert dropped.sentence == (
        "30 unit(s) in the last completed period (2), under half the median of the periods "
        "before (95); 223 sale(s) counted so far (3 dup, 220 ok)."
    )
    assert sales_check({0: 100.0, 1: 60.0}, events, running=True).flag == OK
    assert sales_check({0: 100.0, 1: 0.0}, events, running=True).flag == PROBLEM
    # a paused or stopped experiment's quiet period is no alarm
    assert sales_check({0: 100.0, 1: 0.0}, events, running=False).flag == OK
    assert sales_check({}, {}, running=True).sentence == (
        "No completed period yet; 0 sale(s) counted so far."
    )


def test_dead_letters_and_late_sales_by_reason() -> None:
    assert dead_letters_check({}).flag == OK
    check = dead_letters_check({"late": 3, "malformed": 2})
    assert check.flag == WARN
    assert check.detail == {"by_reason": {"late": 3, "malformed": 2}, "late": 3, "total": 5,
                            "fleet": None}  # fmt: skip
    assert "5 dead letter(s)" in check.sentence and "(3 late, 2 malformed)" in check.sentence
    assert "3 of them late sales" in check.sentence


def test_flip_lateness_from_the_trail_against_the_calendar() -> None:
    spec = _spec()
    at = [START + timedelta(seconds=0.5), START + timedelta(days=1, seconds=75)]
    records = [
        {"kind": "started", "at": at[0].isoformat(), "detail": {"period": 0, "state": "running"}},
        {"kind": "flipped", "at": at[1].isoformat(), "detail": {"period": 1}},
        # a pause announces a state with its period: no flip
        {
            "kind": "paused",
            "at": (at[1] + timedelta(hours=1)).isoformat(),
            "detail": {"period": 1, "state": "paused"},
        },  # fmt: skip
        {"kind": "command", "at": at[1].isoformat(), "detail": {"command": "pause"}},
    ]
    assert flip_lateness(spec, records) == {0: 0.5, 1: 75.0}
    # a boundary that passed before the experiment was created is a backfill, not late
    created = int((START + timedelta(hours=2)).timestamp() * 1000)
    assert flip_lateness(spec, records, created) == {1: 75.0}


@pytest.mark.parametrize(
    ("lateness", "missed", "flag"),
    [({}, 0, OK), ({0: 0.5, 1: 2.0}, 0, OK), ({0: 0.5, 1: 30.0}, 0, WARN),
     ({0: 0.5, 1: 75.0}, 0, PROBLEM), ({0: 0.5}, 2, PROBLEM)],
)  # fmt: skip
def test_the_flip_flag(lateness: dict[int, float], missed: int, flag: str) -> None:
    assert flip_check(lateness, missed).flag == flag


def test_only_the_recent_flips_are_judged() -> None:
    late_long_ago = {0: 500.0} | {k: 1.0 for k in range(1, 11)}
    assert flip_check(late_long_ago, 0).flag == OK


@pytest.mark.parametrize(
    ("period", "age", "flag"),
    [
        # a daily period (60 s cycles): fresh for a day, a problem after two
        (timedelta(days=1), timedelta(hours=2), OK),
        (timedelta(days=1), timedelta(hours=30), WARN),
        (timedelta(days=1), timedelta(days=3), PROBLEM),
        # an hourly one: fresh for an hour, a problem after the alert's 3 hours
        (timedelta(hours=1), timedelta(minutes=50), OK),
        (timedelta(hours=1), timedelta(hours=2), WARN),
        (timedelta(hours=1), timedelta(hours=4), PROBLEM),
    ],
)
def test_the_freshness_of_the_last_look(period: timedelta, age: timedelta, flag: str) -> None:
    now = START + timedelta(days=5)
    check = freshness_check(now - age, now, period, timedelta(seconds=60), True, 5)
    assert check.flag == flag
    assert check.detail["age_seconds"] == age.total_seconds()


def test_no_look_yet_and_a_stopped_experiment() -> None:
    now = START + timedelta(days=5)
    day, minute = timedelta(days=1), timedelta(seconds=60)
    assert freshness_check(None, now, day, minute, True, 1).flag == OK  # too early for one
    assert freshness_check(None, now, day, minute, True, 3).flag == WARN
    old = freshness_check(now - timedelta(days=4), now, day, minute, False, 5)
    assert old.flag == OK and "not running" in old.sentence


def test_balance_by_the_largest_standardised_difference() -> None:
    per_arm = {"treatment": 100, "control": 100}
    assert balance_check({"unit_cost": 0.05}, per_arm).flag == OK
    assert balance_check({"unit_cost": -0.15, "x": 0.02}, per_arm).flag == WARN
    bad = balance_check({"unit_cost": 0.3}, per_arm)
    assert bad.flag == PROBLEM
    assert bad.sentence == (
        "The arms are imbalanced: the largest standardised mean difference is +0.30 "
        "(unit_cost); products per arm: treatment 100, control 100."
    )
    none = balance_check({}, per_arm)
    assert none.flag == OK and "products per arm: treatment 100, control 100" in none.sentence


def test_the_balance_of_the_spec_s_unit_costs() -> None:
    # four products, two an arm: costs 1, 2 (control) and 3, 4 (treatment); means 3.5 and
    # 1.5, sample SD of 1, 2, 3, 4 = sqrt(5/3): SMD = 2 / sqrt(5/3)
    products = ["p000", "p001", "p002", "p003"]
    spec = _spec(products=products, unit_costs={"p000": 1.0, "p001": 2.0, "p002": 3.0,
                                                "p003": 4.0})  # fmt: skip
    df = _panel(["control", "control", "treatment", "treatment"], "control", 0.5)
    got = panel_figures(df.drop(columns="arm"), spec)
    assert got["smd"]["unit_cost"] == pytest.approx(2 / math.sqrt(5 / 3))
    assert got["products_per_arm"] == {"treatment": 2, "control": 2}
    assert balance_check(got["smd"], got["products_per_arm"]).flag == PROBLEM


def test_the_overall_flag_is_the_worst() -> None:
    assert worst([]) == OK
    assert worst([OK, WARN, OK]) == WARN
    assert worst([WARN, PROBLEM, OK]) == PROBLEM


def test_the_list_s_flags_need_no_panel() -> None:
    now = START + timedelta(days=5)
    row = {"state": "running", "period": 4, "missed_flips": 0, "period_seconds": 86400.0}

    class S:
        analysis_interval = 60.0

    fresh = (now - timedelta(hours=1)).isoformat()
    assert health.list_flags(row, fresh, now, S()) == {"freshness": OK, "flips": OK, "flag": OK}
    stale = (now - timedelta(days=3)).isoformat()
    assert health.list_flags(row | {"missed_flips": 1}, stale, now, S()) == {
        "freshness": PROBLEM, "flips": PROBLEM, "flag": PROBLEM,
    }  # fmt: skip
