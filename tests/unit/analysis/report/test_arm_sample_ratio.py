"""The report's per-arm sample-ratio check (a k-arm chi-square against the spec's allocations)
and the heatmap's product order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.report import arm_sample_ratio_check, build_report, sample_ratio_check
from analysis.report.figures import _product_order


def _cells(arms: list[str], probability: float = 0.6) -> pd.DataFrame:
    """One product-period cell per arm label (random days: every cell is a draw)."""
    n = len(arms)
    return pd.DataFrame(
        {
            "product": [f"P{i % 10}" for i in range(n)],
            "period": [i // 10 for i in range(n)],
            "units": 1.0,
            "arm": arms,
            "treated": [int(a != "list") for a in arms],
            "probability": probability,
            "blackout": False,
        }
    )


ALLOC = {"list": 0.4, "p95": 0.3, "p105": 0.3}


def test_counts_at_their_allocations_give_a_zero_statistic() -> None:
    srm = arm_sample_ratio_check(
        _cells(["list"] * 40 + ["p95"] * 30 + ["p105"] * 30), ALLOC, "list"
    )
    assert srm is not None and srm.level == "cell" and srm.n == 100
    assert srm.expected == pytest.approx({"list": 40.0, "p95": 30.0, "p105": 30.0})
    assert srm.statistic == pytest.approx(0.0) and srm.pvalue == pytest.approx(1.0)


def test_one_arm_short_of_its_share_is_flagged() -> None:
    # 15 draws moved from p105 to p95: (15^2 / 30) * 2 = 15 on 2 degrees of freedom, whose
    # survival function is exp(-15 / 2)
    srm = arm_sample_ratio_check(
        _cells(["list"] * 40 + ["p95"] * 45 + ["p105"] * 15), ALLOC, "list"
    )
    assert srm is not None
    assert srm.observed == {"list": 40, "p95": 45, "p105": 15}
    assert srm.statistic == pytest.approx(15.0)
    assert srm.pvalue == pytest.approx(math.exp(-7.5))


def test_the_two_arm_check_would_miss_it() -> None:
    # treated against control is 60 of 100 at probability 0.6: only the per-arm check sees
    # that p95 took p105's draws
    two = sample_ratio_check(_cells(["list"] * 40 + ["p95"] * 45 + ["p105"] * 15))
    assert two is not None and two.treated == 60 and two.pvalue > 0.5


def test_no_check_without_allocations_or_with_an_arm_the_spec_does_not_list() -> None:
    cells = _cells(["list"] * 40 + ["p95"] * 30 + ["p90"] * 30)
    assert arm_sample_ratio_check(cells, ALLOC, "list") is None
    assert arm_sample_ratio_check(cells.drop(columns="arm"), ALLOC, "list") is None


def test_a_product_that_keeps_its_arm_is_one_draw() -> None:
    # 30 products each in one arm for 5 periods: 30 draws, not 150
    arms = ["list"] * 12 + ["p95"] * 9 + ["p105"] * 9
    rows = [
        {"product": f"P{i}", "period": t, "units": 1.0, "arm": a, "treated": int(a != "list"),
         "probability": 0.6, "blackout": False}
        for i, a in enumerate(arms) for t in range(5)
    ]  # fmt: skip
    srm = arm_sample_ratio_check(pd.DataFrame(rows), ALLOC, "list")
    assert srm is not None and srm.level == "product" and srm.n == 30
    assert srm.expected == pytest.approx({"list": 12.0, "p95": 9.0, "p105": 9.0})


def test_products_are_in_id_order_with_digits_as_numbers() -> None:
    rng = np.random.default_rng(3)
    rows = [
        {"product": p, "period": t, "treated": int(rng.random() < 0.5)}
        for p in ("P10", "P2", "P1", "P33", "P3")
        for t in range(6)
    ]
    assert _product_order(pd.DataFrame(rows)) == ["P1", "P2", "P3", "P10", "P33"]


def test_a_staggered_design_keeps_its_staircase() -> None:
    starts = {"P1": 4, "P2": 1, "P3": 6, "P10": 2}  # 6: never treated in 6 periods
    rows = [
        {"product": p, "period": t, "treated": int(t >= s)}
        for p, s in starts.items()
        for t in range(6)
    ]
    assert _product_order(pd.DataFrame(rows)) == ["P2", "P10", "P1", "P3"]


def test_the_report_shows_the_per_arm_table() -> None:
    cells = _cells(["list"] * 40 + ["p95"] * 45 + ["p105"] * 15)
    est = pd.DataFrame(
        [
            {"metric": "units", "estimator": "dm", "arm": a, "n_periods": 10, "effect": 0.1,
             "se": 0.1, "ci_low": -0.1, "ci_high": 0.3, "as_of": "2026-06-01T00:00:00Z"}
            for a in ("p95", "p105")
        ]
    )  # fmt: skip
    page = build_report(cells, est, title="t", design="random-days", allocations=ALLOC).html
    assert "Sample ratio per arm: 100 independent draws" in page
    assert "investigate the assignment pipeline" in page
    bare = build_report(cells, est, title="t", design="random-days").html
    assert "No per-arm sample-ratio check" in bare
