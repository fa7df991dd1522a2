"""A sale of a product handed over by a stopped experiment is the new holder's (issue #56).

Found by the model-based test (tests/integration/test_contract_stateful.py): ``old`` ran over
a product and was stopped; ``new`` was created over it afterwards, from the same day. A sale
made after that went to ``old`` as ``stopped`` (kept for audit, never analysed) whenever
``old``'s period grid still covered its time, because routing took the first experiment in
id order whose grid covered it. The product's holder at a sale's time is the one that gets it:
the stopped one up to its stop, the new one once it was created; a sale after a stop that no
later experiment took over is still the stopped one's (``stopped``, for audit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.clock import ManualClock
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import to_ms
from controller.store.experiments import ExperimentState
from streams.worker.sale_decoder import DecodedSale
from tests.unit._none_retired import NoneRetired

START = datetime(2026, 6, 1, tzinfo=UTC)
STOP = START + timedelta(hours=20)  # the old holder's stop
CREATED = START + timedelta(hours=21)  # the new holder's creation, backfilled from START
NOW = START + timedelta(hours=30)


def _spec(exp_id: str, products: list[str]) -> Any:
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(days=3)).isoformat(),
            "timezone": "UTC",
            "period": "P1D",
            "washout": "PT10M",
            "seed": 3,
        }
    )


class _Catalog(NoneRetired):
    """``old_id`` over a and b, stopped at STOP; ``new_id`` over a and c, created after."""

    def __init__(self, old_id: str, new_id: str) -> None:
        self.old_id, self.new_id = old_id, new_id

    async def version(self) -> int:
        return 1

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def experiments(self) -> list[ExperimentState]:
        old = ExperimentState(_spec(self.old_id, ["a", "b"]), "stopped", 0, 0, 0, 0)
        old.created_ms = to_ms(START)
        new = ExperimentState(_spec(self.new_id, ["a", "c"]), "running", 0, 0, 0, 0)
        new.created_ms = to_ms(CREATED)
        return sorted([old, new], key=lambda s: s.spec.id)  # the store's order: by id

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        if exp_id == self.old_id:
            return [{"start_ms": to_ms(STOP), "end_ms": None, "reason": "stop"}]
        return []


def _sale(i: int, product: str, at: datetime) -> DecodedSale:
    return DecodedSale(f"s{i}", product, 1, 2.0, 2.0, at, 1000, None)


# the old holder's id sorts first, then last: the order of ids decides nothing
@pytest.mark.parametrize(("old_id", "new_id"), [("e0", "e3"), ("e9", "e10")])
async def test_a_sale_is_its_products_holder_at_its_time(old_id: str, new_id: str) -> None:
    ingestor = SalesIngestor(
        _Catalog(old_id, new_id),  # type: ignore[arg-type]
        ManualClock(NOW),
        Settings(),
    )
    await ingestor._sync()
    sales = [
        _sale(0, "a", STOP - timedelta(hours=1)),  # before the stop: the old holder's
        _sale(1, "a", CREATED + timedelta(hours=1)),  # after the handover: the new one's
        _sale(2, "b", CREATED + timedelta(hours=1)),  # stopped, not handed over: for audit
        _sale(3, "c", CREATED + timedelta(hours=1)),  # only the new one's
    ]
    _, blocks = ingestor._route(sales)
    routed = {i: b.experiment for b in blocks for i in b.positions}
    assert routed == {0: old_id, 1: new_id, 2: old_id, 3: new_id}
    # the old holder's sale after its stop is marked so (its block's only reason)
    assert {b.experiment: b.reasons for b in blocks} == {old_id: {"stopped": 1}, new_id: {}}
    # the reference routing says the same
    for i, s in enumerate(sales):
        where = ingestor.routes.route(s.product, to_ms(s.occurred_at))
        assert where is not None and where[0].id == routed[i], i
