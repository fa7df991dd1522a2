"""Period boundaries in the experiment's time zone.

Periods are laid on the local wall clock: daily periods start at local midnight, so a
23-hour or 25-hour DST day is exactly one period; sub-day periods start at local multiples
of their length after midnight. Period 0 is the period that contains ``spec.start``.
All returned datetimes are aware and in UTC.

Sub-day periods keep a fixed number of slots per local day, so on a DST day one slot is
shorter or longer (6-hour periods: 5 or 7 hours). With 1-hour periods the spring-forward gap
swallows a whole slot: that period is *empty* (start == end). ``period_index`` never returns
an empty period, ``schedule`` skips it, and washout compares with the previous non-empty one.
"""

from __future__ import annotations

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
    """UTC instant of local wall time d 00:00 + offset; a wall time skipped by DST maps forward."""
    naive = datetime.combine(d, time(0)) + offset
    aware = naive.replace(tzinfo=zone)
    # round-trip through UTC: a nonexistent local time is normalised to the instant after the gap
    return aware.astimezone(UTC)


def _anchor(spec: PeriodGrid) -> date:
    return spec.start.astimezone(spec.zone).date()


def period_start(spec: PeriodGrid, k: int) -> datetime:
    """UTC start of period k (k may be negative, for periods before the experiment)."""
    zone = spec.zone
    if spec.period >= _DAY:
        days = spec.period // _DAY
        return _local_wall(zone, _anchor(spec) + timedelta(days=k * days), timedelta(0))
    per_day = _DAY // spec.period
    day, slot = divmod(k, per_day)
    return _local_wall(zone, _anchor(spec) + timedelta(days=day), slot * spec.period)


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
    """Index of the period containing instant ``ts`` (aware)."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    local = ts.astimezone(spec.zone)
    days = (local.date() - _anchor(spec)).days
    if spec.period >= _DAY:
        k = days // (spec.period // _DAY)
    else:
        per_day = _DAY // spec.period
        since_midnight = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
        k = days * per_day + since_midnight // spec.period
    # the wall-clock guess can be off by one around DST shifts; settle it on UTC instants
    while ts < period_start(spec, k):
        k -= 1
    while ts >= period_start(spec, k + 1):
        k += 1
    return k


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
