"""A decision made while a triggered experiment has fires kept (issue #56, item 3), the
flipper's part: a new decision's design context holds the kept fires beside the triggers (a
redo's does not: its messages stay the ones it was decided with), and their ``triggered``
events are what a trigger save that carried them out would announce, in the order they
fired. The move itself (``lua/decide.lua``) runs on a real Redis in
tests/integration/test_kept_fires_commands.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from controller.clock import ManualClock
from controller.flipper import Flipper
from controller.settings import Settings
from controller.triggers import TriggerFire
from tests.unit.controller.test_trigger_runner_order import T0, _spec


class _Store:
    """The trigger reads a decision makes: b and c fired and were announced; d and a were
    kept (d fired first)."""

    async def triggers(self, exp_id: str) -> dict[str, int]:
        return {"b": 1, "c": 2}

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any]]:
        def fire(p: str, minutes: int, period: int) -> dict[str, Any]:
            at = T0 + timedelta(minutes=minutes)
            return TriggerFire(p, at, at, f"shop-{p}", period).to_dict()

        fired = {"b": fire("b", 1, 1), "c": fire("c", 2, 2), "a": fire("a", 9, 3)}
        fired["d"] = fire("d", 5, 3)
        return 7, {"watermark": None, "stale": 0, "fired": fired, "products": {}}


def _flipper() -> Flipper:
    return Flipper(_Store(), None, ManualClock(T0), Settings(), owner="w1")  # type: ignore[arg-type]


def test_a_new_decision_is_made_with_the_kept_fires_and_a_redo_without() -> None:
    async def go() -> None:
        f, spec = _flipper(), _spec()
        redo = await f._context(spec)
        assert redo is not None and dict(redo.triggers) == {"b": 1, "c": 2}
        new = await f._context(spec, kept={"d": 3, "a": 3})
        assert new is not None and dict(new.triggers) == {"b": 1, "c": 2, "d": 3, "a": 3}

    asyncio.run(go())


def test_the_kept_fires_taken_in_are_announced_in_the_order_they_fired() -> None:
    async def go() -> None:
        got = await _flipper()._kept_fired("trig", {"a": 3, "d": 3}, iter([40, 41]))
        assert got == [
            {
                "product": "d",
                "period": 3,
                "competitor": "shop-d",
                "fired_at": (T0 + timedelta(minutes=5)).isoformat(),
                "worker": "w1",
                "order": 40,
            },
            {
                "product": "a",
                "period": 3,
                "competitor": "shop-a",
                "fired_at": (T0 + timedelta(minutes=9)).isoformat(),
                "worker": "w1",
                "order": 41,
            },
        ]
        assert await _flipper()._kept_fired("trig", {}, iter([])) == []

    asyncio.run(go())


def test_without_wait_replicas_the_barrier_asks_redis_nothing() -> None:
    """``PRICELAB_REDIS__WAIT_REPLICAS`` unset (0), a decision, a creation and a reply are
    told as before: no barrier, no Redis call, nothing counted short."""

    class _Asked(_Store):
        asked: list[str] = []

        async def replicated(self, wait: Any, what: str, guard: Any) -> None:
            self.asked.append(what)

    class _Seen:
        short = 0

        def replicas_short(self) -> None:
            self.short += 1

    async def go() -> None:
        store, seen = _Asked(), _Seen()
        f = Flipper(store, None, ManualClock(T0), Settings(), seen, owner="w1")  # type: ignore[arg-type]
        assert Settings().redis.wait_replicas == 0  # the default: unset
        await f.replicated("x", ("k", {"seq": "1"}))
        await f.replicated_at_last("x")
        assert store.asked == [] and seen.short == 0
        # the same flipper with the setting does ask: the check above can fail
        f.settings = Settings(redis={"wait_replicas": 1})  # type: ignore[arg-type]
        await f.replicated("y")
        assert store.asked == ["y"]

    asyncio.run(go())


def test_with_wait_replicas_a_short_barrier_is_counted_and_raised() -> None:
    from controller.settings import RedisSettings
    from controller.store.panel import ReplicasBehind, ReplicaWait

    class _Short(_Store):
        asked: list[tuple[Any, ...]] = []

        async def replicated(self, wait: ReplicaWait, what: str, guard: Any) -> None:
            self.asked.append((wait, what, guard))
            raise ReplicasBehind("0 of the 1")

    class _Seen:
        short = 0

        def replicas_short(self) -> None:
            self.short += 1

    async def go() -> None:
        settings = Settings(redis=RedisSettings(wait_replicas=1, wait_timeout_ms=300))
        store, seen = _Short(), _Seen()
        f = Flipper(store, None, ManualClock(T0), settings, seen, owner="w1")  # type: ignore[arg-type]
        with pytest.raises(ReplicasBehind):
            await f.replicated("d", ("k", {"seq": "1"}))
        assert store.asked == [(ReplicaWait(1, 300), "d", ("k", {"seq": "1"}))]
        assert seen.short == 1

    asyncio.run(go())


def test_a_barrier_cut_by_a_lost_connection_waits_on_and_a_lost_write_ends_it() -> None:
    """A failover whose sentinels name the new primary only after redis-py's own retries gave
    up: the barrier is tried again in place, so the guard is read on the new primary (the
    write survived: it goes on; it did not: ``WriteLost``), rather than ending the tick (a
    redo would tell the decision without its ``flipped`` event) or the command (a whole
    retry would reply "already ...")."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from controller.settings import RedisSettings
    from controller.store.panel import ReplicaWait, WriteLost

    class _Cut(_Store):
        def __init__(self, answers: list[BaseException | None]) -> None:
            self.answers = answers

        async def replicated(self, wait: ReplicaWait, what: str, guard: Any) -> None:
            answer = self.answers.pop(0)
            if answer is not None:
                raise answer

    settings = Settings(redis=RedisSettings(wait_replicas=1, wait_timeout_ms=300))

    async def go() -> None:
        cut = _Cut([RedisConnectionError("closed"), None])
        f = Flipper(cut, None, ManualClock(T0), settings, owner="w1")  # type: ignore[arg-type]
        await f.replicated_at_last("d", ("k", {"seq": "1"}))
        assert cut.answers == []
        lost = _Cut([RedisConnectionError("closed"), WriteLost("lacks d"), None])
        f = Flipper(lost, None, ManualClock(T0), settings, owner="w1")  # type: ignore[arg-type]
        with pytest.raises(WriteLost):
            await f.replicated_at_last("d", ("k", {"seq": "1"}))
        assert lost.answers == [None]

    asyncio.run(go())
