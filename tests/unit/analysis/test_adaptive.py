"""Inference on adaptive ladders (analysis/adaptive.py): IPW/AIPW on recorded probabilities,
the anytime-valid simultaneous sequences, measured on seeded toys with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.adaptive import AdaptiveArms, AdaptivePanel, pseudo_outcomes, window_paths
from analysis.errors import PanelError

EFFECTS = np.array([0.0, 0.04, -0.06, 0.08])


def _world(seed: int, n: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Potential outcomes (n x t x k Poisson counts) and their expectations."""
    rng = np.random.default_rng([seed, 57])
    level = np.exp(rng.normal(3.0, 0.5, n))
    day = np.exp(rng.normal(0.0, 0.1, t))
    mu = level[:, None, None] * day[None, :, None] * (1.0 + EFFECTS)[None, None, :]
    return rng.poisson(mu).astype(float), mu


def _adaptive_run(
    seed: int, n: int = 40, t: int = 14, method: str = "aipw"
) -> tuple[AdaptivePanel, np.ndarray]:
    """An adaptive allocation whose next probabilities lean on the running estimates (a
    greedy softmax with a 10% floor, not the controller's rule: any predictable rule must
    do); returns the panel and the potential outcomes' expectations."""
    y_pot, mu = _world(seed, n, t)
    k = len(EFFECTS)
    rng = np.random.default_rng([seed, 1])
    probs = np.full((t, k), 1.0 / k)
    arms = np.zeros((n, t), dtype=int)
    rows = np.arange(n)[:, None]
    for s in range(t):
        if s >= 3:
            sofar = AdaptivePanel(y_pot[rows, np.arange(s), arms[:, :s]], arms[:, :s], probs[:s])
            z, _ = pseudo_outcomes(sofar, 0, "ipw")
            score = np.exp((z.mean(axis=0) - z.mean()) / max(z.std(), 1e-9))
            probs[s] = 0.1 + (1 - 0.1 * k) * score / score.sum()
        arms[:, s] = np.minimum(
            np.searchsorted(np.cumsum(probs[s]), rng.random(n), side="right"), k - 1
        )
    y = y_pot[rows, np.arange(t), arms]
    return AdaptivePanel(y, arms, probs), mu


def test_ipw_is_unbiased_under_an_adaptive_allocation() -> None:
    errors = []
    for seed in range(150):
        panel, mu = _adaptive_run(seed)
        est = AdaptiveArms(method="ipw", horizon=14).fit(panel)
        errors.append(est.mean_ - mu.mean(axis=(0, 1)))
    err = np.array(errors)
    mcse = err.std(axis=0, ddof=1) / math.sqrt(len(err))
    assert np.all(np.abs(err.mean(axis=0)) < 3.5 * mcse), (err.mean(axis=0), mcse)


def test_aipw_sequences_cover_at_every_look() -> None:
    ever, widths_ipw, widths_aipw = [], [], []
    for seed in range(120):
        panel, mu = _adaptive_run(seed)
        est = AdaptiveArms(method="aipw", horizon=14).fit(panel)
        looks = est.looks_
        per = mu.mean(axis=0)
        cum = np.cumsum(per, axis=0) / np.arange(1, len(per) + 1)[:, None]
        truth = cum[looks.period] - cum[looks.period][:, [0]]
        ever.append(bool(((looks.low > truth) | (looks.high < truth)).any()))
        widths_aipw.append(float((looks.high - looks.low)[-1, 1:].mean()))
        ipw = AdaptiveArms(method="ipw", horizon=14).fit(panel).looks_
        widths_ipw.append(float((ipw.high - ipw.low)[-1, 1:].mean()))
    rate = float(np.mean(ever))
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / len(ever))
    # the outcome model pays: AIPW's sequences are narrower than IPW's
    assert np.mean(widths_aipw) < 0.8 * np.mean(widths_ipw)


def test_a_period_s_pseudo_outcome_uses_no_later_period() -> None:
    panel, _ = _adaptive_run(3)
    z, _ = pseudo_outcomes(panel, lag=1)
    y = panel.Y.copy()
    y[:, 9:] *= 5.0  # the future changes
    later = AdaptivePanel(y, panel.arm, panel.probability)
    z2, _ = pseudo_outcomes(later, lag=1)
    assert np.allclose(z[:8], z2[:8])  # periods 1..8 (lag 1 starts at period 1)
    assert not np.allclose(z[8:], z2[8:])


def test_window_probabilities_by_hand() -> None:
    arm = np.array([[0, 0, 1, 1]])
    probs = np.array([[0.5, 0.5], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    held, prob = window_paths(AdaptivePanel(np.ones((1, 4)), arm, probs), lag=1)
    assert held[0, :, 0].tolist() == [False, True, False, False]
    assert held[0, :, 1].tolist() == [False, False, False, True]
    assert prob[0, 1, 0] == pytest.approx(0.5 * 0.4)
    assert prob[0, 3, 1] == pytest.approx(0.7 * 0.8)
    # period 3 kept period 2's draw (a switchback block): one factor, the block's
    kept = AdaptivePanel(np.ones((1, 4)), arm, probs, redraw=np.array([1, 1, 1, 0], bool))
    _, prob = window_paths(kept, lag=1)
    assert prob[0, 3, 1] == pytest.approx(0.7)


def test_a_lag_longer_than_the_panel_holds_no_window() -> None:
    # 4 periods, lag 6 (analyze --lag 6 on a short panel): no window fits, nothing is held;
    # the look's refusal is then its sentence, not numpy's broadcast error
    panel = AdaptivePanel(np.ones((2, 4)), np.zeros((2, 4), int), np.full((4, 2), 0.5))
    held, prob = window_paths(panel, lag=6)
    assert held.shape == (2, 4, 2) and not held.any()
    assert prob.shape == (2, 4, 2) and np.isnan(prob).all()
    with pytest.raises(PanelError, match="periods past the carryover lag"):
        AdaptiveArms(method="aipw", lag=6, control=0).fit(panel)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"probability": np.full((4, 2), 0.4)}, "sum to 1"),
        ({"arm": np.full((2, 4), 2)}, "arm indices"),
        ({"Y": np.full((2, 4), np.nan)}, "no finite outcome"),
        (
            {"probability": np.tile([1.0, 0.0], (4, 1)), "arm": np.ones((2, 4), int)},
            "probability 0",
        ),
    ],
)
def test_bad_panels_are_refused_at_the_door(kwargs: dict[str, np.ndarray], words: str) -> None:
    base = {"Y": np.ones((2, 4)), "arm": np.zeros((2, 4), int), "probability": np.full((4, 2), 0.5)}
    with pytest.raises(PanelError, match=words):
        AdaptivePanel(**(base | kwargs))
