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
from controller.periods import is_empty, period_bounds
from controller.spec import load_spec_file
from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
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


HOURLY_RANDOM = """
id: hourly-random
design: random-days
products: [a, b, c, d, e, f]
treatment_policy: t
control_policy: c
start: 2026-03-28T00:00:00+01:00
end: 2026-03-31T00:00:00+02:00
timezone: Europe/Berlin
period: PT1H
seed: 3
"""

FOUR_HOUR_OSB = """
id: osb-4h
design: optimal-switchback
products: [a, b, c, d, e, f]
treatment_policy: t
control_policy: c
start: 2026-10-23T00:00:00+02:00
end: 2026-10-27T00:00:00+01:00
timezone: Europe/Berlin
period: PT4H
seed: 8
washout: PT1H
optimal_switchback: {carryover_order: 2}
"""


def _specs(tmp_path: Path) -> dict[str, Path]:
    specs = {p.stem: p for p in EXAMPLES.glob("*.yaml")}  # the optimal switchback's: PT6H
    for name, text in (
        ("daily-osb", DAILY_OSB),
        ("hourly-random", HOURLY_RANDOM),  # the spring-forward night: an empty hour
        ("four-hour-osb", FOUR_HOUR_OSB),  # the autumn night: a 5-hour period
    ):
        specs[name] = tmp_path / f"{name}.yaml"
        specs[name].write_text(text)
    return specs


@pytest.mark.parametrize(
    "design",
    [*design_registry.names()[:6], "daily-osb", "hourly-random", "four-hour-osb"],
)
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
    key = ["product", "period"]
    sched = sched.rename(columns={"unit": "product"})  # the schedule's unit is a product
    sched["period"] = sched["period"].astype(int)
    spec_obj = load_spec_file(spec)
    # the schedule skips a period the spring-forward night empties (an hour that does not
    # exist); the panel keeps its grid whole: that cell is blacked out and sells nothing
    empty = [k for k in panel["period"].unique() if is_empty(spec_obj, int(k))]
    gap = panel["period"].isin(empty)
    assert (design == "hourly-random") == bool(empty)
    assert (panel.loc[gap, "blackout"] == 1).all() and (panel.loc[gap, "units"] == 0).all()
    panel = panel[~gap]
    assert len(sched) == len(panel)
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
        (["--spec", "two-day.yaml"], "whole hours from PT1H to P1D"),
        (["--spec", str(EXAMPLES / "random-days.yaml"), "--out", "x.txt"], ".csv or .parquet"),
    ],
)
def test_refusals_are_one_sentence_with_exit_status_2(
    tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "two-day.yaml").write_text(DAILY_OSB.replace("seed: 11", "period: P2D"))
    args = [str(tmp_path / a) if a == "two-day.yaml" else a for a in args]
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
