"""`pricelab schedule SPEC`: every unit and period, as a table or CSV, without a broker."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from controller.designs import assign
from controller.periods import n_periods
from controller.schedule_cli import COLUMNS, register
from controller.spec import load_spec_file

EXAMPLES = Path(__file__).parents[3] / "docs" / "examples"


@pytest.fixture()
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command("noop")  # a second command keeps `schedule` a subcommand, as in pricelab
    def _noop() -> None:
        pass

    return a


def run(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["schedule", *args])
    return r.exit_code, r.stdout, r.stderr


def test_csv_lists_every_unit_and_period(app: typer.Typer) -> None:
    path = EXAMPLES / "random-days.yaml"
    code, out, _ = run(app, str(path), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    spec = load_spec_file(path)
    assert len(rows) == len(spec.all_products()) * n_periods(spec)
    assert tuple(rows[0]) == COLUMNS
    for r in rows:
        a = assign(spec, r["unit"], int(r["period"]))
        assert r["arm"] == a.arm.value and float(r["probability"]) == a.probability
        assert r["policy"] == a.policy
        assert r["period_start"] == a.period_start.astimezone(spec.zone).isoformat()
        assert (r["blackout_reason"] or None) == a.blackout_reason
    # the spring-forward day (29 March, Berlin) is one 23-hour period
    dst = [r for r in rows if r["period_start"].startswith("2026-03-29")]
    assert {r["period_end"] for r in dst} == {"2026-03-30T00:00:00+02:00"}


def test_start_and_end_dates_select_local_days_inclusively(app: typer.Typer) -> None:
    path = EXAMPLES / "random-days.yaml"
    code, out, _ = run(app, str(path), "--csv", "--start", "2026-03-28", "--end", "2026-03-30")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    days = sorted({r["period_start"][:10] for r in rows})
    assert days == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert len(rows) == 3 * 4


def test_table_is_readable_and_names_blackouts(app: typer.Typer) -> None:
    code, out, _ = run(app, str(EXAMPLES / "crossover.yaml"), "--end", "2026-04-08")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [c for c in COLUMNS if c != "class"]
    assert set(lines[1]) <= {"-", " "}
    body = lines[2:]
    assert len(body) == 10 * 3
    assert all("phase-blackout" in line for line in body)  # first week of phase 0


def test_triggers_can_be_supplied_for_a_triggered_design(app: typer.Typer) -> None:
    path = EXAMPLES / "triggered.yaml"
    code, out, _ = run(
        app, str(path), "--csv", "--trigger", "tv-a=2026-06-03", "--trigger", "tv-e=5"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    windows = {(r["unit"], r["period"]): r["window"] for r in rows}
    assert windows[("tv-a", "1")] == "pending" and windows[("tv-a", "2")] != "pending"
    assert windows[("tv-e", "4")] == "pending" and windows[("tv-e", "5")] != "pending"
    assert windows[("tv-g", "0")] == "pending"
    assert {r["class"] for r in rows} == {"tv-55in", "tv-65in"}


def test_a_bad_spec_is_refused_with_the_field(app: typer.Typer, tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "crossover.yaml")
        .read_text()
        .replace("blackout_periods: 7", "blackout_periods: 21")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, out, err = run(app, str(bad))
    assert code == 2 and out == ""
    assert "crossover.blackout_periods: must be shorter than a phase" in err


def test_a_missing_file_is_an_error(app: typer.Typer, tmp_path: Path) -> None:
    code, _, err = run(app, str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err


LADDER = """
id: ladder
products: [a, b, c, d, e, f]
arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.4, control: true}
  - {name: p95, policy: price-95, price_ratio: 0.95, allocation: 0.3}
  - {name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.3}
start: 2026-05-04
end: 2026-05-11
washout: PT2H
seed: 3
"""


def test_a_three_arm_schedule_names_each_cells_arm(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "ladder.yaml"
    path.write_text(LADDER)
    code, out, _ = run(app, str(path), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[5:9] == ["arm", "arm_name", "price_ratio", "probability"]
    arms = {"list": ("list-price", "1", "control"), "p95": ("price-95", "0.95", "treatment"),
            "p105": ("price-105", "1.05", "treatment")}  # fmt: skip
    assert {r["arm_name"] for r in rows} == set(arms)  # 42 cells: every arm drawn
    for r in rows:
        policy, ratio, role = arms[r["arm_name"]]
        assert (r["policy"], r["price_ratio"], r["arm"]) == (policy, ratio, role)
        assert r["probability"] == "0.6"  # P(not control)
    table = run(app, str(path))[1].splitlines()
    assert table[0].split()[:6] == ["unit", "period", "period_start", "period_end", "arm",
                                    "arm_name"]  # fmt: skip
    assert any(" p105 " in line and " price-105 " in line for line in table[2:])


def test_arm_names_without_price_ratios(app: typer.Typer, tmp_path: Path) -> None:
    text = "\n".join(line.replace("price_ratio: ", "x: ").replace(", x: 1.0", "")
                     .replace(", x: 0.95", "").replace(", x: 1.05", "")
                     for line in LADDER.splitlines())  # fmt: skip
    path = tmp_path / "models.yaml"
    path.write_text(text)
    code, out, _ = run(app, str(path), "--csv")
    assert code == 0, out
    header = out.splitlines()[0].split(",")
    assert "arm_name" in header and "price_ratio" not in header
