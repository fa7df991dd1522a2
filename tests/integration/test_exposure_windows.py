"""The Health section's multiple exposure names what cut a period: a pause, or a stop. The
exclusion windows the controller opens (``Store.windows``) are read as they are stored, and
each window's phase comes from its id (a pause's ``paused-...``, a stop's ``stopped-...``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from streams.client.exposure import cut_periods, exclusion_edges
from tests.integration.test_one_refused_experiment import START, _spec


async def test_a_period_a_stop_cut_is_said_to_be_cut_by_a_stop(runtime: Any) -> None:
    flipper, store = runtime.flipper, runtime.store
    spec = _spec("cut", ["p1", "p2"])
    await runtime.clock.set(START + timedelta(hours=1))
    await flipper.create(spec, backfill=True)
    # a pause and a resume inside period 1, a stop inside period 2
    await runtime.clock.set(START + timedelta(days=1, hours=6))
    await flipper.pause("cut", "price war")
    await runtime.clock.set(START + timedelta(days=1, hours=12))
    await flipper.resume("cut")
    await runtime.clock.set(START + timedelta(days=2, hours=3))
    await flipper.stop("cut", "done")
    edges = exclusion_edges(await store.windows("cut"), [], "cut")
    assert [kind for _, kind in edges] == ["pause", "pause", "stop"]
    # before, every window was a pause: the Health section said period 2 (pause)
    assert cut_periods(spec, edges, 3) == {1: "pause", 2: "stop"}
