"""``pricelab health EXPERIMENT`` (issue #57; docs/operations.md): the console's health
document, read by the same view (streams.client.health.read_health) over the same readers.

The store, the panel source, the estimates, the trail and the dead letters are the console
health tests' stand-ins (tests/unit/streams/console/test_console_health.py); the command runs
through the real entry point (``streams.cli.main``), so its exit status is the one a shell
sees. Redis and the broker not answering is the real path, on ports where nothing listens."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from streams.cli import main
from streams.cli.health import render_health
from streams.client.history import Trail
from streams.console import auth
from streams.console.app import Console, build_app
from streams.console.health import HealthReads
from tests.unit.streams.console.test_console_app import hash_line
from tests.unit.streams.console.test_console_health import (
    NOW,
    TRAIL,
    _Feed,
    _look,
    _Panels,
    _state,
    _Store,
)

Letters = dict[tuple[str, str | None], int]
#: shoes's four late sales, hats's two and a letter that names no product
LETTERS: Letters = {("late", "shoes0"): 3, ("late", "shoes1"): 1, ("late", "hats0"): 2,
                    ("malformed", None): 1}  # fmt: skip


class _Selling(_Panels):
    """shoes's three completed periods, two products an arm, five units a cell."""

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        frame = await super().panel(exp_id, as_of)
        return frame.assign(units=5.0)


@dataclass
class World:
    """What the readers hand the view: the panel, the dead letters, the estimates."""

    panels: Any = field(default_factory=_Panels)
    letters: Letters = field(default_factory=lambda: dict(LETTERS))
    docs: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"shoes": [_look(NOW - timedelta(minutes=30))]}
    )
    store: _Store = field(default_factory=lambda: _Store([_state("shoes", 3, "olga")]))


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("PRICELAB_REDIS__URL", f"redis://127.0.0.1:{_dead_port()}/0")
    w = World()

    async def panel_source(settings: Settings, store: Any) -> Any:
        return w.panels

    async def estimates(settings: Settings, exp_id: str, idle: float) -> list[dict[str, Any]]:
        return w.docs.get(exp_id, [])

    async def trail(settings: Settings, exp_id: str, timeout: float = 30.0) -> Trail:
        return Trail(exp_id, [r | {"experiment": exp_id} for r in TRAIL])

    async def letters(settings: Settings, idle: float) -> Letters:
        return w.letters

    at = "streams.client.experiment_health"
    monkeypatch.setattr(f"{at}.make_redis", lambda settings: w.store.redis)
    monkeypatch.setattr(f"{at}.Store", lambda redis, prefix: w.store)
    monkeypatch.setattr(f"{at}.panel_source", panel_source)
    monkeypatch.setattr(f"{at}.all_estimates", estimates)
    monkeypatch.setattr(f"{at}.read_trail", trail)
    monkeypatch.setattr(f"{at}.read_dead_letters", letters)
    # the console over the same stand-ins
    monkeypatch.setattr("streams.console.health.read_trail", trail)
    monkeypatch.setattr("streams.console.health.read_dead_letters", letters)
    yield w


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["health", *args])
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 0), out, err


def _console_doc(world: World, tmp_path: Path) -> dict[str, Any]:
    users = tmp_path / "users"
    users.write_text(hash_line("vic", "viewer", "v-pass") + "\n")
    console = Console(
        Settings(console=ConsoleSettings(users_file=users)),
        auth.Users.load(users),
        world.store,  # type: ignore[arg-type]
        _Feed(world.docs),  # type: ignore[arg-type]
        health=HealthReads(panels=world.panels),
    )
    with TestClient(build_app(console)) as client:
        r = client.post("/api/login", json={"user": "vic", "password": "v-pass"})
        assert r.status_code == 200, r.text
        got = client.get("/api/experiments/shoes/health")
        assert got.status_code == 200, got.text
        doc: dict[str, Any] = got.json()
        return doc


def test_json_is_the_consoles_document_and_a_problem_exits_1(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "shoes", "--json")
    doc = json.loads(out)
    assert doc == _console_doc(world, tmp_path)
    checks = {c["key"]: c for c in doc["checks"]}
    assert list(checks) == ["sample_ratio", "sales", "dead_letters", "flips", "freshness",
                            "balance", "exposure"]  # fmt: skip
    # the last completed period (2) sold nothing while running: a problem
    assert checks["sales"]["flag"] == "problem" and doc["flag"] == "problem"
    assert checks["dead_letters"]["detail"]["by_reason"] == {"late": 4}
    assert (code, err) == (1, "")


def test_the_table_has_the_worst_flag_a_line_per_check_and_the_traffic(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "shoes")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"shoes: PROBLEM (the worst of 7 checks; as of {NOW.isoformat()}, the " \
        "stack's clock)"  # fmt: skip
    rows = {line.split()[1]: line.split()[0] for line in lines[1:8]}
    assert rows == {"Sample": "OK", "Sales": "PROBLEM", "Dead": "WARN", "Flip": "OK",
                    "Freshness": "OK", "Balance": "OK", "Multiple": "OK"}  # fmt: skip
    assert "4 dead letter(s) name a product of this experiment (4 late)" in lines[3]
    # the dead letters' warning says where a terminal reads them (the sentence is the console's)
    assert lines[8] == (
        "  next: pricelab dead-letters reads the dead letters; --replay with --reason or "
        "--offset sends them back"
    )
    # units by arm: two products an arm at five units, none in period 2
    assert lines[9] == "traffic (units by arm, the last 3 completed period(s))"
    assert [line.split() for line in lines[10:]] == [
        ["period", "treatment", "control"], ["0", "10", "10"], ["1", "10", "10"],
        ["2", "0", "0"],
    ]  # fmt: skip


def test_healthy_exits_0_and_a_warning_exits_1_only_with_fail_on_warn(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.panels, world.letters = _Selling(), {}
    code, out, _ = _run(capsys, "shoes")
    assert code == 0 and out.startswith("shoes: OK (") and "next:" not in out
    world.letters = dict(LETTERS)  # four late sales of shoes: a warning
    code, out, _ = _run(capsys, "shoes")
    assert code == 0 and out.startswith("shoes: WARN (")
    code, _, _ = _run(capsys, "shoes", "--fail-on", "warn")
    assert code == 1
    code, _, _ = _run(capsys, "shoes", "--fail-on", "problem", "--json")
    assert code == 0


def _one_sentence(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err and out == ""
    return lines[0]


def test_an_unknown_experiment_is_one_sentence_and_exit_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _one_sentence(*_run(capsys, "shoez"))
    assert "there is no experiment 'shoez' (did you mean 'shoes'?" in line


def test_a_bad_fail_on_is_one_sentence_and_exit_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _one_sentence(*_run(capsys, "shoes", "--fail-on", "ok"))
    assert "--fail-on" in line


def test_redis_not_answering_is_one_sentence_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("PRICELAB_REDIS__URL", f"redis://127.0.0.1:{_dead_port()}/0")
    line = _one_sentence(*_run(capsys, "shoes"))
    assert "Redis at 127.0.0.1" in line and "does not answer" in line


def test_no_completed_period_renders_without_traffic() -> None:
    doc = {"experiment": "x", "now": "2026-06-01T00:00:00+00:00", "flag": "ok", "checks": [],
           "arms": ["a", "b"], "traffic": []}  # fmt: skip
    assert render_health(doc).splitlines()[-1] == "traffic: no completed period yet"


def test_only_the_latest_periods_of_traffic_are_drawn() -> None:
    traffic = [{"period": k, "arms": {"a": {"units": float(k)}, "b": {"units": 0.5}}}
               for k in range(10)]  # fmt: skip
    doc = {"experiment": "x", "now": "t", "flag": "ok", "checks": [], "arms": ["a", "b"],
           "traffic": traffic}  # fmt: skip
    lines = render_health(doc).splitlines()
    assert lines[1] == "traffic (units by arm, the last 7 completed period(s); 3 older: --json)"
    assert lines[3].split() == ["3", "3", "0.5"] and lines[-1].split() == ["9", "9", "0.5"]


def test_the_flags_fail_on_takes_are_the_rules() -> None:
    from streams.cli import health
    from streams.client import health_rules

    assert (health.WARN, health.PROBLEM) == (health_rules.WARN, health_rules.PROBLEM)
    assert max(health_rules.FLAGS, key=len) == health.PROBLEM
