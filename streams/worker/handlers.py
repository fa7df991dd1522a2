"""What the agents do with a batch: decode, call the controller, publish, count.

Kept apart from the faust wiring so that the logic runs the same under a faust agent, a
benchmark loop or a test with a real broker. Handlers never raise on bad input: it goes to
the dead-letter topic with a reason. A Redis failure is retried with backoff, so offsets
are committed only after the batch is in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar

from controller.clock import Clock
from controller.sales import SaleLike, SalesIngestor, Verdict
from controller.store.base import UNAVAILABLE
from controller.store.panel import ReplicasBehind
from core.errors import kept
from streams.worker.metrics import Metrics
from streams.worker.sale_decoder import decode_sale
from streams.worker.schemas import DecodeError
from streams.worker.sinks import DeadLetterSink

log = logging.getLogger("pricelab.streams")

T = TypeVar("T")

#: exit status of a worker that stopped hard rather than acknowledge an unwritten batch
EXIT_UNSAFE_TO_ACK = 75
#: exit status of a worker whose timer (flip, triggers, analysis) raised an unexpected error
EXIT_TIMER_FAILED = 70
#: exit status of a worker that Redis refused a permission its role needs (NOPERM): its ACL
#: user is older than the code or wrong, which a restart does not mend (as the CLI's exit 2)
EXIT_PERMISSION = 2


def exit_on_permission(
    exc: BaseException | None, role: str, user: str | None, exit: Callable[[int], None]
) -> bool:
    """If ``exc`` is Redis's ``NOPERM``: log one sentence naming the permission and the role
    (no traceback), exit with :data:`EXIT_PERMISSION` and return True (an ``exit`` that
    returns is a test's)."""
    from streams.errors import is_noperm, permission_sentence, refused_command

    if exc is not None and is_noperm(exc):
        said = str(exc)
        log.critical("%s", permission_sentence(role, user, refused_command(said), said))
        exit(EXIT_PERMISSION)
        return True
    return False


EXCLUDED = {"washout", "paused", "stopped", "freeze", "unassigned", "ended"}


class Event(Protocol):
    """What a handler reads of a consumed message: a :class:`RawEvent`, or an aiokafka
    ``ConsumerRecord`` as fetched (the batch consumers pass those on as they are: a tuple
    built per event cost ~4% of the worker's time)."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def partition(self) -> int | None: ...
    @property
    def offset(self) -> int | None: ...


class RawEvent(NamedTuple):
    """One consumed message built by hand (faust events, tests, benchmarks)."""

    value: bytes | None
    partition: int | None = None
    offset: int | None = None


async def with_redis_retry(
    op: Callable[[], Awaitable[T]],
    what: str,
    max_delay: float = 5.0,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``op()`` until Redis answers; back off exponentially between attempts."""
    delay = 0.05
    while True:
        try:
            return await op()
        except UNAVAILABLE as exc:
            log.warning("redis unavailable during %s (%s); retrying in %.2fs", what, exc, delay)
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)


def broker_failed(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the broker failing a request in a way a later try can get past:
    an error Kafka marks retriable (not the leader, a request timed out, a lost
    connection ...), the client's own timeout, or ``UNKNOWN_SERVER_ERROR`` (-1), which the
    embedded broker answers to a write it failed as it came back from a restart
    (docs/broker.md). The broker's schema registry, on in the tests, refuses a record that
    breaks its contract with -1 too: that one fails at every tick, logged each time, and
    what the timer publishes goes stale (the alerts say so). Not retried: an error whose
    cause a retry does not mend, such as a refused authorization or a record too large."""
    from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError

    return isinstance(exc, KafkaError) and (
        exc.retriable or isinstance(exc, (KafkaTimeoutError, UnknownError))
    )


class OutageTolerated:
    """``async with OutageTolerated("period flip", metrics):`` for timer bodies.

    A faust timer that raises crashes the whole app, and the process stays up doing nothing.
    A Redis outage, or the broker failing a write while it restarts, is transient: log it,
    count it, and let the next tick try again. Every timer body is idempotent (a flip's
    decision is saved before its messages, and the next tick publishes a saved decision
    whose messages are not all out; an analysis look publishes again at the next tick), so
    skipping a tick is safe. Any other exception is a bug or a state we do not understand:
    the process logs it and exits with :data:`EXIT_TIMER_FAILED`, so the supervisor restarts
    it and on-call sees the restart, instead of a live process whose timer is silently dead.
    """

    def __init__(
        self,
        what: str,
        metrics: Metrics,
        exit: Callable[[int], None] | None = None,
        *,
        role: str = "worker",
        user: str | None = None,
    ) -> None:
        self.what = what
        self.metrics = metrics
        self._exit = exit
        #: the role and its Redis user, named when Redis refuses a permission (NOPERM)
        self.role = role
        self.user = user

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, UNAVAILABLE):
            log.warning("redis unavailable during %s (%s); next tick retries", self.what, exc)
            self.metrics.redis_retries.labels(self.what).inc()
            return True
        if broker_failed(exc):
            log.warning(
                "the broker failed a request during %s (%s: %s); next tick retries",
                self.what, type(exc).__name__, exc,
            )  # fmt: skip
            self.metrics.broker_retries.labels(self.what).inc()
            return True
        if exit_on_permission(exc, self.role, self.user, self._exit or hard_exit):
            return False
        if isinstance(exc, Exception):  # not CancelledError / KeyboardInterrupt: shutdown
            log.critical(
                "%s failed (%s: %s); exiting with status %d so the worker is restarted",
                self.what,
                type(exc).__name__,
                exc,
                EXIT_TIMER_FAILED,
                exc_info=exc,
            )
            (self._exit or hard_exit)(EXIT_TIMER_FAILED)
        return False


def hard_exit(code: int) -> None:  # pragma: no cover - replaced in tests
    logging.shutdown()
    os._exit(code)


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

    async def handle(self, batch: Sequence[Event]) -> dict[str, int]:
        counts: dict[str, int] = {}
        self.metrics.events_consumed.labels(self.topic).inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        with self.metrics.batch_seconds.time():
            sales: list[SaleLike] = []
            origin: list[Event] = []
            bad: list[tuple[Event, DecodeError]] = []
            for ev in batch:
                try:
                    sales.append(decode_sale(ev.value))
                    origin.append(ev)
                except DecodeError as exc:
                    # kept: its traceback would hold this frame, and with it the batch
                    bad.append((ev, kept(exc)))
            # the ingestor syncs the clock (no read of our own here: while another batch's
            # script runs in Redis, it would wait for that script)
            verdicts = await with_redis_retry(
                lambda: self._process(sales), "sales batch", on_retry=self.note_redis_retry
            )
            for ev, err in bad:
                await self._dead(ev, err.reason, str(err))
                counts[err.reason] = counts.get(err.reason, 0) + 1
            # verdicts are one object per status: counted in C, then walked only for the
            # dead letters (a batch usually has none)
            tally = Counter(verdicts)
            for v, n in tally.items():
                counts[v.status] = counts.get(v.status, 0) + n
            if any(v.dead_letter for v in tally):
                for ev, sale, v in zip(origin, sales, verdicts, strict=True):
                    if v.dead_letter:
                        said = v.status
                        if said == "currency":
                            said = f"its currency {sale.currency} is not its experiment's"
                        await self._dead(
                            ev,
                            v.status,
                            f"sale {sale.event_id} at {sale.occurred_at.isoformat()}: {said}",
                        )
            for status, n in counts.items():
                self.metrics.sales.labels(status).inc(n)
                if status in EXCLUDED:
                    self.metrics.sales_excluded.labels(status).inc(n)
            await self.dlq.publisher.flush()
        return counts

    async def _process(self, sales: Sequence[SaleLike]) -> list[Verdict]:
        try:
            return await self.ingestor.process(sales)
        except ReplicasBehind:
            self.metrics.redis_waits_short.inc()  # then retried as an outage
            raise

    def note_redis_retry(self) -> None:
        self.metrics.redis_retries.labels("sales").inc()

    async def _dead(self, ev: Event, reason: str, error: str) -> None:
        # the clock as the ingestor synced it for this batch
        await self.dlq.send(
            self.topic, ev.value, reason, error, self.clock.now(), ev.partition, ev.offset
        )
