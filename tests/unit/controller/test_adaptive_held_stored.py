"""A spec accepted at creation still loads from the store after a check is added: the adaptive
floor against the products and the carryover refuses a new spec, but an adaptive ladder created
before that check (its spec immutable in the store) must still be read, or the experiment list
and the controller's tick fail for the whole fleet on it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from controller.errors import SpecError
from controller.spec import load_spec
from controller.store import Store

#: 9 products on 4 arms at floor 0.05 over 28 days: 0.923 expected held products a period,
#: refused at creation (test_adaptive_held.py works the figure out)
LOW_FLOOR: dict[str, Any] = {
    "id": "old-ladder",
    "products": [f"p{i:03d}" for i in range(9)],
    "start": "2026-05-04",
    "end": "2026-06-01",
    "seed": 1,
    "arms": [
        {"name": f"a{i}", "policy": f"q{i}", "allocation": 0.25}
        | ({"control": True} if i == 0 else {})
        for i in range(4)
    ],  # fmt: skip
    "adaptive": {"floor": 0.05},
}


class _Redis:
    """What reading an experiment asks of Redis: its spec and its state."""

    def __init__(self, store: Store, raw: str) -> None:
        self.values = {f"{store.exp('old-ladder')}:spec": raw}
        self.state = {"status": "running", "flipped_period": "3"}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def hgetall(self, key: str) -> dict[str, str]:
        return self.state

    async def smembers(self, key: str) -> set[str]:
        return {"old-ladder"}

    def pipeline(self, transaction: bool = False) -> _Pipeline:
        return _Pipeline(self.values)


class _Pipeline:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.queued: list[str] = []

    def get(self, key: str) -> None:
        self.queued.append(key)

    async def execute(self) -> list[Any]:
        return [self.values.get(k) for k in self.queued]


def test_a_new_spec_is_refused_but_a_stored_one_loads() -> None:
    with pytest.raises(SpecError, match="adaptive.floor"):
        load_spec(LOW_FLOOR)
    raw = json.dumps(LOW_FLOOR)
    assert load_spec(raw, stored=True).adaptive is not None
    with pytest.raises(SpecError, match="adaptive.floor"):  # the same text, given anew
        load_spec(raw)


def test_the_store_reads_an_experiment_created_before_the_check() -> None:
    store = Store(None)
    redis = _Redis(store, json.dumps(LOW_FLOOR))
    store.redis = redis

    async def read() -> tuple[Any, Any]:
        one = await store.get_experiment("old-ladder")
        store._specs.clear()  # the fleet's read parses it again, in one round trip
        await store._parse_specs(["old-ladder"])
        return one, store._specs["old-ladder"]

    state, parsed = asyncio.run(read())
    assert state.spec.id == "old-ladder" and state.flipped_period == 3
    assert parsed.adaptive is not None and parsed.adaptive.floor == 0.05
