"""The results of one experiment as ``pricelab estimates`` prints them and the report lays them
out: the scorecard of the whole experiment, the segments the spec names with their
Benjamini-Hochberg adjusted p-values, and the elasticity.

Every figure is a message the analysis worker published: the segments' estimates and their
``pvalue_bh`` (adjusted across the segments estimated at one look, ``analysis.worker``), and
the within-product elasticity (``analysis.elasticity``). This module only picks which
messages are shown, by :func:`streams.client.estimates.latest_of`, the CLI's own choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.client.estimates import latest_of

#: why a page has no segment rows, by what the spec says
NO_SEGMENTS_NAMED = (
    "The spec names no segments, so the analysis worker estimates none "
    "(segments in the spec name each segment and its products)."
)
NO_SEGMENT_YET = "No segment has been estimated yet: each needs enough sales in both arms."


def results_view(
    docs: list[dict[str, Any]], lead: str | None = None, segments: Iterable[str] = ()
) -> dict[str, Any]:
    """The Results section from an experiment's estimate messages ``docs``:

    - ``scorecard``: each metric's latest estimate of the whole experiment by the design's
      primary estimator (``latest_of(primary_only=True)``, ``lead`` first), the elasticity left
      to its own part;
    - ``segments``: the segments' rows at their latest look only, by segment, as the report's
      "Segments" table: their p (BH) was adjusted across those very segments at that look;
    - ``segments_note``: a sentence when there is no segment row (``segments``: the names the
      spec gives; none named, the worker publishes none);
    - ``elasticity``: the latest elasticity message (its note when not identified), or None.
    """
    rows = list(latest_of(docs, primary_only=True, lead=lead).values())
    whole = [r for r in rows if not r.get("segment")]
    scorecard = [r for r in whole if r.get("metric") != "elasticity"]
    elasticity = next((r for r in whole if r.get("metric") == "elasticity"), None)
    parts = [r for r in rows if r.get("segment")]
    if parts:
        at = "as_of" if all(r.get("as_of") for r in parts) else "n_periods"
        last = max(r[at] for r in parts)
        parts = [r for r in parts if r[at] == last]  # latest_of's order: by segment, metric
    named = list(segments)
    note = None
    if not parts:
        note = NO_SEGMENT_YET if named else NO_SEGMENTS_NAMED
    return {
        "scorecard": scorecard,
        "segments": parts,
        "segments_named": named,
        "segments_note": note,
        "elasticity": elasticity,
    }
