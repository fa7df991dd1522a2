"""The soak's outside world (benchmarks/soak.py): the sales source that feeds the sales topic,
the competitor-price source that feeds the triggered experiment's rule, and the outside client
that reads the assignments and estimates topics."""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.periods import last_period, period_index, period_start
from controller.settings import Settings
from controller.spec import ExperimentSpec
from core.series import series_of_message
from streams.worker.kafka import JsonPublisher


class _HoldingPublisher:
    """A producer of one topic that holds what it makes while the broker is down (the soak
    restarts the embedded broker, whose topics are lost) and sends it once they are back."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
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

    async def flush(self) -> None:
        """Wait until the broker has what the calling task sent (``run``'s own batches)."""
        if self.publisher is not None and self.broker_up:
            await self.publisher.flush()

    async def flush_all(self) -> None:
        """Wait until the broker has everything sent so far, by ``run``'s task or any other
        (the soak's, which waits for the stream before a fault or the end)."""
        if self.publisher is not None and self.broker_up:
            await self.publisher.flush_all()

    async def _send(self, payload: bytes, key: str | None) -> None:
        if not self.broker_up or self.publisher is None:
            self.held.append((payload, key))
            return
        await self.publisher.send(self.topic, payload, key)

    async def _send_keyed(self, items: list[tuple[bytes, str]]) -> None:
        """Send keyed ``items`` in record batches a partition at a time (the publisher's
        ``send_keyed_many``: a record costs a few microseconds, against tens for ``send``)."""
        if not self.broker_up or self.publisher is None:
            self.held.extend(items)
            return
        await self.publisher.send_keyed_many(self.topic, [(k, v) for v, k in items])

    async def release_held(self) -> int:
        held, self.held = self.held, []
        keyed = [(v, k) for v, k in held if k is not None]
        if keyed:
            await self._send_keyed(keyed)
        for payload, key in held:
            if key is None:
                await self._send(payload, key)
        await self.flush()
        return len(held)


# ---------------------------------------------------------------------------- the stream
class SalesSource(_HoldingPublisher):
    """The sales stream: distinct sales at ``rate`` per second, each stamped with the clock's
    time, a share sent twice and junk beside them. It remembers what it sent per experiment
    (distinct events and units), which is what Redis must count.

    A sale is of a product of an experiment in force at its stamp (its start at or before
    it, its end after it): a product between an ended experiment and its successor sells
    nothing, since no experiment would count it. :meth:`add` adds an experiment (a
    successor) to those it sells for."""

    def __init__(
        self,
        settings: Settings,
        specs: list[ExperimentSpec],
        seed: int,
        duplicate_share: float,
        junk_per_second: float,
    ) -> None:
        super().__init__(settings, settings.topics.sales)
        self.seed = seed
        self.duplicate_share = duplicate_share
        self.junk_per_second = junk_per_second
        self.rng = random.Random(seed)
        self.specs: list[ExperimentSpec] = []
        self.sent: dict[str, list[int]] = {}
        self._choices: tuple[tuple[str, ...], list[tuple[str, str]]] = ((), [])
        for spec in specs:
            self.add(spec)
        self.recent: deque[tuple[bytes, str]] = deque(maxlen=5000)
        self.duplicates = self.junk = self.distinct = 0

    def add(self, spec: ExperimentSpec) -> None:
        """Sell ``spec``'s products while it is in force."""
        self.specs.append(spec)
        self.sent[spec.id] = [0, 0]

    def in_force(self, at: datetime) -> list[tuple[str, str]]:
        """(experiment, product) of every product of an experiment in force at ``at`` (a
        clustered spec keeps its products in its clusters: ``all_products``)."""
        ids = tuple(s.id for s in self.specs if s.start <= at < s.end)
        if ids != self._choices[0]:
            by_id = {s.id: s for s in self.specs}
            self._choices = (ids, [(e, p) for e in ids for p in by_id[e].all_products()])
        return self._choices[1]

    def _sale(self, stamp: str, choices: list[tuple[str, str]]) -> tuple[bytes, str]:
        """One distinct sale, ``stamp`` its ``occurred_at`` (the clock's time, ISO 8601)."""
        exp, product = self.rng.choice(choices)
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
            "occurred_at": stamp,
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
            stamp = at.astimezone(UTC).isoformat()
            choices = self.in_force(at)
            if not choices:  # no experiment in force: nothing to sell, nothing owed later
                made = 0.0
            batch: list[tuple[bytes, str]] = []
            while made >= 1:
                made -= 1
                sale = self._sale(stamp, choices)
                batch.append(sale)
                self.recent.append(sale)
                if self.rng.random() < self.duplicate_share:
                    self.duplicates += 1
                    batch.append(self.rng.choice(self.recent))
            if batch:
                await self._send_keyed(batch)
            while junk_due >= 1:
                junk_due -= 1
                await self._send(self._junk(at), None)
            await self.flush()


# ---------------------------------------------------------------------------- competitors
#: a competitor priced a little above our reference price all along, and one that undercuts
STEADY, CUTTER = "acme", "bolt"
#: the undercuts the competitor source makes: (depth, percent below our reference price;
#: minutes it lasts). Against the soak's rule (10% for 60 minutes) the first fires, the
#: second is too short and the third too shallow; the margins are wide enough that the
#: clock's steps (a few simulated minutes) cannot move one across the rule.
UNDERCUTS = {"meets": (15.0, 180.0), "short": (15.0, 20.0), "shallow": (5.0, 180.0)}


@dataclass
class Undercut:
    """One product's undercut by :data:`CUTTER`, as planned and as sent."""

    product: str
    kind: str  # a key of UNDERCUTS
    depth_pct: float
    begin: datetime  # planned
    minutes: float  # planned
    since: datetime | None = None  # stamp of its first event (the undercut began)
    last: datetime | None = None  # stamp of the last event sent while it held (its end's too)
    ended: bool = False


class CompetitorSource(_HoldingPublisher):
    """Competitor prices for the triggered experiment's products, each event stamped with the
    clock's time when it is sent: :data:`STEADY` states a price 4% above our reference price
    for every product at the start and every ``steady_every``; :data:`CUTTER` undercuts a
    known set of products (:data:`UNDERCUTS`: a third meet the rule, a sixth too short, a
    sixth too shallow; the rest see no undercut), restating its price every ``restate`` while
    an undercut lasts and going back above ours at its end. Undercuts begin 1 to 3 hours
    into a period drawn between the experiment's second period and ``until``, so that one
    which fires does so well before the boundary that opens its window. It sends nothing
    stamped at or after ``stop_at`` (by default the start of the experiment's last period):
    a controller routes a competitor price to the experiment holding its product when it
    applies it, and an ended experiment holds none.

    It remembers what it sent: every event, each product's last stamp, and each undercut's
    first and last stamps (:attr:`undercuts`), from which the rule's fires follow."""

    def __init__(
        self,
        settings: Settings,
        spec: ExperimentSpec,
        seed: int,
        until: datetime,
        restate: timedelta = timedelta(minutes=15),
        steady_every: timedelta = timedelta(hours=6),
        stop_at: datetime | None = None,
    ) -> None:
        super().__init__(settings, settings.topics.competitor_prices)
        rule = spec.triggered
        if rule is None:
            raise ValueError(f"experiment {spec.id!r} has no trigger rule")
        self.spec = spec
        self.stop_at = stop_at if stop_at is not None else period_start(spec, last_period(spec))
        self.references = {p: rule.reference_prices[p] for p in spec.products}
        rng = random.Random(seed)
        products = sorted(self.references)
        rng.shuffle(products)
        n = len(products)
        kinds = ["meets"] * (n // 3) + ["short"] * (n // 6) + ["shallow"] * (n // 6)
        last_k = max(1, period_index(spec, until))
        self.undercuts: dict[str, Undercut] = {}
        for product, kind in zip(products, kinds, strict=False):
            depth, minutes = UNDERCUTS[kind]
            k = rng.randint(1, last_k)
            begin = period_start(spec, k) + timedelta(minutes=rng.uniform(60, 180))
            self.undercuts[product] = Undercut(product, kind, depth, begin, minutes)
        # (instant, order, product, competitor, price, what): what is "start", "hold", "end"
        # of an undercut or "" for the steady competitor; order keeps a product's steps in
        # the order planned when they fall due together
        self._steps: list[tuple[datetime, int, str, str, float, str]] = []
        self.restate = restate
        self.steady_every = steady_every
        self._next_steady = spec.start
        for u in self.undercuts.values():
            cut = round(self.references[u.product] * (1 - u.depth_pct / 100), 4)
            end = u.begin + timedelta(minutes=u.minutes)
            self._plan(u.begin, u.product, cut, "start")
            t = u.begin + restate
            while t < end:
                self._plan(t, u.product, cut, "hold")
                t += restate
            self._plan(end, u.product, round(self.references[u.product] * 1.06, 4), "end")
        self.sent: list[tuple[str, str, float, datetime]] = []
        self.last_stamp: dict[str, datetime] = {}

    def _plan(self, at: datetime, product: str, price: float, what: str) -> None:
        heapq.heappush(self._steps, (at, len(self._steps), product, CUTTER, price, what))

    def due(self, at: datetime) -> list[tuple[bytes, str]]:
        """The events due by ``at`` (the clock's time), stamped ``at``, in the order planned."""
        out: list[tuple[bytes, str]] = []
        if at >= self.stop_at:
            return out
        while self._next_steady <= at:
            for product in sorted(self.references):
                out.append(
                    self._event(product, STEADY, round(self.references[product] * 1.04, 4), "", at)
                )
            self._next_steady += self.steady_every
        while self._steps and self._steps[0][0] <= at:
            _, _, product, competitor, price, what = heapq.heappop(self._steps)
            out.append(self._event(product, competitor, price, what, at))
        return out

    def _event(
        self, product: str, competitor: str, price: float, what: str, at: datetime
    ) -> tuple[bytes, str]:
        u = self.undercuts.get(product)
        if u is not None and what == "start":
            u.since = at
        if u is not None and u.since is not None and not u.ended:
            u.last = at  # an event while it holds (its end's included: it reports a fire due)
        if what == "end" and u is not None:
            u.ended = True
        self.sent.append((product, competitor, price, at))
        self.last_stamp[product] = at
        body = {"v": 1, "product": product, "competitor": competitor, "price": price,
                "observed_at": at.astimezone(UTC).isoformat()}  # fmt: skip
        return json.dumps(body).encode(), product

    async def run(self, now: Callable[[], datetime], stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.flowing.wait()
            await asyncio.sleep(0.05)
            if not self.flowing.is_set():
                continue
            events = self.due(now())
            for payload, key in events:
                await self._send(payload, key)
            if events:
                await self.flush()


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
        #: when each (experiment, period, seq)'s first assignment was read (a trigger fire
        #: announces a period under a seq of its own, ahead of the period's flip)
        self.first_seen: dict[tuple[str, int, int], float] = {}
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
                            {
                                k: doc.get(k)
                                for k in (
                                    "experiment",
                                    "product",
                                    "period",
                                    "seq",
                                    "probability",
                                    "status",
                                )
                            }
                        )
                        key3 = (doc["experiment"], int(doc["period"]), int(doc["seq"]))
                        self.first_seen.setdefault(key3, now)
                    elif msg.topic() == t.estimates and "experiment" in doc:
                        self.estimates[doc["experiment"]].append(now)
                        # the series the worker exports an age of (one estimator, metric,
                        # arm or segment), which PricelabEstimateStale watches
                        key = f"{doc['experiment']}|{series_of_message(doc)}"
                        self.by_estimator[key].append(now)
        finally:
            consumer.close()

    def flipped(self) -> dict[str, dict[int, int]]:
        """experiment -> period -> how many distinct products its messages named."""
        named: dict[tuple[str, int], set[str]] = defaultdict(set)
        with self.lock:
            for m in self.assignments:
                named[(m["experiment"], int(m["period"]))].add(m["product"])
        out: dict[str, dict[int, int]] = defaultdict(dict)
        for (exp, k), products in named.items():
            out[exp][k] = len(products)
        return out
