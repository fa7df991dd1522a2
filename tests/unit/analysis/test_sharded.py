"""The pure parts of one experiment's analysis over several workers (analysis.sharded): which
worker computes which chunk, the chunk's part as bytes and back bit for bit, and the merge of
parts computed apart into what one worker's merge gives."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.chunked import (
    ChunkSums,
    chunk_estimator,
    chunk_sums,
    finish_all,
    grid_panels,
    grid_sums,
    merge_in_order,
)
from analysis.errors import NotEstimable, PanelError
from analysis.estimators.sums import MeansPartial, PartsMismatch, SumPartial
from analysis.shard_codec import BadPartial, ChunkPart, decode_part, encode_part
from analysis.sharded import WaitBudget, chunks_of, look_id, merging_shard
from core.ports import CellGrid, EstimatorPlan, GridLayout

N, T = 23, 9
PRODUCTS = np.array(sorted(f"p{i:03d}" for i in range(N)), dtype=object)
PLANS = (
    EstimatorPlan("dm", {"cluster": "unit"}),
    EstimatorPlan("ht", {"p": 0}),
    EstimatorPlan("hajek", {"p": 0}),
)
DTYPE = pd.CategoricalDtype(PRODUCTS)


def _world(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    treated = rng.random((N, T)) < 0.5
    units = rng.poisson(5.0 * (1 + 0.2 * treated)).astype(float)
    blackout = rng.random((N, T)) < 0.1
    return {
        "treated": treated,
        "units": units,
        "revenue": units * (9.5 + rng.random((N, T))),
        "blackout": blackout,
    }


def _grid(w: dict[str, np.ndarray], a: int, b: int) -> CellGrid:
    rows = pd.DataFrame(
        {
            "product": pd.Categorical.from_codes(np.repeat(np.arange(a, b), T), dtype=DTYPE),
            "period": np.tile(np.arange(T), b - a),
            "period_start": pd.DatetimeIndex(
                pd.date_range("2026-06-01", periods=T, freq="h", tz="Europe/Berlin")
            )[np.tile(np.arange(T), b - a)],
            "units": w["units"][a:b].ravel(),
            "treated": w["treated"][a:b].ravel().astype(np.int8),
            "blackout": w["blackout"][a:b].ravel(),
            "blackout_reason": pd.Categorical(
                np.where(w["blackout"][a:b].ravel(), "washout", ""), categories=["", "washout"]
            ),
        }
    )
    return CellGrid(
        start=a,
        stop=b,
        products=PRODUCTS[a:b],
        periods=np.arange(T),
        values={"units": w["units"][a:b], "revenue": w["revenue"][a:b]},
        treated=w["treated"][a:b],
        probability=np.full((b - a, T), 0.5),
        blackout=w["blackout"][a:b],
        recorded=np.ones((b - a, T), dtype=bool),
        classes=None,
        rows=rows,
    )


def _fitted() -> list[tuple[EstimatorPlan, object]]:
    out = []
    for plan in PLANS:
        est, why = chunk_estimator(plan, seed=0)
        assert est is not None, why
        out.append((plan, est))
    return out


def _parts(w: dict[str, np.ndarray], size: int) -> list[ChunkPart]:
    fitted = _fitted()
    out = []
    for a in range(0, N, size):
        grid = _grid(w, a, min(N, a + size))
        out.append(ChunkPart(chunk_sums(fitted, grid_panels(grid)), grid.rows))
    return out


def _bits_equal(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes() if a.dtype != object else a.tolist() == b.tolist()
    elif isinstance(a, MeansPartial | SumPartial):
        assert type(a) is type(b)
        for f in a.__dataclass_fields__:
            _bits_equal(getattr(a, f), getattr(b, f))
    elif hasattr(a, "__dataclass_fields__"):  # ArmSums
        for f in a.__dataclass_fields__:
            _bits_equal(getattr(a, f), getattr(b, f))
    elif isinstance(a, float):
        assert isinstance(b, float) and np.float64(a).tobytes() == np.float64(b).tobytes()
    else:
        assert type(a) is type(b) and a == b, (a, b)


@pytest.mark.parametrize(("n_chunks", "partitions"), [(16, 2), (16, 4), (5, 8), (1, 3), (7, 3)])
def test_each_chunk_is_computed_by_exactly_one_owner(n_chunks: int, partitions: int) -> None:
    owners = [chunks_of(n_chunks, partitions, {s}) for s in range(partitions)]
    assert sorted(c for cs in owners for c in cs) == list(range(n_chunks))
    # two workers of a group splitting the shards between them
    half = set(range(0, partitions, 2))
    both = chunks_of(n_chunks, partitions, half) + chunks_of(
        n_chunks, partitions, set(range(partitions)) - half
    )
    assert sorted(both) == list(range(n_chunks))
    assert 0 <= merging_shard("exp-1", partitions) < partitions
    assert merging_shard("exp-1", partitions) == merging_shard("exp-1", partitions)
    # dealt from the shard after the merging one: the merging worker's share is the smallest
    for m in range(partitions):
        shares = [len(chunks_of(n_chunks, partitions, {s}, m)) for s in range(partitions)]
        assert sum(shares) == n_chunks
        assert shares[m] == min(shares) and max(shares) - min(shares) <= 1


def test_a_part_goes_through_bytes_bit_for_bit() -> None:
    (part,) = _parts(_world(), N)
    part.sums.parts[("dm", "price")] = NotEstimable("no price by this one")
    part.sums.parts[("x", "units")] = PartsMismatch("parts that do not fit")
    back = decode_part(encode_part(part), lambda: DTYPE)
    assert back.sums.parts.keys() == part.sums.parts.keys()
    for key, p in part.sums.parts.items():
        q = back.sums.parts[key]
        if isinstance(p, Exception):
            assert type(q) is type(p) and str(q) == str(p)
        else:
            _bits_equal(p, q)
    assert back.sums.control.keys() == part.sums.control.keys()
    for m, (s, c) in part.sums.control.items():
        _bits_equal(s, back.sums.control[m][0])
        assert back.sums.control[m][1] == c
    assert part.rows is not None and back.rows is not None
    pd.testing.assert_frame_equal(back.rows, part.rows)
    assert back.rows["product"].dtype is DTYPE  # one dtype: the rows concatenate by codes


def test_a_blob_of_another_kind_is_refused() -> None:
    (part,) = _parts(_world(), N)
    blob = encode_part(part)
    with pytest.raises(BadPartial):
        decode_part(b"\x80\x04pickle", lambda: DTYPE)
    with pytest.raises(BadPartial):
        decode_part(blob[:-8], lambda: DTYPE)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_parts_from_several_workers_merge_into_one_workers_figures(size: int) -> None:
    """Chunks computed by two "workers" (by shard), sent as bytes, merged in chunk order: the
    same bits as the merge of one worker's chunks, and the estimates of the whole panel's
    single part to 1e-9."""
    w = _world()
    parts = _parts(w, size)
    one = merge_in_order([p.sums for p in parts])
    n_chunks, partitions = len(parts), 2
    received: dict[int, ChunkSums] = {}
    for shard in (1, 0):  # whoever finishes first
        for c in chunks_of(n_chunks, partitions, {shard}, merging=0):
            received[c] = decode_part(encode_part(parts[c]), lambda: DTYPE).sums
    merged = merge_in_order([received[c] for c in range(n_chunks)])
    for key, p in one.parts.items():
        _bits_equal(p, merged.parts[key])
    fitted = _fitted()
    metrics = ("units", "revenue", "price")
    got = finish_all(fitted, merged, metrics)
    (whole,) = _parts(w, N)
    want = finish_all(fitted, whole.sums, metrics)
    assert got.keys() == want.keys()
    for key, r in want.items():
        if isinstance(r, Exception):
            assert type(got[key]) is type(r)
            continue
        g = got[key]
        assert not isinstance(g, Exception)
        for f in ("effect", "se", "df"):
            if getattr(r, f) is None:
                assert getattr(g, f) is None
            else:
                assert getattr(g, f) == pytest.approx(getattr(r, f), rel=1e-9, abs=1e-12), (key, f)


def test_the_merge_order_is_fixed() -> None:
    """The pairwise tree over chunks in order: ((0 1)(2 3))(4), not a running total."""
    parts = _parts(_world(), 5)
    assert len(parts) == 5
    s = [p.sums for p in parts]
    tree = s[0].merge(s[1], "units").merge(s[2].merge(s[3], "units"), "units").merge(s[4], "units")
    for key, p in merge_in_order(s).parts.items():
        _bits_equal(p, tree.parts[key])


def test_a_look_is_named_by_its_round_periods_windows_and_estimators() -> None:
    layout = GridLayout("e", tuple(PRODUCTS), done=9, final=7, hits=(False,) * 9)
    same = GridLayout("e", tuple(PRODUCTS), done=9, final=7, hits=(False,) * 9)
    assert look_id(layout, ("dm",)) == look_id(same, ("dm",))
    assert look_id(layout, ("dm",)) != look_id(layout, ("ht",))
    later = GridLayout("e", tuple(PRODUCTS), done=10, final=8, hits=(False,) * 10)
    assert look_id(layout, ("dm",)) != look_id(later, ("dm",))
    paused = GridLayout("e", tuple(PRODUCTS), done=9, final=7, hits=(True,) + (False,) * 8)
    assert look_id(layout, ("dm",)) != look_id(paused, ("dm",))
    # the same periods a round later: the open periods may hold more sales, another look
    assert look_id(layout, ("dm",), 41) == look_id(same, ("dm",), 41)
    assert look_id(layout, ("dm",), 41) != look_id(layout, ("dm",), 42)
    assert look_id(layout, ("dm",), 41) != look_id(layout, ("dm",))


def test_an_unbalanced_chunk_is_an_error_not_a_part() -> None:
    w = _world()
    grid = _grid(w, 0, 4)
    grid.recorded[1, 2] = False
    with pytest.raises(PanelError):
        grid_panels(grid)


def test_a_period_no_product_has_a_record_of_is_left_out_as_the_long_table_leaves_it() -> None:
    """A missed flip: no controller flipped period 4's boundary, so no product has a record
    of it (its cells blacked out, its sales unassigned). The soak of 2026-11-29 03:19 met one,
    and every look of that experiment failed on it until its end ("The panel is unbalanced"),
    while the long table, which has no row of such a period, leaves it out. The chunks' figures
    must be those of a world built without period 4, in any chunking."""
    w = _world()
    missed = 4
    for k in ("units", "revenue"):
        w[k][:, missed] = 0.0
    w["blackout"][:, missed] = True
    keep = [t for t in range(T) if t != missed]
    fitted = _fitted()
    metrics = ("units", "revenue", "price")

    def figures(grids: list[CellGrid]) -> dict:
        sums = merge_in_order([chunk_sums(fitted, grid_panels(g)) for g in grids])
        return finish_all(fitted, sums, metrics)

    def without(g: CellGrid) -> CellGrid:
        return CellGrid(g.start, g.stop, g.products, g.periods[keep],
                        {k: v[:, keep] for k, v in g.values.items()}, g.treated[:, keep],
                        g.probability[:, keep], g.blackout[:, keep],
                        np.ones((g.stop - g.start, T - 1), dtype=bool), None, None)  # fmt: skip

    want = figures([without(_grid(w, 0, N))])
    for size in (N, 5):
        grids = []
        for a in range(0, N, size):
            g = _grid(w, a, min(N, a + size))
            g.recorded[:, missed] = False
            grids.append(g)
        panels = grid_panels(grids[0])
        assert list(panels["units"].times) == keep
        got = figures(grids)
        assert got.keys() == want.keys()
        estimated = 0
        for key, r in want.items():
            g = got[key]
            if isinstance(r, Exception):  # ht's price: not an estimator of it, either way
                assert type(g) is type(r), key
                continue
            assert not isinstance(g, Exception), (key, g)
            assert g.effect == pytest.approx(r.effect, rel=1e-12), key
            assert g.se == pytest.approx(r.se, rel=1e-12), key
            estimated += 1
        assert estimated >= 7
    # the compacted periods and the rest, read apart (analysis.chunked's split): the same
    g = _grid(w, 0, N)
    g.recorded[:, missed] = False
    assert list(grid_panels(g, slice(0, 6))["units"].times) == [0, 1, 2, 3, 5]
    assert list(grid_panels(g, slice(6, None))["units"].times) == [6, 7, 8]
    # a period some products have a record of and others not is still an error
    g.recorded[3, 6] = False
    with pytest.raises(PanelError, match="product 'p003' has no assignment record at period 6"):
        grid_panels(g)


def test_chunks_that_leave_out_other_periods_do_not_merge_into_figures() -> None:
    """A flip's records cut short (a controller killed mid-write, the period then caught up
    over): period 4 has records for products 0-9 and none for 10-22. Each chunk alone looks
    whole (the second has no record of period 4 at all and leaves it out), so the merge must
    refuse them, as the whole panel would be refused, not give figures over other periods."""
    w = _world()
    fitted = _fitted()
    grids = [_grid(w, 0, 10), _grid(w, 10, 23)]
    grids[1].recorded[:, 4] = False
    sums = [grid_sums(fitted, g) for g in grids]
    assert sums[0].missed == frozenset() and sums[1].missed == {4}
    got = finish_all(fitted, merge_in_order(sums), ("units", "revenue", "price"))
    assert got and all(isinstance(r, PanelError) for r in got.values()), got
    (said,) = {str(r) for k, r in got.items() if k[1] != "price"}
    assert said == (
        "The panel is unbalanced: period 4 has assignment records for some products and none "
        "for others."
    )
    # sent between workers, a part keeps what it left out
    part = ChunkPart(sums[1], None)
    assert decode_part(encode_part(part), lambda: DTYPE).sums.missed == {4}


def test_a_slice_of_only_missed_periods_adds_nothing() -> None:
    """The non-sharded look reads the periods compacted since its last look apart from the
    rest (``ChunkedLooks._read``): when those are only the missed period, that slice is no
    error, and closed and open slices merged give the whole grid's figures."""
    w = _world()
    fitted = _fitted()
    g = _grid(w, 0, N)
    g.recorded[:, 4] = False
    alone = grid_sums(fitted, g, slice(4, 5))
    assert alone.parts == {} and alone.missed == {4}
    kept = grid_sums(fitted, g, slice(0, 4)).merge(alone, "periods")
    total = kept.merge(grid_sums(fitted, g, slice(5, None)), "periods")
    metrics = ("units", "revenue")
    want = finish_all(fitted, grid_sums(fitted, g), metrics)
    got = finish_all(fitted, total, metrics)
    for key, r in want.items():
        assert not isinstance(r, Exception), (key, r)
        g_ = got[key]
        assert not isinstance(g_, Exception), (key, g_)
        assert g_.effect == pytest.approx(r.effect, rel=1e-12), key


def _with_header(head: object, body: bytes = b"") -> bytes:
    header = json.dumps(head).encode()
    return b"PLS1" + struct.pack(">I", len(header)) + header + body


@pytest.mark.parametrize(
    "head",
    [
        {},  # no parts
        {"parts": 5, "control": {}, "rows": None},  # parts not a list
        [1, 2, 3],  # not an object
        {"parts": [["dm", "units", {"kind": "nope"}]], "control": {}, "rows": None},
        {"parts": [], "control": {"units": ["x", 1]}, "rows": None},  # a sum not a number
        {"parts": [], "control": {}, "rows": {"columns": 3}},  # rows of another layout
    ],
    ids=["empty", "parts-not-list", "list", "unknown-part", "bad-control", "bad-rows"],
)
def test_a_header_of_the_right_magic_but_another_layout_is_refused(head: object) -> None:
    """Another version's worker (or damage) writes a header this one cannot read: the part
    is refused as BadPartial (the merging worker computes that chunk itself), never an error
    that would stop the worker's cycle for every experiment."""
    with pytest.raises(BadPartial):
        decode_part(_with_header(head), lambda: DTYPE)


def test_the_wait_for_parts_counts_only_waiting_and_is_renewed_by_each_part() -> None:
    budget = WaitBudget(60.0)
    budget.start(7)
    budget.waited(5.0)
    budget.progress()  # a part came in after 5 s of waiting
    assert budget.left() == 60.0
    # the merging worker computes and publishes for 80 s: none of it is waiting
    budget.start(7)  # the round's next experiment
    assert budget.left() == 60.0
    # a worker that died: its first missing part uses the round's wait up ...
    budget.waited(45.0)
    budget.waited(20.0)
    assert budget.left() == 0.0
    # ... and the round's later experiments do not wait for it again
    budget.start(7)
    assert budget.left() == 0.0
    # the next round waits afresh; a look outside rounds has a budget of its own each time
    budget.start(8)
    assert budget.left() == 60.0
    budget.waited(60.0)
    budget.start(None)
    assert budget.left() == 60.0
    budget.waited(60.0)
    budget.start(None)
    assert budget.left() == 60.0


class _Held:
    """What a caller's frame holds (a chunk's grid, in a worker): watched by a weak reference."""


def _freed_once_dropped(call: Any) -> bool:
    """``call(held)`` made from a frame that holds a ``_Held``; its result dropped, with the
    cyclic collector off: is the ``_Held`` gone? A kept exception with its traceback holds
    the frame that caught it and its callers' (``f_back``), this one's ``held`` among them."""
    import gc
    import weakref

    def run() -> Any:
        held = _Held()
        watch.append(weakref.ref(held))
        return call(held)

    watch: list[Any] = []
    gc.collect()
    gc.disable()
    try:
        result = run()
        assert any(isinstance(v, Exception) for v in result.values()), result
        del result
        return watch[0]() is None
    finally:
        gc.enable()


class _Refuses:
    def partial(self, panel: Any) -> Any:
        raise NotEstimable("no such estimate of this metric")

    def finish(self, part: Any) -> Any:
        raise NotEstimable("no such estimate of this metric")


def test_an_estimate_that_failed_keeps_no_frame_alive() -> None:
    """A chunk's partial that raised is kept as its exception (in ChunkSums, between looks)
    and a finish that raised as the look's result: without their tracebacks, which held the
    frames that caught them, their callers' and so the chunk's grid and panels (a reference
    cycle too, the frame holding the dict that holds the exception)."""
    from analysis.chunked import _each
    from analysis.estimators.sums import partials_sharing

    panels = grid_panels(_grid(_world(), 0, 5))
    assert _freed_once_dropped(lambda held: _each(_Refuses(), panels))

    def shared_fails(panel: Any) -> Any:
        raise PanelError("the cells cannot be shared")

    assert _freed_once_dropped(
        lambda held: partials_sharing(shared_fails, lambda s, p: None, panels)
    )
    plan = EstimatorPlan("dm", {"cluster": "unit"})
    sums = ChunkSums(parts={(plan.label, "units"): PanelError("unbalanced")})
    assert _freed_once_dropped(lambda held: finish_all([(plan, _Refuses())], sums, ("units",)))
