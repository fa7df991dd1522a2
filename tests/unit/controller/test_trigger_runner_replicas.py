"""The trigger runner with the replica barrier (``PRICELAB_REDIS__WAIT_REPLICAS``), its part:
an announcement is made only once the replicas have its sequence number (one try: else it
is left to the flip at the window's start), and a batch returns (its offsets are then
committed) only once the replicas have its saves; a save a failover lost is applied again.
On real processes (sentinel, a stopped replica, a failover):
tests/integration/test_redis_wait.py::test_a_trigger_fire_is_told_and_its_batch_committed_only_once_replicated."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from controller.clock import ManualClock
from controller.store import TriggerSave
from controller.store.panel import ReplicasBehind, WriteLost
from controller.trigger_runner import Guard, TriggerRunner
from tests.unit.controller.test_trigger_runner_kept import _Pending
from tests.unit.controller.test_trigger_runner_order import T0, _Price, _Sink


class _Kept(_Pending):
    """A store whose saves say what they wrote (their guard); ``lose()`` forgets every save,
    as a failover to a replica that had none of them would."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = False

    async def save_trigger_state(self, exp_id: str, *args: Any, **kw: Any) -> TriggerSave:
        saved = await super().save_trigger_state(exp_id, *args, **kw)
        return replace(saved, guard=("state", {"v": str(saved.version)}))

    def seq_guard(self, exp_id: str, seq: int) -> Guard:
        return "exp", {"seq_counter": str(seq)}

    def lose(self) -> None:
        self.trigger_v, self.seq, self.fired, self.triggers = 0, 0, {}, {}
        self.log.append("lost")


class _Replicas:
    """The barriers: the next ``short`` one-try barriers fall short; ``lose`` makes the next
    wait find its save lost (``WriteLost``), the store forgetting it."""

    def __init__(self, store: _Kept) -> None:
        self.store = store
        self.short = 0
        self.lose = False
        self.asked: list[tuple[str, Guard | None]] = []

    async def replicated(self, what: str, guard: Guard | None = None) -> None:
        self.asked.append(("once", guard))
        if self.short:
            self.short -= 1
            raise ReplicasBehind("0 of the 1 replicas")

    async def replicated_at_last(self, what: str, guard: Guard | None = None) -> None:
        self.asked.append(("at last", guard))
        if self.lose:
            self.lose = False
            self.store.lose()
            raise WriteLost("the primary lacks it")


def _fires(product: str) -> list[_Price]:
    return [_Price(product, "x", 80.0, T0), _Price(product, "x", 80.0, T0 + timedelta(seconds=1))]


def _runner(store: _Kept, replicas: _Replicas) -> TriggerRunner:
    sink = _Sink(store.log)
    sink.release.set()
    clock = ManualClock(T0 + timedelta(minutes=1))
    return TriggerRunner(store, sink, clock, replicas=replicas)  # type: ignore[arg-type]


def test_a_fire_is_announced_once_its_seq_is_replicated_and_the_batch_returns_once_saved() -> None:
    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        fires = await _runner(store, replicas).on_prices(_fires("a"))
        assert [f.product for f in fires] == ["a"]
        assert store.log == ["save 1 a", "publish 1 a", "published 1"]
        # the seq before the announcement (one try), the save before the batch returns
        assert replicas.asked == [
            ("once", ("exp", {"seq_counter": "1"})),
            ("at last", ("state", {"v": "1"})),
        ]

    asyncio.run(main())


def test_with_the_replicas_short_the_announcement_is_left_to_the_flip() -> None:
    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        replicas.short = 1
        fires = await _runner(store, replicas).on_prices(_fires("a"))
        # saved (the flip at the window's start publishes it), never told under its seq
        assert [f.product for f in fires] == ["a"] and store.triggers.keys() == {"a"}
        assert store.log == ["save 1 a"]
        assert replicas.asked[-1] == ("at last", ("state", {"v": "1"}))

    asyncio.run(main())


def test_a_batch_whose_save_a_failover_lost_is_applied_again() -> None:
    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        replicas.short, replicas.lose = 1, True
        fires = await _runner(store, replicas).on_prices(_fires("a"))
        # not told while the replica lacked it, lost with the primary, and made again on the
        # state the new primary has: a new save under the same seq (never told before), fire
        # and announcement, once
        assert [f.product for f in fires] == ["a"] and store.triggers.keys() == {"a"}
        assert store.log == ["save 1 a", "lost", "save 1 a", "publish 1 a", "published 1"]
        assert [kind for kind, _ in replicas.asked] == ["once", "at last", "once", "at last"]

    asyncio.run(main())
