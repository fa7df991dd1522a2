"""Two sales batches in progress at once: the second is routed while the first one's script
runs, instead of waiting for it behind a read of its own (Redis runs one command at a time).

The store here stands in for Redis's one behaviour that matters: nothing it answers gets
past a script that is still running. The real path runs on redis-server in
tests/integration (test_sales_path, test_faults) and in benchmarks/bench_ingest.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.clock import ManualClock
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import SaleRow
from controller.store.experiments import ExperimentState
from streams.sale_decoder import DecodedSale

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


class _OneAtATime:
    """Answers nothing while a script runs; a script runs until the test releases it."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.idle.set()
        self.release = asyncio.Event()
        self.sent: list[list[SaleRow]] = []
        self.reads = 0
        self.version_now = 1
        self.pause: dict[str, Any] | None = None

    async def _read(self) -> None:
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

    def pack_sales(self, rows: list[SaleRow]) -> list[SaleRow]:
        return list(rows)

    async def ingest_packed(self, rows: list[SaleRow]) -> list[str]:
        self.sent.append(rows)  # the script is on its way
        while not self.idle.is_set():  # Redis is running another script
            await self.idle.wait()
        self.idle.clear()
        await self.release.wait()
        self.idle.set()
        return ["ok"] * len(rows)


def _sale(i: int, product: str, minute: int) -> DecodedSale:
    at = START + timedelta(hours=1, minutes=minute)
    return DecodedSale(f"s{i}", product, 1, 2.0, 2.0, at)


class _Watched:
    """A sale that tells when it is routed (its time is read)."""

    def __init__(self, sale: DecodedSale, routed: asyncio.Event) -> None:
        self._sale, self._routed = sale, routed
        self.event_id, self.product = sale.event_id, sale.product
        self.units, self.revenue = sale.units, sale.revenue

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
