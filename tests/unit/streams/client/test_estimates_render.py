"""`pricelab estimates`: the latest message per estimator and segment, shown as a table."""

from __future__ import annotations

from streams.client.estimates import latest_of, primary_estimators, render


def _doc(
    estimator: str, effect: float, segment: str | None = None, metric: str | None = None
) -> dict[str, object]:
    doc: dict[str, object] = {"estimator": estimator, "effect": effect, "se": 1.0}
    if metric is not None:
        doc["metric"] = metric
    if segment is not None:
        doc |= {"segment": segment, "pvalue_bh": 0.04}
    return doc


def test_segments_do_not_overwrite_the_whole_experiments_estimate() -> None:
    docs = [
        _doc("dm", 1.0),
        _doc("dm", 5.0, "shoes"),
        _doc("ht", 2.0),
        _doc("dm", 7.0, "bags"),
        _doc("dm", 1.5),  # a later look of the whole experiment
    ]
    latest = latest_of(docs)
    assert [(k, d["effect"]) for k, d in latest.items()] == [
        (("units", "dm", "", ""), 1.5),  # a v1 message without a metric measured units
        (("units", "ht", "", ""), 2.0),
        (("units", "dm", "bags", ""), 7.0),
        (("units", "dm", "shoes", ""), 5.0),
    ]
    lines = render(list(latest.values())).splitlines()
    assert lines[0].split()[0] == "segment" and lines[0].split()[-1] == "pvalue_bh"
    assert lines[1].split()[:2] == ["-", "-"] and lines[1].split()[2] == "dm"
    assert lines[3].split()[0] == "bags" and lines[3].split()[-1] == "0.04"


def test_no_segment_column_without_segments() -> None:
    header = render([_doc("dm", 1.0)]).splitlines()[0].split()
    assert header[:2] == ["metric", "estimator"] and "segment" not in header


def test_one_row_per_metric_and_estimator_in_the_metrics_order() -> None:
    docs = [
        _doc("dm", 9.0, metric="price"),
        _doc("dm", 1.0, metric="units"),
        _doc("dm", 3.0, metric="revenue"),
        _doc("ht", 2.0, metric="units"),
        {"estimator": "wald_within_product", "metric": "elasticity", "effect": None,
         "identified": False, "note": "not identified: the price did not change"},
        _doc("dm", 4.0, metric="profit"),
    ]  # fmt: skip
    latest = latest_of(docs)
    assert [k[:2] for k in latest] == [
        ("units", "dm"), ("units", "ht"), ("revenue", "dm"), ("profit", "dm"), ("price", "dm"),
        ("elasticity", "wald_within_product"),
    ]  # fmt: skip
    lines = render(list(latest.values())).splitlines()
    assert lines[0].split()[-1] == "note" and lines[-1].endswith(
        "not identified: the price did not change"
    )
    assert lines[-1].split()[2] == "-"  # no effect


def test_a_k_arm_experiment_shows_every_arm_with_its_simultaneous_interval() -> None:
    sim = {"sim_ci_low": 0.5, "sim_ci_high": 3.5, "sim_method": "dunnett-t"}
    docs = [
        _doc("dm", 2.0) | {"arm": "p95"} | sim,
        _doc("dm", -1.0) | {"arm": "p105"} | sim,
        _doc("dm", 2.5) | {"arm": "p95"} | sim,  # a later look
    ]
    latest = latest_of(docs)
    assert [(k, d["effect"]) for k, d in latest.items()] == [
        (("units", "dm", "", "p105"), -1.0),
        (("units", "dm", "", "p95"), 2.5),
    ]
    lines = render(list(latest.values())).splitlines()
    header = lines[0].split()
    assert header[0] == "arm" and header[-3:] == ["sim_ci_low", "sim_ci_high", "sim_method"]
    assert lines[2].split()[0] == "p95" and lines[2].split()[-1] == "dunnett-t"
    assert "arm" not in render([_doc("dm", 1.0)]).splitlines()[0].split()


def _look(estimator: str, metric: str, as_of: str, effect: float) -> dict[str, object]:
    return _doc(estimator, effect, metric=metric) | {"as_of": as_of}


def test_each_metric_shows_the_designs_primary_estimator_first_and_alone_by_default() -> None:
    # look 1: fe's profit was not identified, so dm came first at that look; at look 2 the
    # design's order (fe, dm) holds. The table follows the latest look's first estimator.
    docs = [
        _look("dm", "profit", "2026-06-01T00:00:00Z", 30.0),
        {"estimator": "fe", "metric": "profit", "as_of": "2026-06-01T00:00:00Z",
         "identified": False, "note": "one period"},
        _look("fe", "units", "2026-06-02T00:00:00Z", 1.0),
        _look("dm", "units", "2026-06-02T00:00:00Z", 2.0),
        _look("fe", "profit", "2026-06-02T00:00:00Z", -1.9),
        _look("dm", "profit", "2026-06-02T00:00:00Z", 30.5),
    ]  # fmt: skip
    assert primary_estimators(docs) == {("units", "", ""): "fe", ("profit", "", ""): "fe"}
    every = latest_of(docs)
    assert [k[:2] for k in every] == [
        ("units", "fe"), ("units", "dm"), ("profit", "fe"), ("profit", "dm"),
    ]  # fmt: skip
    shown = latest_of(docs, primary_only=True, lead="profit")  # the verdict's metric leads
    assert [(k[:2], d["effect"]) for k, d in shown.items()] == [
        (("profit", "fe"), -1.9),
        (("units", "fe"), 1.0),
    ]


def test_a_demand_curve_reads_as_evidence_beside_the_verdict() -> None:
    """`pricelab estimates` on a ladder: the curve's peak is labelled beside the verdict it is
    shown with (none given: the reading the worker published with the message), and a look
    without an interval says so instead of printing one of zero width."""
    from streams.client.estimates import render_demand

    doc: dict[str, object] = {
        "as_of": "2026-01-03T00:00:00Z", "n_units": 40, "optimal_price_ratio": 1.022,
        "optimal_price_ratio_ci_low": 0.99, "optimal_price_ratio_ci_high": 1.05,
        "profit_change_at_optimum": 0.38, "profit_change_at_optimum_ci_low": -0.6,
        "profit_change_at_optimum_ci_high": 1.2, "identified": True, "price_ratio_high": 1.05,
        "points": [{"arm": "p97", "price_ratio": 0.97}, {"arm": "list", "price_ratio": 1.0},
                   {"arm": "p105", "price_ratio": 1.05}],
    }  # fmt: skip
    text = render_demand(doc, {"verdict": "keep_running", "arm": "p97"})
    assert (
        "where the evidence points, not yet decided: the fitted profit curve peaks at x1.022"
        in text
    )
    assert "[0.990, 1.050]" in text and "[-0.6, +1.2]" in text
    assert "leading arm p97" in text and "test x1.02 next" in text
    published = doc | {"reading": {"headline": "evidence for the decision, not a second "
                                   "decision", "text": "Decided: the verdict ships arm p105."}}  # fmt: skip
    assert "Decided: the verdict ships arm p105." in render_demand(published)
    unplaced = doc | {"identified": False, "optimal_price_ratio_ci_low": None,
                      "optimal_price_ratio_ci_high": None, "notes": ["why, in one sentence."]}  # fmt: skip
    text = render_demand(unplaced, {"verdict": "keep_running", "arm": "p97"})
    assert "peaks at x1.022 (no interval)" in text and "! why, in one sentence." in text


def test_the_primary_estimator_is_the_first_at_a_look_whatever_periods_each_counts() -> None:
    # estimators count periods their own way at one look (a crossover's leaves its washout
    # periods out, a difference in differences counts them all): the look is the as_of, and
    # its first estimate is the design's primary, not the one counting more periods
    docs = [
        _look("crossover", "units", "2026-06-02T00:00:00Z", 1.0) | {"n_periods": 8},
        _look("did", "units", "2026-06-02T00:00:00Z", 2.0) | {"n_periods": 10},
    ]
    assert primary_estimators(docs) == {("units", "", ""): "crossover"}
    assert [k[1] for k in latest_of(docs, primary_only=True)] == ["crossover"]


def test_a_metric_whose_every_estimate_is_not_identified_yet_is_still_shown() -> None:
    """At the first look every estimator may say 'not identified' (one period). The default
    table (primary estimators only) dropped the metric, so `pricelab estimates` said 'no
    estimate ... yet' (exit 1) while --all-estimators showed the estimates and their reasons."""
    docs = [
        {"estimator": "fe", "metric": "profit", "as_of": "2026-06-01T00:00:00Z",
         "identified": False, "note": "one period"},
        {"estimator": "dm", "metric": "profit", "as_of": "2026-06-01T00:00:00Z",
         "identified": False, "note": "one period"},
    ]  # fmt: skip
    shown = latest_of(docs, primary_only=True)
    assert [k[:2] for k in shown] == [("profit", "fe")]
