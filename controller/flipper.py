"""The controller's lifecycle paths: flips at period boundaries, catch-up after downtime and
backfills, the end, operator freezes, and the commands (create, pause, resume, stop).

Every change of what is in force goes through the state machine (controller.lifecycle) in
the experiment's *turn*: a lease in Redis that one holder at a time takes, so its decisions
reach the assignments topic in the order of their sequence numbers, also with several
controllers. In its turn a holder

1. redoes the decision in force if its messages are not all out (its holder died): the same
   sequence number and the same messages;
2. reads the state, asks :func:`controller.lifecycle.decide`, and does what must precede the
   decision (a pause's exclusion window, the new period's assignment records);
3. records the decision in one step (``lua/decide.lua``: compare and set, the next sequence
   number when it changes what a pricing system must do);
4. publishes every product's message, marks the decision published, announces the event.

``Flipper.tick()`` is idempotent: any number of workers may call it at any time. A worker's
own ticks and commands run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from controller import decision as decisions
from controller import lifecycle
from controller.adaptive_flip import adaptive_context, allocation_event
from controller.blackout import Freeze, freezes_of, load_freeze
from controller.clock import Clock
from controller.designs import DesignContext, period_assignments
from controller.errors import CommandRefused, ConflictError, StoreError
from controller.in_force import AssignmentSink, freeze_view, in_force, period_records
from controller.lifecycle import Event, Kind, Outcome, Phase, Window
from controller.periods import period_index, period_start
from controller.retirement import is_retired
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store, to_ms
from controller.store.base import UNAVAILABLE
from controller.store.panel import ReplicasBehind, ReplicaWait, WriteLost

log = logging.getLogger("pricelab.controller")


class FlipObserver(Protocol):
    def flipped(
        self,
        experiment: str,
        n: int,
        seconds: float,
        missed: int,
        lateness: float = 0.0,
        backfilled: int = 0,
    ) -> None: ...

    def next_boundary(self, experiment: str, at: datetime | None) -> None:
        """The boundary the experiment's next flip is due at (None: no flip is due any more)."""
        ...

    def unpublished(self, experiment: str, since: datetime | None) -> None:
        """Since when this worker has seen the experiment's decision in force kept but not
        all of its messages out (None: they are out, or the experiment is gone)."""
        ...

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        """A decision took in ``released`` fires of ``experiment`` kept while an earlier one
        waited (counted with the fires a trigger save carries out; ``kept`` is 0 here)."""
        ...

    def retired(self, experiment: str) -> None:
        """The experiment is over for the controller (controller.retirement): what is kept
        of it per experiment (its series) may go."""
        ...

    def replicas_short(self) -> None:
        """Fewer Redis replicas than ``PRICELAB_REDIS__WAIT_REPLICAS`` acknowledged a
        decision or a command's change in time (it waits)."""
        ...


class _NullObserver:
    def flipped(
        self,
        experiment: str,
        n: int,
        seconds: float,
        missed: int,
        lateness: float = 0.0,
        backfilled: int = 0,
    ) -> None:
        return None

    def next_boundary(self, experiment: str, at: datetime | None) -> None:
        return None

    def unpublished(self, experiment: str, since: datetime | None) -> None:
        return None

    def trigger_kept(self, experiment: str, kept: int, released: int) -> None:
        return None

    def retired(self, experiment: str) -> None:
        return None

    def replicas_short(self) -> None:
        pass


@dataclass(frozen=True)
class Reply:
    """What a command did: the state after it, and whether it found it so already."""

    experiment: str
    state: str
    frozen: bool
    already: str | None = None
    seq: int | None = None
    #: its decision is made and kept, but the broker has not taken all of its messages yet:
    #: every tick sends them again until it does
    pending: bool = False

    def detail(self) -> dict[str, object]:
        out: dict[str, object] = {
            "experiment": self.experiment,
            "state": self.state,
            "frozen": self.frozen,
        }
        if self.already is not None:
            out["already"] = self.already
        if self.seq is not None:
            out["seq"] = self.seq
        if self.pending:
            out["messages"] = PENDING
        return out


#: what a reply says of a decision whose messages the broker has not all taken yet
PENDING = "not all sent yet: the broker refused them, and every tick sends them again"


@dataclass
class Flipper:
    store: Store
    sink: AssignmentSink
    clock: Clock
    settings: Settings
    observer: FlipObserver = field(default_factory=_NullObserver)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: a worker's ticks (flip timer, commands) and commands run one at a time: the
    #: experiment's turn in Redis is per owner, and two of its own at once would share it
    _local: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    #: experiment -> the number of the failure its turn in a tick last raised (:meth:`_order`)
    _failed: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    #: experiment -> when a tick first found its decision's messages not all out
    _unpublished: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    #: the event of the last decision kept (``lua/decide.lua``) in a turn: a command that
    #: raised knows whether its own was (:meth:`command`)
    _kept: Event | None = field(default=None, init=False, repr=False)
    #: the experiments its last tick reported on (the observer's series): one missing from
    #: the next tick's is retired (controller.retirement), and its series go
    _reported: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def _lease_ms(self) -> int:
        return int(self.settings.flip_lease.total_seconds() * 1000)

    @property
    def waits(self) -> bool:
        """Whether the replica barriers wait (``PRICELAB_REDIS__WAIT_REPLICAS`` set)."""
        return bool(self.settings.redis.wait_replicas)

    async def replicated(
        self, what: str, guard: tuple[str, dict[str, str | None]] | None = None
    ) -> None:
        """With ``PRICELAB_REDIS__WAIT_REPLICAS``, wait until that many replicas have every
        write made so far; raise ``ReplicasBehind`` when fewer did in time (an outage), and
        ``WriteLost`` when the primary the barrier reached lacks what ``guard`` names (a hash
        and the fields the write left in it: a failover lost it). Without the setting, no
        Redis call. Called before anything that tells the world of a change kept in Redis: a
        decision's messages, an experiment's ``created`` event, a command's reply. A failover
        that promotes a replica lacking the change would otherwise lose a change already
        told: the controller would decide again, on the new primary, and publish a second
        decision under the same sequence number (or a stopped experiment would run again)."""
        r = self.settings.redis
        if r.wait_replicas:
            wait = ReplicaWait(r.wait_replicas, r.wait_timeout_ms)
            try:
                await self.store.replicated(wait, what, guard)
            except ReplicasBehind:
                self.observer.replicas_short()
                raise

    async def replicated_at_last(
        self, what: str, guard: tuple[str, dict[str, str | None]] | None = None
    ) -> None:
        """:meth:`replicated`, waited out in place (tried again with backoff) while the
        replicas are short: every barrier is. A decision left to the next tick's redo would
        be announced with less than it had (its ``flipped`` event, its missed flips), or
        never (one that publishes nothing has no redo); a command tried again whole would
        reply "already ..."; a creation's repeat would send no ``created``. So a tick or a
        command waits at its first decision for as long as the replicas are short (nothing
        could be told meanwhile anyway), holding the worker's own lock and the experiment's
        turn. A failover that lost the write ends it (``WriteLost``, or Redis's own error):
        the tick fails and the next decides afresh, a command is tried again whole, on the
        state the new primary has."""
        delay = 0.1
        while True:
            try:
                return await self.replicated(what, guard)
            except WriteLost:
                raise
            except UNAVAILABLE as exc:
                # too few replicas, or a failover under way (redis-py's own retries gave up
                # before the sentinels named the new primary): the guard, read on the primary
                # reached next, tells whether the write survived; ending here would leave a
                # surviving decision to a redo (its flipped event lost) or a command to a
                # whole retry (replying 'already')
                log.warning("%s waits for the replicas: %r", what, exc)
                await asyncio.sleep(delay)  # a backoff between tries, not a synchronisation
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ the clock's paths
    async def tick(self) -> int:
        """Carry out every decision the clock has made due (flips, the end, freezes beginning
        or ending) and redo any whose messages are not all out. Returns the flips done."""
        async with self._local:
            return await self._tick()

    async def _tick(self, *, for_command: bool = False) -> int:
        """The tick's work. ``for_command``: the tick a command runs after its own change
        (create, freeze, unfreeze). It raises nothing for an experiment whose messages the
        broker refuses: another experiment's trouble must not leave the command without its
        reply (the command's own change is made and kept; a decision of the command's own
        experiment whose messages are refused shows in its reply). It goes on past it. The
        flip timer's tick raises, so that its failure is seen; the next tick tries again."""
        await self.clock.sync()
        now = self.clock.now()
        freezes = await self._freezes()
        # the retired ones are neither read nor kept (controller.retirement): a controller's
        # memory and its tick's work are bounded by the experiments in force
        states = await self.store.experiments_unretired()
        if await self.store.reconcile(states):
            states = await self.store.experiments_unretired()
        ids = {s.spec.id for s in states}
        for gone in set(self._failed) - ids:
            del self._failed[gone]
        for gone in set(self._unpublished) - ids:
            self._see_unpublished(gone, False, now)
        for gone in self._reported - ids:
            self.observer.retired(gone)
        self._reported = ids
        for s in states:  # out, also by another controller: seen before a failure below
            if s.seq <= s.published:
                self._see_unpublished(s.spec.id, False, now)
        done = 0
        for state in sorted(states, key=self._order):
            if state.lifecycle.phase is Phase.CREATING:
                continue  # nothing is visible of it until it is opened (store.reconcile)
            spec = state.spec
            due = _due(state, now, freezes)
            if due is not None or state.seq > state.published:
                try:
                    turn = await self._turn(spec.id, _due, wait=False)
                except (StoreError, ConflictError, CommandRefused) as exc:
                    # one experiment's trouble must not stop the others' flips (nor fail the
                    # command whose tick this is): logged, tried again on the next tick
                    log.error("experiment %s: tick failed: %s", spec.id, exc)
                    continue
                except Exception as exc:
                    self._failures += 1  # goes last next time (_order)
                    self._failed[spec.id] = self._failures
                    self._see_unpublished(spec.id, True, now)
                    if not for_command:
                        raise
                    log.error("experiment %s: its messages are not all out: %r", spec.id, exc)
                    continue
                if turn is not None:
                    done += turn[1].flip
                state = await self.store.get_experiment(spec.id)
                if state.seq <= state.published:  # out (not: its turn was busy)
                    self._failed.pop(spec.id, None)
            self._see_unpublished(spec.id, state.seq > state.published, now)
            self._report_next(state, now)
        # the experiments over for the controller, as the tick found them (a final one whose
        # messages are all out changes no more; reconcile has brought its holder to that)
        # only in the timer's tick: a command's own change is kept by now, and a failure here
        # must not fail its reply (the next timer tick retires what is left)
        lateness, margin = self.settings.allowed_lateness, self.settings.dedupe_margin
        for state in () if for_command else states:
            if is_retired(state, now, lateness, margin) and await self.store.retire(state.spec):
                log.info("experiment %s is retired: its sales window has closed", state.spec.id)
        return done

    def _see_unpublished(self, exp_id: str, pending: bool, now: datetime) -> None:
        """Report since when the experiment's decision has waited for the broker
        (``PricelabDecisionUnpublished``): a decision the broker refuses for good gives its
        pricing systems the old prices, and keeps a triggered experiment's fires (in Redis,
        announced once it is out: ``lua/trigger_save.lua``)."""
        if not pending:
            if self._unpublished.pop(exp_id, None) is not None:
                self.observer.unpublished(exp_id, None)
            return
        if exp_id not in self._unpublished:
            self._unpublished[exp_id] = now
            self.observer.unpublished(exp_id, now)

    def _order(self, state: ExperimentState) -> tuple[int, int]:
        """Where an experiment comes in a tick. An experiment whose messages the broker refuses
        at every tick (a record against its contract) raises out of every tick: it must not
        hold up the rest. So a decision whose messages are not all out comes after every
        other experiment's, the one whose last try failed latest last of all. A final one
        (stopped, ended) too: its products are free only once its last messages are out
        (``lua/holds.lua``), so no other experiment's messages of them can come first, and
        it holds up only the creations that ask for them."""
        if state.seq <= state.published:
            return 1, 0
        return 2, self._failed.get(state.spec.id, 0)

    def _report_next(self, state: ExperimentState, now: datetime) -> None:
        spec = state.spec
        lc = state.lifecycle
        if lc.final or now >= spec.end:
            self.observer.next_boundary(spec.id, None)
        elif lc.period < 0:
            self.observer.next_boundary(spec.id, max(spec.start, period_start(spec, 0)))
        else:
            # the boundary after the period in force: a flip is overdue once it has passed
            self.observer.next_boundary(spec.id, min(period_start(spec, lc.period + 1), spec.end))

    async def _freezes(self) -> list[Freeze]:
        return freezes_of(await self.store.freezes())

    async def _context(
        self, spec: ExperimentSpec, period: int = -1, kept: dict[str, int] | None = None
    ) -> DesignContext | None:
        """The design's run-time facts: a triggered design's triggers (with ``kept``, the
        fires kept while a decision waited that a new decision takes in); an adaptive
        ladder's recorded probabilities, ``period``'s recorded first when it is not yet
        (before any of its assignments is published: controller.adaptive_flip)."""
        triggers = await self.store.triggers(spec.id) if spec.triggered is not None else None
        if triggers is not None and kept:
            triggers = kept | triggers  # a product fires once: the two never share one
        if spec.adaptive is not None:
            return await adaptive_context(self.store, spec, period, triggers)
        return None if triggers is None else DesignContext(triggers=triggers)

    async def _kept_fires(self, spec: ExperimentSpec) -> bool:
        """Whether a triggered experiment has fires kept while a decision of it waited for
        the broker, not carried out yet (``lua/trigger_save.lua``)."""
        return spec.triggered is not None and bool(await self.store.kept_triggers(spec.id))

    async def _kept_fired(
        self, exp_id: str, kept: dict[str, int], orders: Iterator[int]
    ) -> list[dict[str, object]]:
        """The ``triggered`` events of the kept fires a decision takes in, as a trigger save
        that carried them out would announce them (from the fires its state holds), in the
        order they fired, each with its place in the audit trail."""
        if not kept:
            return []
        _, state = await self.store.trigger_state(exp_id)
        held: dict[str, dict[str, Any]] = state["fired"] if state is not None else {}
        out: list[dict[str, object]] = []
        for p in sorted(kept, key=lambda p: (str(held.get(p, {}).get("fired_at", "")), p)):
            f = held.get(p, {})
            out.append(
                {
                    "product": p,
                    "period": kept[p],
                    "competitor": f.get("competitor"),
                    "fired_at": f.get("fired_at"),
                    "worker": self.owner,
                    "order": next(orders),
                }
            )
        return out

    # ------------------------------------------------------------------ the turn
    async def _take(self, exp_id: str, wait: bool) -> bool:
        """Take the experiment's turn; a command waits for it (up to the lease), a tick
        does not (its next tick tries again)."""
        deadline = time.monotonic() + self.settings.flip_lease.total_seconds() + 5.0
        while not await self.store.take_turn(exp_id, self.owner, self._lease_ms):
            if not wait:
                return False
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"experiment {exp_id!r} is busy: another controller has held its turn "
                    f"for {self.settings.flip_lease.total_seconds():g} s; try again"
                )
            await asyncio.sleep(0.05)  # polling a lease held by another process
        return True

    async def _turn(
        self,
        exp_id: str,
        choose: Callable[[ExperimentState, datetime, list[Freeze]], Event | None],
        *,
        wait: bool,
        reason: str | None = None,
        until: Kind | None = None,
    ) -> tuple[Event, Outcome, int] | None:
        """In the experiment's turn: redo a pending decision, then decide
        ``choose(state, now, freezes)`` and carry it out, with the clock and the freezes read
        once the turn is held. With ``until``, go on choosing until an event of that kind is
        decided (a command first carries out what the clock has made due). Returns the last
        event, its outcome and the sequence number in force after it; None: busy
        (wait=False) or nothing to decide. The turn is renewed while it is held."""
        if not await self._take(exp_id, wait):
            return None
        renew = asyncio.create_task(self._renew(exp_id))
        try:
            for _ in range(8):
                await self.clock.sync()
                now = self.clock.now()
                freezes = await self._freezes()
                state = await self.store.get_experiment(exp_id)
                if state.seq > state.published:
                    await self._redo(state, now)
                    if until is None and await self._kept_fires(state.spec):
                        # a tick's turn: the fires kept while the decision waited go out
                        # first (the next tick's timer carries them into the triggers, with
                        # their announcement), so that no flip due meanwhile is decided, and
                        # its records written, from triggers that lack them
                        return None
                    continue
                event = choose(state, now, freezes)
                if event is None:
                    return None
                outcome = lifecycle.decide(exp_id, state.lifecycle, event)
                if outcome.already is not None:
                    return event, outcome, state.seq
                why = reason if until is None or event.kind is until else None
                seq = await self._carry_out(state, event, outcome, now, freezes, why)
                if seq is None:
                    continue  # the state moved under us (the turn lapsed): read it again
                if until is None or event.kind is until:
                    return event, outcome, seq
            raise StoreError(f"experiment {exp_id!r}: its state kept moving during a decision")
        finally:
            renew.cancel()
            await self.store.end_turn(exp_id, self.owner)

    async def _renew(self, exp_id: str) -> None:
        """Keep the turn while a long decision runs (a million-product flip takes seconds)."""
        every = max(self._lease_ms / 3000.0, 0.05)
        while True:
            await asyncio.sleep(every)  # a lease's renewal period, not a synchronisation
            try:
                held = await self.store.take_turn(exp_id, self.owner, self._lease_ms)
            except UNAVAILABLE as exc:  # an outage: renewed at the next period
                log.warning("experiment %s: the turn's renewal failed: %r", exp_id, exc)
                continue
            if not held:
                log.error("experiment %s: the turn was lost mid-decision", exp_id)
                return

    async def _redo(self, state: ExperimentState, now: datetime) -> None:
        """Finish the decision in force (its holder died before all of it was done): publish
        its messages again with the same sequence number, built from what it was decided
        with (the period, the mode, the freezes of then), announce it again, and redo what
        follows a final one (the catalog's holders, the products' release)."""
        spec, lc = state.spec, state.lifecycle
        # the decision may be on the primary only (its replicas were short when it was made)
        await self.replicated_at_last(
            f"experiment {spec.id}'s decision {state.seq}",
            (
                f"{self.store.exp(spec.id)}:state",
                _left(state.seq, state.status, state.frozen, state.flipped_period),
            ),
        )
        if lc.mode is not None:
            ctx = await self._context(spec, lc.period)
            decided = [load_freeze(doc) for doc in state.decision_freezes]
            design = period_assignments(spec, lc.period, ctx)
            records = in_force(spec, design, lc.mode, decided)
            await self.sink.publish_assignments(records, state.seq, lc.mode)
            log.warning("experiment %s: republished decision %d (%s)", spec.id, state.seq, lc.mode)
        for fired in state.decision_fired:  # the kept fires it took in, before its event
            await self.sink.publish_event(spec.id, "triggered", now, fired | {"worker": self.owner})
        if state.decision_event is not None:
            kind, detail = state.decision_event
            await self.sink.publish_event(spec.id, kind, now, detail | {"worker": self.owner})
        if lc.phase is Phase.RUNNING or lc.phase is Phase.CREATED:
            await self.store.close_windows(spec.id, now)  # a resume that died before it
        await self.store.mark_published(spec.id, state.seq)
        await self.store.sync_holder(spec.id)
        if lc.final:
            await self.store.release_products(spec.id)

    async def _carry_out(
        self,
        state: ExperimentState,
        event: Event,
        outcome: Outcome,
        now: datetime,
        freezes: list[Freeze],
        reason: str | None,
    ) -> int | None:
        """Carry the outcome's effects out; returns the sequence number in force after it,
        None when the state moved before the decision (nothing was decided)."""
        spec = state.spec
        before, after = outcome.before, outcome.after
        t0 = time.perf_counter()
        rewrite = outcome.rewrite
        drawn = rewrite is not None or (outcome.publish and after.period >= 0)
        # fires kept while an earlier decision waited for the broker, not carried out by a
        # save yet: a decision that publishes is made with them, and takes them into the
        # triggers in the same step (lua/decide.lua), so none is left for a later save to
        # announce after it (a pause's, a stop's) or from before it (a resume's)
        kept: dict[str, int] = {}
        if outcome.publish and spec.triggered is not None:
            kept = await self.store.kept_triggers(spec.id)
        ctx = await self._context(spec, after.period if drawn else -1, kept)
        # before the decision: sales are excluded from the instant the policy changes (a
        # crash in between leaves more excluded, never less)
        if outcome.window is Window.OPEN:
            await self.store.open_window(
                spec.id, f"{after.phase.value}-{uuid.uuid4().hex[:8]}", now, reason or event.kind
            )
        n_records = 0
        mine = [f for f in freezes if f.applies_to(spec.id)]
        # the period's design assignments, drawn once for the records and the messages
        design = None
        if drawn:
            design = period_assignments(spec, after.period, ctx)
        if rewrite is not None and design is not None:
            # the period's records, which the sales path routes by
            written = period_records(spec, design, rewrite, mine)
            n_records = await self.store.write_assignments(spec.id, after.period, written)
        flips = missed = backfilled = 0
        lateness = 0.0
        if outcome.flip:
            flips = 1
            k, prev = after.period, max(before.period, -1)
            boundary = period_start(spec, k)
            if state.created_ms and to_ms(boundary) < state.created_ms:
                backfilled = k - prev  # boundaries that passed before the experiment existed
            else:
                missed = k - prev - 1
                lateness = (now - boundary).total_seconds()
        announced = _announcement(outcome, reason)
        flips_event = outcome.flip and announced is None and outcome.publish
        # an adaptive ladder's new probabilities, when the flip changes them
        shares = None
        if outcome.flip and ctx is not None and spec.adaptive is not None:
            shares = allocation_event(spec, after.period, ctx.probabilities)
        # the places of the decision's records in the audit trail, in the order _announce
        # publishes them, taken before the decision is seen: the announcement's is kept with
        # the decision, so that a redo repeats it
        n = bool(missed) + bool(backfilled) + flips_event + (shares is not None)
        n += announced is not None
        # the kept fires it takes in are announced (``triggered``) before them: they fired
        # before the decision
        n += len(kept)
        first = await self.store.next_trail(n) - n + 1 if n else 0
        fired = await self._kept_fired(spec.id, kept, iter(range(first, first + len(kept))))
        first += len(kept)
        n -= len(kept)
        orders = iter(range(first, first + n))
        if announced is not None:
            announced = announced[0], announced[1] | {"order": first + n - 1}
        seq = await self.store.decide(
            spec.id,
            self.owner,
            (state.status, state.frozen, state.flipped_period, state.seq),
            (lifecycle.stored_status(after.phase), after.frozen, after.period),
            publish=outcome.publish,
            flips=flips,
            missed=missed,
            backfilled=backfilled,
            freezes=[f.model_dump(mode="json") for f in mine],
            event=announced,
            kept=sorted(kept),
            fired=fired,
        )
        if seq < 0:
            return None
        self._kept = event
        if kept:
            log.warning(
                "experiment %s: decision %d takes in %d fire(s) kept while a decision waited "
                "(%s)",
                spec.id, seq, len(kept), ",".join(sorted(kept)),
            )  # fmt: skip
            self.observer.trigger_kept(spec.id, 0, len(kept))
        if outcome.window is Window.CLOSE:  # after the decision: a crash before leaves it
            await self.store.close_windows(spec.id, now)
        if lifecycle.stored_status(after.phase) != state.status:
            await self.store.sync_holder(spec.id)
        # nothing of the decision is told before the replicas have it (a failover would lose
        # it, and the next decision would take its sequence number again): waited for here,
        # the turn held (a redo would announce less than the decision: its flipped event), and
        # known by what it left in the state, its seq and lua/decide.lua's compare and set
        await self.replicated_at_last(
            f"experiment {spec.id}'s decision {seq}",
            (
                f"{self.store.exp(spec.id)}:state",
                _left(
                    seq if outcome.publish else None,
                    lifecycle.stored_status(after.phase),
                    after.frozen,
                    after.period,
                ),
            ),
        )
        if outcome.publish:
            assert after.mode is not None and design is not None
            records = in_force(spec, design, after.mode, mine)
            await self.sink.publish_assignments(records, seq, after.mode)
        flipped: dict[str, object] | None = None
        if flips_event:
            flipped = {"period": after.period, "seq": seq, "mode": after.mode}
        for detail in fired:
            await self.sink.publish_event(spec.id, "triggered", now, detail)
        await self._announce(
            spec.id, announced, now, missed, backfilled, before, after, flipped, orders, shares
        )
        if outcome.publish:
            await self.store.mark_published(spec.id, seq)
            if after.final:  # its last messages are out: its claims die now (holds.lua)
                await self.store.sync_holder(spec.id)
        if outcome.release:  # after the publish: the claims already died with the status
            await self.store.release_products(spec.id)
        if outcome.flip:
            self.observer.flipped(
                spec.id, n_records, time.perf_counter() - t0, missed, lateness, backfilled
            )
        return seq or state.seq  # 0: it published nothing, the decision in force stays

    async def _announce(
        self,
        exp_id: str,
        announced: tuple[str, dict[str, object]] | None,
        now: datetime,
        missed: int,
        backfilled: int,
        before: lifecycle.State,
        after: lifecycle.State,
        flipped: dict[str, object] | None,
        orders: Iterator[int],
        shares: dict[str, object] | None = None,
    ) -> None:
        """The experiment's events of one decision, each naming this worker (the audit trail:
        a decision the clock made is this worker's, a command's is also under its actor), and
        each with its place in the trail (``orders``, taken before the decision); ``shares``:
        an adaptive ladder's new probabilities (``allocation``)."""
        by: dict[str, object] = {"worker": self.owner}
        if missed:
            log.warning("experiment %s caught up over %d missed flip(s)", exp_id, missed)
            await self.sink.publish_event(
                exp_id,
                "missed_flips",
                now,
                {
                    "missed": missed,
                    "from_period": before.period,
                    "to_period": after.period,
                    "order": next(orders),
                    **by,
                },
            )
        if backfilled:
            await self.sink.publish_event(
                exp_id,
                "backfill",
                now,
                {
                    "periods": backfilled,
                    "from_period": before.period + 1,
                    "to_period": after.period,
                    "order": next(orders),
                    **by,
                },
            )
        if flipped is not None:
            flipped = flipped | {"order": next(orders)}
            await self.sink.publish_event(exp_id, "flipped", now, flipped | by)
        if shares is not None:
            shares = shares | {"order": next(orders)}
            await self.sink.publish_event(exp_id, "allocation", now, shares | by)
        if announced is not None:
            await self.sink.publish_event(exp_id, announced[0], now, announced[1] | by)

    # ------------------------------------------------------------------ operator commands
    async def create(
        self, spec: ExperimentSpec, *, backfill: bool = False, actor: str | None = None
    ) -> Reply:
        """Create an experiment (claim its products); refused if it starts before now
        without ``backfill``, or has ended. ``actor``: who sent the command, kept with it."""
        # refused before anything is stored or published (guardrails on more than two arms,
        # which nothing would check yet)
        spec.check_live()
        async with self._local:
            await self.clock.sync()
            now = self.clock.now()
            if spec.id in await self.store.experiment_ids():
                held = await self.store.get_experiment(spec.id)
                # a stopped or ended experiment's id is not reused, whatever the spec
                lifecycle.check_recreate(spec.id, held.lifecycle.phase, held.spec.end)
                if held.spec.to_json() != spec.to_json():
                    raise ConflictError(f"experiment {spec.id!r} already exists, with another spec")
                await self._tick(for_command=True)  # a repeat (redelivered): it exists as asked
                return await self._reply(spec.id, "created")
            lifecycle.check_create(spec.id, spec.start, spec.end, now, backfill)
            # its place in the trail before another worker can see it (and start it)
            order = await self.store.next_trail()
            await self.store.create_experiment(spec, now, lease_ms=self._lease_ms, created_by=actor)
            await self.replicated_at_last(
                f"the creation of experiment {spec.id}",
                # its commit (lua/create_commit.lua), the creation's last step that must
                # survive: its state alone (create_init.lua, before) could be kept without it
                (self.store.cat("holders"), {spec.id: None}),
            )
            await self.sink.publish_event(
                spec.id,
                "created",
                now,
                {
                    "products": len(spec.all_products()),
                    "backfill": backfill,
                    "worker": self.owner,
                    "order": order,
                },
            )
            await self._tick(for_command=True)
            return await self._reply(spec.id)

    async def pause(self, exp_id: str, reason: str = "paused") -> Reply:
        return await self.command(exp_id, Kind.PAUSE, reason)

    async def resume(self, exp_id: str, reason: str | None = None) -> Reply:
        return await self.command(exp_id, Kind.RESUME, reason)

    async def stop(self, exp_id: str, reason: str = "stopped") -> Reply:
        return await self.command(exp_id, Kind.STOP, reason)

    async def command(self, exp_id: str, kind: Kind, reason: str | None = None) -> Reply:
        """Carry out an operator's command; raise CommandRefused (one sentence) when it does
        not apply. The same command twice does it once: the reply says ``already``."""
        if kind not in lifecycle.COMMANDS:
            raise CommandRefused(f"{kind.value!r} is not an operator command")
        async with self._local:
            await self._known(exp_id)

            def choose(state: ExperimentState, now: datetime, freezes: list[Freeze]) -> Event:
                # what the clock has made due first (a flip, the end): a command acts on the
                # state in force now, not on the one the last tick left
                return _due(state, now, freezes) or Event(kind)

            # the state is read once, in the turn; the reply is what the command left
            self._kept = None
            try:
                turn = await self._turn(exp_id, choose, wait=True, reason=reason, until=kind)
            except (StoreError, ConflictError, CommandRefused):
                raise
            except Exception:
                # the broker refused a message: the command is made all the same when its
                # decision was kept before the send failed (every tick sends it again); one
                # that found the state so already (an earlier decision's messages refused)
                # says so, as it would once they are out; one the state kept now refuses
                # (an end the clock made due, kept before its messages were refused) is
                # refused for that reason: sending it again would not carry it out
                already = await self._decided(exp_id, kind)
                if already is None:
                    raise
                mine = self._kept is not None and self._kept.kind is kind
                return await self._reply(exp_id, None if mine else already)
            assert turn is not None  # a command waits for the turn and always has an event
            _, outcome, seq = turn
            after = outcome.after
            return Reply(
                exp_id, after.phase.value, after.shows_frozen, outcome.already, seq or None
            )

    async def _decided(self, exp_id: str, kind: Kind) -> str | None:
        """What the command, given now, would find done already (its ``already`` word), or
        None when the experiment's state is not what ``kind`` asks for; CommandRefused when
        the state kept refuses it (a final experiment)."""
        state = await self.store.get_experiment(exp_id)
        return lifecycle.decide(exp_id, state.lifecycle, Event(kind)).already

    async def decide(
        self, exp_id: str, arm: str, reason: str, *, stop: bool = False, ship: bool | None = None
    ) -> dict[str, object]:
        """Check a recorded decision (controller.decision: the arm, whether it ships, the
        state) and, with ``stop``, stop the experiment as :meth:`command` does; the state after
        it and what was decided. The decision itself is kept in the audit trail, with its
        command."""
        await self._known(exp_id)
        held = await self.store.get_experiment(exp_id)
        decision = decisions.resolve(exp_id, held.spec.arm_list(), arm, ship)
        decisions.check(exp_id, held.lifecycle.phase, stop)
        if stop:
            why = f"decision, {decision.describe()}: {reason}"
            reply = await self.command(exp_id, Kind.STOP, why)
        else:
            reply = await self._reply(exp_id)
        return reply.detail() | {"decision": decision.view() | {"stop": stop}}

    async def comment(self, exp_id: str) -> dict[str, object]:
        """A comment on an experiment, in any state: the state it finds (the comment itself
        is kept in the audit trail, with its command)."""
        await self._known(exp_id)
        return (await self._reply(exp_id)).detail()

    async def trail_order(self) -> int:
        """A place in the audit trail, for a command's record: taken when the command is
        received, so that it comes before everything the command causes."""
        return await self.store.next_trail()

    async def _known(self, exp_id: str) -> None:
        lifecycle.check_known(exp_id, await self.store.experiment_ids())

    async def _reply(self, exp_id: str, already: str | None = None) -> Reply:
        st = await self.store.get_experiment(exp_id)
        pending = st.seq > st.published
        return Reply(exp_id, st.phase, st.shows_frozen, already, st.seq or None, pending)

    # ------------------------------------------------------------------ freezes
    async def freeze(self, freeze_id: str, doc: dict[str, object]) -> dict[str, Any]:
        """Record an operator freeze (controller.blackout.Freeze): control policy and
        excluded data over [start, end), for all experiments or the listed ones. Refused
        when it names an experiment that does not exist or is final, lies entirely in the
        past, or reuses an id."""
        async with self._local:
            freeze = load_freeze({"id": freeze_id, **doc})
            await self.clock.sync()
            now = self.clock.now()
            held = {d["id"]: d for d in await self.store.freezes()}.get(freeze.id)
            if held is not None and held.get("freeze") == freeze.model_dump(mode="json"):
                # a repeat (resent or redelivered): as asked, once the replicas have it (a
                # dead worker's write may be on the primary only)
                await self._freeze_kept(freeze.id)
                await self._tick(for_command=True)
                return freeze_view(freeze, now) | {"already": "recorded"}
            states = {s.spec.id: s for s in await self.store.experiments()}
            lifecycle.check_freeze(
                freeze.id,
                freeze.start,
                freeze.end,
                None if freeze.experiments == "all" else freeze.experiments,
                {k: s.lifecycle for k, s in states.items()},
                now,
            )
            if freeze.id in {d["id"] for d in await self.store.cancelled_freezes()}:
                raise CommandRefused(f"freeze {freeze.id!r} was cancelled; give a new id")
            scope = None if freeze.experiments == "all" else list(freeze.experiments)
            added = await self.store.add_freeze(
                freeze.id,
                {
                    "start_ms": to_ms(freeze.start),
                    "end_ms": to_ms(freeze.end),
                    "experiments": scope,
                    "reason": freeze.reason or "operator freeze",
                    "freeze": freeze.model_dump(mode="json"),
                },
            )
            if not added:
                raise CommandRefused(f"there is another freeze {freeze.id!r} already")
            await self._freeze_kept(freeze.id)
            await self._tick(for_command=True)
            return freeze_view(freeze, now)

    async def unfreeze(self, freeze_id: str) -> dict[str, Any]:
        """Cancel a freeze: one that has not begun is removed; one in force ends now (its
        past stays a blackout, and a washout follows the return to the design); one that
        ended by itself is refused. Cancelling a cancelled freeze does nothing."""
        async with self._local:
            await self.clock.sync()
            now = self.clock.now()
            gone = {d["id"]: d for d in await self.store.cancelled_freezes()}.get(freeze_id)
            if gone is not None and "freeze" in gone:
                await self._freeze_kept(freeze_id, cancelled=True)  # a repeat: as below
                await self._tick(for_command=True)  # finish a dead worker's part
                view = freeze_view(load_freeze(gone["freeze"]), now)
                return view | {"now": "cancelled", "cancelled": True, "already": "cancelled"}
            doc = {d["id"]: d for d in await self.store.freezes()}.get(freeze_id)
            if doc is None or "freeze" not in doc:
                raise CommandRefused(f"there is no freeze {freeze_id!r}")
            freeze = load_freeze(doc["freeze"])
            if freeze.end <= now:
                raise CommandRefused(
                    f"freeze {freeze_id!r} ended at {freeze.end.isoformat()}; there is nothing "
                    "left to cancel"
                )
            if freeze.start >= now:  # ahead (or beginning this instant): dropped whole
                await self.store.cancel_freeze(freeze_id, None)
            else:
                freeze = freeze.model_copy(update={"end": now})
                body = {k: v for k, v in doc.items() if k != "id"}
                cut = body | {"end_ms": to_ms(now), "freeze": freeze.model_dump(mode="json")}
                await self.store.cancel_freeze(freeze_id, cut)
            await self._freeze_kept(freeze_id, cancelled=True)
            await self._tick(for_command=True)
            return freeze_view(freeze, now) | {"now": "cancelled", "cancelled": True}

    async def _freeze_kept(self, freeze_id: str, cancelled: bool = False) -> None:
        """A freeze (or its cancel) is neither acted on nor replied to before the replicas
        have it (``PRICELAB_REDIS__WAIT_REPLICAS``; waited for in place), known by its entry
        in the freezes (or the cancelled freezes) hash: a failover that promoted a replica
        without it ends the command (``WriteLost``), which is then tried again whole on the
        new primary, and replied to once, as its doer's. Without this guard the reply's own
        barrier could pass on the new primary, and an operator be told "recorded" of a freeze
        that no longer exists."""
        what = f"freeze {freeze_id}'s {'cancel' if cancelled else 'record'}"
        await self.replicated_at_last(what, self.store.freeze_guard(freeze_id, cancelled))


def _left(seq: int | None, status: str, frozen: bool, period: int) -> dict[str, str | None]:
    """What a decision left in the experiment's state (lua/decide.lua writes them so; the
    sequence number only when it publishes): a barrier's guard."""
    left: dict[str, str | None] = {
        "status": status,
        "frozen": str(int(frozen)),
        "flipped_period": str(period),
    }
    if seq is not None:
        left["seq"] = str(seq)
    return left


def _announcement(outcome: Outcome, reason: str | None) -> tuple[str, dict[str, object]] | None:
    """The experiment event a decision announces, with its detail (kept with the decision, so
    that a redo announces it again)."""
    if outcome.announce is None:
        return None
    after = outcome.after
    detail: dict[str, object] = {"state": after.phase.value, "frozen": after.frozen}
    if reason:
        detail["reason"] = reason
    if after.period >= 0:
        detail["period"] = after.period
    return outcome.announce, detail


def _due(state: ExperimentState, now: datetime, freezes: Sequence[Freeze]) -> Event | None:
    """The event the clock has made due for an experiment, if any: its end, a flip into the
    period in force now, or a freeze beginning or ending."""
    lc = state.lifecycle
    spec = state.spec
    if not lc.clocked:
        return None
    if now >= spec.end:
        return Event(Kind.END)
    if now < spec.start:
        return None
    frozen = any(f.applies_to(spec.id) and f.covers(now) for f in freezes)
    k = period_index(spec, now)
    if k > lc.period:
        return Event(Kind.FLIP, period=k, frozen=frozen)
    if frozen != lc.frozen:
        return Event(Kind.FREEZE_ON if frozen else Kind.FREEZE_OFF)
    return None


__all__ = ["Flipper", "Reply"]
