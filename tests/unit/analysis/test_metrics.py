"""Decision metrics: the price paid (a ratio metric), profit, and what reaches the topic."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analysis.elasticity import within_product_elasticity
from analysis.errors import NotEstimable, PanelError
from analysis.metrics import ALL_METRICS, fit_price, metrics_of, negative_margins
from analysis.panel import Panel
from analysis.results import published_fields
from analysis.worker import AnalysisWorker, fit_metric, metric_panels
from controller.settings import Settings
from core.ports import EstimatorPlan, ExperimentInfo
from lab.compare import elasticity_experiment
from streams.worker.schemas import EstimateMessage, Metric
from streams.worker.sinks import KafkaEstimateSink
from tests.unit.analysis.test_worker import ManualClock


class RecordingPublisher:
    """The sink's publisher port, recording the JSON each message would carry."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    async def send(self, topic: str, msg: object, key: object = None) -> None:
        self.sent.append(json.loads(msg.model_dump_json()))  # type: ignore[attr-defined]

    async def flush(self) -> None:
        return None


DM = EstimatorPlan("dm", {"cluster": "unit"})


def _price_cells(seed: int, n: int = 40, t: int = 28, cut: float = 0.05):
    """Random days on products whose list prices differ tenfold; the treatment charges ``cut``
    less and sells 10% more. Returns the cells and the true difference in the average price
    paid, sum(price x E units) / sum(E units) per arm (the units lift cancels)."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(5, 50, n)
    level = rng.uniform(2, 30, n)
    w = rng.random((n, t)) < 0.5
    units = rng.poisson(level[:, None] * np.where(w, 1.10, 1.0))
    paid = price[:, None] * np.where(w, 1 - cut, 1.0)
    df = pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], t),
            "period": np.tile(np.arange(t), n),
            "units": units.ravel().astype(float),
            "revenue": (units * paid).ravel(),
            "treated": w.ravel().astype(int),
            "probability": 0.5,
            "blackout": False,
        }
    )
    p_c = float(price @ level / level.sum())
    return df, -cut * p_c, p_c


def test_the_price_paid_recovers_its_change_and_covers_absolute_and_relative() -> None:
    hits = rel_hits = 0
    errors = []
    runs = 200
    for seed in range(runs):
        df, truth, _ = _price_cells(seed)
        r = fit_metric(DM, metric_panels(df), "price")
        lo, hi = r.conf_int(0.05)
        hits += lo <= truth <= hi
        errors.append(r.effect - truth)
        rel = r.relative(0.05)
        rel_hits += rel["relative_ci_low"] <= -0.05 <= rel["relative_ci_high"]
    # 200 runs: the Monte Carlo SE of a 95% coverage is 1.5 points
    assert 0.91 <= hits / runs <= 0.99
    assert 0.91 <= rel_hits / runs <= 0.99
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(runs)


def test_the_price_paid_is_a_ratio_of_sums_not_a_mean_of_cell_prices() -> None:
    df, _, _ = _price_cells(3)
    r = fit_metric(DM, metric_panels(df), "price")
    t, c = df[df["treated"] == 1], df[df["treated"] == 0]
    expect = t["revenue"].sum() / t["units"].sum() - c["revenue"].sum() / c["units"].sum()
    assert r.effect == pytest.approx(expect, rel=1e-12)
    assert r.metric == "price" and r.details["mean_control"] == pytest.approx(
        c["revenue"].sum() / c["units"].sum()
    )


FE = EstimatorPlan("fe", {"cluster": "unit"})


def test_the_price_paid_within_products_covers_and_is_far_tighter_than_the_pooled_ratio() -> None:
    runs, hits, rel_hits = 200, 0, 0
    errors, se_fe, se_dm = [], [], []
    for seed in range(runs):
        df, truth, _ = _price_cells(seed)
        panels = metric_panels(df)
        r = fit_metric(FE, panels, "price")
        lo, hi = r.conf_int(0.05)
        hits += lo <= truth <= hi
        rel = r.relative(0.05)
        rel_hits += rel["relative_ci_low"] <= -0.05 <= rel["relative_ci_high"]
        errors.append(r.effect - truth)
        se_fe.append(r.se)
        se_dm.append(fit_metric(DM, panels, "price").se)
    assert 0.91 <= hits / runs <= 0.99 and 0.91 <= rel_hits / runs <= 0.99
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(runs)
    assert np.mean(np.array(se_fe) < np.array(se_dm)) > 0.9


def test_the_price_paid_within_products_ignores_which_products_the_draw_treated_more() -> None:
    # two products, prices 10 and 100, each cut by 5% when treated; the dear one is treated
    # in 9 of 10 periods: the pooled ratio's treated arm is mostly the dear product
    rows = []
    for product, price, treated in (("cheap", 10.0, [1, 0] * 5), ("dear", 100.0, [1] * 9 + [0])):
        for k, w in enumerate(treated):
            rows.append({"product": product, "period": k, "units": 4.0, "treated": w,
                         "revenue": 4.0 * price * (0.95 if w else 1.0), "probability": 0.5,
                         "blackout": False})  # fmt: skip
    panels = metric_panels(pd.DataFrame(rows))
    within = fit_metric(FE, panels, "price")
    assert within.effect == pytest.approx(0.95 * 55.0 - 55.0)  # (9.5 + 95) / 2 - (10 + 100) / 2
    assert within.relative(0.05)["relative_effect"] == pytest.approx(-0.05)
    pooled = fit_metric(DM, panels, "price")
    assert pooled.effect > 20  # the mix, not the price: the dear product dominates treatment


def test_the_price_paid_is_left_to_fe_and_dm() -> None:
    df, _, _ = _price_cells(0)
    with pytest.raises(NotEstimable):
        fit_metric(EstimatorPlan("ht", {"p": 0}), metric_panels(df), "price")


def test_no_control_sale_is_one_sentence() -> None:
    df, _, _ = _price_cells(0)
    df.loc[df["treated"] == 0, ["units", "revenue"]] = 0.0
    panels = metric_panels(df)
    with pytest.raises(PanelError, match="no unit was sold in the control arm"):
        fit_price(DM, panels["units"], panels["revenue"])
    # units and revenue: a control mean of zero has no relative form, and says so
    rel = fit_metric(DM, panels, "revenue").relative(0.05)
    assert rel["relative_effect"] is None and "control mean is zero" in rel["relative_note"]


def test_metrics_follow_the_columns_profit_only_with_costs() -> None:
    assert metrics_of(["units"]) == ("units",)
    assert metrics_of(["units", "revenue"]) == ("units", "revenue", "price")
    assert metrics_of(["units", "revenue", "profit"]) == ("units", "revenue", "profit", "price")


def test_the_wire_names_every_metric_the_analysis_publishes() -> None:
    assert typing.get_args(Metric) == ALL_METRICS


def test_profit_is_published_when_the_cells_carry_it_and_margins_below_cost_are_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    df, _, _ = _price_cells(1)
    costs = {p: 12.0 for p in df["product"].unique()}  # some list prices are below 12
    df["profit"] = df["revenue"] - df["units"] * df["product"].map(costs)

    class Source:
        async def experiments(self):  # type: ignore[no-untyped-def]
            return [ExperimentInfo("e1", "random-days", "running", {"unit_costs": costs})]

        async def panel(self, exp_id, as_of):  # type: ignore[no-untyped-def]
            return df

    publisher = RecordingPublisher()
    sink = KafkaEstimateSink(publisher, Settings())  # type: ignore[arg-type]
    worker = AnalysisWorker(Source(), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    with caplog.at_level("WARNING", logger="pricelab.analysis"):
        import asyncio

        asyncio.run(worker.run_once())
        asyncio.run(worker.run_once())
    rows = publisher.sent
    got = {(r["metric"], r["estimator"]) for r in rows}
    assert (
        ("profit", "dm") in got
        and ("price", "dm") in got
        and ("elasticity", "wald_within_product") in got
    )
    below = sorted(
        p for p, g in df.groupby("product") if g["revenue"].sum() < 12.0 * g["units"].sum()
    )
    assert below and negative_margins(df, costs) == below
    told = [r for r in caplog.records if "below their unit cost" in r.getMessage()]
    assert len(told) == 1  # once per experiment, not every cycle
    profit = next(r for r in rows if r["metric"] == "profit" and r["estimator"] == "dm")
    assert profit["relative_effect"] is not None and profit["v"] == 2


def test_an_elasticity_that_is_not_identified_goes_out_as_such() -> None:
    x = elasticity_experiment(1, price_change=0.0)
    result = within_product_elasticity(x.units, x.revenue.Y)
    fields = published_fields(result, None)
    msg = EstimateMessage(
        experiment="e1",
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
        **{k: v for k, v in fields.items() if k in EstimateMessage.model_fields},
    )
    doc = json.loads(msg.model_dump_json())
    assert doc["identified"] is False and doc["effect"] is None and doc["ci_low"] is None
    assert "did not change measurably" in doc["note"]
    with pytest.raises(ValueError, match="identified estimate needs"):
        EstimateMessage(**(doc | {"identified": True}))
    with pytest.raises(ValueError, match="identified estimate needs a finite effect"):
        EstimateMessage(**(doc | {"identified": True, "note": None, "effect": float("nan")}))


def test_an_identified_elasticity_carries_fieller_not_a_wald_interval() -> None:
    x = elasticity_experiment(2)
    result = within_product_elasticity(x.units, x.revenue.Y)
    fields = published_fields(result, None)
    assert fields["ci_low"] == result.interval.low and fields["ci_high"] == result.interval.high
    assert fields["effect"] == result.elasticity and fields["se"] > 0
    assert fields["relative_note"] and fields.get("relative_effect") is None


def test_another_column_of_the_same_cells_is_pivoted_alike() -> None:
    df, _, _ = _price_cells(4)
    shuffled = df.sample(frac=1.0, random_state=0)
    units = Panel.from_long(
        shuffled, unit="product", time="period", outcome="units", treated="treated"
    )
    revenue = units.outcome_of(shuffled, "revenue", unit="product", time="period")
    direct = Panel.from_long(
        shuffled, unit="product", time="period", outcome="revenue", treated="treated"
    )
    np.testing.assert_array_equal(revenue.Y, direct.Y)
    bad = shuffled.assign(revenue=np.nan)
    with pytest.raises(PanelError, match="non-finite"):
        units.outcome_of(bad, "revenue", unit="product", time="period")


def _publish(result: object, cs: tuple[float, float] | None = None) -> dict[str, object]:
    import asyncio

    publisher = RecordingPublisher()
    sink = KafkaEstimateSink(publisher, Settings())  # type: ignore[arg-type]
    asyncio.run(sink.publish("e1", result, datetime(2026, 1, 1, tzinfo=UTC), cs))  # type: ignore[arg-type]
    (doc,) = publisher.sent
    return doc


def test_the_sink_publishes_an_estimate_without_a_standard_error_as_null_not_a_crash() -> None:
    from analysis.results import EstimateResult

    doc = _publish(EstimateResult("ht", 2.5, float("nan"), 10, 5, se_method="none", metric="units"))
    assert doc["effect"] == 2.5 and doc["se"] is None and doc["ci_low"] is None
    assert doc["identified"] is True and doc["v"] == 2


def test_the_sink_publishes_an_elasticity_that_is_not_identified_without_numbers() -> None:
    x = elasticity_experiment(1, price_change=0.0)
    doc = _publish(within_product_elasticity(x.units, x.revenue.Y))
    assert doc["metric"] == "elasticity" and doc["identified"] is False
    assert doc["effect"] is None and doc["ci_low"] is None and "did not change" in doc["note"]


def test_with_random_days_estimators_fe_is_every_metrics_primary_and_segments_follow_it() -> None:
    import asyncio

    from controller.designs import get_design

    df, _, _ = _price_cells(6)
    products = sorted(df["product"].unique())
    df["profit"] = df["revenue"] - df["units"] * 3.0
    plans = get_design("random-days").estimators(None)  # type: ignore[arg-type]
    segments = {"low": products[:20], "high": products[20:]}
    info = ExperimentInfo(
        "e1", "random-days", "running", {"segments": segments}, estimators=tuple(plans)
    )

    class Source:
        async def experiments(self):  # type: ignore[no-untyped-def]
            return [info]

        async def panel(self, exp_id, as_of):  # type: ignore[no-untyped-def]
            return df

    publisher = RecordingPublisher()
    sink = KafkaEstimateSink(publisher, Settings())  # type: ignore[arg-type]
    asyncio.run(
        AnalysisWorker(Source(), sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC))).run_once()
    )
    whole = [(r["metric"], r["estimator"]) for r in publisher.sent if r["segment"] is None]
    first = {}
    for metric, estimator in whole:
        first.setdefault(metric, estimator)
    assert first == {m: "fe" for m in ("units", "revenue", "profit", "price")} | {
        "elasticity": "wald_within_product"
    }
    assert ("price", "dm") in whole and ("price", "ht") not in whole
    seg = {(r["metric"], r["estimator"], r["segment"]) for r in publisher.sent if r["segment"]}
    assert {(m, e) for m, e, _ in seg} == {
        (m, "fe") for m in ("units", "revenue", "profit", "price")
    }


def test_a_profit_guardrail_needs_every_products_cost() -> None:
    from pathlib import Path

    import yaml

    from controller.spec import ExperimentSpec

    doc = yaml.safe_load((Path(__file__).parents[3] / "docs" / "walkthrough.yaml").read_text())
    doc["guardrails"] = [{"metric": "profit", "max_drop_pct": 5}]
    ExperimentSpec(**doc)  # every product has a cost: accepted
    doc["unit_costs"] = {"P0001": 1.0}
    with pytest.raises(ValueError, match="a profit guardrail needs unit_costs for every product"):
        ExperimentSpec(**doc)


def test_the_hajek_price_is_the_pooled_price_where_every_period_is_a_window_of_its_own() -> None:
    """At lag 0 with a coin every period at 0.5 every window has the same weight, so the
    switchback's window-weighted price is the pooled price of the arms' cells (and covers
    the truth as the pooled one does)."""
    hajek = EstimatorPlan("hajek", {"p": 0})
    hits, runs = 0, 100
    for seed in range(runs):
        df, truth, _ = _price_cells(seed)
        panels = metric_panels(df)
        h = fit_price(hajek, panels["units"], panels["revenue"])
        d = fit_price(DM, panels["units"], panels["revenue"])
        assert h.effect == pytest.approx(d.effect, rel=1e-9)
        assert h.details["mean_control"] == pytest.approx(d.details["mean_control"], rel=1e-9)
        lo, hi = h.conf_int(0.05)
        hits += lo <= truth <= hi
    assert hits / runs >= 0.9  # 100 runs: a nominal 0.95 has an MC SE of 0.022
