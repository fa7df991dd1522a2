"""`pricelab demo --ladder --adaptive`: the demo's ladder with an adaptive allocation (issue
#57; docs/adaptive.md), and how its end is read.

The spec's ``adaptive:`` block (:func:`adaptive_block`): Thompson sampling on the decision
metric (profit: the demo market has unit costs), a warmup of three periods at the equal
allocations (a look needs three periods), an update every period, the MAD uniform mixture at
its defaults, and a floor sized for the demo's products: docs/adaptive.md's last study section
asks that every arm keep a few cells per period whose window held it, ``N floor^(m + 1) >= c``
for ``N`` products and carryover lag ``m`` (0 here: random days), so the floor is at least
``(c / N)^(1 / (m + 1))`` with ``c`` = :data:`HELD_CELLS`, and never below the spec's default.

At each look the demo says the probabilities the controller recorded for the period (from the
assignment messages) and the worker's adaptive estimates; at the end, what ``pricelab
estimates`` prints for the experiment (the command itself, run against the stack), each arm's
adaptive sequence beside the market's truth, and the profit the adaptive ladder earned against
the fixed ladder of the same seed on the same market and days (the market's expected profit,
free of count noise: the fixed ladder's draw is the design's with the equal allocations,
:func:`controller.adaptive_draw.period_arms`, the same keyed uniforms). The exit check: the
decision metric's simultaneous anytime-valid sequences cover every arm's true effect.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.adaptive import WIDE_HELD_DRAWS
from controller.adaptive_draw import period_arms
from controller.settings import Settings
from lab.market import in_force
from streams.live.driver import LiveRun, metric_of
from streams.live.ladder import ARM_METRICS, treatment_arms

#: the estimator the worker publishes an adaptive ladder's contrasts under
#: (analysis.adaptive_live.ESTIMATOR; streams does not import analysis' worker modules)
ADAPTIVE_ESTIMATOR = "aipw_adaptive"
#: the held cells per period each arm keeps at the floor (docs/adaptive.md: c, a few): the
#: count below which ``pricelab experiment create`` warns that an arm's sequences are wide
HELD_CELLS = WIDE_HELD_DRAWS
#: the spec's default floor, kept when the products allow a lower one
DEFAULT_FLOOR = 0.05

Say = Callable[..., None]


def demo_floor(products: int, arms: int, lag: int = 0) -> float:
    """The floor that keeps :data:`HELD_CELLS` held cells per period for every arm on
    ``products`` products at carryover lag ``lag``: ``(c / N)^(1 / (lag + 1))``, at least
    the spec's default, rounded up to a hundredth; ValueError when it leaves nothing to adapt
    (``arms * floor >= 1``)."""
    need = (HELD_CELLS / products) ** (1.0 / (lag + 1))
    floor = max(DEFAULT_FLOOR, math.ceil(need * 100 - 1e-9) / 100)
    if floor * arms >= 1.0:
        raise ValueError(
            f"an adaptive ladder of {arms} arms on {products} products needs a floor of "
            f"{floor:.2f} per arm, which leaves nothing to adapt: use more products"
        )
    return floor


def adaptive_block(products: int, arms: int, lag: int = 0) -> dict[str, Any]:
    """The demo's ``adaptive:`` block (module docstring)."""
    return {
        "rule": "thompson",
        "floor": demo_floor(products, arms, lag),
        "uniform_mix": {"start": 0.5, "decay": 0.2},
        "warmup": 3,
        "every": 1,
    }


def shares_line(run: LiveRun, d: int) -> str | None:
    """Period ``d``'s recorded probabilities as its assignment messages carried them."""
    shares = run.probabilities.get(d)
    if shares is None:
        return None
    return ", ".join(f"{a.name} {shares.get(a.name, math.nan):.0%}" for a in run.spec.arm_list())


def adaptive_estimate(run: LiveRun, metric: str, look: int, arm: str) -> dict[str, Any] | None:
    """The worker's adaptive contrast of ``arm`` with the control on ``metric`` at ``look``."""
    for e in run.estimates:
        if (
            e.get("_look") == look
            and e.get("arm") == arm
            and e.get("estimator") == ADAPTIVE_ESTIMATOR
            and metric_of(e) == metric
        ):
            return e
    return None


def look_at(run: LiveRun, look: int) -> dict[str, Any] | None:
    """The adaptive look (``kind: adaptive``) the worker published at ``look``."""
    return next((d for d in reversed(run.adaptive) if d.get("_look") == look), None)


def print_adaptive_looks(say: Say, run: LiveRun, printed: set[tuple[str, int]]) -> None:
    """Say each adaptive look not said yet: the best set and each arm's mean of the
    allocation's metric."""
    looks = sorted({int(d["_look"]) for d in run.adaptive if d.get("_look") is not None})
    for look in looks:
        if ("adaptive", look) in printed:
            continue
        printed.add(("adaptive", look))
        doc = look_at(run, look)
        if doc is None:
            continue
        means = "  ".join(f"{a['arm']} {a['mean']:.2f}" for a in doc.get("arms") or ())
        say(
            f"   adaptive look after {look:>2} periods ({doc['metric']} per product-period): "
            f"{means}; best set {{{', '.join(doc.get('best_set') or ())}}}"
        )


@dataclass(frozen=True)
class Regret:
    """The market's expected profit over the run's periods (summed over products): what the
    adaptive ladder earned, what the fixed ladder of the same seed would have earned on the
    same days, and what pricing every product at the truly best arm would have."""

    adaptive: float
    fixed: float
    best: float
    best_arm: str

    @property
    def ratio(self) -> float:
        """The adaptive ladder's regret over the fixed one's (the study's value figure)."""
        given_up = self.best - self.fixed
        return (self.best - self.adaptive) / given_up if given_up > 0 else math.nan


def regret(run: LiveRun, periods: int) -> Regret:
    """:class:`Regret` over the first ``periods`` periods: each period's expected profit
    (:meth:`lab.market.Market.period_outcomes`, the count noise left out) under the arms the
    run recorded in force, under the fixed ladder's draw (the design's, with the arms'
    allocations: the same keyed uniforms) and under every product at one arm throughout."""
    if run.ladder is None or run.unit_cost is None:
        raise ValueError(f"experiment {run.id!r} is no ladder with unit costs")
    spec, market = run.spec, run.market
    products = list(market.product_ids)
    alloc = spec.allocations()
    ratios = run.ladder
    k, n = len(ratios), len(products)
    fixed = np.full((n, periods), spec.control_index)
    for d in range(periods):
        fixed[:, d] = period_arms(spec, products, d, alloc)
    m = market.cfg.carryover_order
    earned = {"adaptive": 0.0, "fixed": 0.0}
    steady = np.zeros(k)
    for d in range(periods):
        cols = in_force(run.slots, d, m)
        for name, hist in (("adaptive", run.arm_index[:, cols]), ("fixed", fixed[:, cols])):
            r = ratios[hist]
            out = market.period_outcomes(run.slots[d], r != 1.0, r)
            earned[name] += float(((out.price - run.unit_cost) * out.expected_units).sum())
        for a in range(k):
            r = np.full((n, len(cols)), float(ratios[a]))
            out = market.period_outcomes(run.slots[d], r != 1.0, r)
            steady[a] += float(((out.price - run.unit_cost) * out.expected_units).sum())
    best = int(steady.argmax())
    names = [a.name for a in spec.arm_list()]
    return Regret(earned["adaptive"], earned["fixed"], float(steady[best]), names[best])


def estimates_command(settings: Settings, experiment: str) -> str:
    """What ``pricelab estimates EXPERIMENT`` prints against the demo's stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRICELAB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "estimates", experiment, "--idle", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env | settings.to_env(),
    )
    return proc.stdout + (proc.stderr if proc.returncode else "")


def report_adaptive(say: Say, run: LiveRun, look: int, estimates_text: str) -> bool:
    """Say the end of an adaptive ladder run at ``look``: what ``pricelab estimates`` prints
    (``estimates_text``: the verdict, every arm's adaptive contrasts, the look with the
    allocation over time), each arm's simultaneous anytime-valid sequence beside the
    market's truth, and the profit against the fixed ladder's. True when the adaptive look was
    published and the decision metric's sequences cover every arm's true effect."""

    def out(line: str = "") -> None:
        say(line, always=True)

    out()
    out(f"$ pricelab estimates {run.id}")
    for line in estimates_text.rstrip().splitlines():
        out("  " + line)
    doc = look_at(run, look)
    if doc is None:
        out(f"ERROR: no adaptive look published at the look after {look} periods")
        return False
    out()
    control = run.spec.control_arm.name
    out(
        f"ADAPTIVE SCORECARD after {look} days, each arm against {control} (AIPW on the "
        "recorded probabilities; 95% simultaneous anytime-valid sequences; truth from the "
        "simulated market):"
    )
    covered: dict[tuple[str, str], bool] = {}
    for metric in ARM_METRICS:
        for arm in treatment_arms(run):
            e = adaptive_estimate(run, metric, look, arm)
            truth = run.arm_truth(arm, look, metric)
            if e is None:
                out(f"  {metric:<8} {arm:<5} not estimated")
                continue
            lo, hi = e.get("sim_ci_low"), e.get("sim_ci_high")
            ok = lo is not None and hi is not None and lo <= truth <= hi
            covered[(metric, arm)] = ok
            out(
                f"  {metric:<8} {arm:<5} {e['effect']:>+10.3f}  [{lo:+.3f}, {hi:+.3f}]  "
                f"truth {truth:>+9.3f}  {'covered' if ok else 'MISSED'}"
            )
    if run.unit_cost is not None:
        r = regret(run, look)
        out()
        out(
            f"PROFIT over the {look} days (the market's expected profit, all products; the fixed "
            "ladder: the same seed's draw at the equal allocations, on the same market and days):"
        )
        out(f"  always the truly best arm ({r.best_arm}) {r.best:>14,.2f}")
        out(
            f"  adaptive ladder                {r.adaptive:>14,.2f}  "
            f"(gave up {r.best - r.adaptive:,.2f})"
        )
        out(
            f"  fixed ladder                   {r.fixed:>14,.2f}  (gave up {r.best - r.fixed:,.2f})"
        )
        if math.isfinite(r.ratio):
            out(f"  the adaptive ladder gave up {r.ratio:.2f} of the fixed ladder's regret")
    metric = str(doc.get("metric"))
    decision = [a for a in treatment_arms(run) if (metric, a) in covered]
    missed = [a for a in decision if not covered[(metric, a)]]
    out()
    if len(decision) < len(treatment_arms(run)):
        out(f"ERROR: no adaptive sequence of {metric} for every arm")
        return False
    if missed:
        out(f"the adaptive sequences of {metric} MISS the true effect of {', '.join(missed)}")
        return False
    out(f"the adaptive sequences of {metric} COVER every arm's true effect")
    return True
