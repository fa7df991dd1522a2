"""Triggered designs, live: competitor prices in, staggered starts out.

For every running experiment with a trigger rule, a :class:`~controller.triggers.TriggerTracker`
is fed the competitor-price events of its products. Its small state lives in Redis and is
saved optimistically (only if no other worker saved since this one read it; otherwise it
reloads and redoes the batch), so any number of workers may share the topic's partitions.
When a product's rule fires, its trigger period is recorded, and the product's assignment for
that period (and its matched control's) is published at once, with a new seq: an
*announcement*, whose ``period_start`` is the next boundary. Pricing systems learn the
decision at trigger time and apply it from its period's start (the assignment contract,
docs/operations.md); the flip at that boundary publishes it again with a later seq.

While a decision of the experiment is still to be published (the broker refuses its
messages, for a moment or for good), a batch's fires are *kept*: saved with its state, in
the same versioned save, and announced by the first save of the experiment once the
decision is out (the timer's, on every tick of every controller, or a later batch's), with
a later seq. The batch goes on, and so do the worker's later batches (issue #56, item 3). A
lifecycle decision made before that save (a pause, resume or stop) takes them in instead
(``lua/decide.lua``; controller/flipper.py announces their ``triggered`` events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from controller.blackout import freezes_of
from controller.clock import Clock
from controller.designs import Assignment, DesignContext, TriggerPlan, assign_products
from controller.in_force import AssignmentSink, in_force_one, mode_at
from controller.spec import ExperimentSpec
from controller.store import Store
from controller.store.base import UNAVAILABLE
from controller.store.panel import WriteLost
from controller.triggers import TriggerFire, TriggerTracker
from core import status

#: a replica barrier's guard: a hash and the fields a write left in it (None: present)
Guard = tuple[str, dict[str, str | None]]
#: a batch's fires in one experiment, their publish (to await after the turn) if any fired,
#: and what a replica barrier reads to know its save is there (None: nothing to keep)
_Applied = tuple[list[TriggerFire], Coroutine[Any, Any, None] | None, Guard | None]
#: ``_run_locked``: the timer's save was held back (a decision of the experiment is still to
#: be published, or a batch waits for the turn): nothing applied, a later tick fires
_PENDING: Any = object()

log = logging.getLogger("pricelab.controller")

T = TypeVar("T")


class PriceEvent(Protocol):
    product: str
    competitor: str
    price: float
    observed_at: datetime


class TriggerObserver(Protocol):
    """Where a batch's time goes (streams.worker.metrics.Metrics implements it).

    Stages, in seconds: ``turn_wait`` (handed over -> its turn taken: batches before it, the
    timer, a routes reload; measured once per experiment the batch touches, from the hand-over),
    ``apply`` (tracker, plan and assignments, CPU in the turn), ``save`` (the versioned Redis
    save), ``publish`` (fires published, acknowledged by the brokers), ``timer_turn`` (the
    timer's whole turn, which batches wait for). The same metric's ``commit`` stage (the offset
    commit after a batch) is reported by the consumer, not through this protocol."""

    def trigger_stage(self, stage: str, seconds: float) -> None: ...

    def trigger_fired(self, seconds: float, n: int) -> None:
        """``n`` fires published ``seconds`` after their batch was handed over."""
        ...

    def trigger_redis_retry(self) -> None:
        """A batch's Redis call failed (Redis down, restarting or loading) and is tried again."""
        ...

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        """A save kept ``kept`` fires of ``experiment`` (a decision of it still to publish), or
        carried ``released`` kept fires out (announced under its seq)."""
        ...


class Replicas(Protocol):
    """The replica barriers (``controller.flipper.Flipper``): ``replicated`` tries once and
    raises ``ReplicasBehind`` or ``WriteLost`` (outages, ``UNAVAILABLE``); ``replicated_at_last``
    waits in place while the replicas are short or Redis does not answer, and raises
    ``WriteLost`` when the guard says the write is gone (or Redis's own error, such as a
    missing permission)."""

    @property
    def waits(self) -> bool:
        """Whether the barriers wait at all (``PRICELAB_REDIS__WAIT_REPLICAS``)."""
        ...

    async def replicated(self, what: str, guard: Guard | None = None) -> None: ...

    async def replicated_at_last(self, what: str, guard: Guard | None = None) -> None: ...


class _NullObserver:
    def trigger_stage(self, stage: str, seconds: float) -> None:
        return None

    def trigger_fired(self, seconds: float, n: int) -> None:
        return None

    def trigger_redis_retry(self) -> None:
        return None

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        return None


@dataclass
class TriggerRunner:
    store: Store
    sink: AssignmentSink
    clock: Clock
    #: competitor events may arrive this late; older ones are stale (counted by the tracker)
    watermark_lag: timedelta = timedelta(minutes=5)
    observer: TriggerObserver = field(default_factory=_NullObserver)
    #: a batch that fires holds the experiment's turn until its announcement is out; a
    #: runner that dies holding it blocks the experiment's decisions this long (flip_lease)
    lease_ms: int = 30_000
    #: with ``PRICELAB_REDIS__WAIT_REPLICAS``: an announcement goes out only once the
    #: replicas have its save (its mark), and a batch returns (its offsets are committed),
    #: and the next applies, only once they have its saves (None: no barrier)
    replicas: Replicas | None = None
    _routes_version: int = -1
    _batches: int = 0  # each firing batch takes the turn under its own owner id
    _id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])  # this runner's, in them
    _routes: dict[str, str] = field(default_factory=dict)
    # experiment -> (state version, tracker, the plan of its fires) while no other worker wrote
    _cache: dict[str, tuple[int, TriggerTracker, TriggerPlan]] = field(default_factory=dict)
    _specs: dict[str, ExperimentSpec] = field(default_factory=dict)
    # batches and the timer of this process take turns here; the versioned save is for
    # other workers (racing it in-process would make batches redo each other's work)
    _turns: dict[str, asyncio.Lock] = field(default_factory=dict)
    # batches apply in the order they were handed over (trigger state is order-sensitive: an
    # event older than its product's last one is stale), while a batch's publish overlaps
    # the next batch's turn
    _order: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _load_routes(self, *, force: bool = False) -> None:
        """product -> id of the running triggered experiment holding it, as of now."""
        v = await self.store.version()
        if force or v != self._routes_version:
            routes: dict[str, str] = {}
            states = await self.store.experiments_unretired()
            for st in states:
                if st.status == status.RUNNING and st.spec.triggered is not None:
                    self._specs[st.spec.id] = st.spec
                    for p in st.spec.all_products():
                        routes[p] = st.spec.id
            # what it keeps of a retired experiment (controller.retirement) goes: it never
            # runs again, and a worker's memory must not grow with every experiment ever run
            live = {st.spec.id for st in states}
            for gone in (set(self._specs) | set(self._cache) | set(self._turns)) - live:
                self._specs.pop(gone, None)
                self._cache.pop(gone, None)
                turn = self._turns.get(gone)
                if turn is not None and not turn.locked():
                    del self._turns[gone]
            self._routes, self._routes_version = routes, v

    async def on_prices(self, events: Sequence[PriceEvent]) -> list[TriggerFire]:
        """Feed a batch of competitor prices; publish the starts they trigger. Returns the
        fires it carried out: its own, after the fires kept earlier that it carried out (each
        announced, unless the replicas lacked its save: then left to the flip at its window's
        start); not the ones it kept (a decision of their experiment still to be published).

        Batches are applied one at a time, in call order: call it before any other await of
        the batch's handler. The publish runs after the batch's turn, so it overlaps the next
        batch's (the consumer commits a batch's offsets only once this returned, i.e. after
        the state save and the publish). With the replica barrier
        (``PRICELAB_REDIS__WAIT_REPLICAS``) a batch returns only once the replicas have its
        saves, and the next batch applies only then (it does not overlap the publish): a
        save a failover lost is applied again, in its place in the order.

        The routes are this worker's copy. Each experiment's save checks, in the same script,
        that the experiment still runs (a pause or stop refuses it, and the routes are read
        again); events that routed nowhere are routed again if the experiments version moved
        since the routes were read (a new experiment may hold their products).
        """
        handed_over = time.perf_counter()
        if not self._waits():
            async with self._order:
                applied = await self._apply(events, handed_over)
            return await self._announce_all(applied, handed_over)
        # with the replica barrier a batch holds the order until the replicas have its saves:
        # a later batch saved first on a new primary would make a lost batch's events stale
        marks: list[Guard] = []  # of every pass: deleted once the batch is replicated
        async with self._order:
            while True:
                applied = await self._apply(events, handed_over)
                # its announcements go out meanwhile (each after its own barrier), so the
                # turns they hold are given back at once
                announcing = asyncio.ensure_future(self._announce_all(applied, handed_over))
                guards = [guard for _, _, guard in applied if guard is not None]
                marks += guards
                lost: WriteLost | None = None
                try:
                    await self._kept(guards)
                except WriteLost as exc:
                    lost = exc
                finally:
                    fires = await announcing
                if lost is None:
                    break
                # a failover promoted a replica without a save of this batch: its events are
                # applied again, on the state the new primary has (where a save that survived
                # makes them stale, and a product that fired does not fire again)
                log.warning("a competitor batch's save was lost (%s); applying it again", lost)
                self._cache.clear()
        await self._forget(marks)
        return fires

    async def _forget(self, marks: list[Guard]) -> None:
        """Delete the marks of saves whose barriers are done (one round trip); one left (Redis
        did not answer, a crash) goes with its hash, an hour after the experiment's last
        mark."""
        if marks:
            with contextlib.suppress(*UNAVAILABLE):
                await self.store.forget_trigger_marks(marks)

    def _waits(self) -> bool:
        return self.replicas is not None and self.replicas.waits

    async def _announce_all(self, applied: list[_Applied], handed_over: float) -> list[TriggerFire]:
        fires: list[TriggerFire] = []
        for got, publish, _ in applied:
            await self._announce_now(got, publish, handed_over)
            fires += got
        return fires

    async def _kept(self, guards: list[Guard]) -> None:
        """With the replica barrier: return once the replicas have each of the batch's saves
        (waited for in place while they are short, each known by its mark), so that its
        offsets are committed only then: a failover that lost a save would otherwise lose its
        fires and prices for good. ``WriteLost`` when the primary reached lacks one."""
        assert self.replicas is not None
        for guard in guards:
            await self.replicas.replicated_at_last("a competitor batch", guard)

    async def _announce_now(
        self,
        fires: list[TriggerFire],
        publish: Coroutine[Any, Any, None] | None,
        handed_over: float,
    ) -> None:
        if publish is None:
            return
        t = time.perf_counter()
        await publish
        done = time.perf_counter()
        self.observer.trigger_stage("publish", done - t)
        self.observer.trigger_fired(done - handed_over, len(fires))

    async def _redis(
        self,
        op: Callable[[], Awaitable[T]],
        what: str,
        before_retry: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``op()`` until Redis answers, backing off from 50 ms to 5 s.

        A Redis restart, failover or AOF load is transient: a batch that raised would make
        the worker exit unacknowledged (the consumer's rule), so one Redis restart could
        restart every controller. In a batch's turn it is retried in the order lock, so no
        later batch overtakes it. A retried save is safe: a failed call drops this worker's
        copy (``_run_locked``), so the retry reads the state again; a save that went through
        before its reply was lost bumped the version, so the retry applies its events to the
        saved state, where a fired product does not fire twice (its announcement is then the
        boundary flip's, as after a crash; an event of the batch older than one saved counts
        as stale once more, as after a crash's redelivery). ``before_retry`` runs once,
        before the first wait."""
        delay = 0.05
        while True:
            try:
                return await op()
            except UNAVAILABLE as exc:
                log.warning(
                    "redis unavailable during %s (%s: %s); retrying in %.2fs",
                    what, type(exc).__name__, exc, delay,
                )  # fmt: skip
                self.observer.trigger_redis_retry()
                if before_retry is not None:
                    await before_retry()
                    before_retry = None
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    def _owner(self) -> str:
        """A new owner id for the experiment's turn: one per batch and experiment, and no
        other process's (with the replica barrier, the mark of the batch's saves too)."""
        self._batches += 1
        return f"triggers-{self._id}-{self._batches}"

    async def _run_retried(
        self,
        exp_id: str,
        events: Sequence[PriceEvent],
        handed_over: float,
        announce_saved: Callable[[], Awaitable[None]],
    ) -> _Applied | None:
        """One experiment's part of a batch, retried while Redis does not answer.

        Every attempt saves under the same owner, so a save that took the turn before its
        reply was lost holds it for this batch, not for an owner nobody will end; if the last
        attempt announces nothing, the turn is given back. Before the first wait,
        ``announce_saved`` announces what the batch already saved."""
        owner = self._owner()
        attempts = 0

        async def attempt() -> _Applied | None:
            nonlocal attempts
            attempts += 1
            # the turn's wait is the batch's: measured on the first attempt only
            first = handed_over if attempts == 1 else None
            return await self._run(exp_id, events, advance=False, handed_over=first, owner=owner)

        got = await self._redis(attempt, f"the trigger save of {exp_id}", announce_saved)
        if attempts > 1 and (got is None or got[1] is None):
            await self._redis(
                partial(self.store.end_turn, exp_id, owner), "the turn's end", announce_saved
            )
        return got

    async def _apply(self, events: Sequence[PriceEvent], handed_over: float) -> list[_Applied]:
        out: list[_Applied] = []

        async def announce_saved() -> None:
            """Before a wait for Redis, the announcements of the experiments the batch already
            saved go out: held back behind a long outage, their turns' leases could run out
            (each announcement then checks nothing) and a later decision's ``seq`` reach the
            topic before theirs. One whose Redis calls fail is left out (``_publish``)."""
            for i, (fires, publish, guard) in enumerate(out):
                if publish is not None:
                    out[i] = (fires, None, guard)
                    await self._announce_now(fires, publish, handed_over)

        if self._routes_version < 0:
            await self._redis(self._load_routes, "the trigger routes read", announce_saved)
        todo = list(events)
        while todo:
            by_exp: dict[str, list[PriceEvent]] = defaultdict(list)
            for e in todo:
                exp = self._routes.get(e.product)
                if exp is not None:
                    by_exp[exp].append(e)
            applied: set[int] = set()  # ids of the events applied in this pass
            for exp, evs in by_exp.items():
                got = await self._run_retried(exp, evs, handed_over, announce_saved)
                if got is None:  # it no longer runs: route what is left again
                    await self._redis(
                        lambda: self._load_routes(force=True),
                        "the trigger routes read",
                        announce_saved,
                    )
                    break
                out.append(got)
                applied.update(id(e) for e in evs)
            else:
                # what is left routed nowhere: done, unless the experiments changed
                if len(applied) == len(todo) or (
                    await self._redis(
                        self.store.version, "the experiments version read", announce_saved
                    )
                    == self._routes_version
                ):
                    break
                await self._redis(self._load_routes, "the trigger routes read", announce_saved)
            todo = [e for e in todo if id(e) not in applied]
        return out

    async def advance(self) -> list[TriggerFire]:
        """Let sustained undercuts fire without a new event (called from the flip tick)."""
        await self._load_routes()
        fires: list[TriggerFire] = []
        marks: list[Guard] = []  # the saves' (with the replica barrier), deleted once a tick
        try:
            for exp in sorted(set(self._routes.values())):
                owner = self._owner()
                if self._waits():  # its save's mark, were a save's reply lost
                    marks.append(self.store.trigger_mark_guard(exp, owner))
                try:
                    got = await self._run(exp, [], advance=True, owner=owner)
                except UNAVAILABLE:
                    # a save Redis wrote before the reply was lost took the turn: give it back
                    # if Redis answers (else its lease ends it); the next tick tries again
                    with contextlib.suppress(*UNAVAILABLE):
                        await self.store.end_turn(exp, owner)
                    raise
                if got is None:  # the experiment changed, or a decision of it is to be
                    continue  # published (by the flip tick after this): the next tick sees it
                if got[1] is not None:
                    await got[1]
                fires += got[0]
        finally:
            await self._forget(marks)
        return fires

    async def _run(
        self,
        exp_id: str,
        events: Sequence[PriceEvent],
        *,
        advance: bool,
        owner: str,
        handed_over: float | None = None,
    ) -> _Applied | None:
        """Apply events (each fires its own product when due) and, on the timer, let time
        fire sustained undercuts that saw no new event (those due, from the tracker's heap).
        Returns the fires to announce (with the kept ones the save carried out) and their
        publish, to await after the turn (None when there is none); None, with nothing
        applied, when the experiments changed since the routes were read, or on the timer
        while its save is held back (a decision of the experiment is still to be published:
        the tick after it fires). A batch never waits for a decision: its fires are kept.

        Round trips per batch: the versioned save (with the sequence number), then publish.
        """
        turn = self._turns.get(exp_id)
        if turn is None:
            turn = self._turns[exp_id] = asyncio.Lock()
        async with turn:
            start = time.perf_counter()
            if handed_over is not None:
                self.observer.trigger_stage("turn_wait", start - handed_over)
            try:
                got = await self._run_locked(exp_id, events, advance=advance, owner=owner)
            finally:
                if advance:
                    self.observer.trigger_stage("timer_turn", time.perf_counter() - start)
        # a decision of the experiment is still to be published, which only a flip tick does,
        # and this worker's own tick runs after the timer's advance: the timer leaves its
        # fires to a later tick (and saves nothing: trigger_save.lua)
        return None if got is _PENDING else got

    async def _run_locked(
        self, exp_id: str, events: Sequence[PriceEvent], *, advance: bool, owner: str
    ) -> _Applied | None:
        spec = self._specs.get(exp_id)
        if spec is None:  # retired since its events were routed: the caller routes them again
            return None
        while True:
            version, tracker, plan = await self._tracker(exp_id, spec)
            t_apply = time.perf_counter()
            try:
                touched: set[str] = set()
                fires = []
                for e in sorted(events, key=lambda e: e.observed_at):
                    touched.add(e.product)
                    fire = tracker.observe_competitor(
                        e.product, e.competitor, e.price, e.observed_at
                    )
                    if fire is not None:
                        fires.append(fire)
                if advance:
                    await self.clock.sync()
                    fires += tracker.advance(self.clock.now() - self.watermark_lag)
                touched |= {f.product for f in fires}
                if fires:
                    plan.update({f.product: f.period for f in fires})
                t_save = time.perf_counter()
                # with the replica barrier, a name for this batch's save alone, which its
                # barriers read: its owner (the same on every try, so a save whose reply was
                # lost is found by it too)
                mark = owner if self._waits() else ""
                saved = await self.store.save_trigger_state(
                    exp_id,
                    version,
                    {
                        "watermark": tracker.watermark.isoformat() if tracker.watermark else None,
                        "stale": tracker.stale,
                    },
                    {p: tracker.product_state(p) for p in touched},
                    {f.product: f.to_dict() for f in fires},
                    {f.product: f.period for f in fires},
                    owner,
                    self.lease_ms,
                    timer=advance,
                    mark=mark,
                )
            except BaseException:
                self._cache.pop(exp_id, None)  # our copy may be ahead of Redis now
                raise
            t_saved = time.perf_counter()
            if not advance:  # the timer's turn is measured whole
                self.observer.trigger_stage("save", t_saved - t_save)
            if saved.version is not None:
                break
            # nothing written: our copy is ahead of Redis, which another worker wrote (redo
            # from its state), or the experiment stopped running (the caller routes again),
            # or its turn is another's (wait for its lease, then redo), or the timer is held
            # back (a decision of the experiment to publish, a batch waiting for the turn)
            self._cache.pop(exp_id, None)
            if not saved.code:
                return None
            if saved.code == 3:
                return _PENDING
            if saved.code == 2:
                await asyncio.sleep(0.01)  # polling a lease another process holds
        self._cache[exp_id] = (saved.version, tracker, plan)
        if saved.kept:
            # in Redis with the state: the first save once the decision is out announces them
            log.warning(
                "experiment %s: %d fire(s) kept until its decision is published (%s)",
                exp_id, len(fires), ",".join(f.product for f in fires),
            )  # fmt: skip
            self.observer.trigger_kept(exp_id, len(fires), 0)
            fires = []
        # the kept fires this save carried out (the tracker holds every fire it saved),
        # first: they fired before this batch's
        released = [tracker.fired[p] for p in saved.released if p in tracker.fired]
        if released:
            self.observer.trigger_kept(exp_id, 0, len(released))
        fires = sorted(released, key=lambda f: (f.fired_at, f.product)) + fires
        publish = None
        if fires and saved.seq is not None:
            out = self._assignments(spec, fires, plan)
            publish = self._publish(spec, fires, out, saved.seq, owner, saved.guard)
        elif saved.seq is not None:  # kept fires the state does not hold: a bug, not a wait
            log.error("experiment %s: kept fires %s not in its state", exp_id, saved.released)
            with contextlib.suppress(*UNAVAILABLE):  # else its lease ends it
                await self.store.end_turn(exp_id, owner)
        if not advance:  # CPU in the turn: before the save (tracker, plan), after (assignments)
            cpu = (t_save - t_apply) + (time.perf_counter() - t_saved)
            self.observer.trigger_stage("apply", cpu)
        return fires, publish, saved.guard

    async def _tracker(
        self, exp_id: str, spec: ExperimentSpec
    ) -> tuple[int, TriggerTracker, TriggerPlan]:
        """The experiment's state version, tracker and the trigger plan of its fires: this
        worker's copies while its saves succeed (the plan then grows with each fire)."""
        cached = self._cache.get(exp_id)
        if cached is not None:
            return cached
        version, raw = await self.store.trigger_state(exp_id)
        tracker = TriggerTracker(spec) if raw is None else TriggerTracker.from_state(spec, raw)
        rule = spec.triggered
        assert rule is not None
        # the saved state holds only products that saw an event: the others get the spec's
        # reference prices back (before, a restart or another worker's save lost them)
        tracker.seed_references(rule.reference_prices)
        plan = TriggerPlan(spec, tracker.triggers)
        self._cache[exp_id] = (version, tracker, plan)
        return version, tracker, plan

    @staticmethod
    def _assignments(
        spec: ExperimentSpec, fires: list[TriggerFire], plan: TriggerPlan
    ) -> list[Assignment]:
        """Each fired product's assignment, followed by its matched control's (held for the
        product's window and published with it); computed in the turn, from the plan as it is
        after these fires (later batches update it)."""
        cells: list[tuple[str, int]] = []
        for f in fires:
            cells.append((f.product, f.period))
            q = plan.matches.get(f.product)
            if q is not None and plan.windows[q].start == f.period:
                cells.append((q, f.period))
        return assign_products(spec, cells, DesignContext.of(plan))

    async def _publish(
        self,
        spec: ExperimentSpec,
        fires: list[TriggerFire],
        out: list[Assignment],
        seq: int,
        owner: str,
        guard: Guard | None = None,
    ) -> None:
        """Announce the fires, then give the experiment's turn back (taken by the save).

        Redis not answering here, or (with the replica barrier) the replicas lacking its
        sequence number, the announcement is left out, as after a crash: the fires are saved,
        and the flip at their window's first boundary publishes the same with a later
        ``seq``. Not retried: an announcement that waited out its turn's lease could reach
        the topic after a later decision's ``seq``. Nor told before the replicas have it: a
        failover would lose the ``seq`` after it was told, and the new primary give it to
        another decision. The turn is then given back if Redis answers, else its lease ends
        it."""
        try:
            if guard is not None and self.replicas is not None:
                # one try: a wait could outlast the turn's lease; the save's mark, which no
                # other save writes (a new primary without the save may have given ``seq``
                # to another decision meanwhile)
                what = f"experiment {spec.id}'s fires under seq {seq}"
                await self.replicas.replicated(what, guard)
            await self._announce(spec, fires, out, seq, owner)
        except UNAVAILABLE as exc:
            log.warning(
                "%d fires of %s not announced (seq %d): redis unavailable or its replicas "
                "short (%s: %s); left to the flip at their window's start",
                len(fires), spec.id, seq, type(exc).__name__, exc,
            )  # fmt: skip
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await self.store.end_turn(spec.id, owner)

    async def _announce(
        self,
        spec: ExperimentSpec,
        fires: list[TriggerFire],
        out: list[Assignment],
        seq: int,
        owner: str,
    ) -> None:
        exp_id = spec.id
        # a worker just started may announce before its first tick: a simulated clock is
        # read from the store, never assumed (it raised "not synced yet", and the worker
        # exited 75 without committing the batch: found by the model-based contract test).
        # Once it has been read, the announcement takes the time the worker's ticks keep
        # synced, as before: a read of the store on every fire added a Redis round trip to
        # each batch's publish (bench_trigger_latency: worker / relay p50 1.42-1.49x against
        # 1.13-1.39x before it)
        if not getattr(self.clock, "ready", False):  # SharedSimulatedClock.ready, a property
            await self.clock.sync()
        now = self.clock.now()
        # their places in the audit trail, taken in the experiment's turn (one call a batch)
        order = await self.store.next_trail(len(fires)) - len(fires) + 1 if fires else 0
        # events first, unflushed: the assignments' flush carries both
        for i, f in enumerate(fires):
            await self.sink.publish_event(
                exp_id,
                "triggered",
                now,
                {
                    "product": f.product,
                    "period": f.period,
                    "competitor": f.competitor,
                    "fired_at": f.fired_at.isoformat(),
                    "worker": owner,
                    "order": order + i,
                },
                flush=False,
            )
        # an announcement of the window's first period, in the mode it will start in: a
        # freeze that covers its start holds it on control (the flip at that boundary
        # publishes the same, with a later seq)
        freezes = freezes_of(await self.store.freezes())
        by_mode: dict[str, list[Assignment]] = defaultdict(list)
        for a in out:
            mode = mode_at(exp_id, a.period_start, freezes)
            by_mode[mode].append(in_force_one(spec, a, mode, freezes))
        for mode, assignments in sorted(by_mode.items()):
            await self.sink.publish_assignments(assignments, seq, mode)
