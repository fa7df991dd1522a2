"""Closed periods compacted to columns, read incrementally, and dedupe in per-period integer
sets, on the real redis-server (issue #17's state layout)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from redis.asyncio import Redis

from controller.clock import ManualClock
from controller.designs import period_assignments
from controller.panel_source import RedisPanelSource
from controller.periods import period_start
from controller.spec import Arm, load_spec
from controller.store import SaleRow, Store, to_ms
from controller.store.panel import dedupe_digest
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)
# odd product ids: a newline, a '|' and non-ASCII survive the live read and the compaction
PRODUCTS = [f"p{i:02d}" for i in range(20)] + ["crlf\r\ninside", "pipe|d", "ünï"]
HOUR = timedelta(hours=1)


#: three arms (issue #41): the records keep each arm's index, the panel names it
THREE_ARMS = {
    "arms": [
        {"name": "old", "policy": "old", "allocation": 0.4, "control": True},
        {"name": "new", "policy": "new", "allocation": 0.3},
        {"name": "newer", "policy": "newer", "allocation": 0.3},
    ]
}


def _spec(exp_id: str = "cmp", arms: dict[str, Any] | None = None) -> Any:
    return load_spec(
        {
            "id": exp_id,
            "products": PRODUCTS,
            **(arms or {"treatment_policy": "new", "control_policy": "old"}),
            "start": START.isoformat(),
            "end": (START + timedelta(hours=8)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
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


def _sale(i: int, product: str, k: int, minute: int, units: int, spec: Any) -> SaleRow:
    start = to_ms(period_start(spec, k))
    return SaleRow(
        f"e{i}",
        spec.id,
        k,
        product,
        sorted(spec.all_products()).index(product),  # where its cell sums are
        start + minute * 60_000,
        start + 10 * 60_000,
        units,
        units * 2.5,
        "",
        3600,
    )


async def _filled(
    store: Store, spec: Any = None
) -> tuple[Any, dict[tuple[int, str], int], list[SaleRow]]:
    """Periods 0-4 flipped (4 in progress) and sales in periods 0-3, sellable ones only; the
    units of the sales counted ('ok': past the head and any washout) by (period, product)."""
    spec = spec or _spec()
    await store.create_experiment(spec, START)
    for k in range(5):
        await store.write_assignments(spec.id, k, period_assignments(spec, k))
        assert await store.mark_flipped(spec.id, k)
    sellable = [p for p in PRODUCTS if "\n" not in p and "|" not in p]
    rows: list[SaleRow] = []
    want: dict[tuple[int, str], int] = defaultdict(int)
    for i in range(400):
        k, product = i % 4, sellable[i % len(sellable)]
        minute, units = 5 + (i * 7) % 50, 1 + i % 3
        rows.append(_sale(i, product, k, minute, units, spec))
    statuses = await store.ingest(rows)
    assert set(statuses) == {"ok", "head", "washout"}
    for r, status in zip(rows, statuses, strict=True):
        if status == "ok":
            want[(r.period, r.product)] += r.units
    return spec, dict(want), rows


def _units(df: pd.DataFrame) -> dict[tuple[int, str], int]:
    got = df[df.units > 0]
    return {
        (int(k), p): int(u) for k, p, u in zip(got.period, got["product"], got.units, strict=True)
    }


async def test_compacted_periods_read_as_the_live_ones_and_refuse_late_sales(store) -> None:
    spec, want, rows = await _filled(store)
    now = START + timedelta(hours=4, minutes=30)  # periods 0-3 done; 0-2 closed at 1 h lateness
    live = await RedisPanelSource(store, ManualClock(now)).panel(spec.id, now)
    assert _units(live) == want
    assert len(live) == 4 * len(PRODUCTS)  # a row per product and done period, sales or not
    source = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    # a frame is a view of the source's buffers, valid until its next call: copied to compare
    compacted = (await source.panel(spec.id, now)).copy()
    pd.testing.assert_frame_equal(compacted, live)
    state = await store.get_experiment(spec.id)
    assert (state.closed, state.compacted) == (3, 3)
    p = store.exp(spec.id)
    for k in range(3):
        assert await store.redis.exists(f"{p}:col:{k}") == 1
        assert await store.redis.exists(f"{p}:sums:{k}", f"{p}:a:{k}") == 0
    assert await store.redis.exists(f"{p}:sums:3", f"{p}:a:3") == 2  # not closed yet
    # every cell, compacted or live, in the old view (tests and operators read this)
    cells = await store.cells(spec.id)
    assert {(int(f.split("|")[0]), f.split("|")[1]): int(v) for f, v in cells.items()
            if f.endswith("|u")} == want  # fmt: skip
    totals = await store.totals(spec.id)
    # a sale of a closed period is late: counted nowhere, not even in the totals; a copy of
    # an already counted one is a duplicate while the period's markers last (a batch retried
    # after part of it was written must not dead-letter sales that were counted)
    late = [_sale(1000, "p01", 1, 30, 9, spec), rows[1]]
    assert await store.ingest(late) == ["late", "dup"]
    assert await store.totals(spec.id) == totals
    again = await source.panel(spec.id, now)
    pd.testing.assert_frame_equal(again, live)


async def test_a_three_arm_experiments_cells_keep_their_arm_through_the_compaction(store) -> None:
    spec, want, _ = await _filled(store, _spec("cmp3", THREE_ARMS))
    now = START + timedelta(hours=4, minutes=30)
    live = (await RedisPanelSource(store, ManualClock(now)).panel(spec.id, now)).copy()
    assert _units(live) == want
    # each cell's arm by name, as the flip drew it; treated is every arm but control
    drawn = {(k, a.product): a.arm_name for k in range(4) for a in period_assignments(spec, k)}
    assert {
        (int(k), p): str(a) for k, p, a in zip(live.period, live["product"], live.arm, strict=True)
    } == drawn
    assert set(live.arm) == {"old", "new", "newer"}
    assert (live.treated == (live.arm != "old").astype(int)).all()
    source = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    compacted = (await source.panel(spec.id, now)).copy()
    assert (await store.get_experiment(spec.id)).compacted == 3
    pd.testing.assert_frame_equal(compacted, live)


async def test_a_cycle_reads_only_what_is_new(store) -> None:
    spec, want, _ = await _filled(store)
    now = START + timedelta(hours=4, minutes=30)
    source = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    first = (await source.panel(spec.id, now)).copy()
    # the compacted periods are kept: with their stored form gone, the next cycle is the same
    p = store.exp(spec.id)
    assert await store.redis.delete(*(f"{p}:col:{k}" for k in range(3))) == 3
    pd.testing.assert_frame_equal(await source.panel(spec.id, now), first)
    # a fresh source has nothing kept and finds the stored form gone
    with pytest.raises(Exception, match="not compacted"):
        await RedisPanelSource(store, ManualClock(now), lateness=HOUR).panel(spec.id, now)
    assert _units(first) == want


async def test_two_workers_compact_once_and_a_close_without_its_compaction_is_redone(
    store,
) -> None:
    spec, want, _ = await _filled(store)
    # a worker died after closing period 0 but before storing it: its hashes are intact
    assert await store.close_period(spec.id, 0) == 1
    assert await store.ingest([_sale(2000, "p03", 0, 40, 5, spec)]) == ["late"]
    now = START + timedelta(hours=4, minutes=30)
    a = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    b = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    fa, fb = await asyncio.gather(a.panel(spec.id, now), b.panel(spec.id, now))
    pd.testing.assert_frame_equal(fa, fb)
    assert _units(fa) == want
    assert (await store.get_experiment(spec.id)).compacted == 3


async def test_dedupe_markers_are_compact_sets_that_expire_with_their_period(store) -> None:
    spec, _, rows = await _filled(store)
    assert set(await store.ingest(rows[:50])) == {"dup"}
    p = store.exp(spec.id)
    assert await store.redis.hget(f"{p}:seenb", "n:0") == "100"  # 400 sales over 4 periods
    assert all([await store.remembered(spec.id, r.period, r.event_id) for r in rows])
    assert not await store.remembered(spec.id, 0, "e99999")
    # the marker as the id's SHA-1 hex digits place it (the layout markers written before the
    # worker hashed ids use): member = the first 13 digits, set = the next 8 mod the buckets
    for r in rows[:20]:
        h = hashlib.sha1(r.event_id.encode()).hexdigest()
        buckets = int(await store.redis.hget(f"{p}:seenb", f"b:{r.period}"))
        key = f"{p}:seen:{r.period}:{int(h[13:21], 16) % buckets}"
        assert await store.redis.sismember(key, str(int(h[:13], 16)))
    keys = [k async for k in store.redis.scan_iter(f"{p}:seen:*")]
    assert keys
    for key in keys:
        assert await store.redis.object("encoding", key) == "intset"
        assert 0 < await store.redis.ttl(key) <= 3600
    # period 4's bucket count follows period 3's volume (~200 a set): 100 sales, one set
    await store.ingest([_sale(3000, "p00", 4, 20, 1, spec)])
    assert await store.redis.hget(f"{p}:seenb", "b:4") == "1"
    # no period before: from the experiment's 23 products (a sale each), one set
    assert await store.redis.hget(f"{p}:seenb", "b:0") == "1"


async def test_a_period_that_outgrows_its_sets_grows_in_generations(store) -> None:
    """Period 4 is sized from period 3's 100 sales (one set); 3,000 sales fill it, the first
    2,000 in one batch. Each time the sales reach ~400 a set of the generations so far, the
    next sale starts a generation of 4 times the sets (1, 4, 16 sets here), so no set passes
    Redis's 512-member intsets (one set would hold 3,000 members as a hash table, ~60 bytes
    each), within a batch too. A copy of a sale from an older generation is still a
    duplicate, before and after the period closes."""
    spec, _, _ = await _filled(store)
    p = store.exp(spec.id)
    sellable = sorted(x for x in PRODUCTS if "\n" not in x and "|" not in x)
    rows = [_sale(10_000 + i, sellable[i % 7], 4, 15 + i % 40, 1, spec) for i in range(3000)]
    for j, n in ((0, 2000), (2000, 500), (2500, 500)):
        assert set(await store.ingest(rows[j : j + n])) == {"ok"}
    assert await store.redis.hget(f"{p}:seenb", "b:4") == "1"
    assert await store.redis.hget(f"{p}:seenb", "n:4") == "3000"
    sets = sorted([k async for k in store.redis.scan_iter(f"{p}:seen:4:*")])
    assert sets == sorted([f"{p}:seen:4:0"] + [f"{p}:seen:4:g1:{b}" for b in range(4)]
                          + [f"{p}:seen:4:g2:{b}" for b in range(16)])  # fmt: skip
    sizes = [await store.redis.scard(k) for k in sets]
    assert sizes[0] == 400 and sum(sizes[:5]) == 2000  # generations 0 and 1 are full
    assert sum(sizes) == 3000 and max(sizes) <= 512
    for k in sets:
        assert await store.redis.object("encoding", k) == "intset"
    # copies from every generation: duplicates, nothing counted again
    before = await store.totals(spec.id)
    copies = rows[:5] + rows[600:605] + rows[2990:2995]
    assert await store.ingest(copies) == ["dup"] * 15
    assert await store.totals(spec.id) == before
    assert all([await store.remembered(spec.id, 4, r.event_id) for r in rows])
    assert not await store.remembered(spec.id, 4, "e99999")
    # closed: a copy of a sale from the oldest generation is a duplicate, a new sale late
    await store.close_period(spec.id, 4)
    assert await store.ingest([rows[0], _sale(99_999, "p00", 4, 20, 1, spec)]) == ["dup", "late"]


async def test_one_batch_over_many_products_sums_every_cell(store) -> None:
    """A batch adds to every cell it sold (each read and written back once): 1,000 products'
    sales in one batch, several per product, read back cell by cell."""
    spec = load_spec(
        {
            "id": "wide",
            "products": [f"w{i:04d}" for i in range(1000)],
            "treatment_policy": "new",
            "control_policy": "old",
            "start": START.isoformat(),
            "end": (START + timedelta(hours=8)).isoformat(),
            "timezone": "UTC",
            "period": "PT1H",
            "washout": "PT10M",
            "seed": 5,
        }
    )
    await store.create_experiment(spec, START)
    await store.write_assignments(spec.id, 0, period_assignments(spec, 0))
    assert await store.mark_flipped(spec.id, 0)
    rows = []
    # units in thousandths, revenue in millionths, orders, head units in thousandths
    want = np.zeros((1000, 4), dtype=np.int64)
    for i in range(3000):
        c = (i * 7) % 1000  # products named in sorted order: code = position
        units, minute = 1 + i % 4, 30  # past the head and any washout: 'ok'
        rows.append(_sale(i, f"w{c:04d}", 0, minute, units, spec))
        want[c] += (units * 1000, units * 2_500_000, 1, 0)
    rows.append(_sale(5000, "w0007", 0, 5, 3, spec))  # in the head: 'head' or 'washout'
    statuses = await store.ingest(rows)
    assert statuses[:3000] == ["ok"] * 3000
    if statuses[3000] == "head":
        want[7, 3] += 3000
    raw = await store.live_sums(spec.id, 0)
    assert raw is not None
    # the string ends at the last field written; an unwritten field reads zero
    got = np.frombuffer(raw.ljust(1000 * 32, b"\0"), dtype=">i8").reshape(1000, 4)
    np.testing.assert_array_equal(got, want)
    seenb = f"{store.exp(spec.id)}:seenb"
    assert await store.redis.hget(seenb, "n:0") == "3001"
    # a period's sets are sized for ~200 a set of the period before's sales, or of one sale per
    # product when that is more: 3,001 sales -> 16 sets; 10 sales, 1,000 products -> 8, not 1
    assert await store.redis.hget(seenb, "b:0") == "8"  # a first period: 1,000 products
    for k in (1, 2):
        await store.write_assignments(spec.id, k, period_assignments(spec, k))
        assert await store.mark_flipped(spec.id, k)
    await store.ingest([_sale(6000 + i, f"w{i:04d}", 1, 30, 1, spec) for i in range(10)])
    await store.ingest([_sale(7000, "w0000", 2, 30, 1, spec)])
    assert await store.redis.hmget(seenb, "b:1", "b:2") == ["16", "8"]


async def test_a_revenue_sum_past_2_53_stays_exact(store) -> None:
    """Lua sums in doubles, exact below 2**53: the script writes a sum out before it passes
    that. Eleven sales of the largest revenue with an odd number of millionths sum to
    10,999,999,999,999,989 millionths, an odd number past 2**53, which no double holds."""
    spec, _, _ = await _filled(store)
    big = 999_999_999.999999  # round(x * 1e6) == 999_999_999_999_999
    rows = [_sale(9000 + i, "p05", 3, 40, 1, spec)._replace(revenue=big) for i in range(11)]
    before = await store.live_sums(spec.id, 3)
    assert before is not None
    code = sorted(spec.all_products()).index("p05")
    was = int(np.frombuffer(before, dtype=">i8")[4 * code + 1])
    assert await store.ingest(rows) == ["ok"] * 11
    after = await store.live_sums(spec.id, 3)
    assert after is not None
    assert int(np.frombuffer(after, dtype=">i8")[4 * code + 1]) - was == 10_999_999_999_999_989

    # a batch whose sum lands on 2**53 + 1, which a double rounds to 2**53: written out too
    tie = [1e9] * 9 + [7_199_254.740993]  # 9 * 10**15 + 7_199_254_740_993 millionths
    assert sum(round(r * 1e6) for r in tie) == 2**53 + 1
    rows = [_sale(9100 + i, "p05", 3, 41, 1, spec)._replace(revenue=r) for i, r in enumerate(tie)]
    assert await store.ingest(rows) == ["ok"] * 10
    last = await store.live_sums(spec.id, 3)
    assert last is not None
    got = int(np.frombuffer(last, dtype=">i8")[4 * code + 1])
    assert got - was == 10_999_999_999_999_989 + 2**53 + 1


async def test_of_two_copies_in_one_batch_the_first_counts_whatever_their_keep_times(
    store,
) -> None:
    """A period's sales go to the script in batch order, whatever their keep times (they went
    in blocks per keep time, so a later copy of a sale could be counted instead of the first:
    here the paused copy, with another status and another cell)."""
    spec, _, _ = await _filled(store)
    a = _sale(9200, "p05", 4, 40, 1, spec)._replace(keep_s=3600)
    b = _sale(9201, "p06", 4, 41, 2, spec)._replace(keep_s=7200)
    b_paused = b._replace(pre_reason="paused", keep_s=3600)
    assert await store.ingest([a, b, b_paused]) == ["ok", "ok", "dup"]
    totals = await store.totals(spec.id)
    assert totals.get("units:paused", 0) == 0
    # its id is kept for the longest keep time of its period's rows
    _, bucket = dedupe_digest("e9201")
    buckets = int(await store.redis.hget(f"{store.exp(spec.id)}:seenb", "b:4"))
    ttl = await store.redis.ttl(f"{store.exp(spec.id)}:seen:4:{bucket % buckets}")
    assert 3600 < ttl <= 7200


async def test_kept_periods_follow_later_windows_and_an_earlier_as_of(store) -> None:
    spec, _, _ = await _filled(store)
    now = START + timedelta(hours=4, minutes=30)
    source = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    before = (await source.panel(spec.id, now)).copy()
    assert not before[before.period == 1].blackout.any()
    # an exclusion window over period 1's analysis window, recorded after it was kept
    await store.open_window(spec.id, "w", START + timedelta(hours=1, minutes=20), "paused")
    await store.close_windows(spec.id, START + timedelta(hours=1, minutes=40))
    after = await source.panel(spec.id, now)
    assert after[after.period == 1].blackout.all()
    assert (after.blackout[after.period != 1] == before.blackout[before.period != 1]).all()
    # an earlier as_of than the kept periods: the source starts afresh, two periods done
    early = START + timedelta(hours=2, minutes=30)
    assert sorted(set((await source.panel(spec.id, early)).period)) == [0, 1]


async def test_old_layout_experiments_are_never_compacted_and_bad_state_stays_local(
    store,
) -> None:
    spec, _, _ = await _filled(store)
    p = store.exp(spec.id)
    now = START + timedelta(hours=4, minutes=30)
    # created before the compacted layout: no n_products in its state
    await store.redis.hdel(f"{p}:state", "n_products")
    await RedisPanelSource(store, ManualClock(now), lateness=HOUR).panel(spec.id, now)
    assert (await store.get_experiment(spec.id)).compacted == 0
    assert await store.redis.exists(f"{p}:a:0", f"{p}:sums:0") == 2
    # a cell sum past the spec's products: the period is left live, the panel is empty for
    # this experiment (logged), and nothing raises into the worker's cycle
    await store.redis.hset(f"{p}:state", "n_products", str(len(PRODUCTS)))
    await store.redis.execute_command(
        "BITFIELD", f"{p}:sums:0", "INCRBY", "i64", f"#{4 * len(PRODUCTS)}", 3
    )
    df = await RedisPanelSource(store, ManualClock(now), lateness=HOUR).panel(spec.id, now)
    assert df.empty
    assert (await store.get_experiment(spec.id)).compacted == 0
    assert await store.redis.exists(f"{p}:a:0", f"{p}:sums:0") == 2


async def test_live_records_are_read_again_only_when_a_write_moved_their_version(store) -> None:
    """A live period's records are kept between cycles while their write counters say they are
    stable; a flip, freeze or resume rewrites them through write_assignments, which moves the
    counters; a write that never finished (a crash) leaves them unequal, and the records are
    then read afresh on every call, never kept."""
    spec, _, _ = await _filled(store)
    p = store.exp(spec.id)
    now = START + timedelta(hours=4, minutes=30)
    source = RedisPanelSource(store, ManualClock(now))  # no lateness: periods 0-3 stay live
    first = (await source.panel(spec.id, now)).copy()
    assert await store.records_version(spec.id, 2) == (1, 1)
    key, product = f"{p}:a:2", "p05"
    row = (first.period == 2) & (first["product"] == product)
    was = await store.redis.hget(key, product)
    flipped = ("C" if was.startswith("T") else "T") + was[1:]
    # written behind the counters' back (nothing in pricelab does): the kept copy is used
    await store.redis.hset(key, product, flipped)
    kept = await source.panel(spec.id, now)
    assert kept.treated[row].tolist() == first.treated[row].tolist()
    # a rewrite through the store moves the counters: read again
    records = period_assignments(spec, 2).map(lambda a: replace(a, arm=Arm.TREATMENT))
    await store.write_assignments(spec.id, 2, records)
    assert await store.records_version(spec.id, 2) == (2, 2)
    rewritten = (await source.panel(spec.id, now)).copy()
    assert rewritten.treated[rewritten.period == 2].all()
    # a writer that died mid-write: started 3, done 2; every call reads what is there
    await store.redis.hincrby(f"{p}:av", "w:2", 1)
    for arm in ("C", "T", "C"):
        await store.redis.hset(key, product, arm + was[1:])
        got = await source.panel(spec.id, now)
        assert got.treated[row].tolist() == [int(arm == "T")]
    # overlapping writers: A starts, B writes whole and finishes first; A is still writing,
    # so the counters stay unequal and nothing read meanwhile is kept
    await store.redis.delete(f"{p}:av")
    await store.redis.hincrby(f"{p}:av", "w:3", 1)  # A started (and never finishes here)
    await store.write_assignments(spec.id, 3, period_assignments(spec, 3))  # B
    assert await store.records_version(spec.id, 3) == (2, 1)
    row3 = (first.period == 3) & (first["product"] == product)
    for arm in ("T", "C"):
        await store.redis.hset(f"{p}:a:3", product, arm + was[1:])  # A's writes landing
        got = await source.panel(spec.id, now)
        assert got.treated[row3].tolist() == [int(arm == "T")]
    # compaction drops the counters with the period's live state
    closing = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    await closing.panel(spec.id, now)
    assert await store.redis.hexists(f"{p}:av", "w:0") == 0
    assert await store.records_version(spec.id, 0) == (0, 0)


async def test_a_period_with_sales_in_the_old_cells_hash_is_never_compacted(store) -> None:
    """A version before the packed sums kept an open period's sums in a cells:{k} hash, which
    this one does not read: compacting it would store zeros, so it is refused and left open."""
    spec, want, _ = await _filled(store)
    p = store.exp(spec.id)
    await store.redis.hset(f"{p}:cells:1", "p03|u", "5")
    now = START + timedelta(hours=4, minutes=30)
    source = RedisPanelSource(store, ManualClock(now), lateness=HOUR)
    df = await source.panel(spec.id, now)
    state = await store.get_experiment(spec.id)
    assert state.compacted == 1  # period 0 compacted, 1 refused, so 2 waits behind it
    assert await store.redis.exists(f"{p}:a:1", f"{p}:sums:1", f"{p}:cells:1") == 3
    assert _units(df) == want  # periods 1-3 still read live
