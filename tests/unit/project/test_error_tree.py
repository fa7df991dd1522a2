"""core/errors.py draws the whole tree of pricelab's errors (STYLE.md rule 8): every class
that derives from the root, in the packages that define them, is named in its docstring."""

from __future__ import annotations

import importlib

import core.errors
from core.errors import PricelabError

#: the modules that define the root's leaves (imported so that every subclass exists)
MODULES = (
    "analysis.errors",
    "analysis.graph",
    "analysis.shard_codec",
    "analysis.spillover",
    "analysis.estimators.sums",
    "controller.errors",
    "lab.errors",
    "pricelab.api",
    "streams.errors",
)


def _leaves(cls: type) -> set[type]:
    out: set[type] = set()
    subs: list[type] = cls.__subclasses__()
    for sub in subs:
        out |= {sub} | _leaves(sub)
    return out


def test_every_error_is_in_the_tree() -> None:
    for name in MODULES:
        importlib.import_module(name)
    tree = core.errors.__doc__ or ""
    public = {c for c in _leaves(PricelabError) if not c.__name__.startswith("_")}
    # only the classes of pricelab's packages (a test's own subclass is not drawn)
    ours = {c for c in public if c.__module__.split(".")[0] in {m.split(".")[0] for m in MODULES}}
    missing = sorted(c.__name__ for c in ours if c.__name__ not in tree)
    assert not missing, f"core/errors.py's tree does not name {missing}"
    assert "UnknownExperiment" in tree and "NotPublished" in tree
