"""Errors of the tools layer (leaves of :class:`core.errors.PricelabError`)."""

from __future__ import annotations

from core.errors import PricelabError


class LabError(PricelabError, ValueError):
    """A simulation or design comparison cannot run as asked; the message says why."""
