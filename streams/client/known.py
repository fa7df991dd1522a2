"""Whether an experiment id names an experiment: every command and read that takes one asks
the store's index first, so that a typo is one sentence (``UnknownExperiment``, exit 2 in the
CLI) and never an empty answer that reads as "nothing yet"."""

from __future__ import annotations

import asyncio

from controller.lifecycle import check_known
from controller.settings import Settings
from controller.store import Store, make_redis
from streams.errors import OPERATOR, services_answer


async def known(store: Store, experiment: str) -> None:
    """Raise :class:`controller.errors.UnknownExperiment` unless the store knows
    ``experiment`` (its index: created, whatever its state since)."""
    check_known(experiment, await store.experiment_ids())


async def check_experiment_async(settings: Settings, experiment: str) -> None:
    """:func:`known` on a fresh client; Redis not answering raises ServiceUnavailable."""
    redis = make_redis(settings)
    try:
        async with services_answer(
            redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
        ):
            await known(Store(redis, settings.key_prefix), experiment)
    finally:
        await redis.aclose()


def check_experiment(settings: Settings, experiment: str) -> None:
    """:func:`check_experiment_async` from synchronous code (a CLI command)."""
    asyncio.run(check_experiment_async(settings, experiment))
