"""Durations as an operator writes them: ISO 8601 (``PT2H``, ``P1D``, ``P1DT12H``) or a
number and a unit (``2h``, ``30m``, ``1d``, ``90 minutes``, ``1h30m``).

One reader for the spec's ``period`` and ``washout`` (controller.spec) and the CLI's relative
times (``experiment freeze --end +P3D`` or ``+3d``). A text that is neither is one sentence
naming both forms, never pydantic's '"day" identifier in duration not correctly formatted'.
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
