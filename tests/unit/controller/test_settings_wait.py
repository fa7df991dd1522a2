"""Waiting for replicas (``PRICELAB_REDIS__WAIT_REPLICAS``, ``__WAIT_TIMEOUT_MS``): what is
accepted, and the one sentence naming the variable for what is not (controller/settings.py)."""

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
    assert "\n" not in said
    return said


def test_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    r = load_settings().redis
    assert (r.wait_replicas, r.wait_timeout_ms) == (0, 1000)


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICELAB_REDIS__WAIT_REPLICAS", "2")
    monkeypatch.setenv("PRICELAB_REDIS__WAIT_TIMEOUT_MS", "250")
    r = load_settings().redis
    assert (r.wait_replicas, r.wait_timeout_ms) == (2, 250)


def test_with_sentinels_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICELAB_REDIS__SENTINELS", "s1:26379")
    monkeypatch.setenv("PRICELAB_REDIS__SENTINEL_SERVICE", "mymaster")
    monkeypatch.setenv("PRICELAB_REDIS__WAIT_REPLICAS", "1")
    assert load_settings().redis.wait_replicas == 1


def test_a_negative_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _refused(monkeypatch, wait_replicas="-1")
    assert "PRICELAB_REDIS__WAIT_REPLICAS" in said and "-1" in said and "0 not to wait" in said


@pytest.mark.parametrize("ms", ["0", "-5"])
def test_a_timeout_below_one_ms_is_refused(monkeypatch: pytest.MonkeyPatch, ms: str) -> None:
    said = _refused(monkeypatch, wait_replicas="1", wait_timeout_ms=ms)
    assert "PRICELAB_REDIS__WAIT_TIMEOUT_MS" in said and "wait for ever" in said


@pytest.mark.parametrize(
    "env",
    [
        {"cluster": "true"},
        {"url": "redis+cluster://127.0.0.1:7000/0"},
    ],
)
def test_refused_with_a_cluster(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    said = _refused(monkeypatch, wait_replicas="1", **env)
    assert "PRICELAB_REDIS__WAIT_REPLICAS" in said and "Cluster" in said


def test_zero_is_fine_with_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICELAB_REDIS__CLUSTER", "true")
    monkeypatch.setenv("PRICELAB_REDIS__WAIT_REPLICAS", "0")
    assert load_settings().redis.wait_replicas == 0


def test_the_settings_round_trip_through_a_childs_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings.model_validate({"redis": {"wait_replicas": 1, "wait_timeout_ms": 300}})
    for name, value in s.to_env().items():
        monkeypatch.setenv(name, value)
    r = load_settings().redis
    assert (r.wait_replicas, r.wait_timeout_ms) == (1, 300)
