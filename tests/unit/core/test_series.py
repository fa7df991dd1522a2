"""core.series: the name of an estimate series, from the worker's side and the reader's."""

from __future__ import annotations

from core.series import arm_label, segment_label, series, series_of_message


def test_units_keep_the_estimators_label_and_other_metrics_add_theirs():
    assert series("fe", "units") == "fe"
    assert series("fe", "revenue") == "fe:revenue"
    assert series(arm_label("dm", "p90"), "price") == "dm@arm:p90:price"
    assert series(segment_label("dm", "food"), "units") == "dm@food"


def test_a_message_is_named_by_its_estimator_metric_arm_or_segment_or_its_kind():
    assert series_of_message({"estimator": "wald_within_product", "metric": "elasticity"}) == (
        "wald_within_product:elasticity"
    )
    assert series_of_message({"estimator": "fe", "metric": "units", "arm": None}) == "fe"
    assert series_of_message({"estimator": "dm", "metric": "revenue", "arm": "p95"}) == (
        "dm@arm:p95:revenue"
    )
    assert series_of_message({"estimator": "dm", "metric": "units", "segment": "food"}) == (
        "dm@food"
    )
    # a verdict names its estimator too, but its series is the verdict's
    assert series_of_message({"kind": "verdict", "estimator": "fe", "metric": "units"}) == (
        "verdict"
    )
    assert series_of_message({"kind": "demand"}) == "demand"
