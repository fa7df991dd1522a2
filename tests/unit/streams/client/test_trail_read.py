"""The audit trail's reader (streams.client.history._read_to, the CLI's and the console's
follower's) reads each partition to the end offsets it was given, for at most ``timeout``
seconds. When the broker brings nothing more for a partition still short of its end, what was
read is returned, and a warning says which partition stopped where: a console page that
waited out the read is then explained in the console's log. The broker is a stand-in."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.client.history import _read_to

TP0, TP1 = TopicPartition("s.events", 0), TopicPartition("s.events", 1)


class _Stuck:
    """Partition 0 holds two records and is read to its end; partition 1's fetches bring
    nothing although its end offset is 3 (a broker that stopped answering for it)."""

    def __init__(self) -> None:
        self.pos = {TP0: 0, TP1: 0}
        self.held = {TP0: [{"kind": "created", "n": 0}, {"kind": "command", "n": 1}], TP1: []}

    async def getmany(self, *parts: TopicPartition, timeout_ms: int) -> dict[Any, list[Any]]:
        out = {}
        for tp in parts:
            docs = self.held[tp][self.pos[tp] :]
            if docs:
                out[tp] = [SimpleNamespace(offset=self.pos[tp] + i, value=json.dumps(d).encode())
                           for i, d in enumerate(docs)]  # fmt: skip
                self.pos[tp] += len(docs)
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]


async def test_a_read_that_stops_short_returns_what_it_read_and_says_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docs: list[tuple[int, int, dict[str, Any]]] = []
    with caplog.at_level(logging.WARNING, logger="pricelab.trail"):
        await _read_to(_Stuck(), {TP0, TP1}, {TP0: 2, TP1: 3}, docs, timeout=0.3)  # type: ignore[arg-type]
    assert [(p, o, d["n"]) for p, o, d in docs] == [(0, 0, 0), (0, 1, 1)]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == (
        "the audit trail's read stopped after 0.3 s short of the end (position, end): "
        "{'s.events[1]': (0, 3)}"
    )


async def test_a_read_that_reaches_every_end_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    docs: list[tuple[int, int, dict[str, Any]]] = []
    with caplog.at_level(logging.WARNING, logger="pricelab.trail"):
        await _read_to(_Stuck(), {TP0}, {TP0: 2, TP1: 3}, docs, timeout=5.0)  # type: ignore[arg-type]
    assert len(docs) == 2 and caplog.records == []
