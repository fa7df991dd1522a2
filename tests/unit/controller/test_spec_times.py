"""Spec dates and durations as an operator writes them: a start without a UTC offset is read
in the spec's time zone; a washout of ``2h`` is two hours, and a duration that is neither ISO
8601 nor a number with a unit is one sentence naming both forms (it was pydantic's '"day"
identifier in duration not correctly formatted')."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.durations import parse_duration
from controller.errors import SpecError
from controller.spec import load_spec, load_spec_file
from streams.cli.experiment import _instant

BASE = {"id": "w", "products": ["a", "b"], "treatment_policy": "t", "control_policy": "c"}


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("2h", 2), ("30m", 0.5), ("1d", 24), ("90 minutes", 1.5), ("1h30m", 1.5),
        ("1 day 12 hours", 36), ("2 hrs", 2), ("1w", 168), ("PT2H", 2), ("P1D", 24),
        ("pt2h", 2), ("P1DT12H", 36), ("01:30:00", 1.5),
    ],
)  # fmt: skip
def test_a_duration_is_iso_8601_or_a_number_and_a_unit(text: str, hours: float) -> None:
    assert parse_duration(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["2x", "hours", "2 fortnights", "P1X", "", "1e999999h"])
def test_anything_else_is_one_sentence_naming_both_forms(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert str(refused.value) == (
        f"{text!r} is not a duration: write ISO 8601 (PT2H, P1D) or a number and a unit "
        "(2h, 30m, 1d, 90 minutes)"
    )


def test_a_spec_reads_washout_and_period_in_either_form(tmp_path: Path) -> None:
    spec = load_spec(BASE | {"start": "2026-12-07", "end": "2027-01-04", "washout": "2h",
                             "period": "12h"})  # fmt: skip
    assert (spec.washout, spec.period) == (timedelta(hours=2), timedelta(hours=12))
    assert spec.model_dump(mode="json")["washout"] == "PT2H"  # stored in ISO form
    with pytest.raises(SpecError) as refused:
        load_spec(BASE | {"start": "2026-12-07", "end": "2027-01-04", "washout": "2 fortnights"})
    assert str(refused.value).startswith("washout: '2 fortnights' is not a duration: write ")
    assert "PT2H" in str(refused.value)


def test_dates_without_an_offset_are_read_in_the_specs_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"  # YAML reads these as a date and a naive date-time
    path.write_text(
        "id: walk\nproducts: [a, b]\ntreatment_policy: t\ncontrol_policy: c\n"
        "timezone: Europe/Berlin\nstart: 2026-12-07\nend: 2027-01-04T06:00:00\nwashout: 2h\n"
    )
    spec = load_spec_file(path)
    # midnight in Berlin (CET, +01:00) is 23:00 UTC the day before
    assert spec.start == datetime(2026, 12, 6, 23, tzinfo=UTC)
    assert spec.end == datetime(2027, 1, 4, 5, tzinfo=UTC)
    assert spec.model_dump(mode="json")["start"] == "2026-12-07T00:00:00+01:00"
    # in summer the same wall time is +02:00; JSON text reads the same way
    summer = load_spec(BASE | {"timezone": "Europe/Berlin", "start": "2026-07-01",
                               "end": "2026-07-08T00:00"})  # fmt: skip
    assert summer.start == datetime(2026, 6, 30, 22, tzinfo=UTC)
    assert summer.end == datetime(2026, 7, 7, 22, tzinfo=UTC)
    # an offset that is given wins; without a timezone the spec's calendar is UTC
    given = load_spec(BASE | {"timezone": "Europe/Berlin", "start": "2026-12-07T00:00:00+00:00",
                              "end": "2026-12-14"})  # fmt: skip
    assert given.start == datetime(2026, 12, 7, tzinfo=UTC)
    utc = load_spec(BASE | {"start": "2026-12-07", "end": "2026-12-14"})
    assert utc.start == datetime(2026, 12, 7, tzinfo=UTC)
    # the round trip the create command makes keeps the instant
    assert load_spec(spec.model_dump(mode="json")).to_json() == spec.to_json()


def test_a_freeze_end_takes_the_short_form_too() -> None:
    now = datetime(2026, 12, 10, 9, tzinfo=UTC)
    assert _instant("+3d", "--end", lambda: now) == now + timedelta(days=3)
    assert _instant("+P3D", "--end", lambda: now) == now + timedelta(days=3)
    assert _instant("-2h", "--start", lambda: now) == now - timedelta(hours=2)


@pytest.mark.parametrize(
    ("field", "value", "why", "write"),
    [
        # the clocks jump from 02:00 to 03:00: 02:30 never happens in Berlin that night
        ("start", "2026-03-29T02:30", "does not exist in Europe/Berlin",
         "2026-03-29T02:30:00+01:00"),
        # the clocks go back from 03:00 to 02:00: 02:30 happens twice, at +02:00 and +01:00
        ("end", "2026-10-25T02:30:00", "happens twice in Europe/Berlin",
         "2026-10-25T02:30:00+01:00"),
    ],
)  # fmt: skip
def test_a_local_time_at_a_dst_change_is_refused_naming_the_offset_to_write(
    field: str, value: str, why: str, write: str, tmp_path: Path
) -> None:
    times = {"start": "2026-03-01", "end": "2026-11-30"} | {field: value}
    with pytest.raises(SpecError) as refused:
        load_spec(BASE | {"timezone": "Europe/Berlin"} | times)
    said = str(refused.value)
    assert said.startswith(f"{field}: {value!r} {why}") and "\n" not in said
    assert write in said
    # YAML's naive date-time reads the same way
    path = tmp_path / "spec.yaml"
    path.write_text(
        "id: w\nproducts: [a, b]\ntreatment_policy: t\ncontrol_policy: c\n"
        f"timezone: Europe/Berlin\nstart: {times['start']}\nend: {times['end']}\n"
    )
    with pytest.raises(SpecError) as refused:
        load_spec_file(path)
    assert str(refused.value).startswith(f"{field}: ") and write in str(refused.value)
    # with the offset written the instant is the one the user chose
    spec = load_spec(BASE | {"timezone": "Europe/Berlin"} | times | {field: write})
    assert getattr(spec, field) == datetime.fromisoformat(write)


def test_a_date_whose_midnight_a_dst_change_skips_is_refused() -> None:
    # Santiago moves its clocks at midnight: 6 September 2026 starts at 01:00
    with pytest.raises(SpecError) as refused:
        load_spec(BASE | {"timezone": "America/Santiago", "start": "2026-09-06",
                          "end": "2026-09-20"})  # fmt: skip
    said = str(refused.value)
    assert said.startswith("start: '2026-09-06' does not exist in America/Santiago")
    assert "-04:00" in said and "\n" not in said


def test_the_hours_either_side_of_a_dst_change_are_read_as_before() -> None:
    spring = load_spec(BASE | {"timezone": "Europe/Berlin", "start": "2026-03-29T01:30",
                               "end": "2026-03-29T03:30"})  # fmt: skip
    assert spring.start == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert spring.end == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2M", "1h30M", "2 M", "P2M", "p2m", "P1MT2H"])
def test_an_m_that_reads_as_minutes_or_months_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    said = str(refused.value)
    assert said.startswith(f"{text!r} ") and "\n" not in said
    assert "2min" in said and "PT2M" in said


@pytest.mark.parametrize(
    ("text", "minutes"), [("2m", 2), ("2min", 2), ("2MIN", 2), ("PT2M", 2), ("pt2m", 2),
                          ("2 Minutes", 2), ("P1DT30M", 1470)],
)  # fmt: skip
def test_minutes_written_plainly_still_read(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


def test_a_spec_refuses_an_ambiguous_m_naming_the_field() -> None:
    with pytest.raises(SpecError) as refused:
        load_spec(BASE | {"start": "2026-12-07", "end": "2027-01-04", "washout": "30M"})
    assert str(refused.value).startswith("washout: '30M' ")
