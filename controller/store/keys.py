"""Key names, hash-tagged for Redis Cluster (issue #17).

Two kinds of keys, each kind in one hash slot per owner, so that every Lua script and every
MULTI touches one slot and runs unchanged on one Redis or on a cluster:

- the catalog, tagged with the prefix: ``{pl}:exp:index``, ``{pl}:version``, ``{pl}:freezes``,
  ``{pl}:clock``, ``{pl}:product:<product>`` (claims), ``{pl}:creating:<id>`` (creation
  leases), ``{pl}:holders`` (each experiment's status and claim gen, which the claim scripts
  read) and ``{pl}:fence`` (a counter that orders creations). Small, and written rarely.
- each experiment's keys, tagged with its id: ``pl:exp:{<id>}:state``, ``...:sums:<k>``,
  ``...:seen:<k>:<b>`` and the rest. Everything the sales path, a flip and the analysis
  worker touch for one experiment is in its slot, so experiments spread over the nodes.

Pure functions of the prefix: the store modules, benchmarks and tests all name keys here.
"""

from __future__ import annotations

from controller.settings import check_key_prefix as check_prefix

__all__ = ["catalog", "check_prefix", "clock", "creating", "experiment", "product"]


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


def clock(prefix: str) -> str:
    """The shared simulated clock (ms)."""
    return catalog(prefix, "clock")
