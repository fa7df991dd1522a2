"""The id rule of experiments, freezes and arms."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_id(v: str) -> str:
    """An experiment's, a freeze's or an arm's id: ``v``, or ValueError (a validator's) saying
    the rule."""
    if not _ID.match(v):
        raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric")
    return v
