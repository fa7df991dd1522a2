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
    assert "FINAL (dm, 40 products x 5 days" in out
    # the analyst report of the live run was written before the stack went down
    page = (report / "index.html").read_text()
    for img in ("assignment.png", "running_estimates.png"):
        assert img in page and (report / img).stat().st_size > 1000
    # the workers and the embedded stack were stopped
    assert "stopped workers and stack" in out
