"""The ``pricelab`` command line: one module per command group.

entry       the app: the groups below registered in help's order, the offline tools' plugins
            (analysis, lab, schedule, graph, report), ``main`` (one sentence and exit 2 per
            refusal)
stack       up, topics, worker, demo
experiment  experiment create/pause/resume/stop/freeze/unfreeze/history/freezes/list/show,
            assignments
estimates   estimates
panel       panel export
deploy      contracts, acl (kafka_acl: the roles' Kafka ACLs)
common      what the groups share: --as, a refusal, the worker's reply
help_text   help in whole sentences

``main`` and ``app`` stay importable from here: ``streams.cli:main`` is the console script that
installed environments and images call (pyproject ``[project.scripts]``), and
``python -m streams.cli`` runs it (streams/cli/__main__.py).
"""

from __future__ import annotations

from typing import Any

from streams.cli.entry import main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    """``streams.cli.app``: the whole app, every plugin's commands registered."""
    if name == "app":
        from streams.cli import entry

        return entry.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
