"""The optimal switchback's estimators under the carryover the design guards against.

    .venv/bin/python -m lab.studies switchback-carryover [--runs 400] [--jobs 2]

The optimal switchback (Bojinov, Simchi-Levi & Zhao) is chosen when a price change may carry
over into the next m periods. Its estimators must then estimate the lag-m effect (always treated
against never treated). This study runs the design on the simulated market with and without such
carryover, through the worker's own fits (a run is :func:`lab.compare.simulate_run`'s), and
reports its published estimators (`ht` and `hajek`) beside a plain difference in means (`dm`,
which the worker published before and no longer does: it compares the current arm only and
counts the other arm's carryover).

Saves docs/figures/switchback-carryover.csv and renders the ``switchback-carryover`` section of
docs/analysis-advanced.md (template ``switchback_carryover.md.j2``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.studies.comparison import case, run_one, summarise_cases
from lab.studies.harness import Page, Results, Run, Study

#: the design for order max(1, the market's carryover), with `dm` beside its own estimators
CASES = tuple(
    case("optimal-switchback", period=period, days=days, market={"carryover_order": m},
         extra_estimators=("dm",), carryover=m)
    for period, days, m in (("PT1H", 7, 2), ("P1D", 28, 1), ("P1D", 28, 0))
)  # fmt: skip
DAYS = {"PT1H": 7, "P1D": 28}


def summarise(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    table = summarise_cases(CASES, rows)
    return table.assign(days=table["period"].map(DAYS), seconds=sum(run.seconds))


def context(results: Results) -> dict[str, Any]:
    assert isinstance(results, pd.DataFrame)
    return {
        "rows": results.to_dict("records"),
        "runs": int(results["runs"].max()),
        "seconds": float(results["seconds"].iloc[0]),
    }


STUDY = Study(
    name="switchback-carryover",
    cases=CASES,
    run_one=run_one,
    summarise=summarise,
    results="switchback-carryover.csv",
    runs=400,
    page=Page(
        "docs/analysis-advanced.md", "switchback_carryover.md.j2", section="switchback-carryover"
    ),
    context=context,
)
