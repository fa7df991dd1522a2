"""An experiment read in chunks of products (issue #42), on the real redis-server: the analysis
worker publishes the same messages as when it reads the experiment whole, through its own code
(``run_once``), at a first look, after one new period (from the sums it kept) and after an
exclusion window laid over periods it had kept sums of."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from analysis.chunked import ChunkedLooks, Chunking
from analysis.results import published_fields
from analysis.worker import AnalysisWorker, InMemorySequenceTuning
from controller.clock import ManualClock
from controller.designs import period_assignments
from controller.panel_source import RedisPanelSource
from controller.spec import load_spec
from controller.store import Store
from controller.store.chunks import ProductNames
from controller.store.columns import (
    NO_RECORD,
    ColumnsError,
    decode,
    encode,
    from_live,
    pack_sums,
    records_of,
)
from core.ports import EstimatorPlan
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
# odd ids survive the chunked read as the whole one; 25 products: 5 chunks of 5
PRODUCTS = [f"p{i:02d}" for i in range(23)] + ["dot.ted", "ünï"]
ALL = 10**9  # a bound no experiment here reaches


def _spec(exp_id: str) -> Any:
    ids = sorted(PRODUCTS)
    return load_spec(
        {
            "id": exp_id,
            "design": "random-days",
            "products": PRODUCTS,
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(hours=14)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
            "unit_costs": {p: 2.0 + i % 5 for i, p in enumerate(ids)},
            "segments": {"first": ids[:6], "late": ids[17:]},
            "guardrails": [{"metric": "units", "max_drop_pct": 30}],
        }
    )


@pytest.fixture
async def store(stack: Any) -> AsyncIterator[Store]:
    settings = make_settings(stack)
    redis = Redis.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    s = Store(redis, settings.key_prefix)
    try:
        yield s
    finally:
        await redis.aclose()


async def _period(store: Store, spec: Any, k: int, sold: bool = True, flip: bool = True) -> None:
    """Period k flipped (its records written), and its cell sums as the ingest script leaves
    them: units that rise 10% under treatment, at a price 5% lower."""
    drawn = period_assignments(spec, k)
    if flip:
        await store.write_assignments(spec.id, k, drawn)
        assert await store.mark_flipped(spec.id, k)
    if not sold:
        return
    rng = np.random.default_rng(k)
    treated = {a.product: a.index != spec.control_index for a in drawn}
    ids = sorted(spec.all_products())
    level = np.array([5.0 + 3 * (i % 7) for i in range(len(ids))])
    t = np.array([treated[p] for p in ids])
    units = rng.poisson(level * (1 + 0.1 * t))
    revenue = units * (10.0 + np.arange(len(ids)) % 4) * (1 - 0.05 * t)
    sums = pack_sums(units, revenue, np.maximum(units // 2, 0), np.zeros(len(ids), int))
    await store.redis.set(f"{store.exp(spec.id)}:sums:{k}", sums)


class Sink:
    def __init__(self) -> None:
        self.messages: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.verdicts: list[dict[str, Any]] = []

    async def publish(self, experiment: str, result: Any, as_of: datetime, cs: Any) -> None:
        fields = published_fields(result, cs)
        key = (fields["estimator"], fields["metric"], fields.get("segment"), fields.get("arm"))
        assert key not in self.messages
        self.messages[key] = fields

    async def publish_verdict(self, experiment: str, verdict: Any, as_of: datetime) -> None:
        self.verdicts.append(dict(verdict))


def _worker(store: Store, clock: ManualClock, chunking: Chunking) -> tuple[AnalysisWorker, Sink]:
    sink = Sink()
    source = RedisPanelSource(store, clock, lateness=HOUR)
    worker = AnalysisWorker(
        source,
        sink,
        clock,
        verdicts=sink,
        tuning=InMemorySequenceTuning(),
        chunking=chunking,
    )
    return worker, sink


def _same(a: Any, b: Any, where: str = "") -> None:
    """The same message: numbers to 1e-9 (relative), the rest equal."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), where
        for k in b:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(b, float) and not isinstance(b, bool):
        if math.isnan(b):
            assert math.isnan(a), where
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


async def _looks(whole: AnalysisWorker, chunked: AnalysisWorker) -> tuple[Sink, Sink]:
    ws, cs = whole.sink, chunked.sink
    assert isinstance(ws, Sink) and isinstance(cs, Sink)
    ws.messages.clear(), cs.messages.clear(), ws.verdicts.clear(), cs.verdicts.clear()
    await whole.run_once()
    await chunked.run_once()
    return ws, cs


async def _getrange_calls(store: Store) -> int:
    stats = await store.redis.info("commandstats")
    return int(stats.get("cmdstat_getrange", {}).get("calls", 0))


async def test_chunks_publish_what_the_whole_panel_publishes(store: Store) -> None:
    spec = _spec("chunked")
    await store.create_experiment(spec, START)
    for k in range(7):
        await _period(store, spec, k)
    await _period(store, spec, 7, sold=False)  # in progress
    clock = ManualClock(START + timedelta(hours=7, minutes=5))  # 0-5 closed at 1 h lateness
    whole, _ = _worker(store, clock, Chunking(above=ALL))
    chunked, _ = _worker(store, clock, Chunking(above=0, products=5, sample=ALL))

    ws, cs = await _looks(whole, chunked)
    assert (await store.get_experiment(spec.id)).compacted == 6
    # the design's estimators of every metric, the segments, the elasticity, the verdict
    assert {("fe", "units", None, None), ("dm", "price", None, None), ("ht", "profit", None, None),
            ("fe", "revenue", "first", None)} <= ws.messages.keys()  # fmt: skip
    assert ws.messages.keys() == cs.messages.keys()
    for key, fields in ws.messages.items():
        _same(cs.messages[key], fields, str(key))
    assert len(ws.verdicts) == len(cs.verdicts) == 1
    _same(cs.verdicts[0], ws.verdicts[0], "verdict")

    # one new period: the chunked worker reads the periods its kept sums do not cover only
    await _period(store, spec, 7, flip=False)
    await _period(store, spec, 8, sold=False)
    clock.set(START + timedelta(hours=8, minutes=5))
    before = await _getrange_calls(store)
    cs.messages.clear(), cs.verdicts.clear()
    await chunked.run_once()
    calls = await _getrange_calls(store) - before
    # period 6 compacted since (its header, then its 5 chunks), period 7 open (5 chunks)
    assert calls == 1 + 5 * 2
    ws, cs = await _looks(whole, chunked)
    assert ws.messages.keys() == cs.messages.keys()
    for key, fields in ws.messages.items():
        _same(cs.messages[key], fields, str(key))
    assert cs.messages[("dm", "units", None, None)]["n_periods"] == 8

    # a pause laid over period 2, which the chunked worker kept sums of: it starts afresh
    await store.open_window(spec.id, "w1", START + timedelta(hours=2, minutes=20), "pause")
    await store.close_windows(spec.id, START + timedelta(hours=2, minutes=40))
    ws, cs = await _looks(whole, chunked)
    assert ws.messages[("dm", "units", None, None)]["n_periods"] == 7  # period 2 blacked out
    for key, fields in ws.messages.items():
        _same(cs.messages[key], fields, str(key))


async def test_a_missed_flip_is_left_out_by_chunks_as_by_the_whole_panel(store: Store) -> None:
    """A flip no controller made (a tick late by more than a period: "caught up over 1 missed
    flip(s)"): period 3 has no assignment record and no sums. The whole panel's long table has
    no row of it and leaves it out; the chunked look must publish the same messages, at the
    first look and once the period is compacted, not fail on an unbalanced panel (the soak of
    2026-11-29 03:19: every look of that experiment failed so until its end)."""
    spec = _spec("missed")
    await store.create_experiment(spec, START)
    for k in (0, 1, 2, 4, 5):
        await _period(store, spec, k)
    await _period(store, spec, 6, sold=False)  # the period in force at the second look
    clock = ManualClock(START + timedelta(hours=4, minutes=30))  # 0-2 closed, 3 missed, 4 open
    whole, _ = _worker(store, clock, Chunking(above=ALL))
    chunked, _ = _worker(store, clock, Chunking(above=0, products=5, sample=ALL))
    for hours in (4.5, 6.5):  # period 3 within the lateness, then compacted with 0-4
        clock.set(START + timedelta(hours=hours))
        ws, cs = await _looks(whole, chunked)
        assert ws.messages and ws.messages.keys() == cs.messages.keys()
        assert not any("unbalanced" in str(f.get("error", "")) for f in ws.messages.values())
        for key, fields in ws.messages.items():
            _same(cs.messages[key], fields, str(key))
        assert len(ws.verdicts) == len(cs.verdicts)
    assert cs.messages[("dm", "units", None, None)]["n_periods"] == 5  # 0-2, 4, 5: not 3


async def test_a_sample_below_the_products_leaves_the_sums_over_all_of_them(store: Store) -> None:
    """With a sample of 8 of 25 products: dm, ht (and the price by dm) still come from every
    product; fe, fitted on the sample, says so by its n_units; a segment is fitted on all its
    products (they are read whole)."""
    spec = _spec("sampled")
    await store.create_experiment(spec, START)
    for k in range(6):
        await _period(store, spec, k)
    await _period(store, spec, 6, sold=False)
    clock = ManualClock(START + timedelta(hours=6, minutes=5))
    whole, _ = _worker(store, clock, Chunking(above=ALL))
    chunked, _ = _worker(store, clock, Chunking(above=0, products=7, sample=8))
    ws, cs = await _looks(whole, chunked)
    for key in [k for k in ws.messages if k[0] in ("dm", "ht") and k[2] is None]:
        _same(cs.messages[key], ws.messages[key], str(key))
    for key in [k for k in ws.messages if k[2] is not None]:  # segments
        _same(cs.messages[key], ws.messages[key], str(key))
    assert ws.messages[("fe", "units", None, None)]["n_units"] == 25
    assert cs.messages[("fe", "units", None, None)]["n_units"] == 8
    assert cs.messages[("fe", "units", None, None)]["effect"] != pytest.approx(
        ws.messages[("fe", "units", None, None)]["effect"], rel=1e-6
    )


async def test_a_period_stored_in_blocks_is_read_by_ranges(store: Store) -> None:
    """The store's GETRANGE of a compacted period's blocks: the header first, then only the
    blocks of a span (here blocks of 4 products), equal to the whole period's decode."""
    spec = _spec("blocks")
    await store.create_experiment(spec, START)
    await _period(store, spec, 0)
    products = sorted(spec.all_products())
    import pandas as pd

    index = pd.Index(products)
    records = records_of(index, await store.live_records(spec.id, 0))
    cols = from_live(index, records, await store.live_sums(spec.id, 0))
    blob = encode(cols, block=4)
    await store.redis.set(f"{store.exp(spec.id)}:col:0", blob)
    (header,) = await store.period_headers(spec.id, [0])
    assert header.block == 4 and len(header.offsets) == 8  # 25 products: 7 blocks
    whole = decode(blob)
    for start, stop in ((0, 4), (3, 9), (8, 12), (21, 25), (0, 25)):
        (got,) = await store.compacted_span(spec.id, [(0, header)], start, stop)
        assert got.units.tolist() == whole.units[start:stop].tolist()
        assert got.revenue.tolist() == whole.revenue[start:stop].tolist()
        assert got.codes.tolist() == whole.codes[start:stop].tolist()
    (tail,) = await store.live_sums_span(spec.id, [0], 23, 25)
    assert len(tail) == 2 * 32


async def _calls(store: Store, command: str) -> int:
    stats = await store.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_open_periods_records_are_read_by_chunks_kept_while_stable_and_reused(
    store: Store,
) -> None:
    """The chunked read takes each chunk's records of an open period in the chunk's order
    (HMGET in the read-only script; no HSCAN of the whole hash), keeps them once every chunk
    was read at a stable records version (the next look reads none), and the compaction of
    that period reuses them (no HSCAN either)."""
    spec = _spec("byrecords")
    await store.create_experiment(spec, START)
    for k in range(6):
        await _period(store, spec, k)
    await _period(store, spec, 6, sold=False)
    clock = ManualClock(START + timedelta(hours=6, minutes=5))  # 0-4 closed; 5 open
    source = RedisPanelSource(store, clock, lateness=HOUR)
    looks = ChunkedLooks(Chunking(above=0, products=5, sample=ALL))
    plans = [EstimatorPlan("dm", {"cluster": "unit"}), EstimatorPlan("ht", {"p": 0})]
    await source.layout(spec.id, clock.now())  # compacts 0-4 (never read: each hash whole)
    hscan, hmget = await _calls(store, "hscan"), await _calls(store, "hmget")
    first = await looks.look(source, spec.id, clock.now(), plans)
    assert first is not None
    assert await _calls(store, "hscan") == hscan
    # period 5's 5 chunks, and its records version read before and after them (HMGET too)
    assert await _calls(store, "hmget") - hmget == 5 + 2
    hmget = await _calls(store, "hmget")
    again = await looks.look(source, spec.id, clock.now(), plans)
    assert again is not None and await _calls(store, "hmget") - hmget == 1  # the version only
    for key, result in first[0].results.items():
        other = again[0].results[key]
        if isinstance(result, Exception):
            assert type(other) is type(result)
        else:
            assert (other.effect, other.se) == (result.effect, result.se)
    # period 5 closes: compacted from the records kept, equal to the hash read whole
    records = await store.live_records(spec.id, 5)
    clock.set(START + timedelta(hours=7, minutes=5))
    await _period(store, spec, 6, flip=False)
    await _period(store, spec, 7, sold=False)
    hscan = await _calls(store, "hscan")
    assert await looks.look(source, spec.id, clock.now(), plans) is not None
    assert (await store.get_experiment(spec.id)).compacted == 6
    assert await _calls(store, "hscan") == hscan
    (cols,) = await store.compacted_periods(spec.id, [5])
    assert cols.records(sorted(spec.all_products())) == records


async def test_records_with_newlines_and_of_other_products(store: Store) -> None:
    """A product name or a record that holds a newline is read one by one, in the products'
    order; a record of a product outside the experiment stops the chunked look with the
    sentence ``records_of`` says, as the whole read did."""
    spec = _spec("odd")
    await store.create_experiment(spec, START)
    key = f"{store.exp(spec.id)}:a:9"
    await store.redis.hset(key, mapping={"a\nb": "T|0.5||", "c": "C|0.5||why\nnot", "e": "x"})
    (span,) = await store.live_records_span(spec.id, [9], ProductNames.of(["a\nb", "c", "d"]))
    codes = span.records.codes.tolist()
    assert [span.records.templates[c] for c in codes[:2]] == ["T|0.5||", "C|0.5||why\nnot"]
    assert codes[2] == NO_RECORD and span.held == 3 and span.found == 2
    (plain,) = await store.live_records_span(spec.id, [9], ProductNames.of(["e", "d", "c"]))
    assert [plain.records.templates[c] for c in plain.records.codes[[0, 2]]] == [
        "x",
        "C|0.5||why\nnot",
    ]

    for k in range(3):
        await _period(store, spec, k)
    await _period(store, spec, 3, sold=False)
    await store.redis.hset(f"{store.exp(spec.id)}:a:2", "zz", "T|0.5||")  # not a product
    clock = ManualClock(START + timedelta(hours=3, minutes=5))
    source = RedisPanelSource(store, clock)  # no lateness: periods 0-2 stay open
    looks = ChunkedLooks(Chunking(above=0, products=7, sample=ALL))
    with pytest.raises(ColumnsError, match="not in the experiment"):
        await looks.look(source, spec.id, clock.now(), [EstimatorPlan("dm", {})])
