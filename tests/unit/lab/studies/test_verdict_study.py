"""The verdict study (lab/studies/verdict.py): its page is its saved results, and a run goes
through the analysis worker look by look."""

from __future__ import annotations

import json
from pathlib import Path

from lab.studies.verdict import (
    ND_BEGIN,
    ND_END,
    RENDER_BEGIN,
    RENDER_END,
    StudyConfig,
    render,
    render_no_difference,
    run_one,
)

ROOT = Path(__file__).resolve().parents[4]


def test_the_decision_page_shows_the_saved_study() -> None:
    saved = json.loads((ROOT / "docs" / "figures" / "verdict-study.json").read_text())
    page = (ROOT / "docs" / "decision.md").read_text()
    section = page[page.index(RENDER_BEGIN) + len(RENDER_BEGIN) : page.index(RENDER_END)]
    assert section.strip() == render(saved).strip()
    # every design was run in both worlds, with the runs the config says
    worlds = {(r["design"], r["world"]): r["runs"] for r in saved["rows"]}
    assert len(worlds) == 12 and set(worlds.values()) == {saved["config"]["runs"]}


def test_one_run_is_the_workers_verdict_at_every_look() -> None:
    cfg = StudyConfig(products=30, days=7, runs=1)
    row = run_one(cfg, "random-days", "aa", 0)
    assert row["looks"] == 6  # from the worker's first look (2 periods) to the 7th
    assert row["estimator"] == "fe" and row["truth_relative"] == 0.0
    assert row["final"] in ("ship", "do_not_ship", "no_difference", "keep_running")
    assert row["first"] in ("", "ship", "do_not_ship", "no_difference")
    assert row["without_no_difference"] in ("", "ship", "do_not_ship")


def test_the_decision_page_shows_the_saved_no_difference_study() -> None:
    saved = json.loads((ROOT / "docs" / "figures" / "verdict-no-difference.json").read_text())
    page = (ROOT / "docs" / "decision.md").read_text()
    section = page[page.index(ND_BEGIN) + len(ND_BEGIN) : page.index(ND_END)]
    assert section.strip() == render_no_difference(saved).strip()
    worlds = {(r["design"], r["world"]): r["runs"] for r in saved["rows"]}
    assert set(worlds) == {("random-days", "aa"), ("random-days", "effect")}
    assert set(worlds.values()) == {saved["config"]["runs"]}
