"""One experiment whose messages the broker refuses holds up no other experiment's flips or
looks (its own triggered fires wait; docs/operations.md says what that stops).

- One experiment whose messages the broker refuses at every tick does not hold up the other
  experiments' flips (``Flipper._tick`` takes a decision still to be published after the
  rest). ``aa`` comes first in the store's order, so before the change its refused decision
  raised out of every tick ahead of ``zz``'s flip.
- A triggered experiment's fires wait for its decision without holding up the flip tick
  that publishes it. Before, the timer's ``TriggerRunner.advance`` (which runs before the
  tick) and a competitor batch that fired both polled for the decision holding the
  experiment's lock, so the tick never came. Meanwhile no timer saves the experiment's
  trigger state (``trigger_save.lua``).
- A competitor batch that fires while its experiment's decision is to be published keeps
  its fires in Redis and goes on (issue #56, item 3): the worker's later batches, of every
  triggered experiment, fire at once and commit; the kept fires are announced once, with a
  later seq, by the first save after the decision is out (any controller's timer). Before,
  the batch waited for the decision, and every later batch of the worker behind it.
- A stopped experiment's last messages go out before a new holder's of its products.
- An experiment whose estimates the broker refuses at every cycle does not hold up the
  others' looks (and their guardrail checks): ``AnalysisWorker.run_once`` takes the one
  whose look failed latest last.

The refusal is the real broker's: the session's stack checks every message against its
topic's contract, and the sinks below send one experiment's messages with a field that
breaks it, as a bug in one design's messages would (a broker that fails while it restarts
refuses them the same way, for a while)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import UnknownError

from controller.designs import Assignment
from controller.settings import Settings
from controller.spec import load_spec
from streams.worker.schemas import CompetitorPrice
from streams.worker.sinks import assignment_message
from tests.integration.conftest import read_topic, wait_until
from tests.integration.test_chunked_analysis import _period
from tests.integration.test_triggers_freezes import triggered_doc

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


class _Refusing:
    """One of the runtime's own sinks (``real``), through which the messages of the
    experiments in ``refused`` go to the broker breaking the ``topic``'s contract instead."""

    def __init__(self, real: Any, runtime: Any, topic: str) -> None:
        self._real = real
        self._publisher = runtime.publisher
        self._topic = topic
        self.refused: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def _send_broken(self, docs: list[tuple[dict[str, Any], str | None]]) -> None:
        for doc, key in docs:
            await self._publisher.send(self._topic, json.dumps(doc).encode(), key=key)
        await self._publisher.flush()


class ContractBreaking(_Refusing):
    """The assignment sink: a refused experiment's assignments go with ``seq`` a string."""

    def __init__(self, runtime: Any, settings: Settings) -> None:
        super().__init__(runtime.flipper.sink, runtime, settings.topics.assignments)

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None:
        mine = list(assignments)
        if not (mine and mine[0].experiment in self.refused):
            await self._real.publish_assignments(assignments, seq, status)
            return
        broken = {"seq": str(seq)}
        await self._send_broken(
            [
                (assignment_message(a, seq, status).model_dump(mode="json") | broken, a.product)
                for a in mine
            ]
        )


def _spec(exp_id: str, products: list[str], **over: Any) -> Any:
    """A plain two-arm experiment of daily periods from START (``over``: other fields)."""
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=4)).isoformat(),
            "washout": "PT1H",
            "seed": 3,
        }
        | over
    )


async def test_an_experiment_the_broker_refuses_does_not_hold_up_the_others_flips(
    runtime: Any, settings: Settings
) -> None:
    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("aa", ["a1", "a2"]), backfill=True)
    await flipper.create(_spec("bb", ["b1"]), backfill=True)
    await flipper.create(_spec("zz", ["z1", "z2", "z3"]), backfill=True)
    assert await store.experiment_ids() == ["aa", "bb", "zz"]  # the store's order

    async def pending(exp: str) -> bool:
        st = await store.get_experiment(exp)
        return st.flipped_period == 1 and st.seq > st.published  # decided, not out

    # aa's messages are refused for good, bb's for a while
    sink.refused = {"aa", "bb"}
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    # the first tick decides aa's flip, and the broker refuses its messages
    with pytest.raises(UnknownError):
        await flipper.tick()
    assert await pending("aa")  # the fault happened
    assert (await store.get_experiment("bb")).flipped_period == 0  # this tick ended at aa
    # the next takes aa last, after bb's flip (refused)
    with pytest.raises(UnknownError):
        await flipper.tick()
    assert await pending("bb")
    assert (await store.get_experiment("zz")).flipped_period == 0
    # the next flips zz before it tries aa's and bb's messages again
    with pytest.raises(UnknownError):
        await flipper.tick()
    assert (await store.get_experiment("zz")).published_through(1)
    assert await pending("aa") and await pending("bb")

    # bb's messages are taken again: its redo comes before aa's, whose try failed later
    sink.refused = {"aa"}
    with pytest.raises(UnknownError):
        await flipper.tick()
    assert (await store.get_experiment("bb")).published_through(1)
    assert await pending("aa")

    msgs = await read_topic(settings, settings.topics.assignments, expect=2 + 1 + 1 + 3 + 3)
    periods = sorted((m["experiment"], m["period"]) for m in msgs)
    # aa: period 0 only (its period 1 was refused); bb and zz: periods 0 and 1
    assert periods == [("aa", 0)] * 2 + [("bb", 0), ("bb", 1)] + [("zz", 0)] * 3 + [("zz", 1)] * 3

    # the broker takes aa's messages again: the next tick finishes its decision
    sink.refused = set()
    assert await flipper.tick() == 0  # a redo, not a new flip
    assert (await store.get_experiment("aa")).published_through(1)


async def test_a_stopped_experiments_products_are_claimed_only_once_its_last_messages_are_out(
    runtime: Any, settings: Settings
) -> None:
    """Issue #56, item 1. A stopped experiment's last messages must reach the topic before a
    new holder's of its products (a compacted topic keeps a product's last message). Before,
    its products were free once the stop was decided, and only a tick's order (its last
    messages first) kept that: a pause or resume of the new holder, or another controller's
    tick, could send the new holder's first. Now a creation cannot claim them while the
    stop's messages are not out (``lua/holds.lua``: the holder reads ``releasing``), and is
    refused with one sentence; once the broker takes them, the creation goes through."""
    from controller.errors import ConflictError

    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("zz", ["p1", "p2"]), backfill=True)

    sink.refused = {"zz"}
    stopped = await flipper.stop("zz")  # decided and kept: the reply says its messages wait
    assert stopped.state == "stopped" and stopped.pending
    zz = await store.get_experiment("zz")
    assert zz.lifecycle.final and zz.seq > zz.published  # the fault: decided, not out

    # "aa" asks for zz's products: refused while zz's last messages wait, with why
    with pytest.raises(ConflictError, match="last assignment messages the broker has not taken"):
        await flipper.create(_spec("aa", ["p2", "p3"]), backfill=True)
    assert "aa" not in await store.experiment_ids()
    # a product zz never had is free, as before
    await flipper.create(_spec("bb", ["p3"]), backfill=True)
    # a pause and a resume of another experiment go on meanwhile
    await flipper.pause("bb", "check")
    await flipper.resume("bb")

    sink.refused = set()
    await flipper.tick()  # zz's stop goes out: its products are free now
    zz = await store.get_experiment("zz")
    assert zz.seq == zz.published
    created = await flipper.create(_spec("aa", ["p1", "p2"]), backfill=True)
    assert created.state == "running"
    await flipper.pause("aa", "check")
    await flipper.resume("aa")

    msgs = await read_topic(
        settings,
        settings.topics.assignments,
        expect=2 + 2 + 2 * 3,
        until=lambda ms: sum(m["experiment"] == "aa" for m in ms) >= 6,
        with_position=True,
    )
    last: dict[str, tuple[tuple[int, int], str, str]] = {}
    for m in msgs:
        if m["product"] not in ("p1", "p2"):
            continue
        at = (m["_partition"], m["_offset"])
        if m["product"] not in last or at > last[m["product"]][0]:
            last[m["product"]] = (at, m["experiment"], m["status"])
    # the stop's messages came before every one of aa's: aa's last is what a pricing system
    # reads, and the compacted topic keeps
    assert {p: v[1:] for p, v in last.items()} == {
        "p1": ("aa", "running"),
        "p2": ("aa", "running"),
    }
    for p in ("p1", "p2"):  # one key, one partition: offsets order a product's messages
        mine = [m for m in msgs if m["product"] == p]
        (stop_at,) = [
            m["_offset"] for m in mine if (m["experiment"], m["status"]) == ("zz", "stopped")
        ]
        assert min(m["_offset"] for m in mine if m["experiment"] == "aa") > stop_at


def _price(product: str, price: float, at: datetime) -> CompetitorPrice:
    return CompetitorPrice.model_validate(
        {"v": 1, "product": product, "competitor": "shop-x", "price": price, "observed_at": at}
    )


async def _triggered_with_a_decision_to_publish(
    runtime: Any, settings: Settings
) -> tuple[ContractBreaking, datetime]:
    """A triggered experiment whose flip into period 1 is decided and refused by the broker;
    returns the sink and the instant of the flip."""
    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    await runtime.clock.set(START + timedelta(hours=1))
    await runtime.flipper.create(load_spec(triggered_doc()), backfill=True)
    sink.refused = {"trig"}
    t = START + timedelta(days=1, minutes=2)
    await runtime.clock.set(t)
    with pytest.raises(UnknownError):
        await runtime.flipper.tick()
    trig = await runtime.store.get_experiment("trig")
    assert trig.seq > trig.published  # the fault: a decision still to be published
    return sink, t


async def test_the_timer_leaves_a_due_fire_to_a_later_tick_while_a_decision_is_to_be_published(
    runtime: Any, settings: Settings
) -> None:
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    store, triggers = runtime.store, runtime.triggers
    # b undercuts the reference price of 100 by 10% (no fire yet: not sustained)
    assert await triggers.on_prices([_price("b", 90.0, t)]) == []
    # 40 minutes on, beyond the 5 minutes the watermark lags, b's undercut is due to fire
    await runtime.clock.set(t + timedelta(minutes=45))
    # the timer's advance returns, leaving b's fire to a later tick (before, it polled for
    # the decision for good, and the flip tick that publishes it runs after it)
    assert await asyncio.wait_for(triggers.advance(), 30) == []
    assert await store.triggers("trig") == {}

    # the broker takes the messages again: the tick publishes the decision, then b fires
    sink.refused = set()
    assert await runtime.flipper.tick() == 0  # a redo, not a new flip
    assert (await store.get_experiment("trig")).published_through(1)
    assert [f.product for f in await triggers.advance()] == ["b"]
    assert set(await store.triggers("trig")) == {"b"}


async def test_a_batch_that_fires_keeps_its_fire_until_the_decision_is_out(
    runtime: Any, settings: Settings
) -> None:
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    store, triggers = runtime.store, runtime.triggers
    await runtime.clock.set(t + timedelta(minutes=45))
    # a batch of two prices of e, 35 minutes apart, 10% under its reference price: the
    # undercut is sustained, and fires e; the fire is kept, and the batch returns
    e_prices = [_price("e", 90.0, t), _price("e", 90.0, t + timedelta(minutes=35))]
    assert await asyncio.wait_for(triggers.on_prices(e_prices), 30) == []
    assert await store.triggers("trig") == {}  # the decision's redo reads none of it
    assert set(await store.kept_triggers("trig")) == {"e"}
    # the timer's advance returns and carries out nothing while the decision waits
    assert await asyncio.wait_for(triggers.advance(), 30) == []
    assert set(await store.kept_triggers("trig")) == {"e"}

    # the broker takes the messages again: the tick publishes the decision, the next
    # tick's timer announces the kept fire
    sink.refused = set()
    assert await runtime.flipper.tick() == 0
    assert [f.product for f in await triggers.advance()] == ["e"]
    assert set(await store.triggers("trig")) == {"e"}
    assert await store.kept_triggers("trig") == {}
    assert await triggers.advance() == []  # once


async def test_a_fire_kept_across_its_windows_first_boundary_is_in_that_periods_records(
    runtime: Any, settings: Settings
) -> None:
    """e fires while the flip into period 1 waits for the broker, for period 2; the broker
    takes the messages again only after period 2's boundary. The tick that publishes the
    waiting decision must not flip into period 2 before e's kept fire is carried out: the
    flip's records (which route e's sales) and messages must hold e's window, as they do
    for a fire announced in time (before, the flip was decided from the triggers without e,
    and period 2's sales of e went by a record that did not know its trigger)."""
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    store, triggers = runtime.store, runtime.triggers
    await runtime.clock.set(t + timedelta(minutes=45))
    e_prices = [_price("e", 90.0, t), _price("e", 90.0, t + timedelta(minutes=35))]
    assert await asyncio.wait_for(triggers.on_prices(e_prices), 30) == []
    assert set(await store.kept_triggers("trig")) == {"e"}
    assert await store.assignment_record("trig", 2, "e") is None

    # past period 2's boundary, the broker takes trig's messages again: ticks as the flip
    # timer runs them (its timer's advance first, then the flips)
    await runtime.clock.set(START + timedelta(days=2, minutes=2))
    sink.refused = set()
    for _ in range(3):
        await asyncio.wait_for(triggers.advance(), 30)
        await runtime.flipper.tick()
    trig = await store.get_experiment("trig")
    assert trig.flipped_period == 2 and trig.seq <= trig.published
    assert await store.kept_triggers("trig") == {}
    assert (await store.triggers("trig")).get("e") == 2
    in_2 = str(await store.assignment_record("trig", 2, "e")).split("|")
    # the flip into period 3, inside e's window of 3 periods from 2, records e in its
    # window: period 2's record is the same, with the washout of the window's start
    # (before, period 2 had e's untriggered record, C|0||)
    await runtime.clock.set(START + timedelta(days=3, minutes=2))
    await asyncio.wait_for(triggers.advance(), 30)
    assert await runtime.flipper.tick() == 1
    in_3 = str(await store.assignment_record("trig", 3, "e")).split("|")
    assert in_2[:2] == in_3[:2] and in_2[3] == "washout"


def _other_controller(runtime: Any, settings: Settings) -> Any:
    """Another controller's trigger runner, on the same Redis and clock."""
    from controller.trigger_runner import TriggerRunner

    return TriggerRunner(
        runtime.store, runtime.assignment_sink, runtime.clock, settings.trigger_watermark_lag
    )


async def test_another_controllers_timer_carries_out_the_kept_fire_once_the_decision_is_out(
    runtime: Any, settings: Settings
) -> None:
    """Issue #56, item 2, now that a batch keeps its fires. Once the decision a batch waited
    for was out, another controller's timer could save its watermark before the batch's next
    try (10 ms later), and the batch's prices, older than the watermark, counted as stale:
    its fire was lost. Now the batch's prices and its fire are saved while the decision
    waits; another controller's timer, first after the decision, announces that fire (once),
    and none of the batch's prices is stale."""
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    store, triggers = runtime.store, runtime.triggers
    await runtime.clock.set(t + timedelta(minutes=45))
    other = _other_controller(runtime, settings)
    e_prices = [_price("e", 90.0, t), _price("e", 90.0, t + timedelta(minutes=35))]
    assert await asyncio.wait_for(triggers.on_prices(e_prices), 30) == []
    assert set(await store.kept_triggers("trig")) == {"e"}

    sink.refused = set()
    assert await runtime.flipper.tick() == 0  # the decision is out
    # the other controller's timer comes first, with its watermark 40 minutes on
    assert [f.product for f in await other.advance()] == ["e"]
    assert await triggers.advance() == []  # this worker's timer: nothing twice
    assert set(await store.triggers("trig")) == {"e"}
    _, state = await store.trigger_state("trig")
    assert state is not None and state["stale"] == 0  # none of the batch's prices was stale
    assert not await store.redis.exists(f"{store.exp('trig')}:trigger_waits")


def _triggered_b_doc() -> dict[str, Any]:
    """A second triggered experiment, like ``triggered_doc``'s, on products of its own."""
    doc = triggered_doc("trigb")
    doc["clusters"] = {"x55": ["x1", "x2", "x3", "x4"], "x65": ["x5", "x6", "x7", "x8"]}
    doc["triggered"] = doc["triggered"] | {
        "reference_prices": {f"x{i}": 100.0 for i in range(1, 9)}
    }
    return doc


async def test_another_experiments_fires_in_the_same_batch_go_out_at_once(
    runtime: Any, settings: Settings
) -> None:
    """Issue #56, item 3: a batch whose events of the refused experiment come first fires the
    other experiment's products at once. Before, the batch waited for the refused decision
    before it applied the other experiment's events at all."""
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    runtime.triggers.sink = sink  # the runner's announcements of trig are refused too
    await runtime.flipper.create(load_spec(_triggered_b_doc()), backfill=True)
    await runtime.clock.set(t + timedelta(minutes=45))
    batch = [
        _price("e", 90.0, t),
        _price("e", 90.0, t + timedelta(minutes=35)),
        _price("x2", 90.0, t),
        _price("x2", 90.0, t + timedelta(minutes=35)),
    ]
    fired = await asyncio.wait_for(runtime.triggers.on_prices(batch), 30)
    assert [f.product for f in fired] == ["x2"]
    assert set(await runtime.store.triggers("trigb")) == {"x2"}
    assert set(await runtime.store.kept_triggers("trig")) == {"e"}


async def test_a_decision_refused_for_good_does_not_stop_the_workers_competitor_batches(
    runtime: Any, settings: Settings
) -> None:
    """Issue #56, item 3, through the worker's own competitor consumer on the real broker.
    Experiment trig's decision is refused for good and a batch fires trig's product e; a
    later batch fires trigb's x2. Before, the first batch waited for trig's decision, every
    later batch of the worker behind it (trigb's announcement never came, no offset was
    committed, and after max_poll_interval_ms the group dropped the consumer). Now the
    first batch keeps e's fire in Redis and both batches commit; trigb's announcement is on
    the assignments topic within seconds. Once the broker takes trig's messages again,
    another controller (the fire is in Redis, not in this worker) announces e once, with a
    seq after the decision's, and seq rises strictly for every product on the topic."""
    from streams.worker.consumer import BatchConsumer
    from streams.worker.kafka import JsonPublisher

    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    runtime.triggers.sink = sink  # the runner's announcements of trig are refused too
    store, topics = runtime.store, settings.topics
    decision = (await store.get_experiment("trig")).seq
    await runtime.flipper.create(load_spec(_triggered_b_doc()), backfill=True)
    await runtime.clock.set(t + timedelta(minutes=45))

    exits: list[int] = []
    consumer = BatchConsumer(
        settings,
        topics.competitor_prices,
        f"{settings.app_id}-competitor",
        runtime.competitor.handle,
        batch_size=500,
        within=settings.competitor_batch_within,
        exit=exits.append,  # a batch that cannot finish must not end the test's process
    )
    pub = JsonPublisher(settings)
    await pub.start()
    await consumer.start()

    def consumed() -> float:
        got = runtime.metrics.registry.get_sample_value(
            "pricelab_events_consumed_total", {"topic": topics.competitor_prices}
        )
        return got or 0.0

    async def send(product: str) -> None:
        for minutes in (0, 35):  # 10% under, sustained 35 minutes: fires the product
            doc = _price(product, 90.0, t + timedelta(minutes=minutes))
            await pub.send(topics.competitor_prices, doc.model_dump_json().encode(), product)
        await pub.flush()

    try:
        await send("e")
        await wait_until(lambda: consumed() >= 2, 60, "trig's batch handed to the runner")
        sent = time.monotonic()
        await send("x2")

        def announced(msgs: list[dict[str, Any]]) -> bool:
            return any((m["experiment"], m["product"], m["period"]) == ("trigb", "x2", 2)
                       for m in msgs)  # fmt: skip

        got = await read_topic(
            settings, topics.assignments, expect=10**6, timeout=30, until=announced
        )
        took = time.monotonic() - sent
        # well under max_poll_interval_ms (300 s): before, it never came
        assert announced(got), "trigb's announcement did not reach the topic"
        assert took < 30
        # both batches committed (4 events on the topic's partitions)
        await wait_until(lambda: sum(consumer.committed.values()) >= 4, 30, "the commits")
        assert set(await store.kept_triggers("trig")) == {"e"}  # kept, in Redis
    finally:
        await consumer.stop()
        await pub.stop()
    assert exits == []

    # the worker's consumer is gone (as after a crash once it committed): another
    # controller carries the kept fire out once the broker takes trig's messages again
    sink.refused = set()
    assert await runtime.flipper.tick() == 0
    other = _other_controller(runtime, settings)
    assert [f.product for f in await other.advance()] == ["e"]
    assert await runtime.triggers.advance() == []

    def trig_e(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in msgs if (m["experiment"], m["product"]) == ("trig", "e")]

    msgs = await read_topic(
        settings,
        topics.assignments,
        expect=10**6,
        timeout=30,
        until=lambda ms: any(m["period"] == 2 for m in trig_e(ms)),
        with_position=True,
    )
    fire = [m for m in trig_e(msgs) if m["period"] == 2]
    assert len(fire) == 1 and fire[0]["seq"] > decision  # once, after the decision
    # one key, one partition: offsets order a product's messages; seq rises strictly
    by_product: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for m in msgs:
        by_product.setdefault((m["experiment"], m["product"]), []).append((m["_offset"], m["seq"]))
    for key, seen in by_product.items():
        seqs = [seq for _, seq in sorted(seen)]
        assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), (key, seqs)
    events = await read_topic(
        settings,
        topics.experiment_events,
        expect=10**6,
        timeout=10,
        until=lambda ms: sum(m.get("kind") == "triggered" for m in ms) >= 2,
    )
    fired = [
        (m["experiment"], m["detail"]["product"]) for m in events if m.get("kind") == "triggered"
    ]
    assert sorted(fired) == [("trig", "e"), ("trigb", "x2")]


class RefusedEstimates(_Refusing):
    """The estimate sink: a refused experiment's estimate goes with ``effect`` a string."""

    def __init__(self, runtime: Any, settings: Settings) -> None:
        super().__init__(runtime.analysis.sink, runtime, settings.topics.estimates)

    async def publish(self, experiment: str, result: Any, as_of: datetime, cs: Any) -> None:
        if experiment not in self.refused:
            await self._real.publish(experiment, result, as_of, cs)
            return
        doc = {"experiment": experiment, "as_of": as_of.isoformat(), "estimator": "dm"}
        await self._send_broken([(doc | {"effect": "1.0"}, None)])


def _hourly_spec(exp_id: str) -> Any:
    return _spec(
        exp_id,
        [f"{exp_id}-{i}" for i in range(20)],
        design="random-days",
        end=(START + timedelta(hours=14)).isoformat(),
        period="PT1H",
        washout="PT10M",
        seed=5,
    )


async def test_an_experiment_whose_estimates_the_broker_refuses_does_not_hold_up_the_others(
    runtime: Any, settings: Settings
) -> None:
    sink = RefusedEstimates(runtime, settings)
    runtime.analysis.sink = sink
    store, analysis = runtime.store, runtime.analysis
    for exp in ("aa", "zz"):
        spec = _hourly_spec(exp)
        await store.create_experiment(spec, START)
        for k in range(4):  # four periods flipped and sold (the panel's cells)
            await _period(store, spec, k)
    await runtime.clock.set(START + timedelta(hours=4, minutes=5))
    assert [i.id for i in await analysis.source.experiments()] == ["aa", "zz"]

    def of(msgs: list[dict[str, Any]], exp: str) -> list[dict[str, Any]]:
        return [m for m in msgs if m["experiment"] == exp and m.get("kind") is None]

    sink.refused = {"aa"}
    with pytest.raises(UnknownError):  # aa's look comes first, and the broker refuses it
        await analysis.run_once()
    # the next cycle looks at zz before it tries aa again (refused again)
    with pytest.raises(UnknownError):
        await analysis.run_once()
    topic = settings.topics.estimates
    got = await read_topic(
        settings, topic, expect=10**6, timeout=10, until=lambda m: bool(of(m, "zz"))
    )
    assert of(got, "zz") and not of(got, "aa")  # the fault: none of aa's estimates is out

    # the broker takes aa's estimates again: the next cycle publishes both
    sink.refused = set()
    await analysis.run_once()
    got = await read_topic(
        settings, topic, expect=10**6, timeout=10, until=lambda m: bool(of(m, "aa"))
    )
    assert of(got, "aa")


async def test_every_command_gets_one_reply_while_the_broker_refuses_an_experiments_messages(
    runtime: Any, settings: Settings
) -> None:
    """Issue #56, item 4. Create, freeze and unfreeze run a tick after their own change. Before,
    that tick raised the broker's refusal of *another* experiment's messages out of the
    command, and the operator got no reply (the worker's commands agent raised). Now each gets
    one reply: the command's own change is made; a pause of the refused experiment itself is
    refused with one sentence naming the broker (nothing of it was kept); and a pause whose
    decision was kept before its messages were refused is carried out, its reply saying the
    messages wait."""
    from streams.client.commands import freeze_document
    from streams.worker.handlers import RawEvent
    from streams.worker.schemas import Command

    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("aa", ["a1", "a2"]), backfill=True)
    sink.refused = {"aa"}
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    with pytest.raises(UnknownError):  # the fault: aa's flip is refused for good
        await flipper.tick()
    st = await store.get_experiment("aa")
    assert st.flipped_period == 1 and st.seq > st.published
    # on-call sees it: the gauge PricelabDecisionUnpublished reads, since the tick that failed
    waiting = "pricelab_decision_unpublished_since_timestamp_seconds"
    registry = runtime.metrics.registry
    since = (START + timedelta(days=1, minutes=1)).timestamp()
    assert registry.get_sample_value(waiting, {"experiment": "aa"}) == since

    async def command(n: int, kind: str, **fields: Any) -> Any:
        cmd = Command(command_id=f"cmd-{n}", kind=kind, actor="olga", **fields)  # type: ignore[arg-type]
        return await runtime.commands.handle(RawEvent(cmd.model_dump_json().encode()))

    now = START + timedelta(days=1, minutes=1)
    bb = _spec("bb", ["b1", "b2"]).to_json()
    created = await command(1, "create", spec=json.loads(bb), backfill=True)
    assert created.ok, created.error
    assert (await store.get_experiment("bb")).published_through(1)  # its own flip went out
    assert "messages" not in (created.detail or {})
    freeze = freeze_document(now, now + timedelta(hours=2), ["bb"], "stock count")
    frozen = await command(2, "freeze", freeze=freeze, reason="stock count")
    assert frozen.ok, frozen.error
    thawed = await command(3, "unfreeze", freeze_id=freeze["id"], reason="counted")
    assert thawed.ok, thawed.error

    # a pause of aa: its pending decision's redo is refused first, so nothing is decided
    refused = await command(4, "pause", experiment="aa", reason="check")
    assert not refused.ok
    assert refused.error.startswith("the broker refused experiment 'aa''s messages")
    assert (await store.get_experiment("aa")).lifecycle.phase.value == "running"

    # a pause of bb whose messages the broker refuses once it is decided: kept, and waiting
    sink.refused = {"aa", "bb"}
    paused = await command(5, "pause", experiment="bb", reason="check")
    assert paused.ok, paused.error
    assert paused.detail["state"] == "paused"
    assert paused.detail["messages"].startswith("not all sent yet")
    st = await store.get_experiment("bb")
    assert st.seq > st.published  # the fault happened: its messages are not out
    # the commands' ticks, which tried aa's messages again, kept when it began to wait
    assert registry.get_sample_value(waiting, {"experiment": "aa"}) == since

    replies = await read_topic(settings, settings.topics.command_replies, expect=5)
    by_id: dict[str, int] = {}
    for r in replies:
        by_id[r["command_id"]] = by_id.get(r["command_id"], 0) + 1
    assert by_id == {f"cmd-{n}": 1 for n in range(1, 6)}

    # the broker takes them again: the next tick sends both experiments' decisions
    sink.refused = set()
    await flipper.tick()
    for exp in ("aa", "bb"):
        st = await store.get_experiment(exp)
        assert st.seq == st.published
        assert registry.get_sample_value(waiting, {"experiment": exp}) is None


async def test_a_command_whose_state_was_so_already_says_so_while_its_messages_wait(
    runtime: Any, settings: Settings
) -> None:
    """A resume of an experiment that is running, while the broker refuses its flip's
    messages: the resume finds it running already and decides nothing, and says so
    (``already``), as it does once the messages are out. Before, the refused redo made the
    command reply as if it had carried the resume out (ok, no ``already``; its audit record
    the same), because the state was what it asked for."""
    from streams.worker.handlers import RawEvent
    from streams.worker.schemas import Command

    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("aa", ["a1", "a2"]), backfill=True)
    sink.refused = {"aa"}
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    with pytest.raises(UnknownError):  # the fault: aa's flip is refused
        await flipper.tick()
    st = await store.get_experiment("aa")
    assert st.phase == "running" and st.seq > st.published

    cmd = Command(command_id="cmd-r", kind="resume", actor="olga", experiment="aa")  # type: ignore[arg-type]
    resumed = await runtime.commands.handle(RawEvent(cmd.model_dump_json().encode()))
    assert resumed.ok, resumed.error
    assert resumed.detail["state"] == "running"
    assert resumed.detail.get("already") == "running"
    assert resumed.detail["messages"].startswith("not all sent yet")  # the flip's

    # a pause of it is refused (its flip's redo first): nothing of it is kept
    cmd = Command(command_id="cmd-p", kind="pause", actor="olga", experiment="aa", reason="x")  # type: ignore[arg-type]
    paused = await runtime.commands.handle(RawEvent(cmd.model_dump_json().encode()))
    assert not paused.ok
    assert (await store.get_experiment("aa")).phase == "running"


async def test_a_command_on_an_experiment_that_ended_while_its_messages_wait_is_refused_as_final(
    runtime: Any, settings: Settings
) -> None:
    """Found by the model-based test's long run: a resume sent after an experiment's end
    passed, while the broker refused its messages. The command's turn first kept the end the
    clock had made due, then its messages were refused, and the reply named the broker
    ("send the resume again once it takes them"), though no resend could carry it out. Now
    the reply is the refusal the state kept gives: the experiment has ended, and is final."""
    from streams.worker.handlers import RawEvent
    from streams.worker.schemas import Command

    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store = runtime.store
    await runtime.clock.set(START + timedelta(minutes=1))
    await runtime.flipper.create(_spec("aa", ["a1", "a2"]), backfill=True)
    sink.refused = {"aa"}
    await runtime.clock.set(START + timedelta(days=4, minutes=1))  # its end is due

    async def command(n: int, kind: str) -> Any:
        cmd = Command(  # type: ignore[arg-type]
            command_id=f"cmd-{n}", kind=kind, actor="olga", experiment="aa", reason="late"
        )
        return await runtime.commands.handle(RawEvent(cmd.model_dump_json().encode()))

    resumed = await command(1, "resume")
    st = await store.get_experiment("aa")
    assert st.phase == "ended" and st.seq > st.published  # the fault: the end waits
    assert not resumed.ok
    assert resumed.error == "experiment 'aa' has ended; an ended experiment is final"
    for n, kind in enumerate(("pause", "stop"), start=2):
        reply = await command(n, kind)
        assert not reply.ok and reply.error.endswith("an ended experiment is final"), reply
    # the broker takes them again: the end goes out, and nothing else was decided
    sink.refused = set()
    await runtime.flipper.tick()
    st = await store.get_experiment("aa")
    assert st.phase == "ended" and st.seq == st.published

    def ended(msgs: list[dict[str, Any]]) -> bool:
        last = {m["product"]: m["status"] for m in msgs}
        return last == {"a1": "ended", "a2": "ended"}

    assert ended(await read_topic(settings, settings.topics.assignments, expect=99, until=ended))


async def test_a_timer_that_meets_anothers_turn_does_not_hold_every_timer_up(
    runtime: Any, settings: Settings
) -> None:
    """The waiting batch's mark (``trigger_waits``) is a batch's: a timer's save that found the
    turn another's (code 2) set it as well, under an owner whose saves never clear it (a
    timer's save does not), so the timer's own next try was refused (code 3) and every
    controller's timer saved nothing of the experiment until the mark's lease ran out (its
    due fires held up that long)."""
    store, triggers, flipper = runtime.store, runtime.triggers, runtime.flipper
    await runtime.clock.set(START + timedelta(hours=1))
    await flipper.create(load_spec(triggered_doc()), backfill=True)
    t = START + timedelta(hours=2)
    await runtime.clock.set(t)
    assert await triggers.on_prices([_price("b", 90.0, t)]) == []  # an undercut begins
    await runtime.clock.set(t + timedelta(minutes=45))  # b's is due for the timer
    # another holds the experiment's turn for a moment (a flip, a batch announcing)
    assert await store.take_turn("trig", "someone-else", 300)
    fired = await asyncio.wait_for(triggers.advance(), 30)
    assert [f.product for f in fired] == ["b"]  # it waited for the turn, then fired b
    assert not await store.redis.exists(f"{store.exp('trig')}:trigger_waits")


async def test_a_decision_another_controller_published_is_not_reported_waiting(
    runtime: Any, settings: Settings
) -> None:
    """PricelabDecisionUnpublished: a controller's gauge for an experiment whose decision
    another controller has published since is removed at its next tick, also when that tick
    raises before it reaches the experiment (an earlier one's flip refused). Before, the
    series stayed while such a tick raised: a page naming an experiment whose messages were
    all out."""
    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("a0", ["x1"]), backfill=True)
    await flipper.create(_spec("aa", ["a1"]), backfill=True)
    sink.refused = {"aa"}
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    with pytest.raises(UnknownError):  # aa's flip refused (a0's went out)
        await flipper.tick()
    waiting = "pricelab_decision_unpublished_since_timestamp_seconds"
    registry = runtime.metrics.registry
    assert registry.get_sample_value(waiting, {"experiment": "aa"}) is not None
    # another controller's redo gets aa's messages out (the broker takes them there)
    aa = await store.get_experiment("aa")
    await store.mark_published("aa", aa.seq)
    sink.refused = {"a0"}
    await runtime.clock.set(START + timedelta(days=2, minutes=1))
    with pytest.raises(UnknownError):  # a0's flip, before aa's in the tick, refused
        await flipper.tick()
    assert (await store.get_experiment("aa")).flipped_period == 1  # the tick did not reach it
    assert registry.get_sample_value(waiting, {"experiment": "aa"}) is None
    assert registry.get_sample_value(waiting, {"experiment": "a0"}) is not None


async def test_a_stopped_experiment_the_broker_refuses_does_not_hold_up_the_others_flips(
    runtime: Any, settings: Settings
) -> None:
    """A stopped experiment's last messages refused for good hold up only the creations that
    ask for its products (``lua/holds.lua``). Before, a tick took them first and raised there
    (a command's tick stopped there), so no experiment of any controller flipped while the
    broker refused them: the final-first order of a tick, which the claims made needless."""
    sink = ContractBreaking(runtime, settings)
    runtime.flipper.sink = sink
    store, flipper = runtime.store, runtime.flipper
    await runtime.clock.set(START + timedelta(minutes=1))
    await flipper.create(_spec("aa", ["a1"]), backfill=True)
    await flipper.create(_spec("zz", ["z1"]), backfill=True)
    sink.refused = {"zz"}
    assert (await flipper.stop("zz")).pending  # the fault: its last messages refused
    await runtime.clock.set(START + timedelta(days=1, minutes=1))
    with pytest.raises(UnknownError):  # zz's, tried again after aa's flip
        await flipper.tick()
    assert (await store.get_experiment("aa")).published_through(1)
    # a command's tick goes on past it too: bb's own flip goes out
    created = await flipper.create(_spec("bb", ["b1"]), backfill=True)
    assert created.state == "running" and not created.pending
    zz = await store.get_experiment("zz")
    assert zz.seq > zz.published  # still refused: its products wait
