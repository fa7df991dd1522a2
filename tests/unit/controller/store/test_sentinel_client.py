"""make_redis with ``PRICELAB_REDIS__SENTINELS``: the client of the primary the sentinels name,
built from the same options as the single-URL client (controller/store/base.py). No server is
needed: a client connects on its first command."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from controller.settings import Settings
from controller.store.base import (
    REDIS_DOWN,
    SentinelPrimary,
    _PrimaryOnly,
    make_redis,
)


def _settings(**redis: Any) -> Settings:
    base = {"sentinels": "10.0.0.1:26379,[::1]:26380", "sentinel_service": "mymaster"}
    return Settings.model_validate({"redis": base | redis})


async def test_sentinels_make_a_client_of_the_primary_they_name() -> None:
    client = make_redis(
        _settings(url="redis://app:url-pw@ignored-host:6390/3", sentinel_password="s-pw")
    )
    try:
        assert type(client) is SentinelPrimary and isinstance(client, Redis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "mymaster" and pool.is_master
        made = pool.connection_class
        assert made.__mro__[1:3] == (_PrimaryOnly, SentinelManagedConnection)
        assert made._demotions.epoch == 0  # type: ignore[attr-defined]
        kw = pool.connection_kwargs
        # the same options as the single-URL client; the database and the credentials
        # from the URL, whose host and port are the sentinels' to give
        assert kw["decode_responses"] is True
        assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (120, 5)
        assert kw["health_check_interval"] == 10
        assert (kw["db"], kw["username"], kw["password"]) == (3, "app", "url-pw")
        assert "host" not in kw and "port" not in kw
        sentinels = pool.sentinel_manager.sentinels
        assert [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ] == [("10.0.0.1", 26379), ("::1", 26380)]
        skw = sentinels[0].connection_pool.connection_kwargs
        assert skw["password"] == "s-pw"  # the sentinels' own, not the data's
        assert skw["socket_timeout"] == 5
        assert not issubclass(sentinels[0].connection_pool.connection_class, SSLConnection)
    finally:
        await client.aclose()


async def test_the_settings_user_and_password_reach_the_primary_not_the_sentinels() -> None:
    client = make_redis(_settings(username="controller", password="data-pw"))
    try:
        kw = client.connection_pool.connection_kwargs
        assert (kw["username"], kw["password"], kw["db"]) == ("controller", "data-pw", 0)
        skw = client.connection_pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
        assert skw["password"] is None and skw["username"] is None
    finally:
        await client.aclose()


async def test_a_rediss_url_makes_tls_connections_to_the_primary_and_the_sentinels() -> None:
    client = make_redis(_settings(url="rediss://ignored:6379/1?ssl_cert_reqs=none"))
    try:
        pool = client.connection_pool
        assert pool.connection_class.__mro__[1:3] == (_PrimaryOnly, SentinelManagedSSLConnection)
        assert pool.connection_kwargs["ssl_cert_reqs"] == "none"  # the URL's own options
        sentinel_pool = pool.sentinel_manager.sentinels[0].connection_pool
        assert issubclass(sentinel_pool.connection_class, SSLConnection)
        assert sentinel_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    finally:
        await client.aclose()


def test_no_primary_named_is_an_outage_every_caller_retries() -> None:
    # what connecting raises while the sentinels name no primary (between the primary's
    # death and a replica's promotion)
    assert issubclass(MasterNotFoundError, REDIS_DOWN)


async def test_the_cli_names_the_sentinels_when_no_primary_answers() -> None:
    from streams.errors import OPERATOR, ServiceUnavailable, services_answer

    settings = _settings()
    with pytest.raises(ServiceUnavailable) as got:
        async with services_answer(
            redis_url=settings.redis.url.get_secret_value(), acl=(settings, OPERATOR)
        ):
            raise MasterNotFoundError("No master found for 'mymaster'")
    said = str(got.value)
    assert said.startswith(
        "Redis, the primary of 'mymaster' that the sentinels at 10.0.0.1:26379,[::1]:26380 "
        "name, does not answer (MasterNotFoundError); check PRICELAB_REDIS__SENTINELS"
    )
    assert "127.0.0.1:6379" not in said  # the URL's host is not where it looked


async def test_its_connections_retry_as_a_single_url_clients_do() -> None:
    single = make_redis(Settings())
    client = make_redis(_settings())
    try:
        made = client.connection_pool.make_connection()
        alone = single.connection_pool.make_connection()
        # none: a failed call is the caller's to retry (UNAVAILABLE), in both
        assert made.retry.get_retries() == alone.retry.get_retries() == 0
        assert type(made.retry._backoff) is type(alone.retry._backoff)
    finally:
        await client.aclose()
        await single.aclose()
