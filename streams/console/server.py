"""The console's whole application: the routes of :mod:`streams.console.app` and those of the
pages kept in modules of their own over its rules (the "New experiment" page,
:mod:`streams.console.new_experiment`; the list's Freezes section,
:mod:`streams.console.freezes`; the drafts, :mod:`streams.console.drafts`). ``pricelab console`` serves it."""

from __future__ import annotations

from starlette.applications import Starlette

from streams.console import drafts, freezes, new_experiment
from streams.console.app import Console, build_app


def build_console_app(console: Console, lifespan_close: bool = True) -> Starlette:
    """The console's application over ``console``'s store, feed and users, every page in."""
    return build_app(
        console,
        lifespan_close,
        extra_routes=[*new_experiment.routes(), *freezes.routes(), *drafts.routes()],
    )
