"""Fires kept while a decision is to be published (issue #56, item 3), the runner's part: a
batch whose save keeps its fires announces nothing and returns at once; the save that carries
them out later announces them first, under its seq, with its own fires; the store's reply
is read into a :class:`TriggerSave`. The script itself runs on a real Redis in
tests/integration/test_trigger_store.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from controller.clock import ManualClock
from controller.store import TriggerSave
from controller.trigger_runner import TriggerRunner
from tests.unit.controller.test_trigger_runner_order import T0, _Price, _Sink, _spec, _Store


def test_the_scripts_reply_is_read_into_what_the_save_did() -> None:
    # nothing written: the code says why
    assert TriggerSave.of([-1, 7, 2]) == TriggerSave(None, code=2)
    assert TriggerSave.of([-1, 7, 0]) == TriggerSave(None, code=0)
    # written, nothing to announce
    assert TriggerSave.of([8, -1, 0]) == TriggerSave(8)
    # written, its fires kept
    assert TriggerSave.of([9, -1, 1]) == TriggerSave(9, kept=True)
    # written, a seq, and the kept fires it carried out
    assert TriggerSave.of([10, 4, 0, "b", "c"]) == TriggerSave(10, 4, released=("b", "c"))


class _Pending(_Store):
    """A store whose experiment has a decision to publish while ``pending``: a save that fires
    keeps its fires; once not pending, the next save carries them out under a new seq."""

    def __init__(self) -> None:
        super().__init__(_spec())
        self.slow_first = False
        self.pending = True
        self.kept: dict[str, int] = {}
        self.triggers: dict[str, int] = {}
        self.fired: dict[str, Any] = {}

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        """What the saves wrote of the fires (the runner reads it after a refused save)."""
        state = {"watermark": None, "stale": 0, "fired": dict(self.fired), "products": {}}
        return self.trigger_v, state

    async def save_trigger_state(
        self,
        exp_id: str,
        expected: int,
        meta: dict[str, Any],
        products: dict[str, Any],
        fired: dict[str, Any],
        triggers: dict[str, int],
        owner: str = "",
        lease_ms: int = 0,
        *,
        timer: bool = False,
        mark: str = "",
    ) -> TriggerSave:
        assert expected == self.trigger_v
        if timer and self.pending:
            return TriggerSave(None, code=3)
        self.trigger_v += 1
        self.fired |= fired
        if self.pending:
            self.kept |= triggers
            self.log.append("kept " + ",".join(sorted(triggers)))
            return TriggerSave(self.trigger_v, kept=bool(triggers))
        released = tuple(sorted(self.kept))
        self.triggers |= self.kept | triggers
        self.kept = {}
        if not (triggers or released):
            self.log.append("save")
            return TriggerSave(self.trigger_v)
        self.seq += 1
        self.log.append(f"save {self.seq} " + ",".join(sorted(triggers)))
        return TriggerSave(self.trigger_v, self.seq, released=released)


class _Counts:
    """The observer's kept and released counts (the worker's Prometheus counters)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def trigger_stage(self, stage: str, seconds: float) -> None:
        return None

    def trigger_fired(self, seconds: float, n: int) -> None:
        return None

    def trigger_redis_retry(self) -> None:
        return None

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        self.seen.append((experiment, kept, released))


def test_a_kept_fire_is_announced_first_by_the_save_that_carries_it_out() -> None:
    async def main() -> None:
        store = _Pending()
        sink = _Sink(store.log)
        sink.release.set()
        counts = _Counts()
        runner = TriggerRunner(store, sink, ManualClock(T0 + timedelta(minutes=1)), observer=counts)  # type: ignore[arg-type]
        # a's undercut is due (nothing to sustain, time moved past it): kept, not announced
        kept = await asyncio.wait_for(
            runner.on_prices(
                [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1))]
            ),
            5,
        )
        assert kept == [] and store.kept == {"a": runner._cache["trig"][1].fired["a"].period}
        assert await runner.advance() == []  # the timer's save is held back meanwhile
        assert store.log == ["kept a"]
        assert counts.seen == [("trig", 1, 0)]  # on-call sees the kept fire

        store.pending = False  # the decision is out
        # b fires in the next batch: a's kept fire goes out first, under the same seq
        fires = await runner.on_prices(
            [_Price("b", "x", 80.0, T0), _Price("b", "x", 80.0, T0 + timedelta(seconds=1))]
        )
        assert [f.product for f in fires] == ["a", "b"]
        assert store.log[1:] == ["save 1 b", "publish 1 a,b", "published 1"]
        assert counts.seen == [("trig", 1, 0), ("trig", 0, 1)]  # and its release, once
        assert set(store.triggers) == {"a", "b"}
        assert await runner.advance() == []  # nothing twice
        assert store.log[-1] == "save"

    asyncio.run(main())


def test_the_timer_carries_a_kept_fire_out() -> None:
    async def main() -> None:
        store = _Pending()
        sink = _Sink(store.log)
        sink.release.set()
        runner = TriggerRunner(store, sink, ManualClock(T0 + timedelta(minutes=1)))  # type: ignore[arg-type]
        prices = [_Price("c", "x", 80.0, T0), _Price("c", "x", 80.0, T0 + timedelta(seconds=1))]
        assert await runner.on_prices(prices) == []
        store.pending = False
        # the held-back timer dropped the runner's copy: it reads the fire from the state
        assert [f.product for f in await runner.advance()] == ["c"]
        assert store.log == ["kept c", "save 1 ", "publish 1 c", "published 1"]

    asyncio.run(main())
