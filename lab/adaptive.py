"""An adaptive price ladder and a fixed one on the same simulated market and days (issue #57).

:func:`run_ladder` plays a ladder period by period on a :class:`lab.market.Market`: before
each period it sets the arm probabilities (the arms' allocations for a fixed ladder; for an
adaptive one the rule of :mod:`controller.adaptive` on the latest look of
:class:`analysis.adaptive.AdaptiveArms`, at its update periods only: after the warmup, every
``every`` periods, the probabilities holding between two), draws every product's arm with them
(:func:`controller.adaptive_draw.period_arms`, the design's own keyed uniforms: a fixed and an
adaptive ladder of one seed share every cell's uniform), and sells at the arm's price with the
market's carryover. Beside the draws it keeps the truths: each period's expected profit per
product of every arm held steady (the lag-m potential outcome the estimator targets) and the
expected profit the cells actually earned, so the regret against always pricing the true best
arm is exact, free of the count noise.

**Which look steers a period.** ``delay`` is the number of complete periods the steering
look lacks: period ``t`` is steered by the look of periods ``0 .. t - 1 - delay``. Live it is
:data:`LIVE_DELAY` (1: the analysis worker leaves the look of ``0 .. t - 2`` for the flip of
``t``, docs/adaptive.md "Which look steers a period"), the default; ``delay=0`` is the loop
the lab study (``lab/studies/adaptive_ladder.py``) measured, one period faster than live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from analysis.adaptive import MIN_PERIODS, AdaptiveArms, AdaptivePanel, Looks
from analysis.errors import PanelError
from controller.adaptive import adaptive_step, next_probabilities, update_periods
from controller.adaptive_draw import period_arms
from controller.spec import ExperimentSpec, load_spec
from lab.config import MarketConfig
from lab.market import Market, in_force
from lab.simulate import experiment_slots, market_for_spec

START = "2026-05-04T00:00:00+00:00"
#: the live path's delay: the flip of period t reads the look of periods 0 .. t - 2
LIVE_DELAY = 1


def ladder_spec(
    ratios: Sequence[float],
    products: int,
    days: int,
    seed: int,
    adaptive: dict[str, Any] | None,
    costs: dict[str, float] | None = None,
) -> ExperimentSpec:
    """A random-days ladder of ``ratios`` (the first, 1.0, the control), equal allocations;
    ``adaptive``: the spec's ``adaptive:`` block (None: a fixed ladder)."""
    k = len(ratios)
    arms = [
        {"name": f"r{i}", "policy": f"price-{i}", "price_ratio": float(r), "allocation": 1.0 / k}
        | ({"control": True} if i == 0 else {})
        for i, r in enumerate(ratios)
    ]
    end = np.datetime64(START[:19]) + np.timedelta64(days, "D")
    return load_spec(
        {
            "id": "adaptive-ladder",
            "products": [f"P{i:03d}" for i in range(products)],
            "arms": arms,
            "start": START,
            "end": f"{end}+00:00",
            "seed": seed,
            **({"adaptive": adaptive} if adaptive is not None else {}),
            **({"unit_costs": costs} if costs is not None else {}),
        }
    )


def ladder_market(
    spec: ExperimentSpec, cost_share: float, order: int, decay: float, seed: int, demand: int
) -> Market:
    """The market of a ladder: unit costs at ``cost_share`` of each base price, carryover of
    ``order`` periods decaying by ``decay``, no spillover (each arm's contrast is then the
    global one the regret counts)."""
    cfg = MarketConfig(
        unit_cost_share=cost_share,
        carryover_order=order,
        carryover_decay=decay,
        spillover=0.0,
        effect_modifiers={},
    )
    return market_for_spec(spec, cfg, seed=seed, demand_seed=demand)


@dataclass(frozen=True)
class LadderRun:
    """One ladder played on one market: the cells (``panel``), the probabilities each period
    was drawn with (T x k), each period's expected profit per product of every arm held steady
    (``steady``, T x k), what the cells earned in expectation (``earned``, T: summed over
    products) and what always pricing the true best arm would have (``best_profit``, T), and
    the estimator's looks."""

    panel: AdaptivePanel
    probabilities: np.ndarray
    steady: np.ndarray
    earned: np.ndarray
    best_profit: np.ndarray
    best: int
    looks: Looks
    periods: np.ndarray

    def regret(self) -> float:
        """Profit given up against always pricing the true best arm (expected, summed)."""
        return float((self.best_profit - self.earned).sum())

    def truths(self) -> np.ndarray:
        """Each look's true contrast of every arm with the control (looks x k): the mean over
        the look's periods of the steady expected profits."""
        per = self.steady[self.periods]
        cum = np.cumsum(per, axis=0) / np.arange(1, len(per) + 1)[:, None]
        at = cum[MIN_PERIODS - 1 :]
        return np.asarray(at - at[:, [0]])


def _steady(market: Market, slot: Any, n: int, cols: int, ratio: float, cost: np.ndarray) -> Any:
    held = np.full((n, cols), ratio != 1.0)
    out = market.period_outcomes(slot, held, np.full((n, cols), ratio))
    return (out.price - cost) * out.expected_units


def run_ladder(
    spec: ExperimentSpec,
    market: Market,
    *,
    lag: int,
    method: Literal["aipw", "ipw"] = "aipw",
    delay: int = LIVE_DELAY,
) -> LadderRun:
    """Play ``spec`` (adaptive when it has an ``adaptive:`` block, else fixed at its
    allocations) on ``market`` period by period, the estimator's carryover lag ``lag``; an
    update at period ``t`` uses the look of periods ``0 .. t - 1 - delay`` (module
    docstring)."""
    if delay < 0:
        raise ValueError(f"delay must be at least 0; got {delay}")
    ratios = np.array([a.price_ratio for a in spec.arm_list()], dtype=float)
    k = len(ratios)
    products = spec.all_products()
    n = len(products)
    cost = market.unit_cost
    slots = experiment_slots(spec, market)
    t_all = len(slots)
    m = market.carryover_order
    arms = np.zeros((n, t_all), dtype=np.int64)
    probs = np.zeros((t_all, k))
    y = np.zeros((n, t_all))
    steady = np.zeros((t_all, k))
    earned = np.zeros(t_all)
    steady_cells = np.zeros((t_all, k, n))
    alloc = np.array(spec.allocations())
    settings = spec.adaptive
    # the periods at whose start the probabilities may change; between two, they hold
    updates = set(update_periods(settings, t_all)) if settings is not None else set()
    p = alloc
    for t, slot in enumerate(slots):
        step = adaptive_step(settings, t) if settings is not None else 0
        if settings is not None and t in updates:
            seen = t - delay  # the periods the steering look covers
            try:
                if seen < 1:
                    raise PanelError("no period to look at yet")
                sofar = AdaptivePanel(y[:, :seen], arms[:, :seen], probs[:seen])
                est = AdaptiveArms(method=method, lag=lag, horizon=t_all).fit(sofar)
            except PanelError:  # not MIN_PERIODS periods past the lag yet
                est = None
            if est is not None:
                p = next_probabilities(
                    settings, est.looks_.mean[-1], cov=est.looks_.cov[-1], step=step,
                    seed=spec.seed,
                )  # fmt: skip
        probs[t] = p
        arms[:, t] = period_arms(spec, products, t, p)
        cols = in_force(slots, t, m)
        r_hist = ratios[arms[:, cols]]
        out = market.period_outcomes(slot, r_hist != 1.0, r_hist)
        y[:, t] = (out.price - cost) * out.units
        earned[t] = float(((out.price - cost) * out.expected_units).sum())
        for a in range(k):
            cells = _steady(market, slot, n, len(cols), float(ratios[a]), cost)
            steady_cells[t, a] = cells
            steady[t, a] = float(cells.mean())
    best = int(steady.sum(axis=0).argmax())
    best_profit = steady_cells[:, best, :].sum(axis=1)
    panel = AdaptivePanel(y, arms, probs)
    est = AdaptiveArms(method=method, lag=lag, horizon=t_all).fit(panel)
    return LadderRun(panel, probs, steady, earned, best_profit, best, est.looks_, est.periods_)
