"""`pricelab analyze` through a Typer app the command is registered into."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

from analysis.cli import read_table, register
from tests.unit._panel_dgp import factor_panel

DATA = Path(__file__).resolve().parents[2] / "data" / "california_prop99.csv"
COLS = ["--unit", "State", "--time", "Year", "--outcome", "PacksPerCapita", "--treated", "treated"]


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command so "analyze" stays a subcommand
        typer.echo("0")

    return app


def test_json_output_has_the_documented_keys(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["analyze", str(DATA), *COLS, "--method", "did", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    for key in ("method", "effect", "se", "ci_low", "ci_high", "n_units", "n_periods"):
        assert key in row
    assert row["method"] == "did" and row["n_units"] == 39 and row["n_periods"] == 31
    assert round(row["effect"], 1) == -27.3
    assert row["ci_low"] < row["effect"] < row["ci_high"]


def test_readable_table_without_json(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["analyze", str(DATA), *COLS, "--method", "did"])
    assert res.exit_code == 0
    assert "effect" in res.stdout and "-27.35" in res.stdout and "placebo" in res.stdout


def test_comma_separated_file_and_se_option(app: typer.Typer, tmp_path: Path) -> None:
    long = factor_panel(1, n_treated=3).to_long()
    long["size"] = long["unit"].str[-1].astype(int)
    path = tmp_path / "panel.csv"
    long.to_csv(path, index=False)
    args = [
        "analyze",
        str(path),
        "--unit",
        "unit",
        "--time",
        "time",
        "--outcome",
        "outcome",
        "--treated",
        "treated",
        "--method",
        "did",
        "--se",
        "bootstrap",
        "--seed",
        "3",
        "--covariates",
        "size",
        "--json",
    ]
    a = CliRunner().invoke(app, args)
    b = CliRunner().invoke(app, args)
    assert a.exit_code == 0, a.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["se_method"] == "bootstrap" and ra["se"] == rb["se"]


@pytest.mark.parametrize(
    ("method", "se"), [("did", "bootstrap"), ("mc", None), ("trop", None), ("staggered", None)]
)
def test_without_seed_a_second_run_prints_the_same_numbers(
    app: typer.Typer, tmp_path: Path, method: str, se: str | None
) -> None:
    # each of these draws (the bootstrap; mc's CV folds; trop's tuning used to): without
    # --seed they use the fixed default seed, so the same command gives the same JSON
    # (issue #27: trop gave a new estimate on every run)
    path = tmp_path / "panel.csv"
    factor_panel(4, n_units=12, n_periods=10, n_treated=3, n_pre=7).to_long().to_csv(
        path, index=False
    )
    cols = ["--unit", "unit", "--time", "time", "--outcome", "outcome", "--treated", "treated"]
    args = ["analyze", str(path), *cols, "--method", method, "--json"]
    args += ["--se", se] if se else []
    first, second = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["se"] > 0
    assert second.stdout == first.stdout


def test_invalid_variance_method_exits_2_with_the_reason(app: typer.Typer) -> None:
    res = CliRunner().invoke(
        app, ["analyze", str(DATA), *COLS, "--method", "sdid", "--se", "jackknife"]
    )
    assert res.exit_code == 2
    assert "single treated unit" in res.stderr


def test_unknown_method_and_missing_column_exit_2(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["analyze", str(DATA), *COLS, "--method", "nope"])
    assert res.exit_code == 2 and "Unknown method" in res.stderr
    bad = ["Region" if c == "State" else c for c in COLS]
    res = CliRunner().invoke(app, ["analyze", str(DATA), *bad, "--method", "did"])
    assert res.exit_code == 2 and "not found" in res.stderr


def test_separator_detection(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5]})
    for sep in (";", ",", "\t"):
        path = tmp_path / "t.csv"
        df.to_csv(path, sep=sep, index=False)
        assert list(read_table(path).columns) == ["a", "b"]


@pytest.mark.parametrize("se", ["jackknife", "time_placebo"])
def test_json_reports_df_and_a_student_t_interval(
    app: typer.Typer, tmp_path: Path, se: str
) -> None:
    path = tmp_path / "panel.csv"
    factor_panel(2, n_treated=3).to_long().to_csv(path, index=False)
    cols = ["--unit", "unit", "--time", "time", "--outcome", "outcome", "--treated", "treated"]
    res = CliRunner().invoke(
        app, ["analyze", str(path), *cols, "--method", "sdid", "--se", se, "--json"]
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["se_method"] == se and row["df"] > 1.0
    half = (row["ci_high"] - row["ci_low"]) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, row["df"]) * row["se"])
    assert half > 1.96 * row["se"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_hpte_unit_effects_file_has_one_row_per_treated_product(
    app: typer.Typer, tmp_path: Path, suffix: str
) -> None:
    from analysis.pricing_dgp import simulate_hpte_panel

    sim = simulate_hpte_panel(120, seed=31)
    panel_path = tmp_path / "panel.csv"
    sim.long.to_csv(panel_path, index=False)
    out = tmp_path / f"effects{suffix}"
    cols = ["--unit", "product", "--time", "date", "--outcome", "units", "--treated", "treated"]
    res = CliRunner().invoke(
        app,
        ["analyze", str(panel_path), *cols, "--method", "hpte", "--covariates",
         "x1,x2,x3,x4,segment", "--se", "none", "--seed", "2", "--json",
         "--unit-effects", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)  # the usual output is still printed
    table = read_table(out)
    assert list(table.columns) == [
        "unit", "effect", "se", "ci_low", "ci_high", "first_difference", "matched_control",
        "outlier", "trees_matched",
    ]  # fmt: skip
    assert sorted(table["unit"]) == sorted(sim.panel.units[sim.treated])
    kept = table[~table["outlier"].astype(bool)]
    assert kept["effect"].mean() == pytest.approx(row["effect"], rel=1e-9)
    assert (kept["se"] > 0).all() and kept["ci_low"].lt(kept["effect"]).all()
    assert table.loc[table["outlier"].astype(bool), "se"].isna().all()


def _simulated_panel(tmp_path: Path, seed: int = 3) -> Path:
    from lab.compare import make_spec
    from lab.config import MarketConfig
    from lab.market import Market
    from lab.simulate import run_spec, write_panel

    market = Market(MarketConfig(n_products=40), seed=seed)
    sim = run_spec(make_spec("random-days", market, days=28, seed=seed), market)
    out = tmp_path / "panel.csv"
    write_panel(sim.panel, out)
    return out


SIM = ["--unit", "product", "--time", "period", "--treated", "treated", "--blackout", "blackout",
       "--probability", "probability"]  # fmt: skip


def test_relative_adds_the_control_mean_and_a_fieller_interval(
    app: typer.Typer, tmp_path: Path
) -> None:
    panel = _simulated_panel(tmp_path)
    args = ["analyze", str(panel), *SIM, "--outcome", "revenue", "--method", "dm", "--json"]
    res = CliRunner().invoke(app, [*args, "--relative"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["control_mean"] > 0 and row["relative_note"] is None
    assert row["relative_effect"] == pytest.approx(row["effect"] / row["control_mean"])
    assert row["relative_ci_low"] < row["relative_effect"] < row["relative_ci_high"]
    plain = json.loads(CliRunner().invoke(app, args).stdout)
    assert "relative_effect" not in plain
    by = CliRunner().invoke(app, [*args, "--relative", "--by", "category"])
    assert by.exit_code == 0, by.output
    rows = [json.loads(line) for line in by.stdout.splitlines()]
    assert len(rows) == 8 and all("relative_ci_low" in r for r in rows)
    # the table prints the relative figures in percent, as the README says (JSON: fractions)
    table = CliRunner().invoke(app, [*args[:-1], "--relative"])
    assert table.exit_code == 0, table.output
    printed = dict(line.split(None, 1) for line in table.stdout.splitlines() if line.strip())
    for key in ("relative_effect", "relative_ci_low", "relative_ci_high"):
        assert printed[key].strip() == f"{100.0 * row[key]:+.2f}%", printed


def test_elasticity_from_units_and_revenue(app: typer.Typer, tmp_path: Path) -> None:
    panel = _simulated_panel(tmp_path)
    args = ["analyze", str(panel), *SIM, "--method", "elasticity", "--units", "units",
            "--revenue", "revenue"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["metric"] == "elasticity" and row["identified"] is True
    assert row["ci_low"] < row["effect"] < row["ci_high"] < 0  # demand falls as price rises
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "identified" in table.stdout
    missing = CliRunner().invoke(app, [*args[:-4], "--units", "units"])
    assert missing.exit_code == 2 and "--revenue" in missing.output
    by = CliRunner().invoke(app, [*args, "--by", "category", "--json"])
    assert by.exit_code == 0, by.output
    assert len(by.stdout.splitlines()) == 8


def test_a_missing_panel_file_is_one_sentence(app: typer.Typer, tmp_path: Path) -> None:
    gone = tmp_path / "gone.csv"
    res = CliRunner().invoke(app, ["analyze", str(gone), *COLS, "--method", "did"])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {gone}: no such file"
