"""docker-compose.yml describes the production-shaped stack; no Docker engine runs here, so
the file is checked by parsing: services, wiring, loopback-only host ports, scrape config."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_all_there():
    services = _compose()["services"]
    for name in ("kafka", "redis", "controller", "analysis", "prometheus", "grafana"):
        assert name in services, name


def test_kafka_runs_in_kraft_mode_without_zookeeper():
    svc = _compose()["services"]
    env = svc["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert not any("zookeeper" in name for name in svc)


def test_workers_point_at_the_stack_services():
    svc = _compose()["services"]
    for name, role in (("controller", "controller"), ("analysis", "analysis")):
        env = svc[name]["environment"]
        assert env["PRICELAB_KAFKA__BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
        assert env["PRICELAB_REDIS__URL"].startswith("redis://redis:")
        assert svc[name]["command"] == ["worker", "--role", role]
        deps = svc[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"


def test_host_ports_bind_loopback_only():
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_prometheus_scrapes_both_workers_on_their_metrics_port():
    compose = _compose()
    port = compose["services"]["controller"]["environment"]["PRICELAB_METRICS_PORT"]
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"controller:{port}", f"analysis:{port}"}
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)
    for mount in mounts + compose["services"]["grafana"]["volumes"]:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def test_redis_keeps_an_append_only_file():
    cmd = _compose()["services"]["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"


def test_the_worker_image_holds_every_package_it_installs():
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (root / "Dockerfile").read_text(), flags=re.M))
    assert packages and packages <= copied, sorted(packages - copied)
