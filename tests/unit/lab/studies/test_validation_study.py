"""The validation study on the harness (lab.studies.validation): its cases run the comparison's
own runs, so run r of a part is run r of ``run_comparison`` on the same configuration, and a
continued case's runs go on from the table's."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from lab.compare import CompareConfig, run_comparison
from lab.config import MarketConfig
from lab.studies import comparison, validation
from lab.studies.harness import run_rows

COLS = ["design", "estimator", "run", "truth", "effect", "se"]


def _rows(cases: tuple[dict, ...], runs: int = 2) -> pd.DataFrame:
    study = replace(validation.STUDY, cases=cases, runs=runs, follow_up=None)
    study = study.with_options(quick=True)
    rows, _ = run_rows(study)
    return rows


def test_the_designs_part_is_the_comparisons_runs() -> None:
    cases = tuple(
        c
        for c in validation.CASES
        if c["part"] == "designs" and c["design"] in ("random-days", "cluster")
    )
    mine = validation.runs_of_part(_rows(cases), "designs")
    cfg = CompareConfig(
        market=MarketConfig.model_validate(validation.QUICK_MARKET),
        designs=("cluster", "random-days"),
        runs=2,
        extra_estimators=validation.MAIN_EXTRA,
    )
    theirs = run_comparison(cfg)
    pd.testing.assert_frame_equal(mine[COLS], theirs[COLS])


def test_a_continued_case_goes_on_from_the_tables_runs() -> None:
    case = comparison.case("crossover", part="continued") | {
        "label": "crossover",
        "first_run": 2,
    }
    mine = validation.runs_of_part(_rows((case,), runs=1), "continued")
    cfg = CompareConfig(
        market=MarketConfig.model_validate(validation.QUICK_MARKET),
        designs=("crossover",),
        runs=3,
    )
    theirs = run_comparison(cfg)
    assert set(mine["run"]) == {2}
    pd.testing.assert_frame_equal(
        mine[COLS].reset_index(drop=True),
        theirs.loc[theirs["run"] == 2, COLS].reset_index(drop=True),
    )
