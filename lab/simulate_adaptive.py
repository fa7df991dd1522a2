"""An adaptive ladder spec run on a simulated market as the live path runs it (issue #57).

:func:`run_adaptive_spec` plays the spec period by period. Before period ``t`` it decides the
period's arm probabilities with the flip's own rule
(:func:`controller.adaptive_draw.period_probabilities`: the warmup's allocations, then at each
update point, an optimal switchback's randomisation points among them, the rule of
:mod:`controller.adaptive` on the latest look, else the probabilities held), draws every cell
with them through the design (:func:`controller.designs.design_matrices` with the recorded
probabilities, the flip's path and the design's keyed uniforms) and sells the period on the
market. The look is the analysis worker's (:func:`analysis.adaptive_live.ladder_cells` and
:func:`~analysis.adaptive_live.fit_ladder` on the cells the panel has, the carryover lag and
randomisation points of the design's estimators, the spec's number of periods as the horizon),
of periods ``0 .. t - 1 - delay`` (a ladder sells each cell at its arm's listed ratio, two
arms at the market's treatment price, as :func:`lab.simulate.run_spec`): live, ``delay`` is :data:`lab.adaptive.LIVE_DELAY` (the
worker leaves the look of ``0 .. t - 2`` for the flip of ``t``; docs/adaptive.md, "Which look
steers a period").

The panel is :func:`lab.simulate.run_spec`'s with the recorded probabilities (the same draws,
cell for cell): ``probability`` is the probability the cell's own arm was drawn with (the
period's recorded probability of it, not P(not control)), and ``probability_<arm>`` each arm's
recorded probability of the period.

Beside it, the fixed ladder of the same seed (the design's draw at the allocations: the same
keyed uniforms) on the same market and days, and every product held at each arm throughout;
the regret is the expected value of the allocation's metric (free of the count noise) given up
against always the true best arm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from analysis.adaptive_live import carryover, fit_ladder, ladder_cells
from analysis.errors import AnalysisError
from controller.adaptive import ADAPTIVE_DESIGNS
from controller.adaptive_draw import PeriodProbabilities, period_probabilities, update_points
from controller.designs import DesignContext, design_matrices, design_of
from controller.spec import ExperimentSpec
from core.ports import AdaptiveLook
from lab.adaptive import LIVE_DELAY
from lab.errors import LabError
from lab.market import DayOutcome, Market, PeriodSlot, in_force
from lab.price import ladder_ratios
from lab.simulate import SimulatedExperiment, experiment_slots, run_spec, washout_head

#: a look's time stamp (the simulation has no clock; the rule does not read it)
_AS_OF = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AdaptiveSimulation:
    """An adaptive ladder run on a market (``sim``: its panel with the recorded probabilities),
    each period's decision (``decisions``: the probabilities and where they came from), the
    look that steered each updated period (``looks``), the fixed ladder of the same seed on the
    same market and days (``fixed``), and the regrets of the adaptive and the fixed ladder on
    ``metric`` (summed expected values given up against always ``best``: ``optimum``)."""

    sim: SimulatedExperiment
    fixed: SimulatedExperiment
    decisions: tuple[PeriodProbabilities, ...]
    looks: dict[int, AdaptiveLook]
    metric: str
    best: int
    regret: float
    fixed_regret: float
    optimum: float
    delay: int

    @property
    def probabilities(self) -> np.ndarray:
        """Each period's recorded probabilities (T x k, spec arm order)."""
        return np.array([d.probabilities for d in self.decisions], dtype=float)


def refusal(spec: ExperimentSpec) -> str | None:
    """Why the simulator cannot run the adaptive ``spec`` (one clause), or None."""
    if spec.adaptive is None:
        return f"experiment {spec.id!r} has a fixed allocation"
    if spec.design not in ADAPTIVE_DESIGNS:  # the spec refuses it first; kept as a guard
        return f"the {spec.design} design cannot adapt"
    if design_of(spec).uses_triggers:
        return f"the {spec.design} design fires on triggers, which an adaptive ladder cannot"
    return None


def _metric_values(
    metric: str, units: np.ndarray, price: np.ndarray, cost: np.ndarray | None
) -> np.ndarray:
    if metric == "units":
        return units
    if metric == "revenue":
        return units * price
    assert cost is not None  # the spec refuses a profit metric without every unit cost
    return units * (price - cost)


def run_adaptive_spec(
    spec: ExperimentSpec, market: Market, *, delay: int = LIVE_DELAY
) -> AdaptiveSimulation:
    """Play the adaptive ``spec`` on ``market`` (whose products are the spec's) as the live
    path does (module docstring); LabError when the simulator cannot."""
    why = refusal(spec)
    if why is not None:
        raise LabError(f"cannot simulate an adaptive ladder: {why}")
    if delay < 0:
        raise LabError(f"the look's delay must be at least 0 periods; got {delay}")
    ratios = ladder_ratios(spec)  # None: two arms, the market's one treatment price
    if ratios is not None:
        try:
            market.check_price_only()
        except ValueError as exc:
            raise LabError(str(exc)) from None
    units = list(market.product_ids)
    metric = str(spec.adaptive_metric())
    costs = spec.costs_of(units)
    cost = None if costs is None else np.array(costs, dtype=float)
    slots = experiment_slots(spec, market)
    n, t_all, m = len(units), len(slots), market.carryover_order
    sold = np.zeros((n, t_all))
    takings = np.zeros((n, t_all))
    values = {"units": sold, "revenue": takings}
    if cost is not None:
        values["profit"] = np.zeros((n, t_all))

    def sell(t: int, arm: np.ndarray) -> None:
        slot = slots[t]
        out = _outcome(market, slot, arm[:, in_force(slots, t, m)], ratios, spec.control_index)
        sold[:, t], takings[:, t] = out.units, out.revenue
        head = washout_head(spec, market, out, slot, slots)
        if head is not None:  # the panel counts the sales after the washout's head
            sold[:, t] -= head[1]
            takings[:, t] -= head[2]
        if cost is not None:
            values["profit"][:, t] = takings[:, t] - sold[:, t] * cost

    played = play_ladder(spec, units, t_all, values, sell, delay=delay)
    arm, recorded, decisions, looks = played.arm, played.recorded, played.decisions, played.looks
    names = [a.name for a in spec.arm_list()]

    sim = run_spec(spec, market, probabilities=recorded)
    if not np.array_equal(np.asarray(sim.matrices.arm, dtype=np.int64), arm):
        raise AssertionError("the panel's draw is not the loop's")  # a bug, not a user's error
    sim = _with_probabilities(sim, recorded, names)
    fixed = run_spec(spec, market)
    steady = _steady(spec, market, ratios, metric, cost)
    best = int(steady.sum(axis=0).argmax())
    optimum = float(steady[:, best].sum())

    def regret(s: SimulatedExperiment) -> float:
        p = s.panel
        shape = (n, t_all)
        v = _metric_values(
            metric,
            p["expected_units"].to_numpy(float).reshape(shape),
            p["price"].to_numpy(float).reshape(shape),
            None if cost is None else cost[:, None],
        )
        return optimum - float(v.sum())

    return AdaptiveSimulation(
        sim, fixed, tuple(decisions), looks, metric, best, regret(sim), regret(fixed), optimum,
        delay,
    )  # fmt: skip


def _outcome(
    market: Market, slot: PeriodSlot, history: np.ndarray, ratios: np.ndarray | None, control: int
) -> DayOutcome:
    """A period's outcome given the arms in force (``history``, products x the periods whose
    arms reach it), as :meth:`lab.market.Market.run_slots` draws it: a ladder at its arms'
    listed ratios, two arms at the market's treatment price."""
    if ratios is None:
        return market.period_outcomes(slot, history != control)
    held = ratios[history]
    return market.period_outcomes(slot, held != 1.0, held)


@dataclass(frozen=True)
class PlayedLadder:
    """What :func:`play_ladder` drew: each cell's arm and blackout (units x periods), each
    period's recorded probabilities and decision, and the look that steered each updated
    period."""

    arm: np.ndarray
    blackout: np.ndarray
    recorded: dict[int, tuple[float, ...]]
    decisions: tuple[PeriodProbabilities, ...]
    looks: dict[int, AdaptiveLook]


def play_ladder(
    spec: ExperimentSpec,
    units: Sequence[str],
    periods: int,
    values: Mapping[str, np.ndarray],
    sell: Callable[[int, np.ndarray], None],
    *,
    delay: int = LIVE_DELAY,
    dark: np.ndarray | None = None,
) -> PlayedLadder:
    """The live rule's loop, on any outcome: before period ``t``, the flip's probabilities
    (:func:`controller.adaptive_draw.period_probabilities`) on the analysis worker's look of
    periods ``0 .. t - 1 - delay`` (:func:`_look`), the design's draw with them, then
    ``sell(t, arm)``, which fills column ``t`` of the metric matrices ``values`` (units x
    periods, by metric name: the cells the look reads) from the arms drawn so far. ``dark``:
    cells the panel does not have (blacked out in the look). The market's
    (:func:`run_adaptive_spec`) and the planner's history (:mod:`lab.plan_adaptive`) both
    play it."""
    names = [a.name for a in spec.arm_list()]
    control = spec.control_index
    metric = str(spec.adaptive_metric())
    lag, points = carryover(design_of(spec).estimators(spec))
    ups = set(update_points(spec))
    n = len(units)
    arm = np.full((n, periods), control, dtype=np.int64)
    blackout = np.zeros((n, periods), bool)
    recorded: dict[int, tuple[float, ...]] = {}
    decisions: list[PeriodProbabilities] = []
    looks: dict[int, AdaptiveLook] = {}
    look: AdaptiveLook | None = None
    seen_dark = blackout if dark is None else dark
    for t in range(periods):
        seen = t - delay  # the periods the look steering t covers
        if t in ups and seen >= 1 and (look is None or look.periods < seen):
            cells = cell_table(units, names, arm, blackout | seen_dark, values, seen)
            look = (
                _look(spec, cells, names, control, recorded, lag, points, metric, periods) or look
            )
        decided = period_probabilities(spec, t, recorded, look)
        if decided.source == "look" and look is not None:
            looks[t] = look
        recorded[t] = decided.probabilities
        decisions.append(decided)
        drawn = design_matrices(
            spec, list(units), DesignContext(probabilities=recorded), periods=[t]
        )
        arm[:, t] = drawn.arm[:, 0]
        blackout[:, t] = drawn.blackout[:, 0]
        sell(t, arm)
    return PlayedLadder(arm, blackout, recorded, tuple(decisions), looks)


def cell_table(
    units: Sequence[str],
    names: list[str],
    arm: np.ndarray,
    blackout: np.ndarray,
    values: Mapping[str, np.ndarray],
    periods: int,
) -> pd.DataFrame:
    """The long cell table of periods ``0 .. periods - 1`` as the live panel has it (one
    column per metric of ``values``)."""
    n = len(units)
    cells = pd.DataFrame(
        {
            "product": np.repeat(np.asarray(units, dtype=object), periods),
            "period": np.tile(np.arange(periods), n),
            "arm": np.array(names, dtype=object)[arm[:, :periods].ravel()],
            "blackout": blackout[:, :periods].ravel(),
        }
    )
    for metric, v in values.items():
        cells[metric] = v[:, :periods].ravel()
    return cells


def _look(
    spec: ExperimentSpec,
    cells: pd.DataFrame,
    names: list[str],
    control: int,
    recorded: dict[int, tuple[float, ...]],
    lag: int,
    points: tuple[int, ...] | None,
    metric: str,
    horizon: int,
) -> AdaptiveLook | None:
    """The analysis worker's look at ``cells`` on ``metric`` (None: it would leave none)."""
    periods = int(cells["period"].max()) + 1
    try:
        ladder = ladder_cells(cells, names, {s: recorded[s] for s in range(periods)}, lag, points)
        fit = fit_ladder(ladder, metric, names, control, lag=lag, horizon=horizon)
    except (AnalysisError, ValueError):
        return None
    return fit.look(spec.id, _AS_OF)  # the worker's look, as it leaves it for the flip


def _with_probabilities(
    sim: SimulatedExperiment, recorded: dict[int, tuple[float, ...]], names: list[str]
) -> SimulatedExperiment:
    """The panel with the recorded probabilities: ``probability`` the cell's own arm's, then
    ``probability_<arm>`` every arm's."""
    panel = sim.panel
    period = panel["period"].to_numpy(int)
    table = np.array([recorded[t] for t in range(len(recorded))], dtype=float)
    own = np.asarray(sim.matrices.arm, dtype=np.int64).ravel()  # product-major, as the panel
    at = panel.columns.get_loc("probability")
    assert isinstance(at, int)
    out = panel.assign(probability=table[period, own])
    for i, name in enumerate(names):
        out.insert(at + 1 + i, f"probability_{name}", table[period, i])
    return SimulatedExperiment(
        sim.spec, sim.market, sim.matrices, sim.triggers, out, sim.window_share
    )


def _steady(
    spec: ExperimentSpec,
    market: Market,
    ratios: np.ndarray | None,
    metric: str,
    cost: np.ndarray | None,
) -> np.ndarray:
    """Each period's expected ``metric`` summed over the products when every product holds
    one arm throughout (T x k): what always pricing at that arm earns."""
    slots = experiment_slots(spec, market)
    n, m, k = market.n_products, market.carryover_order, spec.n_arms
    out = np.zeros((len(slots), k))
    for t, slot in enumerate(slots):
        cols = len(in_force(slots, t, m))
        for a in range(k):
            held = np.full((n, cols), a, dtype=np.int64)
            o = _outcome(market, slot, held, ratios, spec.control_index)
            out[t, a] = float(_metric_values(metric, o.expected_units, o.price, cost).sum())
    return out


__all__ = [
    "AdaptiveSimulation",
    "PlayedLadder",
    "cell_table",
    "play_ladder",
    "refusal",
    "run_adaptive_spec",
]
