"""Two sales batches in progress at once: the second is routed while the first one's script
runs, instead of waiting for it behind a read of its own (Redis runs one command at a time).

The store here stands in for Redis's one behaviour that matters: nothing it answers gets
past a script that is still running. The real path runs on redis-server in
tests/integration (test_sales_path, test_faults) and in benchmarks/bench_ingest.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from controller.clock import ManualClock
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import SalesBlock
from controller.store.experiments import ExperimentState
from controller.store.panel import dedupe_digest
from streams.worker.sale_decoder import DecodedSale
from tests.unit._none_retired import NoneRetired

START = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = load_spec(
    {
        "id": "ov",
        "products": ["a", "b"],
        "treatment_policy": "new",
        "control_policy": "old",
        "start": START.isoformat(),
        "end": (START + timedelta(days=2)).isoformat(),
        "timezone": "UTC",
        "period": "PT1H",
        "washout": "PT10M",
        "seed": 1,
    }
)


class _Sent(NamedTuple):
    """A sale as the ingestor hands it to the store (``SalesBlock.rows``), its id named by
    its dedupe member."""

    position: int
    event_id: str
    product: str
    code: int
    ts_ms: int
    units: int
    revenue_micros: int
    pre_reason: str


#: the ids of the sales below, by dedupe member (a block carries the digest, not the id)
_IDS = {dedupe_digest(f"s{i}")[0]: f"s{i}" for i in range(100)}


class _OneAtATime(NoneRetired):
    """Answers nothing while a script runs; a script runs until the test releases it."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.idle.set()
        self.release = asyncio.Event()
        self.sent: list[list[_Sent]] = []
        self.reads = 0
        self.version_now = 1
        self.pause: dict[str, Any] | None = None
        self.fail_reads = 0  # the next reads fail at once, as on a dropped connection
        self.asked = asyncio.Event()  # set by every read, answered or not
        self.script_sent = asyncio.Event()

    async def _read(self) -> None:
        self.asked.set()
        if self.fail_reads:
            self.fail_reads -= 1
            raise ConnectionError("connection reset by peer")
        await self.idle.wait()

    async def version(self) -> int:
        await self._read()
        self.reads += 1
        return self.version_now

    async def freezes(self) -> list[dict[str, Any]]:
        await self._read()
        return []

    async def experiments(self) -> list[ExperimentState]:
        await self._read()
        return [ExperimentState(SPEC, "running", 0, 0, 0, 0)]

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        await self._read()
        return [self.pause] if self.pause else []

    def pack_blocks(self, blocks: list[SalesBlock], n: int) -> tuple[int, list[_Sent]]:
        return n, [
            _Sent(pos, _IDS[member], product, code, ts, units, micros, reason)
            for b in blocks
            for pos, member, _, product, code, ts, units, micros, reason in b.rows()
        ]

    async def ingest_packed(self, packed: tuple[int, list[_Sent]]) -> list[str]:
        n, rows = packed
        self.sent.append(rows)  # the script is on its way
        self.script_sent.set()
        while not self.idle.is_set():  # Redis is running another script
            await self.idle.wait()
        self.idle.clear()
        await self.release.wait()
        self.idle.set()
        out = [""] * n
        for r in rows:
            out[r.position] = "ok"
        return out


def _sale(i: int, product: str, minute: int) -> DecodedSale:
    at = START + timedelta(hours=1, minutes=minute)
    return DecodedSale(f"s{i}", product, 1, 2.0, 2.0, at, 1000)


class _Watched:
    """A sale that tells when it is routed (its time is read)."""

    def __init__(self, sale: DecodedSale, routed: asyncio.Event) -> None:
        self._sale, self._routed = sale, routed
        self.event_id, self.product = sale.event_id, sale.product
        self.units, self.revenue = sale.units, sale.revenue
        self.units_milli, self.currency = sale.units_milli, sale.currency

    @property
    def occurred_at(self) -> datetime:
        self._routed.set()
        return self._sale.occurred_at


async def test_a_batch_is_routed_while_the_batch_before_it_runs_in_redis() -> None:
    store = _OneAtATime()
    clock = ManualClock(START + timedelta(hours=2))
    ingestor = SalesIngestor(store, clock, Settings())  # type: ignore[arg-type]
    first = asyncio.create_task(ingestor.process([_sale(1, "a", 20)]))
    routed = asyncio.Event()
    second = None
    try:
        # the first batch's script is in Redis and stays there; a second batch starts ...
        second = asyncio.create_task(ingestor.process([_Watched(_sale(2, "b", 30), routed)]))
        # ... and is routed before that script finishes (before this change, it waited
        # behind a read of its own until the first script was done)
        await asyncio.wait_for(routed.wait(), timeout=5)
        assert not first.done()
        assert [r.event_id for batch in store.sent for r in batch] == ["s1"]
        # with the sync the first batch made just before its script: that and the first
        # batch's own sync are the only reads answered
        assert store.reads == 2
    finally:
        store.release.set()
        got = await asyncio.gather(first, *([second] if second else []))
    assert [v.status for batch in got for v in batch] == ["ok", "ok"]

    # with no batch in flight, a batch syncs first: it sees a pause made meanwhile
    store.pause = {"start_ms": int((START + timedelta(hours=1)).timestamp() * 1000),
                   "end_ms": None, "reason": "operator"}  # fmt: skip
    store.version_now = 2
    await ingestor.process([_sale(3, "a", 40)])
    assert store.sent[-1][0].pre_reason == "paused"


async def test_a_pause_seen_by_the_sync_before_the_script_routes_the_batch_again() -> None:
    """A batch routed with the sync of the batch in flight, then paused before its script: the
    sync just before its script sees the pause, and the batch goes out routed with it (the
    script does not check pauses again: sent as routed before, the sale was counted)."""
    store = _OneAtATime()
    clock = ManualClock(START + timedelta(hours=2))
    ingestor = SalesIngestor(store, clock, Settings())  # type: ignore[arg-type]
    first = asyncio.create_task(ingestor.process([_sale(1, "a", 20)]))
    routed = asyncio.Event()
    second = asyncio.create_task(ingestor.process([_Watched(_sale(2, "b", 30), routed)]))
    try:
        await asyncio.wait_for(routed.wait(), timeout=5)
        assert ingestor.routes.version == 1 and [len(b) for b in store.sent] == [1]
        # an operator pauses the experiment from 01:00 while the first script runs
        store.pause = {"start_ms": int((START + timedelta(hours=1)).timestamp() * 1000),
                       "end_ms": None, "reason": "operator"}  # fmt: skip
        store.version_now = 2
    finally:
        store.release.set()
        await asyncio.gather(first, second)
    assert ingestor.routes.version == 2
    assert [[(r.event_id, r.pre_reason) for r in b] for b in store.sent] == [
        [("s1", "")],
        [("s2", "paused")],
    ]


async def test_a_failed_shared_sync_is_not_reused_by_the_next_batch() -> None:
    """A batch whose pre-script sync failed (a dropped connection) leaves that sync behind; a
    batch that starts while another one is in flight syncs on its own instead of failing
    with that old error on every retry, without asking Redis."""
    store = _OneAtATime()
    clock = ManualClock(START + timedelta(hours=2))
    ingestor = SalesIngestor(store, clock, Settings())  # type: ignore[arg-type]
    running = asyncio.create_task(ingestor.process([_sale(1, "a", 20)]))
    try:
        await asyncio.wait_for(store.script_sent.wait(), 5)  # in Redis, and it stays there
        store.fail_reads = 1
        with pytest.raises(ConnectionError):  # its pre-script sync fails
            await ingestor.process([_sale(2, "b", 25)])
        assert store.fail_reads == 0  # the fault happened
        store.asked.clear()
        third = asyncio.create_task(ingestor.process([_sale(3, "b", 30)]))
        await asyncio.wait_for(store.asked.wait(), 5)  # it asks Redis itself ...
        assert not third.done()  # ... and waits for the running script, as Redis would
    finally:
        store.release.set()
    got = await asyncio.gather(running, third)
    assert [v.status for batch in got for v in batch] == ["ok", "ok"]
    assert [r.event_id for b in store.sent for r in b] == ["s1", "s3"]
