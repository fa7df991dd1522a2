"""Errors of the tools layer (leaves of :class:`core.errors.PricelabError`).

LabError (ValueError)        a simulation or design comparison cannot run as asked
└── TooManyFailedFits        more of a study's fits failed than it tolerates
"""

from __future__ import annotations

from core.errors import PricelabError


class LabError(PricelabError, ValueError):
    """A simulation or design comparison cannot run as asked; the message says why."""


class TooManyFailedFits(LabError):
    """More than :data:`lab.failed_fits.MAX_FAILED_SHARE` of the fits of one row of a plan or a
    comparison failed, so its figures would describe the few that did not."""
