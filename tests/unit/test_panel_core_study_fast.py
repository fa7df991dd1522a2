"""Fast CI subset of docs/studies/panel_core_study.py (the full study runs 500 seeds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[2] / "docs" / "studies" / "panel_core_study.py"


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    spec = importlib.util.spec_from_file_location("panel_core_study", STUDY)
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
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
