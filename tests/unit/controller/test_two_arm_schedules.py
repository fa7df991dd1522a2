"""Two-arm schedules cannot move: a fixture of today's draws, generated before k-arm specs.

For every design's ``example_spec`` on a small fixed market, seeds 0..4, two allocations, with
and without a washout, and one spec per settings variant, the sha256 of the full draw: every
assignment of ``schedule`` (arm, probability, policy, window, match, blackouts), the flip's
whole-period assignments, the design matrices and the path probabilities of both arms at lags
0..2. The fixture (two_arm_schedules.json) was written by this module's ``__main__`` on the
code before issue #41's arms existed; a two-arm spec must still give exactly these hashes.

Regenerate (only when a two-arm schedule is meant to change): python -m
tests.unit.controller.test_two_arm_schedules
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.designs import (
    DesignContext,
    MarketFacts,
    design_matrices,
    get_design,
    path_probability,
    period_assignments,
    schedule,
)
from controller.periods import is_empty, n_periods
from controller.spec import (
    Arm,
    ClusterMode,
    ClusterSettings,
    CrossoverSettings,
    ExperimentSpec,
    OptimalSwitchbackSettings,
    TimeBoundSettings,
    TriggerRule,
)

FIXTURE = Path(__file__).with_name("two_arm_schedules.json")
DESIGNS = (
    "random-days",
    "cluster",
    "optimal-switchback",
    "time-bound",
    "triggered",
    "crossover",
)
DAYS = 16
PRODUCTS = tuple(f"p{i:02d}" for i in range(12))
MARKET = MarketFacts(
    products=PRODUCTS,
    categories={"c0": PRODUCTS[0:4], "c1": PRODUCTS[4:9], "c2": PRODUCTS[9:12]},
    classes={
        "k0": PRODUCTS[0:3],
        "k1": PRODUCTS[3:5],
        "k2": PRODUCTS[5:9],
        "k3": PRODUCTS[9:12],
    },
    reference_prices={p: 10.0 + i for i, p in enumerate(PRODUCTS)},
    competitors=("rival",),
    days=DAYS,
    carryover_order=2,
)
START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Berlin"))


def _base(design: str, seed: int, allocation: float, washout: timedelta) -> dict[str, Any]:
    return {
        "id": f"fix-{design}",
        "design": design,
        "treatment_policy": "treatment",
        "control_policy": "control",
        "start": START,
        "end": START + timedelta(days=DAYS),
        "timezone": "Europe/Berlin",
        "allocation": allocation,
        "seed": seed,
        "washout": washout,
    }


def _triggers(spec: ExperimentSpec) -> dict[str, int]:
    """Hypothetical trigger periods: most products trigger, some never (seed-dependent)."""
    out = {}
    for i, p in enumerate(spec.all_products()):
        t = (3 * i + spec.seed) % (DAYS + 3)
        if t < DAYS:
            out[p] = t
    return out


def _variants(design: str, base: dict[str, Any]) -> Iterator[tuple[str, ExperimentSpec]]:
    example = get_design(design).example_spec(base, MARKET)
    yield "example", example
    if design == "cluster":
        yield (
            "fixed",
            example.model_copy(update={"cluster": ClusterSettings(mode=ClusterMode.FIXED)}),
        )
    elif design == "optimal-switchback":
        for m in (0, 1, 4):
            yield (
                f"m{m}",
                ExperimentSpec(
                    **base,
                    products=PRODUCTS,
                    optimal_switchback=OptimalSwitchbackSettings(carryover_order=m),
                ),
            )
    elif design == "time-bound":
        yield (
            "start0",
            ExperimentSpec(**base, products=PRODUCTS, time_bound=TimeBoundSettings(start_period=0)),
        )
    elif design == "triggered":
        rule = example.triggered
        assert rule is not None
        yield (
            "matched",
            ExperimentSpec(
                **base,
                clusters=dict(MARKET.classes),
                triggered=rule.model_copy(update={"matched_control": True}),
            ),
        )
        yield (
            "short",
            ExperimentSpec(
                **base,
                products=PRODUCTS,
                triggered=TriggerRule(undercut_pct=5.0, window_periods=2),
            ),
        )
    elif design == "crossover":
        yield (
            "phases4",
            ExperimentSpec(
                **base,
                clusters=dict(MARKET.classes),
                crossover=CrossoverSettings(phase_periods=4, blackout_periods=1),
            ),
        )
        yield (
            "noblackout",
            ExperimentSpec(**base, products=PRODUCTS, crossover=CrossoverSettings(phase_periods=3)),
        )


def cases() -> Iterator[tuple[str, ExperimentSpec]]:
    for design in DESIGNS:
        for allocation in (0.5, 0.3):
            for washout in (timedelta(0), timedelta(hours=2)):
                for seed in range(5):
                    base = _base(design, seed, allocation, washout)
                    for variant, spec in _variants(design, base):
                        name = f"{design}/{variant}/a{allocation}/w{int(washout.total_seconds())}"
                        yield f"{name}/s{seed}", spec
    # sub-daily periods (a DST change inside: 2026-03-29 in Berlin)
    for seed in range(5):
        base = _base("random-days", seed, 0.5, timedelta(hours=1))
        base.update(period=timedelta(hours=6), start=datetime(2026, 3, 27, tzinfo=START.tzinfo))
        base["end"] = base["start"] + timedelta(days=4)
        yield f"random-days/pt6h/s{seed}", ExperimentSpec(**base, products=PRODUCTS)


def _t(ts: datetime | None) -> str:
    return "" if ts is None else ts.isoformat()


def full_draw(spec: ExperimentSpec) -> str:
    """The sha256 of everything a two-arm spec's draw decides."""
    ctx = DesignContext(triggers=_triggers(spec)) if spec.triggered else DesignContext()
    h = hashlib.sha256()
    h.update(spec.to_json().encode())
    for a in schedule(spec, ctx):
        blackouts = ";".join(
            f"{_t(b.start)},{_t(b.end)},{b.reason},{b.policy}" for b in a.blackouts
        )
        h.update(
            f"{a.product}|{a.period}|{a.arm.value}|{a.probability!r}|{a.policy}|"
            f"{a.window.value}|{a.matched_to}|{_t(a.blackout_until)}|{a.blackout_reason}|"
            f"{blackouts}\n".encode()
        )
    for k in range(n_periods(spec)):
        if is_empty(spec, k):
            continue
        pa = period_assignments(spec, k, ctx)
        h.update(repr(list(pa.codes)).encode())
        for t in pa.templates:
            h.update(f"{t.arm.value}|{t.probability!r}|{t.policy}|{t.window.value}|".encode())
            h.update(f"{t.matched_to}|{_t(t.blackout_until)}|{t.blackout_reason}\n".encode())
    m = design_matrices(spec, context=ctx)
    for arr in (m.treated, m.probability, m.blackout, m.washout):
        h.update(arr.tobytes())
    for p in spec.all_products():
        for k in range(n_periods(spec)):
            for lag in range(min(k, 2) + 1):
                for target in (Arm.TREATMENT, Arm.CONTROL):
                    h.update(repr(path_probability(spec, p, k, lag, target, ctx)).encode())
    return h.hexdigest()


def compute() -> dict[str, str]:
    return {name: full_draw(spec) for name, spec in cases()}


def test_two_arm_schedules_unchanged() -> None:
    want = json.loads(FIXTURE.read_text())
    got = compute()
    assert sorted(got) == sorted(want)
    moved = [name for name in want if got[name] != want[name]]
    assert not moved, f"{len(moved)} two-arm schedules moved, e.g. {moved[:5]}"


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_is_in_the_fixture(design: str) -> None:
    assert any(name.startswith(f"{design}/") for name in json.loads(FIXTURE.read_text()))


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
