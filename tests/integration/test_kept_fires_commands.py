"""A lifecycle command decided while a triggered experiment still has fires kept (issue #56,
item 3: a competitor batch that fires while a decision of its experiment is to be published
keeps its fires in ``trigger_kept``; ``lua/trigger_save.lua``).

The decision waiting for the broker is published again (a tick's redo), and before any
timer carries the kept fire out, an operator pauses, resumes or stops the experiment. The
command's decision takes the kept fire in: ``lua/decide.lua`` moves it to the triggers hash
in the same step as the decision, and the decision's records and messages are built with
it. So a pause shows control and keeps the fire recorded, the resume's messages treat the
product from the resume on, a stop ends it, and no later save announces it again. Before,
the command decided from the triggers without the fire: it was recorded nowhere the
decisions read while the experiment was paused or stopped, the resume's messages held the
product on control, and the first save after the resume announced the fire for its old
period with a seq above the resume's.

On the real broker and Redis, with the session's stack (the refusal is the broker's own, as
in tests/integration/test_one_refused_experiment.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from controller.settings import Settings
from tests.integration.conftest import read_topic
from tests.integration.test_one_refused_experiment import (
    START,
    _price,
    _triggered_with_a_decision_to_publish,
)

pytestmark = pytest.mark.integration


async def _a_kept_fire_after_the_decision_is_out(runtime: Any, settings: Settings) -> None:
    """trig's flip into period 1 waits for the broker; a batch fires e (for period 2) and
    keeps it; the broker takes the messages again and a tick publishes the decision, which
    leaves the kept fire to a timer that has not run yet."""
    sink, t = await _triggered_with_a_decision_to_publish(runtime, settings)
    store = runtime.store
    await runtime.clock.set(t + timedelta(minutes=45))
    e_prices = [_price("e", 90.0, t), _price("e", 90.0, t + timedelta(minutes=35))]
    assert await asyncio.wait_for(runtime.triggers.on_prices(e_prices), 30) == []
    assert set(await store.kept_triggers("trig")) == {"e"}
    sink.refused = set()
    assert await runtime.flipper.tick() == 0  # the decision's redo
    trig = await store.get_experiment("trig")
    assert trig.seq <= trig.published  # out
    assert set(await store.kept_triggers("trig")) == {"e"}  # still kept: no timer ran yet


async def _messages_of_e(runtime: Any, settings: Settings) -> list[dict[str, Any]]:
    """trig's messages of e on the assignments topic, through the last decision in force."""
    last = (await runtime.store.get_experiment("trig")).seq

    def e(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in msgs if (m["experiment"], m["product"]) == ("trig", "e")]

    got = await read_topic(
        settings,
        settings.topics.assignments,
        expect=10**6,
        timeout=30,
        until=lambda ms: any(m["seq"] >= last for m in e(ms)),
    )
    mine = e(got)
    assert any(m["seq"] == last for m in mine), "the last decision's message of e is missing"
    return mine


async def _fired_events_of_e(settings: Settings, through: str) -> list[dict[str, Any]]:
    """trig's ``triggered`` events of e in the audit trail, read through its ``through``
    event."""
    got = await read_topic(
        settings,
        settings.topics.experiment_events,
        expect=10**6,
        timeout=30,
        until=lambda ms: any((m["experiment"], m["kind"]) == ("trig", through) for m in ms),
    )
    assert any((m["experiment"], m["kind"]) == ("trig", through) for m in got), through
    return [
        m
        for m in got
        if (m["experiment"], m["kind"]) == ("trig", "triggered") and m["detail"]["product"] == "e"
    ]


def _counts(runtime: Any) -> tuple[float | None, float | None]:
    """trig's fires kept, and kept fires released (by a save or taken in by a decision)."""
    get = runtime.metrics.registry.get_sample_value
    labels = {"experiment": "trig"}
    return (
        get("pricelab_trigger_fires_kept_total", labels),
        get("pricelab_trigger_fires_released_total", labels),
    )


async def _timers_and_ticks(runtime: Any) -> list[str]:
    """A few rounds of the flip timer (its trigger advance first); the products it fired."""
    fired: list[str] = []
    for _ in range(2):
        fired += [f.product for f in await asyncio.wait_for(runtime.triggers.advance(), 30)]
        await runtime.flipper.tick()
    return fired


async def test_a_pause_keeps_the_kept_fire_recorded_and_the_resume_puts_it_in_force(
    runtime: Any, settings: Settings
) -> None:
    await _a_kept_fire_after_the_decision_is_out(runtime, settings)
    store, flipper = runtime.store, runtime.flipper

    # (a) the pause: its decision takes the kept fire in (recorded with the triggers, kept
    # no more), and its messages hold every product on control
    paused = await flipper.pause("trig")
    assert paused.state == "paused" and paused.seq is not None
    assert await store.kept_triggers("trig") == {}
    assert (await store.triggers("trig")).get("e") == 2
    assert _counts(runtime) == (1.0, 1.0)  # kept, and taken in: none waits now
    # paused across e's window's first boundary: no timer or tick announces e
    await runtime.clock.set(START + timedelta(days=2, minutes=2))
    assert await _timers_and_ticks(runtime) == []
    during = [m for m in await _messages_of_e(runtime, settings) if m["seq"] >= paused.seq]
    assert during and all(m["status"] == "paused" for m in during), during
    assert all(m["policy"] == "rule" for m in during), during  # the control policy

    # (b) the resume: its messages put e's window in force in period 2 (its randomised
    # window: a design probability strictly between 0 and 1; untriggered, e has 0), and
    # nothing announces it after them
    resumed = await flipper.resume("trig")
    assert resumed.state == "running" and resumed.seq is not None
    assert await _timers_and_ticks(runtime) == []  # not announced again
    assert await store.kept_triggers("trig") == {}
    after = [m for m in await _messages_of_e(runtime, settings) if m["seq"] >= resumed.seq]
    assert [(m["seq"], m["status"], m["period"]) for m in after] == [(resumed.seq, "running", 2)]
    assert 0 < after[0]["probability"] < 1, after
    # e's period-2 record (its sales' route) holds its window (untriggered: C|0||)
    record = str(await store.assignment_record("trig", 2, "e")).split("|")
    assert 0 < float(record[1]) < 1, record
    assert _counts(runtime) == (1.0, 1.0)
    # the audit trail has e's fire once, as its trigger announced it (the pause took it in)
    (fired,) = await _fired_events_of_e(settings, "resumed")
    assert (fired["detail"]["period"], fired["detail"]["competitor"]) == (2, "shop-x")


async def test_a_stop_ends_the_kept_fire(runtime: Any, settings: Settings) -> None:
    await _a_kept_fire_after_the_decision_is_out(runtime, settings)
    store, flipper = runtime.store, runtime.flipper

    # (c) the stop: its decision takes the kept fire in (recorded, kept no more); nothing
    # announces it after the stop, across its window's first boundary too
    stopped = await flipper.stop("trig")
    assert stopped.state == "stopped" and stopped.seq is not None
    assert await store.kept_triggers("trig") == {}
    assert (await store.triggers("trig")).get("e") == 2
    await runtime.clock.set(START + timedelta(days=2, minutes=2))
    assert await _timers_and_ticks(runtime) == []
    after = [m for m in await _messages_of_e(runtime, settings) if m["seq"] >= stopped.seq]
    assert [(m["seq"], m["status"]) for m in after] == [(stopped.seq, "stopped")]
    (fired,) = await _fired_events_of_e(settings, "stopped")
    assert fired["detail"]["period"] == 2


async def test_a_pause_refused_by_the_broker_announces_the_kept_fire_on_its_redo(
    runtime: Any, settings: Settings
) -> None:
    """The pause's decision takes e in and the broker refuses its messages: the decision's
    redo (the next tick's) announces e's fire, as it repeats the pause's own event. Before,
    the fire's ``triggered`` event went out only after the decision's messages, and a redo
    repeated the decision's event alone: e was recorded in the triggers and never
    announced."""
    await _a_kept_fire_after_the_decision_is_out(runtime, settings)
    store, flipper = runtime.store, runtime.flipper
    sink = flipper.sink
    sink.refused = {"trig"}
    # the command is made all the same (its decision was kept before the send failed)
    assert (await flipper.pause("trig")).state == "paused"
    trig = await store.get_experiment("trig")
    assert trig.status == "paused" and trig.seq > trig.published  # the fault happened
    assert await store.kept_triggers("trig") == {}  # taken in by the pause's decision
    sink.refused = set()
    assert await flipper.tick() == 0  # the pause's redo
    assert (await store.get_experiment("trig")).published >= trig.seq
    (fired,) = await _fired_events_of_e(settings, "paused")
    assert (fired["detail"]["period"], fired["detail"]["competitor"]) == (2, "shop-x")
