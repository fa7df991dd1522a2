"""validation.md's finding 3 renders the spillover-continued study's runs only when their
first runs are the table's own, and says whether the coverage is in the band over all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab.studies import validation_page as vp


def _continued(figures: Path, table: pd.DataFrame) -> tuple[str, bool | None]:
    """The continued runs' paragraph, and whether direct is settled (None: left out)."""
    ctx = vp.spillover_continued(figures, table)
    return vp.rendered("spillover_continued.md.j2", ctx), None if ctx is None else ctx["settled"]


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
    # first 20 runs: 18 covered (0.90, the table's); all 100: 95 covered
    covered = [i >= 2 for i in range(20)] + [i >= 3 for i in range(80)]
    _rows(covered).to_csv(tmp_path / "validation-spillover-continued.csv", index=False)
    text, settled = _continued(tmp_path, _table(0.90, 20))
    assert settled is True  # the later 80: 77 covered, 0.9625, within 2 MC SE (0.049) of 95%
    assert "100 in all" in text and "| direct | 100 |" in text and "| 0.950 | 80 |" in text
    assert "0.963" in text and "were chance" in text
    # the same rows against a table they do not reproduce: left out, no verdict
    text, settled = _continued(tmp_path, _table(0.85, 20))
    assert (text, settled) == ("", None)


def test_continued_runs_still_outside_the_band_say_so(tmp_path: Path) -> None:
    covered = [i % 10 != 0 for i in range(100)]  # 0.90 throughout: 0.05 > 2 MC SE at 80 runs
    _rows(covered).to_csv(tmp_path / "validation-spillover-continued.csv", index=False)
    text, settled = _continued(tmp_path, _table(0.90, 20))
    assert settled is False and "`direct` covers 0.900, outside 93-97%" in text


def _worker_table(coverage: dict[str, float], bias: float = 0.0) -> pd.DataFrame:
    """The spillover worker study's finding-3 rows: the worker's path and its ablations."""
    rows = []
    for design in (
        "random-days",
        "random-days (raw outcomes)",
        "random-days (past mean, not net of effects)",
        "random-days (residuals unscaled)",
    ):
        for contrast in ("direct", "spillover_control:any", "spillover_treated:any"):
            rows.append(
                {"design": design, "contrast": contrast, "runs": 400, "published": 400,
                 "bias": bias, "mean_se": 0.25, "emp_sd": 0.26,
                 "coverage": coverage.get(f"{design}/{contrast}", 0.95)}
            )  # fmt: skip
    return pd.DataFrame(rows).set_index(["design", "contrast"])


def test_finding_3_says_whether_every_contrast_is_on_target(tmp_path: Path) -> None:
    text = vp.finding_3_text(tmp_path, _worker_table({}))
    assert "every contrast on target" in text.splitlines()[0]
    assert "| random-days (raw outcomes) | direct | +0.000 +- 0.013 | 0.250 |" in text
    # a contrast outside 93-97% is named, in the heading and the verdict
    text = vp.finding_3_text(tmp_path, _worker_table({"random-days/spillover_control:any": 0.925}))
    assert "spillover_control:any still off the target" in text.splitlines()[0]
    assert "an open item" in text
    # a bias beyond 2 MC SE (0.26 / sqrt(400) = 0.013) is off the target too
    assert "still off the target" in vp.finding_3_text(tmp_path, _worker_table({}, bias=0.03))
    # a table from before the ablations: one sentence asking for the rerun
    old = _worker_table({}).drop(index="random-days (past mean, not net of effects)", level=0)
    assert "Rerun `python -m lab.studies spillover-worker`" in vp.finding_3_text(tmp_path, old)


def test_finding_3_heading_names_what_the_conditional_study_still_finds(tmp_path: Path) -> None:
    import json

    contrast = {"bias": 0.03, "bias_mcse": 0.01, "se_over_total_sd": 0.94, "total_sd": 0.25,
                "mean_se": 0.235, "coverage": 0.935, "se_over_within_sd": 0.95,
                "between_share": 0.02, "between_share_mcse": 0.02}  # fmt: skip
    doc = {"path": vp.CONDITIONAL_PATH, "worlds": 30, "draws": 20, "minutes": 1.0,
           "contrasts": {"direct": contrast}}  # fmt: skip
    (tmp_path / "spillover-random-days-conditional.json").write_text(json.dumps(doc))
    head = vp.finding_3_text(tmp_path, _worker_table({})).splitlines()[0]
    assert head.endswith(
        "open in the conditional study: direct bias +0.030 +- 0.010, direct SE 0.94 of its spread"
    )
    # the coverage a bias of 0.12 SD and an SE at 0.94 of the spread leave: 93.3%
    said = vp.section("spillover_conditional.md.j2", vp.spillover_conditional(tmp_path))
    assert "covering direct 93.3% (measured 93.5%)" in said
    # measured on another path: not named, and the worker-path part asks for a rerun
    (tmp_path / "spillover-random-days-conditional.json").write_text(
        json.dumps(doc | {"path": "raw outcomes"})
    )
    assert "conditional study" not in vp.finding_3_text(tmp_path, _worker_table({})).splitlines()[0]
    stale = vp.section("spillover_conditional.md.j2", vp.spillover_conditional(tmp_path))
    assert "rerun it" in stale
