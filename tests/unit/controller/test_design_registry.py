"""The built-in designs are named in ``controller.design_registry`` by module path, the one
registry that cannot import them (the spec validates through it, and the designs import the
spec): the table and the modules of ``controller/designs/`` must not drift apart."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from controller import design_registry
from controller.designs import Design

DESIGNS = Path(__file__).resolve().parents[3] / "controller" / "designs"


def _modules_defining_a_design() -> set[str]:
    out = set()
    for path in DESIGNS.glob("*.py"):
        module = importlib.import_module(f"controller.designs.{path.stem}")
        if any(
            issubclass(obj, Design) and obj is not Design and obj.__module__ == module.__name__
            for obj in vars(module).values()
            if inspect.isclass(obj)
        ):
            out.add(module.__name__)
    return out


def test_every_built_in_design_is_registered_by_the_module_named_for_it() -> None:
    for name, module in design_registry._BUILTIN.items():
        design = design_registry.lookup(name)
        assert (design.name, type(design).__module__) == (name, module)


def test_every_design_module_is_a_built_in_design() -> None:
    assert _modules_defining_a_design() == set(design_registry._BUILTIN.values())
    assert design_registry.names()[: len(design_registry._BUILTIN)] == list(
        design_registry._BUILTIN
    )
