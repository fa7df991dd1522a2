"""Does TROP's estimate on California Proposition 99 depend on the seed? (issue #27)

    .venv/bin/python -m lab.studies trop-seed [--set seeds=8] [--dry-run]

The panel is ``tests/data/california_prop99.csv`` (39 states x 31 years, California treated
from 1989), fitted as ``pricelab analyze ... --method trop [--seed S]`` fits it:
``TROPEstimator(seed=S)`` at its defaults (one treated unit, so the SE is the unit placebo).
Three parts (cases):

- ``seed``: for each seed 0 .. ``seeds`` - 1 and then twice with no seed (``seed=None``, the CLI
  without ``--seed``): the estimate, the SE, the tuned (lambda_time, lambda_unit, lambda_nn)
  and the seconds; the summary adds their spread (max - min) over the seeds and whether the
  two runs without a seed agreed;
- ``n-tune``: the same fit with every control scoring the tuning grid (``n_tune = 38``);
- ``grid``: the tuning loss (from the trace of one fit) and the estimate (no SE) at every point
  of the grid, to see how far apart the points the tuning chooses between are.

Saves docs/figures/trop-seed.json. docs/analysis-advanced.md ("TROP on Proposition 99: the
seed") quotes it by hand: its table's "before" row is a run of the code before the fixed
tuning set (commit cca3fa1), which this study cannot redo.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from analysis.estimators.trop import TROPEstimator
from analysis.panel import Panel
from lab.studies.harness import ROOT, Case, Row, Run, Study

DATA = ROOT / "tests" / "data" / "california_prop99.csv"


@cache
def prop99() -> Panel:
    df = pd.read_csv(DATA, sep=";")
    return Panel.from_long(
        df, unit="State", time="Year", outcome="PacksPerCapita", treated="treated"
    )


@cache
def tuning_trace() -> tuple[tuple[float, float, float], list[tuple[float, float, float, float]]]:
    """The point the default tuning chooses, and the trace (time, unit, nn, loss), by loss."""
    r = TROPEstimator(se="none").fit(prop99()).result_
    chosen = (r.details["lambda_time"], r.details["lambda_unit"], r.details["lambda_nn"])
    return chosen, sorted(r.details["tuning_trace"], key=lambda row: row[3])


def fit(seed: int | None, **options: Any) -> Row:
    t0 = time.perf_counter()
    r = TROPEstimator(seed=seed, **options).fit(prop99()).result_
    d = r.details
    return {"effect": r.effect, "se": r.se, "se_method": r.se_method,
            "lambda_time": d["lambda_time"], "lambda_unit": d["lambda_unit"],
            "lambda_nn": d["lambda_nn"], "seconds": time.perf_counter() - t0}  # fmt: skip


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> Row:
    if case["part"] == "seed":  # seeds 0 .. seeds - 1, then two runs without a seed
        seeds = int(settings["seeds"])
        return {"seed": run if run < seeds else None, **fit(run if run < seeds else None)}
    if case["part"] == "n-tune":
        return {"n_tune": int(settings["n_tune"]), **fit(0, n_tune=int(settings["n_tune"]))}
    chosen, trace = tuning_trace()
    lt, lu, nn, loss = trace[run]
    eff = TROPEstimator(lt, lu, nn, se="none").fit(prop99()).result_.effect
    return {"rank": run + 1, "lambda_time": lt, "lambda_unit": lu, "lambda_nn": nn,
            "loss": loss, "effect": eff, "chosen": (lt, lu, nn) == chosen}  # fmt: skip


def _records(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """The rows as JSON-able records: counts as ints, a missing seed as None."""
    out = frame[keys].astype(object).where(frame[keys].notna(), None)
    records: list[dict[str, Any]] = out.to_dict("records")  # type: ignore[assignment]
    for r in records:
        for k in ("seed", "rank", "n_tune"):
            if r.get(k) is not None:
                r[k] = int(r[k])
    return records


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    fits = ["effect", "se", "se_method", "lambda_time", "lambda_unit", "lambda_nn", "seconds"]
    seed = rows[rows["part"] == "seed"]
    seeded = seed[seed["seed"].notna()]
    unseeded = seed[seed["seed"].isna()]
    e, s = seeded["effect"].to_numpy(float), seeded["se"].to_numpy(float)
    grid = rows[rows["part"] == "grid"]
    return {
        "seeds": _records(seed, ["seed", *fits]),
        "effect_min": float(e.min()), "effect_max": float(e.max()),
        "effect_spread": float(np.ptp(e)),
        "effect_sd": float(e.std(ddof=1)) if e.size > 1 else None,
        "se_min": float(s.min()), "se_max": float(s.max()), "se_spread": float(np.ptp(s)),
        "unseeded_agree": bool(unseeded["effect"].nunique() == 1 and unseeded["se"].nunique() == 1),
        "n_tune": _records(rows[rows["part"] == "n-tune"], ["n_tune", *fits]),
        "grid": _records(grid, ["rank", "lambda_time", "lambda_unit", "lambda_nn", "loss",
                                "effect", "chosen"]),
        "seconds": sum(run.seconds),
    }  # fmt: skip


STUDY = Study(
    name="trop-seed",
    cases=(
        {"part": "seed", "runs": "fits"},
        {"part": "n-tune", "runs": 1},
        {"part": "grid", "runs": "grid_points"},
    ),
    run_one=run_one,
    summarise=summarise,
    results="trop-seed.json",
    runs=1,
    # fits: the seeds and the two runs without one
    options={"seeds": 8, "fits": 10, "n_tune": 38, "grid_points": 64},
)
