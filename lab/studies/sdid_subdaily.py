"""Why `sdid` under-covered on the time-bound design at 4-hour periods (issue #27).

docs/validation.md's sub-daily table had `sdid` on time-bound PT4H at coverage 0.915 with mean
SE / SD 0.91 over 400 runs, where the daily design covers (0.960). Two studies run the
time-bound design on the validation study's market and seed (same runs, same products), fitting
`sdid` with each variance method the estimator offers beside `did`, and save every run:

    .venv/bin/python -m lab.studies sdid-subdaily-pt4h [--runs 400] [--jobs 2]   # 9 minutes
    .venv/bin/python -m lab.studies sdid-subdaily-p1d  [--runs 400] [--jobs 2]   # 11 minutes

(docs/figures/sdid-subdaily-pt4h.csv and -p1d.csv; the daily `did` and jackknife rows are
validation.md's own.) lab/studies/validation.py renders them into docs/validation.md.
"""

from __future__ import annotations

import pandas as pd

from lab.studies.comparison import SETTINGS, case, run_one, runs_table
from lab.studies.harness import Run, Study


def save_runs(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    """Every run, as lab.compare.run_comparison returns them, with their period."""
    return runs_table(rows, SETTINGS).assign(period=rows["period"].iloc[0])


PT4H = Study(
    name="sdid-subdaily-pt4h",
    cases=(case("time-bound", period="PT4H", days=14,
                estimators=("did", "sdid", "sdid:bootstrap", "sdid:jackknife")),),
    run_one=run_one,
    summarise=save_runs,
    results="sdid-subdaily-pt4h.csv",
    hash_seed=True,  # the validation study's runs: its classes are string-hashed
)  # fmt: skip
P1D = Study(
    name="sdid-subdaily-p1d",
    cases=(case("time-bound", estimators=("sdid", "sdid:bootstrap")),),
    run_one=run_one,
    summarise=save_runs,
    results="sdid-subdaily-p1d.csv",
    hash_seed=True,
)
