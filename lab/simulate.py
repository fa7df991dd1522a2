"""Run an experiment spec on a simulated market, as the live controller would run it.

The assignment is the controller's own: :func:`controller.designs.design_matrices` builds every
period from the same whole-period draws as the flip, so a simulated panel's arms,
probabilities and blackouts agree row for row with ``pricelab schedule SPEC --csv``.
Triggered designs fire on the market's competitor undercuts: its competitor price events go
through the controller's own :class:`~controller.triggers.TriggerTracker`, against the
market's own prices (a simulated market has its own prices, so the spec's reference prices are
not used). Outcomes come from :class:`lab.market.Market`.

The panel has one row per unit and period: ``unit``, ``period``, ``arm`` (treatment/control),
``treated`` (0/1), ``probability`` (the design P(treatment)), ``blackout`` (0/1: the whole
period's data is discarded), ``class`` (when the spec groups products), the outcomes
(``units``, ``revenue``, ``price``) and the truth (``true_effect``, ``direct_effect``,
``y0_expected``, ``expected_units``, per whole day). With a washout, ``units`` and ``revenue``
count the analysis window, as the live panel does (the sales after each period's
washout-length head; ``head_units`` holds the rest), and the truth the experiment reports
(:attr:`SimulatedExperiment.truth`) is scaled to that window.

A price ladder (``arms:``, more than two arms, each with a ``price_ratio``) runs on the market
as its prices (:meth:`lab.market.Market.run_slots` with each cell's listed ratio): the panel's
``arm`` is the arm's name, ``price_ratio`` (right after it) its listed ratio, ``treated`` 1 for
any arm but control and ``probability`` P(not control); its ``true_effect`` and
``direct_effect`` are each cell's own arm's against control (0 in a control cell), and the
truths are per arm (:meth:`SimulatedExperiment.metric_truth` with ``arm``,
:meth:`SimulatedExperiment.optimal_ratio_truth`). A two-arm ``arms:`` list keeps the one
treatment price (its arms' names in ``arm``, its ratios in ``price_ratio``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controller.designs import (
    DesignContext,
    DesignMatrices,
    MarketFacts,
    design_matrices,
    design_of,
)
from controller.panel_labels import label
from controller.periods import n_periods, period_bounds
from controller.spec import ExperimentSpec
from controller.triggers import TriggerTracker
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import SEED_TAG, DayOutcome, Market, PeriodSlot
from lab.price import ladder_market, ladder_ratios

# Stream keys of the event generators (sale and competitor event timing), apart from the
# market's own streams.
_S_SALES, _S_COMPETITORS = 101, 102
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class SimulatedExperiment:
    """One experiment run on a simulated market: its assignment, triggers and panel."""

    spec: ExperimentSpec
    market: Market
    matrices: DesignMatrices
    triggers: Mapping[str, int]
    panel: pd.DataFrame
    #: per period, the expected share of a day's sales in the analysis window (1 without washout)
    window_share: np.ndarray

    def _mean(self, column: str) -> float:
        cells = self.matrices.analysed
        if not cells.any():
            return float("nan")
        x = self.panel[column].to_numpy().reshape(cells.shape) * self.window_share[None, :]
        return float(x[cells].mean())

    @property
    def ratios(self) -> np.ndarray | None:
        """A price ladder's listed ratio of each arm (spec arm order); None for two arms."""
        return ladder_ratios(self.spec)

    def _one_truth(self) -> None:
        if self.ratios is not None:
            raise LabError(
                f"the {self.spec.n_arms}-arm experiment {self.spec.id!r} has a truth per arm: "
                "ask metric_truth(metric, arm=NAME)"
            )

    @property
    def truth(self) -> float:
        """The estimand: the market's true (global) effect averaged over the analysed cells
        (randomised, not blacked out), in the analysis window as the live panel counts it.
        Two arms only (a ladder's truths are per arm: :meth:`metric_truth`)."""
        self._one_truth()
        return self._mean("true_effect")

    @property
    def truth_direct(self) -> float:
        self._one_truth()
        return self._mean("direct_effect")

    def unit_costs(self) -> np.ndarray | None:
        """The spec's unit costs in market order (None unless every product has one)."""
        costs = self.spec.costs_of(self.market.product_ids)
        return None if costs is None else np.array(costs)

    def _grid(self, column: str) -> np.ndarray:
        """A panel column as products x periods, scaled to the analysis window."""
        x = self.panel[column].to_numpy(dtype=float).reshape(self.matrices.analysed.shape)
        return x * self.window_share[None, :]

    def _arm(self, arm: str | None) -> int:
        """The index of the arm ``arm`` names (a ladder needs one; two arms: the treatment)."""
        arms = self.spec.arm_list()
        names = [a.name for a in arms]
        control = self.spec.control_index
        if arm is None:
            if len(arms) > 2:
                raise LabError(
                    f"the {len(arms)}-arm experiment {self.spec.id!r} has a truth per arm: "
                    f"name one of {', '.join(n for i, n in enumerate(names) if i != control)}"
                )
            return 1 - control
        if arm not in names or names.index(arm) == control:
            others = ", ".join(n for i, n in enumerate(names) if i != control)
            what = "is the control" if arm in names else "is no arm of it"
            raise LabError(
                f"arm {arm!r} {what} of experiment {self.spec.id!r}; name one of {others}"
            )
        return names.index(arm)

    def _untreated_means(self) -> np.ndarray:
        """``mu0`` (E[units | never treated] without the spike share) of every cell, scaled
        to the analysis window."""
        slots = experiment_slots(self.spec, self.market)
        return self.market.untreated_means(slots) * self.window_share[None, :]

    def metric_truth(self, metric: str, relative: bool = False, arm: str | None = None) -> float:
        """The true effect on ``metric`` over the analysed cells (as :attr:`truth` for units;
        :meth:`lab.market.Market.metric_truth`), or the elasticity the within-product
        estimator identifies.

        A price ladder's truth is per arm: ``arm`` (a name, required) against control over
        every analysed cell (all arms', as the two-arm truth averages over all analysed
        cells): each cell's expected control units and the arm's lag-m global effect
        ``mu0 * expm1(elasticity_i * log(r_a) * sum_l decay**l + spillover * has_substitutes)``
        (:meth:`lab.market.Market.ratio_log_lift`), at the arm's price
        ``round(base * r_a, 2)``. Two arms: ``arm`` may name the treatment arm."""
        cells = self.matrices.analysed
        index = self._arm(arm)
        ratios = self.ratios
        if ratios is None:
            if metric == "elasticity":
                return self.market.elasticity_truth(cells, self.matrices.treated)
            return self.market.metric_truth(
                cells, self._grid("y0_expected"), self._grid("true_effect"), metric,
                self.unit_costs(), relative=relative,
            )  # fmt: skip
        if metric == "elasticity":
            raise LabError("the simulator gives no elasticity truth for a price ladder yet")
        return self.market.arm_metric_truth(
            cells, self._grid("y0_expected"), self._untreated_means(), metric,
            self.unit_costs(), ratio=float(ratios[index]), relative=relative,
        )  # fmt: skip

    def optimal_ratio_truth(self) -> float:
        """The listed price ratio, between the ladder's lowest and highest, that maximises
        the true expected profit per product-period over the analysed cells when every
        product is listed at it: ``sum_cells (r * base_i - c_i) * mu0 * (exp(elasticity_i *
        log r * sum_l decay**l + spillover * has_substitutes * [r != 1]) + spike factor)``,
        in the analysis window, with the spec's unit costs c (NaN without them) and prices
        unrounded (``r * base_i``: the curve is smooth in r).
        :meth:`lab.market.Market.optimal_ratio` finds it."""
        ratios = self.ratios
        if ratios is None:
            raise LabError(
                "optimal_ratio_truth needs a price ladder: an arms: list of more than two arms, "
                "each with a price_ratio"
            )
        return self.market.cells_optimal_ratio(
            self.matrices.analysed, self._untreated_means(), self.unit_costs(),
            float(ratios.min()), float(ratios.max()),
        )  # fmt: skip

    def profit_change_truth(self, ratio: float) -> float:
        """The true change of expected profit per analysed cell when every product is listed
        at ``ratio`` rather than at the control's price: :meth:`lab.market.Market.
        expected_profit` at ``ratio`` less at 1, each product's exposure its ``mu0`` summed
        over the analysed cells, over their number (what analysis.demand's
        ``profit_change_at_optimum`` estimates at its recommended ratio); NaN without unit
        costs or analysed cells."""
        cells, cost = self.matrices.analysed, self.unit_costs()
        if cost is None or not cells.any():
            return float("nan")
        exposure = np.where(cells, self._untreated_means(), 0.0).sum(axis=1)
        change = self.market.expected_profit(float(ratio), exposure, cost)
        return float(change - self.market.expected_profit(1.0, exposure, cost)) / int(cells.sum())


def check_periods(spec: ExperimentSpec) -> int:
    """The number of periods of ``spec``; LabError unless they are whole hours, from an hour
    to a day (what the market simulates)."""
    p = spec.period
    if p > _DAY or p < _HOUR or p % _HOUR:
        raise LabError(
            f"the simulated market has periods of whole hours from PT1H to P1D; experiment "
            f"{spec.id!r} has periods of {p}"
        )
    return n_periods(spec)


def experiment_slots(spec: ExperimentSpec, market: Market) -> list[PeriodSlot]:
    """The market's view of every period of ``spec`` (:meth:`lab.market.Market.slots`)."""
    n = check_periods(spec)
    return market.slots([period_bounds(spec, k) for k in range(n)], max(1, _DAY // spec.period))


def _daily(slots: list[PeriodSlot]) -> bool:
    return slots[0].per_day == 1


def market_for_spec(
    spec: ExperimentSpec, cfg: MarketConfig, seed: int, *, demand_seed: int | None = None
) -> Market:
    """A market whose products are the spec's products (in spec order), whose days are the
    spec's periods (same calendar and time zone), seeded by ``seed``. A trigger rule's named
    competitors are the market's first competitors. Its treatment is the spec's price change
    (``price_ratio - 1``) when the spec gives ``price_ratio``, else ``cfg.price_change``
    (:func:`lab.price.modelled_price` settles which, and refuses two that disagree).

    A price ladder (more than two arms) sets no price change: its arms' prices are run
    (:func:`run_spec`). Its market has no effect modifiers (a lift that is not a price's
    means nothing per arm): the default ones are dropped, ones the config sets are refused
    (LabError); a ladder whose arms give no price_ratio is a SpecError naming ``arms``."""
    ladder = ladder_ratios(spec) is not None
    if ladder:
        ladder_market(cfg, f"the price ladder of {spec.id!r}")  # refuses configured modifiers
    check_periods(spec)
    units = spec.all_products()
    start = spec.start.astimezone(spec.zone).date()
    named = list(spec.triggered.competitors) if spec.triggered is not None else []
    n_competitors = max(cfg.n_competitors, len(named))
    try:
        cfg = MarketConfig.model_validate(
            cfg.model_dump()
            | {
                "n_products": len(units),
                "n_categories": min(cfg.n_categories, len(units)),
                "n_competitors": n_competitors,
                "start_date": start,
                "timezone": spec.timezone,
            }
            # a ladder fills no price_ratio (its arms hold theirs): it sets no price change
            | ({} if spec.price_ratio is None else {"price_change": spec.price_ratio - 1.0})
            | ({"effect_modifiers": {}} if ladder else {})
        )
    except ValueError as exc:
        raise LabError(f"the market cannot hold experiment {spec.id!r}: {exc}") from None
    others = [f"competitor-{chr(ord('a') + j)}" for j in range(n_competitors)]
    competitors = named + [c for c in others if c not in named][: n_competitors - len(named)]
    return Market(
        cfg, seed=seed, demand_seed=demand_seed, product_ids=units, competitor_ids=competitors
    )


def market_facts(
    market: Market, days: int, classes: Mapping[str, tuple[str, ...]] | None = None
) -> MarketFacts:
    """What a design needs of a market to build its example spec."""
    groups = market.products.groupby("category", sort=True)["product"]
    categories = {str(c): tuple(p) for c, p in groups}
    prices = dict(zip(market.product_ids, market.products["base_price"].astype(float), strict=True))
    return MarketFacts(
        products=tuple(market.product_ids),
        categories=categories,
        classes=dict(classes) if classes is not None else categories,
        reference_prices=prices,
        competitors=tuple(market.competitors),
        days=days,
        carryover_order=market.cfg.carryover_order,
    )


def competitor_rng(market: Market, day: int) -> np.random.Generator:
    """The generator of a day's competitor observation times (the triggers and the event
    files see the same events)."""
    return np.random.default_rng([SEED_TAG, market.demand_seed, _S_COMPETITORS, day])


def sales_rng(market: Market, day: int) -> np.random.Generator:
    return np.random.default_rng([SEED_TAG, market.demand_seed, _S_SALES, day])


def simulated_triggers(spec: ExperimentSpec, market: Market) -> dict[str, int]:
    """product -> trigger period: the spec's trigger rule run by the controller's tracker over
    the market's competitor prices, against the market's own prices."""
    rule = spec.triggered
    if rule is None:
        raise LabError(f"experiment {spec.id!r} has no trigger rule")
    if rule.competitors and not set(rule.competitors) & set(market.competitors):
        raise LabError(
            f"triggered.competitors names none of the simulated market's competitors "
            f"({', '.join(market.competitors)})"
        )
    prices = market_facts(market, 0).reference_prices
    own = spec.model_copy(
        update={"triggered": rule.model_copy(update={"reference_prices": dict(prices)})}
    )
    tracker = TriggerTracker(own)
    tracker.seed_references(dict(prices))
    # competitor prices come a day at a time (episodes are the day's); the tracker lays the
    # triggers on the spec's own periods
    for day in range(experiment_slots(spec, market)[-1].day + 1):
        start, end = (t.astimezone(UTC) for t in market.day_window(day))
        for e in market.competitor_events(day, start, end, competitor_rng(market, day)):
            tracker.observe_competitor(e["product"], e["competitor"], e["price"], e["observed_at"])
        tracker.advance(end)
    return tracker.triggers


def run_spec(
    spec: ExperimentSpec,
    market: Market,
    probabilities: Mapping[int, tuple[float, ...]] | None = None,
) -> SimulatedExperiment:
    """Run ``spec`` on ``market`` (whose products are the spec's): assignment, outcomes, panel.
    A price ladder's cells are priced at their arms' listed ratios (``ratios[matrices.arm]``,
    :meth:`lab.market.Market.run_slots`); its market must have no effect modifiers.
    ``probabilities``: an adaptive ladder's arm probabilities by period, as its flips recorded
    them (:mod:`lab.simulate_adaptive`; the design draws those periods with them)."""
    ratios = ladder_ratios(spec)
    if ratios is not None:
        try:
            market.check_price_only()
        except ValueError as exc:
            raise LabError(str(exc)) from None
    slots = experiment_slots(spec, market)
    days = len(slots)
    units = list(market.product_ids)
    if set(units) != spec.units() or len(units) != len(spec.units()):
        raise LabError(f"the market's products are not experiment {spec.id!r}'s products")
    design = design_of(spec)
    triggers = simulated_triggers(spec, market) if design.uses_triggers else {}
    ctx = DesignContext(triggers=triggers, probabilities=dict(probabilities or {}))
    matrices = design_matrices(spec, units, ctx)
    outcomes = _outcomes(spec, market, matrices, slots)
    raw = market.panel_from_outcomes(outcomes, [market.date(s.day) for s in slots])
    share = np.ones(days)
    if spec.washout:
        head_u, head_r = np.zeros(matrices.treated.shape), np.zeros(matrices.treated.shape)
        for o, s in zip(outcomes, slots, strict=True):
            head = washout_head(spec, market, o, s, slots)
            if head is not None:
                share[o.day], head_u[:, o.day], head_r[:, o.day] = head
        raw = raw.assign(
            units=raw["units"].to_numpy() - head_u.ravel(),
            revenue=raw["revenue"].to_numpy() - head_r.ravel(),
            head_units=head_u.ravel(),
        )
    panel = _panel(spec, raw, matrices, days)
    return SimulatedExperiment(spec, market, matrices, triggers, panel, share)


def washout_head(
    spec: ExperimentSpec,
    market: Market,
    outcome: DayOutcome,
    slot: PeriodSlot,
    slots: list[PeriodSlot],
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """A period's washout-length head: the expected share of its sales after it, and each
    product's units and revenue in it (market order); None without a washout, or for a period
    in the spring-forward gap (no hour, no sale). The live panel counts each period's sales
    after its washout-length head (every cell, switched or not): the period's units are split
    into orders as the sales stream does."""
    if not spec.washout or slot.start == slot.end:
        return None
    start, end = slot.start, slot.end
    head_end = start + spec.washout
    prof = None if _daily(slots) else slot.hour_weights  # a day: 24 equal slices, as ever
    share = market.window_share(start, end, spec.washout, prof)
    row = {p: i for i, p in enumerate(market.product_ids)}
    head_u, head_r = np.zeros(market.n_products), np.zeros(market.n_products)
    rng = sales_rng(market, outcome.day)
    for e in market.sale_events(outcome.day, start, end, outcome, rng, prof):
        if e["occurred_at"] < head_end:
            head_u[row[e["product"]]] += e["units"]
            head_r[row[e["product"]]] += e["revenue"]
    return share, head_u, head_r


def _outcomes(
    spec: ExperimentSpec, market: Market, m: DesignMatrices, slots: list[PeriodSlot]
) -> list[DayOutcome]:
    """The market's period outcomes under the spec's assignment (a ladder: its prices)."""
    ratios = ladder_ratios(spec)
    if ratios is None:
        return market.run_slots(m.treated, slots)
    return market.run_slots(m.treated, slots, ratios=ratios[m.arm])


def _panel(spec: ExperimentSpec, raw: pd.DataFrame, m: DesignMatrices, days: int) -> pd.DataFrame:
    """The market's long panel (product-major in market order, like the matrices): the live
    panel's columns (``product``, ``period``, ``period_start`` in the experiment's time zone,
    the spec's ``segment``: controller.panel_labels), then the simulator's own (the market's
    ``category``, truths, characteristics). ``arm`` is treatment/control for the two-arm
    shorthand, the arm's name for an ``arms:`` list, followed by its ``price_ratio`` when the
    arms list one."""
    df = raw.rename(columns={"day": "period"})
    treated = m.treated.ravel()
    front: dict[str, Any] = {"product": df["product"], "period": df["period"]}
    if spec.arms:
        arms = spec.arm_list()
        front["arm"] = np.array([a.name for a in arms], dtype=object)[m.arm.ravel()]
        if arms[0].price_ratio is not None:
            listed = np.array([a.price_ratio for a in arms], dtype=float)
            front["price_ratio"] = listed[m.arm.ravel()]
    else:
        front["arm"] = np.where(treated, "treatment", "control")
    front |= {
        "treated": treated.astype(int),
        "probability": m.probability.ravel(),
        "blackout": m.blackout.ravel().astype(int),
    }
    if spec.clusters:
        front["class"] = df["product"].map(spec.class_of)
    out = pd.DataFrame(front)
    rest = df.drop(columns=["product", "period", "date", "treated"])
    if spec.costs_all_products():  # profit as the live panel has it: with the spec's costs
        cost = df["product"].map(spec.unit_costs).to_numpy(dtype=float)
        at = rest.columns.get_loc("revenue") + 1
        rest.insert(at, "profit", rest["revenue"].to_numpy() - rest["units"].to_numpy() * cost)
    return label(pd.concat([out, rest], axis=1), spec)


def write_panel(panel: pd.DataFrame, out: Path) -> None:
    """Write a panel as CSV or Parquet, by the file's suffix."""
    suffix = out.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise LabError(f"--out must end in .csv or .parquet; got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        panel.to_csv(out, index=False)
        return
    try:
        panel.to_parquet(out, index=False)
    except ImportError:
        raise LabError("writing Parquet needs pyarrow (pip install pyarrow); or use .csv") from None


def write_events(sim: SimulatedExperiment, events_dir: Path) -> None:
    """``sales.jsonl`` and ``competitor_prices.jsonl`` (one JSON object per line, timestamps in
    ISO 8601 with offset), ``undercuts.csv`` (ground truth of the undercut episodes) and, for
    triggered designs, ``triggers.csv`` (product, period)."""
    market, spec = sim.market, sim.spec
    events_dir.mkdir(parents=True, exist_ok=True)
    slots = experiment_slots(spec, market)
    outcomes = _outcomes(spec, market, sim.matrices, slots)
    undercuts = []
    with (
        (events_dir / "sales.jsonl").open("w") as sales,
        (events_dir / "competitor_prices.jsonl").open("w") as comps,
    ):
        daily = _daily(slots)
        for day in range(slots[-1].day + 1):
            # a day's periods' sales, then its competitor prices (episodes are the day's)
            for o, s in zip(outcomes, slots, strict=True):
                if s.day != day or s.start == s.end:
                    continue
                prof = None if daily else s.hour_weights
                rng = sales_rng(market, o.day)
                for e in market.sale_events(o.day, s.start, s.end, o, rng, prof):
                    sales.write(json.dumps(_jsonable(e)) + "\n")
            start, end = (t.astimezone(UTC) for t in market.day_window(day))
            for e in market.competitor_events(day, start, end, competitor_rng(market, day)):
                comps.write(json.dumps(_jsonable(e)) + "\n")
            undercuts.append(market.undercut_episodes(day).assign(day=day))
    pd.concat(undercuts, ignore_index=True).to_csv(events_dir / "undercuts.csv", index=False)
    if design_of(spec).uses_triggers:
        pd.DataFrame(sorted(sim.triggers.items()), columns=["product", "period"]).to_csv(
            events_dir / "triggers.csv", index=False
        )


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in event.items()}
