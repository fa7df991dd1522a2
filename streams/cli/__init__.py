"""The ``pricelab`` command line (streams.cli.entry).

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
