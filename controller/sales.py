"""The sales path's domain logic: which experiment and period a sale belongs to, whether it
falls in an exclusion window, and the atomic, deduplicated panel update.

Every sale ends in exactly one status:

- ``ok``: counted in its product x period cell;
- ``head``: inside the washout-length head of a period with no switch; counted separately so
  that every analysed cell covers the same hours of the day (see docs/architecture.md);
- ``washout`` / ``paused`` / ``stopped`` / ``freeze``: in blackout; kept for audit, not analysed;
- ``unassigned``: its period had no published assignment (kept for audit);
- ``dup``: an event id seen before; nothing changes;
- rejected before Redis (dead-letter): ``late``, ``future``, ``unknown_product``, and
  ``currency`` (the sale names a currency other than its experiment's ``currency:``).

A return is a sale with negative units (and revenue): it is routed, deduplicated and counted
the same way, so its cell holds the net units and revenue.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from controller.clock import Clock
from controller.errors import StoreError
from controller.periods import n_periods, period_start
from controller.settings import Settings
from controller.spec import ExperimentSpec
from controller.store import SalesBlock, Store, to_ms
from controller.store.columns import REVENUE_SCALE
from controller.store.panel import MAX_REVENUE, SALE_RECORD, ReplicaWait, product_entry
from core import status as status_word


class SaleLike(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def units(self) -> float: ...
    @property
    def units_milli(self) -> int: ...
    @property
    def revenue(self) -> float: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def currency(self) -> str | None: ...


@dataclass(frozen=True)
class _Window:
    start_ms: int
    end_ms: float
    reason: str


@dataclass
class _Experiment:
    spec: ExperimentSpec
    id: str  # spec.id: one attribute read fewer per sale on the hot path
    bounds_ms: list[int]  # period starts, plus the end of the last period
    washout_ms: int
    windows: list[_Window]
    #: product -> its position among the sorted products (its cell sums) and name, as a
    #: block's head lists it (``product_entry``)
    entries: dict[str, bytes]
    #: the spec's currency: a sale naming another one is refused (None: not checked)
    currency: str | None = None
    #: when it stopped holding its products (its stop; inf: it holds them while its periods
    #: run): a sale after it is a later experiment's over the product, if one covers it
    held_until_ms: float = math.inf

    def locate(self, ts_ms: int) -> int | None:
        k = bisect.bisect_right(self.bounds_ms, ts_ms) - 1
        if k < 0 or k >= len(self.bounds_ms) - 1:
            return None
        return k


def _status_windows(docs: list[dict[str, object]], status: str) -> list[_Window]:
    """Exclusion windows labelled with a sale status, never the operator's free-text reason.

    Windows are opened by pause and stop (the kill switch); their ``reason`` is whatever the
    operator wrote ("paused by operator", "price war"), which must not become a status (a
    metric label and a Redis field). A window still open on a stopped experiment that began
    last is the stop; every other window is a pause (a stopped experiment's earlier pause
    window covers the same sales either way: excluded).
    """
    open_starts = [int(d["start_ms"]) for d in docs if d["end_ms"] is None]  # type: ignore[call-overload]
    stop_start = max(open_starts) if status == status_word.STOPPED and open_starts else None
    out = []
    for d in docs:
        start = int(d["start_ms"])  # type: ignore[call-overload]
        end = math.inf if d["end_ms"] is None else float(d["end_ms"])  # type: ignore[arg-type]
        label = "stopped" if d["end_ms"] is None and start == stop_start else "paused"
        out.append(_Window(start, end, label))
    # the stop window first, so a sale after the stop reads 'stopped', not 'paused'
    out.sort(key=lambda w: w.reason != "stopped")
    return out


class RoutingTable:
    """Product -> experiments (with their period grids and exclusion windows), cached."""

    def __init__(self, keep_retired: bool = True) -> None:
        self.version = -1
        #: whether ``retired_products`` is read at all: only ``unknown_product=dead-letter``
        #: tells a retired product's sale from an unknown one's
        self._keep_retired = keep_retired
        #: per product, its experiments in the order they were created: a product's holder
        #: at a time is the first whose periods cover it and that had not stopped by then
        #: (a stopped one gets a sale that no later one covers: ``stopped``, for audit)
        self.by_product: dict[str, list[_Experiment]] = {}
        #: the products of the retired experiments (controller.retirement) that no experiment
        #: in ``by_product`` holds: a sale of one is ``outside_experiment``, as when its
        #: retired experiment was there, not ``unknown_product``. Only those not in
        #: ``by_product`` are kept (the routing asks it only of those), so a catalogue that
        #: one experiment after another runs on keeps few: the whole set is bounded by the
        #: catalogue (94 MB for a million 11-character ids: benchmarks/probe_retired_memory),
        #: this by the products none holds
        self.retired_products: set[str] = set()
        self._retired_n = 0  # how many experiments were retired when it was read
        #: the experiments in by_product at the last refresh, as (id, created_ms)
        self._held_ids: set[tuple[str, int]] = set()
        self._held = 0

    @property
    def experiments(self) -> int:
        """How many experiments the table holds (counted at its refresh: a scrape of the
        gauge that reads it must not walk a million products' lists)."""
        return self._held

    async def refresh(self, store: Store) -> None:
        v = await store.version()
        if v == self.version:
            return
        freezes = await store.freezes()
        by_product: dict[str, list[_Experiment]] = {}
        states = sorted(
            await store.experiments_unretired(), key=lambda st: (st.created_ms, st.spec.id)
        )
        for state in states:
            spec = state.spec
            n = n_periods(spec)
            bounds = [to_ms(period_start(spec, k)) for k in range(n + 1)]
            windows = _status_windows(await store.windows(spec.id), state.status)
            for f in freezes:
                scope = f.get("experiments")
                if scope is None or spec.id in scope:
                    windows.append(_Window(f["start_ms"], f["end_ms"], "freeze"))
            products = sorted(spec.all_products())
            entries = {p: product_entry(i, p) for i, p in enumerate(products)}
            exp = _Experiment(
                spec,
                spec.id,
                bounds,
                int(spec.washout.total_seconds() * 1000),
                windows,
                entries,
                spec.currency,
                min((w.start_ms for w in windows if w.reason == "stopped"), default=math.inf),
            )
            for p in products:
                by_product.setdefault(p, []).append(exp)
        # an experiment by its id and creation (an id created again after Redis lost it, with
        # other products, is another experiment)
        held_ids = {(st.spec.id, st.created_ms) for st in states}
        if self._keep_retired:
            # read after the experiments: each one missing from them is counted, and its
            # products were added before it was (ExperimentStore.retire). A product leaves
            # by_product only when its experiment is retired, so the set is read again when
            # the count moved or an experiment held before is gone (retired between the
            # reads of the last refresh: counted then, but its products were still held);
            # otherwise those of experiments held since are dropped from it
            retired = await store.retired_count()
            if retired != self._retired_n or not self._held_ids <= held_ids:
                self.retired_products = await store.retired_products(excluding=by_product)
                self._retired_n = retired
            elif self.retired_products and held_ids != self._held_ids:
                self.retired_products = {p for p in self.retired_products if p not in by_product}
        self.by_product = by_product
        self._held_ids = held_ids
        self._held = len(states)
        self.version = v

    def route(self, product: str, ts_ms: int) -> tuple[_Experiment, int] | None:
        """The experiment and period of a sale (``SalesIngestor.process`` inlines this)."""
        stopped = None
        for exp in self.by_product.get(product, ()):
            k = exp.locate(ts_ms)
            if k is not None:
                if ts_ms < exp.held_until_ms:
                    return exp, k
                if stopped is None:
                    stopped = exp, k
        return stopped


@dataclass(frozen=True, eq=False)
class Verdict:
    """What happened to one sale; ``dead_letter`` verdicts carry the reason. One instance per
    status (``_verdict``), compared and hashed by identity: a batch's verdicts are counted in
    C (``Counter``), not by a generated ``__hash__`` per sale."""

    status: str
    dead_letter: bool = False


class SalesIngestor:
    """Routes, checks and applies sales batches; several may be in progress at once.

    Each batch is routed with the clock and the experiment catalog (its version) read from
    Redis. Redis runs one command at a time, so a batch that read them while another batch's
    script runs would wait for that script, and a worker would alternate between its own CPU
    and Redis's instead of using both. So a batch syncs them just before it sends its script,
    and a batch that starts while another is in flight routes with that sync instead of
    waiting for one of its own: its routing is at most that batch's script (plus its own
    routing) older than its script. A batch that starts with none in flight syncs first.
    """

    def __init__(self, store: Store, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.routes = RoutingTable(keep_retired=settings.unknown_product == "dead-letter")
        self._lateness_ms = int(settings.allowed_lateness.total_seconds() * 1000)
        self._skew_ms = int(settings.max_future_skew.total_seconds() * 1000)
        self._margin_ms = int(settings.dedupe_margin.total_seconds() * 1000)
        r = settings.redis
        #: each script followed by WAIT (PRICELAB_REDIS__WAIT_REPLICAS), or None
        self._wait = ReplicaWait(r.wait_replicas, r.wait_timeout_ms) if r.wait_replicas else None
        #: batches between their pre-script sync and their script's answer, and the latest
        #: such sync (which a batch starting meanwhile routes with)
        self._in_flight = 0
        self._ahead: asyncio.Future[None] | None = None

    async def _sync(self) -> None:
        await self.clock.sync()
        await self.routes.refresh(self.store)

    async def _routing_sync(self) -> None:
        """The clock and catalog to route a new batch with: the sync of a batch in flight, made
        just before its script, or a sync of our own when none is in flight - or when that
        shared sync failed or was cancelled (a failed one is its own batch's to retry; reusing
        it would fail every retry of this batch without asking Redis)."""
        ahead = self._ahead
        if self._in_flight and ahead is not None:
            try:
                # shielded: a cancelled batch must not cancel the sync another batch waits for
                await asyncio.shield(ahead)
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this batch is cancelled, not only the sync it waited for
            except Exception:  # it failed: the sync below asks Redis itself
                pass
        await self._sync()

    async def process(self, sales: Sequence[SaleLike]) -> list[Verdict]:
        """Route, check and apply a batch; one verdict per sale, in order. The clock is
        synced when it returns (the caller stamps dead letters with it).

        A batch's rows carry what its routing saw of the catalog (a pause or stop window, a
        freeze, which experiment a product is in), and the script does not check those
        again. So when the sync just before the script finds a newer catalog (an operator
        paused or stopped an experiment while this batch was being routed), the batch is
        routed again with it before it is sent."""
        await self._routing_sync()
        while True:
            version = self.routes.version
            verdicts, blocks = self._route(sales)
            if not blocks:
                break
            # packed before the sync: Redis may be busy meanwhile
            packed = self.store.pack_blocks(blocks, len(sales))
            self._in_flight += 1
            try:
                # synced before this script, for a batch that starts while it runs
                self._ahead = ahead = asyncio.ensure_future(self._sync())
                await asyncio.shield(ahead)
                if self.routes.version != version:
                    continue  # routed with an older catalog: again, with this one
                statuses = await (
                    self.store.ingest_packed(packed)
                    if self._wait is None
                    else self.store.ingest_packed(packed, self._wait)
                )
            finally:
                self._in_flight -= 1
            # a verdict per distinct status, then one pass (a call per sale cost ~0.1 us)
            applied = {st: _verdict(st) for st in set(statuses) if st}
            unknown = _verdict("unknown")
            return [
                applied[st] if st else v or unknown
                for st, v in zip(statuses, verdicts, strict=True)
            ]
        if self._wait is not None and sales:
            # no script this time, but an earlier try of this batch (its sales now late) may
            # have written them: not acknowledged before the replicas have them
            await self.store.replicated(self._wait)
        unknown = _verdict("unknown")
        return [v or unknown for v in verdicts]

    def _route(self, sales: Sequence[SaleLike]) -> tuple[list[Verdict | None], list[SalesBlock]]:
        """Each sale's verdict where routing decides it (late, future, not in an experiment),
        and the others in blocks, one per experiment and period, packed for the script."""
        now_ms = to_ms(self.clock.now())
        earliest, latest = now_ms - self._lateness_ms, now_ms + self._skew_ms
        # a sale's id is remembered until its period closes (its end + the lateness), plus a
        # margin; by then a copy of it is refused as late, remembered or not
        keep_base_ms = self._lateness_ms + self._margin_ms - now_ms
        dead_unknown = self.settings.unknown_product == "dead-letter"
        by_product = self.routes.by_product
        retired = self.routes.retired_products
        bisect_right = bisect.bisect_right
        sha1, record = hashlib.sha1, SALE_RECORD.pack
        verdicts: list[Verdict | None] = [None] * len(sales)
        blocks: dict[tuple[str, int], SalesBlock] = {}
        # the per-sale loop is the hot path of ingestion: locals, RoutingTable.route and
        # SalesBlock.add inlined (a call per sale cost ~0.25 us, a tuple per sale and a second
        # pass to pack them ~0.7 us; tests/unit/controller/test_sales_route.py holds the
        # records to SalesBlock.add's bytes)
        try:
            for i, s in enumerate(sales):
                ts = int(s.occurred_at.timestamp() * 1000)  # to_ms, inlined
                if ts < earliest:
                    verdicts[i] = _LATE
                    continue
                if ts > latest:
                    verdicts[i] = _FUTURE
                    continue
                product = s.product
                exps = by_product.get(product)
                exp = None
                k = -1
                for candidate in exps or ():
                    at = bisect_right(candidate.bounds_ms, ts) - 1
                    if 0 <= at < len(candidate.bounds_ms) - 1:
                        if ts < candidate.held_until_ms:
                            exp, k = candidate, at
                            break
                        if exp is None:  # stopped by then: a later holder's, if one covers it
                            exp, k = candidate, at
                if exp is None:
                    verdicts[i] = (
                        _UNKNOWN_PRODUCT
                        if exps is None and dead_unknown and product not in retired
                        else _OUTSIDE
                    )
                    continue
                currency = s.currency
                if currency is not None and exp.currency is not None and currency != exp.currency:
                    verdicts[i] = _CURRENCY
                    continue
                pre = ""
                for w in exp.windows:
                    if w.start_ms <= ts < w.end_ms:
                        pre = w.reason
                        break
                into = blocks.get((exp.id, k))
                if into is None:
                    bounds = exp.bounds_ms
                    keep_s = (bounds[k + 1] + keep_base_ms) // 1000 + 1
                    into = SalesBlock(exp.id, k, bounds[k] + exp.washout_ms, keep_s)
                    blocks[(exp.id, k)] = into
                revenue = s.revenue
                if not -MAX_REVENUE <= revenue <= MAX_REVENUE:  # NaN too; as SalesBlock.add
                    raise StoreError(
                        f"a sale's revenue is outside -{MAX_REVENUE:g}..{MAX_REVENUE:g}"
                    )
                p = into.products.get(product)
                if p is None:
                    p = into.products[product] = len(into.entries) + 1
                    into.entries.append(exp.entries[product])
                why = into.reasons.setdefault(pre, len(into.reasons) + 1) if pre else 0
                digest = sha1(s.event_id.encode()).digest()
                into.records.append(
                    record(digest, p, ts, s.units_milli, round(revenue * REVENUE_SCALE), why)
                )
                into.positions.append(i)
        except struct.error as exc:  # a field past its width: never a wire-valid sale
            raise StoreError(f"a sale cannot be packed for the ingest script ({exc})") from exc
        return verdicts, list(blocks.values())


_LATE = Verdict("late", dead_letter=True)
_FUTURE = Verdict("future", dead_letter=True)
_UNKNOWN_PRODUCT = Verdict("unknown_product", dead_letter=True)
_CURRENCY = Verdict("currency", dead_letter=True)
_OUTSIDE = Verdict("outside_experiment")
_APPLIED: dict[str, Verdict] = {}


def _verdict(status: str) -> Verdict:
    """The (immutable, shared) verdict for a status the store applied."""
    if status == "late":  # its period was closed in Redis (compacted) meanwhile
        return _LATE
    v = _APPLIED.get(status)
    if v is None:
        v = _APPLIED[status] = Verdict(status)
    return v
