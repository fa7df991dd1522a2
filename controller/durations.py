"""Durations as an operator writes them: ISO 8601 (``PT2H``, ``P1D``, ``P1DT12H``) or a
number and a unit (``2h``, ``30m``, ``1d``, ``90 minutes``, ``1h30m``).

One reader for the spec's ``period`` and ``washout`` (controller.spec) and the CLI's relative
times (``experiment freeze --end +P3D`` or ``+3d``). A text that is neither is one sentence
naming both forms, never pydantic's '"day" identifier in duration not correctly formatted'.
An ``M`` that reads as minutes or as months (``2M``; ``P2M``, months in ISO 8601, which
pydantic would count as 60 days) is refused in one sentence naming ``2min`` and ``PT2M``;
``m`` alone (``30m``) and ``PT2M`` are minutes.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import TypeAdapter, ValidationError

__all__ = ["DURATION_FORMS", "parse_duration"]

#: how the forms are named in a refusal
DURATION_FORMS = "ISO 8601 (PT2H, P1D) or a number and a unit (2h, 30m, 1d, 90 minutes)"

_UNITS: dict[str, timedelta] = {}
for _names, _unit in (
    (("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    (("m", "min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    (("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    (("d", "day", "days"), timedelta(days=1)),
    (("w", "week", "weeks"), timedelta(weeks=1)),
):
    for _name in _names:
        _UNITS[_name] = _unit

#: minutes to some readers, months to others: an M before the T of an ISO 8601 duration
#: (P2M, p2m, P1MT2H), or an upper-case M after a number in the short form (2M, 1h30M)
_ISO_MONTHS = re.compile(r"[pP][^tT]*[mM]")
_SHORT_M = re.compile(r"\d\s*M(?![A-Za-z])")


def _minutes_or_months(text: str) -> bool:
    text = text.strip()
    if text.startswith(("p", "P")):
        return _ISO_MONTHS.match(text) is not None
    return _SHORT_M.search(text) is not None


_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.ASCII)
_ISO: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def _short(text: str) -> timedelta | None:
    """``2h``, ``1h30m``, ``1 day 12 hours``; None when ``text`` is not of that form."""
    text = text.strip().lower()
    pos, total = 0, timedelta(0)
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or m.group(2) not in _UNITS:
            return None
        try:
            total += float(m.group(1)) * _UNITS[m.group(2)]
        except OverflowError:
            return None  # beyond timedelta's range: refused below
        pos = m.end()
    return total if pos else None


def parse_duration(value: object) -> timedelta:
    """A duration from ISO 8601 text, a short form, a ``timedelta`` or a number of seconds
    (what pydantic reads); ValueError with one sentence naming the forms otherwise."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        if _minutes_or_months(value):
            raise ValueError(
                f"{value!r} reads as minutes or as months: write minutes as 2min or PT2M "
                "(a month as days, e.g. P30D)"
            )
        short = _short(value)
        if short is not None:
            return short
        for text in (value.strip(), value.strip().upper()):  # pt2h as PT2H
            try:
                return _ISO.validate_python(text)
            except ValidationError:
                continue
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return _ISO.validate_python(value)
    raise ValueError(f"{value!r} is not a duration: write {DURATION_FORMS}")
