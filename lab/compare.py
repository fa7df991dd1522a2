"""Design comparison: many simulated experiments of each design on the same market.

For each run ``r`` the market keeps its products, parameters and substitutes graph (``seed``)
and draws a fresh demand path (``demand_seed``), and every design draws a fresh assignment
(spec seed); all designs of run ``r`` see the same demand path (common random numbers, so the
differences between designs are not Monte-Carlo noise of different paths).

Everything comes from the live code: each design builds its experiment with its own
``example_spec``, the assignment is the controller's (:func:`lab.simulate.run_spec`, with
triggered designs firing on the run's competitor undercuts), and each design is analysed with
its own default estimators (``Design.estimators``) through :func:`analysis.worker.fit_plan`,
the function the live analysis worker publishes with. Outcomes come from
:class:`lab.market.Market`.

Estimand of a run: the mean of the market's ``true_effect`` (the global effect of switching
the price policy, see docs/simulator.md) over the cells the design analyses (randomised, not
blacked out). Reported per design and estimator:

- ``bias``: mean of estimate - truth (with its Monte-Carlo SE ``bias_mcse``);
- ``mean_se`` (mean reported SE) and ``emp_sd`` (SD of estimate - truth across runs);
- ``rmse``; ``coverage`` of the 95% interval; ``power``: share of runs rejecting a zero effect
  at 5% (the type-I error in an A/A market whose effect is zero);
- ``se_reduction``: 1 - emp_sd / emp_sd of the time-bound design's primary estimator (and the
  same with mean reported SEs), the quantity behind the origin article's "random days cut the
  standard error by 60%" (Cooprider & Nassiri, Business Economics 2023).

More estimators can be asked for by name (``--estimators``): ``did:jackknife`` sets a variance
method after a colon, and ``name@class`` fits on the class x day panel of mean units per
product (each class one unit; it estimates the class-averaged effect).

A price ladder (``CompareConfig.ladder``: the listed price ratios of the arms beside the list
price, the control) runs every design's example experiment with those arms, an equal share each,
on a market with no effect modifiers (:func:`lab.price.ladder_market`), each cell sold at its
arm's price (:func:`lab.simulate.run_spec`). Each estimator the worker fits per arm
(``analysis.arms.PAIR_METHODS``) is fitted as the worker fits it: each arm against the control
on the pair's cells, the k - 1 fits with their simultaneous intervals
(:func:`analysis.arms.compare_pairs`); the others are left out, as the worker publishes them
as not identified. A row per design, estimator and arm is scored against the simulator's truth
for that arm (``SimulatedExperiment.metric_truth(metric, arm=ARM)``): bias, SEs, coverage of its
own interval, ``sim_coverage`` of its simultaneous one, ``family``: the share of runs whose
simultaneous intervals cover every arm's truth at once, and ``power``: the share whose
simultaneous interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from analysis.arms import (
    PAIR_METHODS,
    compare_pairs,
    dm_correlation,
    joint_plan,
    pair_frame,
    read_arms,
)
from analysis.clustering import cluster_graph
from analysis.errors import NotEstimable
from analysis.panel import Panel
from analysis.results import EstimateResult
from analysis.worker import (
    _pair_cells,  # the worker's own cell table of a pair (analysis/worker.py)
    fit_metric,
    fit_plan,
    metric_panels,
    panel_from_cells,
)
from controller import design_registry
from controller.designs import design_matrices, get_design
from controller.spec import ExperimentSpec
from core.ports import EstimatorPlan
from lab.config import MarketConfig
from lab.errors import LabError
from lab.failed_fits import check_failed_fits
from lab.market import Market
from lab.price import ladder_market
from lab.seeds import run_seed
from lab.simulate import market_facts, run_spec

#: Product characteristics passed to estimators that match on them.
COVARIATES: tuple[str, ...] = ("width", "battery", "rating", "weight")
NEEDS_COVARIATES: frozenset[str] = frozenset({"hpte"})
#: A market with no treatment effect at all (A/A): zero price change, no extra lift.
AA_OVERRIDES: dict[str, Any] = {"price_change": 0.0, "effect_modifiers": {}}
#: The design whose primary estimator is the baseline of ``se_reduction``.
BASELINE_DESIGN = "time-bound"


def design_names() -> tuple[str, ...]:
    """Every registered design (the six built in, and any registered since)."""
    return tuple(design_registry.names())


@dataclass(frozen=True)
class EstimatorChoice:
    """An estimator to fit in a comparison: a plan, and the level of the panel it is fitted to
    ("" for products, "class" for the class x day panel)."""

    plan: EstimatorPlan
    level: str = ""

    @property
    def label(self) -> str:
        return self.plan.label


def parse_estimator(text: str) -> EstimatorChoice:
    """``name[:variance][@class]``, e.g. ``did:jackknife`` or ``dm@class``."""
    spec_part, _, level = text.partition("@")
    name, _, se = spec_part.partition(":")
    if level not in ("", "class"):
        raise LabError(f"unknown level {level!r} in {text!r}; only '@class' is supported")
    if not name:
        raise LabError(f"{text!r} names no estimator")
    params = {"se": se} if se else {}
    return EstimatorChoice(EstimatorPlan(name, params, label=text), level)


@dataclass(frozen=True)
class CompareConfig:
    """What to compare. ``estimators`` maps a design to the estimators it runs instead of its
    own default estimators (names, or choices with their own parameters); ``extra_estimators``
    to names run after its defaults."""

    market: MarketConfig = field(default_factory=MarketConfig)
    designs: tuple[str, ...] = field(default_factory=design_names)
    runs: int = 100
    seed: int = 0
    #: the first run's index: runs ``first_run .. first_run + runs - 1``, each on the same demand
    #: path and design draw whatever the range (a study can continue another's runs)
    first_run: int = 0
    days: int = 28
    #: every experiment's period (whole hours, PT1H to P1D): days x (a day / period) periods
    period: timedelta = timedelta(days=1)
    allocation: float = 0.5
    estimators: Mapping[str, tuple[str | EstimatorChoice, ...]] | None = None
    extra_estimators: Mapping[str, tuple[str, ...]] | None = None
    cluster_max_size: int = 12
    jobs: int = 1
    #: what is compared (analysis.metrics.METRICS); profit needs the specs' unit costs, which
    #: make_spec gives from the market
    metrics: tuple[str, ...] = ("units",)
    #: a price ladder: the listed price ratios of the arms beside the control's list price
    #: (1.0), each arm an equal share (None: one treatment at the market's price change)
    ladder: tuple[float, ...] | None = None

    def estimators_for(self, design: str, spec: ExperimentSpec) -> list[EstimatorChoice]:
        names = (self.estimators or {}).get(design)
        if names:
            return [n if isinstance(n, EstimatorChoice) else parse_estimator(n) for n in names]
        own = [EstimatorChoice(p) for p in get_design(design).estimators(spec)]
        labels = {c.label for c in own}
        extra = [parse_estimator(n) for n in (self.extra_estimators or {}).get(design, ())]
        return own + [c for c in extra if c.label not in labels]


def primary_label(design: str, spec: ExperimentSpec) -> str:
    """The label of a design's primary estimator: its first default one (of more than two
    arms, its first that the worker fits per arm, on which the k-arm verdict decides)."""
    plans = get_design(design).estimators(spec)
    if spec.n_arms > 2:
        plans = tuple(p for p in plans if p.name in PAIR_METHODS) or plans
    return plans[0].label


#: the control arm of a ladder (compare-designs' --ladder): the list price
LIST = "list"


def ladder_arms(ratios: Sequence[float]) -> list[dict[str, Any]]:
    """The ``arms:`` of a price ladder: ``list`` at 1.0 (the control) and one arm per listed
    ratio, named by its percentage of list (0.9: ``p90``), an equal share each."""
    share = 1.0 / (len(ratios) + 1)
    arms = [{"name": LIST, "policy": "list-price", "price_ratio": 1.0, "control": True}]
    arms += [{"name": f"p{r * 100:g}", "policy": f"price-{r:g}", "price_ratio": r} for r in ratios]
    return [a | {"allocation": share} for a in arms]


def check_ladder(ratios: Sequence[float]) -> None:
    """LabError naming the first thing wrong with a ladder's ratios."""
    k = len(ratios) + 1
    if not 3 <= k <= 8:
        raise LabError(
            f"a ladder needs 2 to 7 price ratios beside the list price (3 to 8 arms), not "
            f"{len(ratios)}"
        )
    bad = [r for r in ratios if not (math.isfinite(r) and 0 < r <= 2) or r == 1]
    if bad:
        raise LabError(
            f"each ladder price ratio must be above 0, at most 2 and not 1 (the list price is "
            f"the control), not {bad[0]:g}"
        )
    if len(set(ratios)) < len(ratios):
        raise LabError(f"the ladder's price ratios must differ; {sorted(ratios)} repeats one")


# --------------------------------------------------------------------------- designs
def market_classes(market: Market, max_size: int = 12) -> dict[str, tuple[str, ...]]:
    """Product classes for the cluster design: Louvain communities of the substitutes graph,
    split to at most ``max_size`` products (analysis.clustering)."""
    clustering = cluster_graph(market.substitutes, max_size=max_size, seed=market.seed)
    return {f"c{cid:03d}": tuple(members) for cid, members in clustering.clusters.items()}


def make_spec(
    design: str,
    market: Market,
    *,
    days: int = 28,
    seed: int = 0,
    allocation: float = 0.5,
    classes: Mapping[str, tuple[str, ...]] | None = None,
    period: timedelta = timedelta(days=1),
    ladder: Sequence[float] | None = None,
) -> ExperimentSpec:
    """The experiment the comparison runs for ``design`` on ``market``: the design's own
    ``example_spec`` on the market's products, ``days`` from the market's start date in
    periods of ``period`` (the example is scaled to its number of periods); with ``ladder``,
    its arms are that price ladder's (:func:`ladder_arms`) in place of treatment and control."""
    if period > timedelta(days=1) or period < timedelta(hours=1) or period % timedelta(hours=1):
        raise LabError(f"the period must be whole hours from PT1H to P1D, not {period}")
    zone = ZoneInfo(market.cfg.timezone)
    start = datetime.combine(market.cfg.start_date, time(0)).replace(tzinfo=zone)
    base: dict[str, Any] = {
        "id": f"compare-{design}",
        "design": design,
        "treatment_policy": "treatment",
        "control_policy": "control",
        "start": start,
        "end": start + timedelta(days=days),
        "timezone": market.cfg.timezone,
        "allocation": allocation,
        "seed": seed,
        "unit_costs": dict(zip(market.product_ids, market.unit_cost.tolist(), strict=True)),
        "period": period,
    }
    if ladder is not None:
        for key in ("treatment_policy", "control_policy", "allocation"):
            del base[key]
        base["arms"] = ladder_arms(ladder)
    periods = days * (timedelta(days=1) // period)
    try:
        design_obj = get_design(design)
    except KeyError as exc:
        raise LabError(str(exc.args[0])) from None
    try:
        return design_obj.example_spec(base, market_facts(market, periods, classes))
    except ValueError as exc:  # a spec the design built breaks a rule (e.g. too few days)
        first = str(exc).strip().splitlines()[0]
        raise LabError(f"design {design!r} cannot run on this market: {first}") from None


# --------------------------------------------------------------------------- estimation
def class_panel(df: pd.DataFrame, outcome: str = "units") -> pd.DataFrame:
    """Class x period panel: mean outcome per product of each class (arms are shared in a
    class)."""
    g = df.groupby(["class", "period"], sort=True)
    out = g.agg(
        y=(outcome, "mean"),
        treated=("treated", "max"),
        blackout=("blackout", "max"),
        probability=("probability", "first"),
    ).reset_index()
    return out.rename(columns={"class": "unit", "y": outcome})


def fit_choice(
    choice: EstimatorChoice, df: pd.DataFrame, *, seed: int = 0, outcome: str = "units"
) -> dict[str, Any]:
    """Fit one estimator to a simulated panel (lab.simulate's columns); the design's own
    estimators go through exactly the worker's panel and fit."""
    data = df
    if outcome == "price":  # a ratio metric: the worker's own fit (analysis.metrics)
        if choice.level == "class":
            raise LabError("the price paid is not estimated on the class x day panel")
        panels = metric_panels(df)
        return _row_of(fit_metric(choice.plan, panels, "price"))
    if choice.level == "class":
        if "class" not in df.columns:
            raise LabError(f"{choice.label} needs product classes; this design has none")
        data = class_panel(df, outcome)
    unit = "unit" if choice.level == "class" else "product"  # a class panel's unit: the class
    if choice.plan.name in NEEDS_COVARIATES:
        panel = Panel.from_long(
            data,
            unit=unit,
            time="period",
            outcome=outcome,
            treated="treated",
            blackout="blackout",
            probability="probability",
            covariates=[c for c in COVARIATES if c in data.columns],
        )
    else:
        panel = panel_from_cells(data, outcome, unit=unit)
    return _row_of(fit_plan(choice.plan, panel, seed))


def _row_of(res: EstimateResult) -> dict[str, Any]:
    lo, hi = res.conf_int(0.05)
    return {
        "effect": res.effect,
        "se": res.se,
        "df": math.nan if res.df is None else res.df,
        "ci_low": lo,
        "ci_high": hi,
        "pvalue": res.pvalue(),
        "se_method": res.se_method,
    }


def simulate_run(
    cfg: CompareConfig, run: int, classes: Mapping[str, tuple[str, ...]] | None = None
) -> list[dict[str, Any]]:
    """One run: every design on one fresh demand path; one row per design and estimator."""
    market = Market(cfg.market, seed=cfg.seed, demand_seed=run_seed(cfg.seed, run))
    if classes is None:
        classes = market_classes(market, cfg.cluster_max_size)
    rows: list[dict[str, Any]] = []
    for design in cfg.designs:
        spec = make_spec(
            design,
            market,
            days=cfg.days,
            period=cfg.period,
            seed=run_seed(cfg.seed + 1, run),
            allocation=cfg.allocation,
            classes=classes,
            ladder=cfg.ladder,
        )
        sim = run_spec(spec, market)
        if cfg.ladder is not None:
            rows += arm_rows(cfg, design, spec, sim, run)
            continue
        analysed = sim.matrices.analysed
        for metric, (order, choice) in (
            (m, c) for m in cfg.metrics for c in enumerate(cfg.estimators_for(design, spec))
        ):
            row: dict[str, Any] = {
                "design": design,
                "metric": metric,
                "estimator": choice.label,
                "order": order,
                "run": run,
                "truth": sim.metric_truth(metric),
                "truth_direct": sim.truth_direct if metric == "units" else math.nan,
                "analysed_cells": int(analysed.sum()),
                "treated_share": float(sim.matrices.treated[analysed].mean())
                if analysed.any()
                else math.nan,
                "primary": choice.label == primary_label(design, spec),
            }
            try:
                row |= fit_choice(choice, sim.panel, seed=run, outcome=metric)
                row["error"] = ""
            except NotEstimable:  # the worker does not publish this pair either
                continue
            except Exception as exc:  # noqa: BLE001 - a failing estimator is reported, not fatal
                row |= {"effect": math.nan, "se": math.nan, "df": math.nan, "ci_low": math.nan}
                row |= {"ci_high": math.nan, "pvalue": math.nan, "se_method": ""}
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
    return rows


def arm_rows(
    cfg: CompareConfig, design: str, spec: ExperimentSpec, sim: Any, run: int
) -> list[dict[str, Any]]:
    """One run of a price ladder on one design: for each metric and each estimator the worker
    fits per arm, a row per arm against the control, fitted as the worker fits it (each pair's
    cell table, :func:`analysis.worker.fit_metric`, the k - 1 fits' simultaneous intervals by
    :func:`analysis.arms.compare_pairs`), with the simulator's truth for that arm."""
    df = sim.panel
    arms = read_arms(df, "arm", spec.control_arm.name, "product")
    place = {a.name: i for i, a in enumerate(spec.arm_list())}  # rows in the spec's arm order
    frames = {name: pair_frame(df, arms, name, "blackout")[0] for name in arms.others}
    pairs = {name: metric_panels(_pair_cells(f, arms)) for name, f in frames.items()}
    analysed = sim.matrices.analysed
    primary = primary_label(design, spec)
    rows: list[dict[str, Any]] = []
    for metric in cfg.metrics:
        for order, choice in enumerate(cfg.estimators_for(design, spec)):
            plan = choice.plan
            if plan.name not in PAIR_METHODS or choice.level:
                continue  # the worker publishes it as not identified per arm

            def fit(name: str, plan: EstimatorPlan = plan, metric: str = metric) -> Any:
                return fit_metric(plan, pairs[name], metric, run)

            def corr(plan: EstimatorPlan = plan, metric: str = metric) -> np.ndarray | None:
                if not joint_plan(plan) or metric not in df.columns:
                    return None
                return dm_correlation(df, arms, metric, "blackout", "probability", frames)

            base: dict[str, Any] = {
                "design": design, "metric": metric, "estimator": choice.label, "order": order,
                "run": run, "truth_direct": math.nan, "analysed_cells": int(analysed.sum()),
                "primary": choice.label == primary,
            }  # fmt: skip
            try:
                compared = compare_pairs(arms, fit, 0.05, corr)
            except Exception as exc:  # noqa: BLE001 - a failing estimator is reported, not fatal
                error = f"{type(exc).__name__}: {exc}"[:300]
                for name in sorted(arms.others, key=place.__getitem__):
                    rows.append(
                        base | _failed(error) | {"arm": name, "truth": _truth(sim, metric, name)}
                    )
                continue
            fits = zip(arms.others, compared.results, compared.simultaneous.intervals, strict=True)
            for name, result, (lo, hi) in sorted(fits, key=lambda f: place[f[0]]):
                arm_cells = analysed & (sim.matrices.arm == place[name])
                rows.append(
                    base
                    | {"arm": name, "truth": _truth(sim, metric, name)}
                    | {"treated_share": float(arm_cells.sum() / analysed.sum())}
                    | _row_of(result)
                    | {"sim_low": lo, "sim_high": hi, "sim_method": compared.simultaneous.method}
                    | {"error": ""}
                )
    return rows


def _truth(sim: Any, metric: str, arm: str) -> float:
    return float(sim.metric_truth(metric, arm=arm))


def _failed(error: str) -> dict[str, Any]:
    """The figures of a fit that failed."""
    nan = math.nan
    return {
        "effect": nan, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "pvalue": nan,
        "se_method": "", "sim_low": nan, "sim_high": nan, "sim_method": "", "error": error,
    }  # fmt: skip


def _run_chunk(
    args: tuple[CompareConfig, list[int], dict[str, tuple[str, ...]] | None],
) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    cfg, runs, classes = args
    with threadpool_limits(1):
        return [row for r in runs for row in simulate_run(cfg, r, classes)]


def check_config(cfg: CompareConfig) -> None:
    """LabError naming the first thing a comparison cannot run with."""
    known = design_names()
    bad = [d for d in cfg.designs if d not in known]
    if bad:
        raise LabError(f"unknown design(s) {bad}; choose from {', '.join(known)}")
    if not cfg.designs:
        raise LabError("no design to compare")
    if cfg.runs < 2:
        raise LabError("runs must be at least 2 (an SD needs two runs)")
    if cfg.first_run < 0:
        raise LabError("first_run must be 0 or more")
    if cfg.days < 4:
        raise LabError("days must be at least 4")
    if cfg.jobs < 1:
        raise LabError("jobs must be at least 1")
    if not 0.0 < cfg.allocation < 1.0:
        raise LabError("allocation must be strictly between 0 and 1")
    if cfg.ladder is not None:
        check_ladder(cfg.ladder)
        for design in cfg.designs:
            named = (cfg.estimators or {}).get(design, ())
            for name in (*named, *(cfg.extra_estimators or {}).get(design, ())):
                choice = name if isinstance(name, EstimatorChoice) else parse_estimator(name)
                if choice.level:
                    raise LabError(
                        f"{choice.label}: a ladder is compared per arm on the products' cells, "
                        "not on the class x day panel"
                    )


def play_runs(
    cfg: CompareConfig,
    chunk: Callable[[tuple[CompareConfig, list[int], dict[str, tuple[str, ...]]]], list[Any]],
) -> list[Any]:
    """The rows of every run of ``cfg``, ``chunk`` playing a share of the runs in each of
    ``cfg.jobs`` processes (a module-level function: it is pickled). The products and graph
    do not depend on the demand path: one clustering serves every run."""
    classes = market_classes(Market(cfg.market, seed=cfg.seed), cfg.cluster_max_size)
    runs = list(range(cfg.first_run, cfg.first_run + cfg.runs))
    if cfg.jobs <= 1:
        return chunk((cfg, runs, classes))
    chunks = [runs[j :: cfg.jobs] for j in range(cfg.jobs)]
    with ProcessPoolExecutor(cfg.jobs) as pool:
        return [r for part in pool.map(chunk, [(cfg, c, classes) for c in chunks]) for r in part]


def run_comparison(cfg: CompareConfig) -> pd.DataFrame:
    """Every run of every design and estimator, one row each (see :func:`simulate_run`); of a
    ladder, one per design, estimator and arm, on a market with no effect modifiers."""
    check_config(cfg)
    if cfg.ladder is not None:
        cfg = replace(cfg, market=ladder_market(cfg.market, "a price ladder"))
    rows = play_runs(cfg, _run_chunk)
    return (
        pd.DataFrame(rows)
        .sort_values(["design", "order", "run"], kind="stable")
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------- summary
def summarise(
    runs: pd.DataFrame, alpha: float = 0.05, *, check_failures: bool = True
) -> pd.DataFrame:
    """Bias, SEs, RMSE, coverage and power per design and estimator, plus SE reductions;
    per metric when the runs measured several (each against its own baseline).
    TooManyFailedFits when more than :data:`lab.failed_fits.MAX_FAILED_SHARE` of a design's
    and estimator's runs failed (unless ``check_failures`` is off: the figures of the runs
    that fitted, e.g. to inspect them)."""
    if "metric" in runs.columns and runs["metric"].nunique() > 1:
        parts = [
            _summarise_one(g.drop(columns="metric"), alpha, check_failures, str(m)).assign(metric=m)
            for m, g in runs.groupby("metric", sort=False)
        ]
        table = pd.concat(parts, ignore_index=True)
        return table[["metric", *[c for c in table.columns if c != "metric"]]]
    return _summarise_one(runs, alpha, check_failures)


def _summarise_one(
    runs: pd.DataFrame, alpha: float, check_failures: bool = True, metric: str = ""
) -> pd.DataFrame:
    out = []
    per_arm = "arm" in runs.columns
    keys = ["design", "estimator", *(["arm"] if per_arm else [])]
    for key, g in runs.groupby(keys, sort=False):
        design, est = key[0], key[1]
        ok = g[np.isfinite(g["effect"])]
        err = ok["effect"] - ok["truth"]
        n = len(ok)
        finite_ci = ok[np.isfinite(ok["ci_low"]) & np.isfinite(ok["ci_high"])]
        covered = (finite_ci["ci_low"] <= finite_ci["truth"]) & (
            finite_ci["truth"] <= finite_ci["ci_high"]
        )
        errors = g.loc[g["error"] != "", "error"]
        if check_failures:
            check_failed_fits(
                f"design {design!r} with estimator {est}"
                + (f" for arm {key[2]}" if per_arm else "")
                + (f" on {metric}" if metric else ""),
                len(g) - n,
                len(g),
                str(errors.iloc[0]) if len(errors) else "a non-finite estimate",
            )
        row: dict[str, Any] = {"design": design, "estimator": est}
        if per_arm:
            row |= {"arm": key[2]} | _simultaneous(runs, g, ok, alpha)
        out.append(
            row
            | {
                "runs": len(g),
                "failed": len(g) - n,
                "truth": float(ok["truth"].mean()) if n else math.nan,
                "bias": float(err.mean()) if n else math.nan,
                "bias_mcse": float(err.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                "bias_vs_direct": float((ok["effect"] - ok["truth_direct"]).mean())
                if n
                else math.nan,
                "mean_se": float(ok["se"].mean()) if n else math.nan,
                "emp_sd": float(err.std(ddof=1)) if n > 1 else math.nan,
                "rmse": float(np.sqrt((err**2).mean())) if n else math.nan,
                "coverage": float(covered.mean()) if len(finite_ci) else math.nan,
                "power": float((ok["pvalue"] < alpha).mean()) if n else math.nan,
                "first_error": str(errors.iloc[0]) if len(errors) else "",
                "primary": bool(g["primary"].any()) if "primary" in g else False,
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["se_ratio"] = table["mean_se"] / table["emp_sd"]
    table["se_reduction"] = math.nan
    table["reported_se_reduction"] = math.nan
    # against the baseline design's primary estimator (of a ladder: of the same arm)
    for _, part in table.groupby("arm", sort=False) if per_arm else [("", table)]:
        base = part[(part["design"] == BASELINE_DESIGN) & part["primary"]]
        if len(base):
            b_sd, b_se = float(base["emp_sd"].iloc[0]), float(base["mean_se"].iloc[0])
            table.loc[part.index, "se_reduction"] = 1.0 - part["emp_sd"] / b_sd
            table.loc[part.index, "reported_se_reduction"] = 1.0 - part["mean_se"] / b_se
    return table


def _simultaneous(
    runs: pd.DataFrame, g: pd.DataFrame, ok: pd.DataFrame, alpha: float
) -> dict[str, Any]:
    """A ladder's comparison of one arm (``g``, its fitted runs ``ok``): the coverage of its
    simultaneous interval, the share of runs in which it excludes 0 (its ``power``), and, shared
    by the estimator's arms, ``family``: the share of runs, every arm fitted, whose simultaneous
    intervals cover every arm's truth at once."""
    covered = (ok["sim_low"] <= ok["truth"]) & (ok["truth"] <= ok["sim_high"])
    excludes = (ok["sim_low"] > 0) | (ok["sim_high"] < 0)
    same = runs[
        (runs["design"] == g["design"].iloc[0]) & (runs["estimator"] == g["estimator"].iloc[0])
    ]
    per_run = same.assign(
        fitted=np.isfinite(same["effect"]),
        covers=(same["sim_low"] <= same["truth"]) & (same["truth"] <= same["sim_high"]),
    ).groupby("run")
    whole = per_run["fitted"].all()
    family = per_run["covers"].all()[whole]
    methods = ok["sim_method"].replace("", np.nan).dropna()
    return {
        "sim_coverage": float(covered.mean()) if len(ok) else math.nan,
        "family": float(family.mean()) if len(family) else math.nan,
        "sim_power": float(excludes.mean()) if len(ok) else math.nan,
        "sim_method": str(methods.mode().iloc[0]) if len(methods) else "",
    }


def format_table(table: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (stdout)."""
    per_arm = "arm" in table.columns
    cols = [
        *([("metric", "{}", 8)] if "metric" in table.columns else []),
        ("design", "{}", 18),
        ("estimator", "{}", 14),
        *([("arm", "{}", 6)] if per_arm else []),
        ("runs", "{:d}", 5),
        ("failed", "{:d}", 6),
        ("truth", "{:.3f}", 7),
        ("bias", "{:+.3f}", 7),
        ("mean_se", "{:.3f}", 7),
        ("emp_sd", "{:.3f}", 7),
        ("rmse", "{:.3f}", 7),
        ("coverage", "{:.3f}", 8),
        *([("sim_coverage", "{:.3f}", 12), ("family", "{:.3f}", 6)] if per_arm else []),
        ("power", "{:.3f}", 6),
        *([("sim_power", "{:.3f}", 9), ("sim_method", "{}", 12)] if per_arm else []),
        ("se_reduction", "{:+.0%}", 12),
    ]
    lines = [" ".join(f"{c:>{w}}" for c, _, w in cols)]
    for _, r in table.iterrows():
        cells = []
        for c, f, w in cols:
            v = r[c]
            if isinstance(v, float) and not math.isfinite(v):
                s = "-"
            else:
                s = f.format(int(v) if f == "{:d}" else v)
            cells.append(f"{s:>{w}}")
        lines.append(" ".join(cells) + ("  *" if r.get("primary") else ""))
    lines.append(
        "* the design's primary estimator (what the live worker publishes first); "
        f"se_reduction = 1 - emp_sd / emp_sd of the {BASELINE_DESIGN} primary estimator"
    )
    if per_arm:
        lines.append(LADDER_LEGEND)
    failed = table[table["failed"] > 0]
    for _, r in failed.iterrows():
        arm = f"/{r['arm']}" if per_arm else ""
        lines.append(
            f"! {r['design']}/{r['estimator']}{arm}: {r['failed']} failed, e.g. {r['first_error']}"
        )
    return "\n".join(lines)


#: the legend's line of a ladder's table
LADDER_LEGEND = (
    "arm: that arm against the list price, each run's truth the simulator's for that arm (the "
    "primary estimator: the design's first that the worker fits per arm); coverage: of its own "
    "95% interval; sim_coverage: of its simultaneous interval (sim_method, as the worker "
    "publishes it); family: runs whose simultaneous intervals cover every arm's truth at once; "
    "power: its own 5% test rejects 0; sim_power: its simultaneous interval excludes 0"
)


def ladder_notes(cfg: CompareConfig) -> list[str]:
    """For a ladder, each design's estimators that are not compared (the worker does not fit
    them per arm), one line a design."""
    if cfg.ladder is None:
        return []
    market = Market(ladder_market(cfg.market, "a price ladder"), seed=cfg.seed)
    notes = []
    for design in cfg.designs:
        spec = make_spec(design, market, days=cfg.days, period=cfg.period, ladder=cfg.ladder)
        left = [
            c.label for c in cfg.estimators_for(design, spec) if c.plan.name not in PAIR_METHODS
        ]
        if left:
            them = "it" if len(left) == 1 else "them"
            notes.append(
                f"{design}: {', '.join(left)} not compared per arm: the analysis worker does not "
                f"fit {them} per arm yet (it publishes {them} as not identified)"
            )
    return notes


# --------------------------------------------------------------------------- plots
def plot_comparison(
    runs: pd.DataFrame, table: pd.DataFrame, out_dir: Path, prefix: str = ""
) -> list[Path]:
    """Error distributions, SEs and coverage/power per design and estimator (PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    arms = table["arm"] if "arm" in table.columns else pd.Series("", index=table.index)
    labels = [
        f"{d}\n{e}" + (f" {a}" if a else "")
        for d, e, a in zip(table["design"], table["estimator"], arms, strict=True)
    ]
    x = np.arange(len(table))

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 4.2))
    data = []
    for d, e, a in zip(table["design"], table["estimator"], arms, strict=True):
        g = runs[(runs["design"] == d) & (runs["estimator"] == e)]
        if a:
            g = g[g["arm"] == a]
        err = (g["effect"] - g["truth"]).to_numpy()
        data.append(err[np.isfinite(err)])
    ax.boxplot(data, positions=x, widths=0.6, showfliers=False)
    for i, e in enumerate(data):
        jitter = np.random.default_rng(i).uniform(-0.2, 0.2, len(e))
        ax.plot(x[i] + jitter, e, ".", alpha=0.25, ms=3, color="tab:blue")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("estimate - true effect (units/product-day)")
    ax.set_title("Estimation error by design and estimator")
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}errors.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 4.0))
    ax.bar(x - 0.2, table["emp_sd"], 0.4, label="empirical SD of the estimate")
    ax.bar(x + 0.2, table["mean_se"], 0.4, label="mean reported SE")
    for i, r in enumerate(table.itertuples()):
        if math.isfinite(r.se_reduction) and r.design != BASELINE_DESIGN:
            ax.annotate(
                f"{r.se_reduction:+.0%}", (i - 0.2, r.emp_sd), ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("units/product-day")
    ax.set_title(f"Standard errors (labels: SD change vs the {BASELINE_DESIGN} primary estimator)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}standard_errors.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 3.8))
    ax.bar(x - 0.2, table["coverage"], 0.4, label="95% interval coverage")
    ax.bar(x + 0.2, table["power"], 0.4, label="rejection rate at 5%")
    ax.axhline(0.95, color="tab:blue", ls="--", lw=0.8)
    ax.axhline(0.05, color="tab:orange", ls="--", lw=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("Coverage and rejection rate (power, or type-I error in an A/A market)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}coverage_power.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_outputs(
    runs: pd.DataFrame, table: pd.DataFrame, out_dir: Path, prefix: str = ""
) -> list[Path]:
    """runs.csv, summary.csv and the PNG plots under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{prefix}runs.csv", out_dir / f"{prefix}summary.csv"]
    runs.to_csv(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    if "metric" in table.columns:  # the plots draw one metric each
        figures = []
        for m in dict.fromkeys(table["metric"]):
            figures += plot_comparison(
                runs[runs["metric"] == m].drop(columns="metric"),
                table[table["metric"] == m].drop(columns="metric"),
                out_dir,
                f"{prefix}{m}-",
            )
        return paths + figures
    return paths + plot_comparison(runs, table, out_dir, prefix)


def parse_estimators(
    items: Iterable[str], designs_: Sequence[str]
) -> dict[str, tuple[str, ...]] | None:
    """``--estimators`` values: ``design=a,b`` for one design, or ``a,b`` for every design."""
    table: dict[str, list[str]] = {}
    for item in items:
        design, sep, names = item.partition("=")
        if not sep:
            names, targets = design, list(designs_)
        else:
            targets = [design]
        for t in targets:
            table.setdefault(t, []).extend(n for n in names.split(",") if n)
    return {k: tuple(v) for k, v in table.items()} or None


@dataclass(frozen=True)
class ElasticityExperiment:
    """A random-days experiment on the market, as the elasticity is estimated and validated:
    its units, revenue and price panels, and the simulator's true elasticity."""

    market: Market
    units: Panel
    revenue: Panel
    price: Panel

    def truth(self) -> float:
        """Per product its true log lift in expected units over the log change in the price
        it charged, pooled with the within-product estimator's weights (analysis.elasticity)."""
        u = self.units
        assert u.probability is not None  # the simulator's panels carry them
        use = u.usable & (u.probability > 0) & (u.probability < 1)
        t, c = use & u.W, use & ~u.W
        nt, nc = t.sum(axis=1), c.sum(axis=1)
        ok = np.flatnonzero((nt > 0) & (nc > 0))
        index = {p: i for i, p in enumerate(self.market.product_ids)}
        lift = np.array([self.market.treatment_log_lift[index[u.units[i]]] for i in ok])
        dp = np.log([self.price.Y[i][t[i]].mean() / self.price.Y[i][c[i]].mean() for i in ok])
        weight = (nt * nc / (nt + nc))[ok]
        return float(weight @ lift / (weight @ dp))


def elasticity_experiment(
    seed: int, n_products: int = 40, days: int = 28, **market: Any
) -> ElasticityExperiment:
    """A seeded random-days experiment of the example design on a market of ``n_products``."""
    m = Market(MarketConfig(n_products=n_products, **market), seed=seed)
    sim = run_spec(make_spec("random-days", m, days=days, seed=seed), m)
    kw: dict[str, Any] = dict(
        unit="product", time="period", treated="treated", blackout="blackout",
        probability="probability",
    )  # fmt: skip
    return ElasticityExperiment(
        m,
        Panel.from_long(sim.panel, outcome="units", **kw),
        Panel.from_long(sim.panel, outcome="revenue", **kw),
        Panel.from_long(sim.panel, outcome="price", **kw),
    )


def design_imbalance(
    market: Market, design: str, seeds: Iterable[int], expected: np.ndarray, *, days: int = 28
) -> np.ndarray:
    """The difference in means of ``expected`` (products x days, e.g. each product-day's
    expected control units) between the arms that ``design`` assigns with each spec seed: the
    part of a difference in means that is the design's draw alone (which products, on which
    days, fell in which arm), with no outcome noise. Over the design's draws it averages to
    the estimator's design bias; one draw's value is that assignment's chance imbalance.
    For designs without triggers."""
    units = list(market.product_ids)
    out = []
    for seed in seeds:
        m = design_matrices(make_spec(design, market, days=days, seed=seed), units)
        cells = m.analysed & (m.probability > 0) & (m.probability < 1)
        t, c = cells & m.treated, cells & ~m.treated
        out.append(float(expected[t].mean() - expected[c].mean()))
    return np.asarray(out)
