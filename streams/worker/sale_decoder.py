"""Decoding sales fast: msgspec for the well-formed majority, pydantic for everything else.

pydantic's ``Sale.model_validate_json`` costs about as much per event as the raw consumer's
whole per-event budget, and was the largest share of the worker's ingest time. msgspec
validates the common shape of a sale about ten times faster. It accepts a strict subset of
what :class:`streams.worker.schemas.Sale` accepts (canonical RFC 3339 timestamps with at most six
fractional digits, JSON numbers for ``units``, no lax string-to-number coercion), with the
same values; anything it does not accept, and any accepted sale that fails a rule checked
after decoding, is decoded again by pydantic, whose :func:`streams.worker.schemas.decode` then
either accepts it or raises the usual :class:`~streams.worker.schemas.DecodeError` with its reason.
So reasons, messages and accepted values are pydantic's; a differential fuzz test
(tests/unit/streams/worker/test_sale_decoder.py) holds the two paths to that.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.units import UNITS_SCALE
from streams.worker.schemas import MAX_EVENT_BYTES, Sale, decode

# The wire rules of streams.worker.schemas for the shapes this fast path takes, as one pattern over
# "event_id|product|occurred_at" ('|' is in neither an id nor a timestamp): one regex call per
# sale, where a msgspec pattern per field cost more than the whole decode. Timestamps: RFC 3339
# with an offset and at most six fractional digits, which datetime.fromisoformat reads exactly
# as pydantic does - provided the offset's minutes are below 60: fromisoformat takes "-06:61"
# as -07:01 where pydantic refuses it (found by scripts/fuzz_atheris.py).
_ID = r"[A-Za-z0-9_.:\-]{1,128}"
_INSTANT = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-5][0-9])"
)
_STRINGS = re.compile(rf"{_ID}\|{_ID}\|{_INSTANT}")


class _WireSale(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: str
    product: str
    # a JSON integer stays an int (the common case: its thousandths need no rounding check)
    units: (
        Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
        | Annotated[float, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
    )
    revenue: Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)]
    unit_price: Annotated[float, msgspec.Meta(gt=0)]
    occurred_at: str
    currency: str | None = None
    v: Literal[1, 2] = 2


class DecodedSale(msgspec.Struct, frozen=True, gc=False):
    """A sale that passed every wire rule (the fields the sales path reads). ``units_milli``:
    the units in whole thousandths, as the panel sums them."""

    event_id: str
    product: str
    units: float
    revenue: float
    unit_price: float
    occurred_at: datetime
    units_milli: int
    currency: str | None = None


_decoder = msgspec.json.Decoder(_WireSale)
_CURRENCY = re.compile(r"[A-Z]{3}")


def decode_sale(raw: bytes | str | None) -> DecodedSale | Sale:
    """Parse and validate one sale, or raise DecodeError with a reason label."""
    if raw is not None and 0 < len(raw) <= MAX_EVENT_BYTES:
        try:
            w = _decoder.decode(raw)
            ok = _STRINGS.fullmatch(f"{w.event_id}|{w.product}|{w.occurred_at}") is not None
            at = datetime.fromisoformat(w.occurred_at) if ok else None
        except (msgspec.DecodeError, ValueError):
            at = None
        if at is not None:
            units, revenue, price = w.units, w.revenue, w.unit_price
            # finite: msgspec refuses NaN and holds units within +-1e6
            if type(units) is int:
                milli, whole = units * UNITS_SCALE, True
            else:
                scaled = units * UNITS_SCALE
                milli = round(scaled)
                whole = -1e-6 <= scaled - milli <= 1e-6
            expected = units * price
            gap = abs(revenue - expected)
            if (
                milli
                and whole
                and math.isfinite(revenue)
                and math.isfinite(price)
                and not (gap > 0.01 and gap > 1e-6 * abs(expected))
                and (w.currency is None or _CURRENCY.fullmatch(w.currency) is not None)
            ):
                return DecodedSale(
                    w.event_id, w.product, units, revenue, price, at, milli, w.currency
                )
    return decode(Sale, raw)  # type: ignore[arg-type]
