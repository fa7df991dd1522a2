"""Live sales as a shop's system sends them (issue #54, item 4), on the real broker and Redis:
a return, a sale by weight and a sale in the experiment's currency are counted once; a sale in
another currency is dead-lettered with reason ``currency``; ``pricelab dead-letters`` lists
the letters and replays one that passes now exactly once.

The sales are written and read with librdkafka (confluent-kafka), as a shop's system and a
consumer of ours would; the worker's sales handler counts what it reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.spec import load_spec
from streams.worker.handlers import RawEvent
from tests.integration.conftest import outside_reader, pricelab, read_topic

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
AT = START + timedelta(hours=10)  # after period 0's washout: analysed


def _spec() -> Any:
    return load_spec(
        dict(
            id="exp-retail",
            products=["A", "B", "C", "D"],
            treatment_policy="new",
            control_policy="old",
            start=START.isoformat(),
            end=(START + timedelta(days=5)).isoformat(),
            timezone="UTC",
            washout="PT2H",
            seed=11,
            currency="EUR",
        )
    )


def sale(eid: str, product: Any, units: float, price: float, **extra: Any) -> bytes:
    doc = {
        "event_id": eid,
        "product": product,
        "units": units,
        "revenue": round(units * price, 6),
        "unit_price": price,
        "occurred_at": AT.isoformat(),
        **extra,
    }
    return json.dumps(doc).encode()


def produce(settings: Any, values: list[bytes]) -> None:
    """Send sales as a shop's system would (librdkafka, keyed by product)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all"})
    for v in values:
        product = json.loads(v)["product"]
        p.produce(settings.topics.sales, value=v, key=str(product).encode())
    assert p.flush(30) == 0


async def consume(settings: Any, reader: Any, n: int, timeout: float = 30.0) -> list[RawEvent]:
    """The next ``n`` messages of the sales topic as the handler takes them."""
    out: list[RawEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < n and loop.time() < deadline:
        msg = await asyncio.to_thread(reader.poll, 0.5)
        if msg is None or msg.error():
            continue
        out.append(RawEvent(msg.value(), msg.partition(), msg.offset()))
    assert len(out) == n, f"read {len(out)} of {n} sales"
    return out


async def test_returns_weights_and_currencies_are_counted_once_and_a_replay_counts_once(
    runtime: Any, settings: Any
) -> None:
    spec = _spec()
    await runtime.clock.set(START + timedelta(hours=12))
    await runtime.flipper.create(spec, backfill=True)
    # an earlier version dead-lettered this return (units must then be above 0), and a sale
    # whose product id came as a number: written by the worker's own dead-letter sink
    old_return = sale("r-old", "D", -2, 4.5)
    number_id = sale("n-1", 121, 1, 5.0)
    for i, raw in enumerate((old_return, number_id)):
        await runtime.dlq.send(
            settings.topics.sales, raw, "invalid_field", "units: must be above 0", AT, 0, i
        )
    await runtime.dlq.publisher.flush()

    produce(
        settings,
        [
            sale("s-1", "A", 3, 5.0, currency="EUR"),
            sale("s-2", "A", -1, 5.0),  # a return, no currency: the experiment's
            sale("s-3", "B", 0.25, 8.0, currency="EUR", v=2),  # by weight
            sale("s-4", "C", 2, 5.0, currency="GBP"),
        ],
    )
    reader = outside_reader(settings, settings.topics.sales, f"shop-{uuid.uuid4().hex[:6]}")
    try:
        first = await consume(settings, reader, 4)
        counts = await runtime.sales.handle(first)
        assert counts == {"ok": 3, "currency": 1}
        again = await runtime.sales.handle(first)  # redelivered after a restart
        assert again == {"dup": 3, "currency": 1}

        cells = await runtime.store.cells(spec.id)
        assert (cells["0|A|u"], cells["0|A|r"], cells["0|A|n"]) == ("2", "10.0", "1")
        assert (cells["0|B|u"], cells["0|B|r"]) == ("0.25", "2.0")
        assert not any(k.startswith("0|C|") for k in cells)

        dead = await read_topic(settings, settings.topics.dead_letter, expect=4)
        currency = [d for d in dead if d["reason"] == "currency"]
        assert len(currency) == 2  # the sale, and its redelivery
        assert "GBP" in currency[0]["error"]

        listed = pricelab(settings, "dead-letters", "--idle", "1")
        assert listed.returncode == 0, listed.stderr
        assert "currency: 2 (2 pass the decoder now)" in listed.stdout
        assert "invalid_field: 2 (1 pass the decoder now)" in listed.stdout
        assert '"event_id": "r-old"' in listed.stdout

        for _ in range(2):  # the same replay twice: the return is counted once
            done = pricelab(
                settings, "dead-letters", "--replay", "--reason", "invalid_field", "--idle", "1"
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines()[0] == (f"replayed 1 of 2 to {settings.topics.sales}")
            assert "is the number 121" in done.stdout
        replayed = await consume(settings, reader, 2)
        assert [json.loads(e.value or b"")["event_id"] for e in replayed] == ["r-old", "r-old"]
        assert await runtime.sales.handle(replayed) == {"ok": 1, "dup": 1}
        cells = await runtime.store.cells(spec.id)
        assert (cells["0|D|u"], cells["0|D|r"]) == ("-2", "-9.0")
        assert "0|D|n" not in cells  # a return is no order
        totals = await runtime.store.totals(spec.id)
        assert totals["units:ok"] == 3 - 1 + 0.25 - 2 and totals["events:ok"] == 4
    finally:
        reader.close()


async def test_dead_letters_refuses_in_one_sentence(settings: Any) -> None:
    for args, said in [
        (("--replay",), "--replay needs --reason or --offset"),
        (("--reason", "nope"), "no dead letter has reason 'nope'"),
        (("--offset", "x:y"), "is not PARTITION:OFFSET"),
    ]:
        done = pricelab(settings, "dead-letters", *args, "--idle", "0.5")
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines


async def test_a_cell_sums_weights_and_returns_exactly_in_any_order_and_batching(
    runtime: Any,
) -> None:
    """Product A gets the quantities in one batch, product B the same ones reversed, three a
    batch: both cells hold the exact sum (in floats 0.1 + 0.2 + 0.3 is not 0.3 + 0.2 + 0.1).
    A batch redelivered with one new return counts only the return."""
    spec = _spec()
    await runtime.clock.set(START + timedelta(hours=12))
    await runtime.flipper.create(spec, backfill=True)
    quantities = [0.1, 0.2, 0.3, -0.4, 1.001, 2.5, -0.125, 0.7, 12.345, -1]
    assert sum(quantities) != sum(reversed(quantities))  # what a float sum would do
    exact = sum(round(q * 1000) for q in quantities)  # 15621 thousandths, written out below
    assert exact == 15621
    a = [RawEvent(sale(f"a{i}", "A", q, 2.0)) for i, q in enumerate(quantities)]
    b = [RawEvent(sale(f"b{i}", "B", q, 2.0)) for i, q in enumerate(reversed(quantities))]
    assert await runtime.sales.handle(a) == {"ok": 10}
    for i in range(0, len(b), 3):
        await runtime.sales.handle(b[i : i + 3])
    cells = await runtime.store.cells(spec.id)
    assert cells["0|A|u"] == cells["0|B|u"] == "15.621"
    assert cells["0|A|r"] == cells["0|B|r"] == "31.242"
    assert cells["0|A|n"] == cells["0|B|n"] == "7"  # the 3 returns are no orders

    # a worker that died before committing its offsets reads the batch again, with one more
    late_return = RawEvent(sale("a-ret", "A", -0.621, 2.0))
    assert await runtime.sales.handle([*a, late_return]) == {"dup": 10, "ok": 1}
    cells = await runtime.store.cells(spec.id)
    assert (cells["0|A|u"], cells["0|A|r"], cells["0|A|n"]) == ("15", "30.0", "7")
    # the totals in thousandths, plus what a version before them summed in whole units
    assert (await runtime.store.totals(spec.id))["units:ok"] == 30.621  # A 15, B 15.621
    await runtime.redis.hincrby(f"{runtime.store.exp(spec.id)}:totals", "units:ok", 4)
    assert round((await runtime.store.totals(spec.id))["units:ok"] * 1000) == 34_621
