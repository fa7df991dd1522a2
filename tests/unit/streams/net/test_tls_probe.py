"""The TLS probe behind a failed connection reads the address and the URL as the clients do.

A real TLS server (asyncio, OpenSSL) on the IPv6 loopback, with a certificate from a CA the
client was not given. The probe must reach it where the client would, and judge it with the
client's own verification settings:
- a bracketed IPv6 bootstrap address (``[::1]:9093``) is probed, not skipped;
- a ``rediss://`` URL whose query turns verification off (``ssl_cert_reqs=none``, which
  redis-py honours) is not told its CA file is wrong: with no verification, an untrusted
  certificate is not why the connection failed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.settings import KafkaSettings, RedisSettings, Settings
from streams.net.probe import kafka_tls_failure, redis_tls_failure
from streams.net.tls import make_certificates


@pytest.fixture
async def untrusted_tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server on [::1] whose certificate the CA returned did not sign; its port."""
    served = make_certificates(tmp_path / "served", now=datetime.now(UTC), hosts=("::1",))
    other = make_certificates(tmp_path / "other", now=datetime.now(UTC), hosts=("::1",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(served.cert, served.key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "::1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, other.ca


async def test_a_bracketed_ipv6_bootstrap_address_is_probed(
    untrusted_tls_server: tuple[int, Path],
) -> None:
    port, wrong_ca = untrusted_tls_server
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=f"[::1]:{port}", security_protocol="SSL", ssl_cafile=str(wrong_ca)
        )
    )
    said = await kafka_tls_failure(settings)
    assert said is not None, "a bracketed IPv6 address was not probed"
    assert said.startswith(f"the Kafka broker at [::1]:{port} failed TLS verification"), said
    assert "PRICELAB_KAFKA__SSL_CAFILE" in said, said
    # the same server in plaintext settings is recognised as speaking TLS
    plain = Settings(kafka=KafkaSettings(bootstrap_servers=f"[::1]:{port}"))
    said = await kafka_tls_failure(plain)
    assert said is not None and "speaks TLS" in said, said


async def test_a_redis_url_that_turns_verification_off_is_not_blamed_on_the_ca(
    untrusted_tls_server: tuple[int, Path],
) -> None:
    port, wrong_ca = untrusted_tls_server
    url = f"rediss://[::1]:{port}/0"
    verifying = Settings(redis=RedisSettings(url=url, tls_ca_file=str(wrong_ca)))
    said = await redis_tls_failure(verifying)
    assert said is not None and "PRICELAB_REDIS__TLS_CA_FILE" in said, said
    assert said.startswith(f"Redis at [::1]:{port} failed TLS verification"), said

    unverified = Settings(
        redis=RedisSettings(url=f"{url}?ssl_cert_reqs=none", tls_ca_file=str(wrong_ca))
    )
    assert await redis_tls_failure(unverified) is None
    # an upper-case scheme is TLS too, as it is to redis-py
    upper = Settings(redis=RedisSettings(url=f"REDISS://[::1]:{port}/0", tls_ca_file=str(wrong_ca)))
    said = await redis_tls_failure(upper)
    assert said is not None and "failed TLS verification" in said, said
    # a flag redis-py refuses is not diagnosed, and does not escape as an exception
    refused = Settings(
        redis=RedisSettings(url=f"{url}?ssl_cert_reqs=NONE", tls_ca_file=str(wrong_ca))
    )
    assert await redis_tls_failure(refused) is None
    # a cluster URL is read as make_redis hands it to redis-py: the first node, without path
    # or query, so a query that turns verification off does not reach the client, nor the probe
    cluster = Settings(
        redis=RedisSettings(
            url=f"rediss+cluster://[::1]:{port}/0?ssl_cert_reqs=none", tls_ca_file=str(wrong_ca)
        )
    )
    said = await redis_tls_failure(cluster)
    assert said is not None and "failed TLS verification" in said, said
