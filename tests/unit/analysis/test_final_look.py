"""When an experiment leaves the analysis cycle (issue #56, item 5; core.final_look): a
stopped or ended experiment is looked at until the look over its sealed data is out, then
no more, and the worker lets go of what it kept of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analysis.chunked import _Kept
from analysis.worker import AnalysisWorker, ExperimentInfo, InMemorySequenceTuning
from controller.clock import ManualClock
from core import status
from core.final_look import FINAL_LOOK, final_look, sealed

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "ran", "done", "compacted", "expected"),
    [
        (status.ENDED, 5, 5, 5, True),  # every period over and closed to sales
        (status.STOPPED, 3, 3, 3, True),
        (status.ENDED, 5, 5, 4, False),  # the last period still takes late sales
        (status.STOPPED, 3, 2, 2, False),  # the period it stopped in is not over yet
        (status.RUNNING, 5, 5, 5, False),  # running: more periods to come
        (status.PAUSED, 5, 5, 5, False),  # a pause can be resumed
        (status.ENDED, 0, 0, 0, False),  # nothing ran: nothing to look at
    ],
)
def test_data_is_sealed_only_when_final_and_every_period_it_ran_is_compacted(
    state: str, ran: int, done: int, compacted: int, expected: bool
) -> None:
    assert sealed(state, ran, done, compacted) is expected


@pytest.mark.parametrize(
    ("state", "is_sealed", "expected"),
    [
        (status.STOPPED, True, True),
        (status.ENDED, True, True),
        (status.ENDED, False, False),
        (status.RUNNING, True, False),  # a source's mistake cannot end a running one
        (status.PAUSED, True, False),
    ],
)
def test_a_look_is_final_only_at_a_final_status_over_sealed_data(
    state: str, is_sealed: bool, expected: bool
) -> None:
    assert final_look(state, is_sealed) is expected


def _cells(products: int = 12, periods: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {
            "product": f"p{i:02d}",
            "period": k,
            "units": float(rng.poisson(20)),
            "revenue": 10.0 * rng.poisson(20),
            "treated": int((i + k) % 2),
            "probability": 0.5,
            "blackout": False,
        }
        for i in range(products)
        for k in range(periods)
    ]
    df = pd.DataFrame(rows)
    df["product"] = df["product"].astype("category")
    return df


class Source:
    """A panel source that lists what it is given, leaving out (as the Redis one does) the
    experiments whose final look the tuning store holds."""

    def __init__(self, tuning: InMemorySequenceTuning, *infos: ExperimentInfo) -> None:
        self.tuning, self.infos = tuning, {i.id: i for i in infos}
        self.read: list[str] = []

    async def experiments(self) -> list[ExperimentInfo]:
        return [i for i in self.infos.values() if (i.id, FINAL_LOOK) not in self.tuning.targets]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        self.read.append(exp_id)
        return _cells()


class Sink:
    def __init__(self) -> None:
        self.looks: list[tuple[str, datetime]] = []
        self.refuse: set[str] = set()

    async def publish(self, experiment: str, result: object, as_of: datetime, cs: object) -> None:
        if experiment in self.refuse:
            raise RuntimeError("the broker refused the record")
        self.looks.append((experiment, as_of))


class Observer:
    def __init__(self) -> None:
        self.holding_said: list[tuple[int, int]] = []

    def estimated(self, *a: object) -> None: ...

    def published(self, *a: object) -> None: ...

    def guardrail_tripped(self, *a: object) -> None: ...

    def cycle_done(self, *a: object) -> None: ...

    def reporting(self, *a: object) -> None: ...

    def holding(self, looked: int, held: int) -> None:
        self.holding_said.append((looked, held))


def _info(exp_id: str, state: str, is_sealed: bool = False, n_products: int = 12) -> ExperimentInfo:
    return ExperimentInfo(
        exp_id,
        "random-days",
        state,
        {"n_periods": 6},
        sealed=is_sealed,
        n_products=n_products,
    )


def _worker(*infos: ExperimentInfo, **kw: object) -> tuple[AnalysisWorker, Source, Sink, Observer]:
    tuning = InMemorySequenceTuning()
    source, sink, seen = Source(tuning, *infos), Sink(), Observer()
    clock = ManualClock(AS_OF)
    w = AnalysisWorker(source, sink, clock, seen, tuning=tuning, **kw)  # type: ignore[arg-type]
    return w, source, sink, seen


def _looked(sink: Sink, exp_id: str) -> int:
    return len({at for e, at in sink.looks if e == exp_id})


async def test_a_stopped_experiment_is_looked_at_until_its_sealed_look_is_out_then_never() -> None:
    w, source, sink, seen = _worker(_info("run", status.RUNNING), _info("stop", status.STOPPED))
    clock = w.clock
    assert isinstance(clock, ManualClock)
    for _ in range(2):  # stopped, but its last period still takes late sales
        await w.run_once()
        clock.advance(timedelta(hours=1))
    assert _looked(sink, "stop") == 2
    assert ("stop", FINAL_LOOK) not in w.tuning.targets  # type: ignore[attr-defined]
    # the last period compacted: the next look is the final one
    source.infos["stop"] = replace(source.infos["stop"], sealed=True)
    final_at = clock.now()
    await w.run_once()
    assert _looked(sink, "stop") == 3
    assert w.tuning.targets[("stop", FINAL_LOOK)] == final_at.timestamp() * 1000  # type: ignore[attr-defined]
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        await w.run_once()
    assert _looked(sink, "stop") == 3  # never again
    assert _looked(sink, "run") == 6
    assert source.read.count("stop") == 3  # its cells are not even read
    assert [looked for looked, _ in seen.holding_said] == [2, 2, 2, 1, 1, 1]


async def test_a_running_experiment_never_gets_a_final_look_even_if_called_sealed() -> None:
    w, _, sink, _ = _worker(_info("run", status.RUNNING, is_sealed=True))
    for _ in range(3):
        await w.run_once()
    assert ("run", FINAL_LOOK) not in w.tuning.targets  # type: ignore[attr-defined]
    assert _looked(sink, "run") == 1  # one clock time, three looks at it
    assert len(sink.looks) > 0


async def test_a_final_look_the_broker_refused_is_not_marked_and_is_taken_again() -> None:
    w, _, sink, _ = _worker(_info("ended", status.ENDED, is_sealed=True))
    sink.refuse.add("ended")
    with pytest.raises(RuntimeError):
        await w.run_once()
    assert ("ended", FINAL_LOOK) not in w.tuning.targets  # type: ignore[attr-defined]
    sink.refuse.clear()
    await w.run_once()
    assert ("ended", FINAL_LOOK) in w.tuning.targets  # type: ignore[attr-defined]
    assert _looked(sink, "ended") == 1


class HoldingSource(Source):
    """Keeps something of each experiment it read until it is listed no more, as the Redis
    source keeps compacted periods."""

    def __init__(self, tuning: InMemorySequenceTuning, *infos: ExperimentInfo) -> None:
        super().__init__(tuning, *infos)
        self.kept: set[str] = set()

    async def experiments(self) -> list[ExperimentInfo]:
        listed = await super().experiments()
        self.kept &= {i.id for i in listed}
        return listed

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        self.kept.add(exp_id)
        return await super().panel(exp_id, as_of)

    def held(self) -> frozenset[str]:
        return frozenset(self.kept)


async def test_what_is_kept_of_an_experiment_goes_with_its_final_look() -> None:
    tuning = InMemorySequenceTuning()
    infos = (_info("run", status.RUNNING), _info("ended", status.ENDED))
    source, sink, seen = HoldingSource(tuning, *infos), Sink(), Observer()
    clock = ManualClock(AS_OF)
    w = AnalysisWorker(source, sink, clock, seen, tuning=tuning)  # type: ignore[arg-type]
    await w.run_once()
    # the worker's own keeping too: a chunked look's sums, what it said once
    w._looks._kept["ended"] = _Kept(())
    w._margins_told.add("ended")
    assert w.held() == {"run", "ended"}
    assert seen.holding_said[-1] == (2, 2)
    source.infos["ended"] = replace(source.infos["ended"], sealed=True)
    clock.advance(timedelta(hours=1))
    await w.run_once()  # the final look: the worker lets go of its own at once
    assert w.held(own=True) == set()
    assert seen.holding_said[-1] == (2, 2)  # the source keeps its periods until next listing
    clock.advance(timedelta(hours=1))
    await w.run_once()
    assert w.held() == {"run"}
    assert seen.holding_said[-1] == (1, 1)
    assert source.read.count("ended") == 2
