"""Fast CI subset of docs/studies/panel_core_study.py (the full study runs 500 seeds)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from analysis.estimators.registry import make
from tests.unit._panel_dgp import factor_panel
from tests.unit._scripts import load_script

STUDY = Path(__file__).resolve().parents[2] / "docs" / "studies" / "panel_core_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return load_script(STUDY, "panel_core_study")


@pytest.fixture(scope="module")
def rows(study: ModuleType) -> dict[str, dict]:
    out = study.run(60, 0, 0, ("random",), methods=("did", "sdid"))
    return {r["method"]: r for r in out}


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_known_effect_recovered_without_bias(rows: dict, method: str) -> None:
    r = rows[method]
    assert abs(r["bias"]) < 4 * r["mc_se_bias"]


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_jackknife_interval_coverage_near_nominal(rows: dict, method: str) -> None:
    # 60 draws: binomial sd 2.8 points around 95; the full study measures it precisely
    assert rows[method]["jk_cover"] >= 0.85


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_jackknife_t_interval_coverage_near_nominal(rows: dict, method: str) -> None:
    # the Student t(df) interval the library reports; 500 seeds in docs/analysis-core.md
    assert rows[method]["jk_t_cover"] >= 0.88


@pytest.mark.parametrize("method", ["did", "sdid"])
def test_study_measures_the_library_variances(study: ModuleType, method: str) -> None:
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
