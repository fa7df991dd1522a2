"""All Redis state of pricelab. Nothing else talks to Redis.

One store per aggregate, each in its own module - experiments and product claims
(``experiments``), flips and assignment records (``flips``), trigger state (``triggers``),
the sales panel and analysis state (``panel``) - over a shared base (``base``: the client,
key prefix and Lua scripts, which are ``.lua`` files in ``lua/``) and the Redis-protocol packer
(``resp``). :class:`Store` is all of them on one client, for a process that needs them all.

Key layout (prefix ``pl`` by default; names in ``keys``, see docs/architecture.md). Every key
is hash-tagged: the catalog's keys share the prefix's slot, each experiment's keys share the
slot of its id, so every script and MULTI touches one slot and the store runs on one Redis or
on a Redis Cluster alike.

Catalog ``{pl}:...`` (one slot):

    {pl}:exp:index                set of experiment ids
    {pl}:exp:retired              set of the ids of experiments over for the controller
                                  (controller/retirement.py): its readers skip them
    {pl}:exp:retired-products     set of their products (bounded by the catalogue): the
                                  sales routing keeps ``unknown_product`` for the others
    {pl}:holders                  hash id -> "status|gen": what the claim scripts read (status
                                  mirrored from the experiment's state, which moves first)
    {pl}:creating:{id}            gen of a creation in progress (a lease, PX)
    {pl}:fence                    counter: each creation's fence, ordering writes to its slot
    {pl}:product:{product}        claim "id|gen" ("id" before gens) on the product; it counts
                                  only while live (lua/holds.lua), stale keys are taken over
    {pl}:freezes                  hash freeze id -> JSON operator freeze
    {pl}:freezes:cancelled        hash freeze id -> the freeze as it was cancelled
    {pl}:version                  bumped on every experiment or freeze change (cache invalidation)
    {pl}:clock                    simulated time in ms (clock mode 'simulated')
    {pl}:clock-mode               the controller's clock, 'wall' or 'simulated' (set at its
                                  start; the CLI follows it)
    {pl}:trail                    counter: each audit-trail record's place ('order')
    {pl}:drafts                   hash draft id -> JSON summary of a spec saved but not
                                  launched (controller.drafts.Draft; a discarded one kept
                                  as such, without its spec)
    {pl}:draft:{id}               a draft's spec (JSON); dropped by its discard, and with
                                  the draft by the create of its id (lua/create_commit.lua)

Experiment ``pl:exp:{<id>}:...`` (the slot of its id; ``e`` below):

    e:spec             the validated spec (JSON)
    e:state            hash: status ('creating' until committed, then running - 'created'
                       while flipped_period is -1 - paused, stopped or ended), frozen,
                       flipped_period (the period in force), seq (the decision in force),
                       published (the last decision all out), seq_counter, flips,
                       missed_flips, backfilled, created_ms, claim (the gen of its product
                       claims), fence, n_products, closed (periods below it refuse sales as
                       'late'), compacted (periods below it are in col:{k})
    e:a:{k}            hash product -> "arm|P(treat)|blackout_until_ms|reason" for period k
                       (until k is compacted)
    e:turn             the experiment's turn: the owner deciding now, a lease (PX)
    e:sums:{k}         string: period k's cell sums, four big-endian int64 per product at
                       its position among the sorted products (units in thousandths, revenue
                       in millionths, orders, head units in thousandths; GETRANGE +
                       SETRANGE per product a batch sold), until k is compacted
    e:col:{k}          closed period k compacted: records and cells as arrays over the sorted
                       products (``columns``; ~22 bytes a product before zlib), in blocks of
                       65,536 products compressed each on its own, so that a chunk of
                       products is read with GETRANGE (``chunks``)
    e:seen:{k}:{b}     dedupe: set of 52-bit event-id digests of period k, bucket b (intsets
                       of ~200), kept until k closes plus a margin; a period that outgrows
                       them grows e:seen:{k}:g{g}:{b}, generation g of 4**g times the sets
    e:seenb            hash b:{k} -> period k's bucket count, n:{k} -> its sales
    e:excluded         hash "k|product|reason" -> units (thousandths) kept for audit
    e:totals           hash "mu:{status}" (units in thousandths) / "events:{status}" -> totals
    e:windows          hash window id -> JSON exclusion window (pauses)
    e:trigger_state    hash meta / p:{product} / f:{product} -> trigger tracker state
    e:trigger_v        version of that state (bumped on every save)
    e:triggers         hash product -> trigger period
    e:trigger_waits    set of the owners of competitor batches waiting for the turn to fire
                       (PX the turn lease): timers save nothing while it stands
                       (lua/trigger_save.lua)
    e:trigger_saved    hash mark -> version: each trigger save's mark, with
                       PRICELAB_REDIS__WAIT_REPLICAS only, read by its replica barriers and
                       deleted once they passed (PX 1 h after the last mark)
    e:trigger_kept     hash product -> trigger period: fires kept while a decision was to be
                       published, carried out by the first save after it is out, or taken
                       into ``triggers`` by a decision made before that save (decide.lua)
    e:cs               hash sequence key -> target SE of its confidence sequence, fixed at
                       the sequence's first look (HSETNX)
    e:look             hash periods / look: an adaptive ladder's latest look (JSON,
                       ``core.ports.AdaptiveLook``), replaced only by one of at least as
                       many periods (lua/look_put.lua)
    e:alloc            hash period -> JSON list of each arm's probability that period was
                       drawn with, written once (HSETNX) before its assignments go out
"""

from __future__ import annotations

from typing import Any

from controller.store.adaptive import AdaptiveStore
from controller.store.base import RedisStore, from_ms, lua, make_redis, to_ms
from controller.store.chunks import ChunkStore
from controller.store.drafts import DraftStore
from controller.store.experiments import ExperimentState, ExperimentStore
from controller.store.flips import FlipStore, decode_record, encode_record
from controller.store.panel import PanelStore, SaleRow, SalesBlock
from controller.store.triggers import TriggerSave, TriggerStore

__all__ = [
    "AdaptiveStore",
    "ExperimentState",
    "ExperimentStore",
    "FlipStore",
    "PanelStore",
    "RedisStore",
    "SaleRow",
    "SalesBlock",
    "Store",
    "TriggerSave",
    "TriggerStore",
    "decode_record",
    "encode_record",
    "from_ms",
    "lua",
    "make_redis",
    "to_ms",
]


class Store(
    ExperimentStore, FlipStore, TriggerStore, PanelStore, ChunkStore, AdaptiveStore, DraftStore
):
    """Every aggregate's store on one client (one key prefix), for a worker that needs them all."""

    def __init__(self, redis: Any, prefix: str = "pl") -> None:
        super().__init__(redis, prefix)

    async def cells(self, exp_id: str) -> dict[str, str]:
        """Every cell of the experiment, compacted or live, as "k|product|field" -> sum."""
        spec = (await self.get_experiment(exp_id)).spec
        return await self.cells_of(exp_id, sorted(spec.all_products()))
