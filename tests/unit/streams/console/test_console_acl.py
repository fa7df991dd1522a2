"""The console's own Redis user and Kafka principal (``pricelab acl``): it reads the state and
writes commands only; its user is printed when its password is set."""

from __future__ import annotations

import ast
import importlib
import shlex
from pathlib import Path

import pytest

from controller.settings import Settings, TopicSettings
from controller.store.acl import acl_lines
from streams.cli import main
from streams.cli.kafka_acl import kafka_acl_commands, kafka_roles
from streams.console import KAFKA_CLIENTS

CONSOLE = Path(__file__).resolve().parents[4] / "streams" / "console"
PASSWORDS = {"controller": "a", "analysis": "b", "operator": "c"}


def _grants(line: str) -> list[str]:
    """The commands of a ``user`` line's selectors: ``(+hset %W~...)`` -> ``hset``."""
    return [w.removeprefix("(+") for w in line.split() if w.startswith("(+")]


def test_the_console_s_redis_user_reads_and_writes_nothing() -> None:
    lines = acl_lines("pl", PASSWORDS | {"console": "d"})
    assert [line.split()[1] for line in lines] == [
        "pricelab-controller",
        "pricelab-analysis",
        "pricelab-operator",
        "pricelab-console",
    ]
    console = lines[-1]
    assert sorted(_grants(console)) == ["get", "hgetall", "hmget", "smembers"]
    words = console.split()
    assert "+ping" in words and "+multi" not in words and "+exec" not in words
    assert all(w.startswith("%R~") for w in words if "~" in w)  # read permissions only
    # without its password, the three roles' lines alone (as before the console)
    assert len(acl_lines("pl", PASSWORDS)) == 3


def test_pricelab_acl_prints_the_console_s_user_when_its_password_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for role, pw in PASSWORDS.items():
        monkeypatch.setenv(f"PRICELAB_ACL_PASSWORD_{role.upper()}", pw)
    monkeypatch.delenv("PRICELAB_ACL_PASSWORD_CONSOLE", raising=False)
    with pytest.raises(SystemExit) as done:
        main(["acl"])
    assert done.value.code == 0
    assert "pricelab-console" not in capsys.readouterr().out
    monkeypatch.setenv("PRICELAB_ACL_PASSWORD_CONSOLE", "console-pw-4")
    with pytest.raises(SystemExit) as done:
        main(["acl"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split()[:2] == ["user", "pricelab-console"]
    assert "console-pw-4" not in out


def test_the_console_s_kafka_principal_reads_its_views_and_writes_commands_only() -> None:
    topics = TopicSettings(**{f: f"x.{f}" for f in TopicSettings.model_fields})
    s = Settings(topics=topics, app_id="acl", clock="wall")
    [role] = [r for r in kafka_roles(s) if r.name == "console"]
    assert role.principal == "User:pricelab-console"
    assert set(role.reads) == {"x.estimates", "x.experiment_events", "x.command_replies"}
    assert role.writes == ("x.commands",)
    assert role.groups == () and role.creates == ()
    mine = [
        shlex.split(line)
        for line in kafka_acl_commands(s)
        if "User:pricelab-console" in line and not line.startswith("#")
    ]
    assert {(c[c.index("--topic") + 1], c[c.index("--operation") + 1]) for c in mine} == {
        ("x.command_replies", "Read"),
        ("x.commands", "Write"),
        ("x.estimates", "Read"),
        ("x.experiment_events", "Read"),
    }


def test_the_console_opens_kafka_only_through_the_clients_it_declares() -> None:
    imported: set[str] = set()
    for path in CONSOLE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    opening = {
        m
        for m in imported
        if m.startswith("streams.") and hasattr(importlib.import_module(m), "KAFKA_READS")
    }
    assert opening == set(KAFKA_CLIENTS)
