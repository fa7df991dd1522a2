"""Timer bodies: a Redis outage, or the broker failing a request, skips a tick; any other error
ends the process (exit 70)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import errors as aiokafka_errors
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError

from streams.worker.handlers import EXIT_PERMISSION, EXIT_TIMER_FAILED, OutageTolerated
from streams.worker.metrics import Metrics


async def _run(exc: BaseException, exits: list[int], metrics: Metrics) -> None:
    async with OutageTolerated("period flip", metrics, exit=exits.append):
        raise exc


@pytest.mark.asyncio
async def test_redis_outage_is_counted_and_the_tick_skipped() -> None:
    metrics, exits = Metrics(), list[int]()
    await _run(RedisConnectionError("refused"), exits, metrics)  # swallowed
    assert exits == []
    retries = metrics.registry.get_sample_value(
        "pricelab_redis_retries_total", {"component": "period flip"}
    )
    assert retries == 1.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "exc",
    [
        # what the embedded broker answers to a write it failed as it came back from a restart
        # (the soak's broker restart, docs/broker.md): aiokafka does not retry it
        aiokafka_errors.UnknownError(),
        aiokafka_errors.KafkaConnectionError("Connection at 127.0.0.1:9092 closed"),
        aiokafka_errors.KafkaTimeoutError(),  # the producer gave up waiting for the broker
        aiokafka_errors.NotLeaderForPartitionError(),  # Apache Kafka's broker restarting
        aiokafka_errors.RequestTimedOutError(),
        aiokafka_errors.UnknownTopicOrPartitionError(),  # a restarted embedded broker's topics
    ],
    ids=type,
)
async def test_a_broker_failure_is_counted_and_the_tick_skipped(exc: Exception) -> None:
    metrics, exits = Metrics(), list[int]()
    await _run(exc, exits, metrics)  # swallowed
    assert exits == []
    sample = metrics.registry.get_sample_value
    assert sample("pricelab_broker_retries_total", {"component": "period flip"}) == 1.0
    assert sample("pricelab_redis_retries_total", {"component": "period flip"}) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "exc",
    [
        aiokafka_errors.TopicAuthorizationFailedError("pricelab.estimates"),
        aiokafka_errors.MessageSizeTooLargeError(),
        aiokafka_errors.KafkaError("a client-side state not understood"),
    ],
    ids=type,
)
async def test_a_broker_error_a_retry_does_not_mend_exits(exc: Exception) -> None:
    metrics, exits = Metrics(), list[int]()
    with pytest.raises(type(exc)):
        await _run(exc, exits, metrics)
    assert exits == [EXIT_TIMER_FAILED]
    assert (
        metrics.registry.get_sample_value(
            "pricelab_broker_retries_total", {"component": "period flip"}
        )
        is None
    )


@pytest.mark.asyncio
async def test_unexpected_error_exits_with_its_own_status() -> None:
    metrics, exits = Metrics(), list[int]()
    with pytest.raises(KeyError):
        await _run(KeyError("bug"), exits, metrics)
    assert exits == [EXIT_TIMER_FAILED] and EXIT_TIMER_FAILED == 70


@pytest.mark.asyncio
async def test_cancellation_is_shutdown_not_a_failure() -> None:
    metrics, exits = Metrics(), list[int]()
    with pytest.raises(asyncio.CancelledError):
        await _run(asyncio.CancelledError(), exits, metrics)
    assert exits == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("said", "named"),
    [
        ("this user has no permissions to run the 'hset' command", "HSET"),
        ("this user has no permissions to access one of the keys used as arguments",
         "this user has no permissions to access one of the keys used as arguments"),
    ],
)  # fmt: skip
async def test_a_refused_permission_is_one_sentence_naming_it_and_the_role_and_exit_2(
    said: str, named: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics, exits = Metrics(), list[int]()
    with pytest.raises(NoPermissionError):
        async with OutageTolerated(
            "analysis", metrics, exit=exits.append, role="analysis", user="pricelab-analysis"
        ):
            raise NoPermissionError(said)
    assert exits == [EXIT_PERMISSION] and EXIT_PERMISSION == 2
    (record,) = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert record.exc_info is None  # no traceback
    assert record.getMessage() == (
        "Redis refused the analysis role (Redis user pricelab-analysis) a permission it needs: "
        f"{named} (NOPERM); load the ACL users `pricelab acl` prints for this version "
        '(docs/operations.md, "Redis ACL users")'
    )


@pytest.mark.asyncio
async def test_a_script_call_refused_by_redis_7_0_is_a_permission_too() -> None:
    metrics, exits = Metrics(), list[int]()
    said = "ERR Error running script: The user executing the script can't access at least one"
    with pytest.raises(ResponseError):
        async with OutageTolerated("period flip", metrics, exit=exits.append):
            raise ResponseError(said)
    assert exits == [EXIT_PERMISSION]
