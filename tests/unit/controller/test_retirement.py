"""When an experiment is over for the controller (controller/retirement.py), and what its
retirement changes in the sales routing: no verdict, ``unknown_product`` included, also for a
worker that starts after it (issue #56: a controller's memory grew with every experiment
ever run).

The times below are worked by hand: the spec runs from 1 June 00:00 UTC to 3 June 12:00 in
daily periods, so its last period (2 June... 3 June) ends on 4 June 00:00 - after the spec's
end, as the routing table's last bound does. With a lateness of 2 days and a margin of 1 day
its sales window closes on 7 June 00:00.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.clock import ManualClock
from controller.retirement import is_retired, sales_close
from controller.sales import SalesIngestor
from controller.settings import Settings
from controller.spec import load_spec
from controller.store import to_ms
from controller.store.experiments import ExperimentState
from controller.trigger_runner import TriggerRunner
from streams.worker.sale_decoder import DecodedSale
from tests.unit.controller.test_trigger_runner_order import _Price
from tests.unit.controller.test_trigger_runner_order import _Sink as _TriggerSink
from tests.unit.controller.test_trigger_runner_order import _spec as _trigger_spec
from tests.unit.controller.test_trigger_runner_order import _Store as _TriggerStore

START = datetime(2026, 6, 1, tzinfo=UTC)
LATENESS, MARGIN = timedelta(days=2), timedelta(days=1)
CLOSE = datetime(2026, 6, 7, tzinfo=UTC)  # 4 June 00:00 (the last period's end) + 2 d + 1 d


def _spec(exp_id: str, products: list[str], start: datetime = START, days: float = 2.5) -> Any:
    return load_spec(
        {
            "id": exp_id,
            "products": products,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": start.isoformat(),
            "end": (start + timedelta(days=days)).isoformat(),
            "timezone": "UTC",
            "period": "P1D",
            "washout": "PT10M",
            "seed": 3,
        }
    )


def _state(status: str, seq: int = 3, published: int = 3, flipped: int = 2) -> ExperimentState:
    return ExperimentState(_spec("e", ["a"]), status, flipped, seq, 0, 3, published=published)


def test_the_sales_window_closes_after_the_last_period_not_the_spec_end() -> None:
    assert sales_close(_spec("e", ["a"]), LATENESS, MARGIN) == CLOSE


@pytest.mark.parametrize(
    ("status", "seq", "published", "now", "retired"),
    [
        # final, its messages out: retired from the close on, not a second before
        ("ended", 3, 3, CLOSE, True),
        ("ended", 3, 3, CLOSE - timedelta(seconds=1), False),
        ("stopped", 2, 2, CLOSE, True),
        ("stopped", 2, 2, CLOSE - timedelta(seconds=1), False),
        # the spec's end + lateness + margin (6 June 12:00) is not enough: its last period
        # takes sales until 4 June 00:00
        ("ended", 3, 3, datetime(2026, 6, 6, 12, tzinfo=UTC), False),
        # its last messages not all out: never, however late
        ("ended", 4, 3, CLOSE + timedelta(days=30), False),
        ("stopped", 3, 2, CLOSE + timedelta(days=30), False),
        # not final: never
        ("running", 3, 3, CLOSE + timedelta(days=30), False),
        ("paused", 3, 3, CLOSE + timedelta(days=30), False),
        ("creating", 0, 0, CLOSE + timedelta(days=30), False),
    ],
)
def test_an_experiment_is_over_once_final_published_and_its_sales_window_closed(
    status: str, seq: int, published: int, now: datetime, retired: bool
) -> None:
    assert is_retired(_state(status, seq, published), now, LATENESS, MARGIN) is retired


def test_an_experiment_stopped_before_it_ever_flipped_is_over_at_its_grids_close() -> None:
    """Its planned grid, not its stop, bounds the sales that can still be routed into it (a
    sale after the stop is routed to it as ``stopped``, for audit, until the grid's end)."""
    st = _state("stopped", 0, 0, flipped=-1)  # stopped while created: nothing flipped
    assert not is_retired(st, CLOSE - timedelta(seconds=1), LATENESS, MARGIN)
    assert is_retired(st, CLOSE, LATENESS, MARGIN)


# ------------------------------------------------------------------ the routing, before/after
NOW = CLOSE + timedelta(hours=5)  # 'old' is over; 'live' runs
SETTINGS = Settings(allowed_lateness=LATENESS, dedupe_margin=MARGIN)


class _Catalog:
    """Two generations over the catalogue: ``old`` (a, b; ended) and ``live`` (b, c; running,
    from 6 June); ``retired`` says whether ``old`` is retired, as ExperimentStore keeps it."""

    def __init__(self, retired: bool) -> None:
        old = ExperimentState(_spec("old", ["a", "b"]), "ended", 2, 3, 0, 3, published=3)
        old.created_ms = to_ms(START)
        live_start = datetime(2026, 6, 6, tzinfo=UTC)
        live = ExperimentState(
            _spec("live", ["b", "c"], live_start, days=5), "running", 1, 2, 0, 2, published=2
        )
        live.created_ms = to_ms(live_start)
        self.all = [live, old]  # the store's order: by id
        self.retired = retired
        #: what experiments_unretired says of old if it differs from ``retired``: old
        #: retired between a refresh's read of the experiments and of the count
        self.listed_retired: bool | None = None
        self.product_reads = 0
        assert is_retired(old, NOW, LATENESS, MARGIN)  # the premise
        assert not is_retired(live, NOW, LATENESS, MARGIN)

    async def version(self) -> int:
        return 1

    async def freezes(self) -> list[dict[str, Any]]:
        return []

    async def experiments(self) -> list[ExperimentState]:
        return self.all

    async def experiments_unretired(self) -> list[ExperimentState]:
        hidden = self.retired if self.listed_retired is None else self.listed_retired
        return [s for s in self.all if not (hidden and s.spec.id == "old")]

    async def retired_count(self) -> int:
        return int(self.retired)

    async def retired_products(self, excluding: Any = ()) -> set[str]:
        self.product_reads += 1
        return {p for p in ("a", "b") if p not in excluding} if self.retired else set()

    async def windows(self, exp_id: str) -> list[dict[str, Any]]:
        return []


def _sales() -> list[DecodedSale]:
    """Every product (held by old only, by both, by live only, by none) at every hour from
    before old's start to after now: late, routed, outside and future sales alike."""
    out = []
    for product in ("a", "b", "c", "z"):
        at = START - timedelta(hours=3)
        while at < NOW + timedelta(hours=3):
            out.append(DecodedSale(f"{product}{len(out)}", product, 1, 2.0, 2.0, at, 1000, None))
            at += timedelta(hours=1)
    return out


async def _verdicts(
    retired: bool, unknown_product: str
) -> list[tuple[str, str | None, int | None]]:
    """Each sale's verdict from routing: its status, or the experiment and period routed to
    (what the ingest script is then given)."""
    settings = SETTINGS.model_copy(update={"unknown_product": unknown_product})
    ingestor = SalesIngestor(_Catalog(retired), ManualClock(NOW), settings)  # type: ignore[arg-type]
    await ingestor._sync()
    verdicts, blocks = ingestor._route(_sales())
    routed = {i: (b.experiment, b.period) for b in blocks for i in b.positions}
    return [
        ("routed", *routed[i]) if v is None else (v.status, None, None)
        for i, v in enumerate(verdicts)
    ]


@pytest.mark.parametrize("unknown_product", ["dead-letter", "count"])
async def test_retiring_an_experiment_changes_no_routing_verdict(unknown_product: str) -> None:
    before = await _verdicts(False, unknown_product)
    # a fresh ingestor reads the retired experiment's products from the store: what a worker
    # started after the retirement does
    after = await _verdicts(True, unknown_product)
    assert after == before
    # the premise: the grid holds every kind of verdict, and a's 'unknown_product' would be
    # what a table that forgot old's products said
    statuses = {v[0] for v in before}
    assert statuses >= {"late", "future", "outside_experiment", "routed"}
    sales = _sales()
    by_product = {
        p: {v[0] for v, s in zip(before, sales, strict=True) if s.product == p} for p in "abcz"
    }
    unknown = "unknown_product" if unknown_product == "dead-letter" else "outside_experiment"
    assert by_product["z"] == {"late", "future", unknown}
    assert "unknown_product" not in by_product["a"]
    assert "outside_experiment" in by_product["a"]  # a, after old's window closed


async def test_the_routing_table_drops_a_retired_experiment_and_keeps_its_products() -> None:
    catalog = _Catalog(False)
    ingestor = SalesIngestor(catalog, ManualClock(NOW), SETTINGS)  # type: ignore[arg-type]
    await ingestor._sync()
    assert ingestor.routes.experiments == 2
    assert [e.id for e in ingestor.routes.by_product["b"]] == ["old", "live"]
    catalog.retired = True
    ingestor.routes.version = -1  # the retirement moves the store's version
    await ingestor._sync()
    assert ingestor.routes.experiments == 1
    assert [e.id for e in ingestor.routes.by_product["b"]] == ["live"]
    assert "a" not in ingestor.routes.by_product
    # b is live's: only a, which no experiment holds, is kept (issue #56: the whole set is
    # the catalogue, ~100 MB at a million products, in every routing table)
    assert ingestor.routes.retired_products == {"a"}
    assert catalog.product_reads == 1
    ingestor.routes.version = -1  # another change (a freeze): the set is not read again
    await ingestor._sync()
    assert catalog.product_reads == 1
    assert ingestor.routes.retired_products == {"a"}


async def test_an_experiment_retired_between_a_refreshs_reads_leaves_its_products_kept() -> None:
    """old is retired after the refresh read the experiments (still listing it) and before it
    read the count (counting it): a's and b's sales are old's, so none is kept then. At the
    next refresh old is gone with the count unchanged: a must be kept all the same, or its
    sales would read ``unknown_product`` from then on."""
    catalog = _Catalog(True)
    catalog.listed_retired = False
    ingestor = SalesIngestor(catalog, ManualClock(NOW), SETTINGS)  # type: ignore[arg-type]
    await ingestor._sync()
    assert [e.id for e in ingestor.routes.by_product["a"]] == ["old"]
    assert ingestor.routes.retired_products == set()
    catalog.listed_retired = None
    ingestor.routes.version = -1
    await ingestor._sync()
    assert "a" not in ingestor.routes.by_product
    assert ingestor.routes.retired_products == {"a"}
    verdicts, _ = ingestor._route(
        [DecodedSale("s", "a", 1, 2.0, 2.0, NOW - timedelta(hours=1), 1000, None)]
    )
    assert verdicts[0] is not None and verdicts[0].status == "outside_experiment"


async def test_a_worker_that_counts_unknown_products_never_reads_the_retired_ones() -> None:
    settings = SETTINGS.model_copy(update={"unknown_product": "count"})
    catalog = _Catalog(True)
    ingestor = SalesIngestor(catalog, ManualClock(NOW), settings)  # type: ignore[arg-type]
    await ingestor._sync()
    assert catalog.product_reads == 0
    assert ingestor.routes.retired_products == set()


# ------------------------------------------------------------------ the trigger runner
class _Retiring(_TriggerStore):
    """A triggered experiment the store reports retired once ``retired`` is set (the version
    moves with it, as ``lua/retire.lua`` moves it)."""

    def __init__(self) -> None:
        super().__init__(_trigger_spec())
        self.slow_first = False
        self.retired = False

    async def version(self) -> int:
        return 2 if self.retired else 1

    async def experiments_unretired(self) -> list[ExperimentState]:
        return [] if self.retired else await self.experiments()


async def test_the_trigger_runner_keeps_nothing_of_a_retired_experiment() -> None:
    store = _Retiring()
    runner = TriggerRunner(store, _TriggerSink(store.log), ManualClock(START))  # type: ignore[arg-type]
    # a price that fires nothing: the runner now keeps the experiment's spec, tracker, turn
    await runner.on_prices([_Price("a", "x", 99.0, START)])
    assert store.log == ["save a"]
    assert (set(runner._specs), set(runner._cache), set(runner._turns)) == ({"trig"},) * 3
    store.retired = True
    await runner._load_routes()
    assert (runner._specs, runner._cache, runner._turns, runner._routes) == ({}, {}, {}, {})
