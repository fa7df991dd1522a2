"""Key names, hash-tagged for Redis Cluster (issue #17).

Two kinds of keys, each kind in one hash slot per owner, so that every Lua script and every
MULTI touches one slot and runs unchanged on one Redis or on a cluster:

- the catalog, tagged with the prefix: ``{pl}:exp:index``, ``{pl}:version``, ``{pl}:freezes``,
  ``{pl}:clock``, ``{pl}:clock-mode`` (the controller's clock, wall or simulated, which the
  CLI follows), ``{pl}:trail`` (the audit trail's order), ``{pl}:product:<product>``
  (claims), ``{pl}:creating:<id>`` (creation leases), ``{pl}:holders`` (each experiment's
  status and claim gen, which the claim scripts read) and ``{pl}:fence`` (a counter that
  orders creations), ``{pl}:drafts`` (each draft's summary, by id) and ``{pl}:draft:<id>``
  (a draft's spec), ``{pl}:replicated`` (bumped before each ``WAIT``: sales batches,
  decisions, replies; when ``PRICELAB_REDIS__WAIT_REPLICAS`` is set). Small, and written rarely (but that counter).
- each experiment's keys, tagged with its id: ``pl:exp:{<id>}:state``, ``...:sums:<k>``,
  ``...:seen:<k>:<b>`` and the rest. Everything the sales path, a flip and the analysis
  worker touch for one experiment is in its slot, so experiments spread over the nodes.

Pure functions of the prefix: the store modules, benchmarks and tests all name keys here.
"""

from __future__ import annotations

from controller.settings import check_key_prefix as check_prefix

__all__ = [
    "CATALOG_KEYS",
    "EXPERIMENT_KEYS",
    "catalog",
    "check_prefix",
    "clock",
    "clock_mode",
    "creating",
    "draft_spec",
    "drafts",
    "experiment",
    "pattern",
    "product",
    "trail",
]


def catalog(prefix: str, name: str) -> str:
    """A catalog key: ``{<prefix>}:<name>``, all in the prefix's slot."""
    return f"{{{prefix}}}:{name}"


def product(prefix: str, product_id: str) -> str:
    """The claim key of a product."""
    return catalog(prefix, f"product:{product_id}")


def creating(prefix: str, exp_id: str) -> str:
    """The creation lease of an experiment (catalog: the claim scripts read it)."""
    return catalog(prefix, f"creating:{exp_id}")


def experiment(prefix: str, exp_id: str) -> str:
    """The base of an experiment's keys: ``<prefix>:exp:{<id>}``; its keys append ``:<name>``."""
    return f"{prefix}:exp:{{{exp_id}}}"


def drafts(prefix: str) -> str:
    """The drafts: a hash of each draft's summary (controller.drafts.Draft), by its id."""
    return catalog(prefix, "drafts")


def draft_spec(prefix: str, draft_id: str) -> str:
    """A draft's spec (JSON), apart from its summary: a list of drafts never reads a spec."""
    return catalog(prefix, f"draft:{draft_id}")


def clock(prefix: str) -> str:
    """The shared simulated clock (ms)."""
    return catalog(prefix, "clock")


def clock_mode(prefix: str) -> str:
    """The clock the controller workers run on (``wall`` or ``simulated``), recorded at start
    so that the CLI asks the stack instead of guessing (streams.client.stack_clock)."""
    return catalog(prefix, "clock-mode")


def trail(prefix: str) -> str:
    """The audit trail's counter: each record's place in it, across experiments."""
    return catalog(prefix, "trail")


#: every catalog key by name: what follows ``{<prefix>}:`` (``*``: one per product or id)
CATALOG_KEYS: dict[str, str] = {
    "index": "exp:index",
    # the experiments over for the controller (controller/retirement.py), and their products
    "retired": "exp:retired",
    "retired_products": "exp:retired-products",
    "holders": "holders",
    "fence": "fence",
    "freezes": "freezes",
    "cancelled_freezes": "freezes:cancelled",
    "version": "version",
    "clock": "clock",
    "clock_mode": "clock-mode",
    "trail": "trail",
    "claims": product("", "*").removeprefix(catalog("", "")),
    "creating": creating("", "*").removeprefix(catalog("", "")),
    "drafts": "drafts",
    "draft_specs": draft_spec("", "*").removeprefix(catalog("", "")),
    # a counter each sales batch bumps before its WAIT (PRICELAB_REDIS__WAIT_REPLICAS)
    "replicated": "replicated",
}

#: every key of an experiment by name: what follows its base ``<prefix>:exp:{<id>}:``
#: (``*``: one per period, bucket or generation)
EXPERIMENT_KEYS: dict[str, str] = {
    "spec": "spec",
    "state": "state",
    "turn": "turn",
    "records": "a:*",
    "records_version": "av",
    "sums": "sums:*",
    "columns": "col:*",
    "seen": "seen:*",
    "seen_buckets": "seenb",
    "excluded": "excluded",
    "totals": "totals",
    "windows": "windows",
    "trigger_state": "trigger_state",
    "trigger_version": "trigger_v",
    "trigger_waits": "trigger_waits",
    "trigger_kept": "trigger_kept",
    # each trigger save's mark, kept until its batch's replica barrier passed
    # (PRICELAB_REDIS__WAIT_REPLICAS; lua/trigger_save.lua)
    "trigger_saved": "trigger_saved",
    "triggers": "triggers",
    "sequence_targets": "cs",
    "old_cells": "cells:*",
    # each chunk's part of a look, for the analysis worker that merges it (analysis.sharded)
    "partials": "part:*",
    # an adaptive ladder (#57): the analysis worker's latest look, and each period's arm
    # probabilities as the flip recorded them (written once)
    "adaptive_look": "look",
    "allocations": "alloc",
}


def pattern(prefix: str, name: str) -> str:
    """The glob pattern (Redis ``KEYS``/ACL syntax) of every key called ``name`` in
    :data:`CATALOG_KEYS` or :data:`EXPERIMENT_KEYS`, over all products, ids and periods."""
    if name in CATALOG_KEYS:
        return catalog(prefix, CATALOG_KEYS[name])
    return f"{experiment(prefix, '*')}:{EXPERIMENT_KEYS[name]}"
