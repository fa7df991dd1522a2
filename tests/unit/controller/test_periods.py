"""DST: a 23- or 25-hour local day is one period, in several zones and both transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.designs import schedule
from controller.periods import is_empty, n_periods, period_bounds, period_index, period_start
from controller.spec import ExperimentSpec, load_spec

# (zone, spring-forward local date, fall-back local date, shift) for 2026
ZONES = [
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25), timedelta(hours=1)),
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1), timedelta(hours=1)),
    # southern hemisphere: fall back in April, spring forward in October
    ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5), timedelta(hours=1)),
    # a half-hour shift
    ("Australia/Lord_Howe", date(2026, 10, 4), date(2026, 4, 5), timedelta(minutes=30)),
    # transitions at local midnight: 6 Sep starts at 01:00; 4 Apr ends with 23:00 twice
    ("America/Santiago", date(2026, 9, 6), date(2026, 4, 4), timedelta(hours=1)),
]
DAY = timedelta(days=1)


def year_spec(zone: str, period: str = "P1D") -> ExperimentSpec:
    z = ZoneInfo(zone)
    return load_spec(
        dict(
            id="dst",
            products=["a", "b"],
            treatment_policy="t",
            control_policy="c",
            start=datetime(2026, 1, 1, tzinfo=z).isoformat(),
            end=datetime(2027, 1, 1, tzinfo=z).isoformat(),
            timezone=zone,
            period=period,
        )
    )


@pytest.mark.parametrize("zone, spring, fall, shift", ZONES)
def test_every_local_day_is_one_period(
    zone: str, spring: date, fall: date, shift: timedelta
) -> None:
    spec = year_spec(zone)
    z = ZoneInfo(zone)
    assert n_periods(spec) == 365
    lengths = {}
    for k in range(365):
        start, end = period_bounds(spec, k)
        local = start.astimezone(z)
        assert local.date() == date(2026, 1, 1) + timedelta(days=k)
        assert local.hour in (0, 1) and local.minute == 0  # midnight, or 01:00 if skipped
        lengths[local.date()] = end - start
    assert lengths[spring] == DAY - shift
    assert lengths[fall] == DAY + shift
    others = {d: x for d, x in lengths.items() if d not in (spring, fall)}
    assert set(others.values()) == {DAY}


@pytest.mark.parametrize("zone, spring, fall, shift", ZONES)
@settings(max_examples=40, deadline=None)
@given(seconds=st.integers(0, 365 * 86400 - 1))
def test_period_index_is_the_local_day(
    zone: str, spring: date, fall: date, shift: timedelta, seconds: int
) -> None:
    spec = year_spec(zone)
    z = ZoneInfo(zone)
    ts = datetime(2026, 1, 1, tzinfo=z).astimezone(UTC) + timedelta(seconds=seconds)
    ts = min(ts, spec.end - timedelta(seconds=1))
    k = period_index(spec, ts)
    assert k == (ts.astimezone(z).date() - date(2026, 1, 1)).days
    start, end = period_bounds(spec, k)
    assert start <= ts < end


@pytest.mark.parametrize("zone, spring, fall, shift", ZONES)
def test_sub_day_periods_keep_four_slots_per_local_day(
    zone: str, spring: date, fall: date, shift: timedelta
) -> None:
    spec = year_spec(zone, "PT6H")
    z = ZoneInfo(zone)
    assert n_periods(spec) == 4 * 365
    for d in (spring, fall):
        k0 = 4 * (d - date(2026, 1, 1)).days
        day_start = period_start(spec, k0)
        day_end = period_start(spec, k0 + 4)
        assert day_end - day_start == (DAY - shift if d == spring else DAY + shift)
        assert day_end.astimezone(z).date() == d + DAY
        assert day_end.astimezone(z).hour in (0, 1)


def test_hourly_spring_gap_empties_one_period_which_is_never_in_force() -> None:
    spec = load_spec(
        dict(
            id="h",
            products=["a"],
            treatment_policy="t",
            control_policy="c",
            start="2026-03-29T00:00:00+01:00",
            end="2026-03-30T00:00:00+02:00",
            timezone="Europe/Berlin",
            period="PT1H",
            washout="PT10M",
        )
    )
    assert n_periods(spec) == 24
    empty = [k for k in range(24) if is_empty(spec, k)]
    assert empty == [2]  # local 02:00 does not exist that day
    # no instant of the day maps to the empty period; the day is covered without gaps
    seen = {period_index(spec, spec.start + timedelta(minutes=m)) for m in range(0, 23 * 60, 5)}
    assert seen == set(range(24)) - {2}
    rows = schedule(spec)
    assert sorted({a.period for a in rows}) == sorted(seen)
    total = sum((a.period_end - a.period_start for a in rows), timedelta(0))
    assert total == timedelta(hours=23)
