"""The estimates reader's idle rule, on a scripted consumer: a partition ends only after the
broker has answered for ``idle`` seconds with nothing new, counting an answer only once the
``getmany`` after it has handed over its records (aiokafka marks an answer when its records
reach the client's buffer, and a ``getmany`` that timed out just before returns nothing)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from streams.client.estimates import _read_until_caught_up
from streams.errors import ServiceUnavailable


class ScriptedConsumer:
    """One partition. Step i's answer (per ``script(i)``: "records", "empty" or None for no
    answer) arrives at the end of getmany i: its mark is set then, and its records are handed
    over by getmany i + 1, as when aiokafka's getmany times out just before an answer lands."""

    def __init__(self, script: Any) -> None:
        self.script, self.step = script, 0
        self.mark: int | None = None
        self.buffer: dict[str, list[Any]] = {}

    def assignment(self) -> set[str]:
        return {"p0"}

    def last_poll_timestamp(self, tp: str) -> int | None:
        return self.mark

    async def getmany(self, timeout_ms: int = 0) -> dict[str, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)  # the consumer's own wait for data
        out, self.buffer = self.buffer, {}
        answer = self.script(self.step)
        self.step += 1
        if answer is not None:
            self.mark = int(time.time() * 1000)
            if answer == "records":
                doc = {"experiment": "x", "estimator": "dm", "n": self.step}
                self.buffer = {"p0": [SimpleNamespace(timestamp=0, value=json.dumps(doc))]}
        return out


async def test_an_answer_is_counted_only_after_its_records_are_handed_over() -> None:
    # records at step 0, then empty answers; a late answer with a record at step 3, 1.5 s
    # after the first, past the idle second: the rule must hand it over before ending
    consumer = ScriptedConsumer(lambda i: "records" if i in (0, 3) else "empty")
    out: list[dict[str, Any]] = []
    await asyncio.wait_for(_read_until_caught_up(consumer, "x", 1.0, out, stall=30), 30)
    assert [d["n"] for d in out] == [1, 4]


async def test_a_partition_the_broker_never_answers_is_one_sentence() -> None:
    consumer = ScriptedConsumer(lambda i: None)
    with pytest.raises(ServiceUnavailable, match="broker at b:1 answered no fetch"):
        await asyncio.wait_for(
            _read_until_caught_up(consumer, "x", 0.2, [], stall=1.0, broker="b:1"), 30
        )
    assert consumer.step >= 4  # it kept asking: 1 s of 0.2 s waits
