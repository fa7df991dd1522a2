"""Method id -> estimator factory, used by `pricelab analyze` and the analysis worker.

Each estimator module registers itself here with ``register("did", DIDEstimator)``; the
registry imports the modules lazily so that a broken optional estimator does not break others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from analysis.estimators.base import PanelEstimator

_FACTORIES: dict[str, Callable[..., PanelEstimator]] = {}

# module that defines each method; filled as estimators land
_MODULES: dict[str, str] = {}


def register(name: str, factory: Callable[..., PanelEstimator], module: str | None = None) -> None:
    _FACTORIES[name] = factory
    if module is not None:
        _MODULES[name] = module


def declare(name: str, module: str) -> None:
    """Say which module defines ``name`` without importing it yet."""
    _MODULES[name] = module


def make(name: str, **params: Any) -> PanelEstimator:
    if name not in _FACTORIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _FACTORIES:
        known = ", ".join(sorted(set(_FACTORIES) | set(_MODULES)))
        raise ValueError(f"Unknown method {name!r}; known methods: {known}.")
    return _FACTORIES[name](**params)


def methods() -> list[str]:
    return sorted(set(_FACTORIES) | set(_MODULES))


def _declare_builtin() -> None:
    """Built-in methods, imported on first use (one line per estimator module)."""
    declare("did", "analysis.estimators.did")
    declare("sc", "analysis.estimators.synth")
    declare("difp", "analysis.estimators.synth")
    declare("sdid", "analysis.estimators.synth")
    declare("hpte", "analysis.estimators.hpte")
    declare("mc", "analysis.estimators.mcnnm")
    declare("trop", "analysis.estimators.trop")
    declare("ht", "analysis.estimators.switchback")
    declare("hajek", "analysis.estimators.switchback")
    declare("crossover", "analysis.estimators.crossover")
    declare("dm", "analysis.estimators.crossover")
    declare("fe", "analysis.estimators.crossover")
    declare("staggered", "analysis.estimators.staggered")
    declare("cuped", "analysis.estimators.cuped")


_declare_builtin()
