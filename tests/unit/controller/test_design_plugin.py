"""A design is one module: a toy design registered here, in this file alone, runs through
``pricelab schedule``, the flip's whole-period path, ``pricelab simulate``,
``pricelab compare-designs`` and the analysis worker, with no other module changed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.worker import AnalysisWorker
from controller import design_registry
from controller.clock import ManualClock
from controller.designs import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    assign,
    bernoulli,
    fixed_path,
    period_assignments,
    register,
)
from controller.panel_source import experiment_info
from controller.spec import Arm, ExperimentSpec, load_spec_file
from core.ports import EstimatorPlan
from streams.cli import app


class Alternating(Design):
    """Each product draws its first arm once, then alternates every period."""

    name = "toy-alternating"

    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        first = bernoulli(spec, product, "toy")
        flip = k % 2 == 1
        arm = (Arm.CONTROL if first == Arm.TREATMENT else Arm.TREATMENT) if flip else first
        return Draw(arm, 1.0 - spec.allocation if flip else spec.allocation)

    def path_probability(
        self, spec: ExperimentSpec, product: str, window: range, target: int, ctx: DesignContext
    ) -> float:
        starts_t = [Arm.TREATMENT if s % 2 == 0 else Arm.CONTROL for s in window]
        starts_c = [Arm.CONTROL if a == Arm.TREATMENT else Arm.TREATMENT for a in starts_t]
        return fixed_path(spec.allocation, starts_t, starts_c, spec.role(target))

    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        return True

    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        return (EstimatorPlan("dm", {"cluster": "unit"}),)

    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        return ExperimentSpec(**base, products=market.products)


SPEC = """
id: toy
design: toy-alternating
products: [a, b, c, d, e, f, g, h]
treatment_policy: t
control_policy: c
start: 2026-05-04T00:00:00Z
end: 2026-05-18T00:00:00Z
washout: PT2H
seed: 4
"""


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Path]:
    register(Alternating())
    path = tmp_path / "toy.yaml"
    path.write_text(SPEC)
    try:
        yield path
    finally:
        design_registry.unregister(Alternating.name)


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_schedule_and_the_flip_run_a_registered_design(toy: Path) -> None:
    spec = load_spec_file(toy)
    rows = list(csv.DictReader(io.StringIO(_run(["schedule", str(toy), "--csv"]))))
    assert len(rows) == 8 * 14
    by_unit: dict[str, list[str]] = {}
    for r in rows:
        by_unit.setdefault(r["unit"], []).append(r["arm"])
    for arms in by_unit.values():
        assert all(a != b for a, b in zip(arms, arms[1:], strict=False))  # alternates
    # every period switches, so every period opens with the washout
    assert {r["blackout_reason"] for r in rows} == {"washout"}
    for k in (0, 5):
        assert list(period_assignments(spec, k)) == [assign(spec, p, k) for p in "abcdefgh"]


def test_simulate_runs_a_registered_design_as_scheduled(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    _run(["simulate", "--spec", str(toy), "--out", str(out)])
    panel = pd.read_csv(out)
    sched = pd.DataFrame(list(csv.DictReader(io.StringIO(_run(["schedule", str(toy), "--csv"])))))
    sched = sched.rename(columns={"unit": "product"})  # the schedule's unit is a product
    sched["period"] = sched["period"].astype(int)
    both = panel.merge(sched, on=["product", "period"], suffixes=("", "_s"), validate="one_to_one")
    assert len(both) == len(panel) == 8 * 14
    assert (both["arm"] == both["arm_s"]).all()


def test_compare_designs_runs_a_registered_design_with_its_estimators(toy: Path) -> None:
    out = _run(["compare-designs", "--designs", "toy-alternating,random-days", "--runs", "2",
                "--days", "8", "--products", "12"])  # fmt: skip
    lines = [line.split() for line in out.splitlines()]
    toy = [cells for cells in lines if cells[:2] == ["toy-alternating", "dm"]]
    assert len(toy) == 1
    assert toy[0][2:4] == ["2", "0"]  # 2 runs, none failed
    assert not any(line.startswith("! toy-alternating") for line in out.splitlines())


async def test_the_analysis_worker_publishes_a_registered_designs_estimators(
    toy: Path, tmp_path: Path
) -> None:
    spec = load_spec_file(toy)
    out = tmp_path / "p.csv"
    _run(["simulate", "--spec", str(toy), "--out", str(out)])
    cells = pd.read_csv(out)
    info = experiment_info(spec, "running")
    assert [p.label for p in info.estimators] == ["dm"]

    class Source:
        async def experiments(self) -> list[Any]:
            return [info]

        async def panel(self, exp_id: str, as_of: Any) -> pd.DataFrame:
            return cells

    class Sink:
        published: list[Any] = []

        async def publish(self, experiment: str, result: Any, as_of: Any, cs: Any) -> None:
            self.published.append((experiment, result, cs))

    sink = Sink()
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    await AnalysisWorker(Source(), sink, clock).run_once()
    assert [(e, r.method, r.se_method) for e, r, _ in sink.published if r.metric == "units"] == [
        ("toy", "dm", "cluster_unit")
    ]
    # the toy spec gives no unit costs: every metric but profit
    assert {r.metric for _, r, _ in sink.published} == {"units", "revenue", "price", "elasticity"}
