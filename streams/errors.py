"""The edge's errors (leaves of :class:`core.errors.PricelabError`).

A broker or Redis that does not answer reaches an operator as one sentence naming the address
tried; :func:`services_answer` turns the clients' own connection errors into it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from core.errors import PricelabError


class ServiceUnavailable(PricelabError):
    """A broker or Redis did not answer; the message names what and where."""


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without credentials."""
    rest = url.split("://", 1)[-1]
    hostport = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    return hostport or url


@contextlib.asynccontextmanager
async def services_answer(
    bootstrap_servers: str | None = None, redis_url: str | None = None
) -> AsyncIterator[None]:
    """Run a block that talks to the broker and/or Redis; a connection failure leaves it as
    :class:`ServiceUnavailable` with the address tried."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable
    from redis.exceptions import RedisClusterException

    from controller.store.base import REDIS_DOWN

    redis_down: tuple[type[BaseException], ...] = (*REDIS_DOWN, RedisClusterException)

    try:
        yield
    except (KafkaConnectionError, NoBrokersAvailable, KafkaTimeoutError) as exc:
        where = bootstrap_servers or "the configured brokers"
        raise ServiceUnavailable(
            f"the Kafka broker at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_KAFKA__BOOTSTRAP_SERVERS or start it (pricelab up)"
        ) from None
    except redis_down as exc:
        where = redis_address(redis_url) if redis_url else "the configured Redis"
        raise ServiceUnavailable(
            f"Redis at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_REDIS__URL or start it (pricelab up)"
        ) from None
