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
from controller.errors import ConflictError, SpecError, StoreError
from controller.flipper import Flipper
from controller.sales import SalesIngestor
from controller.spec import load_spec
from streams.kafka import JsonPublisher
from streams.metrics import Metrics
from streams.schemas import (
    Command,
    CommandKind,
    CommandReply,
    CompetitorPrice,
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


class CompetitorHandler:
    """Validates competitor-price events; triggered designs act on them (controller.triggers)."""

    def __init__(
        self, dlq: DeadLetterSink, metrics: Metrics, clock: Clock, topic: str, on_price=None
    ) -> None:  # type: ignore[no-untyped-def]
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.topic = topic
        self.on_price = on_price

    async def handle(self, batch: Sequence[RawEvent]) -> int:
        self.metrics.events_consumed.labels(self.topic).inc(len(batch))
        good: list[CompetitorPrice] = []
        for ev in batch:
            try:
                good.append(decode(CompetitorPrice, ev.value))  # type: ignore[arg-type]
            except DecodeError as exc:
                await self.clock.sync()
                await self.dlq.send(
                    self.topic,
                    ev.value,
                    exc.reason,
                    str(exc),
                    self.clock.now(),
                    ev.partition,
                    ev.offset,
                )
        if good and self.on_price is not None:
            await self.on_price(good)
        await self.dlq.publisher.flush()
        return len(good)


class CommandHandler:
    """Operator commands: create/stop/pause/resume/freeze, each answered on the replies topic."""

    def __init__(
        self,
        flipper: Flipper,
        publisher: JsonPublisher,
        dlq: DeadLetterSink,
        metrics: Metrics,
        clock: Clock,
        topic: str,
        reply_topic: str,
        max_bytes: int,
    ) -> None:
        self.flipper = flipper
        self.publisher = publisher
        self.dlq = dlq
        self.metrics = metrics
        self.clock = clock
        self.topic = topic
        self.reply_topic = reply_topic
        self.max_bytes = max_bytes

    async def handle(self, ev: RawEvent) -> CommandReply | None:
        self.metrics.events_consumed.labels(self.topic).inc()
        try:
            cmd = decode(Command, ev.value, max_bytes=self.max_bytes)  # type: ignore[arg-type]
        except DecodeError as exc:
            await self.clock.sync()
            await self.dlq.send(
                self.topic,
                ev.value,
                exc.reason,
                str(exc),
                self.clock.now(),
                ev.partition,
                ev.offset,
            )
            await self.dlq.publisher.flush()
            self.metrics.commands.labels("unknown", "rejected").inc()
            return None
        try:
            detail = await self._apply(cmd)
            reply = CommandReply(
                command_id=cmd.command_id, ok=True, experiment=cmd.experiment, detail=detail
            )
        except (SpecError, ConflictError, StoreError, ValueError) as exc:
            reply = CommandReply(
                command_id=cmd.command_id, ok=False, experiment=cmd.experiment, error=str(exc)
            )
        self.metrics.commands.labels(cmd.kind.value, "ok" if reply.ok else "refused").inc()
        await self.publisher.send(self.reply_topic, reply, cmd.command_id)
        await self.publisher.flush()
        return reply

    async def _apply(self, cmd: Command) -> dict[str, object] | None:
        f = self.flipper
        if cmd.kind == CommandKind.CREATE:
            spec = load_spec(cmd.spec or {})
            await f.create(spec)
            cmd_exp = spec.id
            return {"experiment": cmd_exp, "products": len(spec.all_products())}
        assert cmd.experiment is not None or cmd.kind == CommandKind.FREEZE
        if cmd.kind == CommandKind.STOP:
            await f.stop(cmd.experiment, cmd.reason or "stopped by operator")  # type: ignore[arg-type]
        elif cmd.kind == CommandKind.PAUSE:
            await f.pause(cmd.experiment, cmd.reason or "paused by operator")  # type: ignore[arg-type]
        elif cmd.kind == CommandKind.RESUME:
            await f.resume(cmd.experiment)  # type: ignore[arg-type]
        elif cmd.kind == CommandKind.FREEZE:
            await f.freeze(cmd.command_id, cmd.freeze or {})
        return None
