"""What every store shares: the client, the key prefix, the Lua scripts and time in ms."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

import controller.store.keys as keys
from controller.errors import ConfigurationError
from controller.settings import Settings, check_tls_files

#: what the client raises while a Redis is down, restarting or failing over (a cluster adds
#: its own errors)
REDIS_DOWN: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
)
#: ... and a socket error from below it: a call that failed so may be retried
UNAVAILABLE: tuple[type[BaseException], ...] = (*REDIS_DOWN, OSError)


def make_redis(settings: Settings) -> Any:
    """A client for the configured Redis: ``redis.asyncio.Redis``, ``RedisCluster`` when
    ``PRICELAB_REDIS__CLUSTER`` is set or the URL's scheme ends in ``+cluster``, or the
    client of the primary the sentinels name (:class:`SentinelPrimary`) when
    ``PRICELAB_REDIS__SENTINELS`` is set."""
    r = settings.redis
    kw: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 10,
        # redis-py 8 defaults to 5 s; kept long for big single calls (a million-product
        # experiment's spec is ~10 MB); a dead server is still noticed by the connect timeout
        # and the health check
        "socket_timeout": 120,
        "socket_connect_timeout": 5,
    }
    if r.username:
        kw["username"] = r.username
    if r.password is not None:
        kw["password"] = r.password.get_secret_value()
    check_tls_files(
        "PRICELAB_REDIS__",
        ca=r.tls_ca_file,
        cert=r.tls_cert_file,
        key=r.tls_key_file,
        names=("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"),
    )
    url = r.url.get_secret_value()
    tls_files = [n for n in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(r, n)]
    if tls_files and not url.startswith("rediss"):
        raise ConfigurationError(
            f"PRICELAB_REDIS__{tls_files[0].upper()} is set but PRICELAB_REDIS__URL starts with "
            f"{url.split('://', 1)[0]}://: use rediss:// for TLS, or unset the TLS files"
        )
    if r.tls_ca_file:
        kw["ssl_ca_certs"] = r.tls_ca_file
    if r.tls_cert_file:
        kw["ssl_certfile"] = r.tls_cert_file
        kw["ssl_keyfile"] = r.tls_key_file
    if r.is_cluster:
        return RedisCluster.from_url(client_url(settings), **kw)
    if r.sentinels:
        return _sentinel_primary(settings, kw)
    client = Redis.from_url(url, **kw)
    pool = client.connection_pool
    base = pool.connection_class
    if issubclass(base, (Connection, UnixDomainSocketConnection)):  # SSLConnection is one
        pool.connection_class = type(
            f"PrimaryOnly{base.__name__}", (_PrimaryOnly, base), {"_demotions": Demotions()}
        )
    return client


class SentinelPrimary(Redis):
    """A client of the primary the sentinels name (``Sentinel.master_for``'s): closing it
    closes its connections to the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        sentinels = self.connection_pool.sentinel_manager  # type: ignore[attr-defined]
        try:
            await super().aclose(close_connection_pool)
        finally:
            await sentinels.aclose()


def _sentinel_primary(settings: Settings, kw: dict[str, Any]) -> SentinelPrimary:
    """The client of a Sentinel deployment's primary (``PRICELAB_REDIS__SENTINELS``).

    Each connection asks the sentinels for the primary's address when it connects, so a
    failover that kills the primary for good is an outage until they promote a replica:
    the connections to the dead server fail, and while the sentinels still name it (before
    they agree it is down), or name no primary (``MasterNotFoundError``), connecting fails
    too, all as ``ConnectionError`` (``REDIS_DOWN``); once they name the new primary, the
    next connection reaches it. redis-py's own connection raises a plain ``READONLY`` as a
    lost connection; :class:`_PrimaryOnly` is mixed in above it for the refusals it lets
    through (a Redis 6 script's error, an aborted transaction) and to open the pool's other
    connections again after a demotion (a failover that keeps the old primary as a replica:
    they would go on reading from it). The URL gives the scheme (TLS), the database, the
    credentials and its query's options; its host is not used."""
    from redis.asyncio.connection import parse_url
    from redis.asyncio.sentinel import (
        Sentinel,
        SentinelManagedConnection,
        SentinelManagedSSLConnection,
    )

    r = settings.redis
    url = r.url.get_secret_value()
    given: dict[str, Any] = dict(parse_url(url))
    for where in ("host", "port", "path", "connection_class"):
        given.pop(where, None)
    tls = url.startswith("rediss://")
    base = SentinelManagedSSLConnection if tls else SentinelManagedConnection
    primary_kw = kw | given  # the URL's options win, as in Redis.from_url
    primary_kw["connection_class"] = type(
        f"PrimaryOnly{base.__name__}", (_PrimaryOnly, base), {"_demotions": Demotions()}
    )
    # a sentinel answers at once or is skipped for the next: no 120 s wait on one
    sentinel_kw: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if r.sentinel_password is not None:
        sentinel_kw["password"] = r.sentinel_password.get_secret_value()
    if tls:
        sentinel_kw["ssl"] = True
        sentinel_kw |= {k: v for k, v in primary_kw.items() if k.startswith("ssl_")}
    sentinel = Sentinel(r.sentinel_addresses, sentinel_kwargs=sentinel_kw)
    assert r.sentinel_service is not None  # the settings refuse sentinels without it
    client: SentinelPrimary = sentinel.master_for(
        r.sentinel_service, redis_class=SentinelPrimary, **primary_kw
    )
    return client


class ReplicaAnswered(ConnectionError):
    """A server answered a write as a replica (``READONLY``): a failover demoted the primary
    the connection reached. A lost connection to every caller that retries one."""


@dataclass
class Demotions:
    """What one client's connections saw of failovers."""

    #: ``time.monotonic()`` when a server last answered as a replica
    last: float | None = None
    #: how many times it did after a second or more without: a connection opened in an
    #: earlier one is opened again before it sends anything
    epoch: int = 0

    def seen(self) -> None:
        now = time.monotonic()
        if self.last is None or now - self.last >= 1.0:
            self.epoch += 1  # once for a burst: the retries of one refused command
        self.last = now


class _PrimaryOnly:
    """Mixed into the connections of a client :func:`make_redis` makes. A server that answers
    a write with READONLY is a replica now, the primary a failover demoted. A managed Redis's
    primary endpoint (a DNS name) moves to the new primary, while the pool's connections stay
    with the old one, where writes are refused and reads may lag. So the error is raised as a
    lost connection (:class:`ReplicaAnswered`), the outage every caller already rides out
    (``UNAVAILABLE``), where a refusal would be taken for a bug; and every connection of the
    client opened before it is opened again when it is next taken from the pool, by the task
    that takes it (no connection is closed under another task's command, nor between a
    command sent and its answer read), so it reaches whichever server the URL names by then.
    Until one of its writes is refused, a connection to a demoted primary is not known to be
    one (:func:`answers_as_primary` asks the server the URL names now)."""

    _demotions: Demotions
    #: the epoch of :class:`Demotions` the connection was opened in
    _epoch: int = 0

    async def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        self._epoch = self._demotions.epoch
        await super().on_connect_check_health(*args, **kwargs)  # type: ignore[misc]

    async def connect(self) -> None:
        # the pool calls it on every checkout, when the connection has no answer pending (a
        # check on every send would drop the answers of commands sent ahead of their reading)
        if self._epoch != self._demotions.epoch and self.is_connected:  # type: ignore[attr-defined]
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
        await super().connect()  # type: ignore[misc]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ResponseError as exc:
            if not demoted(exc):
                raise
            self._demotions.seen()
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise ReplicaAnswered(
                f"Redis answered as a replica ({exc}): a failover demoted the primary this "
                "connection reached; reconnecting"
            ) from exc


#: the words of a replica refusing a write, in a plain answer (``READONLY ...``), a script's
#: error (Redis 6: ``Error running script ... -READONLY ...``) or an aborted transaction
#: (``EXECABORT Transaction discarded because of: READONLY ...``); "slave" before Redis 5
_REFUSED_BY_REPLICA = re.compile(r"\bREADONLY You can't write against a read only (replica|slave)")


def demoted(exc: BaseException) -> bool:
    """Whether ``exc`` is a replica refusing a write."""
    return isinstance(exc, ReadOnlyError) or bool(_REFUSED_BY_REPLICA.search(str(exc)))


def _demotions_of(client: Any) -> Demotions | None:
    pool = getattr(client, "connection_pool", None)
    return getattr(getattr(pool, "connection_class", None), "_demotions", None)


async def answers_as_primary(client: Any) -> bool:
    """Whether the server ``client``'s URL names now says it is a primary, in its answer to
    ``HELLO`` (which every ACL user may send; ``ROLE`` needs @admin). Asked on a connection
    opened for the question and closed after it: a pooled one may still be connected to the
    server a failover demoted, after the URL's name has moved to the new primary. Asked in
    the protocol the connection opened with: a ``HELLO 2`` on a RESP3 connection, redis-py
    8's default, switches the server to RESP2 on it, and ``HGETALL`` then answers a list.
    True for a client :func:`make_redis` did not make so (a cluster's) and for a server
    without ``HELLO``."""
    if _demotions_of(client) is None:
        return True
    pool = client.connection_pool
    conn = pool.make_connection()
    try:
        await conn.connect()
        await conn.send_command("HELLO", conn.protocol)
        reply = await conn.read_response()
    except ResponseError:  # a server without HELLO (before Redis 6) cannot tell
        return True
    finally:
        await conn.disconnect()
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=False)
    role = {_text(k): v for k, v in pairs}.get("role")
    return role is None or _text(role) == "master"


def client_url(settings: Settings) -> str:
    """The URL :func:`make_redis` hands redis-py: the configured one, or for a cluster its
    first node without the ``+cluster`` suffix and without path or query (a cluster has one
    database; the path of a copied single-node URL is dropped)."""
    r = settings.redis
    url = r.url.get_secret_value()
    if not r.is_cluster:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme.removesuffix('+cluster')}://{rest.split('/', 1)[0].split('?', 1)[0]}"


def to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def from_ms(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000.0, UTC)


@cache
def lua(name: str) -> str:
    """The Lua script ``lua/<name>.lua``; a line ``--! include other`` is replaced by
    ``lua/other.lua`` (shared functions)."""
    text = resources.files("controller.store").joinpath("lua", f"{name}.lua").read_text()
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("--! include "):
            out.append(lua(line.removeprefix("--! include ").strip()))
        else:
            out.append(line)
    return "".join(out)


def _text(x: bytes | str | None) -> str | None:
    return x.decode() if isinstance(x, bytes) else x


class RedisStore:
    """A client and a key prefix; subclasses hold one aggregate's keys."""

    def __init__(self, redis: Redis, prefix: str = "pl") -> None:
        # a client made by make_redis (decode_responses=True): every reply is str, where
        # redis-py's annotations say bytes | str
        self.redis: Any = redis
        self.p = keys.check_prefix(prefix)
        self._scripts: dict[str, AsyncScript] = {}
        #: the server has EVALSHA_RO (Redis 7); None until asked
        self._has_ro: bool | None = None

    def _script(self, name: str) -> AsyncScript:
        s = self._scripts.get(name)
        if s is None:
            s = self._scripts[name] = self.redis.register_script(lua(name))
        return s

    async def _read_only(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        """Run a script whose commands only read with EVALSHA_RO, which a Redis user with
        read-only permission on its keys may run (controller/store/acl.py); on a server older
        than Redis 7, which has no EVALSHA_RO, with EVALSHA."""
        script = self._script(name)
        if self._has_ro is False:
            return await script(keys=keys, args=args)
        try:
            try:
                got = await self.redis.evalsha_ro(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.redis.script_load(script.script)
                got = await self.redis.evalsha_ro(script.sha, len(keys), *keys, *args)
        except RedisError as e:
            # Redis 6 answers "unknown command"; a cluster client that routes by the server's
            # COMMAND table refuses it before sending ("doesn't exist in Redis commands")
            said = str(e).lower()
            unknown = "unknown command" in said or "doesn't exist" in said
            # (a concurrent call may have found this out first: _has_ro False already)
            if self._has_ro is True or not unknown:
                raise
            self._has_ro = False
            return await script(keys=keys, args=args)
        self._has_ro = True
        return got

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.redis, RedisCluster)

    def exp(self, exp_id: str) -> str:
        """The base of an experiment's keys (``keys.experiment``)."""
        return keys.experiment(self.p, exp_id)

    def cat(self, name: str) -> str:
        """A catalog key (``keys.catalog``)."""
        return keys.catalog(self.p, name)

    @contextlib.asynccontextmanager
    async def _connection(self, key: str) -> AsyncIterator[Any]:
        """A pooled connection, to the node that serves ``key`` on a cluster, for self-packed
        commands on keys of that one slot; dropped if replies may be pending."""
        if self.is_cluster:
            await self.redis.initialize()
            node = self.redis.get_node_from_key(key)
            conn = node.acquire_connection()

            async def release() -> None:
                node.release(conn)

        else:
            pool = self.redis.connection_pool
            conn = await pool.get_connection()

            async def release() -> None:
                await pool.release(conn)

        try:
            yield conn
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await release()
