"""TLS on real servers: redis-server 7 serving TLS itself, the embedded broker behind stunnel
(Tansu 0.6 serves no TLS: the last test pins why), a throw-away CA from ``pricelab up --tls``'s
own code (streams/net/tls.py).

What a security review asks of the wire, from the users' seats:
- the live path (create, flips, sales, estimates) runs through real worker processes over TLS
  to both servers, and publishes what the same runs publish in plaintext;
- a pricing system on librdkafka (confluent-kafka) reads the assignments over TLS;
- a plaintext client is refused by both, and the CLI says which setting to change;
- a CA that did not sign the servers' certificates, a file that is not a certificate and an
  expired certificate are one sentence naming the setting, exit status 2.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as CTopicPartition
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from controller.settings import Settings
from streams.live.driver import DriverConfig
from streams.live.embedded import EmbeddedStack, tansu_binary
from streams.net.tls import make_certificates
from tests.integration.conftest import cli_env, make_settings, run_pricelab
from tests.integration.live import drive, live_run

pytestmark = pytest.mark.integration

DAYS = 4


@pytest.fixture(scope="module")
def tls_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tls=True, validate_outputs=True) as s:
        yield s


def tls_settings(stack: EmbeddedStack, **overrides: Any) -> Settings:
    return stack.client_settings(make_settings(stack, **overrides))


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit status 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def stunnel_log(stack: EmbeddedStack) -> str:
    assert stack.workdir is not None
    return (stack.workdir / "stunnel.log").read_text()


def _published(run: Any) -> list[tuple[Any, ...]]:
    """Each look's numbers once (a look repeated as of the same instant: test_cluster.py)."""
    fields = ("effect", "se", "df", "ci_low", "ci_high", "n_units")
    return sorted(
        {
            (e["estimator"], e.get("segment") or "", e["_look"], *(e.get(f) for f in fields))
            for e in run.estimates
            if e["_look"] is not None
        }
    )


async def test_the_live_path_runs_over_tls_to_both_servers(
    tls_stack: EmbeddedStack, stack: EmbeddedStack
) -> None:
    settings = tls_settings(tls_stack)
    assert settings.kafka.security_protocol == "SSL"
    assert settings.redis.url.get_secret_value().startswith("rediss://")
    handshakes = stunnel_log(tls_stack).count("accepted connection")

    run = live_run("random-days", 12, DAYS, 3, "tls")
    used = await drive(settings, [run], DriverConfig(duplicates_per_day=2))

    # the workers were configured for TLS, and their connections went through the TLS port
    for role in ("controller", "analysis"):
        env = used["environ"][role]
        assert env[b"PRICELAB_KAFKA__SECURITY_PROTOCOL"] == b"SSL"
        assert env[b"PRICELAB_REDIS__URL"].startswith(b"rediss://")
    assert stunnel_log(tls_stack).count("accepted connection") > handshakes + 2
    # every sale counted once, and the analysis worker published at every look
    totals = used["totals"][run.id]
    assert sum(v for k, v in totals.items() if k.startswith("units:")) == run.units_sent
    assert run.estimates, "nothing published over TLS"

    # a pricing system on librdkafka reads the assignments over TLS
    assert tls_stack.tls_files is not None
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "security.protocol": "SSL",
            "ssl.ca.location": str(tls_stack.tls_files.ca),
            "group.id": f"{settings.app_id}-pricing",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(
            [
                CTopicPartition(settings.topics.assignments, p, 0)
                for p in range(settings.kafka.partitions)
            ]
        )
        seen: list[bytes] = []
        for _ in range(200):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None and msg.value():
                seen.append(msg.value())
            if len(seen) >= len(run.market.product_ids):
                break
    finally:
        consumer.close()
    assert len(seen) >= len(run.market.product_ids), "librdkafka read no assignments over TLS"

    # the same run in plaintext on the session's stack publishes the same estimates
    plain = live_run("random-days", 12, DAYS, 3, "tls")
    await drive(make_settings(stack), [plain], DriverConfig(duplicates_per_day=2))
    assert _published(run) == _published(plain)


async def test_plaintext_clients_are_refused(tls_stack: EmbeddedStack) -> None:
    settings = tls_settings(tls_stack)
    refused = stunnel_log(tls_stack).count("wrong version number")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=3000
    )
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    # the refusal happened at the TLS port (stunnel names the plaintext bytes it read)
    assert stunnel_log(tls_stack).count("wrong version number") > refused

    plain_redis = Redis(host=tls_stack.host, port=tls_stack.redis_port, socket_timeout=5)
    with pytest.raises(RedisConnectionError):
        await plain_redis.ping()
    await plain_redis.aclose()

    # the CLI names the setting to change, once for each server
    env = cli_env(settings) | {"PRICELAB_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT"}
    said = one_sentence(run_pricelab(env, "topics", "--timeout", "5"))
    assert "speaks TLS" in said and "PRICELAB_KAFKA__SECURITY_PROTOCOL" in said, said
    url = settings.redis.url.get_secret_value().replace("rediss://", "redis://")
    env = cli_env(settings) | {"PRICELAB_REDIS__URL": url}
    # TLS files beside a redis:// URL are a contradiction, named as such
    said = one_sentence(run_pricelab(env, "experiment", "list"))
    assert "PRICELAB_REDIS__TLS_CA_FILE is set but PRICELAB_REDIS__URL" in said, said
    del env["PRICELAB_REDIS__TLS_CA_FILE"]
    said = one_sentence(run_pricelab(env, "experiment", "list"))
    assert "speaks TLS" in said and "rediss://" in said, said


async def test_a_wrong_ca_is_one_sentence_naming_the_setting(
    tls_stack: EmbeddedStack, tmp_path: Path
) -> None:
    settings = tls_settings(tls_stack)
    other = make_certificates(tmp_path / "other", now=datetime.now(UTC))
    env = cli_env(settings) | {"PRICELAB_KAFKA__SSL_CAFILE": str(other.ca)}
    said = one_sentence(run_pricelab(env, "topics", "--timeout", "5"))
    assert "failed TLS verification" in said and "PRICELAB_KAFKA__SSL_CAFILE" in said, said
    assert "certificate" in said  # OpenSSL's reason, e.g. "unable to get local issuer ..."

    env = cli_env(settings) | {"PRICELAB_REDIS__TLS_CA_FILE": str(other.ca)}
    said = one_sentence(run_pricelab(env, "experiment", "list"))
    assert "failed TLS verification" in said and "PRICELAB_REDIS__TLS_CA_FILE" in said, said

    # a worker meets it at start: exit 2 with the same sentence, before faust starts
    env = cli_env(settings) | {"PRICELAB_KAFKA__SSL_CAFILE": str(other.ca)}
    said = one_sentence(run_pricelab(env, "worker", "--role", "controller"))
    assert "PRICELAB_KAFKA__SSL_CAFILE" in said, said

    # and the right CA works, for the same command
    ok = run_pricelab(cli_env(settings), "experiment", "list")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("setting", ["PRICELAB_KAFKA__SSL_CAFILE", "PRICELAB_REDIS__TLS_CA_FILE"])
async def test_a_file_that_is_not_a_certificate_or_has_expired_is_one_sentence(
    tls_stack: EmbeddedStack, tmp_path: Path, setting: str
) -> None:
    settings = tls_settings(tls_stack)
    command = ("topics", "--timeout", "5") if "KAFKA" in setting else ("experiment", "list")
    # the server's own key, given where a CA certificate belongs
    assert tls_stack.tls_files is not None
    env = cli_env(settings) | {setting: str(tls_stack.tls_files.key)}
    said = one_sentence(run_pricelab(env, *command))
    assert said == f"error: {setting}: {tls_stack.tls_files.key} is not a certificate " + (
        "(no PEM 'BEGIN CERTIFICATE' block that parses)"
    ), said

    expired = make_certificates(
        tmp_path / "expired", now=datetime.now(UTC), valid_for=timedelta(days=-30)
    )
    env = cli_env(settings) | {setting: str(expired.ca)}
    said = one_sentence(run_pricelab(env, *command))
    assert said.startswith(f"error: {setting}: {expired.ca}: the certificate CN="), said
    assert " expired on " in said, said


def test_tansu_takes_a_certificate_or_a_key_but_not_both(tmp_path: Path) -> None:
    """Why the embedded broker's TLS is stunnel's: Tansu 0.6 puts --cert and --key in one
    exclusive argument group, so it cannot be given both (docs/broker.md). When this test
    fails, a newer Tansu takes both: serve TLS from it and drop stunnel."""
    files = make_certificates(tmp_path, now=datetime.now(UTC))
    proc = subprocess.run(
        [str(tansu_binary()), "broker", "--cert", str(files.cert), "--key", str(files.key)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "'--cert <CERT>' cannot be used with '--key <KEY>'" in proc.stderr, proc.stderr


async def test_the_broker_itself_listens_on_loopback_only_behind_stunnel(
    tls_stack: EmbeddedStack,
) -> None:
    """The broker's own plaintext port is on loopback (read from the process's sockets); what
    it advertises is the TLS port, so a client that bootstraps there is sent back to TLS."""
    import psutil

    assert tls_stack.broker is not None and tls_stack.broker.proc is not None
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(tls_stack.broker.proc.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", tls_stack.broker_port)}
    assert tls_stack.broker_port != tls_stack.kafka_port
    settings = tls_settings(tls_stack)
    client = AIOKafkaClient(**settings.kafka.client_kwargs())  # type: ignore[arg-type]
    try:
        await client.bootstrap()
        brokers = {(b.host, b.port) for b in client.cluster.brokers()}
    finally:
        await client.close()
    assert brokers == {(tls_stack.host, tls_stack.kafka_port)}


async def test_a_tls_client_against_plaintext_servers_is_one_sentence(
    stack: EmbeddedStack, tls_stack: EmbeddedStack
) -> None:
    """The other side of "TLS on one side only": TLS settings against the session's plaintext
    stack. The broker waits for a request and never answers the handshake; Redis answers the
    ClientHello with an error line, which OpenSSL reads as a bad record."""
    assert tls_stack.tls_files is not None
    plain = make_settings(stack)
    env = cli_env(plain) | {
        "PRICELAB_KAFKA__SECURITY_PROTOCOL": "SSL",
        "PRICELAB_KAFKA__SSL_CAFILE": str(tls_stack.tls_files.ca),
    }
    said = one_sentence(run_pricelab(env, "topics", "--timeout", "5"))
    assert "never answered the TLS handshake" in said, said
    assert "PRICELAB_KAFKA__SECURITY_PROTOCOL" in said, said
    env = cli_env(plain) | {
        "PRICELAB_REDIS__URL": plain.redis.url.get_secret_value().replace("redis://", "rediss://"),
        "PRICELAB_REDIS__TLS_CA_FILE": str(tls_stack.tls_files.ca),
    }
    said = one_sentence(run_pricelab(env, "experiment", "list"))
    assert "TLS handshake" in said and "PRICELAB_REDIS__URL" in said, said
