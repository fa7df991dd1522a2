"""An adaptive ladder's probabilities change only at its update periods: after the warmup,
every ``every`` periods (controller.adaptive.update_periods; lab/adaptive.py plays them)."""

from __future__ import annotations

import numpy as np

from controller.adaptive import update_periods
from lab.adaptive import ladder_market, ladder_spec, run_ladder


def test_probabilities_change_only_at_update_periods() -> None:
    spec = ladder_spec((1.0, 0.85, 1.15), 24, 12, 11, {"warmup": 3, "every": 3})
    market = ladder_market(spec, 0.733, 1, 0.5, seed=5, demand=6)
    run = run_ladder(spec, market, lag=1)
    p = run.probabilities
    assert spec.adaptive is not None
    updates = set(update_periods(spec.adaptive, len(p)))
    assert updates == {3, 6, 9}
    changed = {t for t in range(1, len(p)) if not np.allclose(p[t], p[t - 1])}
    assert changed <= updates
    assert changed  # the rule did adapt somewhere
