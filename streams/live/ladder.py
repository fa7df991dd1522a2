"""`pricelab demo --ladder`: a four-price ladder on the live stack, and how its end is read.

The ladder lists the control's list price and three others (0.90, 0.95 and 1.05 of it), each
on a quarter of the product-days (random days). The analysis worker publishes each arm's
estimates against the control (with intervals simultaneous over the arms and Hsu's MCB set of
the possibly best), a verdict that names an arm, and the demand and profit curves with the
recommended price. This module says what the demo prints at each look and at the end: the
verdict (the decision), a per-arm scorecard beside the market's truths, the curves, and the
price ratio the fitted profit curve peaks at against the true profit-maximising one, labelled
as evidence beside the verdict (analysis.evidence): while the verdict keeps running, it is
where the evidence points, not a price to set.

The market's unit costs are :data:`LADDER_COST_SHARE` of each list price: with the demo
market's elasticities (about -2) the true optimum is near 0.96, inside the tested range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from analysis.evidence import demand_reading
from controller.arms import ArmSpec
from streams.client.estimates import render_demand, render_verdict
from streams.live.driver import LiveRun, metric_of, verdict_at, verdict_line

Say = Callable[[str], None]

#: the ladder: the control's list price and three listed ratios of it, equal shares
LADDER_ARMS = (
    ArmSpec(name="list", policy="list-price", price_ratio=1.0, allocation=0.25, control=True),
    ArmSpec(name="p90", policy="price-minus-10pct", price_ratio=0.90, allocation=0.25),
    ArmSpec(name="p95", policy="price-minus-5pct", price_ratio=0.95, allocation=0.25),
    ArmSpec(name="p105", policy="price-plus-5pct", price_ratio=1.05, allocation=0.25),
)
#: unit cost as a share of the list price: the demo market's true optimum is then about 0.96
LADDER_COST_SHARE = 0.49
#: the metrics the scorecard compares per arm (the worker's MCB metrics)
ARM_METRICS = ("units", "revenue", "profit")
#: the ratios at which the text curve is drawn (the ladder's prices among them)
CURVE_STEP = 0.025
BAR_WIDTH = 40


def treatment_arms(run: LiveRun) -> list[str]:
    """The names of the arms other than control, in the spec's order."""
    return [a.name for a in run.spec.arm_list() if not a.control]


def arm_estimate(
    run: LiveRun, metric: str, look: int, arm: str, *, mcb: bool = False
) -> dict[str, Any] | None:
    """The estimate of ``arm`` against control on ``metric`` at ``look`` by the primary
    estimator (the first identified one the worker published there, as
    :func:`streams.live.driver.primary_estimate`), or with ``mcb`` the first that carries
    Hsu's MCB set."""
    for e in run.estimates:
        if (
            e.get("_look") == look
            and e.get("arm") == arm
            and metric_of(e) == metric
            and e.get("segment") is None
            and e.get("identified") is not False
            and (not mcb or e.get("best_set") is not None)
        ):
            return e
    return None


def demand_at(run: LiveRun, look: int) -> dict[str, Any] | None:
    """The demand curve the worker published at ``look`` (the last one as of its instant)."""
    return next((d for d in reversed(run.demands) if d.get("_look") == look), None)


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _interval(lo: Any, hi: Any, fmt: str = "+.3f") -> str:
    return "-" if lo is None or hi is None else f"[{_num(lo, fmt)}, {_num(hi, fmt)}]"


def _covers(lo: Any, hi: Any, truth: float) -> bool | None:
    if lo is None or hi is None or not math.isfinite(truth):
        return None
    return bool(lo <= truth <= hi)


def _word(covered: bool | None) -> str:
    return "-" if covered is None else ("yes" if covered else "NO")


def print_ladder_looks(say: Say, run: LiveRun, printed: set[tuple[str, int]]) -> None:
    """Say each look not said yet (``printed``): its verdict, every arm's units against
    control by the primary estimator, and the recommended price of its demand curve."""
    looks = sorted({int(e["_look"]) for e in run.estimates if e.get("_look") is not None})
    for look in looks:
        if ("ladder", look) in printed:
            continue
        printed.add(("ladder", look))
        v = verdict_at(run, look)
        if v is not None:
            say(f"   verdict after {look:>2} periods: {verdict_line(v)}")
        parts, name = [], None
        for arm in treatment_arms(run):
            e = arm_estimate(run, "units", look, arm)
            if e is not None:
                name = e["estimator"]
                parts.append(
                    f"{arm} {e['effect']:+.2f} {_interval(e['ci_low'], e['ci_high'], '+.2f')}"
                )
        if parts:
            control = run.spec.control_arm.name
            say(f"   units vs {control} after {look:>2} periods ({name}): " + "  ".join(parts))
        d = demand_at(run, look)
        if d is not None and d.get("optimal_price_ratio") is not None:
            reading = demand_reading(d, v)
            ci = (
                _interval(
                    d.get("optimal_price_ratio_ci_low"), d.get("optimal_price_ratio_ci_high"), ".3f"
                )
                if d.get("identified") is not False
                else f"(no interval: {d.get('reason')})"
            )
            say(
                f"   demand after {look:>2} periods: elasticity {_num(d.get('elasticity'), '+.2f')}, "
                f"curve peaks at x{d['optimal_price_ratio']:.3f} {ci} ({reading.headline})"
            )


def arm_sequences(verdict: dict[str, Any], order: list[str]) -> list[str]:
    """Every arm's decision-metric sequence of a k-arm verdict, one line each, in ``order``
    (arm names; others after them)."""
    lines = []
    rank = {name: j for j, name in enumerate(order)}
    for a in sorted(verdict.get("arms") or (), key=lambda a: rank.get(a["arm"], len(rank))):
        rel = a.get("relative_effect")
        fig = (
            f"{rel:+.1%} [{_num(a.get('relative_cs_low'), '+.1%')}, "
            f"{_num(a.get('relative_cs_high'), '+.1%')}]"
            if rel is not None
            else f"{a['effect']:+.4g} {_interval(a.get('cs_low'), a.get('cs_high'), '+.4g')}"
        )
        mark = "  <- named" if a["arm"] == verdict.get("arm") else ""
        lines.append(f"  {a['arm']:>6}: {verdict['metric']} {fig}{mark}")
    return lines


def arm_scorecard(run: LiveRun, look: int) -> tuple[list[str], dict[tuple[str, str], bool]]:
    """The per-arm scorecard at ``look``: for each metric and arm against control the
    primary estimate, its 95% interval, the interval simultaneous over the arms, the
    market's truth and whether each interval covers it; then per metric Hsu's MCB set of the
    possibly best arms beside the truly best. Returns the lines and, per (metric, arm),
    whether the simultaneous interval covers the truth."""
    arms = treatment_arms(run)
    lines = [
        f"{'metric':<8} {'arm':<5} {'effect':>10}  {'95% CI':<22} {'simultaneous':<22} "
        f"{'truth':>10}  covered (CI, sim)"
    ]
    sim_covered: dict[tuple[str, str], bool] = {}
    best_lines = []
    for metric in ARM_METRICS:
        truths = {}
        for arm in arms:
            e = arm_estimate(run, metric, look, arm)
            truth = truths[arm] = run.arm_truth(arm, look, metric)
            if e is None:
                lines.append(f"{metric:<8} {arm:<5} not estimated")
                continue
            ci, sim = (
                _covers(e["ci_low"], e["ci_high"], truth),
                _covers(e.get("sim_ci_low"), e.get("sim_ci_high"), truth),
            )
            if sim is not None:
                sim_covered[(metric, arm)] = sim
            lines.append(
                f"{metric:<8} {arm:<5} {e['effect']:>+10.3f}  "
                f"{_interval(e['ci_low'], e['ci_high']):<22} "
                f"{_interval(e.get('sim_ci_low'), e.get('sim_ci_high')):<22} "
                f"{truth:>+10.3f}  {_word(ci)}, {_word(sim)}   ({e['estimator']})"
            )
        if any(math.isfinite(t) for t in truths.values()):
            best = true_best(truths, run.spec.control_arm.name)
            m = next((arm_estimate(run, metric, look, a, mcb=True) for a in arms), None)
            if m is None:
                best_lines.append(f"  {metric:<8} no MCB set published; truly best {best}")
            else:
                kept = list(m["best_set"])
                inside = "in the set" if best in kept else "NOT in the set"
                best_lines.append(
                    f"  {metric:<8} {{{', '.join(kept)}}} ({m['estimator']}); truly best "
                    f"{best}: {inside}"
                )
    lines.append("best arm (Hsu's MCB set of the arms that may be best, control included):")
    return lines + best_lines, sim_covered


def ladder_truths(run: LiveRun, look: int) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (metric, arm) the market's true absolute and relative effect of the arm against
    control at ``look``, for the metrics the scorecard compares and the price paid (where the
    market knows it): what the analyst report draws beside the estimates."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for metric in (*ARM_METRICS, "price"):
        for arm in treatment_arms(run):
            t = run.arm_truth(arm, look, metric)
            if math.isfinite(t):
                out[(metric, arm)] = (t, run.arm_truth(arm, look, metric, relative=True))
    return out


def true_best(truths: dict[str, float], control: str) -> str:
    """The arm with the highest true effect against control, or the control when none is
    above 0."""
    arm, value = max(truths.items(), key=lambda kv: kv[1])
    return arm if value > 0 else control


def text_curve(
    demand: dict[str, Any],
    *,
    true_optimum: float | None = None,
    step: float = CURVE_STEP,
    width: int = BAR_WIDTH,
) -> list[str]:
    """The fitted profit curve as text: one bar per listed ratio every ``step`` over the
    tested range (the ladder's prices marked), plus rows at the recommended and the true
    profit-maximising ratios; each with the fitted units ratio and profit per
    product-period."""
    curve = [c for c in demand.get("curve") or () if c.get("profit") is not None]
    if not curve:
        return ["  (no profit curve: the spec gives no unit costs)"]
    x = np.array([c["price_ratio"] for c in curve])
    profit = np.array([c["profit"] for c in curve])
    units = np.array([c["units_ratio"] for c in curve])
    lo, hi = float(x.min()), float(x.max())
    tested = {round(float(p["price_ratio"]), 6): p["arm"] for p in demand.get("points") or ()}
    rows: dict[float, list[str]] = {}
    for r in np.arange(lo, hi + step / 2, step):
        rows.setdefault(round(float(r), 6), [])
    for r, arm in tested.items():
        rows.setdefault(r, []).append(f"tested ({arm})")
    best = demand.get("optimal_price_ratio")
    if best is not None:
        rows.setdefault(round(float(best), 6), []).append("recommended")
    if true_optimum is not None and math.isfinite(true_optimum):
        rows.setdefault(round(float(true_optimum), 6), []).append("true optimum")
    ratios = sorted(r for r in rows if lo - 1e-9 <= r <= hi + 1e-9)
    values = np.interp(ratios, x, profit)
    floor, top = float(profit.min()), float(profit.max())
    span = top - floor
    lines = [
        f"  {'price':>7}  {'units':>6}  profit per product-period (bars from the curve's "
        f"lowest, {floor:,.2f}, to its highest)"
    ]
    for r, v in zip(ratios, values, strict=True):
        n = 1 + (round((width - 1) * (v - floor) / span) if span > 0 else width - 1)
        notes = rows[r]
        lines.append(
            f"  x{r:.3f}  x{float(np.interp(r, x, units)):.3f}  {'#' * n:<{width}} {v:,.2f}"
            + (f"  <- {', '.join(notes)}" if notes else "")
        )
    return lines


def recommendation(
    demand: dict[str, Any], true_optimum: float, verdict: dict[str, Any] | None = None
) -> tuple[list[str], bool | None]:
    """Where the fitted profit curve peaks, with its interval, labelled as evidence beside
    ``verdict`` (analysis.evidence: the verdict decides), against the true profit-maximising
    ratio, and whether the interval covers it (None without a recommendation or an
    interval)."""
    best = demand.get("optimal_price_ratio")
    if best is None:
        return [
            "WHERE THE EVIDENCE POINTS: nowhere (the demand curve gives no profit without unit "
            "costs)"
        ], None
    reading = demand_reading(demand, verdict)
    lo, hi = demand.get("optimal_price_ratio_ci_low"), demand.get("optimal_price_ratio_ci_high")
    shown = demand.get("identified") is not False
    covered = _covers(lo, hi, true_optimum) if shown else None
    edge = (
        " (at the edge of the tested range: the best price may lie outside it)"
        if demand.get("at_range_edge")
        else ""
    )
    ci = (
        f"95% interval {_interval(lo, hi, '.3f')} ({demand.get('interval_method')})"
        if shown
        else f"no interval: {demand.get('reason')}"
    )
    word = {True: "COVERS", False: "MISSES", None: "cannot be checked against"}[covered]
    return [
        f"{reading.headline.upper()}: x{best:.3f} of list, {ci}{edge}",
        f"  {reading.text}",
        f"  true optimum      x{true_optimum:.3f}  (the market's expected profit over the "
        "analysed cells, every product listed at one ratio)",
        f"  the interval {word} the true optimum",
    ], covered


def ladder_summary(run: LiveRun, look: int) -> list[str]:
    """What ``pricelab simulate --live`` says of a ladder after ``look`` periods, each part
    where the worker has published it so far: the verdict with every arm's sequence, the
    per-arm scorecard beside the market's truths, and the demand curve with the recommended
    price against the true optimum (:func:`report_ladder` says the same at a demo's end, and
    calls a missing part an error)."""
    verdict = verdict_at(run, look)
    lines = [f"no verdict published after {look} periods"]
    if verdict is not None:
        lines = render_verdict(verdict).splitlines()
        if verdict.get("arm") is not None:
            lines += arm_sequences(verdict, treatment_arms(run))
    control = run.spec.control_arm.name
    rows, _ = arm_scorecard(run, look)
    lines += [
        "",
        f"per-arm scorecard after {look} periods, each arm against {control} (95% intervals; "
        "simultaneous over the arms; truth from the simulated market):",
        *("  " + row for row in rows),
    ]
    demand = demand_at(run, look)
    if demand is None:
        return [*lines, "", f"no demand curve published after {look} periods"]
    return [
        *lines,
        "",
        render_demand(demand, verdict),
        *recommendation(demand, run.optimal_ratio_truth(look), verdict)[0],
    ]


def report_ladder(say: Callable[..., None], run: LiveRun, look: int) -> bool:
    """Say the end of a ladder run at ``look``: the verdict (it names an arm) with every
    arm's sequence, the per-arm scorecard, the demand and profit curves and the recommended
    price against the true optimum. True when everything was published and the simultaneous
    95% intervals of the decision metric cover every arm's true effect (the ladder's
    counterpart of the two-arm demo's coverage check)."""

    def out(line: str = "") -> None:
        say(line, always=True)

    verdict = verdict_at(run, look)
    if verdict is None or verdict.get("arm") is None:
        out(f"ERROR: no verdict naming an arm published at the look after {look} periods")
        return False
    out()
    out(render_verdict(verdict))
    out(f"  the verdict names arm {verdict['arm']}; every arm's sequence against control:")
    for line in arm_sequences(verdict, treatment_arms(run)):
        out(line)
    out()
    control = run.spec.control_arm.name
    out(
        f"PER-ARM SCORECARD after {look} days, each arm against {control} (95% intervals; "
        "simultaneous over the arms; truth from the simulated market):"
    )
    lines, sim_covered = arm_scorecard(run, look)
    for line in lines:
        out("  " + line)
    missing = [
        f"{m} {a}" for m in ARM_METRICS for a in treatment_arms(run) if (m, a) not in sim_covered
    ]
    if missing:
        out(f"ERROR: no simultaneous interval for {', '.join(missing)}")
        return False
    demand = demand_at(run, look)
    if demand is None:
        out(f"ERROR: no demand curve published at the look after {look} periods")
        return False
    truth = run.optimal_ratio_truth(look)
    out()
    out(render_demand(demand, verdict))
    out("  profit curve (fitted):")
    for line in text_curve(demand, true_optimum=truth):
        out(line)
    out()
    rec, _ = recommendation(demand, truth, verdict)
    for line in rec:
        out(line)
    if demand.get("optimal_price_ratio") is None:
        out("ERROR: the demand curve gives no price the evidence points to")
        return False
    metric = str(verdict["metric"])
    missed = [a for a in treatment_arms(run) if not sim_covered.get((metric, a), False)]
    out()
    if missed:
        out(f"the simultaneous intervals of {metric} MISS the true effect of {', '.join(missed)}")
        return False
    out(f"the simultaneous intervals of {metric} COVER every arm's true effect")
    return True
