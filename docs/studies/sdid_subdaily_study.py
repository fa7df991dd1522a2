"""Why `sdid` under-covers on the time-bound design at 4-hour periods (issue #27).

docs/validation.md's sub-daily table had `sdid` on time-bound PT4H at coverage 0.915 with mean
SE / SD 0.91 over 400 runs, where the daily design covers (0.960). This runs the time-bound
design on validation_study's market and seed at each ``--periods`` (same runs, same products),
fitting `sdid` with each variance method the estimator offers beside `did`, and prints
coverage, mean SE / empirical SD and bias per (period, estimator); ``--out`` keeps the runs
(CSV) and ``summary`` reprints a saved file.

    python docs/studies/sdid_subdaily_study.py run --runs 400 --periods PT4H \
        --out docs/figures/sdid-subdaily-pt4h.csv
    python docs/studies/sdid_subdaily_study.py run --runs 400 --periods P1D \
        --estimators sdid,sdid:bootstrap --out docs/figures/sdid-subdaily-p1d.csv
    python docs/studies/sdid_subdaily_study.py summary docs/figures/sdid-subdaily-pt4h.csv

(2026-11-25: 9 minutes for PT4H, 11 for P1D, 2 jobs; the daily `did` and jackknife rows are
validation.md's own. validation_study.py renders the saved files into validation.md.)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lab.compare import CompareConfig, run_comparison, summarise  # noqa: E402
from lab.config import MarketConfig  # noqa: E402
from lab.hashseed import pin_hash_seed  # noqa: E402

SEED = 0  # validation_study's
DAYS = {"P1D": 28, "PT4H": 14, "PT2H": 14, "PT1H": 7}  # validation_study's sub-daily days
ESTIMATORS = ("did", "sdid", "sdid:bootstrap", "sdid:jackknife")


def period_of(text: str) -> timedelta:
    """An ISO 8601 duration (P1D, PT4H), parsed as specs and the CLI parse it."""
    return TypeAdapter(timedelta).validate_python(text)


def run(args: argparse.Namespace) -> None:
    frames = []
    base = CompareConfig(
        market=MarketConfig(),
        designs=("time-bound",),
        runs=args.runs,
        seed=SEED,
        jobs=args.jobs,
        estimators={"time-bound": tuple(args.estimators.split(","))},
    )
    for text in args.periods.split(","):
        cfg = replace(base, period=period_of(text), days=DAYS[text])
        runs = run_comparison(cfg).assign(period=text)
        frames.append(runs)
        show(runs)
    out = pd.concat(frames, ignore_index=True)
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"wrote {args.out}")


def show(runs: pd.DataFrame) -> None:
    for period, g in runs.groupby("period", sort=False):
        tab = summarise(g.drop(columns="period"))
        tab = tab.assign(se_over_sd=tab["mean_se"] / tab["emp_sd"])
        cols = ["estimator", "runs", "bias", "bias_mcse", "mean_se", "emp_sd", "se_over_sd"]
        cols += ["coverage"]
        print(f"--- time-bound {period}")
        print(tab[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=int, default=400)
    r.add_argument("--periods", default="P1D,PT4H", help=f"comma-separated, of {', '.join(DAYS)}")
    r.add_argument("--estimators", default=",".join(ESTIMATORS))
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--out", type=Path)
    s = sub.add_parser("summary")
    s.add_argument("csv", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        for text in args.periods.split(","):
            if text not in DAYS:
                ap.error(f"--periods: {text!r} is not one of {', '.join(DAYS)}")
    pin_hash_seed()  # the cluster design's classes depend on string hashing
    if args.cmd == "run":
        run(args)
    else:
        show(pd.read_csv(args.csv))


if __name__ == "__main__":
    main()
