"""The package boundaries of STYLE.md and docs/architecture.md, enforced.

    pricelab/   the notebook API, a facade over the CLI's readers and fits: may use everything
    lab/        the tools layer (simulator, compare-designs): may use controller and analysis
    streams/    the edge: may use everything below it; inside, its members import down only:
                cli/ > live/ > console/ > client/ > worker/ > errors > net/ (STREAMS_LAYERS)
    controller/ the experiment domain       analysis/ pure estimators and the worker's logic
                        \\                   /
    core/       the error root and the analysis worker's ports: imports nothing of pricelab

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a deferred import
still ties the two modules together. The graph is read by ``lab/import_graph.py``, which the map
at the top of docs/architecture.md is drawn from too (tests/unit/project/test_architecture_map.py).

Inside every package too, its members (modules and sub-packages, a sub-package standing for
everything below it) import one way: ``analysis.inference`` importing ``analysis.estimators.base``
while ``analysis.estimators._resampling`` imports ``analysis.inference`` is a near-cycle, though
no two modules import each other.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from lab.import_graph import PACKAGES, ROOT, graph, imported, member, modules

CLIENTS = {"faust", "aiokafka", "redis", "kafka", "confluent_kafka"}

#: package -> the pricelab packages it may import
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "controller": {"core"},
    "analysis": {"core"},
    "lab": {"core", "controller", "analysis"},
    "streams": {"core", "controller", "analysis", "lab"},
    "pricelab": {"core", "controller", "analysis", "lab", "streams"},
}

#: streams' members, bottom up: each imports only those before it. The CLI may use the
#: simulation, the clients and the worker; the worker never reaches up to a client or the CLI.
STREAMS_LAYERS = (
    "streams.net",  # TLS: certificates, probes
    "streams.errors",  # the edge's errors
    "streams.worker",  # the running worker: app, handlers, sinks, wire schemas
    "streams.client",  # what an operator sends to the stack and reads back
    "streams.console",  # the web console: the client's views and commands in a browser
    "streams.live",  # the live simulation: embedded stack, launcher, driver, demo
    "streams.cli",  # the pricelab command line
)


MODULES = modules()


@functools.cache
def _graph() -> dict[str, set[str]]:
    """The project's import graph, parsed when a test first asks (not at collection: every
    test process collects every file, and parsing the project takes about a second)."""
    return graph(MODULES)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_they_may(package: str) -> None:
    offenders = {
        name: sorted(t for t in targets if t.split(".")[0] not in ALLOWED[package] | {package})
        for name, targets in _graph().items()
        if name.split(".")[0] == package
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_relative_imports() -> None:
    """Relative imports would hide a crossing from the checks above: every import is absolute."""
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_analysis_and_core_import_no_kafka_or_redis_client() -> None:
    offenders = {}
    for name, path in MODULES.items():
        if name.split(".")[0] in ("analysis", "core", "lab"):
            bad = {m.split(".")[0] for m in imported(path)} & CLIENTS
            if bad:
                offenders[name] = sorted(bad)
    assert offenders == {}


def test_the_notebook_api_is_a_facade() -> None:
    """pricelab/ reads through the CLI's own readers: it opens no Kafka or Redis client, and
    nothing of pricelab imports it."""
    offenders = {
        name: sorted({m.split(".")[0] for m in imported(path)} & CLIENTS)
        for name, path in MODULES.items()
        if name.split(".")[0] == "pricelab"
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert "pricelab.api" in MODULES
    users = {n for n, targets in _graph().items() for t in targets if t.split(".")[0] == "pricelab"}
    assert {u for u in users if u.split(".")[0] != "pricelab"} == set()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _near_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles among the members of each package (and among the top-level packages): a member
    imports another when any module in it imports any module in the other."""
    packages = {""} | {n.rpartition(".")[0] for n in graph if "." in n}
    out = []
    for package in sorted(packages):
        members: dict[str, set[str]] = {}
        for source, targets in graph.items():
            a = member(package, source)
            if a is None:
                continue
            for target in targets:
                b = member(package, target)
                if b is not None and b != a:
                    members.setdefault(a, set()).add(b)
        out += _cycles(members)
    return out


def test_no_near_cycles_inside_packages() -> None:
    assert _near_cycles(_graph()) == []


def test_streams_members_import_down_only() -> None:
    rank = {m: i for i, m in enumerate(STREAMS_LAYERS)}
    members = {member("streams", n) for n in _graph()} - {None}
    assert members <= set(rank), f"place {sorted(members - set(rank))} in STREAMS_LAYERS"
    offenders = {}
    for name, targets in _graph().items():
        a = member("streams", name)
        if a is None:
            continue
        up = sorted(t for t in targets if (b := member("streams", t)) and rank[b] > rank[a])
        if up:
            offenders[name] = up
    assert offenders == {}


def test_the_near_cycle_check_finds_a_planted_one(tmp_path: Path) -> None:
    """The shape analysis/ had: ``pkg.low`` imports a module of ``pkg.sub``, and a module of
    ``pkg.sub`` imports ``pkg.low`` inside a function; no two modules import each other."""
    files = {
        "pkg/__init__.py": "",
        "pkg/low.py": "from pkg.sub.base import helper\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/base.py": "def helper() -> None: ...\n",
        "pkg/sub/user.py": "def f() -> None:\n    from pkg import low\n",
        "pkg/sub/deep/__init__.py": "",
        "pkg/sub/deep/a.py": "import pkg.sub.deep.b\n",
        "pkg/sub/deep/b.py": "import pkg.sub.deep.c\n",
        "pkg/sub/deep/c.py": "from pkg.sub.deep import a\n",
        "other/__init__.py": "",
        "other/top.py": "import pkg.low\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    planted = graph(modules(tmp_path, ("pkg", "other")))
    assert _cycles(planted) == [["pkg.sub.deep.a", "pkg.sub.deep.b", "pkg.sub.deep.c"]]
    assert _near_cycles(planted) == [
        ["pkg.low", "pkg.sub"],
        ["pkg.sub.deep.a", "pkg.sub.deep.b", "pkg.sub.deep.c"],
    ]
    (tmp_path / "pkg/sub/user.py").write_text("def f() -> None: ...\n")
    (tmp_path / "pkg/sub/deep/c.py").write_text("")
    assert _near_cycles(graph(modules(tmp_path, ("pkg", "other")))) == []


def test_only_the_wall_clock_reads_the_system_time() -> None:
    pattern = re.compile(r"datetime\.(now|utcnow)\(|time\.time\(\)")
    offenders = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and path.name != "clock.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert offenders == []


def test_only_the_store_modules_touch_redis() -> None:
    store = ROOT / "controller" / "store"
    offenders = []
    for path in (ROOT / "controller").rglob("*.py"):
        uses = "redis" in {m.split(".")[0] for m in imported(path)}
        if uses and store not in path.parents:
            offenders.append(path.name)
    assert offenders == []


def test_lua_scripts_are_files_next_to_the_store() -> None:
    from controller.store import lua

    files = sorted(p.stem for p in (ROOT / "controller" / "store" / "lua").glob("*.lua"))
    assert {"ingest", "decide", "turn", "claim_products", "trigger_save"} <= set(files)
    for name in files:
        assert "redis.call" in lua(name) or name == "holds"
    assert "local function holds" in lua("claim_products")  # the include is resolved
    for path in (ROOT / "controller").rglob("*.py"):
        assert "redis.call(" not in path.read_text(), path  # no Lua inside Python modules
