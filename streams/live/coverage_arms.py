"""Live coverage of three-arm price ladders: what the running worker publishes per arm.

    .venv/bin/python -m streams.live.coverage --only arms             # these batches alone
    .venv/bin/python -m streams.live.coverage --only arms --quick --out /tmp/lc   # a smoke run

The batches of :mod:`streams.live.coverage` (its ``run_batch``: one controller and one analysis
worker process per batch on the shared embedded stack, the analysis worker killed with SIGKILL
at a seeded look in every other batch and restarted) with experiments of three arms: the list
price (the control), 0.95 and 0.90 of it (:data:`LADDER`), a third of the units or periods
each, on markets whose only treatment is the price and whose unit costs are 48% of the list
price (:data:`COST_SHARE`, the offline ladder study's world), so that profit is estimated and
the profit-maximising price is inside the ladder for most markets. The designs are those
whose estimators the worker fits per arm (:data:`ARM_DESIGNS`; the optimal switchback's ``hajek``
and ``ht`` are not identified per arm, docs/designs.md "Arms"), each design's own example spec
(``lab.compare.make_spec``) with the ladder in place of the two-arm shorthand.

What is scored, all from the estimates topic against the market's truths
(:meth:`streams.live.driver.LiveRun.arm_truth`, :meth:`~streams.live.driver.LiveRun.optimal_ratio_truth`):

- per (design, metric, form, estimator, arm): the final 95% interval's coverage, SE against the
  empirical SD of the final errors, bias, the final simultaneous interval's (``sim_ci_*``)
  coverage, and whether the arm's anytime-valid sequence (at alpha / (k - 1), ``cs_split``)
  ever excluded the truth at a look (:func:`arm_rows`);
- family-wise, per experiment and (metric, form, estimator): both arms' simultaneous intervals
  covering at once, and either arm's sequence ever missing
  (:func:`streams.live.coverage_arms_tables.family_rows`; the target for the latter is at most
  5%, which the split promises);
- the demand curve's recommended listed ratio and its interval against the true optimum, where
  the worker publishes one (:func:`demand_row`).

The tables and the pooled tests are :mod:`streams.live.coverage_arms_tables`'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from controller.designs import get_design
from lab.compare import market_classes
from lab.studies.live_ladder import (
    ladder_market,
    ladder_spec,
)
from streams.live.driver import LiveRun, metric_of
from streams.live.ladder import demand_at, treatment_arms

#: the designs with an estimator the worker fits per arm (analysis.arms.PAIR_METHODS; a unit
#: test checks this list against it): random days fe and dm, time-bound did, sdid and cuped,
#: triggered cuped and dm, crossover dm, cluster fe and dm
ARM_DESIGNS = ("random-days", "time-bound", "triggered", "crossover", "cluster")
#: the metrics the worker estimates per arm (no per-arm elasticity: the demand curve's)
METRICS = ("units", "revenue", "profit", "price")
#: the kills of the arms' batches: their own stream, so that they run alone or after the
#: two-arm batches with the same kills
KILL_SEED = 20261124


def make_arm_runs(
    batch: int, designs: Sequence[str], copies: int, products: int, days: int
) -> list[LiveRun]:
    """A batch's ladders: ``copies`` of each design, each on its own market and seeds."""
    runs = []
    for c in range(copies):
        for j, design in enumerate(designs):
            seed = 900_000 + 10_000 * (batch + 1) + 100 * c + j
            market = ladder_market(products, seed, f"a{batch}c{c}{design[:2]}-")
            classes = market_classes(market) if design == "cluster" else None
            spec = ladder_spec(design, market, days, seed, classes)
            spec = spec.model_copy(update={"id": f"lc-a{batch}-c{c}-{design}"})
            runs.append(LiveRun(spec, market, sales_seed=seed + 7))
    return runs


# --------------------------------------------------------------------------- scoring
#: an SE at most this share of the largest the arm's estimate had at any look is taken as zero
ZERO_SE = 1e-6
ABSOLUTE = ("effect", "ci_low", "ci_high", "cs_low", "cs_high")
RELATIVE = ("relative_effect", "relative_ci_low", "relative_ci_high",
            "relative_cs_low", "relative_cs_high")  # fmt: skip


def _covers(lo: Any, hi: Any, truth: float) -> bool | None:
    """Whether ``[lo, hi]`` holds ``truth``; None when the interval is not bounded."""
    if lo is None or hi is None:
        return None
    return bool(lo <= truth <= hi)


def _finite(x: Any) -> float:
    return math.nan if x is None else float(x)


def _truth_of(run: LiveRun) -> Callable[[str, int, str, bool], float]:
    """``run.arm_truth`` remembered: an arm's truth at a look serves every estimator."""
    memo: dict[tuple[str, int, str, bool], float] = {}

    def truth(arm: str, k: int, metric: str, rel: bool) -> float:
        if (arm, k, metric, rel) not in memo:
            memo[(arm, k, metric, rel)] = run.arm_truth(arm, k, metric, relative=rel)
        return memo[(arm, k, metric, rel)]

    return truth


def _published(run: LiveRun, metric: str) -> list[str]:
    """The estimators that published ``metric`` identified for some arm of ``run``."""
    arms = treatment_arms(run)
    return sorted(
        {
            e["estimator"]
            for e in run.estimates
            if metric_of(e) == metric and e.get("arm") in arms and e.get("identified", True)
        }
    )


def reach(run: LiveRun, arm: str, periods: int) -> dict[str, int | None]:
    """What ``arm``'s comparison rests on over the first ``periods`` periods: the products with
    an analysed cell in the arm and, for the cluster design (whose ``fe`` clusters by class x
    period), the arm's class-periods among those cells (None for other designs)."""
    names = [a.name for a in run.spec.arm_list()]
    cells = run.analysed[:, :periods] & (run.arm_index[:, :periods] == names.index(arm))
    class_periods = None
    if run.spec.design == "cluster" and run.spec.clusters:
        of = {p: c for c, members in enumerate(run.spec.clusters.values()) for p in members}
        klass = np.array([of[p] for p in run.market.product_ids])
        rows, cols = np.nonzero(cells)
        class_periods = len(set(zip(klass[rows].tolist(), cols.tolist(), strict=True)))
    return {"products": int(cells.any(axis=1).sum()), "class_periods": class_periods}


def arm_rows(run: LiveRun, batch: int, restarted: bool) -> list[dict[str, Any]]:
    """One row per (metric, form, estimator, arm) the worker published identified for ``run``,
    scored by :func:`score_arm` against the arm's truths at every look, with what the arm's
    final comparison rests on (:func:`reach`)."""
    days = run.arms.shape[1]
    order = [p.label for p in get_design(run.spec.design).estimators(run.spec)]
    arms = treatment_arms(run)
    truth = _truth_of(run)
    reached = {arm: reach(run, arm, days) for arm in arms}
    rows = []
    for metric in METRICS:
        names = _published(run, metric)
        if not names:
            continue
        # the primary: the design's first estimator that publishes the metric per arm
        primary = min(names, key=lambda n: order.index(n) if n in order else len(order))
        for name in names:
            for form in ("absolute", "relative"):
                rel = form == "relative"
                for arm in arms:
                    looks = run.looks(name, metric=metric, arm=arm)
                    truths = {k: truth(arm, k, metric, rel) for k in {*looks, days}}
                    rows.append(
                        {
                            "batch": batch,
                            "experiment": run.id,
                            "design": run.spec.design,
                            "metric": metric,
                            "form": form,
                            "estimator": name,
                            "arm": arm,
                            "restarted": restarted,
                            "primary": name == primary,
                            "arm_products": reached[arm]["products"],
                            "arm_class_periods": reached[arm]["class_periods"],
                        }
                        | score_arm(looks, truths, days, rel)
                    )
    return rows


def look_rows(run: LiveRun) -> list[dict[str, Any]]:
    """Each look of each arm's absolute estimate (every identified estimator and metric): its
    SE, whether its 95% interval and its sequence (None: none published) held the look's
    truth, and what the arm rested on by then (:func:`reach`): what the study's by-look
    tables are made of."""
    truth = _truth_of(run)
    out = []
    for metric in METRICS:
        for name in _published(run, metric):
            for arm in treatment_arms(run):
                looks = run.looks(name, metric=metric, arm=arm)
                zero = zero_se(looks)
                for k, e in looks.items():
                    t = truth(arm, k, metric, False)
                    out.append(
                        {
                            "experiment": run.id,
                            "design": run.spec.design,
                            "metric": metric,
                            "estimator": name,
                            "arm": arm,
                            "look": k,
                            "se": _finite(e.get("se")),
                            "zero_se": zero.get(k, False),
                            "ci_covered": _covers(e.get("ci_low"), e.get("ci_high"), t),
                            "cs_covered": _covers(e.get("cs_low"), e.get("cs_high"), t),
                        }
                        | {f"arm_{key}": v for key, v in reach(run, arm, k).items()}
                    )
    return out


def zero_se(looks: Mapping[int, Mapping[str, Any]]) -> dict[int, bool]:
    """Per look, whether its SE is numerically zero (a degenerate cluster-robust variance: its
    interval and sequence have no width): at most :data:`ZERO_SE` of the largest SE the same
    estimate had at any look."""
    ses = {k: float(e["se"]) for k, e in looks.items() if e.get("se") is not None}
    largest = max(ses.values(), default=math.nan)
    return {k: se <= ZERO_SE * largest for k, se in ses.items()}


def score_arm(
    looks: Mapping[int, Mapping[str, Any]], truths: Mapping[int, float], final: int, relative: bool
) -> dict[str, Any]:
    """One arm's estimates of one (metric, estimator) at its looks (period count -> the
    message) against its truths at them (period count -> truth; ``final`` among them): the
    final look's interval (``{}`` when none was published then) and, for the absolute form, its
    simultaneous interval; and how many looks' anytime-valid sequences excluded the truth."""
    keys = RELATIVE if relative else ABSOLUTE
    misses = sequenced = 0
    for k, e in looks.items():
        held = _covers(e.get(keys[3]), e.get(keys[4]), truths[k])
        if held is not None:
            sequenced += 1
            misses += not held
    zero = 0 if relative else sum(zero_se(looks).values())
    doc = looks.get(final) or {}
    truth = truths[final]
    value, lo, hi = (doc.get(key) for key in keys[:3])
    s_lo, s_hi = (None, None) if relative else (doc.get("sim_ci_low"), doc.get("sim_ci_high"))
    return {
        "truth": truth,
        "effect": _finite(value),
        "se": math.nan if relative else _finite(doc.get("se")),
        "ci_low": _finite(lo),
        "ci_high": _finite(hi),
        # a final estimate without a bounded interval (Fieller's g >= 1): said, not scored
        "unbounded": bool(doc) and (lo is None or hi is None),
        "covered": _covers(lo, hi, truth),
        "sim_low": _finite(s_lo),
        "sim_high": _finite(s_hi),
        "sim_method": None if relative else doc.get("sim_method"),
        "sim_covered": _covers(s_lo, s_hi, truth),
        "looks": len(looks),
        "first_look": min(looks) if looks else None,
        "zero_se_looks": zero,
        "cs_looks": sequenced,
        "cs_looks_missed": misses,
        # no sequence at any look (no relative one for did, sdid): not scored
        "cs_ever_missed": (misses > 0) if sequenced else None,
        "cs_split": doc.get("cs_split"),
    }


def demand_row(run: LiveRun, batch: int, restarted: bool) -> dict[str, Any]:
    """The final look's demand curve of ``run`` (:func:`score_demand`) against the true
    profit-maximising listed ratio over the cells it analysed, and how many looks had one."""
    days = run.arms.shape[1]
    return {
        "batch": batch,
        "experiment": run.id,
        "design": run.spec.design,
        "restarted": restarted,
        "curves": len(run.demands),
    } | score_demand(demand_at(run, days), run.optimal_ratio_truth(days))


def score_demand(doc: Mapping[str, Any] | None, truth: float) -> dict[str, Any]:
    """A demand curve's recommended listed ratio and its interval against the true optimum
    ``truth`` (``published`` False when there is no curve: the design never shows one product
    at several prices; ``covered`` None when the curve gives no recommendation)."""
    row: dict[str, Any] = {"truth": truth, "published": doc is not None}
    if doc is None:
        return row
    best = doc.get("optimal_price_ratio")
    lo, hi = doc.get("optimal_price_ratio_ci_low"), doc.get("optimal_price_ratio_ci_high")
    return row | {
        "optimal_price_ratio": _finite(best),
        "ci_low": _finite(lo),
        "ci_high": _finite(hi),
        "covered": None if best is None else _covers(lo, hi, truth),
        "at_range_edge": doc.get("at_range_edge"),
        "elasticity": _finite(doc.get("elasticity")),
    }


def kill_look(rng: np.random.Generator, batch: int, days: int) -> int | None:
    """The seeded look before which the analysis worker is killed: every other batch."""
    return int(rng.integers(3, days - 2)) if batch % 2 == 1 else None
