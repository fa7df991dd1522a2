"""An adaptive ladder's sample-ratio test against its recorded probabilities
(streams.client.adaptive_health): the statistic by hand, the design's independent draws, and,
on seeded ladders drawn by the controller's own draw path
(``controller.adaptive_draw.period_arms``: ``DesignContext.probabilities``), p-values uniform
under the true draw and a biased draw flagged."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from controller.adaptive_draw import period_arms
from controller.designs.optimal_switchback import points
from controller.spec import ExperimentSpec, load_spec
from streams.client.adaptive_health import (
    draw_counts,
    recorded_sample_ratio,
    recorded_sample_ratio_check,
)

ARMS = ["list", "p90", "p110", "p120"]
SEEDS = 200


def _spec(seed: int, design: str = "random-days", products: int = 40) -> ExperimentSpec:
    names = [f"P{i:03d}" for i in range(products)]
    doc: dict[str, Any] = {
        "id": "ladder",
        "products": names,
        "start": "2026-05-04",
        "end": "2026-05-12",  # 8 daily periods
        "seed": seed,
        "design": design,
        "arms": [
            {"name": a, "policy": a, "allocation": 0.25}
            | ({"control": True} if a == "list" else {})
            for a in ARMS
        ],  # fmt: skip
        "adaptive": {"warmup": 2, "floor": 0.1},
    }
    if design == "optimal-switchback":
        doc["optimal_switchback"] = {"carryover_order": 2}  # points 0, 4 of 8 periods
        # two draws a window: 60 products keep a held cell a period at the floor
        doc["products"] = names = [f"P{i:03d}" for i in range(60)]
    if design == "cluster":
        del doc["products"]
        doc["clusters"] = {f"c{j}": names[j::20] for j in range(20)}  # 20 classes of 2
    return load_spec(doc)


def _probabilities(spec: ExperimentSpec, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """A seeded probability path: the allocations in the warmup, then a new vector above the
    floor at each update point (an optimal switchback's blocks keep theirs)."""
    out: dict[int, np.ndarray] = {}
    fresh = set(points(spec)) if spec.design == "optimal-switchback" else set(range(8))
    p = np.array(spec.allocations())
    for t in range(8):
        if t >= 2 and t in fresh:
            p = 0.1 + 0.6 * rng.dirichlet(np.ones(4))
        out[t] = p
    return out


def _panel(spec: ExperimentSpec, drawn_with: dict[int, np.ndarray]) -> pd.DataFrame:
    products = spec.all_products()
    rows = [
        pd.DataFrame({"product": products, "period": t, "blackout": False,
                      "arm": np.array(ARMS)[period_arms(spec, products, t, p)]})
        for t, p in drawn_with.items()
    ]  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _pvalue(
    spec: ExperimentSpec, recorded: dict[int, np.ndarray], drawn: dict[int, np.ndarray]
) -> float:
    counts, level = draw_counts(_panel(spec, drawn), spec)
    srm = recorded_sample_ratio(counts, {t: tuple(p) for t, p in recorded.items()}, ARMS, level)
    assert srm is not None
    return srm.pvalue


def test_the_statistic_by_hand() -> None:
    # two arms, two periods: 60/40 of 100 at 0.5/0.5, 20/80 of 100 at 0.2/0.8: observed
    # 80/120, expected 70/130; the first arm's variance 100 * 0.25 + 100 * 0.16 = 41, so the
    # statistic is 10^2 / 41 = 2.43902 on 1 degree of freedom, p = erfc(sqrt(2.43902 / 2))
    srm = recorded_sample_ratio({0: [60, 40], 1: [20, 80]}, {0: (0.5, 0.5), 1: (0.2, 0.8)},
                                ["a", "b"])  # fmt: skip
    assert srm is not None
    assert srm.statistic == pytest.approx(100 / 41) and srm.df == 1
    assert srm.pvalue == pytest.approx(math.erfc(math.sqrt(100 / 41 / 2)))
    assert srm.expected == pytest.approx({"a": 70.0, "b": 130.0}) and srm.n == 200
    # a period without a record, or without draws, does not enter
    again = recorded_sample_ratio({0: [60, 40], 1: [20, 80], 2: [5, 5], 3: [0, 0]},
                                  {0: (0.5, 0.5), 1: (0.2, 0.8), 3: (0.5, 0.5)}, ["a", "b"])  # fmt: skip
    assert again is not None and again.statistic == srm.statistic and again.periods == 2


def test_the_independent_draws_are_the_design_s() -> None:
    osb = _spec(1, "optimal-switchback")
    assert points(osb) == [0, 4]
    flat = {t: np.array(osb.allocations()) for t in range(8)}
    counts, level = draw_counts(_panel(osb, flat), osb)
    assert level == "block" and sorted(counts) == [0, 4] and sum(counts[0]) == 60
    cluster = _spec(1, "cluster")
    counts, level = draw_counts(_panel(cluster, flat), cluster)
    assert level == "class" and sorted(counts) == list(range(8))
    assert all(sum(c) == 20 for c in counts.values())  # 20 classes, not 40 products
    # blackout cells carry the arm in force, not the draw: left out
    d = _panel(_spec(1), flat)
    d.loc[d["period"] == 3, "blackout"] = True
    counts, _ = draw_counts(d, _spec(1))
    assert 3 not in counts and sum(counts[2]) == 40


@pytest.mark.parametrize(("design", "seeds"), [("random-days", SEEDS), ("optimal-switchback", 100),
                                               ("cluster", 100)])  # fmt: skip
def test_p_values_are_uniform_under_the_true_draw(design: str, seeds: int) -> None:
    """Under the recorded probabilities the test rejects at 0.05 as often as it should: the
    count of rejections is binomial(seeds, 0.05), accepted within its 99.9% interval."""
    rng = np.random.default_rng(57)
    pvalues = []
    for seed in range(seeds):
        spec = _spec(seed, design)
        path = _probabilities(spec, rng)
        pvalues.append(_pvalue(spec, path, path))
    rejected = int((np.array(pvalues) < 0.05).sum())
    low, high = stats.binom.ppf([0.0005, 0.9995], seeds, 0.05)
    assert low <= rejected <= high, (design, rejected, low, high)
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001  # and uniform beyond 0.05


def test_a_draw_biased_by_a_tenth_is_a_problem() -> None:
    """The pipeline draws the second arm 0.1 more often (from the control) than recorded."""
    rng = np.random.default_rng(58)
    flags = []
    for seed in range(SEEDS // 4):
        spec = _spec(seed)
        recorded = _probabilities(spec, rng)
        shift = np.array([-0.1, 0.1, 0.0, 0.0])
        biased = {t: p + shift for t, p in recorded.items()}  # every p[0] is above 0.1
        counts, level = draw_counts(_panel(spec, biased), spec)
        srm = recorded_sample_ratio(counts, {t: tuple(p) for t, p in recorded.items()}, ARMS, level)
        flags.append(recorded_sample_ratio_check(srm).flag)
    # 320 draws: the second arm's excess of 32 is about 4 SDs (chi-square ~16 on 3 df, p ~
    # 0.001): flagged every time, a problem (p < 0.001) nine times in ten or more
    assert "ok" not in flags, flags
    assert flags.count("problem") >= 0.9 * len(flags), flags
