"""The market at any period length (lab.market.Market.slots, period_outcomes): hours from the
intraday profile, DST days of 23 and 25 hours, carryover in periods, and the daily market as
the special case of one period a day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from controller.periods import period_bounds
from controller.spec import load_spec
from lab.config import DEFAULT_INTRADAY_PROFILE
from lab.market import Market, MarketConfig
from lab.simulate import experiment_slots, run_spec

BERLIN = "Europe/Berlin"
SPRING, AUTUMN = dt.date(2026, 3, 29), dt.date(2026, 10, 25)  # 23 and 25 hours in Berlin


def _spec(period: str, start: dt.date, days: int, design: str = "random-days", **extra: object):
    zone = ZoneInfo(BERLIN)
    begin = dt.datetime.combine(start, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(start + dt.timedelta(days=days), dt.time(0), tzinfo=zone)
    doc = {
        "id": f"x-{period.lower()}",
        "design": design,
        "products": [f"p{i}" for i in range(12)],
        "treatment_policy": "t",
        "control_policy": "c",
        "start": begin.isoformat(),
        "end": end.isoformat(),
        "timezone": BERLIN,
        "period": period,
        "seed": 4,
        **extra,
    }
    return load_spec(doc)


def _market(spec, **cfg: object) -> Market:  # type: ignore[no-untyped-def]
    from lab.simulate import market_for_spec

    return market_for_spec(spec, MarketConfig(**cfg), seed=7)  # type: ignore[arg-type]


@pytest.mark.parametrize("period", ["PT1H", "PT4H", "PT6H", "PT8H"])
@pytest.mark.parametrize("day", [SPRING, dt.date(2026, 3, 30), AUTUMN])
def test_a_days_periods_share_its_demand_whatever_its_length(period: str, day: dt.date) -> None:
    spec = _spec(period, day, 1)
    slots = experiment_slots(spec, _market(spec))
    hours = sum(len(s.hour_weights) for s in slots)
    assert hours == {SPRING: 23, AUTUMN: 25}.get(day, 24)
    assert sum(s.mass for s in slots) == pytest.approx(1.0, abs=1e-12)
    assert [s.slot for s in slots] == list(range(len(slots)))
    if period == "PT1H" and day == SPRING:
        (gap,) = [s for s in slots if s.start == s.end]  # 02:00 does not exist that night
        assert gap.mass == 0.0 and gap.slot == 2


def test_the_daily_market_is_one_period_a_day() -> None:
    # a daily grid through the period model gives the daily model's own draws, DST days too
    spec = _spec("P1D", dt.date(2026, 3, 26), 6)
    market = _market(spec)
    slots = experiment_slots(spec, market)
    W = np.random.default_rng(0).random((12, 6)) < 0.5
    for t, (slot, o) in enumerate(zip(slots, market.run_slots(W, slots), strict=True)):
        day = market.day_outcomes(t, W[:, : t + 1])
        assert slot.mass == 1.0
        for field in ("units", "expected_units", "expected_units_control", "true_effect"):
            assert np.array_equal(getattr(o, field), getattr(day, field)), field


def test_hours_sell_as_the_intraday_profile_says() -> None:
    spec = _spec("PT1H", dt.date(2026, 4, 6), 28)
    market = _market(spec, outlier_probability=0.0, n_products=12)
    slots = experiment_slots(spec, market)
    W = np.zeros((12, len(slots)), dtype=bool)
    units = np.array([o.units.sum() for o in market.run_slots(W, slots)], dtype=float)
    by_hour = units.reshape(28, 24).sum(axis=0)
    profile = np.asarray(DEFAULT_INTRADAY_PROFILE) / sum(DEFAULT_INTRADAY_PROFILE)
    expected = by_hour.sum() * profile
    # Poisson-gamma counts: each hour's total within 5 SDs of its share
    assert np.all(np.abs(by_hour - expected) < 5 * np.sqrt(expected * 3) + 5)
    assert np.corrcoef(by_hour, profile)[0, 1] > 0.98


def test_a_weekend_profile_moves_saturdays_hours_only() -> None:
    late = tuple(float(h >= 12) + 0.01 for h in range(24))  # a weekend that sleeps in
    spec = _spec("PT1H", dt.date(2026, 4, 6), 7)  # Monday to Sunday
    plain = experiment_slots(spec, _market(spec))
    moved = experiment_slots(spec, _market(spec, intraday_profile_weekend=late))
    for a, b in zip(plain, moved, strict=True):
        weekend = a.start.astimezone(dt.UTC).date().weekday() >= 5 or a.day >= 5
        if a.day < 5:
            assert a.mass == b.mass
        elif weekend and a.slot < 10:
            assert b.mass < a.mass


def test_carryover_counts_periods() -> None:
    spec = _spec("PT4H", dt.date(2026, 4, 6), 2)
    market = _market(spec, carryover_order=2, carryover_decay=0.5, outlier_probability=0.0)
    slots = experiment_slots(spec, market)
    base = np.zeros((12, len(slots)), dtype=bool)
    k = 6  # period 6 (Tuesday 00:00-04:00)
    for lag, weight in ((0, 1.0), (1, 0.5), (2, 0.25), (3, 0.0)):
        W = base.copy()
        W[:, k - lag] = True
        out = market.run_slots(W, slots)[k]
        mu0 = out.expected_units_control / (1 + market._outlier_mean_factor())
        lift = np.log((out.expected_units - mu0 * market._outlier_mean_factor()) / mu0)
        assert lift == pytest.approx(market.treatment_log_lift * weight, abs=1e-12)


def test_sales_of_a_period_fall_in_it_and_add_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from lab.simulate import write_events

    spec = _spec("PT4H", SPRING, 1, washout="PT1H")
    market = _market(spec)
    sim = run_spec(spec, market)
    write_events(sim, tmp_path)
    sales = [json.loads(line) for line in (tmp_path / "sales.jsonl").open()]
    bounds = [period_bounds(spec, k) for k in range(6)]
    assert bounds[0][1] - bounds[0][0] == dt.timedelta(hours=3)  # 00:00-04:00 lost 02:00
    sold = np.zeros(6)
    for e in sales:
        at = dt.datetime.fromisoformat(e["occurred_at"])
        (k,) = [k for k, (a, b) in enumerate(bounds) if a <= at < b]  # in exactly one period
        sold[k] += e["units"]
    # each period's sales are its panel units (after the washout head) plus the head's
    per_period = sim.panel.groupby("period")[["units", "head_units"]].sum()
    assert np.array_equal(sold, (per_period["units"] + per_period["head_units"]).to_numpy())
    assert per_period["head_units"].sum() > 0  # the heads hold sales (none at 04:00 some nights)
    assert 0.0 < sim.window_share.min() and sim.window_share.max() < 1.0  # noqa: SIM300


@pytest.mark.parametrize("period", ["P2D", "P7D"])
def test_periods_the_market_cannot_lay_are_refused(period: str) -> None:
    from lab.errors import LabError

    spec = _spec(period, dt.date(2026, 4, 6), 4)
    with pytest.raises(LabError, match="whole hours from PT1H to P1D"):
        _market(spec)


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_an_hourly_experiment_recovers_its_effect() -> None:
    # random periods of an hour over a week (168 periods), 30 products: the within-product
    # estimate covers the simulator's truth at the nominal rate
    from analysis.worker import fit_metric, metric_panels
    from core.ports import EstimatorPlan

    hits, runs, errs = 0, 60, []
    for seed in range(runs):
        doc = _spec("PT1H", dt.date(2026, 4, 6), 7).model_dump(mode="json")
        doc |= {"seed": seed, "products": [f"p{i}" for i in range(30)]}
        spec = load_spec(doc)
        market = _market(spec, n_products=30)
        market = type(market)(market.cfg, seed=7, demand_seed=100 + seed,
                              product_ids=market.product_ids)  # fmt: skip
        sim = run_spec(spec, market)
        panels = metric_panels(sim.panel)
        est = fit_metric(EstimatorPlan("fe", {"cluster": "unit"}), panels, "units")
        truth = sim.metric_truth("units")
        lo, hi = est.conf_int()
        hits += lo <= truth <= hi
        errs.append(est.effect - truth)
    assert hits / runs >= 0.88  # 60 runs: 0.95 has an MC SE of 0.028
    assert abs(np.mean(errs)) < 3 * np.std(errs) / np.sqrt(runs)


def test_the_simulator_guide_gives_the_default_profiles() -> None:
    from pathlib import Path

    from lab.config import DEFAULT_WEEKLY_PROFILE

    guide = (Path(__file__).resolve().parents[3] / "docs" / "simulator.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| `intraday_profile` |"))
    assert tuple(float(x) for x in row.split("|")[2].split(",")) == DEFAULT_INTRADAY_PROFILE
    weekly = next(line for line in guide.splitlines() if line.startswith("| `weekly_profile` |"))
    assert all(f"{x}" in weekly for x in DEFAULT_WEEKLY_PROFILE)


def test_the_skipped_spring_hour_carries_nothing_over() -> None:
    """Hourly over the spring-forward night: 02:00 does not exist, so at 03:00 the previous
    period in force is 01:00. Treating only the skipped hour's column must leave 03:00 at its
    control demand; treating 01:00 must carry over into 03:00 at lag 1."""
    spec = _spec("PT1H", SPRING, 1)
    market = _market(spec, carryover_order=1, carryover_decay=0.5, outlier_probability=0.0)
    slots = experiment_slots(spec, market)
    gap = next(i for i, s in enumerate(slots) if s.start == s.end)
    local = ZoneInfo(BERLIN)
    assert slots[gap - 1].start.astimezone(local).hour == 1
    assert slots[gap + 1].start.astimezone(local).hour == 3

    def lift_at_three(treated: int) -> float:
        W = np.zeros((12, len(slots)), dtype=bool)
        W[:, treated] = True
        out = market.run_slots(W, slots)[gap + 1]
        mu0 = out.expected_units_control / (1 + market._outlier_mean_factor())
        return float(np.log((out.expected_units - mu0 * market._outlier_mean_factor()) / mu0)[0])

    assert lift_at_three(gap) == pytest.approx(0.0, abs=1e-12)
    assert lift_at_three(gap - 1) == pytest.approx(market.treatment_log_lift[0] * 0.5, abs=1e-12)
