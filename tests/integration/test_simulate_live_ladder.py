"""``pricelab simulate --live`` plays a price ladder into workers an operator started.

The operator's stack: the embedded broker and Redis, a controller worker and an analysis worker
(real processes, simulated clock). The command creates a four-price ladder through the commands
topic, plays its market period by period, and prints each look's per-arm estimates and
recommended price, then the ladder's summary: the verdict naming an arm, each arm against the
control beside the market's truths, and the demand curve's recommended price against the true
optimum. A k-arm spec whose arms give no prices is refused in one sentence before any stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.live.driver import lockstep_settings
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import ensure_topics
from tests.integration.conftest import make_settings, pricelab

pytestmark = pytest.mark.integration

ARMS = ("list", "p90", "p95", "p105")
PRODUCTS = 40


def _ladder_yaml() -> str:
    products = ", ".join(f"L{i:02d}" for i in range(PRODUCTS))
    costs = ", ".join(f"L{i:02d}: 4.5" for i in range(PRODUCTS))
    return f"""
id: live-ladder
design: random-days
products: [{products}]
arms:
  - {{name: list, policy: list-price, price_ratio: 1.0, allocation: 0.25, control: true}}
  - {{name: p90, policy: price-90, price_ratio: 0.90, allocation: 0.25}}
  - {{name: p95, policy: price-95, price_ratio: 0.95, allocation: 0.25}}
  - {{name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.25}}
unit_costs: {{{costs}}}
start: 2026-05-04T00:00:00+02:00
end: 2026-05-14T00:00:00+02:00
timezone: Europe/Berlin
seed: 11
"""


async def test_simulate_live_plays_a_price_ladder(stack, tmp_path: Path) -> None:
    settings = lockstep_settings(make_settings(stack))
    await ensure_topics(settings)
    spec = tmp_path / "ladder.yaml"
    spec.write_text(_ladder_yaml())
    controller = WorkerProcess(settings, ("controller",)).launch()
    analysis = WorkerProcess(settings, ("analysis",)).launch()
    try:
        controller.wait_healthy()
        analysis.wait_healthy()
        metrics = f"http://127.0.0.1:{analysis.metrics_port}/metrics"
        res = pricelab(
            settings, "simulate", "--live", "--spec", str(spec), "--days", "8",
            "--analysis-metrics", metrics, timeout=600,
        )  # fmt: skip
    finally:
        controller.stop()
        analysis.stop()
    assert res.returncode == 0, res.stderr
    out = res.stdout
    # each period played: how many products are off the control's price
    played = re.findall(r"^period\s+(\d+)/8 .*: (\d+) of 40 off the control price", out, re.M)
    assert [int(p) for p, _ in played] == list(range(1, 9)), out
    assert all(0 < int(n) < PRODUCTS for _, n in played), out
    # each look: every arm's units against the control, and the recommended price
    looks = re.findall(r"units vs list after\s+(\d+) periods \(\w+\): (.*)$", out, re.M)
    assert looks, out
    assert all(f"{a} " in looks[-1][1] for a in ARMS[1:]), looks[-1]
    assert re.search(
        r"demand after\s+\d+ periods: elasticity [-+]\d.*curve peaks at x\d\.\d{3}", out
    )
    # the curve's peak is evidence: labelled beside the look's verdict, never a price to set
    assert re.search(
        r"curve peaks at x.*\((where the evidence points, not yet decided|"
        r"evidence for the decision, not a second decision)\)",
        out,
    )
    # the summary after the last complete look: the verdict, every arm against control
    # beside its truth, and the recommended price against the true optimum
    summary = out.split("per-arm scorecard after", 1)
    assert len(summary) == 2, out
    head, tail = summary
    assert re.search(r"(ship|keep running|do not ship)", head, re.I), head
    for arm in ARMS[1:]:
        assert re.search(rf"^\s+\w+\s+{arm}\s", tail, re.M), (arm, tail)
    assert "true optimum" in tail, tail


def test_a_k_arm_spec_without_prices_is_refused_before_any_stack(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    spec = tmp_path / "noprice.yaml"
    spec.write_text(_ladder_yaml().replace(", price_ratio: 1.05", ""))
    res = CliRunner().invoke(app, ["simulate", "--live", "--spec", str(spec)])
    assert res.exit_code == 2, res.output
    assert "arms: give price_ratio on every arm or on none; 'p105' has none" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
