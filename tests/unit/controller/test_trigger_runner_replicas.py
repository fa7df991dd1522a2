"""The trigger runner with the replica barrier (``PRICELAB_REDIS__WAIT_REPLICAS``), its part:
each save is given a mark of its own, which its barriers read; an announcement is made only
once the replicas have its save (one try: else it is left to the flip at the window's
start); a batch returns (its offsets are then committed), and the next batch applies, only
once the replicas have its saves; a save a failover lost is applied again, in its place.
Without the setting nothing changes: no mark, no barrier. On real processes (sentinel, a
stopped replica, a failover):
tests/integration/test_redis_wait.py::test_a_trigger_fire_is_told_and_its_batch_committed_only_once_replicated."""

from __future__ import annotations

import asyncio
import re
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
    """A store that records each save's mark (``marks``) and gives its guard; ``lose()``
    forgets every save, as a failover to a replica that had none of them would."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = False
        self.marks: list[str] = []
        self.forgotten: list[Guard] = []

    async def save_trigger_state(self, exp_id: str, *args: Any, **kw: Any) -> TriggerSave:
        saved = await super().save_trigger_state(exp_id, *args, **kw)
        self.marks.append(kw["mark"])
        if not kw["mark"]:
            return saved
        return replace(saved, guard=("saved", {kw["mark"]: None}))

    def trigger_mark_guard(self, exp_id: str, mark: str) -> Guard:
        return "saved", {mark: None}

    async def forget_trigger_marks(self, guards: list[Guard]) -> None:
        self.forgotten += guards

    def lose(self) -> None:
        self.trigger_v, self.seq, self.fired, self.triggers = 0, 0, {}, {}
        self.log.append("lost")


class _Replicas:
    """The barriers: the next ``short`` one-try barriers fall short; ``lose`` makes the next
    wait find its save lost (``WriteLost``), the store forgetting it; ``gate``, when set,
    holds each wait until it is released."""

    def __init__(self, store: _Kept, waits: bool = True) -> None:
        self.store = store
        self.waits = waits
        self.short = 0
        self.lose = False
        self.gate: asyncio.Event | None = None
        self.asked: list[tuple[str, Guard | None]] = []

    async def replicated(self, what: str, guard: Guard | None = None) -> None:
        self.asked.append(("once", guard))
        if self.short:
            self.short -= 1
            raise ReplicasBehind("0 of the 1 replicas")

    async def replicated_at_last(self, what: str, guard: Guard | None = None) -> None:
        self.asked.append(("at last", guard))
        if self.gate is not None:
            await self.gate.wait()
        if self.lose:
            self.lose = False
            self.store.lose()
            raise WriteLost("the primary lacks it")


def _fires(product: str, minutes: int = 0) -> list[_Price]:
    at = T0 + timedelta(minutes=minutes)
    return [_Price(product, "x", 80.0, at), _Price(product, "x", 80.0, at + timedelta(seconds=1))]


def _runner(store: _Kept, replicas: _Replicas) -> TriggerRunner:
    sink = _Sink(store.log)
    sink.release.set()
    clock = ManualClock(T0 + timedelta(minutes=1))
    return TriggerRunner(store, sink, clock, replicas=replicas)  # type: ignore[arg-type]


def test_a_fire_is_announced_once_its_save_is_replicated_and_the_batch_returns_after() -> None:
    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        fires = await _runner(store, replicas).on_prices(_fires("a"))
        assert [f.product for f in fires] == ["a"]
        assert store.log == ["save 1 a", "publish 1 a", "published 1"]
        [mark] = store.marks
        # the batch's owner of the experiment's turn: a random name of this runner's, and a
        # count (the same on every try of the save)
        assert re.fullmatch(r"triggers-[0-9a-f]{16}-1", mark), mark
        # the save's mark read before the announcement (one try) and before the batch
        # returns (the two at once), then forgotten
        guard = ("saved", {mark: None})
        assert sorted(replicas.asked) == [("at last", guard), ("once", guard)]
        assert store.forgotten == [guard]

    asyncio.run(main())


def test_without_the_setting_no_mark_is_written_and_no_barrier_asked() -> None:
    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store, waits=False)
        fires = await _runner(store, replicas).on_prices(_fires("a"))
        assert [f.product for f in fires] == ["a"]
        assert store.log == ["save 1 a", "publish 1 a", "published 1"]
        assert store.marks == [""] and replicas.asked == [] and store.forgotten == []

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
        assert sorted(kind for kind, _ in replicas.asked) == ["at last", "once"]

    asyncio.run(main())


def test_a_batch_whose_save_a_failover_lost_is_applied_again_before_the_next_batch() -> None:
    """Two batches in flight: the first's save is lost in a failover while it waits for the
    replicas. The second applies only after the first was applied again (before, it applied
    at once, and the first's events, older, were then stale on the new primary: its fire was
    not made again)."""

    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        replicas.short, replicas.lose = 1, True
        replicas.gate = asyncio.Event()
        runner = _runner(store, replicas)
        first = asyncio.ensure_future(runner.on_prices(_fires("a")))
        await asyncio.sleep(0)  # the second is handed over after the first (call order)
        second = asyncio.ensure_future(runner.on_prices(_fires("b", minutes=1)))
        for _ in range(100):  # the first waits at its barrier (bounded: fails below if not)
            if sorted(kind for kind, _ in replicas.asked) == ["at last", "once"]:
                break
            await asyncio.sleep(0)
        assert sorted(kind for kind, _ in replicas.asked) == ["at last", "once"]
        assert store.log == ["save 1 a"]  # the second has not applied
        replicas.gate.set()
        assert [f.product for f in await first] == ["a"]
        assert [f.product for f in await second] == ["b"]
        # not told while the replica lacked it, lost with the primary, made again on the
        # new primary's state (under the same seq, never told before), then the second batch
        assert store.log == [
            "save 1 a", "lost", "save 1 a", "publish 1 a", "published 1",
            "save 2 b", "publish 2 b", "published 2",
        ]  # fmt: skip
        assert store.triggers.keys() == {"a", "b"}

    asyncio.run(main())


def test_the_timer_marks_its_saves_and_deletes_the_marks_once_a_tick() -> None:
    """The timer's saves are marked too (its announcements' barrier reads them), and every
    mark of the tick is deleted at its end, whether it fired or not (else the marks hash
    would grow by one a tick while the experiment runs)."""

    async def main() -> None:
        store = _Kept()
        replicas = _Replicas(store)
        sink = _Sink(store.log)
        sink.release.set()
        # the clock 10 minutes on: the timer's watermark (5 minutes behind) is past T0
        clock = ManualClock(T0 + timedelta(minutes=10))
        runner = TriggerRunner(store, sink, clock, replicas=replicas)  # type: ignore[arg-type]
        await runner.on_prices([_Price("a", "x", 80.0, T0)])  # a's undercut, due at once
        store.forgotten.clear()
        fires = await runner.advance()
        assert [f.product for f in fires] == ["a"]
        [mark] = store.marks[1:]
        assert store.forgotten == [("saved", {mark: None})]
        assert replicas.asked[-1] == ("once", ("saved", {mark: None}))  # its announcement's
        assert await runner.advance() == []  # nothing to fire: its mark deleted all the same
        assert store.forgotten[1:] == [("saved", {store.marks[-1]: None})]

    asyncio.run(main())
