"""`pricelab demo` end to end: embedded stack, two worker processes, simulated time."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_small_demo_accounts_for_every_sale_and_covers_the_truth(tmp_path):
    report = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--products",
            "40",
            "--days",
            "5",
            "--seed",
            "3",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "ERROR" not in out
    assert "the interval COVERS the true effect" in out
    # random days' primary estimate: each product compared with itself
    assert "FINAL profit, the decision metric (fe, 40 products x 5 days" in out
    # the verdict comes first: after the looks (one line each), before the final estimate
    # (the worker looks from 2 periods on: looks after 2, 3, 4 and 5 days)
    assert [n for n in range(1, 6) if f"   verdict after  {n} periods" in out] == [2, 3, 4, 5]
    verdict = out.index("VERDICT after 5 periods")
    assert verdict < out.index("FINAL profit") < out.index("SCORECARD")
    # each look's estimates are the decision metric's, in its unit and percent
    assert "estimate fe   after  5 periods: " in out and " profit/product-day (" in out
    assert "decision metric profit (fe)" in out[verdict:]
    assert any(w in out[verdict:].splitlines()[0] for w in ("SHIP", "KEEP RUNNING"))
    # the scorecard: every metric (the demo's spec gives the market's unit costs), absolute
    # and relative with intervals and truths, the elasticity, and the reading
    card = out[out.index("SCORECARD") :].splitlines()
    rows = {line.split()[2]: line for line in card[2:8] if len(line.split()) > 2}
    assert set(rows) >= {"units", "revenue", "profit", "price", "elasticity"}, card
    for metric in ("units", "revenue", "profit", "price"):
        assert rows[metric].count("[") == 3 and "%" in rows[metric], rows[
            metric
        ]  # time stamp, 2 CIs
    assert "reading: units " in out and "profit " in out.split("reading:")[1]
    # the analyst report of the live run was written before the stack went down
    page = (report / "index.html").read_text()
    assert page.index("Scorecard") < page.index("Assignment")
    assert page.count("<svg") >= 4  # a relative-interval bar per metric
    # one self-contained page: its figures are inline, no file beside it
    assert page.count('src="data:image/png;base64,') >= 2
    assert [p.name for p in report.iterdir()] == ["index.html"]
    # and it opens with the worker's latest verdict
    assert page.index('id="verdict"') < page.index("Scorecard") and "No verdict" not in page
    # the workers and the embedded stack were stopped
    assert "stopped workers and stack" in out
