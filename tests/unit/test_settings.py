from __future__ import annotations

from datetime import timedelta

from pydantic import SecretStr

from controller.settings import KafkaSettings, RedisSettings, Settings


def test_env_prefix_and_nested_fields(monkeypatch):
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("PRICELAB_TOPICS__SALES", "shop.sales")
    monkeypatch.setenv("PRICELAB_ALLOWED_LATENESS", "PT6H")
    monkeypatch.setenv("PRICELAB_CLOCK", "simulated")
    s = Settings()
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.topics.sales == "shop.sales"
    assert s.allowed_lateness == timedelta(hours=6)
    assert s.clock == "simulated"


def test_defaults_bind_loopback():
    s = Settings()
    assert s.metrics_host == "127.0.0.1" and s.web_host == "127.0.0.1"
    assert s.kafka.bootstrap_servers.startswith("127.0.0.1")


def test_secrets_never_show_in_repr_or_dump():
    s = Settings(
        kafka=KafkaSettings(
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password=SecretStr("kafka-pw-42"),
            security_protocol="SASL_PLAINTEXT",
        ),
        redis=RedisSettings(
            url=SecretStr("redis://:redis-pw-42@r:6379/0"), password=SecretStr("acl-pw-42")
        ),
    )
    text = repr(s) + str(s) + s.model_dump_json()
    for secret in ("kafka-pw-42", "redis-pw-42", "acl-pw-42"):
        assert secret not in text


def test_sasl_settings_pass_through_to_kafka_clients():
    k = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password=SecretStr("pw"),
    )
    kw = k.client_kwargs()
    assert kw["security_protocol"] == "SASL_PLAINTEXT"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kw["sasl_plain_username"] == "svc" and kw["sasl_plain_password"] == "pw"


def test_to_env_round_trips(monkeypatch):
    s = Settings(allowed_lateness=timedelta(minutes=90), tick_interval=0.25)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert Settings() == s
