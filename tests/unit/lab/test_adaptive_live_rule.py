"""The live flip decides each period's probabilities as the lab's loop does (issue #57): fed
the look the analysis worker would leave for the flip of period t (AdaptiveArms on periods
0..t-2: docs/adaptive.md, "Which look steers a period"),
``controller.adaptive_draw.period_probabilities`` gives every period of
``lab.adaptive.run_ladder`` (at its default delay, the live one) the probabilities it was
drawn with, and ``period_arms`` (the designs' draw, the flip's path) gives its cells their
arms. ``delay=0`` (the lab study's loop) is the same replay on the looks of 0..t-1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.errors import PanelError
from controller.adaptive_draw import period_arms, period_probabilities
from controller.spec import ExperimentSpec
from core.ports import AdaptiveLook
from lab.adaptive import ladder_market, ladder_spec, run_ladder


def _look(spec: ExperimentSpec, panel: AdaptivePanel, probs: np.ndarray, t: int) -> Any:
    """The look of periods 0..t-1 (the analysis worker's AdaptiveArms), or None when there are
    too few periods for one (the worker leaves none)."""
    if t <= 0:
        return None
    try:
        est = AdaptiveArms(method="aipw", lag=1, horizon=len(probs)).fit(
            AdaptivePanel(panel.Y[:, :t], panel.arm[:, :t], probs[:t])
        )
    except PanelError:
        return None
    return AdaptiveLook(
        spec.id,
        t,
        str(spec.adaptive_metric()),
        tuple(float(x) for x in est.looks_.mean[-1]),
        tuple(tuple(float(x) for x in row) for row in est.looks_.cov[-1]),
        datetime(2026, 5, 4, tzinfo=UTC),
    )


@pytest.mark.parametrize("delay", [None, 0])
def test_the_live_decision_replays_the_lab_loop_period_by_period(delay: int | None) -> None:
    """Default (the live delay): period t is steered by the look of 0..t-2; delay 0: of
    0..t-1."""
    spec = ladder_spec((1.0, 0.85, 1.15), 24, 12, 11, {"warmup": 3, "every": 2})
    market = ladder_market(spec, 0.733, 1, 0.5, seed=5, demand=6)
    if delay is None:
        run, seen = run_ladder(spec, market, lag=1), 1  # the look lacks period t - 1
    else:
        run, seen = run_ladder(spec, market, lag=1, delay=delay), 0
    panel, probs = run.panel, run.probabilities
    recorded: dict[int, tuple[float, ...]] = {}
    for t in range(len(probs)):
        got = period_probabilities(spec, t, recorded, _look(spec, panel, probs, t - seen))
        np.testing.assert_allclose(got.probabilities, probs[t], rtol=0, atol=1e-12)
        recorded[t] = got.probabilities
        assert period_arms(spec, spec.all_products(), t, got.probabilities).tolist() == (
            panel.arm[:, t].tolist()
        )
    assert len({tuple(p) for p in probs}) > 2  # it adapted, more than once


def test_the_live_delay_is_the_default_and_matters() -> None:
    """The same ladder at delay 1 (the default) and 0: the same warmup, then other
    probabilities (the first update has a look at delay 0 only: 3 periods of 0..2 against
    0..1, which is fewer than the look needs)."""
    spec = ladder_spec((1.0, 0.85, 1.15), 24, 12, 11, {"warmup": 3})
    market = ladder_market(spec, 0.733, 1, 0.5, seed=5, demand=6)
    live = run_ladder(spec, market, lag=0).probabilities
    fast = run_ladder(spec, market, lag=0, delay=0).probabilities
    assert np.allclose(live[:3], 1 / 3) and np.allclose(fast[:3], 1 / 3)
    assert np.allclose(live[3], 1 / 3)  # live: no look of 3 periods before period 3
    assert not np.allclose(fast[3], 1 / 3)
    assert not np.allclose(live[4:], fast[4:])


def test_the_workers_look_is_of_the_metric_the_flip_asks_for() -> None:
    """The worker labels its look with ``analysis.adaptive_live.adaptive_metric`` on the spec's
    JSON (what it reads), the flip ignores a look of another metric than
    ``ExperimentSpec.adaptive_metric``: the two agree however the spec names it."""
    from analysis.adaptive_live import adaptive_metric
    from controller.spec import load_spec

    base = ladder_spec((1.0, 0.9, 1.1), 9, 8, 3, {}).model_dump(mode="json")
    costs = {p: 1.0 for p in base["products"]}
    variants = [
        {},  # no costs: revenue
        {"unit_costs": costs},  # every product's cost: profit
        {"unit_costs": costs, "decision_metric": "units"},
        {"unit_costs": costs, "adaptive": {"metric": "revenue"}},
        {"decision_metric": "units", "adaptive": {"metric": "units"}},
    ]
    seen = set()
    for extra in variants:
        spec = load_spec({k: v for k, v in (base | extra).items() if v is not None})
        params = spec.model_dump(mode="json")
        assert adaptive_metric(params) == spec.adaptive_metric(), extra
        seen.add(spec.adaptive_metric())
    assert seen == {"units", "revenue", "profit"}
