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
from lab.market import SEED_TAG, Market, PeriodSlot

# Stream keys of the event generators (sale and competitor event timing), apart from the
# market's own streams.
_S_SALES, _S_COMPETITORS = 101, 102
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)

#: why the simulator refuses an experiment of more than two arms (issue #41, slice S5)
SIMULATE_REFUSAL = (
    "cannot be simulated yet (the market models one treatment price against control); "
    "pricelab schedule shows their draws"
)


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
    def truth(self) -> float:
        """The estimand: the market's true (global) effect averaged over the analysed cells
        (randomised, not blacked out), in the analysis window as the live panel counts it."""
        return self._mean("true_effect")

    @property
    def truth_direct(self) -> float:
        return self._mean("direct_effect")

    def unit_costs(self) -> np.ndarray | None:
        """The spec's unit costs in market order (None unless every product has one)."""
        costs = self.spec.costs_of(self.market.product_ids)
        return None if costs is None else np.array(costs)

    def metric_truth(self, metric: str, relative: bool = False) -> float:
        """The true effect on ``metric`` over the analysed cells (as :attr:`truth` for units;
        :meth:`lab.market.Market.metric_truth`), or the elasticity the within-product
        estimator identifies."""
        cells = self.matrices.analysed
        if metric == "elasticity":
            return self.market.elasticity_truth(cells, self.matrices.treated)

        def grid(column: str) -> np.ndarray:
            x = self.panel[column].to_numpy(dtype=float).reshape(cells.shape)
            return x * self.window_share[None, :]

        return self.market.metric_truth(
            cells, grid("y0_expected"), grid("true_effect"), metric, self.unit_costs(),
            relative=relative,
        )  # fmt: skip


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
    (:func:`lab.price.modelled_price` settles which, and refuses two that disagree). Two arms
    only (a SpecError naming ``arms`` otherwise: the market models one treatment price)."""
    spec.two_arm_only(SIMULATE_REFUSAL)
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
            | ({} if spec.price_ratio is None else {"price_change": spec.price_ratio - 1.0})
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


def run_spec(spec: ExperimentSpec, market: Market) -> SimulatedExperiment:
    """Run ``spec`` on ``market`` (whose products are the spec's): assignment, outcomes, panel."""
    spec.two_arm_only(SIMULATE_REFUSAL)
    slots = experiment_slots(spec, market)
    days = len(slots)
    units = list(market.product_ids)
    if set(units) != spec.units() or len(units) != len(spec.units()):
        raise LabError(f"the market's products are not experiment {spec.id!r}'s products")
    design = design_of(spec)
    triggers = simulated_triggers(spec, market) if design.uses_triggers else {}
    matrices = design_matrices(spec, units, DesignContext(triggers=triggers))
    outcomes = market.run_slots(matrices.treated, slots)
    raw = market.panel_from_outcomes(outcomes, [market.date(s.day) for s in slots])
    share = np.ones(days)
    if spec.washout:
        # the live panel counts each period's sales after its washout-length head (every
        # cell, switched or not): split the day's units into orders as the sales stream does
        head_u, head_r = np.zeros(matrices.treated.shape), np.zeros(matrices.treated.shape)
        row = {p: i for i, p in enumerate(units)}
        for o, s in zip(outcomes, slots, strict=True):
            if s.start == s.end:  # a period in the spring-forward gap: no hour, no sale
                continue
            start, end = s.start, s.end
            head_end = start + spec.washout
            prof = None if _daily(slots) else s.hour_weights  # a day: 24 equal slices, as ever
            share[o.day] = market.window_share(start, end, spec.washout, prof)
            rng = sales_rng(market, o.day)
            for e in market.sale_events(o.day, start, end, o, rng, prof):
                if e["occurred_at"] < head_end:
                    head_u[row[e["product"]], o.day] += e["units"]
                    head_r[row[e["product"]], o.day] += e["revenue"]
        raw = raw.assign(
            units=raw["units"].to_numpy() - head_u.ravel(),
            revenue=raw["revenue"].to_numpy() - head_r.ravel(),
            head_units=head_u.ravel(),
        )
    panel = _panel(spec, raw, matrices, days)
    return SimulatedExperiment(spec, market, matrices, triggers, panel, share)


def _panel(spec: ExperimentSpec, raw: pd.DataFrame, m: DesignMatrices, days: int) -> pd.DataFrame:
    """The market's long panel (product-major in market order, like the matrices): the live
    panel's columns (``product``, ``period``, ``period_start`` in the experiment's time zone,
    the spec's ``segment``: controller.panel_labels), then the simulator's own (the market's
    ``category``, truths, characteristics)."""
    df = raw.rename(columns={"day": "period"})
    treated = m.treated.ravel()
    front: dict[str, Any] = {
        "product": df["product"],
        "period": df["period"],
        "arm": np.where(treated, "treatment", "control"),
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
    outcomes = market.run_slots(sim.matrices.treated, slots)
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
