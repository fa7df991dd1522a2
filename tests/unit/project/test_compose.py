"""The deployment contract of docker-compose.yml and the Dockerfile.

No container engine runs here, so the stack cannot be started in CI. These tests check, with
the real CLI and the real settings, what would stop it from starting: commands that do not
parse, variables that are not settings, scrape targets and healthchecks on the wrong ports,
missing provisioning files, a malformed KRaft cluster id, listeners a host client cannot
reach, a committed secret.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from controller.settings import Settings
from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "deploy/prometheus/prometheus.yml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, Any]:
    return _compose()["services"]  # type: ignore[no-any-return]


def _ours() -> dict[str, Any]:
    """The services built from this repository (pricelab's image)."""
    return {n: s for n, s in _services().items() if s.get("build") == "."}


def _parse(args: list[str]) -> None:
    """Parse ``pricelab ARGS`` with the real CLI (no command runs); raises on a bad command."""
    cmd: Any = typer.main.get_command(app)
    rest = list(args)
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    assert not hasattr(cmd, "commands"), f"{args}: names no command"
    cmd.make_context("pricelab " + " ".join(args[: len(args) - len(rest)]), rest)


def _setting_exists(name: str) -> bool:
    """Whether PRICELAB_A__B names a field of Settings (nested with __)."""
    path = name.removeprefix("PRICELAB_").lower().split("__")
    model: Any = Settings
    for part in path:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_services_are_all_there() -> None:
    for name in ("kafka", "redis", "topics", "controller", "analysis", "prometheus", "grafana"):
        assert name in _services(), name


@pytest.mark.parametrize("name", ["topics", "controller", "analysis"])
def test_every_command_in_compose_parses_through_the_cli(name: str) -> None:
    svc = _services()[name]
    _parse(svc["command"])
    if svc["command"][0] == "worker":
        roles = svc["command"][svc["command"].index("--role") + 1 :: 2]
        assert set(roles) <= {"controller", "analysis"}


def test_the_images_entrypoint_and_default_command_parse() -> None:
    text = (ROOT / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, flags=re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, flags=re.M).group(1))  # type: ignore[union-attr]
    assert entry == ["pricelab"]
    _parse(cmd)


def test_the_contract_check_refuses_a_bad_command() -> None:
    with pytest.raises(Exception, match="names no command|No such"):
        _parse(["topic"])
    with pytest.raises(Exception, match="--rol"):
        _parse(["worker", "--rol", "controller"])
    assert not _setting_exists("PRICELAB_KAFKA__BOOTSTRAP") and _setting_exists("PRICELAB_CLOCK")


def test_every_pricelab_variable_is_a_real_setting() -> None:
    names = {k for svc in _ours().values() for k in (svc.get("environment") or {})}
    assert "PRICELAB_KAFKA__BOOTSTRAP_SERVERS" in names
    assert sorted(n for n in names if n.startswith("PRICELAB_") and not _setting_exists(n)) == []
    # and their values are valid settings
    for svc in _ours().values():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        settings = Settings.model_validate(_nested(env))
        assert settings.kafka.bootstrap_servers == "kafka:9092"


def _nested(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in env.items():
        if not k.startswith("PRICELAB_"):
            continue
        path = k.removeprefix("PRICELAB_").lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = v
    return out


def test_prometheus_scrapes_every_replica_of_both_workers_on_their_metrics_port() -> None:
    prom = yaml.safe_load(PROM.read_text())
    found = {}
    for job in prom["scrape_configs"]:
        assert "static_configs" not in job, "a static target reaches one replica only"
        for sd in job["dns_sd_configs"]:
            assert sd["type"] == "A"
            for name in sd["names"]:
                found[name] = sd["port"]
    for name in ("controller", "analysis"):
        port = int(_services()[name]["environment"]["PRICELAB_METRICS_PORT"])
        assert found.get(name) == port, (name, found)
    mounts = _services()["prometheus"]["volumes"]
    rules = [m for m in mounts if m.startswith("./deploy/prometheus/alerts.yml:")]
    assert rules and rules[0].split(":")[1] in prom["rule_files"]


@pytest.mark.parametrize("name", ["controller", "analysis"])
def test_healthchecks_ask_the_web_port_for_readiness(name: str) -> None:
    svc = _services()[name]
    port = svc["environment"]["PRICELAB_WEB_PORT"]
    check = " ".join(svc["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/ready" in check
    assert svc["environment"]["PRICELAB_WEB_HOST"] == "0.0.0.0"


def test_workers_can_be_scaled_out() -> None:
    """No fixed name or host port stands in the way of `--scale controller=3`."""
    for name in ("controller", "analysis"):
        svc = _services()[name]
        assert "container_name" not in svc and "ports" not in svc and "hostname" not in svc


def test_provisioning_paths_exist() -> None:
    for name, svc in _services().items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
    dashboards = ROOT / "deploy/grafana/dashboards"
    assert list(dashboards.glob("*.json"))
    provider = yaml.safe_load(
        next((ROOT / "deploy/grafana/provisioning/dashboards").glob("*.y*ml")).read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    grafana = _services()["grafana"]["volumes"]
    assert any(
        m.split(":")[1] == path for m in grafana if m.startswith("./deploy/grafana/dashboards")
    )


def test_the_kraft_cluster_id_is_well_formed() -> None:
    cid = str(_services()["kafka"]["environment"]["CLUSTER_ID"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid), cid
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_listeners_serve_containers_and_host_clients() -> None:
    env = _services()["kafka"]["environment"]
    listeners = dict(x.split("://") for x in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(listeners) and set(listeners) <= set(protocols)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    # containers: the workers' bootstrap address is an advertised listener
    workers = _services()["controller"]["environment"]["PRICELAB_KAFKA__BOOTSTRAP_SERVERS"]
    assert workers in advertised.values()
    # the host: a listener advertised on loopback whose port is published to its container port
    published = {}
    for p in _services()["kafka"]["ports"]:
        ip, host, container = str(p).split(":")
        published[f"{ip}:{host}"] = container
    on_host = [name for name, addr in advertised.items() if addr in published]
    assert on_host, "no listener a host client can reach"
    name = on_host[0]
    assert listeners[name].rsplit(":", 1)[1] == published[advertised[name]]
    assert advertised[name] == Settings().kafka.bootstrap_servers  # the CLI's default works


def test_kafka_writes_its_log_on_the_volume() -> None:
    kafka = _services()["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    targets = {m.split(":")[1] for m in kafka["volumes"] if not m.startswith("./")}
    assert log_dirs in targets
    assert "kafka-data" in _compose()["volumes"]


def test_no_secret_is_committed() -> None:
    grafana = _services()["grafana"]
    password = str(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "must come from the environment"
    assert "secrets" not in _compose()
    assert not [p for p in (ROOT / "deploy").rglob("*") if "password" in p.name.lower()]


def test_host_ports_bind_loopback_only() -> None:
    for name, svc in _services().items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_workers_wait_for_their_services_and_the_topics() -> None:
    for name in ("controller", "analysis"):
        deps = _services()[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"


def test_redis_keeps_an_append_only_file() -> None:
    cmd = _services()["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"


def test_the_worker_image_holds_every_package_it_installs() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), flags=re.M))
    assert packages and packages <= copied, sorted(packages - copied)


def test_each_worker_gets_the_launchers_malloc_settings() -> None:
    """Compose starts the analysis and the controller workers with the glibc malloc settings the
    embedded launcher gives them (one value each, here and in streams/live/launcher.py)."""
    from streams.live.launcher import ANALYSIS_GLIBC_TUNABLES, CONTROLLER_GLIBC_TUNABLES, role_env

    services = _services()
    assert services["analysis"]["environment"]["GLIBC_TUNABLES"] == ANALYSIS_GLIBC_TUNABLES
    assert services["controller"]["environment"]["GLIBC_TUNABLES"] == CONTROLLER_GLIBC_TUNABLES
    assert CONTROLLER_GLIBC_TUNABLES == "glibc.malloc.mmap_threshold=131072"
    assert role_env(("analysis",), {}) == {"GLIBC_TUNABLES": ANALYSIS_GLIBC_TUNABLES}
    assert role_env(("controller",), {}) == {"GLIBC_TUNABLES": CONTROLLER_GLIBC_TUNABLES}
    # a worker of both roles runs analysis's cycles: analysis's settings
    assert role_env(("controller", "analysis"), {}) == {"GLIBC_TUNABLES": ANALYSIS_GLIBC_TUNABLES}
    assert role_env(("analysis",), {"GLIBC_TUNABLES": "mine"}) == {}  # an operator's own wins
    assert role_env(("controller",), {"GLIBC_TUNABLES": "mine"}) == {}
    assert role_env(("controller",), {"GLIBC_TUNABLES": ""}) == {}  # empty: glibc's defaults
