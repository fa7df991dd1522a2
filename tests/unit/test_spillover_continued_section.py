"""validation.md's finding 3 renders spillover_worker_study's continued runs only when their
first runs are the table's own, and says whether the coverage is in the band over all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.unit._scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _study():  # type: ignore[no-untyped-def]
    return load_script(ROOT / "docs" / "studies" / "validation_study.py", "validation_study")


def _rows(covered: list[bool]) -> pd.DataFrame:
    """One contrast's runs, seeds 500 on, each error +-0.5 around the truth."""
    n = len(covered)
    return pd.DataFrame(
        {
            "design": "random-days",
            "contrast": "direct",
            "seed": 500 + np.arange(n),
            "truth": 2.0,
            "published": True,
            "effect": 2.0 + np.where(np.arange(n) % 2 == 0, 0.5, -0.5),
            "se": 0.5,
            "covered": covered,
            "minutes": 1.0,
        }
    )


def _table(coverage: float, runs: int) -> pd.DataFrame:
    return pd.DataFrame(
        [{"design": "random-days", "contrast": "direct", "runs": runs, "published": runs,
          "coverage": coverage}]
    ).set_index(["design", "contrast"])  # fmt: skip


def test_continued_runs_that_reproduce_the_table_give_a_verdict(tmp_path: Path) -> None:
    mod = _study()
    # first 20 runs: 18 covered (0.90, the table's); all 100: 95 covered
    covered = [i >= 2 for i in range(20)] + [i >= 3 for i in range(80)]
    _rows(covered).to_csv(tmp_path / "validation-spillover-continued.csv", index=False)
    text, settled = mod._spillover_continued(tmp_path, _table(0.90, 20))
    assert settled is True  # the later 80: 77 covered, 0.9625, within 2 MC SE (0.049) of 95%
    assert "100 in all" in text and "| direct | 100 |" in text and "| 0.950 | 80 |" in text
    assert "0.963" in text and "were chance" in text
    # the same rows against a table they do not reproduce: left out, no verdict
    text, settled = mod._spillover_continued(tmp_path, _table(0.85, 20))
    assert (text, settled) == ("", None)


def test_continued_runs_still_outside_the_band_say_so(tmp_path: Path) -> None:
    mod = _study()
    covered = [i % 10 != 0 for i in range(100)]  # 0.90 throughout: 0.05 > 2 MC SE at 80 runs
    _rows(covered).to_csv(tmp_path / "validation-spillover-continued.csv", index=False)
    text, settled = mod._spillover_continued(tmp_path, _table(0.90, 20))
    assert settled is False and "`direct` covers 0.900, outside 93-97%" in text
