"""cuped per arm (analysis/arms.py) covers each arm's effect at its level, over 400 seeded
three-arm time-bound panels (test_arms.py's ``time_bound``; a file of its own, so that the
suite's processes run its 800 fits beside that file's other coverage study).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.cli import compare_arms
from tests.unit.analysis.test_arms import time_bound

#: a study over 400 panels: the slow suite (README "Testing"), which CI runs by name
pytestmark = pytest.mark.slow


def test_cuped_per_arm_covers_each_arms_effect_at_its_level() -> None:
    # cuped per arm reads P(not control) to tell each product's baseline (the pre-period) from
    # its randomised cells; over 400 seeded three-arm time-bound panels (true effects 1 and 2)
    # each arm's 95% interval covers its effect within three Monte-Carlo SEs of 0.95, and the
    # baseline adjustment narrows the interval against dm's on the same cells
    runs, cover, narrower = 400, np.zeros(2), 0
    for seed in range(runs):
        df = time_bound(1000 + seed)
        fit = [compare_arms(df, "arm", "control", m, None, None, 0.05, "product", "day",
                            "units", None, [], "p") for m in ("cuped", "dm")]  # fmt: skip
        cuped, dm = fit
        for j, (result, truth) in enumerate(zip(cuped.results, (1.0, 2.0), strict=True)):
            lo, hi = result.conf_int(0.05)
            cover[j] += lo <= truth <= hi
        narrower += all(c.se < d.se for c, d in zip(cuped.results, dm.results, strict=True))
    mcse = math.sqrt(0.95 * 0.05 / runs)
    assert np.all(np.abs(cover / runs - 0.95) <= 3 * mcse), cover / runs
    assert narrower / runs > 0.9
