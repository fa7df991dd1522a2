"""Which Redis answers mean "this server is a replica now" (a failover demoted it): the
client drops the connection and raises it as a lost connection (controller/store/base.py)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ReadOnlyError, ResponseError

from controller.settings import Settings
from controller.store.base import demoted, make_redis

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


@pytest.mark.parametrize("exc", [ReadOnlyError(REDIS7_WRITE), ReadOnlyError(REDIS7_SCRIPT),
                                 ResponseError(REDIS6_SCRIPT)])  # fmt: skip
def test_a_replica_refusing_a_write_is_a_demotion(exc: Exception) -> None:
    assert demoted(exc)


@pytest.mark.parametrize("said", [
    "Error running script (call to f_1): @user_script:3: user_script:3: Bad data format",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "Error running script (call to f_2): @user_script:9: READONLY is a word a script said",
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
        assert issubclass(made, base) and made is not base
        assert made.read_response is not base.read_response
    finally:
        await client.aclose()
