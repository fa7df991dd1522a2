"""`pricelab demo --ladder` end to end: a four-price ladder through the embedded stack, two
worker processes and simulated time, read as its user reads it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.chromium import (
    LADDER_CHECK,
    assert_ladder_page,
    ladder_view,
    open_page,
    require_chromium,
)

pytestmark = pytest.mark.integration

ARMS = ("p90", "p95", "p105")


def test_a_small_ladder_demo_names_an_arm_scores_each_and_recommends_a_price(
    tmp_path: Path,
) -> None:
    require_chromium()
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--ladder",
         "--products", "40", "--days", "6", "--seed", "3", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "ERROR" not in out
    assert "a price ladder of list x1, p90 x0.9, p95 x0.95, p105 x1.05 (control list)" in out
    # every unit the market sold was counted by the pipeline
    sent = re.search(r"absorbed \d+ events \((\d+) units\)", out)
    counted = re.search(r"every unit sent was counted in Redis: (\d+) units", out)
    assert sent and counted and sent.group(1) == counted.group(1), out[-4000:]
    # a line per look: the verdict naming its arm, each arm's units, the recommended price
    for n in range(2, 7):
        assert re.search(rf"verdict after +{n} periods: .*\(arm p(90|95|105): ", out), n
        assert f"units vs list after  {n} periods (fe): p90 " in out, n
        assert f"demand after  {n} periods: elasticity " in out, n
    # the end: the verdict names an arm, with every arm's sequence
    end = out[out.index("VERDICT after 6 periods") :]
    named = re.search(r"the verdict names arm (\w+);", end)
    assert named and named.group(1) in ARMS, end[:2000]
    # the per-arm scorecard: each arm against list on units, revenue and profit, with its
    # interval, simultaneous interval, truth and coverage; then the MCB sets
    card = end[end.index("PER-ARM SCORECARD after 6 days") : end.index("DEMAND CURVE")]
    rows = [line.split("] ", 1)[1].split() for line in card.splitlines() if "(fe)" in line]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (m, a) for m in ("units", "revenue", "profit") for a in ARMS
    ), card
    assert all(line.count("[") == 3 for line in card.splitlines() if "(fe)" in line)
    assert all(
        re.search(r"(yes|NO), (yes|NO)", line) for line in card.splitlines() if "(fe)" in line
    )
    assert len(re.findall(r"\{[a-z0-9, ]+\} \(dm\); truly best", card)) == 3
    # the demand and profit curves: the points, and the text curve marking every tested price
    # the curve's peak is evidence beside the verdict (the decision), labelled as such
    label = re.search(
        r"(WHERE THE EVIDENCE POINTS, NOT YET DECIDED|EVIDENCE FOR THE DECISION, NOT A SECOND "
        r"DECISION): ",
        end,
    )
    assert label is not None, end[-3000:]
    curve = end[end.index("DEMAND CURVE") : label.start()]
    assert "elasticity " in curve and "the fitted profit curve peaks at x" in curve
    for arm in ("p90", "p95", "list", "p105"):
        assert re.search(rf"{arm} +price x", curve) and f"tested ({arm})" in curve
    assert "recommended" in curve and "true optimum" in curve
    # the recommended price with its interval against the true optimum
    rec = end[label.start() :]
    assert re.search(r"DECI\w+: x\d\.\d{3} of list, 95% interval \[\d\.\d{3}, \d\.\d{3}\]", rec)
    assert re.search(r"true optimum +x\d\.\d{3}", rec)
    assert re.search(r"the interval (COVERS|MISSES) the true optimum", rec)
    # the exit status: the decision metric's simultaneous intervals cover every arm's truth
    assert "the simultaneous intervals of profit COVER every arm's true effect" in rec
    assert "stopped workers and stack" in out
    # the analyst report of the live run, as Chromium shows it: what the text said, drawn
    index = report / "index.html"
    assert f"analyst report of the live experiment: {index}" in out
    dom, console = open_page(index, tmp_path, LADDER_CHECK)
    assert console == [], console
    view = ladder_view(dom)
    assert_ladder_page(view, ["p90", "p95", "p105"], "list")
    band = dom.split('id="verdict">')[1].split("</section>")[0]
    assert re.search(rf"(leading|shipped) arm {named.group(1)}:", band), band[:600]
    said = re.search(r"DECI\w+: (x\d\.\d{3}) of list, 95% interval (\[[\d., ]+\])", rec)
    assert said is not None
    assert (
        f"the fitted profit curve peaks at {said.group(1)} of the control's {said.group(2)}"
        in (view["recommendation"])
    )
    # each arm's truth beside its estimate, as the text scorecard gives it
    for row in rows:
        metric, arm, truth = row[0], row[1], row[7]
        cells = dom.split(f'<tr data-metric="{metric}" data-arm="{arm}">')[1].split("</tr>")[0]
        assert f"<td>{truth} (" in cells, (metric, arm, cells)
