"""The name of an estimate series: one estimator's estimates of one metric (for one arm or
segment) of one experiment, in the order they are published.

The analysis worker keys its confidence sequences by it and exports each series' age under
it (``pricelab_estimate_age_seconds{estimator=...}``, which ``PricelabEstimateStale`` watches);
a reader of the estimates topic names a message's series with :func:`series_of_message`, so
what it measures and what the alert sees are the same series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def series(label: str, metric: str) -> str:
    """The estimator's label for units, as before there were metrics, else ``label:metric``."""
    return label if metric == "units" else f"{label}:{metric}"


def arm_label(estimator: str, arm: str) -> str:
    """An estimator's label for one arm of a k-arm experiment, against the control."""
    return f"{estimator}@arm:{arm}"


def segment_label(estimator: str, segment: str) -> str:
    """An estimator's label for one product segment: its own series, so that a segment does
    not keep the whole experiment's age fresh."""
    return f"{estimator}@{segment}"


def series_of_message(doc: Mapping[str, Any]) -> str:
    """The series of one estimates-topic message: a verdict's or a demand curve's is its
    ``kind``; an estimate's (no ``kind``), its ``estimator`` and ``metric``, with its ``arm``
    or ``segment`` when present."""
    if doc.get("kind") is not None:
        return str(doc["kind"])
    label = str(doc["estimator"])
    if doc.get("arm") is not None:
        label = arm_label(label, str(doc["arm"]))
    elif doc.get("segment") is not None:
        label = segment_label(label, str(doc["segment"]))
    return series(label, str(doc.get("metric", "units")))
