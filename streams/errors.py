"""The edge's errors (leaves of :class:`core.errors.PricelabError`).

A broker or Redis that does not answer reaches an operator as one sentence naming the address
tried; :func:`services_answer` turns the clients' own connection errors into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from core.errors import PricelabError

if TYPE_CHECKING:
    from controller.settings import Settings


class ServiceUnavailable(PricelabError):
    """A broker or Redis did not answer; the message names what and where."""


class PermissionDenied(PricelabError):
    """Redis refused a role's user a command or a key (``NOPERM``); the message names the
    permission and the role."""


class TlsFailure(PricelabError):
    """A TLS handshake failed (a CA that did not sign the server's certificate, an expired
    one, TLS on one side only); the message names the setting to fix. Not retried: waiting
    does not mend it."""


class NoCompletedPeriod(PricelabError):
    """A live experiment has no completed period yet as of the stack's clock: nothing to
    export or report; the message says the time, the clock and when the first one ends."""


#: the role the CLI's Redis reads run as
OPERATOR = ("operator",)

_NOPERM_COMMAND = re.compile(r"permissions to run the '([^']+)' command")


def permission_sentence(role: str, user: str | None, missing: str | None, said: str) -> str:
    """The one sentence for a ``NOPERM``: the role, its Redis user, the permission missing
    (``HSET``, or ``HGETALL on pl:exp:{*}:state``) or else what Redis said, and the fix."""
    who = f"the {role} role" + (f" (Redis user {user})" if user else "")
    what = f"{missing}" if missing else said.removeprefix("NOPERM ").strip()
    return (
        f"Redis refused {who} a permission it needs: {what} (NOPERM); load the ACL users "
        '`pricelab acl` prints for this version (docs/operations.md, "Redis ACL users")'
    )


def is_noperm(exc: BaseException) -> bool:
    """Redis refused a permission: ``NOPERM``, or (Redis 7.0) a script's own call refused,
    which reaches the client as a script error ("... can't access ...")."""
    from redis.exceptions import NoPermissionError, ResponseError

    if isinstance(exc, NoPermissionError):
        return True
    said = str(exc)
    return isinstance(exc, ResponseError) and ("can't access" in said or "no permissions" in said)


def refused_command(said: str) -> str | None:
    """The command a ``NOPERM`` names (``HSET``), if it names one: a key refusal does not."""
    found = _NOPERM_COMMAND.search(said)
    return found.group(1).upper() if found else None


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without credentials."""
    rest = url.split("://", 1)[-1]
    hostport = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    return hostport or url


@contextlib.asynccontextmanager
async def services_answer(
    bootstrap_servers: str | None = None,
    redis_url: str | None = None,
    *,
    acl: tuple[Settings, tuple[str, ...]] | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[None]:
    """Run a block that talks to the broker and/or Redis; a connection failure leaves it as
    :class:`ServiceUnavailable` with the address tried, and a Redis ``NOPERM`` as
    :class:`PermissionDenied`. ``acl``: the settings and the roles the block runs as (the
    CLI's reads: ``operator``); the sentence then names the permission missing, found by
    :func:`controller.store.acl.missing_permission` when Redis's answer names no command.
    With ``settings`` (or ``acl``'s), a failed connection is probed with a TLS handshake: a
    certificate the CA does not verify, or TLS on one side only, is :class:`TlsFailure`
    naming the setting."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable
    from redis.exceptions import RedisClusterException, ResponseError

    from controller.store.base import REDIS_DOWN

    redis_down: tuple[type[BaseException], ...] = (*REDIS_DOWN, RedisClusterException)

    tls_settings = settings or (acl[0] if acl else None)
    try:
        yield
    except TimeoutError:
        # a client with TLS settings against a plaintext server waits for a handshake answer
        # that never comes, until the caller's deadline: say so if that is why
        if tls_settings is not None:
            probes = ((kafka_tls_failure, bootstrap_servers), (redis_tls_failure, redis_url))
            for probe, given in probes:
                failure = await probe(tls_settings) if given else None
                if failure is not None:
                    raise TlsFailure(failure) from None
        raise
    except ResponseError as exc:  # NoPermissionError is one
        if not is_noperm(exc):
            raise
        raise await permission_denied(exc, acl) from None
    except (KafkaConnectionError, NoBrokersAvailable, KafkaTimeoutError) as exc:
        where = bootstrap_servers or "the configured brokers"
        if tls_settings is not None:
            failure = await kafka_tls_failure(tls_settings)
            if failure is not None:
                raise TlsFailure(failure) from None
        raise ServiceUnavailable(
            f"the Kafka broker at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_KAFKA__BOOTSTRAP_SERVERS or start it (pricelab up)"
        ) from None
    except redis_down as exc:
        where = redis_address(redis_url) if redis_url else "the configured Redis"
        if tls_settings is not None:
            failure = await redis_tls_failure(tls_settings)
            if failure is not None:
                raise TlsFailure(failure) from None
        raise ServiceUnavailable(
            f"Redis at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_REDIS__URL or start it (pricelab up)"
        ) from None


async def permission_denied(
    exc: BaseException, acl: tuple[Settings, tuple[str, ...]] | None
) -> PermissionDenied:
    """The :class:`PermissionDenied` for Redis's ``NOPERM`` ``exc``: the command it names, or
    else the first of the roles' reads a probe finds refused (a fresh connection)."""
    said = str(exc)
    if acl is None:
        return PermissionDenied(permission_sentence("pricelab", None, refused_command(said), said))
    settings, roles = acl
    missing = refused_command(said)
    role = " and ".join(sorted(roles))
    if missing is None:
        from controller.store import make_redis
        from controller.store.acl import missing_permission

        redis = make_redis(settings)
        try:
            for r in sorted(roles):
                found = await missing_permission(redis, r, settings.key_prefix)
                if found is not None:
                    missing, role = found, r
                    break
        except Exception:  # the diagnosis is a courtesy: Redis's own answer still names it
            missing = None
        finally:
            await redis.aclose()
    return PermissionDenied(permission_sentence(role, settings.redis.username, missing, said))


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
