"""An experiment's health read once, for ``pricelab health`` (docs/operations.md): the
document the console's Health section shows (``GET /api/experiments/{id}/health``), built by
the same view, :func:`streams.client.health.read_health`, from the same readers: the panel
source, the experiment's estimate messages (``pricelab estimates``' reader), its audit trail
(``pricelab experiment history``'s) and the dead letters (``pricelab dead-letters``'). The
console keeps these between fetches (streams.console.health); a command reads them afresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.settings import Settings
from controller.store import Store, make_redis
from streams.client.estimates import all_estimates
from streams.client.health import panel_source, read_dead_letters, read_health
from streams.client.history import read_trail
from streams.client.known import known
from streams.errors import OPERATOR, services_answer


async def experiment_health(
    settings: Settings, experiment: str, *, idle: float = 2.0, timeout: float = 30.0
) -> dict[str, Any]:
    """The health document of ``experiment``: its seven checks (each a flag and a sentence),
    the worst flag as ``flag``, and the traffic by period and arm. An id the store does not
    know raises :class:`controller.errors.UnknownExperiment` before any topic is read; Redis
    or the broker not answering raises :class:`streams.errors.ServiceUnavailable`. ``idle``:
    the estimates' and dead letters' end-of-topic rule (seconds of fetches without a new
    message); ``timeout``: the seconds the audit trail is read for."""
    redis = make_redis(settings)
    try:
        async with services_answer(
            redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
        ):
            store = Store(redis, settings.key_prefix)
            await known(store, experiment)
            panels = await panel_source(settings, store)
            docs, trail, letters = await asyncio.gather(
                all_estimates(settings, experiment, idle),
                read_trail(settings, experiment, timeout=timeout),
                read_dead_letters(settings, idle),
            )
            return await read_health(
                settings, store, panels, experiment, docs, trail.records, letters
            )
    finally:
        await redis.aclose()


__all__ = ["experiment_health"]
