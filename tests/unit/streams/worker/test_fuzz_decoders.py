"""Fuzzing the wire decoders and the sales path with hypothesis (bounded examples in CI; more in
scripts/fuzz_nightly.py, which sets the PRICELAB_FUZZ_EXAMPLES environment variable).

Properties: a decoder raises nothing but DecodeError, with a reason from a closed set; an
accepted sale satisfies every wire rule; and the sales handler never raises on any batch:
each bad event goes to the dead-letter topic with its reason, and the dead-letter metric's
label is that same reason.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from controller.clock import ManualClock
from controller.sales import SalesIngestor
from controller.settings import Settings
from streams.worker.control import CompetitorHandler
from streams.worker.handlers import RawEvent, SalesHandler
from streams.worker.metrics import Metrics
from streams.worker.schemas import (
    MAX_EVENT_BYTES,
    Command,
    CompetitorPrice,
    DecodeError,
    Sale,
    decode,
)
from tests.unit._none_retired import NoneRetired

EXAMPLES = int(os.environ.get("PRICELAB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REASONS = {
    "empty",
    "too_large",
    "malformed_json",
    "missing_field",
    "unknown_field",
    "unsupported_version",
    "invalid_field",
}
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5)
    ),
    max_leaves=20,
)


def valid_sale(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "event_id": "e-1",
        "product": "sku-1",
        "units": 2,
        "revenue": 10.0,
        "unit_price": 5.0,
        "occurred_at": "2026-06-01T10:00:00+00:00",
    }
    base.update(over)
    return base


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@pytest.mark.parametrize("model", [Sale, CompetitorPrice, Command])
@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_errors(model: Any, raw: bytes) -> None:
    try:
        decode(model, raw)
    except DecodeError as exc:
        assert exc.reason in REASONS


@pytest.mark.parametrize("model", [Sale, CompetitorPrice, Command])
@FUZZ
@given(doc=json_values)
def test_arbitrary_json_raises_only_decode_errors(model: Any, doc: Any) -> None:
    try:
        decode(model, _dumps(doc))
    except DecodeError as exc:
        assert exc.reason in REASONS


field_values = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
)


@FUZZ
@given(field=st.sampled_from(sorted(valid_sale())), value=field_values)
def test_wrong_types_and_junk_in_a_field(field: str, value: Any) -> None:
    try:
        sale = decode(Sale, _dumps(valid_sale(**{field: value})))
    except DecodeError as exc:
        assert exc.reason in REASONS
        return
    _assert_valid(sale)


def _assert_valid(sale: Sale) -> None:
    """What every accepted sale satisfies, checked independently of the model's validators."""
    # v2: a return is negative, goods by weight fractional, in whole thousandths
    assert sale.units != 0 and -1_000_000 <= sale.units <= 1_000_000
    assert abs(sale.units * 1000 - round(sale.units * 1000)) <= 1e-6
    assert sale.units_milli == round(sale.units * 1000)
    assert math.isfinite(sale.revenue) and abs(sale.revenue) <= 1e9
    assert math.isfinite(sale.unit_price) and sale.unit_price > 0
    assert sale.occurred_at.utcoffset() is not None
    for ident in (sale.event_id, sale.product):
        assert 1 <= len(ident) <= 128
        assert all(c.isascii() and (c.isalnum() or c in "_.:-") for c in ident)
    expected = sale.units * sale.unit_price
    assert abs(sale.revenue - expected) <= max(0.01, 1e-6 * abs(expected))


@FUZZ
@given(
    units=st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True)),
    price=st.floats(allow_nan=True, allow_infinity=True),
)
def test_negative_nan_and_infinite_numbers(units: Any, price: float) -> None:
    doc = valid_sale(units=units, unit_price=price, revenue=10.0)
    raw = _dumps(doc)
    bad = (
        not (-1_000_000 <= units <= 1_000_000)  # NaN too
        or units == 0
        or abs(units * 1000 - round(units * 1000)) > 1e-6
        or not math.isfinite(price)
        or price <= 0
    )
    if bad:
        with pytest.raises(DecodeError) as info:
            decode(Sale, raw)
        assert info.value.reason == "invalid_field"
    else:
        try:
            _assert_valid(decode(Sale, raw))
        except DecodeError as exc:  # revenue no longer equals units x price
            assert exc.reason == "invalid_field"


def test_named_reasons() -> None:
    assert _reason(b"{") == "malformed_json"
    assert _reason(b"") == "empty"
    assert _reason(b" " * (MAX_EVENT_BYTES + 1)) == "too_large"
    assert (
        _reason(_dumps({k: v for k, v in valid_sale().items() if k != "units"})) == "missing_field"
    )
    assert _reason(_dumps(valid_sale(color="red"))) == "unknown_field"
    assert _reason(_dumps(valid_sale(v=3))) == "unsupported_version"
    assert _reason(_dumps(valid_sale(units=float("nan")))) == "invalid_field"
    assert _reason(_dumps(valid_sale(event_id="e-1\n"))) == "invalid_field"  # trailing newline
    assert _reason(_dumps(valid_sale(occurred_at="2026-06-01T10:00:00"))) == "invalid_field"
    assert _reason("\ud800".encode("utf-8", "surrogatepass")) == "malformed_json"
    assert _reason(b"[" * 100_000 + b"]" * 100_000) == "too_large"
    assert _reason(b"[" * 30_000 + b"]" * 30_000) == "malformed_json"


def _reason(raw: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decode(Sale, raw)
    return info.value.reason


# --------------------------------------------------------------------- the handler never dies


class _Publisher:
    async def flush(self) -> None:
        return None


class _Dlq:
    def __init__(self, metrics: Metrics) -> None:
        self.publisher = _Publisher()
        self.metrics = metrics
        self.sent: list[tuple[bytes | None, str]] = []

    async def send(
        self,
        source_topic: str,
        raw: bytes | None,
        reason: str,
        error: str,
        at: datetime,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        assert error and len(error) < 100_000
        self.sent.append((raw, reason))
        self.metrics.dead_lettered.labels(source_topic, reason).inc()


class _EmptyStore(NoneRetired):
    """A store with no experiments: every sale that passes the door is an unknown product."""

    async def version(self) -> int:
        return 0

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def experiments(self) -> list[Any]:
        return []

    def pack_blocks(self, blocks: Any, n: int) -> Any:
        raise AssertionError("nothing should reach Redis without an experiment")

    async def ingest_packed(self, batch: Any) -> list[str]:
        raise AssertionError("nothing should reach Redis without an experiment")


timestamps = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
events = st.one_of(
    st.binary(max_size=200),
    json_values.map(_dumps),
    st.builds(
        lambda at, product, units: _dumps(
            valid_sale(
                occurred_at=at.isoformat(), product=product, units=units, revenue=units * 5.0
            )
        ),
        timestamps,
        st.text(alphabet="abcxyz-_.:0123456789", min_size=1, max_size=20),
        st.integers(min_value=1, max_value=10),
    ),
    st.just(b"x" * (MAX_EVENT_BYTES + 10)),
    st.none(),
)


@FUZZ
@given(batch=st.lists(events, max_size=20))
def test_sales_handler_dead_letters_every_bad_event_and_never_raises(batch: list[Any]) -> None:
    metrics = Metrics(CollectorRegistry())
    dlq = _Dlq(metrics)
    clock = ManualClock(NOW)
    cfg = Settings(unknown_product="dead-letter")
    handler = SalesHandler(SalesIngestor(_EmptyStore(), clock, cfg), dlq, metrics, clock, "sales")  # type: ignore[arg-type]
    counts = asyncio.run(handler.handle([RawEvent(b, 0, i) for i, b in enumerate(batch)]))
    assert sum(counts.values()) == len(batch)
    assert len(dlq.sent) == len(batch)  # nothing can be applied without an experiment
    assert sorted(repr(raw) for raw, _ in dlq.sent) == sorted(repr(b) for b in batch)
    for _, reason in dlq.sent:
        assert reason in REASONS | {"late", "future", "unknown_product"}
    by_reason: dict[str, int] = {}
    for _, reason in dlq.sent:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    for reason, n in by_reason.items():
        assert (
            metrics.registry.get_sample_value(
                "pricelab_dead_letter_total", {"topic": "sales", "reason": reason}
            )
            == n
        )
    # time rules: a valid sale is late, future or an unknown product, by its timestamp
    for raw, reason in dlq.sent:
        if reason in ("late", "future", "unknown_product"):
            at = decode(Sale, raw).occurred_at  # type: ignore[arg-type]
            if at < NOW - cfg.allowed_lateness:
                assert reason == "late"
            elif at > NOW + cfg.max_future_skew:
                assert reason == "future"
            else:
                assert reason == "unknown_product"


def test_far_past_and_future_timestamps_are_rejected_by_time() -> None:
    metrics = Metrics(CollectorRegistry())
    dlq = _Dlq(metrics)
    clock = ManualClock(NOW)
    handler = SalesHandler(
        SalesIngestor(_EmptyStore(), clock, Settings()), dlq, metrics, clock, "sales"
    )  # type: ignore[arg-type]
    batch = [
        _dumps(valid_sale(event_id="old", occurred_at="0001-01-01T00:00:00+23:59")),
        _dumps(valid_sale(event_id="new", occurred_at="9999-12-31T23:59:59-23:59")),
        _dumps(valid_sale(event_id="soon", occurred_at=(NOW + timedelta(hours=1)).isoformat())),
    ]
    asyncio.run(handler.handle([RawEvent(b) for b in batch]))
    assert [r for _, r in dlq.sent] == ["late", "future", "future"]


# ------------------------------------------------- a bad event does not keep its batch alive


class _Consumed:
    """A consumed record as the handlers read it (value, partition, offset), that a weak
    reference can watch: freed or not once the batch is handled and let go."""

    __slots__ = ("value", "partition", "offset", "__weakref__")

    def __init__(self, value: bytes | None, offset: int) -> None:
        self.value, self.partition, self.offset = value, 0, offset


def _freed_without_a_collection(handle: Any, raws: list[bytes | None]) -> list[bool]:
    """Handle a batch of ``raws`` with the cyclic collector off, let the batch go, and say
    of each record whether it is gone (by reference counting alone, as it is once a batch
    is done in a worker, whose full collection runs only each minute)."""
    batch = [_Consumed(raw, i) for i, raw in enumerate(raws)]
    refs = [weakref.ref(e) for e in batch]
    gc.collect()
    gc.disable()
    try:
        asyncio.run(handle(batch))
        del batch
        return [r() is None for r in refs]
    finally:
        gc.enable()


def test_a_sales_batch_with_a_bad_event_is_freed_once_handled() -> None:
    """In the soak every batch with a malformed sale stayed in memory until the worker's
    next full collection (up to 9,000 records at a time): the handler kept the raised
    DecodeError, whose traceback holds the handler's frame, which holds the batch."""
    metrics = Metrics(CollectorRegistry())
    dlq = _Dlq(metrics)
    clock = ManualClock(NOW)
    cfg = Settings(unknown_product="dead-letter")
    handler = SalesHandler(SalesIngestor(_EmptyStore(), clock, cfg), dlq, metrics, clock, "sales")  # type: ignore[arg-type]
    raws = [_dumps(valid_sale(event_id=f"s{i}")) for i in range(3)] + [b"{not json", None]
    # a validator's refusal: its ValueError, kept in the error's context, had a cycle of its own
    raws.append(_dumps(valid_sale(event_id="neg", units=-1)))
    assert _freed_without_a_collection(handler.handle, raws) == [True] * 6
    assert sorted(r for _, r in dlq.sent) == [
        "empty", "invalid_field", "malformed_json", *["unknown_product"] * 3
    ]  # fmt: skip


def test_a_competitor_batch_with_a_bad_event_is_freed_once_handled() -> None:
    metrics = Metrics(CollectorRegistry())
    dlq = _Dlq(metrics)
    handler = CompetitorHandler(dlq, metrics, ManualClock(NOW), "competitor")  # type: ignore[arg-type]
    assert _freed_without_a_collection(handler.handle, [b"{not json", b"[]"]) == [True, True]
    assert [r for _, r in dlq.sent] == ["malformed_json", "invalid_field"]
