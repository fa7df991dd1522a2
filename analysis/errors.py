"""Errors raised by the analysis library (leaves of :class:`core.errors.PricelabError`)."""

from __future__ import annotations

from core.errors import PricelabError


class AnalysisError(PricelabError):
    """Root of analysis errors."""


class PanelError(AnalysisError, ValueError):
    """A panel fails validation at the door; the message says what to fix."""


class TableError(PanelError):
    """An analyst's table (CSV, Parquet, a database) that the one reader cannot read as cells:
    a missing column, mixed currencies without rates, a cell whose arm is unknown; one
    sentence (:mod:`analysis.reader`)."""


class InferenceError(AnalysisError, ValueError):
    """A variance method is invalid for this data (e.g. jackknife with one treated unit)."""


class ConvergenceError(AnalysisError):
    """An iterative solver did not converge within its budget."""


class NotEstimable(AnalysisError):
    """An estimator that does not estimate this metric (the price paid is measured within
    products or by the difference in means only): the worker skips the pair, no failure."""
