"""Why a connection fails at TLS, found by probing the server: a handshake with the client's own
settings, or with none to learn whether the port speaks TLS at all. Each answer is one sentence
naming the setting to fix (:func:`streams.errors.services_answer` raises it as ``TlsFailure``);
None when it is not TLS that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.settings import Settings


def sentinels_named(settings: Settings) -> str | None:
    """Where a Sentinel deployment's client looks for its primary, for a sentence (the
    service and the sentinels); None without Sentinel."""
    r = settings.redis
    if not r.sentinels:
        return None
    return f"the primary of {r.sentinel_service!r} that the sentinels at {r.sentinels} name"


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without credentials."""
    rest = url.split("://", 1)[-1]
    hostport = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    return hostport or url


#: a handshake that a port which accepted the connection never answers: a plaintext server
#: waiting for a request (the embedded broker does)
_HANDSHAKE_TIMEOUT = 5.0


class _NoTlsAnswer(Exception):
    """The port accepted a connection but never answered the TLS handshake."""


async def _handshake(host: str, port: int, ctx: ssl.SSLContext) -> BaseException | None:
    """The TLS error a handshake with ``host:port`` meets, if it meets one: an
    ``ssl.SSLError``, or :class:`_NoTlsAnswer` when the port accepts a connection and never
    answers the handshake. A server that does not answer at all is not a TLS failure: None."""
    try:
        _, probe = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return None
    probe.close()
    with contextlib.suppress(Exception):
        await probe.wait_closed()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host),
            _HANDSHAKE_TIMEOUT,
        )
    except ssl.SSLError as exc:
        return exc
    except TimeoutError:
        return _NoTlsAnswer()
    except OSError:
        return None
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return None


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _speaks_tls(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_unverified()), 3
        )
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


#: OpenSSL's verify codes (X509_V_ERR_*) that a CA file cannot mend
_CERT_EXPIRED, _NOT_YET_VALID, _NAME_MISMATCH = 10, 9, 62


def _tls_sentence(
    what: str, where: str, exc: BaseException, ca_setting: str, proto: str, address: str
) -> str:
    if isinstance(exc, _NoTlsAnswer):
        return (
            f"{what} at {where} accepted the connection but never answered the TLS handshake "
            f"(within {_HANDSHAKE_TIMEOUT:g} s): it serves no TLS on this port; check {proto}"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, said = exc.verify_code, exc.verify_message
        if code == _NAME_MISMATCH:
            return (
                f"{what} at {where} failed TLS verification ({said}): its certificate does not "
                f"name the address the client used; check {address} against the names in "
                "the server's certificate"
            )
        if code in (_CERT_EXPIRED, _NOT_YET_VALID):
            return (
                f"{what} at {where} failed TLS verification ({said}): the server's own "
                "certificate is out of date; renew it on the server"
            )
        return (
            f"{what} at {where} failed TLS verification ({said}); check "
            f"{ca_setting}: it must name the CA that signed the server's certificate"
        )
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return f"{what} at {where} refused the TLS handshake ({reason}); check {proto}"


async def kafka_tls_failure(settings: Settings) -> str | None:
    """Why a connection to the first broker fails at TLS, as one sentence naming the setting;
    None when it is not TLS that fails."""
    k = settings.kafka
    server = k.bootstrap_servers.split(",")[0].strip()
    host, _, port = server.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address is bracketed: [::1]:9093
    if not host or not port.isdigit():
        return None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        ctx = k.client_kwargs()["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext)
        exc = await _handshake(host, int(port), ctx)
        if exc is None:
            return None
        return _tls_sentence(
            "the Kafka broker",
            server,
            exc,
            "PRICELAB_KAFKA__SSL_CAFILE",
            "PRICELAB_KAFKA__SECURITY_PROTOCOL (does the broker serve TLS on this port?)",
            "PRICELAB_KAFKA__BOOTSTRAP_SERVERS",
        )
    if await _speaks_tls(host, int(port)):
        return (
            f"the Kafka broker at {server} speaks TLS and PRICELAB_KAFKA__SECURITY_PROTOCOL is "
            f"{k.security_protocol}: set it to SSL (or SASL_SSL) and PRICELAB_KAFKA__SSL_CAFILE"
        )
    return None


async def redis_tls_failure(settings: Settings) -> str | None:
    """Why a connection to Redis fails at TLS, as one sentence naming the setting; None when
    it is not TLS that fails."""
    import inspect

    from redis.asyncio.connection import RedisSSLContext, parse_url
    from redis.exceptions import RedisError

    from controller.store.base import client_url

    r = settings.redis
    if r.sentinels:  # the primary's address is the sentinels' to give: none to probe here
        return None
    url = r.url.get_secret_value()
    try:
        # the client's own reading of its URL (make_redis's): host (IPv6 unbracketed), port
        # and the query's ssl_* options, which redis-py puts before the settings' files
        given = parse_url(client_url(settings))
    except (ValueError, RedisError):
        return None
    host, port = given.get("host"), int(given.get("port") or 6379)
    if not host:
        return None
    where = redis_address(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("rediss"):
        # what redis-py's SSLConnection builds: its defaults, the settings' files, the URL's
        # own ssl_* options over them
        options: dict[str, object] = {"cert_reqs": "required", "check_hostname": True}
        options |= {"ca_certs": r.tls_ca_file, "certfile": r.tls_cert_file}
        options["keyfile"] = r.tls_key_file
        options |= {k.removeprefix("ssl_"): v for k, v in given.items() if k.startswith("ssl_")}
        known = inspect.signature(RedisSSLContext).parameters
        try:
            ctx = RedisSSLContext(**{k: v for k, v in options.items() if k in known}).get()  # type: ignore[arg-type]
        except (ssl.SSLError, OSError, ValueError, TypeError, RedisError):
            return None  # the files were checked before, the flag is the client's to refuse
        exc = await _handshake(host, port, ctx)
        if exc is None:
            return None
        return _tls_sentence(
            "Redis",
            where,
            exc,
            "PRICELAB_REDIS__TLS_CA_FILE",
            "PRICELAB_REDIS__URL (rediss:// only where Redis serves TLS)",
            "PRICELAB_REDIS__URL",
        )
    if await _speaks_tls(host, port):
        return (
            f"Redis at {where} speaks TLS and PRICELAB_REDIS__URL starts with "
            f"{scheme}://: use rediss:// and set PRICELAB_REDIS__TLS_CA_FILE"
        )
    return None
