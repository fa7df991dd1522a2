"""An experiment's assignments as a heatmap a browser can draw: products x periods binned to at
most a few hundred by a few hundred cells, each cell the share of its product-periods on each
arm and in each kind of blackout, and one product's history period by period.

:func:`aggregate` is pure (arrays in, shares out). :func:`read_heatmap` and
:func:`product_history` read an experiment's schedule the way ``pricelab schedule`` and the
flip make it (``controller.designs.period_assignments`` / ``assign_products``, with the
operator freezes laid over by ``controller.blackout.apply_freezes``), so the heatmap owns no
rule of its own. A pause or stop puts the control on every product from then on: the
heatmap shows it as a layer of its own over the periods (``paused``: each column's share of
periods that a pause or stop window overlaps, by the panel's own rule,
``controller.panel_cells.window_hits``), read afresh with each request, so that a pause does not
make the schedule again. An operator freeze is in the schedule itself (its ``freeze``
blackout).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from controller import in_force
from controller.adaptive_flip import read_context
from controller.blackout import apply_freezes, freezes_of, load_freeze
from controller.designs import Assignment, DesignContext, assign_products, period_assignments
from controller.panel_cells import window_hits  # the panel's rule: one for both
from controller.periods import is_empty, n_periods
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import Store
from streams.client.stack_clock import stack_clock

#: the blackout kinds a cell counts, by its code in the blackout matrix (0: none): the reason
#: an assignment's blackout at its period start gives (controller.designs.assignments), and a
#: period the calendar leaves empty (a DST gap)
REASONS = ("washout", "phase-blackout", "freeze", "empty period")
#: at most this many bins of products (rows) and of periods (columns)
MAX_ROWS = 200
MAX_COLS = 200


class BuildStopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A heatmap's build was asked to stop (its console shutting down, streams.console.charts)
    and stopped between two periods: a control-flow signal, not an error."""


@dataclass(frozen=True)
class Heatmap:
    """Products x periods in bins. Row ``r`` holds the products ``rows[r][0]..rows[r][1]``
    (places in the spec's product order, inclusive), column ``c`` the periods
    ``cols[c][0]..cols[c][1]``; ``cells[r, c]`` is how many product-periods the bin holds,
    ``arms[a, r, c]`` the share of them on arm ``a`` (the spec's arm list), ``blackouts[b, r, c]``
    the share starting their period in blackout of kind ``REASONS[b]``."""

    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]
    cells: np.ndarray
    arms: np.ndarray
    blackouts: np.ndarray


def bins(n: int, most: int) -> np.ndarray:
    """Each of ``n`` places' bin among ``min(n, most)`` contiguous bins of sizes that differ
    by at most one: place ``i`` in bin ``i * m // n``."""
    m = max(1, min(n, most))
    return (np.arange(n, dtype=np.int64) * m) // max(n, 1)


def _ranges(of: np.ndarray) -> list[tuple[int, int]]:
    if not len(of):
        return []
    edges = np.flatnonzero(np.diff(of)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(of)])) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def aggregate(
    arm: np.ndarray,
    blackout: np.ndarray,
    n_arms: int,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
) -> Heatmap:
    """The heatmap of a products x periods matrix of arms (each cell its arm's place in the
    spec's arm list) and one of blackouts (0 none, else 1 + the kind's place in
    :data:`REASONS`), in at most ``max_rows`` x ``max_cols`` bins (:func:`bins`). One pass
    per period, so the work is a count per product-period and no products x periods
    temporary beyond the inputs."""
    if arm.shape != blackout.shape or arm.ndim != 2:
        raise ValueError("the arm and blackout matrices are products x periods, of one shape")
    n, t = arm.shape
    row_of = bins(n, max_rows)
    col_of = bins(t, max_cols)
    r_n, c_n = int(row_of[-1]) + 1 if n else 0, int(col_of[-1]) + 1 if t else 0
    k = len(REASONS) + 1
    # one count per product-period of its (arm, blackout) pair, a period at a time: a column
    # of a period-major (Fortran-ordered) matrix is contiguous, which makes the pass ~4x faster
    arm, blackout = np.asfortranarray(arm, np.int8), np.asfortranarray(blackout, np.int8)
    pairs = n_arms * k
    base = (row_of * pairs).astype(np.int32)
    by_col = np.zeros((c_n, r_n * pairs), dtype=np.int64)
    for j in range(t):
        key = base + (arm[:, j] * np.int8(k) + blackout[:, j])
        by_col[int(col_of[j])] += np.bincount(key, minlength=r_n * pairs)
    counts = by_col.reshape(c_n, r_n, n_arms, k).transpose(1, 0, 2, 3)
    arm_counts = counts.sum(axis=3)
    black_counts = counts.sum(axis=2)
    cells = arm_counts.sum(axis=2)
    held = np.maximum(cells, 1)[..., None]
    share = arm_counts / held
    black = black_counts[..., 1:] / held
    return Heatmap(
        rows=_ranges(row_of),
        cols=_ranges(col_of),
        cells=cells,
        arms=np.moveaxis(share, 2, 0),
        blackouts=np.moveaxis(black, 2, 0),
    )


def blackout_code(a: Assignment) -> int:
    """An assignment's code in the blackout matrix: 0 when its period starts without one,
    else 1 + its reason's place in :data:`REASONS`."""
    if a.blackout_reason is None:
        return 0
    return 1 + REASONS.index(a.blackout_reason) if a.blackout_reason in REASONS else 0


def schedule_matrices(
    spec: ExperimentSpec,
    freezes: Sequence[Any] = (),
    context: DesignContext | None = None,
    stop: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(arm, blackout) matrices of every product (spec order) and period of ``spec``: the
    flip's whole-period draws (``period_assignments``) with ``freezes`` laid over, each
    distinct assignment once. ``stop``, once set, ends it before the next period with
    :class:`BuildStopped` (a thread cannot be killed; a million products take about a second
    a period)."""
    products = spec.all_products()
    t = n_periods(spec)
    # period-major: each period's column is written, and later counted, in one piece
    arm = np.full((len(products), t), spec.control_index, dtype=np.int8, order="F")
    black = np.zeros((len(products), t), dtype=np.int8, order="F")
    empty = 1 + REASONS.index("empty period")
    for k in range(t):
        if stop is not None and stop.is_set():
            raise BuildStopped(f"the heatmap of {spec.id} stopped before period {k} of {t}")
        if is_empty(spec, k):
            black[:, k] = empty
            continue
        pa = period_assignments(spec, k, context).map(lambda a: apply_freezes(spec, a, freezes))
        codes = np.asarray(pa.codes, dtype=np.int64)
        arm[:, k] = np.array([a.index for a in pa.templates], dtype=np.int8)[codes]
        black[:, k] = np.array([blackout_code(a) for a in pa.templates], dtype=np.int8)[codes]
    return arm, black


def heatmap_document(spec: ExperimentSpec, h: Heatmap, period: int | None) -> dict[str, Any]:
    """The heatmap as JSON: the arms' names, the blackout kinds, the bins (first and last
    product id of each row, first and last period of each column), and per cell its count,
    each arm's share and each blackout's share (rounded to 4 places); ``period`` the one in
    force (None before any)."""
    products = spec.all_products()
    arms = [a.name for a in spec.arm_list()]
    return {
        "arms": arms,
        "control": arms[spec.control_index],
        "reasons": list(REASONS),
        "products": len(products),
        "periods": sum(1 + e - s for s, e in h.cols),
        "period": period,
        "rows": [{"first": products[s], "last": products[e], "n": 1 + e - s} for s, e in h.rows],
        "cols": [{"first": s, "last": e} for s, e in h.cols],
        "cells": h.cells.tolist(),
        "arm_share": np.round(h.arms, 4).tolist(),
        "blackout_share": np.round(h.blackouts, 4).tolist(),
    }


async def _context(store: Store, spec: ExperimentSpec) -> DesignContext | None:
    # a triggered design's triggers, an adaptive ladder's recorded probabilities
    return await read_context(store, spec)


async def read_schedule(store: Store, exp_id: str) -> tuple[ExperimentSpec, list[Any], Any, int]:
    """What the heatmap and a product's history are made of: the spec, the freezes (every
    one the store holds; each applies only where it says), the design's context (a triggered
    design's triggers) and the period in force (-1 before any)."""
    st = await store.get_experiment(exp_id)
    freezes = freezes_of(await store.freezes())
    return st.spec, freezes, await _context(store, st.spec), st.flipped_period


def schedule_heatmap(
    spec: ExperimentSpec,
    freezes: Sequence[Any] = (),
    context: DesignContext | None = None,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """The heatmap document of ``spec``'s schedule with ``freezes`` laid over, without the
    period in force (``period`` None): :func:`schedule_matrices` (``stop``: its stop flag),
    then :func:`aggregate`."""
    arm, black = schedule_matrices(spec, freezes, context, stop)
    h = aggregate(arm, black, len(spec.arm_list()), max_rows, max_cols)
    return heatmap_document(spec, h, None)


def pause_layer(spec: ExperimentSpec, windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pauses and stops over ``spec``'s heatmap: each column's share of periods (the
    columns :func:`aggregate` makes of them) that a pause or stop window (``Store.windows``)
    overlaps, by the panel's rule (its analysis window, after the washout-length head), and
    the windows themselves (start, end or None while open, reason, first and last period hit,
    in the experiment's time zone), oldest first."""
    t = n_periods(spec)
    spans = [(int(w["start_ms"]), None if w.get("end_ms") is None else int(w["end_ms"]))
             for w in windows]  # fmt: skip
    hit = np.asarray(window_hits(spec, t, spans), dtype=bool)
    cols = _ranges(bins(t, MAX_COLS))
    zone = spec.zone

    def at(ms: int | None) -> str | None:
        if ms is None:
            return None
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).isoformat()

    pauses = []
    for (s, e), w in sorted(zip(spans, windows, strict=True), key=lambda x: x[0][0]):
        mine = window_hits(spec, t, [(s, e)])
        ks = [k for k, h in enumerate(mine) if h]
        pauses.append({"start": at(s), "end": at(e), "reason": w.get("reason"),
                       "first_period": ks[0] if ks else None,
                       "last_period": ks[-1] if ks else None})  # fmt: skip
    return {
        "paused": [round(float(hit[a : b + 1].mean()), 4) for a, b in cols],
        "pauses": pauses,
    }


async def heatmap_source(
    store: Store, exp_id: str
) -> tuple[tuple[Any, ...], Callable[..., dict[str, Any]], dict[str, Any]]:
    """What experiment ``exp_id``'s heatmap is made of, read once: a key that changes
    whenever the schedule would (the experiment's creation, the freezes that apply to it, a
    triggered design's triggers), a function that makes its document from what was read (every product's draws:
    call it off the event loop; its optional ``stop`` event ends it between periods with
    :class:`BuildStopped`), and what is laid over it afresh each time: the period in
    force (``period``, None before any) and the pauses (:func:`pause_layer`)."""
    st = await store.get_experiment(exp_id)
    docs = await store.freezes()
    # the freezes of this experiment only: a freeze of another leaves its schedule as it was
    mine = [d for d in docs if "freeze" not in d or load_freeze(d["freeze"]).applies_to(exp_id)]
    ctx = await read_context(store, st.spec)
    triggers = ctx.triggers if ctx is not None else {}
    # an adaptive ladder's recorded probabilities: each flip adds a period's
    shares = {} if ctx is None else {str(k): v for k, v in ctx.probabilities.items()}
    key = (
        exp_id,
        st.created_ms,
        json.dumps(mine, sort_keys=True, default=str),
        json.dumps(dict(triggers), sort_keys=True),
        json.dumps(shares, sort_keys=True),
    )
    freezes = freezes_of(mine)
    period = st.flipped_period if st.flipped_period >= 0 else None
    live = {"period": period} | pause_layer(st.spec, await store.windows(exp_id))

    def make(stop: threading.Event | None = None) -> dict[str, Any]:
        return schedule_heatmap(st.spec, freezes, ctx, stop=stop)

    return key, make, live


async def read_heatmap(store: Store, exp_id: str) -> dict[str, Any]:
    """The heatmap document of experiment ``exp_id``'s schedule (see the module), with the
    period in force and the pauses."""
    import asyncio

    _, make, live = await heatmap_source(store, exp_id)
    return await asyncio.to_thread(make) | live


def product_history(
    spec: ExperimentSpec, product: str, freezes: Sequence[Any], context: DesignContext | None
) -> list[dict[str, Any]]:
    """``product``'s assignment in each period of ``spec`` (empty periods left out): its
    arm's name, policy, P(not control), and the blackout its period starts with (until when
    and why), freezes laid over, as ``pricelab schedule`` lists it."""
    ks = [k for k in range(n_periods(spec)) if not is_empty(spec, k)]
    arms = spec.arm_list()
    out = []
    for a in assign_products(spec, [(product, k) for k in ks], context):
        a = apply_freezes(spec, a, freezes)
        zone = spec.zone
        out.append(
            {
                "period": a.period,
                "period_start": a.period_start.astimezone(zone).isoformat(),
                "arm": arms[a.index].name if a.index is not None else a.arm.value,
                "policy": a.policy,
                "probability": a.probability,
                **({"probabilities": dict(a.arm_probabilities)} if a.arm_probabilities else {}),
                "blackout_until": None
                if a.blackout_until is None
                else a.blackout_until.astimezone(zone).isoformat(),
                "blackout_reason": a.blackout_reason,
            }
        )
    return out


async def assignment_in_force(
    settings: Settings, store: Store, product: str
) -> dict[str, Any] | None:
    """The message in force for ``product``, as ``pricelab assignments`` prints it
    (:func:`streams.client.commands.read_assignment`), for a client that holds its store (the
    console): controller.in_force.read_assignment on the stack's clock."""

    async def now() -> Any:
        return (await stack_clock(settings, store)).now()

    return await in_force.read_assignment(store, product, now)
