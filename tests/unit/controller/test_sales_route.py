"""The ingestor's routing loop packs each sale inline (the hot path of ingestion): it must
give exactly the blocks that routing with ``RoutingTable.route`` and packing with
``SalesBlock.add`` (the store's reference packer) give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.clock import ManualClock
from controller.errors import StoreError
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import SalesBlock, to_ms
from controller.store.experiments import ExperimentState
from streams.worker.sale_decoder import DecodedSale
from tests.unit._none_retired import NoneRetired

START = datetime(2026, 6, 1, tzinfo=UTC)
NOW = START + timedelta(hours=30)


def _spec(exp_id: str, products: list[str], period: str, **kw: Any) -> Any:
    return load_spec(
        kw
        | {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=3)).isoformat(),
            "timezone": "UTC",
            "period": period,
            "washout": "PT10M",
            "seed": 3,
        }
    )


SPECS = [
    _spec("hourly", [f"h{i}" for i in range(30)], "PT1H"),
    _spec("daily", [f"d{i}" for i in range(20)], "P1D", currency="EUR"),
]
PAUSE = {"start_ms": to_ms(START + timedelta(hours=20)), "end_ms": None, "reason": "price war"}


class _Catalog(NoneRetired):
    """Two running experiments, one paused since hour 20; nothing reaches Redis."""

    async def version(self) -> int:
        return 1

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def experiments(self) -> list[ExperimentState]:
        return [ExperimentState(s, "running", 0, 0, 0, 0) for s in SPECS]

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        return [PAUSE] if exp_id == "daily" else []


def _sales(n: int, seed: int) -> list[DecodedSale]:
    rng = random.Random(seed)
    names = [p for s in SPECS for p in s.products] + ["stranger"]
    out = []
    for _ in range(n):
        # a few late (before NOW - 48 h) and future (after NOW + 10 min) sales too
        at = START + timedelta(seconds=rng.randrange(-20 * 3600, 30 * 3600 + 1200))
        # sales, returns (negative) and goods by weight (thousandths)
        units = rng.choice([rng.randint(1, 9), -rng.randint(1, 3), rng.randint(1, 9999) / 1000])
        price = round(rng.uniform(0.5, 90), 2)
        eid = f"e{rng.randrange(n // 2)}"  # copies in one batch, too
        currency = rng.choice([None, "EUR", "GBP"])
        out.append(
            DecodedSale(
                eid,
                rng.choice(names),
                units,
                units * price,
                price,
                at,
                round(units * 1000),
                currency,
            )  # fmt: skip
        )
    return out


async def _ingestor() -> SalesIngestor:
    ingestor = SalesIngestor(_Catalog(), ManualClock(NOW), Settings())  # type: ignore[arg-type]
    await ingestor._sync()
    return ingestor


def _state(b: SalesBlock) -> tuple[Any, ...]:
    return (b.experiment, b.period, b.head_end_ms, b.keep_s, b.positions, b.records,
            b.products, b.entries, b.reasons)  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
async def test_the_inlined_loop_packs_what_route_and_add_pack(seed: int) -> None:
    ingestor = await _ingestor()
    sales = _sales(3000, seed)
    verdicts, blocks = ingestor._route(sales)

    # the reference: RoutingTable.route, then SalesBlock.add, one sale at a time
    now_ms = to_ms(NOW)
    settings = Settings()
    lateness = int(settings.allowed_lateness.total_seconds() * 1000)
    keep_base = lateness + int(settings.dedupe_margin.total_seconds() * 1000) - now_ms
    skew = int(settings.max_future_skew.total_seconds() * 1000)
    want: dict[tuple[str, int], SalesBlock] = {}
    routed = currency_refused = 0
    for i, s in enumerate(sales):
        ts = to_ms(s.occurred_at)
        where = ingestor.routes.route(s.product, ts)
        if ts < now_ms - lateness or ts > now_ms + skew or where is None:
            assert verdicts[i] is not None
            continue
        exp, k = where
        if s.currency not in (None, exp.spec.currency) and exp.spec.currency is not None:
            assert verdicts[i] is not None and verdicts[i].status == "currency"  # type: ignore[union-attr]
            currency_refused += 1
            continue
        assert verdicts[i] is None
        b = want.get((exp.id, k))
        if b is None:
            keep = (exp.bounds_ms[k + 1] + keep_base) // 1000 + 1
            b = want[(exp.id, k)] = SalesBlock(exp.id, k, exp.bounds_ms[k] + exp.washout_ms, keep)
        reason = next((w.reason for w in exp.windows if w.start_ms <= ts < w.end_ms), "")
        code = sorted(exp.spec.all_products()).index(s.product)
        b.add(i, s.event_id, s.product, code, ts, s.units, s.revenue, reason)
        routed += 1
    # the cases are there: routed, late or outside, and paused
    assert 1200 < routed < 2900 and any(b.reasons for b in want.values())
    assert currency_refused > 50
    assert [_state(b) for b in blocks] == [_state(b) for b in want.values()]


async def test_a_revenue_the_script_cannot_sum_exactly_is_refused() -> None:
    ingestor = await _ingestor()
    at = START + timedelta(hours=25)
    with pytest.raises(StoreError, match="revenue is outside"):
        ingestor._route([DecodedSale("x", "h1", 1, 2e9, 2e9, at, 1000)])
    with pytest.raises(StoreError, match="revenue is outside"):
        SalesBlock("hourly", 25, 0, 1).add(0, "x", "h1", 1, to_ms(at), 1, float("nan"))


def test_a_product_the_audit_keys_cannot_name_is_refused() -> None:
    with pytest.raises(StoreError, match="cannot hold"):
        SalesBlock("hourly", 0, 0, 1).add(0, "x", "a|b", 1, 0, 1, 1.0)
