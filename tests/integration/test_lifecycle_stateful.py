"""The lifecycle under random sequences of everything that can happen to experiments.

A hypothesis state machine drives two controller workers (``Flipper`` on the real store, on
the real redis-server) through creates (some starting before now, with and without
``--backfill``), pauses, resumes, stops, freezes and their cancels, clock moves that flip
periods and end experiments, worker restarts, and workers that die at a random message of a
step (a new worker then takes the step over, as an operator or Kafka would redeliver it).

The assignments topic is played by a sink that keeps every message in publish order, and a
pricing system by the highest-seq rule. After every step:

- each experiment's state and freeze overlay, as ``experiment show`` reads them from the
  store, equal the model's (an independent, plain statement of the rules);
- per product, ``seq`` never falls in publish order, and a repeated ``seq`` repeats the same
  message (a redo after a death);
- what a pricing system ends with per product is what the model has in force: the status,
  the period and the policy (the design's arm while running; control otherwise), and for a
  three-arm experiment (``arms:``, created at random beside two-arm ones) the arm's name;
- no decision is left unpublished; sales are excluded (an open window) exactly while paused;
  a live experiment holds its products and a final one does not.

A worker dies at a random call to Redis or to the broker (before it, or after it with the
answer lost), holding its turn: the lease runs out, a new worker ticks, and the step is sent
again, as an operator or Kafka would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from controller.clock import ManualClock
from controller.designs import Assignment, arm_index, draw
from controller.errors import CommandRefused
from controller.flipper import Flipper
from controller.lifecycle import Kind
from controller.periods import period_index
from controller.settings import Settings
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store
from streams.client.commands import read_summary
from streams.worker.sinks import assignment_message

pytestmark = pytest.mark.integration

#: a three-arm experiment's arms: control keeps the shorthand's control policy
THREE_ARMS = [
    {"name": "list", "policy": "list", "allocation": 0.4, "control": True},
    {"name": "promo", "policy": "promo", "allocation": 0.3},
    {"name": "deep", "policy": "deep-promo", "allocation": 0.3},
]

T0 = datetime(2026, 11, 30, tzinfo=UTC)
PERIOD = timedelta(hours=6)


class Crash(Exception):
    """The worker process dies here."""


class Death:
    """When the worker of a step dies: at its n-th call to Redis or to the broker (a call is
    made, or not, at random). A dead worker makes no call any more, not even to give its
    turn back: its lease has to run out, as after kill -9."""

    def __init__(self) -> None:
        self.countdown: int | None = None
        self.dead = False

    def arm(self, n: int | None) -> None:
        self.countdown, self.dead = n, False

    def call(self) -> None:
        if self.dead:
            raise Crash
        if self.countdown is None:
            return
        if self.countdown == 0:
            self.countdown, self.dead = None, True
            raise Crash
        self.countdown -= 1


class DyingStore:
    """The real store, seen through a worker that may die at any call (``Death``)."""

    def __init__(self, store: Store, death: Death) -> None:
        self._store, self._death = store, death

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._death.call()  # dies before the call ...
            out = await attr(*args, **kwargs)
            self._death.call()  # ... or after it, its answer lost
            return out

        return call


class TopicSink:
    """The assignments and events topics as a log; a message is sent, or the worker dies."""

    def __init__(self, death: Death) -> None:
        self.log: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.events: list[tuple[str, str]] = []
        self.death = death

    def _maybe_die(self) -> None:
        self.death.call()

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        for a in assignments:
            self._maybe_die()
            msg = assignment_message(a, seq, status).model_dump(mode="json")
            self.log[(a.experiment, a.product)].append(msg)

    async def publish_event(
        self,
        experiment: str,
        kind: str,
        at: datetime,
        detail: dict[str, object],
        *,
        flush: bool = True,
    ) -> None:
        self._maybe_die()
        self.events.append((experiment, kind))


@dataclass
class Exp:
    """The model of one experiment: the rules in their plainest words."""

    spec: ExperimentSpec
    phase: str = "created"
    period: int = -1

    @property
    def final(self) -> bool:
        return self.phase in ("stopped", "ended")


@dataclass
class FreezeModel:
    start: datetime
    end: datetime
    scope: tuple[str, ...] | None  # None: every experiment
    cancelled: bool = False

    def covers(self, exp: str, at: datetime) -> bool:
        return (self.scope is None or exp in self.scope) and self.start <= at < self.end


@dataclass
class World:
    exps: dict[str, Exp] = field(default_factory=dict)
    freezes: dict[str, FreezeModel] = field(default_factory=dict)


class LifecycleMachine(RuleBasedStateMachine):
    redis_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(self.redis_url, decode_responses=True)
        self.prefix = f"h{uuid.uuid4().hex[:8]}"
        self.store = Store(self.redis, self.prefix)
        self.clock = ManualClock(T0)
        self.death = Death()
        self.sink = TopicSink(self.death)
        self.settings = Settings(flip_lease=timedelta(seconds=5))
        self.workers = [self._worker(), self._worker()]
        self.died = False
        self.world = World()
        self.n = 0

    def _worker(self) -> Flipper:
        store = DyingStore(self.store, self.death)
        return Flipper(store, self.sink, self.clock, self.settings)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.close()

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def _run(self, w: int, die: int | None, step: Callable[[Flipper], Awaitable[Any]]) -> Any:
        """Run a step on worker ``w``; if it dies, a new worker takes the step over (and
        ``self.died`` says so: the step's first try may have done part or all of it)."""
        self.death.arm(die)
        self.died = False
        try:
            return self.loop.run_until_complete(step(self.workers[w]))
        except Crash:
            self.died = True
            dead = self.workers[w].owner
            self.death.arm(None)
            self.loop.run_until_complete(self._leases_run_out(dead))
            self.workers[w] = self._worker()
            # a restarted worker ticks at once (its timer), then the step is sent again
            self.loop.run_until_complete(self.workers[w].tick())
            return self.loop.run_until_complete(step(self.workers[w]))
        finally:
            self.death.arm(None)

    async def _leases_run_out(self, owner: str) -> None:
        """The dead worker's turns expire (its lease), as they would after kill -9."""
        for exp_id in await self.store.experiment_ids():  # the one being created too
            turn = f"{self.store.exp(exp_id)}:turn"
            if await self.redis.get(turn) == owner:
                await self.redis.delete(turn)

    def _refused(self, w: int, die: int | None, step: Callable[[Flipper], Awaitable[Any]]) -> str:
        try:
            self._run(w, die, step)
        except CommandRefused as exc:
            return str(exc)
        raise AssertionError("the command was accepted; the model refuses it")

    # ------------------------------------------------------------------ the model's clock
    def _clock_moved(self) -> None:
        for e in self.world.exps.values():
            if e.final:
                continue
            if self.now >= e.spec.end:
                e.phase = "ended"
            elif self.now >= e.spec.start:
                e.period = period_index(e.spec, self.now)
                if e.phase == "created":
                    e.phase = "running"

    def _overlay(self, exp: str) -> bool:
        return any(f.covers(exp, self.now) for f in self.world.freezes.values())

    # ------------------------------------------------------------------ rules
    workers = st.integers(0, 1)
    deaths = st.one_of(st.none(), st.integers(0, 40))

    @initialize(start_h=st.integers(0, 30), days=st.integers(1, 3))
    def first(self, start_h: int, days: int) -> None:
        self.create(start_h, days, backfill=False, w=0, die=None, three=False)

    @rule(
        start_h=st.integers(-40, 48),
        days=st.integers(1, 3),
        backfill=st.booleans(),
        w=workers,
        die=deaths,
        three=st.booleans(),
    )
    def create(
        self, start_h: int, days: int, backfill: bool, w: int, die: int | None, three: bool
    ) -> None:
        exp_id = f"e{self.n}"
        self.n += 1
        start = self.now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=start_h)
        # the two-arm shorthand, or three arms (issue #41) with the same control policy
        policies: dict[str, Any] = (
            {"arms": THREE_ARMS}
            if three
            else {"treatment_policy": "promo", "control_policy": "list"}
        )
        spec = load_spec(
            {
                "id": exp_id,
                "design": "random-days",
                "products": [f"{exp_id}-p{i}" for i in range(5)],
                **policies,
                "start": start.isoformat(),
                "end": (start + timedelta(days=days)).isoformat(),
                "timezone": "UTC",
                "period": "PT6H",
                "washout": "PT1H",
                "seed": self.n,
            }
        )

        async def step(f: Flipper) -> Any:
            return await f.create(spec, backfill=backfill)

        if spec.end <= self.now:
            assert "nothing left to run" in self._refused(w, die, step)
            return
        if spec.start < self.now and not backfill:
            assert "--backfill" in self._refused(w, die, step)
            return
        self._run(w, die, step)
        event(f"created: {spec.n_arms} arms")  # --hypothesis-show-statistics counts them
        self.world.exps[exp_id] = Exp(spec)
        self._clock_moved()

    def _pick(self, data: st.DataObject) -> Exp | None:
        if not self.world.exps:
            return None
        return self.world.exps[data.draw(st.sampled_from(sorted(self.world.exps)))]

    @rule(
        data=st.data(),
        kind=st.sampled_from([Kind.PAUSE, Kind.RESUME, Kind.STOP]),
        w=workers,
        die=deaths,
    )
    def command(self, data: st.DataObject, kind: Kind, w: int, die: int | None) -> None:
        e = self._pick(data)
        if e is None:
            return

        async def step(f: Flipper) -> Any:
            return await f.command(e.spec.id, kind, "hypothesis")

        if e.phase == "ended" or (e.phase == "stopped" and kind is not Kind.STOP):
            assert "final" in self._refused(w, die, step)
            return
        reply = self._run(w, die, step)
        # a repeat does nothing and says so (a retry after a death may find its work done)
        if kind is Kind.PAUSE:
            repeat = e.phase == "paused"
            e.phase = "paused"
        elif kind is Kind.RESUME:
            repeat = e.phase != "paused"
            if e.phase == "paused":
                e.phase = "running" if e.period >= 0 else "created"
        else:
            repeat = e.phase == "stopped"
            e.phase = "stopped"
        assert reply.already is not None if repeat else (reply.already is None or self.died)
        assert reply.state == e.phase

    @rule(hours=st.integers(1, 40), w=workers, die=deaths)
    def advance(self, hours: int, w: int, die: int | None) -> None:
        self.clock.advance(timedelta(hours=hours / 2))
        self._run(w, die, lambda f: f.tick())
        self._clock_moved()

    @rule(
        data=st.data(),
        start_h=st.integers(-12, 24),
        hours=st.integers(1, 30),
        scope=st.sampled_from(["all", "one", "unknown"]),
        w=workers,
        die=deaths,
    )
    def freeze(
        self, data: st.DataObject, start_h: int, hours: int, scope: str, w: int, die: int | None
    ) -> None:
        fid = f"f{self.n}"
        self.n += 1
        start = self.now + timedelta(hours=start_h)
        end = start + timedelta(hours=hours)
        names: tuple[str, ...] | None = None
        if scope == "one":
            e = self._pick(data)
            if e is None:
                return
            names = (e.spec.id,)
        elif scope == "unknown":
            names = ("nope",)
        doc = {"start": start.isoformat(), "end": end.isoformat(), "reason": "h"}
        doc["experiments"] = "all" if names is None else list(names)

        async def step(f: Flipper) -> Any:
            return await f.freeze(fid, doc)

        if end <= self.now:
            assert "in the past" in self._refused(w, die, step)
            return
        if names == ("nope",):
            assert "does not exist" in self._refused(w, die, step)
            return
        if names is not None and self.world.exps[names[0]].final:
            assert "final" in self._refused(w, die, step)
            return
        view = self._run(w, die, step)
        assert view["id"] == fid
        self.world.freezes[fid] = FreezeModel(start, end, names)

    @rule(data=st.data(), w=workers, die=deaths)
    def unfreeze(self, data: st.DataObject, w: int, die: int | None) -> None:
        ids = sorted(self.world.freezes) + ["ghost"]
        fid = data.draw(st.sampled_from(ids))

        async def step(f: Flipper) -> Any:
            return await f.unfreeze(fid)

        f = self.world.freezes.get(fid)
        if f is None:
            assert "no freeze" in self._refused(w, die, step)
            return
        if f.cancelled:
            assert self._run(w, die, step)["already"] == "cancelled"
            return
        if f.end <= self.now:
            assert "nothing left to cancel" in self._refused(w, die, step)
            return
        view = self._run(w, die, step)
        assert view["cancelled"] and ("already" not in view or self.died)
        f.cancelled = True
        f.end = max(f.start, self.now)  # one ahead never covers anything now

    @rule(w=workers)
    def restart(self, w: int) -> None:
        self.workers[w] = self._worker()

    # ------------------------------------------------------------------ checks
    @invariant()
    def the_store_says_what_the_model_says(self) -> None:
        for exp_id, e in self.world.exps.items():
            shown = self.loop.run_until_complete(read_summary(self.store, exp_id))
            assert (shown["state"], shown["period"]) == (e.phase, e.period), exp_id
            overlay = e.period >= 0 and e.phase in ("running", "paused") and self._overlay(exp_id)
            assert shown["frozen"] == overlay, exp_id
            assert shown["seq"] == shown["published"], f"{exp_id}: a decision is unpublished"

    @invariant()
    def sales_are_excluded_exactly_while_paused_and_products_held_while_live(self) -> None:
        for exp_id, e in self.world.exps.items():
            windows = self.loop.run_until_complete(self.store.windows(exp_id))
            open_ = [w for w in windows if w["end_ms"] is None]
            if e.phase in ("running", "created"):
                assert open_ == [], f"{exp_id}: an exclusion window open while {e.phase}"
            elif e.phase == "paused":
                assert open_, f"{exp_id}: paused with no exclusion window"
            holder = self.loop.run_until_complete(
                self.store.experiment_of(e.spec.all_products()[0])
            )
            assert holder == (None if e.final else exp_id), (exp_id, e.phase, holder)

    @invariant()
    def a_pricing_system_ends_with_what_is_in_force(self) -> None:
        for exp_id, e in self.world.exps.items():
            mode: str | None = None
            if e.period >= 0:
                mode = e.phase
                if e.phase == "running" and self._overlay(exp_id):
                    mode = "frozen"
            for product in e.spec.all_products():
                log = self.sink.log.get((exp_id, product), [])
                for before, after in zip(log, log[1:], strict=False):
                    assert after["seq"] >= before["seq"], (
                        f"{product}: seq fell: {before} -> {after}"
                    )
                    if after["seq"] == before["seq"]:
                        assert after == before, f"{product}: seq {after['seq']} with two contents"
                if mode is None:
                    assert log == [], f"{product}: published before a period was in force"
                    continue
                held = max(log, key=lambda m: m["seq"])  # the highest-seq rule
                policy = "list"
                if mode == "running":
                    policy = e.spec.policy(arm_index(e.spec, draw(e.spec, product, e.period)))
                got = (held["status"], held["period"], held["policy"])
                assert got == (mode, e.period, policy), product
                # an arms: spec's message names the arm of its policy; a shorthand's does not
                names = {a.policy: a.name for a in e.spec.arms}
                assert held.get("arm_name") == names.get(policy), (product, held)


def test_random_lifecycles_keep_the_contract(stack) -> None:
    LifecycleMachine.redis_url = stack.redis_url
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,
        ),
    )
