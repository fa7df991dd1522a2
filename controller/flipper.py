"""The period-boundary flip, pause/resume/stop (the kill switch), and catch-up after downtime.

``Flipper.tick()`` is idempotent: any number of workers may call it at any time (a worker's
own ticks, from its timer and its commands, run one at a time: they share its claims). For
each running experiment it works out the period in force *now* (catching up over any boundaries
missed while down, which it records), claims that flip in Redis (one winner; a dead
winner's claim expires and the next tick redoes it with the same sequence number), writes
the assignment records, publishes them, and only then marks the period flipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from controller.blackout import Freeze, apply_freezes, load_freeze
from controller.clock import Clock
from controller.designs import (
    Assignment,
    DesignContext,
    PeriodAssignments,
    forced_control,
    period_assignments,
)
from controller.periods import n_periods, period_index, period_start
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store, to_ms

log = logging.getLogger("pricelab.controller")


class AssignmentSink(Protocol):
    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None: ...

    async def publish_event(
        self,
        experiment: str,
        kind: str,
        at: datetime,
        detail: dict[str, object],
        *,
        flush: bool = True,
    ) -> None: ...


class FlipObserver(Protocol):
    def flipped(
        self, experiment: str, n: int, seconds: float, missed: int, lateness: float = 0.0
    ) -> None: ...

    def next_boundary(self, experiment: str, at: datetime | None) -> None:
        """The boundary the experiment's next flip is due at (None: no flip is due any more)."""
        ...


class _NullObserver:
    def flipped(
        self, experiment: str, n: int, seconds: float, missed: int, lateness: float = 0.0
    ) -> None:
        return None

    def next_boundary(self, experiment: str, at: datetime | None) -> None:
        return None


@dataclass
class Flipper:
    store: Store
    sink: AssignmentSink
    clock: Clock
    settings: Settings
    observer: FlipObserver = field(default_factory=_NullObserver)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: one tick at a time: a worker ticks from its flip timer and from commands (create,
    #: freeze), and two of its ticks at once share its flip claims (the same owner), so both
    #: would flip the boundary
    _ticking: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def tick(self) -> int:
        """Flip every experiment whose period in force has not been published. Returns flips done."""
        async with self._ticking:
            return await self._tick()

    async def _tick(self) -> int:
        await self.clock.sync()
        now = self.clock.now()
        freezes = await self._freezes()
        done = 0
        states = await self.store.experiments()
        if await self.store.reconcile(states):
            states = await self.store.experiments()
        for state in states:
            if state.status not in ("running", "paused"):
                self.observer.next_boundary(state.spec.id, None)
                continue
            if now >= state.spec.end:
                await self._end(state, now)
                self.observer.next_boundary(state.spec.id, None)
                continue
            spec = state.spec
            if now < spec.start:
                self.observer.next_boundary(spec.id, period_start(spec, 0))
                continue
            frozen = state.status == "running" and any(
                f.applies_to(spec.id) and f.covers(now) for f in freezes
            )
            flipped = await self._flip(state, now, freezes, frozen)
            done += flipped
            if frozen != state.frozen and state.status == "running":
                await self._refreeze(state, now, freezes, frozen)
            # the boundary after the last period flipped: a flip is overdue once it has passed
            last = period_index(spec, now) if flipped else state.flipped_period
            nxt = period_start(spec, last + 1)
            self.observer.next_boundary(spec.id, min(nxt, spec.end))
        return done

    async def _freezes(self) -> list[Freeze]:
        return [load_freeze(doc["freeze"]) for doc in await self.store.freezes() if "freeze" in doc]

    async def _records(
        self, spec: ExperimentSpec, k: int, freezes: list[Freeze]
    ) -> PeriodAssignments:
        """The design's assignments for period k, with triggers and operator freezes applied
        (freezes once per distinct assignment: they do not depend on the product)."""
        ctx = None
        if spec.triggered is not None:
            ctx = DesignContext(triggers=await self.store.triggers(spec.id))
        return period_assignments(spec, k, ctx).map(lambda a: apply_freezes(spec, a, freezes))

    async def _refreeze(
        self, state: ExperimentState, now: datetime, freezes: list[Freeze], frozen: bool
    ) -> None:
        """An operator freeze began or ended inside a period: republish the policy in force."""
        spec = state.spec
        k = period_index(spec, now)
        records = await self._records(spec, k, freezes)
        await self.store.write_assignments(spec.id, k, records)
        await self.store.set_frozen(spec.id, frozen)
        published = records.map(lambda a: forced_control(spec, a, "freeze")) if frozen else records
        status = "frozen" if frozen else "running"
        await self.sink.publish_assignments(published, await self.store.next_seq(spec.id), status)
        await self.sink.publish_event(spec.id, status if frozen else "unfrozen", now, {})

    async def freeze(self, freeze_id: str, doc: dict[str, object]) -> None:
        """Record an operator freeze (controller.blackout.Freeze): control policy and excluded
        data over [start, end), for all experiments or the listed ones."""
        freeze = load_freeze({"id": freeze_id, **doc})
        scope = None if freeze.experiments == "all" else list(freeze.experiments)
        await self.store.add_freeze(
            freeze.id,
            {
                "start_ms": to_ms(freeze.start),
                "end_ms": to_ms(freeze.end),
                "experiments": scope,
                "reason": freeze.reason or "operator freeze",
                "freeze": freeze.model_dump(mode="json"),
            },
        )
        await self.tick()

    async def _flip(
        self, state: ExperimentState, now: datetime, freezes: list[Freeze], frozen: bool
    ) -> int:
        spec = state.spec
        k = period_index(spec, now)
        if k <= state.flipped_period:
            return 0
        lease_ms = int(self.settings.flip_lease.total_seconds() * 1000)
        status, seq = await self.store.claim_flip(spec.id, k, self.owner, lease_ms)
        if status in ("busy", "done"):
            return 0
        t0 = time.perf_counter()
        missed = max(0, k - max(state.flipped_period, -1) - 1)
        records = await self._records(spec, k, freezes)
        status_out = state.status
        published = records
        if state.status == "paused":
            records = published = records.map(lambda a: forced_control(spec, a, "paused"))
        elif frozen:
            published = records.map(lambda a: forced_control(spec, a, "freeze"))
            status_out = "frozen"
        await self.store.write_assignments(spec.id, k, records)
        await self.store.set_frozen(spec.id, frozen)
        await self.sink.publish_assignments(published, seq, status_out)
        if missed:
            log.warning("experiment %s caught up over %d missed flip(s)", spec.id, missed)
            await self.sink.publish_event(
                spec.id,
                "missed_flips",
                now,
                {"missed": missed, "from_period": state.flipped_period, "to_period": k},
            )
        if not await self.store.complete_flip(spec.id, k, seq, missed, self.owner):
            return 0  # another worker completed it (our claim had lapsed): its flip, not ours
        lateness = (now - period_start(spec, k)).total_seconds()
        self.observer.flipped(spec.id, len(records), time.perf_counter() - t0, missed, lateness)
        return 1

    async def _end(self, state: ExperimentState, now: datetime) -> None:
        spec = state.spec
        last = n_periods(spec) - 1
        records = period_assignments(spec, last).map(lambda a: forced_control(spec, a, "ended"))
        await self.store.set_status(spec.id, "ended")
        await self.sink.publish_assignments(records, await self.store.next_seq(spec.id), "ended")
        await self.sink.publish_event(spec.id, "ended", now, {})
        await self.store.release_products(spec.id)

    # ------------------------------------------------------------------ operator actions
    async def create(self, spec: ExperimentSpec) -> None:
        await self.clock.sync()
        now = self.clock.now()
        lease_ms = int(self.settings.flip_lease.total_seconds() * 1000)
        await self.store.create_experiment(spec, now, lease_ms=lease_ms)
        await self.sink.publish_event(
            spec.id, "created", now, {"products": len(spec.all_products())}
        )
        await self.tick()

    async def pause(self, exp_id: str, reason: str = "paused") -> None:
        await self._to_control(exp_id, "paused", reason)

    async def stop(self, exp_id: str, reason: str = "stopped") -> None:
        await self._to_control(exp_id, "stopped", reason)

    async def resume(self, exp_id: str) -> None:
        await self.clock.sync()
        now = self.clock.now()
        state = await self.store.get_experiment(exp_id)
        if state.status != "paused":
            raise ValueError(f"experiment {exp_id!r} is {state.status}, not paused")
        await self.store.close_windows(exp_id, now)
        await self.store.set_status(exp_id, "running")
        k = period_index(state.spec, now)
        if 0 <= k < n_periods(state.spec):
            records = await self._records(state.spec, k, await self._freezes())
            await self.store.write_assignments(exp_id, k, records)
            await self.sink.publish_assignments(
                records, await self.store.next_seq(exp_id), "running"
            )
        await self.sink.publish_event(exp_id, "resumed", now, {})

    async def _to_control(self, exp_id: str, status: str, reason: str) -> None:
        """Kill switch: every product back to its control policy at once, data excluded."""
        await self.clock.sync()
        now = self.clock.now()
        state = await self.store.get_experiment(exp_id)
        if state.status == "creating":
            raise ValueError(f"experiment {exp_id!r} is still being created")
        spec = state.spec
        await self.store.open_window(exp_id, f"{status}-{uuid.uuid4().hex[:8]}", now, reason)
        await self.store.set_status(exp_id, status)
        k = min(max(period_index(spec, now), 0), n_periods(spec) - 1)
        records = period_assignments(spec, k).map(lambda a: forced_control(spec, a, status))
        await self.sink.publish_assignments(records, await self.store.next_seq(exp_id), status)
        await self.sink.publish_event(exp_id, status, now, {"reason": reason})
        if status == "stopped":  # after the publish: the claims already died with the status
            await self.store.release_products(exp_id)
