"""``pricelab simulate``: any design's experiment on a simulated market, assigned by the
controller's own code, so that its panel agrees row for row with ``pricelab schedule --csv``."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from controller import design_registry
from controller.periods import period_bounds
from controller.spec import load_spec_file
from streams.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"

DAILY_OSB = """
id: osb-daily
design: optimal-switchback
products: [a, b, c, d, e, f]
treatment_policy: t
control_policy: c
start: 2026-03-02T00:00:00+01:00
end: 2026-03-30T00:00:00+02:00
timezone: Europe/Berlin
seed: 11
washout: PT3H
optimal_switchback: {carryover_order: 2}
"""


def _invoke(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.stdout


def _specs(tmp_path: Path) -> dict[str, Path]:
    specs = {p.stem: p for p in EXAMPLES.glob("*.yaml")}
    specs["optimal-switchback"] = tmp_path / "osb.yaml"  # the example has 6-hour periods
    specs["optimal-switchback"].write_text(DAILY_OSB)
    return specs


@pytest.mark.parametrize("design", design_registry.names()[:6])
def test_simulated_panel_agrees_with_the_schedule_row_for_row(tmp_path: Path, design: str) -> None:
    spec = _specs(tmp_path)[design]
    out = tmp_path / "panel.csv"
    _invoke(["simulate", "--spec", str(spec), "--out", str(out), "--events", str(tmp_path / "ev")])
    panel = pd.read_csv(out)
    args = ["schedule", str(spec), "--csv"]
    if design == "triggered":
        fired = pd.read_csv(tmp_path / "ev" / "triggers.csv")
        assert len(fired) > 0  # the example's undercuts fire in the simulated market
        args += [arg for p, k in fired.itertuples(index=False) for arg in ("--trigger", f"{p}={k}")]
    sched = pd.DataFrame(list(csv.DictReader(io.StringIO(_invoke(args)))))
    assert len(sched) == len(panel)
    key = ["unit", "period"]
    sched["period"] = sched["period"].astype(int)
    both = panel.merge(sched, on=key, suffixes=("_sim", "_sched"), validate="one_to_one")
    assert len(both) == len(panel)
    assert (both["arm_sim"] == both["arm_sched"]).all()
    assert (both["probability_sim"] == both["probability_sched"].astype(float)).all()
    assert (both["blackout_sim"] == both["blackout_sched"].astype(int)).all()
    assert set(panel["arm"]) <= {"treatment", "control"}
    assert {"units", "true_effect", "treated"} <= set(panel.columns)
    if design == "crossover":
        assert panel["blackout"].any() and not panel["blackout"].all()
    sales = [json.loads(line) for line in (tmp_path / "ev" / "sales.jsonl").open()]
    head = panel["head_units"].sum() if "head_units" in panel else 0.0
    assert sum(s["units"] for s in sales) == panel["units"].sum() + head
    spec_obj = load_spec_file(spec)
    if spec_obj.washout:
        # units count the analysis window as the live panel does: the sales after each
        # period's washout-length head
        starts = {int(k): period_bounds(spec_obj, int(k))[0] for k in panel["period"].unique()}
        in_window = 0
        for e in sales:
            at = datetime.fromisoformat(e["occurred_at"])
            k = max(k for k, t in starts.items() if t <= at)
            in_window += e["units"] * (at >= starts[k] + spec_obj.washout)
        assert head > 0 and panel["units"].sum() == in_window


def test_time_bound_treats_half_of_each_class_as_the_controller_does(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("n_products: 40\nn_categories: 4\n")
    out = tmp_path / "p.parquet"
    _invoke(["simulate", "--design", "time-bound", "--days", "8", "--config", str(tmp_path / "m.yaml"),
             "--seed", "3", "--out", str(out)])  # fmt: skip
    panel = pd.read_parquet(out)
    per_class = panel[panel["period"] >= 4].groupby("class")["treated"].mean()
    assert len(per_class) == 4 and (per_class == 0.5).all()  # 10 per category: exactly 5
    assert not panel.loc[panel["period"] < 4, "treated"].any()
    assert (panel.loc[panel["period"] < 4, "probability"] == 0.0).all()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--design", "zigzag"], "unknown design 'zigzag'"),
        (["--days", "2"], "--days must be at least 4"),
        (["--spec", "missing.yaml"], "missing.yaml"),
        (["--spec", str(EXAMPLES / "optimal-switchback.yaml")], "daily periods"),
        (["--spec", str(EXAMPLES / "random-days.yaml"), "--out", "x.txt"], ".csv or .parquet"),
    ],
)
def test_refusals_are_one_sentence_with_exit_status_2(
    tmp_path: Path, args: list[str], says: str
) -> None:
    full = ["simulate", "--out", str(tmp_path / "p.csv"), *args]
    res = CliRunner().invoke(app, full)
    assert res.exit_code == 2, res.output
    assert says in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_a_bad_market_config_is_named_by_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("n_products: 0\n")
    res = CliRunner().invoke(
        app, ["simulate", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "p.csv")]
    )
    assert res.exit_code == 2 and "n_products" in res.output
