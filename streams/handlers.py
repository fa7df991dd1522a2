"""What the agents do with a batch: decode, call the controller, publish, count.

Kept apart from the faust wiring so that the logic runs the same under a faust agent, a
benchmark loop or a test with a real broker. Handlers never raise on bad input: it goes to
the dead-letter topic with a reason. A Redis failure is retried with backoff, so offsets
are committed only after the batch is in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from controller.clock import Clock
from controller.sales import SalesIngestor
from streams.metrics import Metrics
from streams.schemas import (
    DecodeError,
    Sale,
    decode,
)
from streams.sinks import DeadLetterSink

log = logging.getLogger("pricelab.streams")

EXCLUDED = {"washout", "paused", "stopped", "freeze", "unassigned", "ended"}


@dataclass(frozen=True)
class RawEvent:
    value: bytes | None
    partition: int | None = None
    offset: int | None = None


async def with_redis_retry(op, what: str, max_delay: float = 5.0):  # type: ignore[no-untyped-def]
    """Run ``op()`` until Redis answers; back off exponentially between attempts."""
    delay = 0.05
    while True:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("redis unavailable during %s (%s); retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)


class SalesHandler:
    def __init__(
        self,
        ingestor: SalesIngestor,
        dlq: DeadLetterSink,
        metrics: Metrics,
        clock: Clock,
        topic: str,
    ) -> None:
        self.ingestor = ingestor
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.topic = topic

    async def handle(self, batch: Sequence[RawEvent]) -> dict[str, int]:
        counts: dict[str, int] = {}
        self.metrics.events_consumed.labels(self.topic).inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        with self.metrics.batch_seconds.time():
            sales: list[Sale] = []
            origin: list[RawEvent] = []
            for ev in batch:
                try:
                    sales.append(decode(Sale, ev.value))  # type: ignore[arg-type]
                    origin.append(ev)
                except DecodeError as exc:
                    await self._dead(ev, exc.reason, str(exc))
                    counts[exc.reason] = counts.get(exc.reason, 0) + 1
            verdicts = await with_redis_retry(lambda: self.ingestor.process(sales), "sales batch")
            for ev, sale, v in zip(origin, sales, verdicts, strict=True):
                counts[v.status] = counts.get(v.status, 0) + 1
                if v.dead_letter:
                    await self._dead(
                        ev,
                        v.status,
                        f"sale {sale.event_id} at {sale.occurred_at.isoformat()}: {v.status}",
                    )
            for status, n in counts.items():
                self.metrics.sales.labels(status).inc(n)
                if status in EXCLUDED:
                    self.metrics.sales_excluded.labels(status).inc(n)
            await self.dlq.publisher.flush()
        return counts

    async def _dead(self, ev: RawEvent, reason: str, error: str) -> None:
        await self.clock.sync()
        await self.dlq.send(
            self.topic, ev.value, reason, error, self.clock.now(), ev.partition, ev.offset
        )
