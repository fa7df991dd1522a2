"""Two trigger runners on one real Redis: the state save is optimistic (versioned, no lock),
so a runner whose copy is behind another's save redoes its batch from the saved state, and a
change of the experiments makes it route its events again. Each product fires once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from controller.clock import ManualClock
from controller.designs import Assignment
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store, make_redis
from controller.trigger_runner import TriggerRunner

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _spec(exp_id: str, products: list[str]) -> ExperimentSpec:
    return load_spec(
        dict(
            id=exp_id,
            design="triggered",
            products=products,
            treatment_policy="t",
            control_policy="c",
            start=(T0 - timedelta(days=1)).isoformat(),
            end=(T0 + timedelta(days=10)).isoformat(),
            period="PT6H",
            triggered={
                "undercut_pct": 10,
                "sustained_minutes": 0,
                "window_periods": 2,
                "reference_prices": {p: 100.0 for p in products},
            },
        )
    )


@dataclass
class _Price:
    product: str
    competitor: str
    price: float
    observed_at: datetime


class _Sink:
    def __init__(self) -> None:
        self.published: list[tuple[int, list[str]]] = []

    async def publish_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        self.published.append((seq, [a.product for a in assignments]))


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_runner_behind_another_save_redoes_its_batch(settings):
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("trig", ["a", "b", "c", "d"]), T0)
        sa, sb = _Sink(), _Sink()
        a = TriggerRunner(store, sa, ManualClock(T0))  # type: ignore[arg-type]
        b = TriggerRunner(store, sb, ManualClock(T0))  # type: ignore[arg-type]
        assert await a.on_prices([_Price("a", "x", 80.0, _at(0))]) == []  # undercut starts
        v1, _ = await store.trigger_state("trig")
        # b reads the state a saved and fires a (due at 0, time has moved past it)
        fired = await b.on_prices([_Price("a", "x", 80.0, _at(1))])
        assert [f.product for f in fired] == ["a"]
        # a's copy is behind b's save: its save is refused, it reloads and redoes the batch,
        # in which a has already fired and b's undercut starts
        assert (
            await a.on_prices([_Price("a", "x", 70.0, _at(2)), _Price("b", "x", 80, _at(2))]) == []
        )
        v, state = await store.trigger_state("trig")
        assert v == v1 + 2 and state is not None
        assert set(state["fired"]) == {"a"} and "b" in state["products"]
        assert await store.triggers("trig") == {"a": int(fired[0].period)}
        assert sa.published == [] and [p[0] for p in sb.published] == [1]

        # a new experiment moves the experiments version: a routes its events again (e now
        # belongs to the new experiment) and applies them
        await store.create_experiment(_spec("trig2", ["e", "f"]), T0)
        got = await a.on_prices([_Price("b", "x", 80.0, _at(3)), _Price("e", "x", 80.0, _at(3))])
        assert [f.product for f in got] == ["b"]
        _, state2 = await store.trigger_state("trig2")
        assert state2 is not None and "e" in state2["products"]
        got = await a.on_prices([_Price("e", "x", 80.0, _at(4))])
        assert [f.product for f in got] == ["e"] and await store.triggers("trig2") == {
            "e": got[0].period
        }
    finally:
        await redis.aclose()


async def test_no_fire_takes_a_sequence_number_once_the_experiment_is_stopped(settings):
    """A stop moves the experiment's own status before the catalog's version (two slots on a
    cluster): a runner that has not seen the version move yet must still be refused by the
    save's own check, so nothing is published after the stop's kill switch."""
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("stopme", ["a", "b"]), T0)
        sink = _Sink()
        runner = TriggerRunner(store, sink, ManualClock(T0))  # type: ignore[arg-type]
        assert await runner.on_prices([_Price("a", "x", 80.0, _at(0))]) == []  # undercut starts
        v_before, _ = await store.trigger_state("stopme")
        version = await store.version()
        seq_before = int(await redis.hget(f"{store.exp('stopme')}:state", "seq_counter") or 0)
        # the first step of set_status only: the experiment's state says stopped, the version
        # (which the runner's routes follow) has not moved yet
        await redis.hset(f"{store.exp('stopme')}:state", "status", "stopped")
        assert await store.version() == version
        # this event would fire a (its undercut is due): refused, routed again, dropped
        assert await runner.on_prices([_Price("a", "x", 80.0, _at(1))]) == []
        assert sink.published == []
        v_after, _ = await store.trigger_state("stopme")
        assert v_after == v_before  # nothing saved
        assert await store.triggers("stopme") == {}
        assert (
            int(await redis.hget(f"{store.exp('stopme')}:state", "seq_counter") or 0) == seq_before
        )
        # running again (a resume: both steps, the version moves): the same event fires
        await store.set_status("stopme", "running")
        fired = await runner.on_prices([_Price("a", "x", 80.0, _at(2))])
        assert [f.product for f in fired] == ["a"] and [p[1] for p in sink.published] == [["a"]]
    finally:
        await redis.aclose()


class _ReplyLost:
    """The real store, but the first save that fires is written to Redis and its reply then
    lost (the connection drops after Redis ran the script), as a Redis restart can do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lost: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_trigger_state(self, *args: Any, **kwargs: Any) -> Any:
        got = await self.store.save_trigger_state(*args, **kwargs)
        if not self.lost and got.seq is not None:  # it took a sequence number: it fired
            self.lost.append(got)
            raise RedisConnectionError("Connection lost (after the write)")
        return got


async def test_a_save_whose_reply_was_lost_is_retried_without_a_second_fire(settings):
    """The retry reads the saved state (version moved), fires nothing twice, takes no second
    sequence number, and gives back the turn the lost save took, so the experiment's flips
    are not held for the lease."""
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("lost", ["a", "b"]), T0)
        flaky, sink = _ReplyLost(store), _Sink()
        runner = TriggerRunner(flaky, sink, ManualClock(T0))  # type: ignore[arg-type]
        assert await runner.on_prices([_Price("a", "x", 80.0, _at(0))]) == []  # undercut starts
        state_key = f"{store.exp('lost')}:state"
        seq_before = int(await redis.hget(state_key, "seq_counter") or 0)
        v_before, _ = await store.trigger_state("lost")
        # a is due: the save fires it, Redis writes it, the reply is lost; the batch retries
        fired = await runner.on_prices([_Price("a", "x", 80.0, _at(1))])
        assert len(flaky.lost) == 1  # the fault happened: a save went through unanswered
        assert fired == []  # the retry found a fired in the saved state: no second fire
        assert sink.published == []  # its announcement is the boundary flip's (as after a crash)
        assert int(await redis.hget(state_key, "seq_counter") or 0) == seq_before + 1
        v_after, state = await store.trigger_state("lost")
        assert v_after == v_before + 2 and state is not None  # the lost save, then the retry's
        assert set(state["fired"]) == {"a"}
        assert set(await store.triggers("lost")) == {"a"}
        # the turn the lost save took is free again: a flipper takes it at once
        assert await store.take_turn("lost", "flipper-test", 30_000)
    finally:
        await redis.aclose()


async def test_every_batch_waiting_for_the_turn_holds_the_timers_until_it_has_saved(settings):
    """Issue #56, item 2, with two batches (on two workers) waiting to fire in one experiment
    while another holds its turn (a flip, another batch's announcement). The mark that holds
    every timer's save was one owner, the last batch refused: that batch's save cleared it
    while the other still waited, and a timer's watermark saved before the other's next try
    made its prices stale (its fire lost). Each waiting batch now holds the timers until its
    own save. (A batch no longer waits for a decision to be published: it keeps its fires.)"""
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("w", ["p", "q"]), T0)

        async def save(owner: str, fires: list[str], *, timer: bool = False) -> Any:
            version = await store.trigger_state_version("w")
            return await store.save_trigger_state(
                "w", version, {"watermark": None, "stale": 0}, {},
                {p: {"period": 1} for p in fires}, {p: 1 for p in fires}, owner, 30_000,
                timer=timer,
            )  # fmt: skip

        assert await store.take_turn("w", "flipper", 30_000)
        assert (await save("batch-a", ["p"])).code == 2  # both wait for the turn
        assert (await save("batch-b", ["q"])).code == 2
        await store.end_turn("w", "flipper")
        saved = await save("batch-b", ["q"])  # b's next try comes first, and fires
        assert saved.version is not None and saved.seq == 1
        await store.end_turn("w", "batch-b")  # b's announcement is out
        # a timer before a's next try saves nothing: a still waits
        assert (await save("timer-1", [], timer=True)).code == 3
        saved = await save("batch-a", ["p"])
        assert saved.version is not None and saved.seq == 2
        await store.end_turn("w", "batch-a")
        assert (await save("timer-2", [], timer=True)).version is not None  # free once a saved
    finally:
        await redis.aclose()


async def test_fires_kept_while_a_decision_waits_are_carried_out_once_after_it(settings):
    """Issue #56, item 3, the store's part. While a decision is to be published, a batch's
    fires are saved with its state but kept apart (not in the triggers hash the decision's
    redo reads), with no sequence number and no turn; the batch does not wait. The first save
    once the decision is out (here a timer's, with nothing of its own) moves them to the
    triggers hash under one new sequence number and the turn, and returns them; never twice."""
    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    try:
        await store.create_experiment(_spec("k", ["p", "q", "r"]), T0)
        state = f"{store.exp('k')}:state"
        await redis.hset(state, mapping={"seq": 1, "seq_counter": 1, "published": 0})

        async def save(owner: str, fires: list[str], *, timer: bool = False) -> Any:
            version = await store.trigger_state_version("k")
            return await store.save_trigger_state(
                "k", version, {"watermark": None, "stale": 0}, {},
                {p: {"product": p, "period": 2} for p in fires}, {p: 2 for p in fires},
                owner, 30_000, timer=timer,
            )  # fmt: skip

        kept = await save("batch-a", ["p"])
        assert kept.version is not None and kept.kept and kept.seq is None
        assert await store.triggers("k") == {}  # the redo's messages stay the decided ones
        assert await store.kept_triggers("k") == {"p": 2}
        assert await redis.get(f"{store.exp('k')}:turn") is None  # no turn taken
        _, saved = await store.trigger_state("k")
        assert saved is not None and set(saved["fired"]) == {"p"}  # with the state
        # another batch keeps its own, one that fires nothing saves: neither waits
        assert (await save("batch-b", ["q"])).kept
        quiet = await save("batch-c", [])
        assert quiet.version is not None and not quiet.kept and quiet.released == ()
        assert (await save("timer-1", [], timer=True)).code == 3  # held back meanwhile
        assert int(await redis.hget(state, "seq_counter")) == 1  # no number taken

        await store.mark_published("k", 1)  # the decision is out
        # while another holds the turn, the carrying out waits for it (a batch's mark)
        assert await store.take_turn("k", "flipper", 30_000)
        assert (await save("batch-d", [])).code == 2
        await store.end_turn("k", "flipper")
        assert (await save("timer-2", [], timer=True)).code == 3  # batch-d waits: held
        out = await save("batch-d", ["r"])  # carries them out with its own fire
        assert out.version is not None and out.seq == 2 and not out.kept
        assert sorted(out.released) == ["p", "q"]
        assert await store.triggers("k") == {"p": 2, "q": 2, "r": 2}
        assert await store.kept_triggers("k") == {}
        assert await redis.get(f"{store.exp('k')}:turn") == "batch-d"
        await store.end_turn("k", "batch-d")
        again = await save("timer-3", [], timer=True)  # once only
        assert again.version is not None and again.released == () and again.seq is None
        assert int(await redis.hget(state, "seq_counter")) == 2
    finally:
        await redis.aclose()


async def test_a_saves_mark_tells_it_from_a_later_save_and_is_written_only_when_given(settings):
    """The replica barrier's guard of a trigger save (PRICELAB_REDIS__WAIT_REPLICAS): the
    save's mark, which no later save rewrites. A later save of the same product leaves the
    first save's mark in place (its guard passes; a guard on the product's state as written
    would have failed: the state moved on), and a save never written is told by its mark
    (WriteLost). Without a mark the script is called as before marks: seven keys, no mark
    written."""
    from controller.store.panel import ReplicaWait, WriteLost

    redis = make_redis(settings)
    store = Store(redis, settings.key_prefix)
    monitor: list[Any] = []
    try:
        await store.create_experiment(_spec("m", ["p"]), T0)

        async def save(price: float, mark: str = "") -> Any:
            version = await store.trigger_state_version("m")
            return await store.save_trigger_state(
                "m", version, {"watermark": None, "stale": 0}, {"p": {"price": price}}, {}, {},
                "batch", 30_000, mark=mark,
            )  # fmt: skip

        none = ReplicaWait(0, 100)  # WAIT 0: no replica here; the guard's read is the test
        first = await save(90.0, "batch-1")
        assert first.guard == store.trigger_mark_guard("m", "batch-1")
        state_key = f"{store.exp('m')}:trigger_state"
        as_written = await redis.hget(state_key, "p:p")
        second = await save(91.0, "batch-2")  # the same product, rewritten
        assert await redis.hget(state_key, "p:p") != as_written
        await store.replicated(none, "the first save", first.guard)  # its mark is still there
        await store.replicated(none, "the second save", second.guard)
        with pytest.raises(WriteLost):
            await store.replicated(none, "no such save", store.trigger_mark_guard("m", "x"))
        await store.forget_trigger_marks([first.guard, second.guard])
        with pytest.raises(WriteLost):
            await store.replicated(none, "a forgotten mark", first.guard)
        # without a mark: the call before marks (seven keys), nothing written under marks
        marks = f"{store.exp('m')}:trigger_saved"
        assert await redis.ttl(marks) == -2  # gone with its last mark
        async with redis.monitor() as m:
            unmarked = await save(92.0)
            async for cmd in m.listen():
                if "EVALSHA" in cmd["command"].upper():
                    monitor.append(cmd["command"].split())
                    break
        assert unmarked.version is not None and unmarked.guard is None
        assert monitor[0][2] == "7", monitor  # EVALSHA sha numkeys ...
        assert not await redis.exists(marks)
    finally:
        await redis.aclose()
