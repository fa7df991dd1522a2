"""One experiment whose messages the broker refuses at every tick does not hold up the other
experiments' flips (``Flipper._tick`` takes a decision still to be published after the rest).

The refusal is the real broker's: the session's stack checks every assignment against its
contract, and the sink below sends experiment ``aa``'s messages with a ``seq`` that breaks
it, as a bug in one design's messages would. ``aa`` comes first in the store's order, so
before the change its refused decision raised out of every tick ahead of ``zz``'s flip."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import UnknownError

from controller.designs import Assignment
from controller.settings import Settings
from controller.spec import load_spec
from streams.worker.sinks import assignment_message
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


class ContractBreaking:
    """The runtime's own sink, except that while ``on``, experiment ``aa``'s assignments go to
    the broker with ``seq`` a string, which the assignments contract refuses."""

    def __init__(self, runtime: Any, settings: Settings) -> None:
        self._real = runtime.flipper.sink
        self._publisher = runtime.publisher
        self._topic = settings.topics.assignments
        self.on = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        mine = list(assignments)
        if not (self.on and mine and mine[0].experiment == "aa"):
            await self._real.publish_assignments(assignments, seq, status)
            return
        for a in mine:
            doc = assignment_message(a, seq, status).model_dump(mode="json") | {"seq": str(seq)}
            await self._publisher.send(self._topic, json.dumps(doc).encode(), key=a.product)
        await self._publisher.flush()


def _spec(exp_id: str, products: list[str]) -> Any:
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=4)).isoformat(),
            "washout": "PT1H",
            "seed": 3,
        }
    )


async def test_an_experiment_the_broker_refuses_does_not_hold_up_the_others_flips(
    runtime: Any, settings: Settings
) -> None:
    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store = runtime.store
    await runtime.clock.set(START + timedelta(minutes=1))
    await runtime.flipper.create(_spec("aa", ["a1", "a2"]), backfill=True)
    await runtime.flipper.create(_spec("zz", ["z1", "z2", "z3"]), backfill=True)
    assert await store.experiment_ids() == ["aa", "zz"]  # aa's turn comes first

    sink.on = True
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    # the first tick decides aa's flip, and the broker refuses its messages
    with pytest.raises(UnknownError):
        await runtime.flipper.tick()
    aa = await store.get_experiment("aa")
    assert aa.flipped_period == 1 and aa.seq > aa.published  # the fault: decided, not out
    assert (await store.get_experiment("zz")).flipped_period == 0  # this tick ended at aa

    # the next tick flips zz before it tries aa's messages again (refused again)
    with pytest.raises(UnknownError):
        await runtime.flipper.tick()
    assert (await store.get_experiment("zz")).published_through(1)
    aa = await store.get_experiment("aa")
    assert aa.seq > aa.published

    msgs = await read_topic(settings, settings.topics.assignments, expect=2 + 3 + 3)
    periods = sorted((m["experiment"], m["period"]) for m in msgs)
    # aa: period 0 only (its period 1 was refused); zz: periods 0 and 1
    assert periods == [("aa", 0)] * 2 + [("zz", 0)] * 3 + [("zz", 1)] * 3

    # the broker takes aa's messages again: the next tick finishes its decision
    sink.on = False
    assert await runtime.flipper.tick() == 0  # a redo, not a new flip
    assert (await store.get_experiment("aa")).published_through(1)
