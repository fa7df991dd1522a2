"""An adaptive ladder's live path, the pure parts (issue #57): each period's probabilities
(controller.adaptive_draw.period_probabilities), the draw the flip makes with them
(the designs' ``DesignContext.probabilities``), the audit event and the assignment message."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from analysis.adaptive import MIN_PERIODS
from controller.adaptive import next_probabilities
from controller.adaptive_draw import (
    MIN_LOOK_PERIODS,
    period_arms,
    period_probabilities,
    update_points,
)
from controller.adaptive_flip import allocation_event, held_between
from controller.designs import DesignContext, period_assignments
from controller.schedule_cli import register
from controller.spec import ExperimentSpec, load_spec
from core.ports import AdaptiveLook
from streams.client.heatmap import product_history
from streams.worker.schemas import encode
from streams.worker.sinks import assignment_message

ARMS = [
    {"name": "list", "policy": "p-list", "allocation": 0.4, "price_ratio": 1.0, "control": True},
    {"name": "p90", "policy": "p-90", "allocation": 0.3, "price_ratio": 0.9},
    {"name": "p110", "policy": "p-110", "allocation": 0.3, "price_ratio": 1.1},
]
PRODUCTS = [f"P{i:02d}" for i in range(80)]  # the floor keeps every arm a held cell a period
AT = datetime(2026, 5, 10, tzinfo=UTC)


def _spec(design: str = "random-days", adaptive: Any = None, **extra: Any) -> ExperimentSpec:
    data: dict[str, Any] = {
        "id": "ladder",
        "products": PRODUCTS,
        "start": "2026-05-04",
        "end": "2026-06-01",  # 28 daily periods
        "arms": ARMS,
        "seed": 11,
        "design": design,
        **extra,
    }
    if design == "cluster":
        del data["products"]
        data["clusters"] = {f"c{j}": PRODUCTS[j::10] for j in range(10)}
        data["cluster"] = {"mode": "switchback"}
    if design == "optimal-switchback":
        data["optimal_switchback"] = {"carryover_order": 2}
    if adaptive is not None:
        data["adaptive"] = adaptive
    return load_spec(data)


def _look(periods: int, means: Any, var: float = 1e-8, metric: str = "revenue") -> AdaptiveLook:
    k = len(means)
    cov = tuple(tuple(var if i == j else 0.0 for j in range(k)) for i in range(k))
    return AdaptiveLook("ladder", periods, metric, tuple(map(float, means)), cov, AT)


def _reference_uniform(*key: object) -> float:
    """The keyed uniform, written out here (blake2b of the key's parts joined by 0x1f)."""
    h = hashlib.blake2b("\x1f".join(map(str, key)).encode(), digest_size=8).digest()
    return float(struct.unpack(">Q", h)[0] / float(2**64))


def _reference_pick(p: list[float], u: float) -> int:
    acc = 0.0
    for i, share in enumerate(p[:-1]):
        acc += share
        if u < acc:
            return i
    return len(p) - 1


# ----------------------------------------------------------------------------- the draw
@pytest.mark.parametrize("design", ["random-days", "optimal-switchback", "cluster"])
def test_a_period_s_probabilities_draw_each_cell_from_the_design_s_keyed_uniform(
    design: str,
) -> None:
    spec = _spec(design, adaptive={"warmup": 3})
    p = [0.1, 0.15, 0.75]
    for period in (4, 5):
        got = period_assignments(spec, period, DesignContext(probabilities={period: tuple(p)}))
        for a in got:
            if design == "random-days":
                key: tuple[object, ...] = (spec.seed, spec.id, a.product, period)
            elif design == "optimal-switchback":
                block = 4  # points 0, 4, 6, ... (m = 2): periods 4 and 5 are one block
                key = (spec.seed, spec.id, a.product, "osb", block)
            else:
                key = (spec.seed, spec.id, "class", spec.class_of(a.product), period)
            assert a.index == _reference_pick(p, _reference_uniform(*key))
            assert a.probability == pytest.approx(0.9)  # P(not control)
            assert a.arm_probabilities == (("list", 0.1), ("p90", 0.15), ("p110", 0.75))
        assert period_arms(spec, spec.all_products(), period, p).tolist() == [
            a.index
            for a in period_assignments(spec, period, DesignContext({}, None, {period: tuple(p)}))
        ]


def test_a_fixed_ladder_and_the_warmup_draw_as_before() -> None:
    fixed, adaptive = _spec(), _spec(adaptive={"warmup": 3})
    for period in range(3):
        before = period_assignments(fixed, period)
        warm = period_assignments(
            adaptive, period, DesignContext(probabilities={period: adaptive.allocations()})
        )
        assert [a.index for a in warm] == [a.index for a in before]
        assert {a.probability for a in warm} == {a.probability for a in before}
        assert all(a.arm_probabilities is None for a in before)
        assert all(
            a.arm_probabilities == (("list", 0.4), ("p90", 0.3), ("p110", 0.3)) for a in warm
        )


def test_the_washout_compares_with_the_previous_period_s_recorded_draw() -> None:
    spec = _spec(adaptive={"warmup": 3}, washout="PT2H")
    p3 = (0.05, 0.05, 0.9)
    p4 = (0.9, 0.05, 0.05)
    ctx = DesignContext(probabilities={3: p3, 4: p4})
    now = period_assignments(spec, 4, ctx)
    before = {a.product: a.index for a in period_assignments(spec, 3, ctx)}
    for a in now:
        assert (a.blackout_reason == "washout") == (a.index != before[a.product])


# ----------------------------------------------------------------------------- the probabilities
def test_warmup_periods_are_the_allocations_whatever_the_look() -> None:
    spec = _spec(adaptive={"warmup": 3})
    for t in range(3):
        got = period_probabilities(spec, t, {}, _look(0, [1, 2, 3]))
        assert got.probabilities == (0.4, 0.3, 0.3) and got.source == "warmup"


def test_an_update_follows_the_rule_on_a_clear_look_by_hand() -> None:
    """Arm p110 is certainly best (variance 1e-8): Thompson gives it 1; step 2 (period 4 of a
    warmup of 3, every 1) mixes delta = 0.5 * 2 ** -0.2 of uniform, then the floor 0.05."""
    spec = _spec(adaptive={"warmup": 3})
    got = period_probabilities(spec, 4, {3: (0.4, 0.3, 0.3)}, _look(4, [10.0, 11.0, 30.0]))
    delta = 0.5 * 2**-0.2
    mixed = np.array([delta / 3, delta / 3, delta / 3 + 1 - delta])
    expected = 0.05 + (1 - 3 * 0.05) * mixed
    assert got.source == "look" and got.step == 2 and got.look_periods == 4
    assert got.probabilities == pytest.approx(expected.tolist(), abs=1e-12)


def test_an_update_on_uncertain_numbers_is_the_rule_s() -> None:
    spec = _spec(adaptive={"warmup": 3, "rule": "top_two"})
    look = _look(3, [10.0, 10.5, 9.0], var=0.25)
    got = period_probabilities(spec, 3, {}, look)
    assert spec.adaptive is not None
    rule = next_probabilities(
        spec.adaptive, look.means, cov=np.asarray(look.cov), step=1, seed=spec.seed
    )
    assert got.probabilities == pytest.approx(rule.tolist(), abs=0)


@pytest.mark.parametrize(
    ("periods", "metric", "why"),
    [
        (5, "revenue", "period 4 among them"),  # the look of period t is never used for t
        (2, "revenue", "fewer than 3"),
        (4, "profit", "the allocation seeks the best revenue"),
    ],
)
def test_a_look_that_cannot_steer_the_period_holds_the_last_probabilities(
    periods: int, metric: str, why: str
) -> None:
    spec = _spec(adaptive={"warmup": 3})
    last = (0.2, 0.2, 0.6)
    got = period_probabilities(spec, 4, {3: last}, _look(periods, [1.0, 2.0, 3.0], metric=metric))
    assert got.source == "held" and got.probabilities == last
    assert got.why is not None and why in got.why


def test_no_look_before_the_first_update_holds_the_allocations() -> None:
    spec = _spec(adaptive={"warmup": 3})
    got = period_probabilities(spec, 3, {0: (0.4, 0.3, 0.3)}, None)
    assert got.probabilities == (0.4, 0.3, 0.3) and got.source == "held"


def test_between_updates_the_probabilities_hold_and_a_missed_update_is_made_late() -> None:
    spec = _spec(adaptive={"warmup": 3, "every": 3})  # updates at 3, 6, 9, ...
    last = (0.2, 0.2, 0.6)
    look = _look(4, [10.0, 11.0, 30.0])
    assert period_probabilities(spec, 4, {3: last}, look).probabilities == last
    assert period_probabilities(spec, 5, {3: last, 4: last}, look).source == "held"
    # period 6 missed (no flip): the flip into 7 makes its update, at 7's step
    late = period_probabilities(spec, 7, {3: last, 4: last, 5: last}, look)
    assert late.source == "look" and late.step == 2


def test_a_recorded_period_is_reused_never_recomputed() -> None:
    spec = _spec(adaptive={"warmup": 3})
    kept = (0.3, 0.3, 0.4)
    got = period_probabilities(spec, 5, {5: kept}, _look(5, [10.0, 11.0, 30.0]))
    assert got.probabilities == kept and got.source == "recorded"


def test_an_optimal_switchback_changes_only_at_its_randomisation_points() -> None:
    # m = 2, T = 28: points 0, 4, 6, 8, ..., 24 (the first and last blocks 2m long)
    spec = _spec("optimal-switchback", adaptive={"warmup": 3, "every": 3})
    assert update_points(spec) == [4, 6, 10, 12, 16, 18, 22, 24]  # 3->4, 6, 9->10, 12, ...
    look = _look(3, [10.0, 11.0, 30.0])
    alloc = (0.4, 0.3, 0.3)
    recorded: dict[int, tuple[float, ...]] = {}
    for t in range(8):
        recorded[t] = period_probabilities(spec, t, recorded, look).probabilities
    assert recorded[3] == alloc  # mid-block (period 3 of the block 2-3): held
    assert recorded[4] != alloc and recorded[5] == recorded[4]  # block 4-5: one draw
    assert recorded[6] != recorded[5]  # the update of period 6 at its point
    assert recorded[7] == recorded[6]
    # the draw within a block is one draw: every product keeps its arm
    ctx = DesignContext(probabilities=recorded)
    four = [a.index for a in period_assignments(spec, 4, ctx)]
    assert four == [a.index for a in period_assignments(spec, 5, ctx)]


def test_the_controller_s_minimum_is_the_analysis_minimum() -> None:
    assert MIN_LOOK_PERIODS == MIN_PERIODS


# ----------------------------------------------------------------------------- the edges
def test_the_audit_event_records_a_change_and_not_a_hold() -> None:
    spec = _spec(adaptive={"warmup": 3})
    rec = {0: (0.4, 0.3, 0.3), 1: (0.4, 0.3, 0.3), 2: (0.1, 0.1, 0.8)}
    assert allocation_event(spec, 0, rec) == {
        "period": 0,
        "arms": ["list", "p90", "p110"],
        "probabilities": [0.4, 0.3, 0.3],
        "previous": None,
    }
    assert allocation_event(spec, 1, rec) is None
    assert allocation_event(spec, 2, rec) == {
        "period": 2,
        "arms": ["list", "p90", "p110"],
        "probabilities": [0.1, 0.1, 0.8],
        "previous": [0.4, 0.3, 0.3],
    }
    assert allocation_event(spec, 3, rec) is None


def test_the_assignment_message_carries_the_probabilities_only_for_an_adaptive_ladder() -> None:
    p = (0.1, 0.15, 0.75)
    adaptive = period_assignments(
        _spec(adaptive={"warmup": 3}), 4, DesignContext(probabilities={4: p})
    )[0]
    raw = encode(assignment_message(adaptive, 9, "running"))
    assert b'"probabilities":{"list":0.1,"p90":0.15,"p110":0.75}' in raw
    fixed = period_assignments(_spec(), 4)[0]
    assert b"probabilities" not in encode(assignment_message(fixed, 9, "running"))


def test_pricelab_schedule_says_the_table_is_at_the_allocations(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keeps `schedule` a subcommand, as in pricelab
    path = tmp_path / "ladder.json"
    path.write_text(_spec(adaptive={"warmup": 4}).to_json())
    r = CliRunner().invoke(app, ["schedule", str(path), "--csv"])
    assert r.exit_code == 0
    assert "each period from 4 on is drawn with the probabilities the controller records" in (
        r.stderr
    )
    assert "probabilities" not in r.stdout.splitlines()[0]


def test_a_product_s_history_shows_the_recorded_probabilities_and_their_draw() -> None:
    spec = _spec(adaptive={"warmup": 3})
    p4 = (0.05, 0.05, 0.9)
    ctx = DesignContext(probabilities={k: spec.allocations() for k in range(4)} | {4: p4})
    rows = {r["period"]: r for r in product_history(spec, "P07", [], ctx)}
    assert rows[4]["probabilities"] == {"list": 0.05, "p90": 0.05, "p110": 0.9}
    u = _reference_uniform(spec.seed, spec.id, "P07", 4)
    assert rows[4]["arm"] == ["list", "p90", "p110"][_reference_pick(list(p4), u)]
    assert rows[2]["probabilities"] == {"list": 0.4, "p90": 0.3, "p110": 0.3}
    # periods not drawn yet: the allocations
    assert rows[9]["probabilities"] == {"list": 0.4, "p90": 0.3, "p110": 0.3}
    assert "probabilities" not in product_history(_spec(), "P07", [], None)[0]


def test_a_missed_period_is_drawn_in_the_context_at_the_probabilities_held_before_it() -> None:
    a, b = (0.4, 0.3, 0.3), (0.1, 0.1, 0.8)
    assert held_between({2: a, 3: b, 6: a}) == {2: a, 3: b, 4: b, 5: b, 6: a}
    assert held_between({}) == {}
