"""The analysis worker keeps nothing per look (issue #56, item 5): what it holds between looks
grows with the data (periods, experiments), never with the number of looks."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.worker import AnalysisWorker, ExperimentInfo, InMemorySequenceTuning
from controller.clock import ManualClock
from core.ports import EstimatorPlan

PLANS = (
    EstimatorPlan("fe", {"cluster": "unit"}),
    EstimatorPlan("dm", {"cluster": "unit"}),
    EstimatorPlan("ht", {"p": 0}),
)


def _cells(n: int = 40, t: int = 14, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treated = rng.random((n, t)) < 0.5
    units = rng.poisson(20.0 * (1 + 0.1 * treated)).astype(float)
    return pd.DataFrame(
        {
            "product": np.repeat([f"p{i}" for i in range(n)], t),
            "period": np.tile(np.arange(t), n),
            "units": units.ravel(),
            "revenue": (units * 9.5).ravel(),
            "profit": (units * 3.0).ravel(),
            "treated": treated.ravel().astype(int),
            "probability": 0.5,
            "blackout": False,
        }
    )


class _Source:
    """Each look gets a table of its own, built afresh, as the Redis source builds one per
    call (a copy of one kept table would share its column index, whose copy-on-write
    bookkeeping, pandas' weak references to each view, grows until pandas prunes it)."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.columns = {c: df[c].to_numpy() for c in df.columns}
        params = {"n_periods": 28, "mde_pct": 5.0,
                  "guardrails": [{"metric": "units", "max_drop_pct": 30}]}  # fmt: skip
        self.info = ExperimentInfo("e1", "random-days", "running", params, estimators=PLANS)

    async def experiments(self) -> list[ExperimentInfo]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return pd.DataFrame({c: v.copy() for c, v in self.columns.items()})


class _Sink:
    def __init__(self) -> None:
        self.messages = 0

    async def publish(self, *args: Any) -> None:
        self.messages += 1

    async def publish_verdict(self, *args: Any) -> None:
        self.messages += 1

    async def trip(self, *args: Any) -> None:
        return None


#: the package's own code: what it allocates there and keeps (a dict entry, a list item, a
#: cached array) is what a cache or a log keyed by look would grow
ROOT = Path(__file__).resolve().parents[3]
OURS = [
    tracemalloc.Filter(True, str(ROOT / pkg / "*")) for pkg in ("analysis", "core", "controller")
]


def _ours() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(OURS)


async def test_looks_repeated_on_the_same_data_keep_nothing_more() -> None:
    """Thirty looks, each at a later clock time, of an experiment whose data does not change:
    the memory the package's own lines allocated and still hold does not grow (measured: not
    a byte). Python's and numpy's own free lists and pandas' copy-on-write bookkeeping fill
    up to their bounds over the first hundred looks; they are not the package's, so they are
    left out (docs/operations.md, "What an analysis worker's memory grows with")."""
    sink = _Sink()
    clock = ManualClock(datetime(2026, 1, 20, tzinfo=UTC))
    worker = AnalysisWorker(
        _Source(_cells()),
        sink,
        clock,
        guardrails=sink,
        verdicts=sink,
        tuning=InMemorySequenceTuning(),
    )
    for _ in range(3):  # warm: imports, first compilations, the sequences' tuning kept
        await worker.run_once()
    tracemalloc.start(1)
    try:
        for _ in range(3):
            clock.advance(timedelta(minutes=1))
            await worker.run_once()
        before = _ours()
        published = sink.messages
        for _ in range(30):
            clock.advance(timedelta(minutes=1))
            await worker.run_once()
        grew = _ours().compare_to(before, "lineno")
    finally:
        tracemalloc.stop()
    # every look did its work: the same messages each time ...
    per_look, rest = divmod(sink.messages - published, 30)
    assert per_look > 10 and rest == 0
    # ... and kept nothing more of it
    kept = sum(d.size_diff for d in grew)
    assert kept < 512, [str(d) for d in grew[:5]]


def test_a_guardrail_on_a_failed_estimate_leaves_it_without_a_traceback() -> None:
    """A chunked look's result that failed is kept without its traceback (core.errors.kept),
    in the look's population and in the chunks' sums kept for the next look; the guardrail
    reading re-raised it, and its traceback then held the reading's frame (the sampled rows,
    the population) for as long as the sums were kept: it is cleared again."""
    import asyncio

    from analysis.chunked import Population
    from analysis.errors import PanelError
    from analysis.worker import _guardrail_plan

    source = _Source(_cells())
    worker = AnalysisWorker(source, _Sink(), ManualClock(datetime(2026, 6, 1, tzinfo=UTC)),
                            tuning=InMemorySequenceTuning())  # fmt: skip
    failed = PanelError("The panel is unbalanced: period 4 has assignment records for some")
    key = (_guardrail_plan(source.info).label, "units")
    population = Population({key: failed}, {}, {}, ("units",), 40, 14)
    ((reading, result),) = asyncio.run(worker._guardrail_readings(source.info, None, population))
    assert result is None and reading.note == str(failed)
    assert failed.__traceback__ is None
