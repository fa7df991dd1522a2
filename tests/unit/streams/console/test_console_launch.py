"""The "New experiment" page: a spec is checked with the CLI's own sentences (the same file
gives the same sentence as ``pricelab experiment create`` prints), a good one shows its plan
and its schedule (each period's products per arm, as ``pricelab schedule`` lists them cell by
cell), and a launch goes out as the create command of the signed-in operator; a viewer or an
analyst is refused with 403, as is a launch without the CSRF token."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.settings import ConsoleSettings, Settings
from streams.cli import main
from streams.console import auth
from streams.console.app import Console
from streams.console.server import build_console_app
from tests.unit.streams.console.test_console_app import (
    PASSWORDS,
    _Feed,
    _sign_in,
    _state,
    _Store,
    hash_line,
)

ROOT = Path(__file__).resolve().parents[4]
GOOD = ROOT / "docs" / "examples" / "random-days.yaml"
#: a spec the CLI refuses, by what is wrong with it
BAD = {
    "broken.yaml": "id: x\nproducts: [a\n  b: c\n",
    "broken.json": '{"id": "x", "products": ["a",}',
    "washout.yaml": GOOD.read_text().replace("washout: PT2H", "washout: P3D"),
    "misspelt.yaml": GOOD.read_text().replace("treatment_policy", "treatmnt_policy"),
    "not-a-mapping.yaml": "- just\n- a list\n",
    # valid as a spec, refused by the live path (check_live): guardrails on three arms of a
    # design whose guardrails the analysis worker cannot check per arm
    "live.yaml": (
        "id: three\ndesign: optimal-switchback\nproducts: [a, b, c, d]\n"
        "arms:\n  - {name: low, policy: p1, allocation: 0.3}\n"
        "  - {name: high, policy: p2, allocation: 0.3}\n"
        "  - {name: base, policy: p0, allocation: 0.4, control: true}\n"
        "start: 2026-06-01T00:00:00+00:00\nend: 2026-06-15T00:00:00+00:00\n"
        "guardrails: [{metric: units, max_drop_pct: 2}]\n"
    ),
    # an adaptive floor that leaves an arm under one held product a period (docs/adaptive.md)
    "floor.yaml": (
        "id: ladder\nproducts: [a, b, c, d, e, f, g, h, i]\nadaptive: {floor: 0.05}\n"
        "arms:\n  - {name: base, policy: p0, allocation: 0.25, control: true}\n"
        "  - {name: a1, policy: p1, allocation: 0.25}\n  - {name: a2, policy: p2, allocation: 0.25}\n"
        "  - {name: a3, policy: p3, allocation: 0.25}\n"
        "start: 2026-06-01T00:00:00+00:00\nend: 2026-06-29T00:00:00+00:00\n"
    ),
}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("launch") / "users"
    path.write_text("".join(hash_line(n, r, pw) + "\n" for n, (r, pw) in PASSWORDS.items()))
    return path


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def reply() -> dict[str, Any]:
    """What the stand-in controller answers a create with (a test may change it)."""
    return {"ok": True, "command_id": "c1", "state": "created"}


@pytest.fixture
def client(
    users_file: Path, sent: list[tuple[str, dict[str, Any]]], reply: dict[str, Any]
) -> Iterator[TestClient]:
    async def send(settings: Settings, kind: str, timeout: float = 30.0, **fields: Any) -> Any:
        sent.append((kind, fields))
        return reply

    settings = Settings(console=ConsoleSettings(users_file=users_file))
    console = Console(
        settings,
        auth.Users.load(users_file),
        _Store([_state("shoes", 2)]),  # type: ignore[arg-type]
        _Feed({}),  # type: ignore[arg-type]
        send,
    )
    with TestClient(build_console_app(console)) as c:
        yield c


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pricelab ARGS`` run in-process: its exit status, stdout and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_spec_is_422_with_the_sentence_the_cli_prints(
    client: TestClient, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text(BAD[name])
    code, _, err = _cli(capsys, "experiment", "create", str(path))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    cli_says = err.removeprefix("error: ").rstrip("\n")
    _sign_in(client, "vic")  # any signed-in role may check
    # the file uploaded, as the page's file field sends it
    with path.open("rb") as f:
        r = client.post("/api/specs/check", files={"file": (name, f, "application/x-yaml")})
    assert r.status_code == 422, r.text
    assert r.json() == {"error": cli_says}
    # the same text and name as JSON
    r = client.post("/api/specs/check", json={"spec": BAD[name], "name": name})
    assert (r.status_code, r.json()) == (422, {"error": cli_says})


def test_a_pasted_spec_is_named_so_in_its_sentence(client: TestClient) -> None:
    _sign_in(client, "vic")
    r = client.post("/api/specs/check", data={"spec": BAD["broken.yaml"]})
    assert r.status_code == 422
    assert r.json()["error"].startswith("(file): the pasted spec is not valid YAML:")
    r = client.post("/api/specs/check", data={"spec": "  \n"})
    assert r.status_code == 422 and "nothing to check" in r.json()["error"]


def test_a_good_spec_shows_its_plan_and_schedule_as_pricelab_schedule_lists_it(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _sign_in(client, "ana")
    r = client.post("/api/specs/check", data={"spec": GOOD.read_text()})
    assert r.status_code == 200, r.text
    doc = r.json()
    plan, schedule = doc["plan"], doc["schedule"]
    assert doc["experiment"] == "shoes-random-days"
    assert [(a["name"], a["policy"], a["control"]) for a in plan["arms"]] == [
        ("treatment", "elasticity-v2", False),
        ("control", "rule-based-v1", True),
    ]
    # the example: four products, 14 days from 23 March (Berlin), a 2-hour washout
    assert (plan["products"], plan["periods"], plan["period"]) == (4, 14, "P1D")
    assert (plan["timezone"], plan["washout"]) == ("Europe/Berlin", "PT2H")
    assert plan["decision_metric"] == "revenue" and plan["estimators"][0] == "fe"
    # every period's count of products per arm, washouts and blackouts: what the CLI's
    # schedule lists cell by cell, counted here
    code, out, _ = _cli(capsys, "schedule", str(GOOD), "--csv")
    assert code == 0
    cells = list(csv.DictReader(io.StringIO(out)))
    per_arm = Counter((int(c["period"]), c["arm"]) for c in cells)
    washouts = Counter(int(c["period"]) for c in cells if c["blackout_until"])
    assert (schedule["periods"], schedule["shown"], schedule["products"]) == (14, 14, 4)
    assert schedule["arms"] == ["treatment", "control"]
    for row in schedule["rows"]:
        k = row["period"]
        assert row["arms"] == {a: per_arm[(k, a)] for a in ("treatment", "control")}, k
        assert row["washout"] == washouts[k], k
        assert row["blackout"] == 0 and row["outside"] == 0
        assert row["start"] == next(c["period_start"] for c in cells if int(c["period"]) == k)
    assert schedule["rows"][0]["start"] == "2026-03-23T00:00:00+01:00"


def test_the_page_draws_the_sentence_or_the_preview(client: TestClient) -> None:
    _sign_in(client, "vic")
    hx = {"HX-Request": "true"}
    r = client.post("/api/specs/check", data={"spec": BAD["washout.yaml"]}, headers=hx)
    assert r.status_code == 422
    assert 'id="spec-error"' in r.text and "washout" in r.text
    r = client.post("/api/specs/check", data={"spec": GOOD.read_text()}, headers=hx)
    assert r.status_code == 200
    assert 'id="schedule"' in r.text and r.text.count('<tr data-period="') == 14
    assert "The plan of shoes-random-days" in r.text


def test_the_launch_button_is_an_operator_s(client: TestClient) -> None:
    _sign_in(client, "vic")
    page = client.get("/experiments/new")
    assert page.status_code == 200
    assert 'id="check"' in page.text and 'id="launch"' not in page.text
    client.cookies.clear()
    _sign_in(client, "olga")
    assert 'id="launch"' in client.get("/experiments/new").text
    assert 'href="/experiments/new"' in client.get("/experiments").text


def test_an_operator_launches_as_themselves(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments",
        json={"spec": GOOD.read_text(), "name": "random-days.yaml"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 201, r.text
    assert r.json()["experiment"] == "shoes-random-days" and r.json()["actor"] == "olga"
    assert [(kind, f["actor"], f["backfill"]) for kind, f in sent] == [("create", "olga", False)]
    # the spec as the CLI sends it: the validated spec's JSON
    spec = sent[0][1]["spec"]
    assert spec["id"] == "shoes-random-days" and spec["washout"] == "PT2H"
    assert spec["start"] == "2026-03-23T00:00:00+01:00"
    assert len(spec["products"]) == 4
    json.dumps(spec)  # it goes on the wire as JSON


def test_a_launch_with_backfill_from_the_form(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments", data={"spec": GOOD.read_text(), "backfill": "true", "csrf": csrf}
    )
    assert r.status_code == 201, r.text
    assert sent[0][1]["backfill"] is True


@pytest.mark.parametrize("user", ["vic", "ana"])
def test_a_viewer_or_analyst_may_not_launch_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], user: str
) -> None:
    csrf = _sign_in(client, user)
    r = client.post(
        "/api/experiments", json={"spec": GOOD.read_text()}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    said = {"viewer": "a viewer", "analyst": "an analyst"}[PASSWORDS[user][0]]
    assert r.json()["error"] == f"{said} may not operate: ask an operator or an admin"
    assert sent == []


def test_a_launch_without_the_csrf_token_is_403(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    _sign_in(client, "olga")
    r = client.post("/api/experiments", json={"spec": GOOD.read_text()})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post(
        "/api/experiments", json={"spec": GOOD.read_text()}, headers={"X-CSRF-Token": "forged"}
    )
    assert r.status_code == 403
    assert sent == []


def test_no_session_is_401(client: TestClient, sent: list[tuple[str, dict[str, Any]]]) -> None:
    for path in ("/api/specs/check", "/api/experiments"):
        r = client.post(path, json={"spec": GOOD.read_text()})
        assert (r.status_code, r.json()) == (401, {"error": "sign in first"})
    r = client.get("/experiments/new", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/experiments/new"
    assert sent == []


def test_a_bad_spec_is_not_launched_422(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments", json={"spec": BAD["washout.yaml"]}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 422 and r.json()["error"].startswith("washout:")
    assert sent == []


def test_the_controller_s_refusal_is_409_with_its_sentence(
    client: TestClient, sent: list[tuple[str, dict[str, Any]]], reply: dict[str, Any]
) -> None:
    refusal = "experiment 'shoes-random-days' already exists, with another spec"
    reply.clear()
    reply.update({"ok": False, "command_id": "c1", "error": refusal})
    csrf = _sign_in(client, "olga")
    r = client.post(
        "/api/experiments", json={"spec": GOOD.read_text()}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 409
    assert r.json()["reply"]["error"] == refusal
    assert len(sent) == 1
    # the page draws it where the reply goes
    r = client.post(
        "/api/experiments",
        data={"spec": GOOD.read_text(), "csrf": csrf},
        headers={"HX-Request": "true"},
    )
    shown = f"create refused by the controller: {refusal}"
    assert r.status_code == 409 and shown in html.unescape(r.text)


def test_the_dry_run_prints_the_plan_and_schedule_and_sends_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens here: a dry run that tried to send would fail
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")
    code, out, err = _cli(capsys, "experiment", "create", str(GOOD), "--dry-run")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "experiment shoes-random-days: random-days, 4 products"
    assert "  arm control (control): policy rule-based-v1, share 0.5" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("period"))
    assert len(lines) - header - 1 == 14  # a row a period


def test_a_long_calendar_shows_its_first_periods_and_says_so() -> None:
    from controller.spec import load_spec
    from streams.client.launch import PREVIEW_PERIODS, schedule_preview

    spec = load_spec(
        {
            "id": "hours",
            "products": [f"p{i}" for i in range(30)],
            "arms": [
                {"name": "low", "policy": "a", "allocation": 0.25},
                {"name": "high", "policy": "b", "allocation": 0.25},
                {"name": "base", "policy": "c", "allocation": 0.5, "control": True},
            ],
            "start": "2026-06-01T00:00:00+00:00",
            "end": "2026-06-06T00:00:00+00:00",
            "period": "PT1H",
            "seed": 3,
        }
    )
    shown = schedule_preview(spec)
    assert (shown["periods"], shown["shown"]) == (120, PREVIEW_PERIODS)
    assert shown["arms"] == ["low", "high", "base"]
    assert all(sum(r["arms"].values()) == 30 for r in shown["rows"])
    assert PREVIEW_PERIODS == 60  # the last shown is hour 59: two days and 11 hours in
    assert shown["rows"][-1]["start"] == "2026-06-03T11:00:00+00:00"


def test_a_triggered_design_s_products_wait_outside_their_window() -> None:
    from controller.spec import load_spec_file
    from streams.client.launch import schedule_preview

    spec = load_spec_file(ROOT / "docs" / "examples" / "triggered.yaml")
    rows = schedule_preview(spec)["rows"]
    # no trigger is assumed: every product is pending, on the control policy
    assert {(r["outside"], r["arms"]["control"]) for r in rows} == {(7, 7)}


def test_a_stored_experiments_schedule_comes_on_its_own_as_pricelab_schedule_lists_it(
    client: TestClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The Design section's schedule is fetched by the page once it has loaded (a
    1,000,000-product experiment's takes seconds): the experiment's document does not wait
    for it. Its counts are ``pricelab schedule``'s for the stored spec, cell by cell."""
    from tests.unit.streams.console.test_console_app import _state

    assert client.get("/api/experiments/shoes/schedule").status_code == 401
    _sign_in(client, "vic")
    doc = client.get("/api/experiments/shoes/schedule").json()
    spec = tmp_path / "shoes.json"
    spec.write_text(_state("shoes", 2).spec.to_json())
    code, out, _ = _cli(capsys, "schedule", str(spec), "--csv")
    assert code == 0
    per_arm = Counter((int(c["period"]), c["arm"]) for c in csv.DictReader(io.StringIO(out)))
    assert (doc["periods"], doc["products"]) == (5, 4)
    for row in doc["rows"]:
        k = row["period"]
        assert row["arms"] == {a: per_arm[(k, a)] for a in ("treatment", "control")}, k
    drawn = client.get("/experiments/shoes/schedule").text
    assert 'id="schedule"' in drawn and drawn.count('<tr data-period="') == 5
    r = client.get("/api/experiments/nope/schedule")
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_another_spec_under_the_same_id_and_creation_time_gets_its_own_schedule() -> None:
    """The schedule is counted once per stored spec, not once per id: a re-created
    experiment (or another store in the same process) with the same id and creation time
    is counted from its own spec. Found in CI: a 30-day 'shoes' from another test's store
    was shown for this module's 5-day one."""
    import asyncio
    from dataclasses import replace

    from controller.spec import load_spec
    from streams.console.views import schedule_view

    short = _state("same", 2)
    raw = json.loads(short.spec.to_json())
    raw["end"] = "2026-06-11T00:00:00+00:00"  # 10 days, not 5
    longer = replace(short, spec=load_spec(raw))
    first = asyncio.run(schedule_view(_Store([short]), "same"))  # type: ignore[arg-type]
    second = asyncio.run(schedule_view(_Store([longer]), "same"))  # type: ignore[arg-type]
    again = asyncio.run(schedule_view(_Store([short]), "same"))  # type: ignore[arg-type]
    assert (first["periods"], second["periods"], again["periods"]) == (5, 10, 5)
