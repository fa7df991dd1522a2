"""A sales batch that too few replicas acknowledged (``PRICELAB_REDIS__WAIT_REPLICAS``) is
not acknowledged: the handler counts it, retries it as a Redis outage, and returns (so the
consumer commits its offsets) only once a try was replicated. A batch that sends no script
this time still waits for the replicas (an earlier try may have written its sales)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from controller.clock import ManualClock
from controller.sales import SaleLike, SalesIngestor, Verdict
from controller.settings import Settings
from controller.store.panel import ReplicasBehind, ReplicaWait
from streams.worker.handlers import SalesHandler
from streams.worker.metrics import Metrics
from tests.unit._none_retired import NoneRetired

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class _Publisher:
    async def flush(self) -> None:
        return None


class _Dlq:
    publisher = _Publisher()

    async def send(self, *args: Any, **kw: Any) -> None:
        return None


class _ShortThenEnough:
    """An ingestor whose first ``short`` tries meet too few replicas."""

    def __init__(self, short: int) -> None:
        self.short = short
        self.tries = 0

    async def process(self, sales: Sequence[SaleLike]) -> list[Verdict]:
        self.tries += 1
        if self.tries <= self.short:
            raise ReplicasBehind("0 of the 1 Redis replicas ...")
        return []


async def test_a_batch_too_few_replicas_have_is_counted_and_retried() -> None:
    metrics = Metrics(CollectorRegistry())
    ingestor = _ShortThenEnough(short=2)
    clock = ManualClock(NOW)
    handler = SalesHandler(ingestor, _Dlq(), metrics, clock, "sales")  # type: ignore[arg-type]
    assert await handler.handle([]) == {}
    assert ingestor.tries == 3
    sample = metrics.registry.get_sample_value
    assert sample("pricelab_redis_waits_short_total") == 2
    assert sample("pricelab_redis_retries_total", {"component": "sales"}) == 2


class _NoExperiments(NoneRetired):
    """A store with no experiment (no sale reaches a script), recording its barriers."""

    def __init__(self) -> None:
        self.barriers: list[ReplicaWait] = []

    async def version(self) -> int:
        return 0

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def experiments(self) -> list[Any]:
        return []

    async def replicated(self, wait: ReplicaWait) -> None:
        self.barriers.append(wait)


class _Sale:
    def __init__(self, at: datetime) -> None:
        self.event_id, self.product, self.occurred_at = "e1", "p1", at
        self.units, self.revenue, self.currency = 1, 5.0, "EUR"


async def _barriers(settings: Settings) -> list[ReplicaWait]:
    store = _NoExperiments()
    ingestor = SalesIngestor(store, ManualClock(NOW), settings)  # type: ignore[arg-type]
    late = _Sale(NOW - timedelta(days=30))
    verdicts = await ingestor.process([late])  # type: ignore[list-item]
    assert [v.status for v in verdicts] == ["late"]
    return store.barriers


async def test_a_batch_without_a_script_waits_for_the_replicas_too() -> None:
    wait = Settings.model_validate({"redis": {"wait_replicas": 2, "wait_timeout_ms": 300}})
    assert await _barriers(wait) == [ReplicaWait(2, 300)]


async def test_without_the_setting_nothing_waits() -> None:
    assert await _barriers(Settings()) == []
