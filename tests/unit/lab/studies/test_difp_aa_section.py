"""The validation report renders the difp A/A study's saved figures (python -m lab.studies difp-aa)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from lab.studies import validation_page as vp

ROOT = Path(__file__).resolve().parents[4]
FIGURES = ROOT / "docs" / "figures"


def _aa_row() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "design": "time-bound",
                "estimator": "difp",
                "runs": 100,
                "failed": 0,
                "bias": 0.713,
                "emp_sd": 1.2,
                "se_ratio": 1.0,
            }
        ]
    )


def test_section_renders_the_saved_figures(tmp_path: Path) -> None:
    shutil.copy(FIGURES / "validation-difp_aa.json", tmp_path)
    saved = json.loads((tmp_path / "validation-difp_aa.json").read_text())
    text = vp.rendered("difp_aa.md.j2", vp.difp(tmp_path))
    assert text.startswith("\n### Why `difp` is biased on the time-bound design")
    assert f"{saved['reproduction']['difp']['mean']:+.3f}" in text
    assert f"{saved['rerandomisation']['tau_plus_swapped']['mean']:+.3f}" in text
    assert f"{saved['remedies']['T0=28']['mean']:+.3f}" in text


def test_finding_names_the_cause_only_when_the_study_ran(tmp_path: Path) -> None:
    main = pd.DataFrame(columns=["design", "estimator"])

    def findings() -> str:
        return vp.section("findings.md.j2", vp.findings(_aa_row(), main, tmp_path))

    without = findings()
    assert "cause not established" in without and vp.difp(tmp_path) is None
    shutil.copy(FIGURES / "validation-difp_aa.json", tmp_path)
    with_study = findings()
    assert "cause not established" not in with_study and "regression to the mean" in with_study
