"""The map at the top of docs/architecture.md is true: it is the one lab/architecture.py draws
from today's imports, every arrow it draws is a real import and every import between its layers
is drawn, and every module, function and link its two data flows name is in the code.

The arrows are read back from the committed page, not from the generator: a map edited by hand
is held against the import graph as it is.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from lab import architecture
from lab.architecture_flows import (
    COMMAND,
    CONCEPTS,
    FLOWS,
    SALE,
    Implements,
    Imports,
    Mentions,
)
from lab.import_graph import ROOT, graph, modules

MODULES = modules()


@functools.cache
def _graph() -> dict[str, set[str]]:
    """The project's import graph, parsed when a test first asks (not at collection: every
    test process collects every file, and parsing the project takes about a second)."""
    return graph(MODULES)


DOC = (ROOT / "docs" / "architecture.md").read_text()
MAP = architecture.committed(DOC)


def test_the_committed_map_is_the_generated_one() -> None:
    assert architecture.render(_graph()) == MAP, "run .venv/bin/python -m lab.architecture"


def test_the_map_opens_the_page() -> None:
    assert DOC.startswith(f"# Architecture\n\n{architecture.BEGIN}")


def _rows() -> list[tuple[str, list[str], list[str]]]:
    """(layer, the modules a band holds, the layers it imports) of each row of the layer table."""
    rows = []
    for line in MAP.splitlines():
        m = re.fullmatch(r"\| `([^`]+)` \| (.*) \| (.*) \|", line)
        if m and "(" in m[1] or m and m[1].endswith("/"):
            holds = re.findall(r"`([^`]+)`", m[2].split(": ", 1)[0]) if "(" in m[1] else []
            rows.append((m[1], holds, re.findall(r"`([^`]+)`", m[3])))
    return rows


ROWS = _rows()


def _layer_of(module: str) -> str:
    """The row of the committed table that holds ``module``: its sub-package's, or the band of
    its package's own modules that names it."""
    found = []
    for name, holds, _ in ROWS:
        package = name.split("/")[0]
        if name.endswith("/"):  # a sub-package
            prefix = name.rstrip("/").replace("/", ".")
            if module == prefix or module.startswith(prefix + "."):
                found.append(name)
        elif (
            module == package and "__init__" in holds or module in {f"{package}.{h}" for h in holds}
        ):
            found.append(name)
    deepest = [f for f in found if f.endswith("/")] or found
    assert len(deepest) == 1, f"{module} is in {found} (one layer each)"
    return deepest[0]


def test_every_module_is_in_one_layer() -> None:
    assert ROWS and {_layer_of(m) for m in MODULES} == {name for name, _, _ in ROWS}


def test_every_arrow_is_a_real_import_and_every_import_between_layers_is_drawn() -> None:
    where = {m: _layer_of(m) for m in MODULES}
    real = {(where[a], where[b]) for a, ts in _graph().items() for b in ts if where[a] != where[b]}
    drawn = {(name, target) for name, _, targets in ROWS for target in targets}
    assert drawn - real == set(), "arrows without an import"
    assert real - drawn == set(), "imports without an arrow"


def test_every_arrow_points_down() -> None:
    rank = {name: i for i, (name, _, _) in enumerate(ROWS)}
    assert [(n, t) for n, _, ts in ROWS for t in ts if rank[t] <= rank[n]] == []


def test_the_package_arrows_are_the_package_imports() -> None:
    block = MAP.split("### Packages, top to bottom")[1].split("```")[1]
    lines = block.strip().splitlines()
    drawn = {}
    for head, arrow in zip(lines[::2], lines[1::2], strict=True):
        targets = arrow.split("->")[1].strip()
        drawn[head.split("/")[0]] = set() if targets.startswith("(") else set(targets.split(", "))
    real: dict[str, set[str]] = {}
    for a, ts in _graph().items():
        real.setdefault(a.split(".")[0], set()).update(t.split(".")[0] for t in ts)
    assert drawn == {p: ts - {p} for p, ts in real.items()}


def _defined(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and ``Class.method`` for its methods."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        if isinstance(node, ast.ClassDef):
            out |= {
                f"{node.name}.{f.name}"
                for f in node.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return out


def _module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _holds(check: Imports | Mentions | Implements) -> str | None:
    """None when the code holds ``check``, else what is missing."""
    if isinstance(check, Mentions):
        return None if check.text in (ROOT / check.path).read_text() else f"{check}"
    if isinstance(check, Imports):
        target, ancestors = _module(check.imported), set()
        while target:  # the module, or a package that re-exports it
            ancestors.add(target)
            target = target.rpartition(".")[0]
        return None if _graph()[_module(check.importer)] & ancestors else f"{check}"
    port_path, port = check.port.split(":")
    impl_path, impl = check.impl.split(":")
    wanted = {n.split(".")[1] for n in _defined(ROOT / port_path) if n.startswith(port + ".")}
    has = {n.split(".")[1] for n in _defined(ROOT / impl_path) if n.startswith(impl + ".")}
    if not wanted or wanted - has:
        return f"{impl} lacks {sorted(wanted - has)} of {port} ({check})"
    return None if _module(port_path) in _graph()[_module(check.user)] else f"{check}"


@pytest.mark.parametrize("title", FLOWS)
def test_every_step_of_a_flow_is_in_the_code(title: str) -> None:
    steps = FLOWS[title]
    missing = []
    for i, step in enumerate(steps):
        if step.place.endswith(".py"):
            path = ROOT / step.place
            assert path.exists(), step.place
            missing += [f"{step.place}: {n}" for n in step.names if n not in _defined(path)]
        if i and not step.checks:
            missing.append(f"step {i + 1} ({step.place}): nothing ties it to the step before")
        missing += [m for c in step.checks if (m := _holds(c)) is not None]
    assert missing == []


def test_the_flows_run_from_the_edge_to_their_topic() -> None:
    assert (SALE[0].place, SALE[-1].place) == ("streams/worker/consumer.py", "the estimates topic")
    assert (COMMAND[0].place, COMMAND[-1].place) == (
        "streams/cli/experiment.py",
        "the assignments topic",
    )


def test_every_concept_lives_where_the_map_says() -> None:
    assert [p for _, paths in CONCEPTS for p in paths if not (ROOT / p).exists()] == []


def test_a_check_that_fails_is_reported() -> None:
    assert _holds(Mentions("core/ports.py", "no such text")) is not None
    assert _holds(Imports("core/ports.py", "controller/flipper.py")) is not None
    assert (
        _holds(
            Implements(
                "core/ports.py:PanelSource",
                "streams/worker/sinks.py:KafkaEstimateSink",
                "analysis/worker.py",
            )
        )
        is not None
    )


def test_check_finds_a_stale_map_and_the_generator_rewrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "architecture.md"
    stale = DOC.replace(MAP, MAP.replace("`core/ (root)`", "`core/ (elsewhere)`"))
    doc.write_text(stale)
    monkeypatch.setattr(architecture, "DOC", doc)
    assert architecture.main(["--check"]) == 1
    assert doc.read_text() == stale
    assert architecture.main([]) == 0
    assert doc.read_text() == DOC
    assert architecture.main(["--check"]) == 0
