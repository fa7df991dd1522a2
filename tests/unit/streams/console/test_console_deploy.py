"""The console in the production-shaped stack (docker-compose.yml): its command parses, its
settings are real, its healthcheck asks its /ready, Prometheus scrapes its /metrics port, and
its image installs its extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.settings import Settings

ROOT = Path(__file__).resolve().parents[4]


def _services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def _settings(env: dict[str, Any]) -> Settings:
    nested: dict[str, Any] = {}
    for k, v in env.items():
        if k.startswith("PRICELAB_"):
            *path, last = k.removeprefix("PRICELAB_").lower().split("__")
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[last] = str(v)
    return Settings.model_validate(nested)


def test_the_console_service_serves_on_its_port_and_is_checked_there() -> None:
    svc = _services()["console"]
    assert svc["build"] == "." and svc["command"] == ["console"]
    s = _settings(svc["environment"])
    assert (s.console.host, s.console.port) == ("0.0.0.0", 6080)
    assert s.console.users_file == Path("/etc/pricelab/console-users")
    assert f"127.0.0.1:{s.console.port}/ready" in " ".join(svc["healthcheck"]["test"])
    assert svc["ports"] == [f"127.0.0.1:{s.console.port}:{s.console.port}"]  # loopback only
    # no secret committed: compose asks for the session secret
    assert str(svc["environment"]["PRICELAB_CONSOLE__SESSION_SECRET"]).startswith("${")
    source, target, mode = svc["volumes"][0].rsplit(":", 2)
    assert (target, mode) == ("/etc/pricelab/console-users", "ro")
    assert (ROOT / source.split(":-", 1)[1].rstrip("}")).exists()  # the example, by default


def test_prometheus_scrapes_the_console_on_its_port() -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = [j for j in prom["scrape_configs"] if j["job_name"] == "pricelab-console"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["console"] and sd["port"] == 6080


def test_the_image_installs_the_console() -> None:
    assert "pip install --no-cache-dir '.[console]'" in (ROOT / "Dockerfile").read_text()
