"""pricelab from Python: a running experiment's estimates, verdict and panel as pandas
objects, and the CLI's fit of a panel (docs/notebook.md).

    import pricelab

    pricelab.estimates("walkthrough", latest=True)   # DataFrame: latest per metric, estimator
    pricelab.estimates("walkthrough")                # DataFrame: every look, as published
    pricelab.verdict("walkthrough")                  # Series, or None before the first verdict
                                                     # (an unknown id: UnknownExperiment)
    df = pricelab.panel("walkthrough")               # DataFrame: the panel the worker analyses
    pricelab.analyze(df, "profit", method="fe")      # EstimateResult: summary_frame, conf_int

Settings come from the ``PRICELAB_`` environment variables, as for the CLI; the broker and
Redis can be given per call (``bootstrap_servers=``, ``redis_url=``) or as a whole
``settings=pricelab.settings(...)``. Inside Jupyter's event loop the readers run on a worker
thread. Every refusal is a :class:`PricelabError` whose message is one sentence.

This package sits above every other (tests/unit/project/test_boundaries.py): nothing in pricelab
imports it.
"""

from __future__ import annotations

from analysis.results import EstimateResult
from controller.errors import UnknownExperiment
from core.errors import PricelabError
from pricelab.api import NotPublished, analyze, estimates, panel, settings, verdict

__all__ = [
    "EstimateResult",
    "NotPublished",
    "PricelabError",
    "UnknownExperiment",
    "analyze",
    "estimates",
    "panel",
    "settings",
    "verdict",
]
