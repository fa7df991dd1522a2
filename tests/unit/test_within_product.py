"""The within-product difference ("fe"): each product compared with itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import PanelError
from analysis.estimators import registry
from analysis.panel import Panel
from analysis.pricing_dgp import simulate_relative_panel


def test_it_recovers_the_effect_covers_and_beats_the_difference_in_means() -> None:
    runs, hits, rel_hits = 200, 0, 0
    errors, se_fe, se_dm = [], [], []
    for seed in range(runs):
        # product levels spread 20x (lognormal SD 0.8): the noise the products' own levels add
        panel, truth = simulate_relative_panel(seed, n=60, t=20, delta=0.10, level_sd=0.8)
        fe = registry.make("fe").fit(panel).result
        dm = registry.make("dm").fit(panel).result
        lo, hi = fe.conf_int(0.05)
        hits += lo <= truth <= hi
        errors.append(fe.effect - truth)
        rel = fe.relative(0.05)
        rel_hits += rel["relative_ci_low"] <= 0.10 <= rel["relative_ci_high"]
        se_fe.append(fe.se)
        se_dm.append(dm.se)
    assert 0.92 <= hits / runs <= 0.985
    assert 0.92 <= rel_hits / runs <= 0.985
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(runs)
    # more precise in nearly every run (the size of the gain: docs/relative-effects.md)
    assert np.mean(np.array(se_fe) < np.array(se_dm)) > 0.9


def test_adding_a_product_level_or_a_day_shock_changes_nothing() -> None:
    panel, _ = simulate_relative_panel(5, n=30, t=14, delta=0.1, level_sd=0.5)
    base = registry.make("fe").fit(panel).result
    shifted = panel.with_outcome(
        panel.Y + np.arange(30)[:, None] * 7.0 + np.sin(np.arange(14))[None, :] * 50.0
    )
    moved = registry.make("fe").fit(shifted).result
    assert moved.effect == pytest.approx(base.effect, abs=1e-8)
    assert moved.se == pytest.approx(base.se, rel=1e-8)


def test_a_design_without_products_in_both_arms_has_no_within_product_difference() -> None:
    df = pd.DataFrame(
        {"unit": np.repeat(["a", "b", "c", "d"], 5), "period": np.tile(range(5), 4),
         "y": np.arange(20.0), "w": np.repeat([1, 0, 1, 0], 5)}
    )  # fmt: skip
    panel = Panel.from_long(df, unit="unit", time="period", outcome="y", treated="w")
    with pytest.raises(PanelError, match="does not randomise within products"):
        registry.make("fe").fit(panel)
