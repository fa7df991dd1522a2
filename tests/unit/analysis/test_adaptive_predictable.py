"""The AIPW outcome model of an adaptive ladder is fitted on the periods before each window
only: a later period's outcome never changes an earlier period's pseudo-outcome (no
look-ahead, the martingale increments' premise; analysis/adaptive.py)."""

from __future__ import annotations

import numpy as np

from analysis.adaptive import AdaptivePanel, pseudo_outcomes


def _panel(t: int) -> AdaptivePanel:
    rng = np.random.default_rng(7)
    n, k = 30, 3
    arm = rng.integers(0, k, size=(n, t))
    y = rng.gamma(4.0, 2.0, size=(n, t)) * (1.0 + 0.2 * arm)
    # the last period loses money in one cell (a price below cost): a negative outcome
    y[0, -1] = -5.0
    return AdaptivePanel(y, arm, np.full((t, k), 1.0 / k))


def test_a_later_negative_outcome_leaves_earlier_pseudo_outcomes_alone() -> None:
    full = _panel(12)
    early = AdaptivePanel(full.Y[:, :11], full.arm[:, :11], full.probability[:, :11])
    for lag in (0, 1):
        z_full, p_full = pseudo_outcomes(full, lag)
        z_early, p_early = pseudo_outcomes(early, lag)
        assert list(p_full[:-1]) == list(p_early)
        np.testing.assert_allclose(z_full[:-1], z_early, rtol=1e-12, atol=1e-12)
