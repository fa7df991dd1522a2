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


def test_readiness_waits_for_every_group_and_forgives_a_short_rebalance():
    from streams.readiness import Readiness

    t = [0.0]
    r = Readiness(grace=30.0, now=lambda: t[0])
    sales, faust_group = r.track("app-sales"), r.track("app")
    assert r.unready_groups() == ["app", "app-sales"]  # never assigned yet
    sales.on_assigned()
    assert r.unready_groups() == ["app"]
    faust_group.on_assigned()
    assert r.unready_groups() == []
    t[0] = 100.0
    sales.on_revoked()  # a rebalance starts
    t[0] = 120.0
    assert r.unready_groups() == []  # within the grace period
    t[0] = 131.0
    assert r.unready_groups() == ["app-sales"]  # stuck re-joining
    sales.on_assigned()
    assert r.unready_groups() == [] and r.describe()["app-sales"]["assigned"] is True
