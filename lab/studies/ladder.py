"""The price-ladder validation study (issue #41 part 7), through the analysis worker's own path.

    .venv/bin/python -m lab.studies ladder [--runs 400] [--jobs 2] [--set products=80 --set days=28]

Each run is one seed: a demand path of a market (:func:`lab.simulate.market_for_spec`) of
``products`` products over ``days`` days and a four-price ladder spec on it (list 1.0 the control,
p90, p95 and p105, a quarter each) with every product's unit cost at the world's share of its
base price, assigned by the design's own draw (the run's design seed) and sold at each arm's
price (:func:`lab.simulate.run_spec`). The market's products are one draw per world (products
seed 0, as the validation studies), or, in the cases marked ``markets: per-run``, a new draw
every run. The cells the live panel source would hand the worker go to
:class:`analysis.worker.AnalysisWorker` (``run_once``, the experiment as
:func:`controller.panel_source.experiment_info` describes it), and what it publishes is scored
against the simulator's truths:

- each per-arm estimate of units, revenue and profit (every estimator the design plans that is
  identified per arm): its own interval and its simultaneous interval against
  ``SimulatedExperiment.metric_truth(metric, arm=ARM)``; family-wise, the three arms'
  simultaneous intervals covering at once;
- the demand curve (``publish_demand``): the recommended ratio and its interval against
  ``optimal_ratio_truth()``, the edge flag and ``p_edge``, and the elasticity (no truth: the
  simulator defines none for k arms).

Worlds: unit costs at 48% of the base price (elasticities about -2: the optimum inside the
ladder, about 0.96 on average over markets) and at 70% (the optimum above the top of the
ladder: the edge flag's rate). Designs: random days (cell level), a four-phase crossover,
time-bound (products never change arm: no demand curve) and an optimal switchback (whose
estimators are not identified per arm: its demand curve only). Time-bound's ``sdid`` is planned
with the bootstrap variance on a ladder (:func:`controller.designs.time_bound.sdid_plan`); two
checks (``check``) keep the jackknife it was planned with before, which this study found short:
``sdid-jackknife``, sdid alone with the jackknife on the same runs, and ``products-x4``, the
design's estimators with sdid's jackknife on four times the products. Each run keeps the CPU
seconds of the worker's look and of its ``sdid`` fits.

The recommended price's profit curve (analysis.demand) uses the aggregate elasticities of
revenue and of cost of goods, which weigh products by what they sell, as the true optimum
does; the within-product elasticity weighs them alike, and a curve drawn with it alone (as
analysis.demand's was before this study) misses the optimum of a market whose big sellers
are more or less elastic than the average product. Each demand row keeps, as diagnostics (not
truths), the products' plain and revenue-weighted mean elasticities and the optimum of that
one-elasticity curve at the plain mean (:func:`one_curve_optimum`). Saves
docs/figures/ladder-validation.json and renders docs/ladder-validation.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.estimators.synth import SyntheticDID
from analysis.results import NotIdentified, published_fields
from analysis.worker import AnalysisWorker
from controller.clock import ManualClock
from controller.panel_source import experiment_info
from core.ports import EstimatorPlan, ExperimentInfo
from lab.config import MarketConfig
from lab.simulate import SimulatedExperiment, market_for_spec, run_spec
from lab.studies.harness import (
    Case,
    Page,
    Results,
    Row,
    Run,
    Study,
    coverage,
    error_summary,
    grid,
    mean_mcse,
    run_seed,
)
from lab.studies.ladder_world import (
    RATIOS,
    SEED,
    design_settings,
    ladder_spec,
    live_cells,
)

ARMS = ("p90", "p95", "p105")
METRICS = ("units", "revenue", "profit")
#: each world's unit cost as a share of each product's base price
WORLDS = {"cost-48": 0.48, "cost-70": 0.70}
#: the issue's targets: a comparison's coverage, family-wise, the recommended price's
TARGETS = {"coverage": (0.93, 0.97), "family": 0.95, "optimum": (0.93, 0.97)}
#: the demand fields a run keeps
DEMAND = ("elasticity", "elasticity_se", "elasticity_ci_low", "elasticity_ci_high",
          "optimal_price_ratio", "optimal_price_ratio_ci_low", "optimal_price_ratio_ci_high",
          "optimal_price_ratio_bias", "at_range_edge", "p_edge", "curvature_pvalue",
          "revenue_elasticity", "cost_elasticity")  # fmt: skip

#: the time-bound checks of sdid's variance: sdid with its jackknife (the unit and time weights
#: held at their full-sample values), which time-bound planned on a ladder before the study
#: found it short, in place of the design's bootstrap (which re-estimates the weights in every
#: replicate): sdid alone on the same runs (``sdid-jackknife``), and every estimator the design
#: plans on the study's products times CHECK_SCALE (``products-x4``)
CHECK_SCALE = 4
SDID_JACKKNIFE = EstimatorPlan("sdid", {"se": "jackknife"})
#: the cases; ``check`` is ``none`` but in the time-bound checks
CASES: tuple[Case, ...] = (
    *grid(world=("cost-48",), markets=("one",), check=("none",),
          design=("random-days", "crossover", "time-bound", "optimal-switchback")),
    *grid(world=("cost-70",), markets=("one",), check=("none",), design=("random-days", "crossover")),
    *grid(world=("cost-48",), markets=("per-run",), check=("none",),
          design=("random-days", "crossover", "optimal-switchback")),
    *grid(world=("cost-48",), markets=("one",), check=("sdid-jackknife", "products-x4"),
          design=("time-bound",)),
)  # fmt: skip
#: how many Monte-Carlo SEs from a target a figure may be and still be called chance
CHANCE_MCSE = 2


def experiment(case: Case, run: int, settings: Mapping[str, Any]) -> SimulatedExperiment:
    """Run ``run`` of ``case``: the world's market (products seed 0, or the run's own with
    ``markets: per-run``) on the run's demand path, each product's unit cost the world's
    share of its base price, the design drawn with the run's design seed."""
    scale = CHECK_SCALE if case["check"] == "products-x4" else 1
    products, days = int(settings["products"]) * scale, int(settings["days"])
    design_seed = run_seed(SEED + 1, run)
    plain = ladder_spec(case["design"], products, days, design_seed)
    products_seed = SEED if case["markets"] == "one" else run_seed(SEED + 2, run)
    market = market_for_spec(
        plain, MarketConfig(), seed=products_seed, demand_seed=run_seed(SEED, run)
    )
    share = WORLDS[case["world"]]
    base = market.products["base_price"].to_numpy(dtype=float)
    costs = dict(zip(market.product_ids, np.round(share * base, 2).tolist(), strict=True))
    spec = ladder_spec(case["design"], products, days, design_seed, costs)
    return run_spec(spec, market)


class _Source:
    def __init__(self, info: ExperimentInfo, cells: pd.DataFrame) -> None:
        self.info, self.cells = info, cells

    async def experiments(self) -> list[ExperimentInfo]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return self.cells


class _Sink:
    """The estimates topic, in memory: the per-arm estimates and the demand curves."""

    def __init__(self) -> None:
        self.estimates: list[Any] = []
        self.demand: list[dict[str, Any]] = []

    async def publish(self, experiment: str, result: Any, as_of: datetime, cs: Any) -> None:
        self.estimates.append(result)

    async def publish_demand(
        self, experiment: str, demand: Mapping[str, Any], as_of: datetime
    ) -> None:
        self.demand.append(dict(demand))


class _Said(logging.Handler):
    """What the worker logs while it runs: why it published no demand curve."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _worker_log() -> Iterator[_Said]:
    log = logging.getLogger("pricelab.analysis")
    said, level = _Said(), log.level
    log.addHandler(said)
    log.setLevel(logging.INFO)
    try:
        yield said
    finally:
        log.removeHandler(said)
        log.setLevel(level)


class _Timer:
    """The worker's observer, keeping each fit's CPU seconds: those spent since the previous fit
    ended (or since the timer was made), so that what the worker does between two fits counts
    with the second. A k-arm look fits each estimator of each metric once for all its arms."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.fitted: set[str] = set()  # not those the worker found not applicable
        self._last = time.process_time()

    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None:
        now = time.process_time()
        self.cpu[estimator] = self.cpu.get(estimator, 0.0) + now - self._last
        self._last = now
        if ok:
            self.fitted.add(estimator)

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None:
        return None

    def guardrail_tripped(self, experiment: str, metric: str) -> None:
        return None

    def cycle_done(self, as_of: datetime, seconds: float, published: int) -> None:
        return None

    def reporting(self, experiments: frozenset[str]) -> None:
        return None

    def holding(self, looked: int, held: int) -> None:
        return None

    def of(self, estimator: str) -> tuple[float, int]:
        """The CPU seconds of ``estimator``'s fits (every metric, all arms at once), and how
        many metrics it was fitted on."""
        mine = [k for k in self.cpu if k.split(":")[0] == estimator]
        return sum(self.cpu[k] for k in mine), len(self.fitted.intersection(mine))


def check_plans(check: str, info: ExperimentInfo) -> list[EstimatorPlan] | None:
    """What the worker estimates in a time-bound check in place of the design's own estimators
    (None: the design's own): the design's plan with sdid's jackknife (``products-x4``), or
    sdid with the jackknife alone (``sdid-jackknife``)."""
    if check == "none":
        return None
    before = [SDID_JACKKNIFE if p.name == "sdid" else p for p in info.estimators]
    return [p for p in before if p.name == "sdid"] if check == "sdid-jackknife" else before


def analyse(sim: SimulatedExperiment, check: str = "none") -> tuple[_Sink, list[str], _Timer]:
    """One look of the analysis worker at the whole experiment: what it published, what it
    logged, and the CPU seconds of its fits (``look``: the whole look's). In a check the worker
    estimates by :func:`check_plans` in place of the design's own estimators."""
    info = experiment_info(sim.spec, "running", sim.triggers)
    plans = check_plans(check, info)
    sink, timer = _Sink(), _Timer()
    worker = AnalysisWorker(
        _Source(info, live_cells(sim)),
        sink,
        ManualClock(datetime(2026, 7, 1, tzinfo=UTC)),
        observer=timer,
        demand=sink,
    )
    if plans is not None:
        worker.estimators_for = lambda _: plans
    with _worker_log() as said:
        t0 = time.process_time()
        asyncio.run(worker.run_once())
        timer.cpu["look"] = time.process_time() - t0
    return sink, said.lines, timer


def one_curve_optimum(sim: SimulatedExperiment) -> dict[str, float]:
    """Diagnostics of the recommended price, not truths: the products' plain mean elasticity
    (what the within-product IV weighs alike), their mean weighted by expected control
    revenue over the analysed cells (what the true profit curve weighs them by, near the list
    price), and the argmax in the ladder of the one-elasticity profit curve
    ``r^e (r - kappa)`` at the plain mean ``e`` (analysis.demand's curve before it took the
    aggregate elasticities: kappa the cost of goods over the revenue at the base price),
    ``kappa e / (1 + e)`` clamped to the ladder."""
    shape = sim.matrices.analysed.shape
    panel = sim.panel
    cells = sim.matrices.analysed
    y0 = np.where(cells, panel["y0_expected"].to_numpy(dtype=float).reshape(shape), 0.0)
    base = sim.market.products["base_price"].to_numpy(dtype=float)
    cost = sim.unit_costs()
    assert cost is not None  # every world gives every product a cost
    units = y0.sum(axis=1)
    e = np.asarray(sim.market.elasticity, dtype=float)
    plain = float(e.mean())
    revenue = float(np.average(e, weights=base * units))
    kappa = float(cost @ units / (base @ units))
    low, high = min(RATIOS.values()), max(RATIOS.values())
    best = kappa * plain / (1 + plain) if plain < -1 else high
    return {
        "elasticity_products": plain,
        "elasticity_revenue": revenue,
        "one_curve_optimum": float(np.clip(best, low, high)),
    }


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def run_one(case: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """One experiment analysed by the worker: a row per published per-arm estimate of units,
    revenue and profit (kind ``arm``), per estimator the worker says is not identified per arm
    (``not_identified``), and one for the demand curve and the look's CPU seconds
    (``demand``)."""
    sim = experiment(case, run, settings)
    sink, said, timer = analyse(sim, case["check"])
    rows: list[Row] = []
    missing: dict[str, str] = {}
    for result in sink.estimates:
        if result.metric not in METRICS:
            continue
        if isinstance(result, NotIdentified):
            missing.setdefault(result.method, result.reason)
            continue
        f = published_fields(result, None)
        truth = sim.metric_truth(result.metric, arm=result.arm)
        lo, hi = f["ci_low"], f["ci_high"]
        s_lo, s_hi = f["sim_ci_low"], f["sim_ci_high"]
        rows.append(
            {"kind": "arm", "metric": result.metric, "estimator": f["estimator"],
             "arm": result.arm, "effect": result.effect, "se": result.se,
             "se_method": f["se_method"], "truth": truth,
             "error": result.effect - truth,
             "ci_low": lo, "ci_high": hi, "covered": bool(lo <= truth <= hi),
             "sim_low": s_lo, "sim_high": s_hi, "sim_covered": bool(s_lo <= truth <= s_hi),
             "sim_method": result.sim_method}
        )  # fmt: skip
    rows += [
        {"kind": "not_identified", "estimator": m, "reason": why} for m, why in missing.items()
    ]
    optimum = sim.optimal_ratio_truth()
    sdid_cpu, sdid_fits = timer.of("sdid")
    demand: Row = {"kind": "demand", "optimum": optimum, "published": bool(sink.demand),
                   "look_cpu": timer.cpu["look"], "sdid_cpu": sdid_cpu, "sdid_fits": sdid_fits}  # fmt: skip
    demand |= one_curve_optimum(sim)
    if sink.demand:
        (doc,) = sink.demand
        demand |= {k: _num(doc[k]) for k in DEMAND}
        # a look that cannot place the interval publishes none (identified false, issue #54):
        # counted apart, not scored as a miss
        demand["identified"] = bool(doc.get("identified", True))
        lo, hi = demand["optimal_price_ratio_ci_low"], demand["optimal_price_ratio_ci_high"]
        if demand["identified"]:
            demand["optimum_covered"] = bool(lo <= optimum <= hi)
            demand["one_curve_covered"] = bool(lo <= demand["one_curve_optimum"] <= hi)
    else:
        demand["reason"] = next((line for line in said if "demand" in line), "")
    return [*rows, demand]


# --------------------------------------------------------------------------- the summary
def _arm_table(arms: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    keys = ["world", "markets", "check", "design", "metric", "estimator", "arm"]
    for key, g in arms.groupby(keys, sort=False):
        s = error_summary(g["effect"], g["se"], g["truth"], g["ci_low"], g["ci_high"])
        sim, sim_mcse = coverage(g["sim_covered"])
        out.append(
            dict(zip(keys, key, strict=True))
            | {k: s[k] for k in ("runs", "bias", "bias_mcse", "mean_se", "emp_sd", "se_ratio",
                                 "coverage", "coverage_mcse")}
            | {"truth": float(g["truth"].mean()), "sim_coverage": sim, "sim_coverage_mcse": sim_mcse,
               "sim_method": str(g["sim_method"].mode().iloc[0]),
               "se_method": str(g["se_method"].mode().iloc[0])}
        )  # fmt: skip
    # as published, each estimator's arms in ladder order
    first: dict[tuple[str, ...], int] = {}
    for r in out:
        first.setdefault(tuple(r[k] for k in keys[:-1]), len(first))
    return sorted(out, key=lambda r: (first[tuple(r[k] for k in keys[:-1])], ARMS.index(r["arm"])))


def _family_table(arms: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    keys = ["world", "markets", "check", "design", "metric", "estimator"]
    for key, g in arms.groupby(keys, sort=False):
        per_run = g.groupby("run")
        together = per_run["sim_covered"].all()
        own = per_run["covered"].all()
        complete = per_run["arm"].nunique() == len(ARMS)  # all three arms published
        fam, fam_mcse = coverage(together[complete])
        own_fam, own_mcse = coverage(own[complete])
        coverages = {arm: coverage(a["covered"])[0] for arm, a in g.groupby("arm") if arm in ARMS}
        out.append(
            dict(zip(keys, key, strict=True))
            | {"runs": int(complete.sum()), "family": fam, "family_mcse": fam_mcse,
               "own_family": own_fam, "own_family_mcse": own_mcse,
               "sim_method": str(g["sim_method"].mode().iloc[0]),
               "se_method": str(g["se_method"].mode().iloc[0]),
               "lowest": min(coverages.values()), "highest": max(coverages.values()),
               **{f"coverage_{arm}": c for arm, c in coverages.items()}}
        )  # fmt: skip
    return out


def _demand_table(demand: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    keys = ["world", "markets", "check", "design"]
    for key, g in demand.groupby(keys, sort=False):
        row: dict[str, Any] = dict(zip(keys, key, strict=True)) | {
            "runs": len(g),
            "published": int(g["published"].astype(bool).sum()),
            "optimum_mean": float(g["optimum"].mean()),
            "optimum_min": float(g["optimum"].min()), "optimum_max": float(g["optimum"].max()),
            "optimum_interior": float(((g["optimum"] > min(RATIOS.values()))
                                       & (g["optimum"] < max(RATIOS.values()))).mean()),
            "elasticity_products": float(g["elasticity_products"].mean()),
            "elasticity_revenue": float(g["elasticity_revenue"].mean()),
            "one_curve_optimum": float(g["one_curve_optimum"].mean()),
            # the worker's look, in CPU seconds: the whole look's, and its sdid fits'
            "look_cpu": float(g["look_cpu"].mean()), "sdid_cpu": float(g["sdid_cpu"].mean()),
            "sdid_fits": int(g["sdid_fits"].max()),
        }  # fmt: skip
        reasons = g["reason"].dropna() if "reason" in g else pd.Series(dtype=str)
        row["reason"] = str(reasons.iloc[0]) if len(reasons) else ""
        shown = g["identified"] if "identified" in g else pd.Series(True, index=g.index)
        fit = g[g["published"].astype(bool) & shown.fillna(False).astype(bool)]
        row["not_identified"] = int(g["published"].astype(bool).sum()) - len(fit)
        if len(fit):
            r, t = fit["optimal_price_ratio"], fit["optimum"]
            lo, hi = fit["optimal_price_ratio_ci_low"], fit["optimal_price_ratio_ci_high"]
            bias, bias_mcse = mean_mcse(r - t)
            cov, cov_mcse = coverage(fit["optimum_covered"].astype(bool))
            edge, edge_mcse = coverage(fit["at_range_edge"].astype(bool))
            top = max(RATIOS.values())
            e = fit["elasticity"]
            width = fit["elasticity_ci_high"] - fit["elasticity_ci_low"]
            row |= {
                "fitted": len(fit), "estimate_mean": float(r.mean()),
                "bias": bias, "bias_mcse": bias_mcse, "sd": float((r - t).std(ddof=1)),
                "rmse": float(np.sqrt(np.mean((r - t) ** 2))),
                "coverage": cov, "coverage_mcse": cov_mcse,
                "width": float((hi - lo).mean()),
                "whole_range": float(((lo <= min(RATIOS.values())) & (hi >= top)).mean()),
                "edge": edge, "edge_mcse": edge_mcse,
                "top": float((r >= top).mean()), "bottom": float((r <= min(RATIOS.values())).mean()),
                "p_edge": float(fit["p_edge"].mean()),
                "reaches_top": float((hi >= top).mean()),
                "boot_bias": float(fit["optimal_price_ratio_bias"].mean()),
                "elasticity_mean": float(e.mean()), "elasticity_sd": float(e.std(ddof=1)),
                "elasticity_se": float(fit["elasticity_se"].mean()),
                "elasticity_se_ratio": float(fit["elasticity_se"].mean() / e.std(ddof=1)),
                "elasticity_width": float(width.mean()),
                "revenue_elasticity": float(fit["revenue_elasticity"].mean()),
                "cost_elasticity": float(fit["cost_elasticity"].mean()),
                "curvature_rejected": float((fit["curvature_pvalue"] < 0.05).mean()),
            }  # fmt: skip
            # the diagnostic: the same estimates against the one-elasticity curve's optimum
            gap = fit["one_curve_optimum"] - t
            one_bias, one_mcse = mean_mcse(r - fit["one_curve_optimum"])
            one_cov, one_cov_mcse = coverage(fit["one_curve_covered"].astype(bool))
            row |= {
                "one_curve_bias": one_bias, "one_curve_bias_mcse": one_mcse,
                "one_curve_coverage": one_cov, "one_curve_coverage_mcse": one_cov_mcse,
                "gap_mean": float(gap.mean()), "gap_sd": float(gap.std(ddof=1)),
                # how much of the error's spread the gap explains (runs of one market: none)
                "error_gap_correlation": float(np.corrcoef(r - t, gap)[0, 1])
                if gap.std() > 0 else math.nan,
            }  # fmt: skip
        out.append(row)
    return out


def summarise(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    arms = rows[rows["kind"] == "arm"]
    demand = rows[rows["kind"] == "demand"]
    missing = rows[rows["kind"] == "not_identified"]
    not_identified = [
        {"design": d, "estimator": e, "reason": str(g["reason"].iloc[0])}
        for (d, e), g in missing.groupby(["design", "estimator"], sort=False)
    ]
    designs = dict.fromkeys(c["design"] for c in CASES)
    runs = len(demand) // len(CASES)
    return {
        "runs": runs,
        "products": int(run.options["products"]),
        "days": int(run.options["days"]),
        "jobs": run.jobs,
        "seconds": sum(run.seconds),
        "wall_seconds": run.wall_seconds,
        "seconds_per_run": sum(run.seconds) / max(1, len(demand)),
        "ratios": RATIOS,
        "allocation": 1 / len(RATIOS),
        "sdid_replications": SyntheticDID().replications,
        "worlds": WORLDS,
        "elasticity_mean": MarketConfig().elasticity_mean,
        "elasticity_sd": MarketConfig().elasticity_sd,
        "settings": {d: design_settings(d, int(run.options["days"])) for d in designs},
        "targets": TARGETS,
        "arms": _arm_table(arms),
        "families": _family_table(arms),
        "demand": _demand_table(demand),
        "not_identified": not_identified,
    }


# --------------------------------------------------------------------------- the page
def _verdict(x: float, runs: int, low: float, high: float = 1.0) -> dict[str, Any]:
    """Whether the coverage ``x`` over ``runs`` meets the target ``[low, high]``, and if not,
    how many Monte-Carlo SEs away, the SE a coverage at the nearest end of the target has."""
    edge = low if x < low else high
    mcse = (
        math.sqrt(edge * (1 - edge) / runs) if 0 < edge < 1 else math.sqrt(low * (1 - low) / runs)
    )
    away = max(low - x, x - high, 0.0) / mcse
    return {"met": low <= x <= high, "mcse_away": away if x < low or x > high else 0.0,
            "chance": away <= CHANCE_MCSE}  # fmt: skip


def _curve_optimum(row: Mapping[str, Any], results: Mapping[str, Any]) -> float:
    """A diagnostic: the profit curve's optimum at its mean elasticities, ``(e_C kappa / (1 +
    e_R))^(1 / (1 + e_R - e_C))`` with kappa the world's cost share, clamped to the ladder."""
    e_r, e_c = row["revenue_elasticity"], row["cost_elasticity"]
    low, high = min(results["ratios"].values()), max(results["ratios"].values())
    if not e_r < -1:
        return float(high)
    best = (e_c * results["worlds"][row["world"]] / (1 + e_r)) ** (1 / (1 + e_r - e_c))
    return float(np.clip(best, low, high))


def context(results: Results) -> dict[str, Any]:
    """The saved tables, split by case, and which targets each figure meets (and whether a
    miss is within :data:`CHANCE_MCSE` Monte-Carlo SEs of the target)."""
    assert isinstance(results, dict)
    t = results["targets"]
    band = t["coverage"]
    arms = [r | _verdict(r["coverage"], r["runs"], *band) for r in results["arms"]]
    families = [r | _verdict(r["family"], r["runs"], t["family"]) for r in results["families"]]
    demand = [
        r
        | (_verdict(r["coverage"], r["fitted"], *t["optimum"]) if "coverage" in r else {})
        | ({"curve_at_mean": _curve_optimum(r, results)} if "coverage" in r else {})
        for r in results["demand"]
    ]

    def main(r: Mapping[str, Any]) -> bool:
        return r["world"] == "cost-48" and r["markets"] == "one" and r["check"] == "none"

    inside = [r for r in arms if main(r)]
    missed = [r for r in inside if not r["met"]]
    # how many of the comparisons a coverage of exactly 95% would leave outside the band
    runs = results["runs"]
    mcse = math.sqrt(0.95 * 0.05 / runs)
    outside = 2 * stats.norm.sf(min(0.95 - band[0], band[1] - 0.95) / mcse)
    # time-bound's comparisons as planned and in its checks, by (metric, estimator, arm)
    checks: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for r in arms:
        if r["design"] == "time-bound" and r["world"] == "cost-48" and r["markets"] == "one":
            checks.setdefault((r["metric"], r["estimator"], r["arm"]), {})[r["check"]] = r

    def spread(estimator: str, check: str, key: str) -> list[float]:
        values = [v[check][key] for k, v in checks.items() if k[1] == estimator and check in v]
        return [min(values), max(values)] if values else [math.nan, math.nan]

    def family(metric: str, check: str) -> dict[str, Any] | None:
        return next((r for r in families if r["design"] == "time-bound" and r["check"] == check
                     and r["estimator"] == "sdid" and r["metric"] == metric), None)  # fmt: skip

    def look(check: str) -> dict[str, Any] | None:
        """A time-bound look's CPU seconds in ``check``, with its products and the estimators
        it fits per arm."""
        fitted = dict.fromkeys(r["estimator"] for r in results["arms"]
                               if r["design"] == "time-bound" and r["check"] == check)  # fmt: skip
        scale = CHECK_SCALE if check == "products-x4" else 1
        return next((r | {"products": results["products"] * scale, "estimators": list(fitted)}
                     for r in demand if r["design"] == "time-bound" and r["check"] == check), None)  # fmt: skip

    return {
        **results,
        # the ranges of time-bound's SE / SD and coverage by estimator and check
        "tb": {
            f"{e}_{check}_{key}".replace("-", "_"): spread(e, check, key)
            for e, check in (
                ("did", "none"),
                ("did", "products-x4"),
                ("sdid", "none"),
                ("sdid", "sdid-jackknife"),
                ("sdid", "products-x4"),
            )
            for key in ("se_ratio", "coverage")
        },
        # sdid's family-wise coverage per metric: as planned (the bootstrap), the jackknife on
        # the same runs, and the jackknife on four times the products
        "sdid_families": [
            {
                "metric": m,
                "planned": family(m, "none"),
                "jackknife": family(m, "sdid-jackknife"),
                "large": family(m, "products-x4"),
            }
            for m in METRICS
        ],
        # a time-bound look's CPU seconds, as planned and in the checks
        "looks": {check: look(check) for check in ("none", "sdid-jackknife", "products-x4")},
        "arms48": inside,
        "families48": [r for r in families if main(r)],
        # cost-70 shares cost-48's markets and draws: only profit differs
        "families_more": [
            r
            | {
                "products": results["products"]
                * (CHECK_SCALE if r["check"] == "products-x4" else 1)
            }
            for r in families
            if not main(r) and (r["world"] != "cost-70" or r["metric"] == "profit")
        ],
        "demand48": [r for r in demand if main(r) and "coverage" in r],
        "demand_markets": [r for r in demand if r["markets"] == "per-run" and "coverage" in r],
        "unpublished": [
            r
            | {
                "products": results["products"]
                * (CHECK_SCALE if r["check"] == "products-x4" else 1)
            }
            for r in demand
            if r["published"] < r["runs"] and r["check"] != "sdid-jackknife"
        ],
        "demand70": [r for r in demand if r["world"] == "cost-70" and "coverage" in r],
        "top70": all(
            r["optimum_min"] >= max(RATIOS.values()) for r in demand if r["world"] == "cost-70"
        ),
        "timebound": [
            {
                "metric": k[0],
                "estimator": k[1],
                "arm": k[2],
                "planned": v["none"],
                "jackknife": v.get("sdid-jackknife"),
                "large": v.get("products-x4"),
            }
            for k, v in checks.items()
            if "none" in v
        ],
        "large_products": results["products"] * CHECK_SCALE,
        "missed": missed,
        "missed_beyond": [r for r in missed if not r["chance"]],
        "comparisons": len(inside),
        "expected_outside": len(inside) * outside,
        # as planned, and in the checks of the jackknife the design no longer plans
        "families_missed": [r for r in families if not r["met"] and r["check"] == "none"],
        "checks_missed": [r for r in families if not r["met"] and r["check"] != "none"],
        "chance_mcse": CHANCE_MCSE,
        "minutes": results["seconds"] / 60,
        "wall_minutes": results["wall_seconds"] / 60,
        "share48": 100 * results["worlds"]["cost-48"],
        "share70": 100 * results["worlds"]["cost-70"],
        "coverage_low": 100 * t["coverage"][0],
        "coverage_high": 100 * t["coverage"][1],
        "family_target": 100 * t["family"],
        "mcse_nominal": mcse,
        # the profit change at the recommended price (lab.studies.ladder_profit), as it last ran
        "profit_section": profit_section(),
    }


def profit_section() -> str:
    """The profit-change study's rendered section, or its empty markers while it has saved
    nothing."""
    from lab.studies import ladder_profit
    from lab.studies.harness import fragment
    from lab.studies.render import markers

    return fragment(ladder_profit.STUDY) or "\n".join(markers("ladder-profit"))


STUDY = Study(
    name="ladder",
    cases=CASES,
    run_one=run_one,
    summarise=summarise,
    results="ladder-validation.json",
    runs=400,
    options={"products": 100, "days": 40},
    page=Page("docs/ladder-validation.md", "ladder.md.j2"),
    context=context,
    chunk=10,
)
