"""The soak's outside world (benchmarks/soak.py): the sales source that feeds the sales topic,
and the outside client that reads the assignments and estimates topics."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller.settings import Settings
from controller.spec import ExperimentSpec
from streams.worker.kafka import JsonPublisher


# ---------------------------------------------------------------------------- the stream
class SalesSource:
    """The sales stream: distinct sales at ``rate`` per second, each stamped with the clock's
    time, a share sent twice and junk beside them. It remembers what it sent per experiment
    (distinct events and units), which is what Redis must count."""

    def __init__(
        self,
        settings: Settings,
        specs: list[ExperimentSpec],
        seed: int,
        duplicate_share: float,
        junk_per_second: float,
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.duplicate_share = duplicate_share
        self.junk_per_second = junk_per_second
        self.rng = random.Random(seed)
        self.products = [(s.id, p) for s in specs for p in s.products]
        self.sent: dict[str, list[int]] = {s.id: [0, 0] for s in specs}
        self.recent: deque[tuple[bytes, str]] = deque(maxlen=5000)
        self.duplicates = self.junk = self.distinct = 0
        self.held: list[tuple[bytes, str | None]] = []  # made while the broker is down
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.broker_up = True
        self.publisher: JsonPublisher | None = None

    async def open(self) -> None:
        self.publisher = JsonPublisher(self.settings, linger_ms=20)
        await self.publisher.start()

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None

    def _sale(self, now: datetime) -> tuple[bytes, str]:
        exp, product = self.rng.choice(self.products)
        units = self.rng.randint(1, 4)
        price = self.rng.randint(20, 400) / 4  # multiples of 0.25: exact sums
        n = self.distinct
        self.distinct += 1
        self.sent[exp][0] += 1
        self.sent[exp][1] += units
        body = {
            "v": 1,
            "event_id": f"soak{self.seed}-{n}",
            "product": product,
            "units": units,
            "revenue": units * price,
            "unit_price": price,
            "occurred_at": now.astimezone(UTC).isoformat(),
        }
        return json.dumps(body).encode(), product

    def _junk(self, now: datetime) -> bytes:
        self.junk += 1
        if self.junk % 2:
            return b'{"v": 1, "event_id": "x", "product": "s0-000", "units": -3'
        return json.dumps(
            {"v": 1, "event_id": f"junk-{self.junk}", "product": "s0-000", "units": 2,
             "revenue": 10.0, "unit_price": "NaN", "occurred_at": now.isoformat()}
        ).encode()  # fmt: skip

    async def _send(self, payload: bytes, key: str | None) -> None:
        if not self.broker_up or self.publisher is None:
            self.held.append((payload, key))
            return
        await self.publisher.send(self.settings.topics.sales, payload, key)

    async def run(self, rate: float, now: Callable[[], datetime], stop: asyncio.Event) -> None:
        made = 0.0
        junk_due = 0.0
        last = time.monotonic()
        while not stop.is_set():
            await self.flowing.wait()
            await asyncio.sleep(0.05)
            t = time.monotonic()
            dt, last = min(t - last, 0.5), t
            if not self.flowing.is_set():
                continue
            made += rate * dt
            junk_due += self.junk_per_second * dt
            at = now()
            while made >= 1:
                made -= 1
                payload, key = self._sale(at)
                await self._send(payload, key)
                self.recent.append((payload, key))
                if self.rng.random() < self.duplicate_share:
                    dup, dkey = self.rng.choice(self.recent)
                    self.duplicates += 1
                    await self._send(dup, dkey)
            while junk_due >= 1:
                junk_due -= 1
                await self._send(self._junk(at), None)
            if self.publisher is not None and self.broker_up:
                await self.publisher.flush()

    async def release_held(self) -> int:
        held, self.held = self.held, []
        for payload, key in held:
            await self._send(payload, key)
        if self.publisher is not None:
            await self.publisher.flush()
        return len(held)


# ---------------------------------------------------------------------------- the reader
class TopicReader:
    """An outside client (confluent-kafka, librdkafka) reading the assignments and estimates
    topics from their beginning in a thread: every assignment in the order its partition
    delivered it, and per experiment the wall times at which estimates arrived."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.assignments: list[dict[str, Any]] = []
        self.estimates: dict[str, list[float]] = defaultdict(list)
        #: per experiment and estimator (as pricelab_estimate_age_seconds is labelled)
        self.by_estimator: dict[str, list[float]] = defaultdict(list)
        #: when each (experiment, period)'s first assignment was read
        self.first_seen: dict[tuple[str, int], float] = {}
        self.dead_letters = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        t = self.settings.topics
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap_servers,
                "group.id": "soak-reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        parts = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in (t.assignments, t.estimates, t.dead_letter)
            for p in range(self.settings.kafka.partitions)
        ]
        consumer.assign(parts)
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                value = msg.value()
                if value is None:
                    continue
                now = time.monotonic()
                with self.lock:
                    if msg.topic() == t.dead_letter:
                        self.dead_letters += 1
                        continue
                    doc = json.loads(value)
                    if msg.topic() == t.assignments and "seq" in doc:
                        self.assignments.append(
                            {k: doc[k] for k in ("experiment", "product", "period", "seq")}
                        )
                        self.first_seen.setdefault((doc["experiment"], int(doc["period"])), now)
                    elif msg.topic() == t.estimates and "experiment" in doc:
                        self.estimates[doc["experiment"]].append(now)
                        key = f"{doc['experiment']}|{doc.get('estimator')}"
                        self.by_estimator[key].append(now)
        finally:
            consumer.close()

    def flipped(self) -> dict[str, dict[int, int]]:
        """experiment -> period -> how many of its messages were read."""
        out: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        with self.lock:
            for m in self.assignments:
                out[m["experiment"]][int(m["period"])] += 1
        return out
