"""Period 0 is the slot of the local grid that contains ``start`` (issue #54 item 3).

The grid: local midnights for daily periods, local multiples of the length after midnight
for sub-day ones, every n days from the start's local date for P{n}D. Before the fix a
sub-day experiment's period 0 was the midnight slot of the start's day, so ``schedule``,
the simulator and a backfill listed periods before ``start``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.flipper import _due
from controller.lifecycle import Kind
from controller.periods import is_empty, n_periods, period_bounds, period_index, period_start
from controller.spec import ExperimentSpec, load_spec
from controller.store.experiments import ExperimentState
from streams.cli import main

HOUR = timedelta(hours=1)


def _spec(start: str, end: str, period: str, zone: str = "UTC") -> ExperimentSpec:
    return load_spec(
        dict(
            id="p",
            products=["a", "b"],
            treatment_policy="t",
            control_policy="c",
            start=start,
            end=end,
            timezone=zone,
            period=period,
        )
    )


def test_schedule_of_an_hourly_spec_from_21_to_03_utc_lists_its_six_hours(tmp_path, capsys) -> None:
    """The reported command: a PT1H spec from 21:00Z to 03:00Z listed 27 periods from 00:00."""
    spec = _spec("2026-11-27T21:00:00Z", "2026-11-28T03:00:00Z", "PT1H")
    path = tmp_path / "hourly.json"
    path.write_text(spec.model_dump_json())
    with pytest.raises(SystemExit) as done:
        main(["schedule", str(path), "--csv"])
    assert done.value.code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted({int(r["period"]) for r in rows}) == [0, 1, 2, 3, 4, 5]
    assert len(rows) == 2 * 6
    starts = sorted({r["period_start"] for r in rows})
    assert starts[0] == "2026-11-27T21:00:00+00:00"
    assert starts[-1] == "2026-11-28T02:00:00+00:00"
    assert {r["period_end"] for r in rows if r["period"] == "5"} == {"2026-11-28T03:00:00+00:00"}


def test_a_backfill_of_an_hourly_spec_started_at_15_counts_the_hours_since_15() -> None:
    """Created with --backfill at 18:40, a PT1H spec started at 15:00 is put in period 3 (the
    hour from 18:00): the flip into it backfills periods 0..3, four of them (it said 19)."""
    spec = _spec("2026-11-27T15:00:00Z", "2026-11-29T00:00:00Z", "PT1H")
    now = datetime(2026, 11, 27, 18, 40, tzinfo=UTC)
    created = ExperimentState(
        spec=spec, status="running", flipped_period=-1, seq=1, missed_flips=0, flips=0,
        created_ms=int(now.timestamp() * 1000),
    )  # fmt: skip
    event = _due(created, now, [])
    assert event is not None and event.kind is Kind.FLIP
    assert event.period == 3
    # the flipper counts the boundaries passed before creation: periods -1 + 1 .. 3
    assert event.period - created.flipped_period == 4
    assert period_start(spec, 0) == spec.start


def test_a_start_inside_a_slot_begins_with_that_slot() -> None:
    spec = _spec("2026-06-01T09:30:00+02:00", "2026-06-02T00:00:00+02:00", "PT6H", "Europe/Berlin")
    assert period_bounds(spec, 0) == (
        datetime(2026, 6, 1, 4, tzinfo=UTC),  # 06:00 local
        datetime(2026, 6, 1, 10, tzinfo=UTC),
    )
    assert n_periods(spec) == 3  # 06:00, 12:00, 18:00
    assert period_index(spec, spec.start - timedelta(hours=4)) == -1  # 05:30 local


def test_daily_and_weekly_periods_start_at_the_start_dates_midnight() -> None:
    spec = _spec("2026-03-05T15:00:00+01:00", "2026-04-02T00:00:00+02:00", "P7D", "Europe/Berlin")
    z = ZoneInfo("Europe/Berlin")
    assert period_start(spec, 0) == datetime(2026, 3, 5, tzinfo=z)
    assert period_start(spec, 4) == datetime(2026, 4, 2, tzinfo=z)
    assert n_periods(spec) == 4
    # the week over the spring change is 7 days minus an hour
    assert period_start(spec, 4) - period_start(spec, 3) == timedelta(days=7) - HOUR


def test_an_hourly_spec_started_after_the_spring_gap_counts_from_its_hour() -> None:
    """03:00 CEST on 29 March 2026: period 0 is the 03:00 slot, the 02:00 slot (empty) is -1."""
    spec = _spec("2026-03-29T03:00:00+02:00", "2026-03-29T06:00:00+02:00", "PT1H", "Europe/Berlin")
    assert period_start(spec, 0) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert is_empty(spec, -1) and not is_empty(spec, 0)
    assert n_periods(spec) == 3


def test_a_two_hour_jump_empties_both_skipped_hours_and_the_grid_never_goes_back() -> None:
    """Antarctica/Troll goes from +00 to +02 at 01:00 UTC on 29 March 2026: the wall hours
    01:00 and 02:00 do not exist, both map to the jump and are empty periods."""
    spec = _spec(
        "2026-03-29T00:00:00+00:00", "2026-03-29T06:00:00+02:00", "PT1H", "Antarctica/Troll"
    )
    starts = [period_start(spec, k) for k in range(n_periods(spec) + 1)]
    jump = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert starts[:5] == [jump - HOUR, jump, jump, jump, jump + HOUR]
    assert [k for k in range(n_periods(spec)) if is_empty(spec, k)] == [1, 2]
    assert period_index(spec, jump) == 3


ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # half-hour shifts
    "America/Santiago",  # shifts at local midnight
    "Asia/Kolkata",  # a half-hour offset, no DST
    "Antarctica/Troll",  # a two-hour spring jump
)
PERIODS = ("PT1H", "PT2H", "PT3H", "PT6H", "PT8H", "PT12H", "P1D", "P2D", "P7D")
BASE = datetime(2025, 12, 20, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    period=st.sampled_from(PERIODS),
    start_s=st.integers(0, 400 * 86400),
    length_s=st.integers(60, 20 * 86400),
)
def test_every_period_is_in_the_experiment_and_the_grid_is_consistent(
    zone: str, period: str, start_s: int, length_s: int
) -> None:
    """Random start instants (whole minutes), zones and lengths, across DST changes: period 0
    contains start, every listed period overlaps [start, end), the first period before and the
    one after the list do not, boundaries never go back and a period's start maps back to it."""
    z = ZoneInfo(zone)
    start = (BASE + timedelta(seconds=start_s - start_s % 60)).astimezone(z)
    end = start + timedelta(seconds=length_s - length_s % 60)
    spec = _spec(start.isoformat(), end.isoformat(), period, zone)
    t = n_periods(spec)
    s0, e0 = period_bounds(spec, 0)
    assert s0 <= spec.start < e0
    assert t >= 1
    for k in range(t):
        a, b = period_bounds(spec, k)
        assert a <= b
        if a == b:  # an hour the spring-forward night skips: listed by no one
            assert 0 < k < t - 1
            continue
        assert a < spec.end and b > spec.start  # overlaps [start, end)
        assert period_index(spec, a) == k
        assert period_index(spec, b - timedelta(microseconds=1)) == k
    assert period_start(spec, -1) < period_start(spec, 0)
    assert period_bounds(spec, -1)[1] <= spec.start  # the one before ends by start
    assert period_start(spec, t) >= spec.end  # the one after starts at or after end
    assert period_start(spec, t) > period_start(spec, t - 1)
    # the grid is local: a sub-day boundary is a multiple of the length after local midnight
    p = spec.period
    if p < timedelta(days=1):
        for k in range(min(t, 30)):
            a = period_start(spec, k)
            if is_empty(spec, k) or is_empty(spec, k - 1):
                continue
            local = a.astimezone(z)
            wall = timedelta(hours=local.hour, minutes=local.minute)
            # a slot that a clock change shortened starts where its wall time maps
            assert wall % p == timedelta(0) or _near_a_change(a, z)
    else:
        for k in range(min(t, 30)):
            local = period_start(spec, k).astimezone(z)
            assert local.date() == start.date() + timedelta(days=k * (p // timedelta(days=1)))
            assert local.time().minute == 0 and local.hour in (0, 1)


def _near_a_change(ts: datetime, z: ZoneInfo) -> bool:
    before, after = (ts - timedelta(hours=3)).astimezone(z), (ts + timedelta(hours=3)).astimezone(z)
    return before.utcoffset() != after.utcoffset()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("period", ["PT1H", "PT6H", "P1D", "P7D"])
def test_boundaries_increase_strictly_over_non_empty_periods_across_a_year(
    zone: str, period: str
) -> None:
    z = ZoneInfo(zone)
    spec = _spec(
        datetime(2026, 1, 3, 7, 20, tzinfo=z).isoformat(),
        datetime(2027, 1, 3, tzinfo=z).isoformat(),
        period,
        zone,
    )
    starts = [period_start(spec, k) for k in range(n_periods(spec) + 1)]
    kept = [s for k, s in enumerate(starts[:-1]) if not is_empty(spec, k)] + [starts[-1]]
    assert all(a < b for a, b in zip(kept, kept[1:], strict=False))
    assert sum(is_empty(spec, k) for k in range(n_periods(spec))) == (period == "PT1H")
    assert starts[0] <= spec.start < starts[1]
    assert starts[-2] < spec.end <= starts[-1]
    assert starts[0].astimezone(z).date() == date(2026, 1, 3)
