"""validation.md's live section says when its saved run predates the cluster design's class x
period `fe` (the run saved no record of the plans it measured), and not once it has one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lab.studies import validation_page as vp

ROOT = Path(__file__).resolve().parents[4]
FIGURES = ROOT / "docs" / "figures"
CAVEAT = "Measured before the cluster design's `fe` was clustered by class x period"


def test_a_run_without_its_plans_is_flagged_and_one_with_them_is_not(tmp_path: Path) -> None:
    def live_section(figures: Path) -> str:
        return vp.section("live_section.md.j2", vp.live(figures))

    for name in ("live-coverage.csv", "live-coverage-runs.csv", "live-coverage.json"):
        shutil.copy(FIGURES / name, tmp_path / name)
    saved = json.loads((tmp_path / "live-coverage.json").read_text())
    saved.pop("plans", None)
    (tmp_path / "live-coverage.json").write_text(json.dumps(saved))
    assert CAVEAT in live_section(tmp_path)
    # plans saved, but the cluster fe's the class clusters of before: still flagged
    saved["plans"] = {"cluster": ['fe {"cluster": "class"}', 'dm {"cluster": "class"}']}
    (tmp_path / "live-coverage.json").write_text(json.dumps(saved))
    assert CAVEAT in live_section(tmp_path)
    # what the live coverage study (streams.live.coverage) saves for a cluster experiment now
    from streams.live import coverage as live

    saved["plans"] = {"cluster": live.plan_texts(live.make_runs(0, ["cluster"], 1, 20, 8)[0])}
    assert saved["plans"]["cluster"] == [
        'fe {"cluster": "class_period"}',
        'dm {"cluster": "class"}',
    ]
    (tmp_path / "live-coverage.json").write_text(json.dumps(saved))
    text = live_section(tmp_path)
    assert CAVEAT not in text and "## Live coverage: what the running worker publishes" in text
