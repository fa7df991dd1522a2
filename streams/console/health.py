"""The experiment page's Health section: its document, put together from the client's views
(streams.client.health's checks over the panel, the sales totals, the dead letters, the
audit trail and the estimates the console follows). The section is a resource of its own
(``GET /api/experiments/{id}/health``), fetched after the page, so that reading the panel
and the dead-letter topic never slows the page's other parts."""

from __future__ import annotations

from typing import Any

from controller.settings import Settings
from controller.store import Store
from streams.client.health import read_health
from streams.client.history import read_trail
from streams.client.known import known
from streams.console.feed import EstimatesFeed


async def health_view(
    settings: Settings, store: Store, feed: EstimatesFeed, panels: Any, exp_id: str
) -> dict[str, Any]:
    """The six checks of ``exp_id``, each with its flag and sentence, and the worst flag
    (streams.client.health.read_health); an unknown id raises UnknownExperiment."""
    await known(store, exp_id)
    docs = await feed.docs(exp_id)
    trail = await read_trail(settings, exp_id, timeout=settings.console.command_timeout)
    return await read_health(settings, store, panels, exp_id, docs, trail.records)
