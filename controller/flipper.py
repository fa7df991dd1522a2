"""The period-boundary flip, pause/resume/stop (the kill switch), and catch-up after downtime.

``Flipper.tick()`` is idempotent: any number of workers may call it at any time. For each
running experiment it works out the period in force *now* (catching up over any boundaries
missed while down, which it records), claims that flip in Redis (one winner; a dead
winner's claim expires and the next tick redoes it with the same sequence number), writes
the assignment records, publishes them, and only then marks the period flipped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from controller.clock import Clock
from controller.designs import Assignment, assign_period, forced_control
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
        self, experiment: str, kind: str, at: datetime, detail: dict[str, object]
    ) -> None: ...


class FlipObserver(Protocol):
    def flipped(
        self, experiment: str, n: int, seconds: float, missed: int, lateness: float = 0.0
    ) -> None: ...


class _NullObserver:
    def flipped(
        self, experiment: str, n: int, seconds: float, missed: int, lateness: float = 0.0
    ) -> None:
        return None


@dataclass
class Flipper:
    store: Store
    sink: AssignmentSink
    clock: Clock
    settings: Settings
    observer: FlipObserver = field(default_factory=_NullObserver)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    async def tick(self) -> int:
        """Flip every experiment whose period in force has not been published. Returns flips done."""
        await self.clock.sync()
        now = self.clock.now()
        freezes = await self.store.freezes()
        done = 0
        for state in await self.store.experiments():
            if state.status not in ("running", "paused"):
                continue
            if now >= state.spec.end:
                await self._end(state, now)
                continue
            if now < state.spec.start:
                continue
            frozen = state.status == "running" and _frozen(state.spec.id, freezes, now)
            done += await self._flip(state, now, frozen)
            if frozen != state.frozen and state.status == "running":
                await self._refreeze(state, now, frozen)
        return done

    async def _refreeze(self, state: ExperimentState, now: datetime, frozen: bool) -> None:
        """An operator freeze began or ended: republish the period in force."""
        spec = state.spec
        k = period_index(spec, now)
        records = assign_period(spec, k)
        if frozen:
            records = [forced_control(spec, a, "freeze") for a in records]
        await self.store.write_assignments(spec.id, k, records)
        await self.store.set_frozen(spec.id, frozen)
        status = "frozen" if frozen else "running"
        await self.sink.publish_assignments(records, await self.store.next_seq(spec.id), status)
        await self.sink.publish_event(spec.id, "frozen" if frozen else "unfrozen", now, {})

    async def freeze(self, freeze_id: str, doc: dict[str, object]) -> None:
        """Record an operator freeze: control policy and excluded data over [start, end)."""
        start = _instant(doc.get("start"), "freeze.start")
        end = _instant(doc.get("end"), "freeze.end")
        if end <= start:
            raise ValueError("freeze.end: must be after freeze.start")
        scope = doc.get("experiments")
        if scope is not None and not (
            isinstance(scope, list) and all(isinstance(x, str) for x in scope)
        ):
            raise ValueError(
                "freeze.experiments: must be a list of experiment ids, or absent for all"
            )
        await self.store.add_freeze(
            freeze_id,
            {
                "start_ms": to_ms(start),
                "end_ms": to_ms(end),
                "experiments": scope,
                "reason": str(doc.get("reason") or "operator freeze"),
            },
        )
        await self.tick()

    async def _flip(self, state: ExperimentState, now: datetime, frozen: bool = False) -> int:
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
        records = assign_period(spec, k)
        status_out = state.status
        if state.status == "paused":
            records = [forced_control(spec, a, "paused") for a in records]
        elif frozen:
            records = [forced_control(spec, a, "freeze") for a in records]
            status_out = "frozen"
        await self.store.write_assignments(spec.id, k, records)
        await self.store.set_frozen(spec.id, frozen)
        await self.sink.publish_assignments(records, seq, status_out)
        if missed:
            log.warning("experiment %s caught up over %d missed flip(s)", spec.id, missed)
            await self.sink.publish_event(
                spec.id,
                "missed_flips",
                now,
                {"missed": missed, "from_period": state.flipped_period, "to_period": k},
            )
        await self.store.complete_flip(spec.id, k, seq, missed, self.owner)
        lateness = (now - period_start(spec, k)).total_seconds()
        self.observer.flipped(spec.id, len(records), time.perf_counter() - t0, missed, lateness)
        return 1

    async def _end(self, state: ExperimentState, now: datetime) -> None:
        spec = state.spec
        last = n_periods(spec) - 1
        records = [forced_control(spec, a, "ended") for a in assign_period(spec, last)]
        await self.store.set_status(spec.id, "ended")
        await self.sink.publish_assignments(records, await self.store.next_seq(spec.id), "ended")
        await self.sink.publish_event(spec.id, "ended", now, {})

    # ------------------------------------------------------------------ operator actions
    async def create(self, spec: ExperimentSpec) -> None:
        await self.clock.sync()
        now = self.clock.now()
        await self.store.create_experiment(spec, now)
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
            records = assign_period(state.spec, k)
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
        spec = state.spec
        await self.store.open_window(exp_id, f"{status}-{uuid.uuid4().hex[:8]}", now, reason)
        await self.store.set_status(exp_id, status)
        k = min(max(period_index(spec, now), 0), n_periods(spec) - 1)
        records = [forced_control(spec, a, status) for a in assign_period(spec, k)]
        await self.sink.publish_assignments(records, await self.store.next_seq(exp_id), status)
        await self.sink.publish_event(exp_id, status, now, {"reason": reason})


def _frozen(exp_id: str, freezes: list[dict[str, object]], now: datetime) -> bool:
    t = to_ms(now)
    for f in freezes:
        scope = f.get("experiments")
        if (scope is None or exp_id in scope) and f["start_ms"] <= t < f["end_ms"]:  # type: ignore[operator]
            return True
    return False


def _instant(v: object, field: str) -> datetime:
    if isinstance(v, datetime):
        t = v
    elif isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{field}: {v!r} is not an ISO-8601 timestamp") from None
    else:
        raise ValueError(f"{field}: is required (ISO-8601 timestamp with offset)")
    if t.tzinfo is None:
        raise ValueError(f"{field}: must carry a UTC offset")
    return t
