"""What the verdict costs an analysis cycle (issue #39).

One analysis worker cycle (``AnalysisWorker.run_once``: every metric by the design's
estimators, the elasticity, the guardrail check) on a random-days experiment of the simulated
market, with the verdict (a verdict port given) and without it (the baseline: the same worker
and panel, no verdict port), interleaved in the same process; medians of ``--runs`` pairs.

    .venv/bin/python benchmarks/bench_verdict.py [--products 2000] [--days 28] [--runs 7]

The verdict's own work per look: the published fields of the decision estimate, one read of
the kept decision, the sequence's mixture, the days-to-power scan (vectorised over at most
20 x the planned periods), and with guardrails one guardrail fit each (the guardrails were
fitted before too, while the experiment runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analysis.worker import AnalysisWorker, InMemorySequenceTuning
from controller.clock import ManualClock
from controller.panel_source import experiment_info
from core.ports import ExperimentInfo
from lab.compare import make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec

COLUMNS = ("product", "period", "units", "revenue", "profit", "treated", "probability", "blackout")


class _Source:
    def __init__(self, info: ExperimentInfo, cells: pd.DataFrame) -> None:
        self.info, self.cells = info, cells

    async def experiments(self) -> list[ExperimentInfo]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return self.cells


class _Sink:
    verdicts = 0

    async def publish(self, *args: Any) -> None:
        return None

    async def publish_verdict(self, *args: Any) -> None:
        self.verdicts += 1

    async def trip(self, *args: Any) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    market = Market(MarketConfig(n_products=args.products), seed=0)
    spec = make_spec("random-days", market, days=args.days, seed=1)
    spec = type(spec).model_validate(
        spec.model_dump()
        | {"mde_pct": 5.0, "guardrails": [{"metric": "units", "max_drop_pct": 2.0}]}
    )
    sim = run_spec(spec, market)
    cells = sim.panel[list(COLUMNS)]
    info = experiment_info(spec, "running", sim.triggers)

    async def cycle(verdicts: bool) -> float:
        sink = _Sink()
        worker = AnalysisWorker(
            _Source(info, cells),
            sink,
            ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
            verdicts=sink if verdicts else None,
            guardrails=sink,  # as live: the guardrails are checked while the experiment runs
            tuning=InMemorySequenceTuning(),
        )
        t0 = time.perf_counter()
        await worker.run_once()
        seconds = time.perf_counter() - t0
        assert sink.verdicts == (1 if verdicts else 0)
        return seconds

    asyncio.run(cycle(True))  # warm: imports, caches
    with_v, without = [], []
    for _ in range(args.runs):
        without.append(asyncio.run(cycle(False)))
        with_v.append(asyncio.run(cycle(True)))
    a, b = statistics.median(with_v), statistics.median(without)
    print(
        f"analysis cycle, {args.products} products x {args.days} days (random days, a units "
        f"guardrail), median of {args.runs}: with the verdict {a:.3f} s, without (baseline, "
        f"same run) {b:.3f} s: ratio {a / b:.3f}"
    )


if __name__ == "__main__":
    main()
