"""A reader of topics of its own: a consumer with no group and no commits, started while the
broker answers (``streams.errors.services_answer``) and stopped on the way out, also when its
start fails (a failed start leaves the client open otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from controller.settings import Settings
from streams.errors import services_answer


@contextlib.asynccontextmanager
async def own_reader(
    settings: Settings, stop_within: float | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer; ``stop_within``: seconds its stop may take before it is left (a
    broker gone meanwhile), else its stop is awaited whole. A broker that does not answer
    raises :class:`streams.errors.ServiceUnavailable`."""
    async with services_answer(
        bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
    ):
        consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        try:
            yield consumer
        finally:
            if stop_within is None:
                await consumer.stop()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(consumer.stop(), stop_within)
