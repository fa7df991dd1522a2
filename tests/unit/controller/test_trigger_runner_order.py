"""TriggerRunner with batches handled concurrently: they apply in call order (trigger state is
order-sensitive), a batch's publish overlaps the next batch's turn, and a batch returns only
after its own state save and publish (the consumer commits its offsets then)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from controller.clock import ManualClock
from controller.designs import Assignment
from controller.spec import ExperimentSpec, load_spec
from controller.store import ExperimentState, TriggerSave
from controller.trigger_runner import TriggerRunner
from tests.unit._none_retired import NoneRetired

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _spec() -> ExperimentSpec:
    return load_spec(
        dict(
            id="trig",
            design="triggered",
            products=["a", "b", "c", "d"],
            treatment_policy="t",
            control_policy="c",
            start=(T0 - timedelta(days=1)).isoformat(),
            end=(T0 + timedelta(days=10)).isoformat(),
            period="PT6H",
            triggered={
                "undercut_pct": 10,
                "sustained_minutes": 0,
                "window_periods": 2,
                "reference_prices": {p: 100.0 for p in "abcd"},
            },
        )
    )


@dataclass
class _Price:
    product: str
    competitor: str
    price: float
    observed_at: datetime


async def _until(pred: Any, timeout: float = 5.0) -> None:
    """Yield to the loop until ``pred()`` holds (fail after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.001)


class _Store(NoneRetired):
    """Just what the runner calls; the first routes read is slow, and the log records the
    order of the saves."""

    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self.log: list[str] = []
        self.trigger_v = 0
        self.seq = 0
        self.slow_first = True

    async def version(self) -> int:
        if self.slow_first:
            self.slow_first = False
            await asyncio.sleep(0.05)
        return 1

    async def experiments(self) -> list[ExperimentState]:
        return [ExperimentState(self.spec, "running", -1, 0, 0, 0)]

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        return self.trigger_v, None

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def end_turn(self, exp_id: str, owner: str) -> None:
        return None

    async def next_trail(self, n: int = 1) -> int:
        self.trail = getattr(self, "trail", 0) + n
        return self.trail

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
        self.log.append("save " + ",".join(sorted(products)))
        self.trigger_v += 1
        if triggers:
            self.seq += 1
        return TriggerSave(self.trigger_v, self.seq if triggers else None)


class _Sink:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.release = asyncio.Event()

    async def publish_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        self.log.append(f"publish {seq} " + ",".join(a.product for a in assignments))
        await self.release.wait()
        self.log.append(f"published {seq}")


def test_batches_apply_in_call_order_and_publish_overlaps_the_next_turn() -> None:
    async def main() -> None:
        spec = _spec()
        store = _Store(spec)
        sink = _Sink(store.log)
        runner = TriggerRunner(store, sink, ManualClock(T0))  # type: ignore[arg-type]
        # a fires at once (undercut 20%, nothing to sustain: due once time moves past T0);
        # the second batch's later event of a makes it due, b is quiet
        first = asyncio.ensure_future(runner.on_prices([_Price("a", "x", 80.0, T0)]))
        second = asyncio.ensure_future(
            runner.on_prices(
                [_Price("a", "x", 80.0, T0 + timedelta(seconds=1)), _Price("b", "x", 99.0, T0)]
            )
        )
        await _until(lambda: first.done() and len(store.log) >= 3)
        # the first batch's slow routes read did not let the second overtake it (its event
        # of a would then have made the first's stale); the second publishes a's start
        assert store.log[:2] == ["save a", "save a,b"]
        assert store.log[2].startswith("publish 1 a")
        assert first.done() and not second.done()  # returns only after its publish
        # a third batch takes its turn while the second's publish is still in flight
        third = asyncio.ensure_future(runner.on_prices([_Price("c", "x", 99.0, T0)]))
        await _until(third.done)
        assert store.log[3:] == ["save c"] and not second.done()
        sink.release.set()
        fires = await second
        assert [f.product for f in fires] == ["a"] and store.log[-1] == "published 1"
        assert await first == []
        tracker = runner._cache["trig"][1]
        assert tracker.stale == 0  # the second batch's events were not older than the first's

    asyncio.run(main())


class _Stages:
    """Records what the runner tells its observer."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []
        self.fired: list[tuple[float, int]] = []

    def trigger_stage(self, stage: str, seconds: float) -> None:
        self.stages.append((stage, seconds))

    def trigger_fired(self, seconds: float, n: int) -> None:
        self.fired.append((seconds, n))

    def named(self, stage: str) -> list[float]:
        return [s for name, s in self.stages if name == stage]


def test_the_observer_sees_where_a_batch_spends_its_time() -> None:
    async def main() -> None:
        spec = _spec()
        store = _Store(spec)  # its first routes read takes 50 ms
        sink = _Sink(store.log)
        seen = _Stages()
        runner = TriggerRunner(store, sink, ManualClock(T0), observer=seen)  # type: ignore[arg-type]
        quiet = asyncio.ensure_future(runner.on_prices([_Price("b", "x", 99.0, T0)]))
        firing = asyncio.ensure_future(
            runner.on_prices(
                [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1))]
            )
        )
        assert await quiet == []
        await _until(lambda: any(e.startswith("publish ") for e in store.log))
        # the broker takes its time to acknowledge the publish: simulated latency that the
        # publish stage must measure (not a synchronisation)
        await asyncio.sleep(0.05)
        sink.release.set()
        assert [f.product for f in await firing] == ["a"]
        # each batch: its wait for the turn, CPU and save; only the firing one publishes
        assert len(seen.named("turn_wait")) == len(seen.named("apply")) == 2
        assert len(seen.named("save")) == 2 and len(seen.named("publish")) == 1
        # the first batch waited for the routes read, the second for the first batch
        assert all(w >= 0.04 for w in seen.named("turn_wait"))
        assert seen.named("publish")[0] >= 0.04
        # one fire, published after its batch's wait, turn and publish
        ((latency, n),) = seen.fired
        assert n == 1 and latency >= seen.named("turn_wait")[1] + seen.named("publish")[0]
        # the timer's turn is measured whole, not as a batch's stages
        sink.release.set()
        before = len(seen.stages)
        await runner.advance()
        assert [name for name, _ in seen.stages[before:]] == ["timer_turn"]

    asyncio.run(main())


class _Flaky(_Store):
    """Redis goes away under the first batch: its first state read finds Redis loading its
    AOF, its first save loses the connection (before the write: nothing saved)."""

    def __init__(self, spec: ExperimentSpec) -> None:
        super().__init__(spec)
        self.slow_first = False
        self.faults = [BusyLoadingError("Redis is loading the dataset in memory")]
        self.save_faults = [RedisConnectionError("Connection lost")]
        self.raised: list[str] = []

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        if self.faults:
            self.raised.append(type(self.faults[0]).__name__)
            raise self.faults.pop()
        return await super().trigger_state(exp_id)

    async def save_trigger_state(self, *args: Any, **kwargs: Any) -> TriggerSave:
        if self.save_faults:
            self.raised.append(type(self.save_faults[0]).__name__)
            raise self.save_faults.pop()
        return await super().save_trigger_state(*args, **kwargs)


class _Retries(_Stages):
    def __init__(self) -> None:
        super().__init__()
        self.retries = 0

    def trigger_redis_retry(self) -> None:
        self.retries += 1


def test_a_redis_outage_under_a_batch_is_retried_in_its_turn() -> None:
    """The soak's Redis restart made a controller exit (status 75) when a competitor batch met
    it: the batch raised, where sales batches retry. Now the batch retries in its turn, and
    the batch queued behind it does not overtake it."""

    async def main() -> None:
        spec = _spec()
        store = _Flaky(spec)
        sink = _Sink(store.log)
        sink.release.set()
        seen = _Retries()
        runner = TriggerRunner(store, sink, ManualClock(T0), observer=seen)  # type: ignore[arg-type]
        first = asyncio.ensure_future(runner.on_prices([_Price("a", "x", 80.0, T0)]))
        second = asyncio.ensure_future(
            runner.on_prices(
                [_Price("a", "x", 80.0, T0 + timedelta(seconds=1)), _Price("b", "x", 99.0, T0)]
            )
        )
        assert await first == []
        assert [f.product for f in await second] == ["a"]
        # both faults happened, each was retried, and the batches saved in call order
        assert store.raised == ["BusyLoadingError", "ConnectionError"]
        assert seen.retries == 2
        assert store.log == ["save a", "save a,b", "publish 1 a", "published 1"]
        assert runner._cache["trig"][1].stale == 0

    asyncio.run(main())


def test_an_error_that_is_not_an_outage_still_raises() -> None:
    async def main() -> None:
        spec = _spec()
        store = _Flaky(spec)
        store.faults = [ValueError("a bug")]
        runner = TriggerRunner(store, _Sink(store.log), ManualClock(T0))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="a bug"):
            await runner.on_prices([_Price("a", "x", 80.0, T0)])

    asyncio.run(main())


class _TwoExperiments(_Store):
    """Two triggered experiments; the second's first save loses its connection."""

    def __init__(self) -> None:
        super().__init__(_spec())
        self.slow_first = False
        other = _spec().model_copy(update={"id": "trig2"})
        self.specs = {"trig": self.spec, "trig2": other}
        self.versions = {"trig": 0, "trig2": 0}
        self.save_faults = {"trig2": RedisConnectionError("Connection lost")}

    async def experiments(self) -> list[ExperimentState]:
        return [ExperimentState(s, "running", -1, 0, 0, 0) for s in self.specs.values()]

    async def trigger_state(self, exp_id: str) -> tuple[int, dict[str, Any] | None]:
        return self.versions[exp_id], None

    async def save_trigger_state(self, exp_id: str, expected: int, *args: Any, **kw: Any) -> Any:
        fault = self.save_faults.pop(exp_id, None)
        if fault is not None:
            self.log.append(f"lost {exp_id}")
            raise fault
        assert expected == self.versions[exp_id]
        self.versions[exp_id] += 1
        fired = bool(args[3])
        self.log.append(f"save {exp_id}")
        if fired:
            self.seq += 1
        return TriggerSave(self.versions[exp_id], self.seq if fired else None)


def test_a_retry_first_announces_what_the_batch_already_saved() -> None:
    """Held back behind an outage, a saved fire's announcement could outlive its turn's lease
    and reach the topic after a later decision's seq: it goes out before the retry waits."""

    async def main() -> None:
        store = _TwoExperiments()
        trig2 = store.specs["trig2"]
        assert trig2.triggered is not None and set(trig2.all_products()) == set("abcd")
        # the same products in both specs would route to one: give trig2 its own
        store.specs["trig2"] = trig2.model_copy(update={"products": ("e", "f", "g", "h")})
        sink = _Sink(store.log)
        sink.release.set()
        runner = TriggerRunner(store, sink, ManualClock(T0), observer=_Retries())  # type: ignore[arg-type]
        # a of trig fires (due at T0, time past it); e of trig2 is quiet
        got = await runner.on_prices(
            [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1)),
             _Price("e", "x", 99.0, T0)]
        )  # fmt: skip
        assert [f.product for f in got] == ["a"]
        assert store.log == ["save trig", "lost trig2", "publish 1 a", "published 1", "save trig2"]

    asyncio.run(main())


class _TrailDown(_Store):
    """Redis goes away after the save that fires, before the announcement takes its places in
    the audit trail."""

    def __init__(self, spec: ExperimentSpec) -> None:
        super().__init__(spec)
        self.slow_first = False
        self.ended: list[str] = []

    async def next_trail(self, n: int = 1) -> int:
        self.log.append("trail lost")
        raise RedisConnectionError("Connection lost")

    async def end_turn(self, exp_id: str, owner: str) -> None:
        self.ended.append(owner)


def test_an_announcement_that_meets_an_outage_is_left_to_the_flip_not_retried() -> None:
    """Retried past its turn's lease, an announcement could reach the topic after a later
    decision's seq; left out, the fire is saved and its window's first flip publishes it."""

    async def main() -> None:
        store = _TrailDown(_spec())
        sink = _Sink(store.log)
        sink.release.set()
        runner = TriggerRunner(store, sink, ManualClock(T0))  # type: ignore[arg-type]
        got = await runner.on_prices(
            [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1))]
        )
        assert [f.product for f in got] == ["a"]  # fired and saved: the batch did not raise
        assert store.log == ["save a", "trail lost"]  # the fault happened; nothing published
        assert len(store.ended) == 1  # and the turn was given back

    asyncio.run(main())


class _Unsynced(ManualClock):
    """A simulated clock as a worker just started holds it: read from the store on
    ``sync()``, and ``now()`` refused until then."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.synced = False

    async def sync(self) -> None:
        self.synced = True

    def now(self) -> datetime:
        if not self.synced:
            raise RuntimeError("simulated clock not synced yet: the driver has not set it")
        return super().now()


def test_a_worker_just_started_announces_a_fire_by_the_clock_it_syncs() -> None:
    """A controller restarted after kill -9 got a competitor batch that fired before its
    first tick: the announcement read the simulated clock unsynced, raised, and the worker
    exited without committing the batch (the model-based contract test found it)."""

    async def main() -> None:
        store = _Store(_spec())
        store.slow_first = False
        sink = _Sink(store.log)
        sink.release.set()
        clock = _Unsynced(T0 + timedelta(minutes=1))
        runner = TriggerRunner(store, sink, clock)  # type: ignore[arg-type]
        fires = await runner.on_prices(
            [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1))]
        )
        assert [f.product for f in fires] == ["a"]
        assert store.log == ["save a", "publish 1 a", "published 1"]
        assert clock.synced

    asyncio.run(main())


class _Shared(_Unsynced):
    """A clock that says whether it has been read (as ``SharedSimulatedClock.ready``), and
    counts its reads of the store."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.reads = 0

    @property
    def ready(self) -> bool:  # a property, as SharedSimulatedClock's
        return self.synced

    async def sync(self) -> None:
        self.reads += 1
        await super().sync()


def test_an_announcement_reads_a_shared_clock_only_while_it_has_never_been_read() -> None:
    """The announcement syncs a shared simulated clock that was never read (a worker just
    started), and not one its ticks keep synced: a read of the store on every fire would add
    a Redis round trip to each firing batch."""

    from controller.store.clock import SharedSimulatedClock

    # the stand-in's ready is what the real clock's is (a property: read, not called)
    assert isinstance(vars(SharedSimulatedClock)["ready"], property)

    async def main() -> None:
        for ticked in (False, True):
            store = _Store(_spec())
            store.slow_first = False
            sink = _Sink(store.log)
            sink.release.set()
            clock = _Shared(T0 + timedelta(minutes=1))
            if ticked:
                await clock.sync()  # the worker's tick has read it
            runner = TriggerRunner(store, sink, clock)  # type: ignore[arg-type]
            fires = await runner.on_prices(
                [_Price("a", "x", 80.0, T0), _Price("a", "x", 80.0, T0 + timedelta(seconds=1))]
            )
            assert [f.product for f in fires] == ["a"]
            assert clock.reads == 1, (ticked, clock.reads)  # one read, whoever made it

    asyncio.run(main())
