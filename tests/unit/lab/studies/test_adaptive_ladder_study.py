"""The adaptive-ladder study (lab/studies/adaptive_ladder.py): one small run per case in the
default suite; the validity targets on 100 runs per case under the ``slow`` marker (the full
study: docs/adaptive.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lab.studies import adaptive_ladder
from lab.studies.harness import Run, run_rows
from lab.studies.render import render_text


@pytest.fixture(scope="module")
def dry() -> tuple[pd.DataFrame, Run]:
    return run_rows(adaptive_ladder.STUDY.with_options(runs=1, products=30, days=14))


def test_each_run_plays_both_ladders_on_one_market(dry: tuple[pd.DataFrame, Run]) -> None:
    rows, _ = dry
    assert len(rows) == 2 * len(adaptive_ladder.CASES)
    for (world, _rule), g in rows.groupby(["world", "rule"]):
        assert sorted(g["mode"]) == ["adaptive", "fixed"]
        k = len(adaptive_ladder.WORLDS[world]["ratios"])
        fixed = g[g["mode"] == "fixed"].iloc[0]
        adapt = g[g["mode"] == "adaptive"].iloc[0]
        assert fixed["min_probability"] == pytest.approx(1.0 / k)
        assert adapt["min_probability"] >= 0.05  # the spec's default floor
        # the same market: the same true best arm and the same profit of always pricing it
        assert fixed["best"] == adapt["best"]
        assert fixed["best_total"] == pytest.approx(adapt["best_total"])
        if world.startswith("A/A"):
            assert fixed["regret"] == pytest.approx(0.0, abs=1e-6)
            assert adapt["regret"] == pytest.approx(0.0, abs=1e-6)
        else:
            assert fixed["regret"] > 0
        assert len(fixed["looks_cover"]) == len(fixed["looks_period"].split(";"))


def test_summary_and_page(dry: tuple[pd.DataFrame, Run]) -> None:
    rows, run = dry
    results = adaptive_ladder.summarise(rows, run)
    assert len(results["cases"]) == 2 * len(adaptive_ladder.CASES)
    page = render_text("adaptive_ladder.md.j2", adaptive_ladder.context(results))
    assert page.startswith("<!-- adaptive-ladder:start -->")
    assert "4 prices, strong carryover" in page


#: where the adaptive ladder's sequences meet the targets (docs/adaptive.md: on 5 prices, with
#: the best price at the top and with strong carryover the starved arm's sequence misses)
ADAPTIVE_VALID = ("3 prices", "4 prices", "A/A, 4 arms")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the study: about 25 CPU minutes
def test_targets_over_100_runs() -> None:
    """Family-wise coverage at the end, sequences ever missing, A/A decisions within two
    Monte-Carlo SEs of the issue's targets: the fixed ladder on every world with carryover of
    order 1, the adaptive one where docs/adaptive.md says it holds; and the adaptive ladder
    gives up less profit than the fixed one on every world with a best price."""
    rows, run = run_rows(adaptive_ladder.STUDY.with_options(runs=100), jobs=2)
    table = pd.DataFrame(adaptive_ladder.summarise(rows, run)["cases"])
    fixed = table[(table["mode"] == "fixed") & ~table["world"].str.contains("strong")]
    adaptive = table[(table["mode"] == "adaptive") & table["world"].isin(ADAPTIVE_VALID)]
    slack = 2 * math.sqrt(0.05 * 0.95 / 100)
    for ok in (fixed, adaptive):
        assert np.all(ok["family_end"] >= 0.95 - slack)
        assert np.all(ok["ever_missed"] <= 0.05 + slack)
        aa = ok[ok["world"].str.startswith("A/A")]
        assert np.all(aa["differs"] <= 0.05 + slack)
    saving = table[(table["mode"] == "adaptive") & ~table["world"].str.startswith("A/A")]
    assert np.all(saving["regret_ratio"] < 1.0)
