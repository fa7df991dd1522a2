"""Hourly slots swallowed by a clock change are empty, on whole-second bounds.

The grid maps a skipped wall time to the instant the clocks jump. That instant was found by
bisecting on instants and stopping within a second of it, so where a gap swallows more than
one slot the later ones started a fraction of a second after the jump: at Casey station
(Antarctica/Casey) the clocks went from 00:01 +08 to 03:01 +11 on 2022-10-02 (16:01 UTC),
and slots 01:00, 02:00 and 03:00 started at 16:01:00.205, .424 and .644 while 04:00 started
at 17:00: slots 01:00 and 02:00 were periods of 0.2 s (not empty, so scheduled) and
slot 03:00 started 0.64 s late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.periods import is_empty, n_periods, period_bounds, period_index
from controller.spec import ExperimentSpec, load_spec


def _spec(start: str, end: str, period: str, zone: str) -> ExperimentSpec:
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


def test_a_three_hour_gap_empties_the_slots_it_swallows_at_the_jump() -> None:
    spec = _spec(
        "2022-10-01T00:00:00+08:00", "2022-10-04T00:00:00+11:00", "PT1H", "Antarctica/Casey"
    )
    jump = datetime(2022, 10, 1, 16, 1, tzinfo=UTC)  # 00:01 +08 -> 03:01 +11
    bounds = [period_bounds(spec, k) for k in range(n_periods(spec))]
    assert all(b.microsecond == 0 for pair in bounds for b in pair)
    assert all(lo <= hi for lo, hi in bounds)
    swallowed = [k for k in range(len(bounds)) if is_empty(spec, k)]
    # slots 01:00 and 02:00 are swallowed whole; 03:00 holds 03:01-04:00 +11
    assert [bounds[k] for k in swallowed] == [(jump, jump)] * 2
    # the slot of local midnight holds the minute before the jump; the one after, the rest
    # of the hour 03:00-04:00 +11
    midnight = swallowed[0] - 1
    assert bounds[midnight] == (jump - timedelta(minutes=1), jump)
    assert bounds[swallowed[-1] + 1] == (jump, datetime(2022, 10, 1, 17, tzinfo=UTC))
    assert period_index(spec, jump) == swallowed[-1] + 1
