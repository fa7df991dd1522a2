"""The assignment contract under random interleavings, on real worker processes (issue #56).

A hypothesis state machine drives three controller workers and two analysis workers (real
``pricelab worker`` processes on the embedded broker and redis-server, on the shared simulated
clock) the way operators, a market and a bad day do:

- experiments of three designs (triggered, random days, a price ladder of three arms) created
  over a small pool of products, so that a later experiment claims products an earlier one
  held after it stopped or ended (or is refused while it is live, and may be refused while the
  stopped one's last messages are not yet out: #56 item 1);
- pauses, resumes, stops, freezes and unfreezes, each through the commands topic with an actor,
  as the CLI sends them (``send_command_async``);
- competitor-price batches whose undercuts fire a triggered experiment's products, sales
  batches of known ids (with duplicates) for the products in force, and period boundaries
  (the simulated clock moves a day);
- kill -9 of any of the five workers, restarted at once; kill -9 of Redis, back at once from
  its append-only file; a Redis failover (Redis's own FAILOVER to its replica, which demotes
  the server the workers' URL reaches, then a failback);
- broker refusals: the broker refuses one experiment's assignments (its schema registry
  told to) across a period boundary, and a pause, resume or stop of it may be sent meanwhile;
  then it takes them again.

After every step, read by OUTSIDE clients (confluent-kafka, as a pricing system) and from
Redis, against a plain model of the rules:

- once settled, for each product the last message on the compacted assignments topic is the
  one the model has in force: its experiment (the last that held the product and began),
  status, period and policy;
- per (experiment, product), ``seq`` never falls in topic order, and a repeated ``seq`` is a
  copy of the same message;
- every command got exactly one reply (the replies topic, read by ``command_id``);
- every sale sent is counted exactly once (the experiments' totals in Redis);
- every due trigger fire is recorded once, for the period the rule gives, and no other;
- no verdict on the estimates topic is turned back once decisive.

The default run is short (a few examples of a few steps, one stack and one set of workers
for the module); ``--hypothesis-profile long`` (tests/conftest.py) runs it for as long as one
cares to (docs/operations.md, "The contract under every interleaving").
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from controller.designs import arm_index, draw
from controller.periods import n_periods, period_index
from controller.settings import KafkaSettings, Settings
from controller.spec import ExperimentSpec, load_spec
from controller.store import Store
from controller.store.clock import SharedSimulatedClock
from controller.store.keys import clock as clock_key
from streams.client.commands import send_command_async
from streams.live.embedded import EmbeddedStack, ManagedProcess, free_port, redis_binary
from streams.live.launcher import WorkerProcess
from streams.worker.kafka import JsonPublisher, ensure_topics
from tests.conftest import LONG_FORM, long_profile
from tests.integration.conftest import make_settings, wait_until

pytestmark = [pytest.mark.integration, getattr(pytest.mark, LONG_FORM)]

T = TypeVar("T")
#: what our own Redis client meets while Redis restarts: not yet, not a failure
REDIS_DOWN = (RedisConnectionError, BusyLoadingError, OSError)
T0 = datetime(2026, 12, 1, tzinfo=UTC)
DAY = timedelta(days=1)
#: the clock stands this long after each day's boundary: past the washout, so a sale of the
#: last 40 minutes is counted as the period's, and an undercut of the last hour fires
DAY_HOUR = timedelta(hours=2)
POOL = 6  # products an example's experiments share
ACTOR = "model-test@pricelab"
#: how long the system may take to settle after a step: a killed worker's partitions move
#: after the broker's session timeout (10 s) and its turns after the flip lease (5 s here)
SETTLE = 60.0
COMMAND_TIMEOUT = 90.0
#: the default run's examples (its steps: ``stateful_step_count`` below)
SHORT_EXAMPLES = 3
SHORT_STEPS = 10
#: what a step may be (methods of the machine); creates and lifecycle commands twice as
#: likely, so that products change hands after a stop. The first is what hypothesis's
#: simplest example repeats
ACTIONS = (
    "sales", "create", "create", "command", "command", "boundary", "freeze", "unfreeze",
    "competitor", "kill9", "redis_restart", "redis_failover", "refusal", "broker_restart",
)  # fmt: skip
#: the kinds a run draws from: all, or those ``PRICELAB_CONTRACT_STEPS`` names (comma-separated;
#: to drive a few kinds harder, or to try a new one)
KINDS = (
    tuple(os.environ.get("PRICELAB_CONTRACT_STEPS", "").split(","))
    if os.environ.get("PRICELAB_CONTRACT_STEPS")
    else ACTIONS
)
assert set(KINDS) <= set(ACTIONS), (
    f"PRICELAB_CONTRACT_STEPS: not steps: {set(KINDS) - set(ACTIONS)}"
)
#: a step's kind, drawn as a large integer modulo the kinds: hypothesis draws small indices
#: (the simplest) far more often than others, and one kind then fills most of a run
STEP_KINDS = st.integers(0, 2**20).map(lambda i: KINDS[i % len(KINDS)])
ROLES = (("controller",),) * 3 + (("analysis",),) * 2
LADDER = [
    {"name": "list", "policy": "list", "price_ratio": 1.0, "allocation": 0.4, "control": True},
    {"name": "p95", "policy": "price-95", "price_ratio": 0.95, "allocation": 0.3},
    {"name": "p105", "policy": "price-105", "price_ratio": 1.05, "allocation": 0.3},
]
CONTROL_POLICY = "list"  # every design's control policy here


# ---------------------------------------------------------------------------- outside reads
class Outside:
    """A librdkafka consumer of one topic from its beginning (a pricing system's own
    software), kept for the module and read on at every check."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.topic = topic
        self.parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": f"outside-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(len(self.parts))]
        )
        self.log: list[dict[str, Any]] = []

    def catch_up(self, idle: float = 0.2) -> None:
        """Read what the broker hands over until it has nothing more for ``idle`` seconds.

        Not a promise that everything written is read (the embedded broker's end offsets
        lag, so they cannot say): the checks that need a message wait on it being read."""
        while True:
            msg = self.consumer.poll(idle)
            if msg is None:
                return
            if msg.error() is not None:
                continue
            doc = json.loads(msg.value() or b"null")
            doc["_at"] = (msg.partition(), msg.offset())
            self.log.append(doc)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class World:
    """What the module starts once: the stack and its settings, five workers, outside readers."""

    stack: EmbeddedStack
    settings: Settings
    workers: list[WorkerProcess]
    assignments: Outside
    replies: Outside
    estimates: Outside
    #: a replica of the stack's Redis, which a failover promotes for a while
    replica: ManagedProcess
    stats: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def aof_stack() -> Iterator[EmbeddedStack]:
    """The module's own stack: Redis with an append-only file (fsync always), so that a kill -9
    of Redis loses nothing acknowledged, as a managed Redis with persistence; the broker's
    topics in an S3 bucket when ``PRICELAB_CONTRACT_BROKER_S3`` names an S3 server (so that
    they outlive a restart, which the machine then drives), else in memory."""
    s = EmbeddedStack(
        redis_aof=True,
        validate_outputs=True,
        broker_s3_endpoint=os.environ.get("PRICELAB_CONTRACT_BROKER_S3") or None,
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def world(aof_stack: EmbeddedStack) -> Iterator[World]:
    stack = aof_stack
    settings = make_settings(
        stack,
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, partitions=3),
        tick_interval=0.1,
        analysis_interval=1.0,
        flip_lease=timedelta(seconds=5),
        # a batch's competitor prices are of the last hour: older ones would be stale
        trigger_watermark_lag=timedelta(hours=2),
    )
    asyncio.run(ensure_topics(settings))
    asyncio.run(_set_clock(settings, T0 + DAY_HOUR))
    workers = [WorkerProcess(settings, roles) for roles in ROLES]
    outside: list[Outside] = []
    assert stack.workdir is not None
    (stack.workdir / "replica").mkdir(exist_ok=True)
    replica = ManagedProcess(
        "redis-replica",
        [str(redis_binary()), "--port", str(free_port(stack.host)), "--bind", stack.host,
         "--save", "", "--appendonly", "no", "--dir", str(stack.workdir / "replica"),
         "--replicaof", stack.host, str(stack.redis_port)],
        stack.host, 0, stack.workdir / "replica" / "redis.log",
    )  # fmt: skip
    replica.port = int(replica.args[2])
    try:
        replica.start()
        started = time.monotonic()
        for w in workers:
            w.launch()
        for w in workers:
            w.wait_healthy(120)
        print(f"contract: five workers healthy in {time.monotonic() - started:.1f}s")
        t = settings.topics
        outside = [Outside(settings, x) for x in (t.assignments, t.command_replies, t.estimates)]
        yield World(stack, settings, workers, outside[0], outside[1], outside[2], replica)
    finally:
        replica.stop()
        for o in outside:
            o.close()
        for w in workers:  # all at once: each takes seconds to shut down
            if w.alive():
                assert w.proc is not None
                w.proc.terminate()
        for w in workers:
            w.stop()


async def _publisher(settings: Settings) -> JsonPublisher:
    """A producer of sales and competitor prices, made on the loop that runs it."""
    publisher = JsonPublisher(settings)
    await publisher.start()
    return publisher


async def _set_clock(settings: Settings, at: datetime) -> None:
    redis = Redis.from_url(settings.redis.url.get_secret_value())
    try:
        await SharedSimulatedClock(redis, clock_key(settings.key_prefix)).set(at)
    finally:
        await redis.aclose()


# ---------------------------------------------------------------------------- the model
@dataclass
class Exp:
    """One experiment as the model sees it: the rules in their plainest words."""

    spec: ExperimentSpec
    kind: str  # triggered, random-days, ladder
    phase: str = "created"
    period: int = -1
    began: bool = False  # a period of it was in force: it has published
    fired: dict[str, int] = field(default_factory=dict)  # product -> window's first period
    sales: int = 0  # distinct sales sent for its products

    @property
    def final(self) -> bool:
        return self.phase in ("stopped", "ended")

    @property
    def products(self) -> list[str]:
        return sorted(self.spec.all_products())


@dataclass
class FreezeModel:
    exp: str
    start: datetime
    end: datetime
    cancelled: bool = False

    def covers(self, exp: str, at: datetime) -> bool:
        return exp == self.exp and self.start <= at < self.end


def spec_doc(kind: str, exp_id: str, products: list[str], start: datetime, days: int, seed: int):
    doc: dict[str, Any] = {
        "id": exp_id,
        "start": start.isoformat(),
        "end": (start + days * DAY).isoformat(),
        "timezone": "UTC",
        "washout": "PT1H",
        "seed": seed,
    }
    if kind == "triggered":
        half = len(products) // 2
        doc |= {
            "design": "triggered",
            "clusters": {"c0": products[:half], "c1": products[half:]},
            "treatment_policy": "match",
            "control_policy": CONTROL_POLICY,
            "triggered": {
                "undercut_pct": 5,
                "sustained_minutes": 30,
                "window_periods": 2,
                "matched_control": True,
                "reference_prices": {p: 100.0 for p in products},
            },
        }
    elif kind == "ladder":
        doc |= {"design": "random-days", "products": products, "arms": LADDER}
    else:
        doc |= {
            "design": "random-days",
            "products": products,
            "treatment_policy": "promo",
            "control_policy": CONTROL_POLICY,
        }
    return doc


class Enough(BaseException):
    """The run's budget is spent: raised at the start of the example after the last, and
    through hypothesis (which catches only Exception), so that the run ends as passed.

    Hypothesis alone does not bound this run: it counts only the examples it deems valid,
    and on real processes (not a function of the steps) it deems few so, then replays and
    mutates their prefixes for as long as it likes."""


def recorded(check: Callable[..., None]) -> Callable[..., None]:
    """A step or check whose failure is printed with the steps at once: hypothesis may
    report a later replay's inconsistency instead (the processes are not a function of the
    steps), and the failure itself must not be lost."""

    @functools.wraps(check)
    def run(self: ContractMachine, *args: Any, **kwargs: Any) -> None:
        try:
            check(self, *args, **kwargs)
        except Exception as exc:
            ContractMachine.failed = True
            self.say(f"FAILED {check.__name__}: {exc!r}")
            raise

    return run


class ContractMachine(RuleBasedStateMachine):
    world: ClassVar[World]
    examples: ClassVar[int] = 0
    #: the run ends before an example past this many, or begun after this instant
    #: (``time.monotonic``); None: no bound of that kind
    max_examples: ClassVar[int | None] = None
    until: ClassVar[float | None] = None
    spent: ClassVar[bool] = False  # the budget's end was met
    failed: ClassVar[bool] = False  # a step or check failed

    def __init__(self) -> None:
        if (self.max_examples is not None and self.examples >= self.max_examples) or (
            self.until is not None and time.monotonic() > self.until
        ):
            ContractMachine.spent = True
            raise Enough
        super().__init__()
        ContractMachine.examples += 1
        self.freezes: dict[str, FreezeModel] = {}
        self.tag = f"x{ContractMachine.examples}{uuid.uuid4().hex[:4]}"
        self.loop = asyncio.new_event_loop()
        s = self.world.settings
        self.redis = Redis.from_url(s.redis.url.get_secret_value(), decode_responses=True)
        self.store = Store(self.redis, s.key_prefix)
        self.clock = SharedSimulatedClock(self.redis, clock_key(s.key_prefix))
        self.publisher = self.run(_publisher(s))
        self.pool = [f"{self.tag}p{i}" for i in range(POOL)]
        self.exps: dict[str, Exp] = {}
        self.commands: list[str] = []  # command ids sent
        self.undercut: set[str] = set()  # products sent an undercut (each once)
        self.n = 0
        for w in self.world.workers:
            w.check_alive()  # a worker that exited on its own is a failure, with its log
        # a fresh day for every example: the earlier examples' experiments run on, on other
        # products
        self.read(self.clock.sync)
        self.now = _day_of(self.clock.now()) + DAY + DAY_HOUR
        self.read(lambda: self.clock.set(self.now))

    def note(self, stat: str, detail: str = "") -> None:
        """Count a kind of step (``--hypothesis-show-statistics``) and record it."""
        event(stat)
        self.world.stats[stat] += 1
        self.say(f"{stat} {detail}")

    def say(self, what: str) -> None:
        """One line per step, the failing sequence's record (``-s`` shows it)."""
        print(f"{time.strftime('%H:%M:%S')} {self.tag} {self.now:%m-%d %H:%M} {what}", flush=True)

    def run(self, aw: Any) -> Any:
        return self.loop.run_until_complete(aw)

    def read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Our own read or write of Redis, retried while Redis restarts (not a failure)."""

        async def go() -> T:
            deadline = time.monotonic() + SETTLE
            while True:
                try:
                    return await fn()
                except REDIS_DOWN:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)  # polling a service that restarts

        return self.run(go())

    def teardown(self) -> None:
        # cancel this example's freezes: none may cover a later example's experiments
        for fid, f in self.freezes.items():
            if not f.cancelled and f.end > self.now:
                self._send("unfreeze", freeze_id=fid)
        self.run(self.publisher.stop())
        self.run(self.redis.aclose())
        self.loop.close()

    # ------------------------------------------------------------------ the model's clock
    def _clock_moved(self) -> None:
        for e in self.exps.values():
            if e.final:
                continue
            if self.now >= e.spec.end:
                e.phase = "ended"
            elif self.now >= e.spec.start:
                e.period = period_index(e.spec, self.now)
                e.began = True
                if e.phase == "created":
                    e.phase = "running"

    def _frozen(self, exp: str) -> bool:
        return any(f.covers(exp, self.now) for f in self.freezes.values())

    def _last_of(self, product: str) -> Exp | None:
        """The last experiment created over the product (the one that holds it, or held it)."""
        held = [e for e in self.exps.values() if product in e.spec.all_products()]
        return held[-1] if held else None

    def _send(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply: dict[str, Any] = self.run(
            send_command_async(
                self.world.settings, kind, timeout=COMMAND_TIMEOUT, actor=ACTOR, **fields
            )
        )
        assert "command_id" in reply, f"{kind}: {reply.get('error')}"
        self.commands.append(reply["command_id"])
        self.world.stats["commands"] += 1
        return reply

    # ------------------------------------------------------------------ rules
    @initialize(data=st.data())
    def first(self, data: st.DataObject) -> None:
        self.create(data, ahead=False, days=3)

    @rule(data=st.data(), action=STEP_KINDS)
    @recorded
    def step(self, data: st.DataObject, action: str) -> None:
        """One step, of any kind. One rule, drawing its kind: hypothesis's choice among many
        rules (some switched off at random for the example) gives up after three misses, and
        the example with it, uncounted; the default run's few examples would then be many."""
        getattr(self, action)(data)

    def create(
        self, data: st.DataObject, ahead: bool | None = None, days: int | None = None
    ) -> None:
        kind = data.draw(st.sampled_from(["triggered", "random-days", "ladder"]))
        if ahead is None:
            ahead = data.draw(st.booleans())
        if days is None:
            days = data.draw(st.integers(2, 4))
        # (a permutation's head, not a set: a set of 4 of 6 is often given up on, and the
        # example with it)
        size = data.draw(st.integers(4, 5))
        products = sorted(data.draw(st.permutations(self.pool))[:size])
        exp_id = f"{self.tag}e{self.n}"
        self.n += 1
        # from today's boundary (its period in force at once: backfill) or tomorrow's
        start = _day_of(self.now) + (DAY if ahead else timedelta(0))
        doc = spec_doc(kind, exp_id, products, start, days, seed=self.n)
        reply = self._send("create", spec=doc, backfill=not ahead)
        held = [self._last_of(p) for p in products]
        live = sorted({e.spec.id for e in held if e is not None and not e.final})
        if live:
            assert not reply["ok"], f"created over products of live {live}"
            assert "can be in at most one experiment" in reply["error"], reply["error"]
            self.note("create: refused, products held by a live experiment", f"{exp_id} {products}")
            return
        if not reply["ok"] and "has not taken yet" in reply["error"]:
            # #56 item 1: a stopped or ended holder's last messages are not all out yet
            assert any(e is not None and e.final for e in held), reply["error"]
            self.note("create: refused, the stopped holder's last messages not out yet", exp_id)
            return
        assert reply["ok"], reply["error"]
        handed = sorted({e.spec.id for e in held if e is not None})
        self.note(
            f"create: {kind}" + (", over products handed over" if handed else ""),
            f"{exp_id} {products} from {start:%m-%d} for {days} days; handed over by {handed}",
        )
        self.exps[exp_id] = Exp(load_spec(doc), kind)
        self._clock_moved()

    def _pick(self, data: st.DataObject) -> Exp | None:
        if not self.exps:
            return None
        return self.exps[data.draw(st.sampled_from(sorted(self.exps)))]

    def command(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["pause", "resume", "stop"]))
        e = self._pick(data)
        if e is None:
            return
        self._lifecycle(kind, e)

    def _lifecycle(self, kind: str, e: Exp, refused: bool = False) -> None:
        """A pause, resume or stop of ``e``, its reply checked against the model. With
        ``refused`` (the broker refuses ``e``'s messages) one refused before its decision was
        kept answers ``ok: false`` naming the broker, and changes nothing."""
        reply = self._send(kind, experiment=e.spec.id, reason=f"model: {kind}")
        if e.phase == "ended" or (e.phase == "stopped" and kind != "stop"):
            assert not reply["ok"] and "final" in reply["error"], reply
            self.note(f"{kind}: refused, final", e.spec.id)
            return
        if refused and not reply["ok"]:
            assert "the broker refused" in reply["error"], reply["error"]
            self.note(f"{kind}: refused, its messages refused by the broker", e.spec.id)
            return
        assert reply["ok"], reply["error"]
        if kind == "pause":
            repeat = e.phase == "paused"
            e.phase = "paused"
        elif kind == "resume":
            repeat = e.phase != "paused"
            if e.phase == "paused":
                e.phase = "running" if e.began else "created"
        else:
            repeat = e.phase == "stopped"
            e.phase = "stopped"
        detail = reply["detail"]
        assert ("already" in detail) == repeat, (kind, detail)
        assert detail["state"] == e.phase, (kind, detail)
        self.note(
            f"{kind}: {'repeat' if repeat else 'done'}" + (" while refused" if refused else ""),
            e.spec.id,
        )

    def freeze(self, data: st.DataObject) -> None:
        hours = data.draw(st.integers(1, 40))
        e = self._pick(data)
        if e is None:
            return
        fid = f"{self.tag}f{self.n}"
        self.n += 1
        end = self.now + timedelta(hours=hours)
        doc = {
            "id": fid,
            "start": self.now.isoformat(),
            "end": end.isoformat(),
            "reason": "model",
            "experiments": [e.spec.id],
        }
        reply = self._send("freeze", freeze=doc)
        if e.final:
            assert not reply["ok"] and "final" in reply["error"], reply
            self.note("freeze: refused, final", e.spec.id)
            return
        assert reply["ok"], reply["error"]
        self.freezes[fid] = FreezeModel(e.spec.id, self.now, end)
        self.note("freeze: done", f"{fid} of {e.spec.id} for {hours}h")

    def unfreeze(self, data: st.DataObject) -> None:
        if not self.freezes:
            return
        fid = data.draw(st.sampled_from(sorted(self.freezes)))
        f = self.freezes[fid]
        reply = self._send("unfreeze", freeze_id=fid)
        if f.cancelled:
            assert reply["ok"] and reply["detail"]["freeze"]["already"] == "cancelled", reply
            self.note("unfreeze: repeat", fid)
            return
        if f.end <= self.now:
            assert not reply["ok"] and "nothing left to cancel" in reply["error"], reply
            self.note("unfreeze: refused, over", fid)
            return
        assert reply["ok"], reply["error"]
        f.cancelled = True
        f.end = max(f.start, self.now)
        self.note("unfreeze: done", fid)

    def boundary(self, data: st.DataObject) -> None:
        """The clock moves to the next day, two hours in: every live experiment flips."""
        self.now = _day_of(self.now) + DAY + DAY_HOUR
        self.read(lambda: self.clock.set(self.now))
        self._clock_moved()
        self.world.stats["boundaries"] += 1
        self.note("period boundary")

    def _in_force(self) -> list[Exp]:
        return [e for e in self.exps.values() if e.began and not e.final]

    def sales(self, data: st.DataObject) -> None:
        """A batch of sales of known ids for a live experiment's products (some sent twice);
        each must be counted once, by the experiment that holds its product."""
        e = self._send_sales(data)
        if e is not None:
            self._wait_counted(e)

    def _send_sales(
        self, data: st.DataObject, clock: SharedSimulatedClock | None = None
    ) -> Exp | None:
        """Send a batch of sales (see :meth:`sales`) for an experiment in force, if any;
        ``clock``: the shared clock on the Redis that takes writes (a failover's)."""
        live = self._in_force()
        if not live:
            return None
        e = data.draw(st.sampled_from(live))
        n, dups = data.draw(st.integers(1, 30)), data.draw(st.integers(0, 3))
        products = e.products
        # a sale belongs to the experiment that held its product when it occurred: the clock
        # moves a minute, and the sales fall in it, after every decision of the steps before
        # (a sale of the minutes before a handover is the earlier holder's)
        self.now += timedelta(minutes=1)
        self.read(lambda: (clock or self.clock).set(self.now))
        self._clock_moved()
        payloads = []
        for i in range(n):
            at = self.now - timedelta(seconds=50) + timedelta(milliseconds=100 * i)
            payloads.append(
                (
                    products[i % len(products)],
                    json.dumps(
                        {
                            "v": 1,
                            "event_id": f"{e.spec.id}s{e.sales + i}",
                            "product": products[i % len(products)],
                            "units": 1 + i % 3,
                            "revenue": 2.5 * (1 + i % 3),
                            "unit_price": 2.5,
                            "occurred_at": at.isoformat(),
                        }
                    ).encode(),
                )
            )
        topic = self.world.settings.topics.sales

        async def send() -> None:
            for product, body in payloads + payloads[:dups]:
                await self.publisher.send(topic, body, product)
            await self.publisher.flush()

        self.run(send())
        e.sales += n
        self.world.stats["sales"] += n
        self.note(f"sales: {e.phase}", f"{n} (+{dups} copies) of {e.spec.id}")
        return e

    def _wait_counted(self, e: Exp) -> None:
        self.run(
            wait_until(
                lambda: self._counted(e, e.sales),
                SETTLE,
                f"{e.spec.id}'s {e.sales} sales counted",
                tolerate=REDIS_DOWN,
            )
        )

    async def _counted(self, e: Exp, n: int) -> bool:
        return await self._events(e) >= n

    async def _events(self, e: Exp) -> int:
        totals = await self.store.totals(e.spec.id)
        return int(sum(v for k, v in totals.items() if k.startswith("events:")))

    def competitor(self, data: st.DataObject) -> None:
        """An undercut of 10% sustained 40 minutes on one product of a triggered experiment
        that runs: it fires once, its window opening at the next boundary (when one is left)."""
        live = [
            e
            for e in self._in_force()
            if e.kind == "triggered" and e.phase == "running" and not self._frozen(e.spec.id)
        ]
        candidates = [(e, p) for e in live for p in e.products if p not in self.undercut]
        if not candidates:
            return
        e, product = data.draw(st.sampled_from(candidates))
        self.undercut.add(product)
        since = self.now - timedelta(minutes=55)
        topic = self.world.settings.topics.competitor_prices

        async def send() -> None:
            for at in (since, since + timedelta(minutes=40)):
                body = json.dumps(
                    {
                        "v": 1,
                        "product": product,
                        "competitor": "shop-x",
                        "price": 90.0,
                        "observed_at": at.isoformat(),
                    }
                ).encode()
                await self.publisher.send(topic, body, product)
            await self.publisher.flush()

        self.run(send())
        window = period_index(e.spec, since + timedelta(minutes=30)) + 1
        if window >= n_periods(e.spec):
            self.note("competitor: an undercut too late for a window", f"{product} of {e.spec.id}")
            return  # nothing to wait for: the invariant checks that nothing fired
        e.fired[product] = window
        self.world.stats["fires"] += 1

        async def fired() -> bool:
            return product in await self.store.triggers(e.spec.id)

        self.run(
            wait_until(fired, SETTLE, f"the fire of {product} in {e.spec.id}", tolerate=REDIS_DOWN)
        )
        self.note("competitor: a fire", f"{product} of {e.spec.id} for period {window}")

    def kill9(self, data: st.DataObject) -> None:
        """kill -9 of any worker, restarted at once (it catches up while the next steps run)."""
        w = data.draw(st.integers(0, len(ROLES) - 1))
        worker = self.world.workers[w]
        worker.kill9()
        new = WorkerProcess(worker.settings, worker.roles, log=worker.log)
        new.launch()
        self.world.workers[w] = new
        self.world.stats[f"kill -9 {worker.roles[0]}"] += 1
        self.note(f"kill -9: {worker.roles[0]}", f"worker {w}")

    def redis_restart(self, data: st.DataObject) -> None:
        """kill -9 of Redis, back at once from its append-only file: the workers retry."""
        self.world.stack.restart_redis(kill=True)
        self.world.stats["redis kill -9"] += 1
        self.note("redis: kill -9 and restart")

    def redis_failover(self, data: st.DataObject) -> None:
        """Redis's own FAILOVER to the replica, as a managed Redis makes one: the server the
        workers' URL reaches is demoted and keeps their connections, so their writes meet
        READONLY (retried, not ready) until the failback, which promotes it again (the
        embedded stack has no endpoint that moves to the new primary)."""
        host = self.world.stack.host
        primary = Redis(host=host, port=self.world.stack.redis_port, decode_responses=True)
        other = Redis(host=host, port=self.world.replica.port, decode_responses=True)

        async def role(r: Redis, want: str) -> bool:
            info = await r.info("replication")
            return bool(
                info["role"] == want
                and (want != "master" or info.get("slave0", {}).get("state") == "online")
            )

        async def in_sync() -> None:
            await wait_until(
                partial(role, primary, "master"), SETTLE, "the replica in sync", tolerate=REDIS_DOWN
            )

        e: Exp | None = None
        try:
            self.run(in_sync())
            before = self._redis_retries()
            assert self.run(primary.execute_command("FAILOVER")) == "OK"
            self.run(wait_until(partial(role, other, "master"), SETTLE, "the replica promoted"))
            # a sales batch meanwhile (when an experiment is in force): the controller that
            # takes it meets READONLY, and counts it after the failback
            e = self._send_sales(
                data, SharedSimulatedClock(other, clock_key(self.world.settings.key_prefix))
            )
            if e is not None:
                self.run(
                    wait_until(
                        lambda: self._redis_retries() > before, SETTLE, "a worker to meet READONLY"
                    )
                )
            assert self.run(other.execute_command("FAILOVER")) == "OK"
            self.run(wait_until(partial(role, primary, "master"), SETTLE, "the failback"))
        finally:
            self.run(primary.aclose())
            self.run(other.aclose())
        if e is not None:
            self._wait_counted(e)
        met = "met by a sales batch" if e is not None else "with nothing to write"
        self.world.stats["redis failovers"] += 1
        self.note(f"redis: failover and failback, {met}")

    def _redis_retries(self) -> float:
        """The workers' Redis retries, all components (a worker not up yet counts none)."""
        total = 0.0
        for w in self.world.workers:
            try:
                text = w.metrics()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("pricelab_redis_retries_total{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def refusal(self, data: st.DataObject) -> None:
        """The broker refuses one experiment's assignments (its schema registry told to)
        while the clock crosses a period boundary, and maybe a pause, resume or stop of it is
        sent: the other experiments' messages go out meanwhile. Then it takes them again, and
        the checks after the step see the refused experiment's last messages out too."""
        live = [e for e in self.exps.values() if not e.final]
        if not live:
            return
        e = data.draw(st.sampled_from(live))
        kind = data.draw(st.sampled_from([None, "pause", "resume", "stop"]))
        path = self.world.stack.schema_dir / f"{self.world.settings.topics.assignments}.json"
        contract = path.read_text()
        doc = json.loads(contract)
        # beside the contract's own terms, not around them: its "$ref"s name its root
        doc["properties"]["value"]["not"] = {"properties": {"experiment": {"const": e.spec.id}}}
        path.write_text(json.dumps(doc))
        try:
            self.note("refusal: the broker refuses", e.spec.id)
            self.now = _day_of(self.now) + DAY + DAY_HOUR
            self.read(lambda: self.clock.set(self.now))
            self._clock_moved()
            self.world.stats["boundaries"] += 1
            if kind is not None:
                self._lifecycle(kind, e, refused=True)
            # the others are not held up: every product but the refused one's shows what is
            # in force
            theirs = set(e.products)
            self.run(
                wait_until(
                    lambda: not [m for m in self._mismatches() if m.split(":")[0] not in theirs],
                    SETTLE,
                    f"the others' messages while {e.spec.id}'s are refused",
                )
            )
            held = [m for m in self._mismatches() if m.split(":")[0] in theirs]
            if held:  # the refusal is real: its messages are not out (none may be due)
                self.world.stats["refusals that held messages up"] += 1
                self.say(f"refusal: held up {held}")
        finally:
            path.write_text(contract)
        self.world.stats["refusals"] += 1
        self.note("refusal: taken again", e.spec.id)

    def broker_restart(self, data: st.DataObject) -> None:
        """The broker stopped (SIGTERM or kill -9) and started again on its port, its topics
        kept in S3: the workers and the outside readers reconnect. Only with a broker whose
        topics outlive a restart (``PRICELAB_CONTRACT_BROKER_S3``): in memory they would be
        gone, and the checks with them."""
        if self.world.stack.broker_s3_endpoint is None:
            return
        kill = data.draw(st.booleans())
        self.world.stack.restart_broker(kill=kill)
        how = "kill -9" if kill else "SIGTERM"
        self.world.stats[f"broker {how}"] += 1
        self.note(f"broker: {how} and restart")

    # ------------------------------------------------------------------ checks
    def _expected(self, product: str) -> tuple[Exp, str] | None:
        """The experiment whose message must be last for the product, and its status."""
        began = [e for e in self.exps.values() if e.began and product in e.spec.all_products()]
        if not began:
            return None
        e = began[-1]
        status = e.phase
        if e.phase == "running" and self._frozen(e.spec.id):
            status = "frozen"
        return e, status

    def _mismatches(self) -> list[str]:
        self.world.assignments.catch_up()
        last: dict[str, dict[str, Any]] = {}
        for m in self.world.assignments.log:
            if m["product"] in self.pool:
                last[m["product"]] = m
        out = []
        for product in self.pool:
            want = self._expected(product)
            got = last.get(product)
            if want is None:
                if got is not None:
                    out.append(f"{product}: {got} on the topic, no experiment began over it")
                continue
            e, status = want
            if got is None:
                out.append(f"{product}: nothing on the topic; {e.spec.id} {status} in force")
                continue
            periods = {e.period, e.period + 1} if e.kind == "triggered" else {e.period}
            seen = (got["experiment"], got["status"], got["period"] in periods)
            if seen != (e.spec.id, status, True):
                out.append(
                    f"{product}: last message {got['experiment']} {got['status']} period "
                    f"{got['period']} seq {got['seq']}; the model has {e.spec.id} {status} "
                    f"period {e.period}"
                )
                continue
            if e.kind != "triggered":
                policy = CONTROL_POLICY
                if status == "running":
                    policy = e.spec.policy(arm_index(e.spec, draw(e.spec, product, e.period)))
                if got["policy"] != policy:
                    out.append(f"{product}: policy {got['policy']}, the model has {policy}")
        return out

    @invariant()
    @recorded
    def the_last_message_of_each_product_is_the_one_in_force(self) -> None:
        waited = time.monotonic()
        shown = False

        async def settled() -> bool:
            nonlocal shown
            wrong = self._mismatches()
            if wrong and not shown and time.monotonic() - waited > 15:
                shown = True  # what the topic shows while the system still has time to settle
                self.say(f"not settled after 15 s: {wrong}")
            return not wrong

        try:
            self.run(wait_until(settled, SETTLE, "the topic to show what is in force"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self._mismatches()}") from None

    @invariant()
    @recorded
    def seq_never_falls_and_a_repeat_is_a_copy(self) -> None:
        log: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for m in self.world.assignments.log:
            if m["product"] in self.pool:
                log[(m["experiment"], m["product"])].append(m)
        for key, msgs in log.items():
            for before, after in zip(msgs, msgs[1:], strict=False):
                assert after["seq"] >= before["seq"], f"{key}: seq fell: {before} -> {after}"
                if after["seq"] == before["seq"]:
                    a, b = (_content(m) for m in (before, after))
                    assert a == b, f"{key}: seq {after['seq']} with two contents: {a} {b}"

    def _replies(self) -> Counter[str]:
        self.world.replies.catch_up()
        mine = set(self.commands)
        return Counter(r["command_id"] for r in self.world.replies.log if r["command_id"] in mine)

    @invariant()
    @recorded
    def every_command_has_one_reply(self) -> None:
        # the sender had its reply: the outside reader reads it too, and no second one
        self.run(
            wait_until(
                lambda: all(self._replies()[c] for c in self.commands),
                SETTLE,
                "every reply read by the outside reader",
            )
        )
        n = self._replies()
        assert {c: n[c] for c in self.commands if n[c] != 1} == {}, "replies per command"

    @invariant()
    @recorded
    def every_sale_is_counted_once(self) -> None:
        for e in self.exps.values():
            got = self.read(partial(self._events, e))
            assert got == e.sales, f"{e.spec.id}: {got} sales counted, {e.sales} sent"

    @invariant()
    @recorded
    def every_due_fire_is_recorded_once_and_no_other(self) -> None:
        for e in self.exps.values():
            if e.kind == "triggered":
                got = self.read(partial(self.store.triggers, e.spec.id))
                assert got == e.fired, (e.spec.id, got, e.fired)

    @invariant()
    @recorded
    def no_verdict_is_turned_back(self) -> None:
        self.world.estimates.catch_up()
        decided: dict[str, dict[str, Any]] = {}
        for v in self.world.estimates.log:
            if v.get("kind") != "verdict" or v["experiment"] not in self.exps:
                continue
            self.world.stats["verdicts"] += 1
            first = decided.get(v["experiment"])
            if first is not None:
                assert (v["verdict"], v.get("arm")) == (first["verdict"], first.get("arm")), (
                    f"{v['experiment']}: {first['verdict']} turned to {v['verdict']}"
                )
            elif v["verdict"] != "keep_running":
                decided[v["experiment"]] = v


def _content(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "_at"}


def _day_of(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def test_the_contract_under_random_interleavings(world: World, request) -> None:
    ContractMachine.world = world
    ContractMachine.examples, ContractMachine.spent, ContractMachine.failed = 0, False, False
    # real processes are not a function of the steps: a replay to shrink a failure would not
    # meet the same state, so none is tried (the steps printed with -s are the record)
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if long_profile(request.config):
        chosen = settings(phases=phases)  # the long profile's examples and steps
        minutes = float(os.environ.get("PRICELAB_CONTRACT_MINUTES", "0"))
        ContractMachine.max_examples = None
        ContractMachine.until = time.monotonic() + 60 * minutes if minutes else None
    else:
        chosen = settings(
            max_examples=SHORT_EXAMPLES,
            stateful_step_count=SHORT_STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,
            phases=phases,
        )
        ContractMachine.max_examples, ContractMachine.until = SHORT_EXAMPLES, None
    started = time.monotonic()
    try:
        run_state_machine_as_test(ContractMachine, settings=chosen)
    except Enough:
        pass
    except FlakyStrategyDefinition:
        # the example that found the budget spent drew nothing where hypothesis expected
        # draws: that is the budget's end, not a flaky strategy
        if ContractMachine.failed or not ContractMachine.spent:
            raise
    finally:
        print(
            f"contract: {ContractMachine.examples} examples in "
            f"{time.monotonic() - started:.0f}s: {dict(sorted(world.stats.items()))}"
        )
