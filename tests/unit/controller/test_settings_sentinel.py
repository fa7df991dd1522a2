"""Redis Sentinel settings (``PRICELAB_REDIS__SENTINELS``, ``__SENTINEL_SERVICE``,
``__SENTINEL_PASSWORD``): what is accepted, and the one sentence naming the variable for what
is not (controller/settings.py)."""

from __future__ import annotations

import pytest

from controller.errors import ConfigurationError
from controller.settings import Settings, load_settings


def _refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(f"PRICELAB_REDIS__{name.upper()}", value)
    with pytest.raises(ConfigurationError) as got:
        load_settings()
    said = str(got.value)
    assert "\n" not in said and said.count(": ") >= 1
    return said


def test_sentinels_and_their_service_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRICELAB_REDIS__SENTINELS", " s1:26379, 10.0.0.2:26380 ,[::1]:5000,s4")
    monkeypatch.setenv("PRICELAB_REDIS__SENTINEL_SERVICE", "mymaster")
    monkeypatch.setenv("PRICELAB_REDIS__SENTINEL_PASSWORD", "sentinel-secret")
    r = load_settings().redis
    assert r.sentinels == "s1:26379,10.0.0.2:26380,[::1]:5000,s4"
    assert r.sentinel_addresses == [
        ("s1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 5000),
        ("s4", 26379),  # Sentinel's own port when none is given
    ]
    assert r.sentinel_service == "mymaster"
    assert r.sentinel_password is not None
    assert "sentinel-secret" not in repr(r)


def test_without_sentinels_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    r = load_settings().redis
    assert r.sentinels is None and r.sentinel_addresses == [] and r.sentinel_service is None
    monkeypatch.setenv("PRICELAB_REDIS__SENTINELS", "")  # an empty variable: off
    assert load_settings().redis.sentinels is None


def test_the_settings_round_trip_through_a_childs_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings.model_validate(
        {
            "redis": {
                "sentinels": "a:1,b:2",
                "sentinel_service": "svc",
                "sentinel_password": "pw",
            }
        }
    )
    for name, value in s.to_env().items():
        monkeypatch.setenv(name, value)
    r = load_settings().redis
    assert (r.sentinels, r.sentinel_service) == ("a:1,b:2", "svc")
    assert r.sentinel_password is not None and r.sentinel_password.get_secret_value() == "pw"


@pytest.mark.parametrize(
    ("sentinels", "named"),
    [
        ("s1:26379,,s2:26379", "host:port addresses separated by commas"),
        ("s1:0", "'s1:0' is not host:port"),
        ("s1:70000", "'s1:70000' is not host:port"),
        ("s1:port", "'s1:port' is not host:port"),
        (":26379", "':26379' is not host:port"),
        ("::1:26379", "'::1:26379' is not host:port"),  # IPv6 needs its brackets
        ("[::1", "'[::1' is not host:port"),
    ],
)
def test_a_bad_sentinel_address_is_one_sentence_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, sentinels: str, named: str
) -> None:
    said = _refused(monkeypatch, sentinels=sentinels, sentinel_service="mymaster")
    assert said.startswith("PRICELAB_REDIS__SENTINELS: ")
    assert named in said


@pytest.mark.parametrize(
    "sentinels", ["redis://:hunter2@s1:26379", "s1:26379,admin:hunter2@s2:26379", "u@s1"]
)
def test_a_sentinel_address_with_credentials_is_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, sentinels: str
) -> None:
    said = _refused(monkeypatch, sentinels=sentinels, sentinel_service="mymaster")
    assert said.startswith("PRICELAB_REDIS__SENTINELS: holds a URL or credentials")
    assert "hunter2" not in said and "PRICELAB_REDIS__SENTINEL_PASSWORD" in said


def test_sentinels_need_their_service_and_a_service_needs_sentinels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = _refused(monkeypatch, sentinels="s1:26379")
    assert said.startswith("PRICELAB_REDIS__SENTINEL_SERVICE: is unset while ")
    assert "PRICELAB_REDIS__SENTINELS is set" in said
    monkeypatch.delenv("PRICELAB_REDIS__SENTINELS")
    said = _refused(monkeypatch, sentinel_service="mymaster")
    assert said.startswith("PRICELAB_REDIS__SENTINEL_SERVICE: is set without ")
    said = _refused(monkeypatch, sentinels="s1:26379", sentinel_service="my master")
    assert said.startswith("PRICELAB_REDIS__SENTINEL_SERVICE: 'my master' holds a space")


def test_a_sentinel_password_needs_sentinels(monkeypatch: pytest.MonkeyPatch) -> None:
    # a password given for sentinels that are not configured is a mistake, not ignored
    said = _refused(monkeypatch, sentinel_password="sentinel-secret")
    assert said.startswith("PRICELAB_REDIS__SENTINEL_PASSWORD: is set without ")
    assert "sentinel-secret" not in said


@pytest.mark.parametrize(
    "cluster",
    [{"cluster": "true"}, {"url": "redis+cluster://node:7000"}],
)
def test_sentinels_with_a_cluster_are_refused_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch, cluster: dict[str, str]
) -> None:
    said = _refused(monkeypatch, sentinels="s1:26379", sentinel_service="mymaster", **cluster)
    assert said.startswith("PRICELAB_REDIS__SENTINELS: is set for a Redis Cluster")
    assert said.count(".") <= 1


def test_sentinels_with_a_unix_socket_url_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _refused(
        monkeypatch, sentinels="s1:26379", sentinel_service="m", url="unix:///tmp/r.sock"
    )
    assert said.startswith("PRICELAB_REDIS__SENTINELS: is set and PRICELAB_REDIS__URL starts ")


def test_the_embedded_stack_points_a_sentinel_configuration_at_its_own_redis() -> None:
    from streams.live.embedded import EmbeddedStack

    configured = Settings.model_validate(
        {"redis": {"sentinels": "s1:26379", "sentinel_service": "mymaster"}}
    )
    r = EmbeddedStack(redis_port=6390).client_settings(configured).redis
    assert r.url.get_secret_value() == "redis://127.0.0.1:6390/0"
    assert r.sentinels is None and r.sentinel_service is None
