"""Fast CI subset of the panel core study (lab/studies/panel_core.py; the full study runs 500
seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.estimators.registry import make
from analysis.pricing_dgp import factor_panel
from lab.studies import panel_core as study
from lab.studies.harness import run_rows


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    small = study.STUDY.with_options(
        runs=1, batch=60, placebo_sims=0, time_placebo_sims=0, scenarios="random",
        methods="did,sdid",
    )  # fmt: skip
    got, meta = run_rows(small)
    return {r["method"]: r for r in study.summarise(got, meta)["rows"]}


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_known_effect_recovered_without_bias(rows: dict, method: str) -> None:
    r = rows[method]
    assert r["sims"] == 60
    assert abs(r["bias"]) < 4 * r["mc_se_bias"]


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_jackknife_interval_coverage_near_nominal(rows: dict, method: str) -> None:
    # 60 draws: binomial sd 2.8 points around 95; the full study measures it precisely
    assert rows[method]["jackknife"]["cover"] >= 0.85


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_jackknife_t_interval_coverage_near_nominal(rows: dict, method: str) -> None:
    # the Student t(df) interval the library reports; 500 seeds in docs/analysis-core.md
    assert rows[method]["jackknife_t"]["cover"] >= 0.88


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_study_measures_the_library_variances(method: str) -> None:
    # the study batches refits across panels; each SE must be the one the estimator reports
    Ys = study.simulate(range(1), "random")
    taus, omegas, lams, tuning = study.fit_all(method, Ys)
    tp = study.time_placebo_se(method, Ys, tuning)
    jk, df = study.jackknife_se(Ys, omegas, lams)
    for s in range(1):
        panel = factor_panel(s)
        t = make(method, se="time_placebo").fit(panel).result
        j = make(method, se="jackknife").fit(panel).result
        assert t.effect == pytest.approx(taus[s]) and t.se == pytest.approx(tp[s])
        assert j.se == pytest.approx(jk[s]) and j.df == pytest.approx(df[s])
    assert np.all(np.isfinite(tp))


def test_a_batch_draws_the_placebo_permutations_of_the_whole_run() -> None:
    # batches of 2 panels give each panel the placebo SE one batch of 4 gives it
    settings = {**study.STUDY.settings(), "reps": 5, "placebo_sims": 4, "time_placebo_sims": 0}
    case = {"scenario": "random", "method": "did"}
    whole = study.panel_rows(case, 0, {**settings, "batch": 4})
    parts = [r for run in (0, 1) for r in study.panel_rows(case, run, {**settings, "batch": 2})]
    assert [r["seed"] for r in parts] == [0, 1, 2, 3]
    assert [r["placebo"] for r in parts] == pytest.approx([r["placebo"] for r in whole], abs=1e-12)
