"""Period boundaries in the experiment's time zone.

Periods are laid on a grid of the local wall clock: daily periods start at local midnight,
so a 23-hour or 25-hour DST day is exactly one period; a period of n days starts at local
midnight every n days from the local date of ``spec.start``; sub-day periods start at local
multiples of their length after midnight. Period 0 is the grid's period that contains
``spec.start`` (a PT1H experiment starting at 21:30 has period 0 from 21:00 to 22:00), so no
period ends before ``start``, and the last one (:func:`last_period`) contains the instant
before ``spec.end``. Negative indices are the grid's periods before the experiment.
All returned datetimes are aware and in UTC.

Sub-day periods keep a fixed number of slots per local day, so on a DST day one slot is
shorter or longer (6-hour periods: 5 or 7 hours). With 1-hour periods the spring-forward gap
swallows a whole slot: that period is *empty* (start == end). ``period_index`` never returns
an empty period, ``schedule`` skips it, and washout compares with the previous non-empty one.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo


class PeriodGrid(Protocol):
    """What the period arithmetic reads of an experiment spec (``ExperimentSpec`` has it)."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def period(self) -> timedelta: ...

    @property
    def zone(self) -> ZoneInfo: ...


_DAY = timedelta(days=1)


def _local_wall(zone: ZoneInfo, d: date, offset: timedelta) -> datetime:
    """UTC instant of local wall time d 00:00 + offset; a wall time that a clock change skips
    maps to the instant the clocks jump (the end of the gap), so the grid never goes back."""
    naive = datetime.combine(d, time(0)) + offset
    # fold=0 reads a repeated wall time as its first occurrence, a skipped one with the
    # offset before the jump (an instant after the gap's end); fold=1 with the offset after
    late = naive.replace(tzinfo=zone).astimezone(UTC)
    if late.astimezone(zone).replace(tzinfo=None) == naive:
        return late
    early = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # a skipped wall time: the jump is the first instant in (early, late] whose wall time is
    # past ``naive``; zone transitions fall on whole seconds, so bisect on whole seconds (a
    # bisection on instants stops up to a second past the jump: a gap of several slots then
    # started its later slots fractions of a second after it, none of them empty)
    lo, hi = math.floor(early.timestamp()), math.ceil(late.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _grid_start(spec: PeriodGrid, day0: date, g: int) -> datetime:
    """UTC start of slot ``g`` of the local grid counted from local midnight of ``day0``."""
    if spec.period >= _DAY:
        days = spec.period // _DAY
        return _local_wall(spec.zone, day0 + timedelta(days=g * days), timedelta(0))
    day, slot = divmod(g, _DAY // spec.period)
    return _local_wall(spec.zone, day0 + timedelta(days=day), slot * spec.period)


def _grid_index(spec: PeriodGrid, day0: date, ts: datetime) -> int:
    """The grid slot (counted from local midnight of ``day0``) whose span holds ``ts``."""
    local = ts.astimezone(spec.zone)
    days = (local.date() - day0).days
    if spec.period >= _DAY:
        g = days // (spec.period // _DAY)
    else:
        since_midnight = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
        g = days * (_DAY // spec.period) + since_midnight // spec.period
    # the wall-clock guess can be off by one around DST shifts; settle it on UTC instants
    while ts < _grid_start(spec, day0, g):
        g -= 1
    while ts >= _grid_start(spec, day0, g + 1):
        g += 1
    return g


def _origin(spec: PeriodGrid) -> tuple[date, int]:
    """The grid's day (the local date of ``start``) and the slot of period 0 on it."""
    memo = _memo(spec)
    if memo is not None and "origin" in memo:
        return memo["origin"]  # type: ignore[no-any-return]
    day0 = spec.start.astimezone(spec.zone).date()
    origin = day0, _grid_index(spec, day0, spec.start)
    if memo is not None:
        memo["origin"] = origin
    return origin


def period_start(spec: PeriodGrid, k: int) -> datetime:
    """UTC start of period k (k may be negative, for periods before the experiment)."""
    day0, g0 = _origin(spec)
    return _grid_start(spec, day0, g0 + k)


def period_bounds(spec: PeriodGrid, k: int) -> tuple[datetime, datetime]:
    memo = _memo(spec)
    key = ("bounds", k)
    if memo is not None and key in memo:
        return memo[key]  # type: ignore[no-any-return]
    bounds = period_start(spec, k), period_start(spec, k + 1)
    if memo is not None and len(memo) < 100_000:
        memo[key] = bounds
    return bounds


def _memo(spec: PeriodGrid) -> dict[Any, Any] | None:
    """The spec's memo of derived values (None while the spec is still being validated)."""
    private = getattr(spec, "__pydantic_private__", None)
    return private.get("_memo") if private else None  # type: ignore[no-any-return]


def is_empty(spec: PeriodGrid, k: int) -> bool:
    """True for a period swallowed by a DST gap (only possible with sub-day periods)."""
    start, end = period_bounds(spec, k)
    return start == end


def previous_period(spec: PeriodGrid, k: int) -> int:
    """The last non-empty period before k (k - 1 unless a DST gap emptied it)."""
    j = k - 1
    while is_empty(spec, j):
        j -= 1
    return j


def period_index(spec: PeriodGrid, ts: datetime) -> int:
    """Index of the period containing instant ``ts`` (aware); negative before period 0."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    day0, g0 = _origin(spec)
    return _grid_index(spec, day0, ts) - g0


def first_period(spec: PeriodGrid) -> int:
    return 0


def last_period(spec: PeriodGrid) -> int:
    """Index of the last period that starts before ``spec.end``."""
    return period_index(spec, spec.end - timedelta(microseconds=1))


def n_periods(spec: PeriodGrid) -> int:
    """Number of periods T; memoised on the (frozen) spec once validation is done."""
    memo = _memo(spec)
    if memo is not None and "n_periods" in memo:
        return int(memo["n_periods"])
    t = last_period(spec) + 1
    if memo is not None:
        memo["n_periods"] = t
    return t
