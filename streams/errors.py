"""The edge's errors (leaves of :class:`core.errors.PricelabError`).

A broker or Redis that does not answer reaches an operator as one sentence naming the address
tried; :func:`services_answer` turns the clients' own connection errors into it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from core.errors import PricelabError
from streams.net.probe import (
    kafka_tls_failure,
    redis_address,
    redis_tls_failure,
    sentinels_named,
)

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


class DeadLetterChoiceError(PricelabError):
    """The dead letters asked for (``pricelab dead-letters --reason``, ``--offset``) are not on
    the topic, or none of them can be replayed; the message says which."""


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

    from controller.store.base import REDIS_DOWN, ReplicaAnswered

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
        raise await _unanswered(
            tls_settings,
            kafka_tls_failure,
            f"the Kafka broker at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_KAFKA__BOOTSTRAP_SERVERS or start it (pricelab up)",
        ) from None
    except ReplicaAnswered:
        sentinels = sentinels_named(tls_settings) if tls_settings is not None else None
        if sentinels is not None:
            raise ServiceUnavailable(
                f"Redis, {sentinels}, answered a write as a replica (READONLY): a failover "
                "is under way; try again once the sentinels have promoted a replica"
            ) from None
        where = redis_address(redis_url) if redis_url else "the configured Redis"
        raise ServiceUnavailable(
            f"Redis at {where} answered a write as a replica (READONLY): a failover moved "
            "the primary; point PRICELAB_REDIS__URL at the primary or its endpoint"
        ) from None
    except redis_down as exc:
        sentinels = sentinels_named(tls_settings) if tls_settings is not None else None
        if sentinels is not None:
            raise ServiceUnavailable(
                f"Redis, {sentinels}, does not answer ({type(exc).__name__}); check "
                "PRICELAB_REDIS__SENTINELS and PRICELAB_REDIS__SENTINEL_SERVICE, or wait for "
                "the sentinels to promote a replica"
            ) from None
        where = redis_address(redis_url) if redis_url else "the configured Redis"
        raise await _unanswered(
            tls_settings,
            redis_tls_failure,
            f"Redis at {where} does not answer ({type(exc).__name__}); "
            "set PRICELAB_REDIS__URL or start it (pricelab up)",
        ) from None


async def _unanswered(
    tls_settings: Settings | None,
    tls_failure: Callable[[Settings], Awaitable[str | None]],
    sentence: str,
) -> TlsFailure | ServiceUnavailable:
    """What a service that does not answer raises: :class:`TlsFailure` when, with TLS settings,
    ``tls_failure``'s handshake names why; else :class:`ServiceUnavailable` saying ``sentence``."""
    if tls_settings is not None:
        failure = await tls_failure(tls_settings)
        if failure is not None:
            return TlsFailure(failure)
    return ServiceUnavailable(sentence)


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
