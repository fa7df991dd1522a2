"""Errors raised by the analysis library (leaves of :class:`core.errors.PricelabError`)."""

from __future__ import annotations

from core.errors import PricelabError


class AnalysisError(PricelabError):
    """Root of analysis errors."""


class PanelError(AnalysisError, ValueError):
    """A panel fails validation at the door; the message says what to fix."""


class InferenceError(AnalysisError, ValueError):
    """A variance method is invalid for this data (e.g. jackknife with one treated unit)."""


class ConvergenceError(AnalysisError):
    """An iterative solver did not converge within its budget."""


class NotEstimable(AnalysisError):
    """An estimator that does not estimate this metric (the price paid is measured within
    products or by the difference in means only): the worker skips the pair, no failure."""
