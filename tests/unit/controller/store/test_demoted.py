"""Which Redis answers mean "this server is a replica now" (a failover demoted it): the
client drops the connection and raises it as a lost connection (controller/store/base.py)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ExecAbortError, ReadOnlyError, ResponseError

from controller.settings import Settings
from controller.store.base import ReplicaAnswered, _PrimaryOnly, demoted, make_redis
from streams.errors import ServiceUnavailable, services_answer

# answers as the servers word them (redis-cli against a replica, 2026-11-27)
REDIS7_WRITE = "You can't write against a read only replica."
REDIS7_SCRIPT = (
    "You can't write against a read only replica. script: "
    "67ed14c1cb086d8c2fcf91ebe13410ba087fd0f8, on @user_script:1."
)
REDIS6_SCRIPT = (
    "Error running script (call to f_54cce3be2e7f062ef0859c75c7bbcd0ed9c8761b): "
    "@user_script:204: @user_script: 204: -READONLY You can't write against a read only "
    "replica."
)
# Redis 6.2: MULTI, SET queued, the server demoted, then EXEC
REDIS6_EXEC = (
    "Transaction discarded because of: READONLY You can't write against a read only replica."
)
REDIS4_WRITE = "You can't write against a read only slave."


@pytest.mark.parametrize("exc", [ReadOnlyError(REDIS7_WRITE), ReadOnlyError(REDIS7_SCRIPT),
                                 ResponseError(REDIS6_SCRIPT), ExecAbortError(REDIS6_EXEC),
                                 ReadOnlyError(REDIS4_WRITE)])  # fmt: skip
def test_a_replica_refusing_a_write_is_a_demotion(exc: Exception) -> None:
    assert demoted(exc)


@pytest.mark.parametrize("said", [
    "Error running script (call to f_1): @user_script:3: user_script:3: Bad data format",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "Error running script (call to f_2): @user_script:9: READONLY is a word a script said",
    "Transaction discarded because of: WRONGTYPE Operation against a key",
    "NOPERM this user has no permissions to run the 'hset' command",
])  # fmt: skip
def test_other_refusals_are_not(said: str) -> None:
    assert not demoted(ResponseError(said))


@pytest.mark.parametrize(("url", "base"), [
    ("redis://127.0.0.1:6379/0", Connection),
    ("rediss://127.0.0.1:6379/0", SSLConnection),
    ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
])  # fmt: skip
async def test_every_kind_of_connection_is_made_primary_only(url: str, base: type) -> None:
    client = make_redis(Settings.model_validate({"redis": {"url": url}}))
    try:
        made = client.connection_pool.connection_class
        assert made.__mro__[1:3] == (_PrimaryOnly, base)
        assert made._demotions.epoch == 0 and made._demotions.last is None  # none seen yet
    finally:
        await client.aclose()


async def test_the_cli_names_a_replica_not_a_dead_redis() -> None:
    with pytest.raises(ServiceUnavailable) as got:
        async with services_answer(redis_url="redis://10.1.2.3:6379/0"):
            raise ReplicaAnswered("Redis answered as a replica (READONLY ...)")
    said = str(got.value)
    assert "10.1.2.3:6379 answered a write as a replica" in said
    assert "PRICELAB_REDIS__URL" in said and "does not answer" not in said
