"""An adaptive ladder's flips on real Redis and the real broker (issue #57, the controller's
side of the live path): each period's probabilities are recorded once before its messages go
out (the warmup's are the allocations), a stored look steers a later period as the rule says
(the expected probabilities written out by hand here), the look of period t never steers t, a
redone decision or a second controller reuses what is recorded, and the assignment messages a
librdkafka consumer reads carry the probabilities the cells were drawn with."""

from __future__ import annotations

import hashlib
import json
import struct
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from controller.clock import ManualClock
from controller.flipper import Flipper
from controller.panel_source import RedisAdaptiveLooks, RedisPanelSource
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import Store
from core.ports import AdaptiveLook, AllocationSource
from streams.worker.kafka import JsonPublisher
from streams.worker.metrics import Metrics
from streams.worker.sinks import KafkaAssignmentSink
from tests.integration.conftest import outside_reader

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
PRODUCTS = [f"sku-{i:02d}" for i in range(30)]
ARMS = ["list", "p90", "p120"]
ALLOC = [0.4, 0.3, 0.3]


def _spec() -> Any:
    return load_spec(
        {
            "id": "adaptive-live",
            "products": PRODUCTS,
            "arms": [
                {"name": "list", "policy": "p-list", "allocation": 0.4, "price_ratio": 1.0,
                 "control": True},
                {"name": "p90", "policy": "p-90", "allocation": 0.3, "price_ratio": 0.9},
                {"name": "p120", "policy": "p-120", "allocation": 0.3, "price_ratio": 1.2},
            ],  # fmt: skip
            "start": T0.isoformat(),
            "end": (T0 + 14 * DAY).isoformat(),
            "timezone": "UTC",
            "seed": 4,
            "adaptive": {"warmup": 3},  # floor 0.05, uniform share 0.5 t^-0.2, every period
        }
    )


def _look(periods: int, means: list[float], var: float = 1e-8) -> AdaptiveLook:
    cov = tuple(tuple(var if i == j else 0.0 for j in range(3)) for i in range(3))
    return AdaptiveLook("adaptive-live", periods, "revenue", tuple(means), cov, T0)


def _by_hand(best: int, step: int) -> list[float]:
    """Thompson on a look that is certain arm ``best`` is best (it gets 1), MAD's uniform
    share 0.5 step^-0.2, then the floor 0.05 of each of 3 arms."""
    delta = 0.5 * step**-0.2
    mixed = [delta / 3 + (1 - delta) * (i == best) for i in range(3)]
    return [0.05 + (1 - 3 * 0.05) * m for m in mixed]


def _arm(seed: int, exp: str, product: str, period: int, p: list[float]) -> str:
    """The arm a random-days cell draws with ``p``: its keyed uniform (blake2b of the key)
    against the cumulative probabilities."""
    key = "\x1f".join(map(str, (seed, exp, product, period))).encode()
    u = struct.unpack(">Q", hashlib.blake2b(key, digest_size=8).digest())[0] / 2**64
    acc = 0.0
    for name, share in zip(ARMS[:-1], p[:-1], strict=True):
        acc += share
        if u < acc:
            return name
    return ARMS[-1]


def _read(settings: Settings, topic: str, until: Any, timeout: float = 30.0) -> list[dict]:
    """The topic from its beginning, read by a librdkafka consumer (a pricing system's own
    client), until ``until(messages)`` holds."""
    consumer = outside_reader(settings, topic, f"{settings.app_id}-{topic}")
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return out


async def test_an_adaptive_ladder_records_draws_and_publishes_each_period_s_probabilities(
    settings: Settings,
) -> None:
    spec = _spec()
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    store = Store(redis, settings.key_prefix)
    pub = JsonPublisher(settings)
    await pub.start()
    sink = KafkaAssignmentSink(pub, settings, Metrics())
    clock = ManualClock(T0 - timedelta(hours=1))
    a = Flipper(store, sink, clock, settings, owner="worker-a")
    b = Flipper(store, sink, clock, settings, owner="worker-b")
    looks = RedisAdaptiveLooks(store)
    source: AllocationSource = RedisPanelSource(store, clock)
    try:
        await a.create(spec)
        for k in range(3):  # the warmup: periods 0, 1, 2
            clock.set(T0 + k * DAY + timedelta(minutes=1))
            assert await a.tick() == 1
        assert await source.allocations(spec.id) == {k: tuple(ALLOC) for k in range(3)}

        # a look that used period 3 (periods 0..3) is there when period 3 begins: it must not
        # steer period 3, which holds the warmup's probabilities
        await looks.put_look(_look(4, [10.0, 11.0, 30.0]))
        clock.set(T0 + 3 * DAY + timedelta(minutes=1))
        assert await a.tick() == 1
        assert (await source.allocations(spec.id))[3] == tuple(ALLOC)

        # an older worker's late look (fewer periods) is ignored; period 4 follows the look
        # of periods 0..3: arm p120 certainly best, adaptive step 2
        await looks.put_look(_look(2, [30.0, 0.0, 0.0]))
        assert (await looks.latest(spec.id)) == _look(4, [10.0, 11.0, 30.0])
        clock.set(T0 + 4 * DAY + timedelta(minutes=1))
        assert await b.tick() == 1  # the second controller flips it
        p4 = _by_hand(best=2, step=2)
        assert (await source.allocations(spec.id))[4] == pytest.approx(p4, abs=1e-12)

        # period 5 was recorded (its flip's worker died before deciding it): the flip into 5
        # reuses the record although a newer look says otherwise
        recorded5 = [0.2, 0.5, 0.3]
        assert await store.record_allocation(spec.id, 5, recorded5) == tuple(recorded5)
        assert await store.record_allocation(spec.id, 5, ALLOC) == tuple(recorded5)
        await looks.put_look(_look(5, [30.0, 0.0, 0.0]))
        clock.set(T0 + 5 * DAY + timedelta(minutes=1))
        assert await a.tick() == 1
        assert (await source.allocations(spec.id))[5] == tuple(recorded5)

        # the decision of period 5 redone (as if its messages were not all out): the same
        # seq, the same probabilities, though the look has changed again
        await looks.put_look(_look(5, [0.0, 30.0, 0.0]))
        st = await store.get_experiment(spec.id)
        await redis.hset(f"{store.exp(spec.id)}:state", "published", st.seq - 1)
        await b.tick()
        assert (await store.get_experiment(spec.id)).published == st.seq
        assert (await source.allocations(spec.id))[5] == tuple(recorded5)
    finally:
        await pub.stop()
        await redis.aclose()

    # what a pricing system reads: every message of the ladder carries its period's
    # probabilities, and each cell's arm is the keyed draw with them
    want = {0: ALLOC, 1: ALLOC, 2: ALLOC, 3: ALLOC, 4: p4, 5: recorded5}
    n = len(PRODUCTS) * (len(want) + 1)  # period 5 twice: the redo
    got = _read(settings, settings.topics.assignments, lambda out: len(out) >= n)
    assert len(got) == n
    redone = 0
    for msg in got:
        k = msg["period"]
        assert list(msg["probabilities"]) == ARMS
        assert list(msg["probabilities"].values()) == pytest.approx(want[k], abs=1e-12)
        assert msg["arm_name"] == _arm(spec.seed, spec.id, msg["product"], k, want[k])
        assert msg["probability"] == pytest.approx(1 - want[k][0])
        redone += k == 5
    assert redone == 2 * len(PRODUCTS)

    # the audit trail: the first period's probabilities, then each change (period 4, 5)
    events = _read(
        settings,
        settings.topics.experiment_events,
        lambda out: sum(e["kind"] == "allocation" for e in out) >= 3,
    )
    changes = [e["detail"] for e in events if e["kind"] == "allocation"]
    assert [c["period"] for c in changes] == [0, 4, 5]
    assert changes[0]["probabilities"] == ALLOC and changes[0]["previous"] is None
    assert changes[1]["probabilities"] == pytest.approx(p4) and changes[1]["previous"] == ALLOC
    assert changes[1]["arms"] == ARMS and changes[1]["worker"] == "worker-b"
    assert changes[2]["probabilities"] == recorded5
