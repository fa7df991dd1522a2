"""Design name -> design, the one place every caller looks a design up.

A design is one module of ``controller/designs/`` (or of any package) that defines a
:class:`controller.designs.base.Design` and registers it with :func:`register`. The built-in
designs are declared here by module and imported on first use, so that this module imports no
design (the spec validates its ``design`` field through it, and the designs import the spec).
Use :func:`controller.designs.get_design` for the typed lookup.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol


class DesignRules(Protocol):
    """What spec validation needs of a design (the full interface is ``designs.base.Design``)."""

    @property
    def name(self) -> str: ...

    @property
    def settings_field(self) -> str | None: ...

    @property
    def settings_required(self) -> bool: ...

    def default_settings(self) -> Any: ...

    def validate(self, spec: Any) -> None: ...


_DESIGNS: dict[str, DesignRules] = {}
_BUILTIN: dict[str, str] = {
    "time-bound": "controller.designs.time_bound",
    "triggered": "controller.designs.triggered",
    "random-days": "controller.designs.random_days",
    "crossover": "controller.designs.crossover",
    "cluster": "controller.designs.cluster",
    "optimal-switchback": "controller.designs.optimal_switchback",
}


def register(design: DesignRules) -> None:
    """Make ``design`` available under ``design.name`` (a later registration replaces it)."""
    _DESIGNS[design.name] = design


def unregister(name: str) -> None:
    """Remove a registered design that is not built in (tests that register their own)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in design")
    _DESIGNS.pop(name, None)


def lookup(name: str) -> DesignRules:
    """The design registered as ``name``; KeyError naming the known designs otherwise."""
    if name not in _DESIGNS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    try:
        return _DESIGNS[name]
    except KeyError:
        raise KeyError(
            f"{name!r} is not a known design; choose from {', '.join(names())}"
        ) from None


def names() -> list[str]:
    """Every design name: the built-in ones first, in their declared order, then registered."""
    return list(_BUILTIN) + sorted(set(_DESIGNS) - set(_BUILTIN))


def load_all() -> list[DesignRules]:
    """Every design, built-in ones imported."""
    return [lookup(n) for n in names()]
