"""The TROP studies (lab/studies/trop.py, trop_seed.py): a saved row reproduces, the noise
redraw keeps the factors, and the page's summaries come from the saved rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.pricing_dgp import factor_block
from lab.studies import trop
from lab.studies.harness import FIGURES


def _study(name: str):  # type: ignore[no-untyped-def]
    (study,) = [s for s in trop.VARIANTS if s.name == name]
    return study


def test_a_refit_at_saved_lambdas_reproduces_its_saved_row() -> None:
    # the unit placebo at seed 1's tuned lambdas of the core random run (no tuning, no draw):
    # the saved row to the solver's tolerance (it was fitted before the effect sweeps)
    study = _study("trop-core-random-placebo")
    row = trop.coverage_row({}, 1, study.settings())
    saved = pd.read_csv(FIGURES / study.results, sep="\t").set_index("seed").loc[1]
    assert row["effect"] == pytest.approx(saved["effect"], abs=1e-4)
    assert row["se"] == pytest.approx(saved["se"], rel=1e-4)
    assert row["df"] == saved["df"] == 26


def test_a_redraw_changes_only_the_noise() -> None:
    p, q = factor_block(3), trop.redraw(3, 0)
    assert np.array_equal(p.W, q.W)
    # the difference is 0.5 N(0, 1) noise minus the old noise: about sd 0.5 sqrt(2)
    assert 0.6 < float(np.std(q.Y - p.Y)) < 0.8
    assert np.array_equal(trop.redraw(3, 0).Y, q.Y) and not np.array_equal(trop.redraw(3, 1).Y, q.Y)


def test_summary_of_a_saved_run() -> None:
    s = trop.summary(pd.read_csv(FIGURES / _study("trop-loo").results, sep="\t"))
    assert s["seeds"] == 500 and s["low_rank"]["seeds"] + s["no_low_rank"]["seeds"] == 500
    assert round(s["coverage"], 3) == 0.888 and round(s["twfe_rmse"], 3) == 0.583


def test_the_seed_study_summarises_seeds_and_runs_without_one() -> None:
    from lab.studies import trop_seed
    from lab.studies.harness import Run

    fit = {"se_method": "placebo", "lambda_time": 0.0, "lambda_unit": 0.0, "lambda_nn": 0.1,
           "seconds": 1.0}  # fmt: skip
    rows = pd.DataFrame(
        [{"part": "seed", "run": r, "seed": s, "effect": e, "se": 9.0, **fit}
         for r, (s, e) in enumerate([(0, -13.0), (1, -14.0), (None, -13.5), (None, -13.5)])]
        + [{"part": "n-tune", "run": 0, "n_tune": 38, "effect": -20.0, "se": 9.1, **fit}]
        + [{"part": "grid", "run": 0, "rank": 1, "lambda_time": 0.0, "lambda_unit": 0.0,
            "lambda_nn": 0.1, "loss": 49.1, "effect": -13.0, "chosen": True}]
    )  # fmt: skip
    out = trop_seed.summarise(rows, Run(1, 0, {}, (1.0, 1.0, 1.0)))
    assert [r["seed"] for r in out["seeds"]] == [0, 1, None, None]
    assert out["effect_spread"] == 1.0 and out["se_spread"] == 0.0 and out["unseeded_agree"]
    assert out["n_tune"][0]["n_tune"] == 38 and out["grid"][0]["rank"] == 1
