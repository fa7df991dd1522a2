"""``pricelab plan`` counts a spec's periods as ``schedule`` does (issue #54 item 3): a daily
spec over a DST change is planned at its local days, not refused for its elapsed hours."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from controller.periods import n_periods
from controller.spec import ExperimentSpec, load_spec
from lab.plan import check_period, plan_spec_at, read_history
from streams.cli import main

BERLIN = ZoneInfo("Europe/Berlin")
UNITS = tuple(f"u{i:02d}" for i in range(20))


def _history() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "sku": np.repeat(UNITS, 60),
            "day": np.tile(np.arange(60), len(UNITS)),
            "units": rng.normal(10.0, 2.0, 60 * len(UNITS)),
        }
    )


def _dst_spec() -> ExperimentSpec:
    """Berlin days from 2 to 30 March 2026: 28 local days, one of them (29 March) 23 hours.
    Its instants carry their UTC offsets, as a spec read from a file does."""
    return load_spec(
        {
            "id": "dst",
            "products": list(UNITS),
            "treatment_policy": "new",
            "control_policy": "old",
            "start": "2026-03-02T00:00:00+01:00",
            "end": "2026-03-30T00:00:00+02:00",
            "timezone": "Europe/Berlin",
            "seed": 3,
        }
    )


def test_plan_takes_a_daily_spec_across_the_spring_change_at_its_28_days(tmp_path, capsys) -> None:
    history, spec = tmp_path / "history.csv", tmp_path / "dst.json"
    _history().to_csv(history, index=False)
    spec.write_text(_dst_spec().model_dump_json())
    argv = ["plan", str(spec), "--history", str(history), "--unit", "sku", "--time", "day"]
    argv += ["--outcome", "units", "--sims", "20", "--json", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    rows = json.loads(out.out)
    assert rows and {r["duration"] for r in rows} == {28}


@pytest.mark.parametrize("periods", [2, 27, 28, 29, 45])
def test_a_planned_duration_ends_at_the_start_of_that_period_in_local_days(periods: int) -> None:
    spec = _dst_spec()
    history = read_history(_history(), "sku", "day", "units")
    planned = plan_spec_at(spec, history, periods).spec
    assert n_periods(planned) == periods
    assert planned.start == spec.start
    # local midnight `periods` days after 2 March, whatever the offset in between
    end = planned.end.astimezone(BERLIN)
    assert (end.date() - datetime(2026, 3, 2).date()).days == periods
    assert (end.hour, end.minute) == (0, 0)


def test_an_hourly_plan_is_counted_from_the_start_hour() -> None:
    """A PT1H spec from 15:00 planned at 6 periods ends at 21:00, six hours later."""
    spec = load_spec(
        {
            "id": "h",
            "design": "random-days",
            "products": list(UNITS),
            "treatment_policy": "new",
            "control_policy": "old",
            "start": "2026-06-01T15:00:00+02:00",
            "end": "2026-06-02T15:00:00+02:00",
            "timezone": "Europe/Berlin",
            "period": "PT1H",
        }
    )
    history = read_history(_history(), "sku", "day", "units")
    planned = plan_spec_at(spec, history, 6).spec
    assert planned.end == datetime(2026, 6, 1, 21, tzinfo=BERLIN)
    assert n_periods(planned) == 6


def test_a_history_of_local_days_across_the_spring_change_is_daily(tmp_path, capsys) -> None:
    """A daily history written at Berlin's midnights (a database's timestamptz, a Parquet
    file's zoned days) has one 23-hour day in March. It is the spec's daily periods, not a
    history 'spaced 23:00:00 apart' to be aggregated again."""
    days = pd.date_range("2026-02-20", periods=60, freq="D", tz=BERLIN)
    frame = _history().assign(day=lambda d: [days[i].isoformat() for i in d["day"]])
    history, spec = tmp_path / "history.csv", tmp_path / "dst.json"
    frame.to_csv(history, index=False)
    spec.write_text(_dst_spec().model_dump_json())
    argv = ["plan", str(spec), "--history", str(history), "--unit", "sku", "--time", "day"]
    argv += ["--outcome", "units", "--sims", "20", "--json", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    assert {r["duration"] for r in json.loads(out.out)} == {28}


@pytest.mark.parametrize("closed", ["2026-03-25", "2026-03-29", "2026-03-30"])
def test_a_day_missing_from_local_days_across_the_spring_change_stays_a_gap(closed: str) -> None:
    """The same history written as dates and at Berlin's midnights, with a day no product has
    a row on (a closed store), before, on and after the change to summer time: the dates kept
    the day as a gap, the midnights (23 hours apart across the change, no one step) lost it,
    and the two plans differed (the days after it one period earlier)."""
    days = pd.date_range("2026-03-16", periods=21, freq="D", tz=BERLIN)
    frame = _history().query("day < 21")
    frame = frame[[days[i].strftime("%Y-%m-%d") != closed for i in frame["day"]]]
    dates = frame.assign(day=[days[i].strftime("%Y-%m-%d") for i in frame["day"]])
    midnights = frame.assign(day=[days[i].isoformat() for i in frame["day"]])
    a = read_history(dates, "sku", "day", "units")
    b = read_history(midnights, "sku", "day", "units")
    assert a.n_periods == b.n_periods == 21
    np.testing.assert_array_equal(a.Y, b.Y)
    gap = days.strftime("%Y-%m-%d").get_loc(closed)
    assert np.isnan(b.Y[:, gap]).all() and pd.isna(b.times[gap])
    assert [pd.Timestamp(t) for t in np.delete(np.array(b.times, dtype=object), gap)] == list(
        days.delete(gap)
    )
    check_period(b, _dst_spec(), "day")  # the days are the spec's periods: no refusal
