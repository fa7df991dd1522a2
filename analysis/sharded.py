"""One experiment's chunked analysis spread over several analysis workers (issue #42).

The workers split an experiment's chunks of products (``analysis.chunked``) by the partitions
of a shard topic that their Kafka consumer group assigns them (``core.ports.ShardOwnership``,
``streams/worker/shards.py``): chunk ``c`` is shard ``(c + m + 1) mod P``, ``m`` the merging
shard (below). Kafka's group coordination decides who computes what, and moves the shards of
a worker that died or left to the others; nothing here schedules.

At a look, each worker computes its shards' chunks (their partial sums and the long rows of
their sampled products), and each one but the merging worker stores each chunk's part in
Redis under the look (its round, the layout's periods and exclusion windows and the
estimators' signature), with a time to live (``core.ports.PartialStore``, ``analysis.shard_codec``: plain
bytes, never pickle). One worker merges: the owner of the experiment's merging shard
(``crc32(id) mod P``, so experiments' merges spread over the workers; it also gets the smaller
share of the chunks). The workers start each round of looks together
(``streams.worker.shards.aligned_ticks``), so it waits for parts computed beside its own, of
the same round only: a part read a round earlier, whose open periods lack the sales since, is
never merged. It waits up to ``wait`` seconds of waiting a round, counted only while it waits
and renewed by each part that comes in (:class:`WaitBudget`); when that runs out, or when the
group rebalanced meanwhile, it computes the chunks still missing itself,
so a dead worker never holds up an experiment's estimates. Then it merges every chunk's
partials in chunk order with the same pairwise tree as one worker does
(:func:`analysis.chunked.merge_in_order`) and publishes: only the merging worker publishes, and
it checks before each message that it still is that worker
(``analysis.worker.AnalysisWorker._still_merging``), so an estimate is not published twice by
the workers of one look.

Not kept between looks here (unlike one worker's :class:`analysis.chunked.ChunkedLooks`): each
look reads its chunks' every period.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.chunked import (
    Chunking,
    ChunkSums,
    Key,
    Population,
    concat_rows,
    finish_all,
    grid_sums,
    look_plan,
    merge_in_order,
    metrics_of_grid,
)
from analysis.errors import AnalysisError
from analysis.shard_codec import BadPartial, ChunkPart, decode_part, encode_part
from core.ports import EstimatorPlan, PartialStore, ShardOwnership

log = logging.getLogger("pricelab.analysis.sharded")


def shard_of(chunk: int, partitions: int, merging: int = -1) -> int:
    """The shard of chunk ``chunk``: ``(chunk + merging + 1) mod partitions``, the chunks dealt
    out round the shards from the one after the merging shard, so that the worker that also
    merges gets the smaller share when they do not divide evenly."""
    return (chunk + merging + 1) % partitions


def chunks_of(
    n_chunks: int, partitions: int, owned: Collection[int], merging: int = -1
) -> list[int]:
    """The chunks (by index) of the shards ``owned`` (:func:`shard_of`)."""
    return [c for c in range(n_chunks) if shard_of(c, partitions, merging) in owned]


def merging_shard(experiment: str, partitions: int) -> int:
    """The shard whose owner merges and publishes the experiment's looks."""
    return zlib.crc32(experiment.encode()) % partitions


def look_id(layout: Any, signature: tuple[object, ...], tick: int | None = None) -> str:
    """What identifies one look across the workers: the round of looks it belongs to
    (``tick``: the workers start each round together, :func:`aligned_ticks`), the periods done
    and compacted, the exclusion windows over them and the estimators' signature
    (:func:`look_plan`). The round keeps a part read at an earlier round, whose open periods
    hold fewer sales, out of a later round's merge."""
    what = repr((signature, layout.done, layout.final, tuple(layout.hits), tick))
    return hashlib.sha256(what.encode()).hexdigest()[:20]


@dataclass
class WaitBudget:
    """How long the merging worker may still wait for the other workers' parts in one round of
    looks: ``wait`` seconds of waiting, counted only while it waits (not while it computes or
    publishes), and ``wait`` again whenever a part comes in. A worker that died costs a round
    ``wait`` once, not once per experiment; a live one that stores its parts experiment after
    experiment never runs the budget out. A look outside any round (``tick`` None) has a
    budget of its own."""

    wait: float
    _round: int | None = field(default=None, init=False, repr=False)
    _left: float = field(default=0.0, init=False, repr=False)

    def start(self, tick: int | None) -> None:
        """A look of round ``tick`` begins: a new round (or no round) has the whole ``wait``;
        a later look of the same round keeps what is left."""
        if tick is None or tick != self._round:
            self._round, self._left = tick, self.wait

    def left(self) -> float:
        return self._left

    def waited(self, seconds: float) -> None:
        """``seconds`` were spent waiting with no part coming in."""
        self._left = max(0.0, self._left - seconds)

    def progress(self) -> None:
        """A part came in: the whole ``wait`` again."""
        self._left = self.wait


@dataclass
class ShardedLooks:
    """The looks at the experiments read in chunks, spread over the workers of a group."""

    chunking: Chunking
    ownership: ShardOwnership
    store: PartialStore
    seed: int = 0
    #: seconds the merging worker waits for the other workers' parts of a look
    wait: float = 60.0
    #: seconds between its reads of the parts still missing
    every: float = 0.05
    #: how long the merging worker may still wait in the round under way (:class:`WaitBudget`)
    _budget: WaitBudget = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._budget = WaitBudget(self.wait)

    def merges(self, experiment: str) -> bool:
        """Whether this worker merges and publishes ``experiment`` now (for an experiment not
        read in chunks: whether it analyses it)."""
        owned = self.ownership.owned()
        return owned is not None and merging_shard(experiment, self.ownership.partitions) in owned

    async def look(
        self,
        source: Any,
        experiment: str,
        as_of: Any,
        plans: Sequence[EstimatorPlan],
        members: Sequence[str] = (),
        min_periods: int = 2,
        tick: int | None = None,
    ) -> tuple[Population, pd.DataFrame] | None:
        """This worker's shards of the look computed and stored; for the merging worker, the
        look's estimates on every product and the long rows of the sample and of
        ``members`` (as :meth:`analysis.chunked.ChunkedLooks.look`); None for the others, when
        the worker is in no group yet, or when fewer than ``min_periods`` periods are done.
        ``tick``: the round of looks (:func:`aligned_ticks`); parts of another round are
        never merged. A caller that looks outside rounds (None) names a look by its layout
        alone, and may merge a part read at an earlier call of the same periods."""
        owned = self.ownership.owned()
        if not owned:
            return None
        partitions, generation = self.ownership.partitions, self.ownership.generation()
        layout = await source.layout(experiment, as_of)
        if layout is None or layout.done < min_periods:
            return None
        fitted, keep, signature = look_plan(self.chunking, self.seed, layout, plans, members)
        look = look_id(layout, signature, tick)
        n = len(layout.products)
        n_chunks = math.ceil(n / self.chunking.products)
        seconds: dict[Key, float] = {}

        def timer(key: Key, s: float) -> None:
            seconds[key] = seconds.get(key, 0.0) + s

        parts: dict[int, ChunkPart] = {}
        merging = merging_shard(experiment, partitions)
        mine = chunks_of(n_chunks, partitions, owned, merging)
        try:
            async for c, part in self._compute(source, layout, fitted, keep, mine, timer):
                parts[c] = part  # the merging worker's stay here: only the others' go through Redis
        except AnalysisError as exc:  # e.g. a chunk read after a compaction dropped its records
            await _overtaken(source, layout, exc)
            raise
        if not await source.unchanged(layout):
            # before any part is stored: a part read across a compaction is never offered
            raise AnalysisError("its open periods were compacted by another worker while read")
        if merging not in owned:
            for c, part in parts.items():
                await self.store.put(experiment, look, c, encode_part(part))
            return None
        dtype: list[pd.CategoricalDtype] = []

        def product() -> pd.CategoricalDtype:  # one dtype for every chunk's rows (concat_rows)
            if not dtype:
                own = next((p.rows for p in parts.values() if p.rows is not None), None)
                dtype.append(
                    own["product"].dtype
                    if own is not None and "product" in own
                    else pd.CategoricalDtype(pd.Index(layout.products))
                )
            return dtype[0]

        missing = [c for c in range(n_chunks) if c not in parts]
        budget = self._budget
        budget.start(tick)
        while missing:
            t0 = time.monotonic()
            for c, blob in zip(
                missing, await self.store.get(experiment, look, missing), strict=True
            ):
                if blob is None:
                    continue
                try:
                    parts[c] = decode_part(blob, product)
                except BadPartial as exc:
                    log.warning("experiment %s: chunk %d's stored part: %s", experiment, c, exc)
            came = any(c in parts for c in missing)
            if came:
                budget.progress()
            missing = [c for c in missing if c not in parts]
            if not missing:
                break
            rebalanced = self.ownership.generation() != generation
            if budget.left() <= 0 or rebalanced:
                log.info(
                    "experiment %s: computing %d chunk(s) no other worker stored (%s)",
                    experiment,
                    len(missing),
                    "the group rebalanced" if rebalanced else "waited the round's wait out",
                )
                try:
                    async for c, part in self._compute(
                        source, layout, fitted, keep, missing, timer
                    ):
                        parts[c] = part
                except AnalysisError as exc:
                    await _overtaken(source, layout, exc)
                    raise
                if not await source.unchanged(layout):
                    raise AnalysisError(
                        "its open periods were compacted by another worker while read"
                    )
                break
            await asyncio.sleep(self.every)
            if not came:
                budget.waited(time.monotonic() - t0)
        if not await source.unchanged(layout):
            # the others' parts were read since this worker's own check: as of the same layout
            raise AnalysisError("its open periods were compacted by another worker while read")
        owned = self.ownership.owned()
        if not owned or merging not in owned:
            return None  # another worker merges the experiment since the rebalance
        ordered = [parts[c] for c in range(n_chunks)]
        total = merge_in_order([p.sums for p in ordered])
        metrics = metrics_of_grid(list(total.control))
        t0 = time.perf_counter()
        results = finish_all(fitted, total, metrics)
        for key in results:
            timer(key, (time.perf_counter() - t0) / max(len(results), 1))
        closed, live = [], []
        for p in ordered:
            if p.rows is not None and len(p.rows):
                compacted = p.rows["period"].to_numpy() < layout.final
                closed.append(p.rows[compacted])
                live.append(p.rows[~compacted])
        baseline = {m: s / c for m, (s, c) in total.control.items() if c}
        population = Population(results, seconds, baseline, metrics, n, layout.done)
        return population, concat_rows(closed + live)

    async def _compute(
        self,
        source: Any,
        layout: Any,
        fitted: list[tuple[EstimatorPlan, Any]],
        keep: np.ndarray,
        chunks: list[int],
        timer: Callable[[Key, float], None],
    ) -> AsyncIterator[tuple[int, ChunkPart]]:
        """Each of ``chunks``' part of the look, in chunk order."""
        if not chunks:
            return
        size = self.chunking.products
        async for grid in source.grids(layout, size, 0, keep, only=chunks):
            sums: ChunkSums = grid_sums(fitted, grid, timer=timer)
            yield grid.start // size, ChunkPart(sums, grid.rows)


async def _overtaken(source: Any, layout: Any, exc: AnalysisError) -> None:
    """Say so when ``exc`` stopped a read that another worker's compaction overtook (an open
    period's records gone for the chunks read after it), as a read that ended does."""
    if not await source.unchanged(layout):
        raise AnalysisError("its open periods were compacted by another worker while read") from exc
