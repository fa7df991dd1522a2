"""Commands that fit many simulations refuse, in one sentence, when more than
MAX_FAILED_SHARE of a row's fits fail, instead of printing a table of the few that fitted
(issue #39: ``plan`` printed ``fe 7 ... mde 0.3091`` and exit 0 when 198 of 200 fits failed);
and ``plan`` names the right cause when the history holds none of the spec's products."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.estimators import registry
from analysis.estimators.crossover import WithinProductEstimator
from analysis.panel import Panel
from analysis.results import EstimateResult
from controller.spec import ExperimentSpec, load_spec
from lab.compare import summarise
from lab.errors import LabError, TooManyFailedFits
from lab.failed_fits import MAX_FAILED_SHARE
from lab.plan import History, PlanConfig, run_plan
from streams.cli import main

ROOT = Path(__file__).resolve().parents[3]
UNITS = tuple(f"u{i:02d}" for i in range(20))
START = datetime(2026, 3, 2, tzinfo=UTC)


def _spec(days: int = 7) -> ExperimentSpec:
    return load_spec(
        {
            "id": "myspec",
            "design": "random-days",
            "products": UNITS,
            "treatment_policy": "a",
            "control_policy": "b",
            "start": START,
            "end": START + timedelta(days=days),
            "seed": 1,
        }
    )


def test_the_tolerated_share_is_five_percent() -> None:
    assert MAX_FAILED_SHARE == 0.05


def test_plan_refuses_when_most_fits_fail() -> None:
    """The issue's history: 14 days whose dates were read month-first, so they lie a month
    apart and nearly every period of a 7-day window is empty."""
    rng = np.random.default_rng(0)
    Y = np.full((len(UNITS), 335), np.nan)
    Y[:, ::30] = rng.normal(10.0, 2.0, (len(UNITS), Y[:, ::30].shape[1]))  # a cell a month
    history = History(Y, UNITS, tuple(range(Y.shape[1])))
    with pytest.raises(TooManyFailedFits) as err:
        run_plan([("myspec", _spec())], history, PlanConfig(sims=40, seed=0))
    said = str(err.value)
    assert "of 40 fits of spec 'myspec' (random-days) with estimator fe at 7 periods" in said
    assert "more than the 5% tolerated" in said and "the first failed with PanelError" in said
    assert "\n" not in said


def test_plan_on_the_command_line_exits_2_without_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    days = np.arange(0, 14 * 30, 30)  # 14 periods a month apart: the gaps are empty periods
    history = pd.DataFrame(
        [(u, int(d), rng.normal(10.0, 2.0)) for u in UNITS for d in days],
        columns=["sku", "day", "units"],
    )
    history.to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "myspec.json").write_text(_spec().model_dump_json())
    argv = ["plan", str(tmp_path / "myspec.json"), "--history", str(tmp_path / "h.csv")]
    argv += ["--unit", "sku", "--time", "day", "--outcome", "units", "--sims", "20", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "fits of spec 'myspec' (random-days) with estimator fe at 7 periods failed" in err


def _runs(failed: int, total: int = 40) -> pd.DataFrame:
    rows = []
    for r in range(total):
        ok = r >= failed
        rows.append(
            {
                "design": "random-days",
                "estimator": "dm",
                "run": r,
                "truth": 1.0,
                "truth_direct": 1.0,
                "effect": 1.0 if ok else math.nan,
                "se": 0.5 if ok else math.nan,
                "ci_low": 0.0 if ok else math.nan,
                "ci_high": 2.0 if ok else math.nan,
                "pvalue": 0.04 if ok else math.nan,
                "error": "" if ok else f"PanelError: run {r} has no control cell",
                "primary": True,
            }
        )
    return pd.DataFrame(rows)


def test_a_comparison_summary_refuses_more_than_the_tolerated_share() -> None:
    assert summarise(_runs(2)).loc[0, "failed"] == 2  # 2 of 40 = 5%: tolerated
    with pytest.raises(TooManyFailedFits) as err:
        summarise(_runs(3))  # 3 of 40 = 7.5%
    said = str(err.value)
    assert said.startswith("3 of 40 fits of design 'random-days' with estimator dm failed")
    assert said.endswith("the first failed with PanelError: run 0 has no control cell")
    assert summarise(_runs(3), check_failures=False).loc[0, "failed"] == 3


def test_plan_names_the_history_s_products_not_the_spec_s_unit_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walkthrough spec (40 products with unit costs) on a history of other products."""
    others = [f"A{i}" for i in range(1, 13)]
    rng = np.random.default_rng(2)
    history = pd.DataFrame(
        [(p, d, rng.normal(10.0, 2.0)) for p in others for d in range(60)],
        columns=["sku", "day", "units"],
    )
    history.to_csv(tmp_path / "h.csv", index=False)
    argv = ["plan", str(ROOT / "docs" / "walkthrough.yaml"), "--history", str(tmp_path / "h.csv")]
    argv += ["--unit", "sku", "--time", "day", "--outcome", "units", "--sims", "10"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "error: none of experiment walkthrough's 40 products is in the history (which has 12 "
        "products, e.g. A1, A10)"
    ), lines[0]


def test_a_spec_without_its_own_products_data_is_still_planned_on_the_history() -> None:
    rng = np.random.default_rng(3)
    history = History(rng.normal(10.0, 2.0, (len(UNITS), 30)), UNITS, tuple(range(30)))
    spec = _spec().model_copy(update={"products": ("ghost-1", "ghost-2")})
    _, table, notes = run_plan([("s", spec)], history, PlanConfig(sims=10))
    assert (table["n_units"] == len(UNITS)).all()
    assert notes == ["s: none of the spec's 2 products is in the history: planning on all 20 "
                     "units of the history"]  # fmt: skip
    with pytest.raises(LabError):  # a clustered spec cannot be: its classes are not there
        run_plan(
            [("c", spec.model_copy(update={"products": (), "clusters": {"k": ("ghost-1",)}}))],
            history,
            PlanConfig(sims=10),
        )


def test_compare_designs_exits_2_without_a_table_when_an_estimator_cannot_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sdid needs a block design, which random days never is: every fit fails."""
    argv = ["compare-designs", "--products", "12", "--runs", "2", "--days", "7"]
    argv += ["--designs", "random-days", "--estimators", "sdid"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (
        lines[0].startswith(
            "error: 2 of 2 fits of design 'random-days' with estimator sdid failed, more than the 5% "
            "tolerated"
        )
        and "the first failed with PanelError: This estimator needs a block design" in lines[0]
    )


class _NaNMostly(WithinProductEstimator):
    """fe that returns a NaN estimate for three seeds in four: a fit that 'succeeds' with no
    number, which plan must count as failed."""

    what = "effect"

    def _fit(self, panel: Panel) -> EstimateResult:
        result = super()._fit(panel)
        if (self.seed or 0) % 4 == 0:
            return result
        return replace(result, **{self.what: math.nan})


class _NaNSEMostly(_NaNMostly):
    what = "se"


@pytest.mark.parametrize("estimator", [_NaNMostly, _NaNSEMostly])
def test_plan_counts_a_fit_returning_nan_as_failed(
    estimator: type[_NaNMostly], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", {})
    registry.register("fe", estimator)
    rng = np.random.default_rng(4)
    history = History(rng.normal(10.0, 2.0, (len(UNITS), 40)), UNITS, tuple(range(40)))
    with pytest.raises(TooManyFailedFits) as err:
        run_plan([("myspec", _spec())], history, PlanConfig(sims=40, seed=0))
    said = str(err.value)
    assert "fits of spec 'myspec' (random-days) with estimator fe at 7 periods failed" in said
    assert said.endswith("the first failed with a non-finite estimate") and "\n" not in said


def test_plan_on_the_command_line_exits_2_when_fits_return_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", {})
    registry.register("fe", _NaNMostly)
    rng = np.random.default_rng(5)
    history = pd.DataFrame(
        [(u, d, rng.normal(10.0, 2.0)) for u in UNITS for d in range(40)],
        columns=["sku", "day", "units"],
    )
    history.to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "myspec.json").write_text(_spec().model_dump_json())
    argv = ["plan", str(tmp_path / "myspec.json"), "--history", str(tmp_path / "h.csv")]
    argv += ["--unit", "sku", "--time", "day", "--outcome", "units", "--sims", "20", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "with estimator fe at 7 periods failed" in err and "non-finite estimate" in err
