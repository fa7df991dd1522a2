"""docs/designs.md's table of what the live worker publishes per design is the designs' own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.designs import get_design
from lab.compare import make_spec, market_classes
from lab.config import MarketConfig
from lab.market import Market

DOC = Path(__file__).resolve().parents[3] / "docs" / "designs.md"


def _rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    table = text[text.index("| design | estimators (primary first) |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        design, estimators = (cell.strip() for cell in line.strip("|").split("|", 1))
        rows[design] = list(dict.fromkeys(re.findall(r"`([a-z]+)`", estimators)))
    return rows


@pytest.mark.parametrize(
    "design",
    ["random-days", "time-bound", "triggered", "crossover", "cluster", "optimal-switchback"],
)
def test_the_table_lists_each_designs_estimators_primary_first(design: str) -> None:
    market = Market(MarketConfig(n_products=40), seed=0)
    classes = market_classes(market, 10) if design == "cluster" else None
    spec = make_spec(design, market, days=28, classes=classes)
    published = [p.name for p in get_design(design).estimators(spec)]
    assert _rows()[design] == published
