"""An adaptive price ladder's look as the console shows it (issue #57): the arms' means and
contrasts, the best set, the allocation over time and why the fixed-allocation methods are
not published, read off the latest ``kind: adaptive`` message of the estimates topic (the
one ``pricelab estimates`` prints, :func:`streams.client.estimates.render_adaptive`).
Nothing here computes a figure."""

from __future__ import annotations

from typing import Any

from streams.client.estimates import allocation_table, latest_adaptive, render_adaptive


def adaptive_view(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest adaptive look among ``docs`` (None: not an adaptive ladder, or no look
    yet): its ``arms`` and ``best_set`` as published, the ``allocation`` over time (the
    arms' ``names`` and, per period, its ``probabilities``), the ``note`` and the ``lines``
    ``pricelab estimates`` prints."""
    doc = latest_adaptive(docs)
    if doc is None:
        return None
    names, rows = allocation_table(doc)
    return {
        "as_of": doc.get("as_of"),
        "metric": doc.get("metric"),
        "n_periods": doc.get("n_periods"),
        "arms": list(doc.get("arms") or ()),
        "best_set": list(doc.get("best_set") or ()),
        "recommended": doc.get("recommended"),
        "allocation": {
            "names": names,
            "periods": [{"period": p, "probabilities": probs} for p, probs in rows],
        },
        "note": doc.get("note"),
        "lines": render_adaptive(doc).splitlines(),
        "message": doc,
    }
