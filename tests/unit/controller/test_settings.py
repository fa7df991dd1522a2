from __future__ import annotations

from datetime import timedelta

import pytest
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
    from streams.worker.readiness import Readiness

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


def test_a_key_prefix_that_would_move_the_hash_tag_is_refused(monkeypatch):
    from controller.errors import ConfigurationError
    from controller.settings import load_settings

    for bad in ("a{b", "a}b", "", ":pl", "pl:"):
        with pytest.raises(ValueError, match="key prefix"):
            Settings(key_prefix=bad)
    monkeypatch.setenv("PRICELAB_KEY_PREFIX", "p{x}")
    with pytest.raises(ConfigurationError, match=r"^PRICELAB_KEY_PREFIX: key prefix 'p\{x\}'"):
        load_settings()
    assert Settings(key_prefix="pl.test-1").key_prefix == "pl.test-1"


def test_keys_of_one_experiment_share_a_slot_and_the_catalog_has_its_own():
    from redis.crc import key_slot

    import controller.store.keys as keys

    base = keys.experiment("pl", "exp-1")
    slots = {key_slot(f"{base}:{name}".encode()) for name in ("state", "cells:3", "seen:2:17")}
    assert slots == {key_slot(b"exp-1")}
    catalog = [keys.product("pl", "sku|1"), keys.creating("pl", "exp-1"), keys.clock("pl")]
    assert {key_slot(k.encode()) for k in catalog} == {key_slot(b"pl")}
    assert key_slot(b"pl") != key_slot(b"exp-1")
