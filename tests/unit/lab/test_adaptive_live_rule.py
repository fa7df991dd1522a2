"""The live flip decides each period's probabilities as the lab's loop does (issue #57): fed
the look the lab's loop fitted before each period (AdaptiveArms on periods 0..t-1, as the
analysis worker would leave it), ``controller.adaptive_draw.period_probabilities`` gives
every period of ``lab.adaptive.run_ladder`` the probabilities it was drawn with, and
``period_arms`` (the designs' draw, the flip's path) gives its cells their arms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.errors import PanelError
from controller.adaptive_draw import period_arms, period_probabilities
from controller.spec import ExperimentSpec
from core.ports import AdaptiveLook
from lab.adaptive import ladder_market, ladder_spec, run_ladder


def _look(spec: ExperimentSpec, panel: AdaptivePanel, probs: np.ndarray, t: int) -> Any:
    """The look of periods 0..t-1 the lab's loop fits before period t (the analysis worker's
    AdaptiveArms), or None when there are too few periods for one (the worker leaves none)."""
    if t == 0:
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


def test_the_live_decision_replays_the_lab_loop_period_by_period() -> None:
    spec = ladder_spec((1.0, 0.85, 1.15), 24, 12, 11, {"warmup": 3, "every": 2})
    market = ladder_market(spec, 0.733, 1, 0.5, seed=5, demand=6)
    run = run_ladder(spec, market, lag=1)
    panel, probs = run.panel, run.probabilities
    recorded: dict[int, tuple[float, ...]] = {}
    for t in range(len(probs)):
        got = period_probabilities(spec, t, recorded, _look(spec, panel, probs, t))
        np.testing.assert_allclose(got.probabilities, probs[t], rtol=0, atol=1e-12)
        recorded[t] = got.probabilities
        assert period_arms(spec, spec.all_products(), t, got.probabilities).tolist() == (
            panel.arm[:, t].tolist()
        )
    assert len({tuple(p) for p in probs}) > 2  # it adapted, more than once


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
