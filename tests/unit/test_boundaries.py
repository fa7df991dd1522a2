"""The package boundaries of STYLE.md, enforced."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
            if node.module.startswith("controller."):
                out.add(node.module)
    return out


def test_analysis_imports_no_kafka_or_redis_client():
    offenders = {}
    for path in (ROOT / "analysis").rglob("*.py"):
        bad = _imports(path) & {"faust", "aiokafka", "redis", "kafka"}
        # controller modules that talk to Redis are off limits too
        bad |= {
            m
            for m in _imports(path)
            if m
            in {
                "controller.store",
                "controller.redis_clock",
                "controller.panel_source",
                "controller.sales",
                "controller.flipper",
                "controller.trigger_runner",
            }
        }
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_only_the_wall_clock_reads_the_system_time():
    pattern = re.compile(r"datetime\.(now|utcnow)\(|time\.time\(\)")
    offenders = []
    for pkg in ("controller", "streams", "analysis"):
        for path in (ROOT / pkg).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and path.name != "clock.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert offenders == []


def test_only_store_like_modules_touch_redis():
    allowed = {"store.py", "redis_clock.py"}
    offenders = []
    for path in (ROOT / "controller").rglob("*.py"):
        if "redis" in _imports(path) and path.name not in allowed:
            offenders.append(path.name)
    assert offenders == []
