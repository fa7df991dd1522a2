"""The live and the simulated panel place their cells by the same columns
(controller.panel_labels): ``product``, ``period``, ``period_start`` in the experiment's time
zone and the spec's ``segment``. The live panel's own columns are checked against Redis in
tests/integration/test_notebook_api.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from controller.panel_labels import label
from controller.spec import ExperimentSpec, load_spec_file
from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
WALK = ROOT / "docs" / "walkthrough.yaml"


def _segmented(tmp_path: Path, **changes: object) -> Path:
    doc = yaml.safe_load(WALK.read_text())
    products = doc["products"]
    # the first 30 products in three segments, the last 10 in none
    doc["segments"] = {name: products[i * 10 : i * 10 + 10] for i, name in enumerate("abc")}
    doc |= changes
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_the_simulated_panel_has_the_live_panels_columns(tmp_path: Path) -> None:
    spec = _segmented(tmp_path)
    out = tmp_path / "panel.parquet"
    _run(["simulate", "--spec", str(spec), "--out", str(out)])
    df = pd.read_parquet(out)
    assert list(df.columns[:4]) == ["product", "segment", "period", "period_start"]
    assert "unit" not in df.columns and "date" not in df.columns
    berlin = "Europe/Berlin"
    assert str(df["period_start"].dt.tz) == berlin
    starts = df.drop_duplicates("period").set_index("period")["period_start"]
    assert starts[0] == pd.Timestamp("2026-12-07 00:00", tz=berlin)
    assert starts[27] == pd.Timestamp("2027-01-03 00:00", tz=berlin)
    seg = df.drop_duplicates("product").set_index("product")["segment"]
    assert seg["P0001"] == "a" and seg["P0011"] == "b" and seg["P0030"] == "c"
    assert seg[["P0031", "P0040"]].isna().all()
    # the market's own category stays, a simulator column like its truths
    assert "category" in df.columns and "true_effect" in df.columns


def test_period_start_keeps_local_midnight_across_a_dst_change(tmp_path: Path) -> None:
    spec = _segmented(tmp_path, start="2026-03-26T00:00:00+01:00", end="2026-04-02T00:00:00+02:00")
    out = tmp_path / "panel.csv"
    _run(["simulate", "--spec", str(spec), "--out", str(out)])
    starts = pd.read_csv(out).drop_duplicates("period")["period_start"].tolist()
    assert starts[:5] == [
        "2026-03-26 00:00:00+01:00",
        "2026-03-27 00:00:00+01:00",
        "2026-03-28 00:00:00+01:00",
        "2026-03-29 00:00:00+01:00",  # the 23-hour day
        "2026-03-30 00:00:00+02:00",
    ]


def test_analyze_by_segment_reads_the_simulated_panel(tmp_path: Path) -> None:
    spec = _segmented(tmp_path)
    out = tmp_path / "panel.csv"
    _run(["simulate", "--spec", str(spec), "--out", str(out)])
    df = pd.read_csv(out)
    df[df["segment"].notna()].to_csv(tmp_path / "segmented.csv", index=False)
    shown = _run(["analyze", str(tmp_path / "segmented.csv"), "--unit", "product", "--time",
                  "period", "--outcome", "units", "--treated", "treated", "--method", "dm",
                  "--by", "segment"])  # fmt: skip
    rows = [line.split() for line in shown.splitlines()]
    assert [r[0] for r in rows if r and r[0] in "abc"] == ["a", "b", "c"]
    assert all(r[-1] == "10" for r in rows if r and r[0] in "abc")  # n_units per segment


def test_label_places_a_live_frame_in_the_experiments_zone() -> None:
    spec: ExperimentSpec = load_spec_file(WALK).model_copy(
        update={"segments": {"first": ("P0001", "P0002")}}
    )
    utc = [datetime(2026, 12, 6, 23, tzinfo=UTC), datetime(2026, 12, 7, 23, tzinfo=UTC)]
    live = pd.DataFrame(
        {
            "product": pd.Categorical(["P0001", "P0003", "P0001", "P0003"]),
            "period": [0, 0, 1, 1],
            "period_start": pd.DatetimeIndex(utc)[[0, 0, 1, 1]],
            "units": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = label(live, spec)
    assert list(out.columns) == ["product", "segment", "period", "period_start", "units"]
    assert out["period_start"].tolist() == [
        pd.Timestamp("2026-12-07 00:00", tz="Europe/Berlin"),
        pd.Timestamp("2026-12-07 00:00", tz="Europe/Berlin"),
        pd.Timestamp("2026-12-08 00:00", tz="Europe/Berlin"),
        pd.Timestamp("2026-12-08 00:00", tz="Europe/Berlin"),
    ]
    assert out["segment"].tolist()[:2] == ["first", pytest.approx(float("nan"), nan_ok=True)]
    assert list(out["segment"].cat.categories) == ["first"]
    # without segments in the spec: no segment column
    plain = label(live, spec.model_copy(update={"segments": {}}))
    assert "segment" not in plain.columns
