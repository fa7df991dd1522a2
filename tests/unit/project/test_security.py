"""Security settings reach the clients: Kafka SASL/SSL (aiokafka and faust), Redis TLS/ACL."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr
from redis.asyncio.connection import Connection, SSLConnection

from controller.settings import KafkaSettings, RedisSettings, Settings
from controller.store import make_redis
from streams.worker.app import faust_credentials


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    return crt, key


def test_sasl_ssl_builds_a_verifying_context_and_passes_credentials(cert):
    crt, key = cert
    k = KafkaSettings(
        bootstrap_servers="broker:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="pricelab",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=str(crt),
        ssl_certfile=str(crt),
        ssl_keyfile=str(key),
    )
    kw = k.client_kwargs()
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c["subject"] == ((("commonName", "localhost"),),) for c in ctx.get_ca_certs())
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("pricelab", "s3cret")


def test_faust_gets_the_same_credentials(cert):
    crt, key = cert
    sasl = Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password=SecretStr("pw"),
            ssl_cafile=str(crt),
        )
    )
    creds = faust_credentials(sasl)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("u", "pw", "PLAIN")
    assert isinstance(creds.ssl_context, ssl.SSLContext)

    tls = Settings(
        kafka=KafkaSettings(
            security_protocol="SSL",
            ssl_cafile=str(crt),
            ssl_certfile=str(crt),
            ssl_keyfile=str(key),
        )
    )
    creds = faust_credentials(tls)
    assert isinstance(creds, faust.SSLCredentials)
    assert isinstance(creds.context, ssl.SSLContext)

    assert faust_credentials(Settings()) is None


def test_redis_tls_and_acl_pass_through(cert):
    crt, key = cert
    s = Settings(
        redis=RedisSettings(
            url=SecretStr("rediss://cache:6380/2"),
            username="pricelab",
            password=SecretStr("acl-pw"),
            tls_ca_file=str(crt),
            tls_cert_file=str(crt),
            tls_key_file=str(key),
        )
    )
    r = make_redis(s)
    kw = r.connection_pool.connection_kwargs
    assert issubclass(r.connection_pool.connection_class, SSLConnection)  # TLS, primary only
    assert (kw["host"], kw["port"], kw["db"]) == ("cache", 6380, 2)
    assert (kw["username"], kw["password"]) == ("pricelab", "acl-pw")
    assert (kw["ssl_ca_certs"], kw["ssl_certfile"], kw["ssl_keyfile"]) == (
        str(crt),
        str(crt),
        str(key),
    )


def test_plain_redis_url_password_is_used():
    r = make_redis(Settings(redis=RedisSettings(url=SecretStr("redis://:url-pw@localhost:6379/0"))))
    assert r.connection_pool.connection_kwargs["password"] == "url-pw"
    made = r.connection_pool.connection_class
    assert issubclass(made, Connection) and not issubclass(made, SSLConnection)


def test_a_cluster_url_or_flag_selects_a_cluster_client_with_the_same_credentials(cert):
    crt, key = cert
    s = Settings(
        redis=RedisSettings(
            url=SecretStr("rediss+cluster://pricelab:url-pw@cache:7000/0"),
            tls_ca_file=str(crt),
        )
    )
    r = make_redis(s)
    kw = r.get_connection_kwargs()
    assert type(r).__name__ == "RedisCluster"
    assert [(n.host, n.port) for n in r.nodes_manager.startup_nodes.values()] == [("cache", 7000)]
    assert kw["connection_class"].__name__ == "SSLConnection"
    assert (kw["username"], kw["password"], kw["ssl_ca_certs"]) == ("pricelab", "url-pw", str(crt))
    flag = make_redis(
        Settings(redis=RedisSettings(url=SecretStr("redis://cache:7000"), cluster=True))
    )
    assert type(flag).__name__ == "RedisCluster"
    assert flag.get_connection_kwargs()["connection_class"].__name__ == "Connection"
    single = make_redis(Settings(redis=RedisSettings(url=SecretStr("redis://cache:7000"))))
    assert type(single).__name__ == "Redis"
