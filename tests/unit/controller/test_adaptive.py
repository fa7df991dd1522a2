"""The adaptive ladder's spec block and its allocation rule (controller/adaptive.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from controller.adaptive import (
    AdaptiveAllocation,
    UniformMix,
    adaptive_step,
    effective_floor,
    next_probabilities,
    prob_best,
    top_two,
    uniform_share,
    update_periods,
)
from controller.adaptive_draw import period_arms
from controller.designs import get_design
from controller.designs.base import DesignContext, arm_index
from controller.errors import SpecError
from controller.spec import load_spec


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


ARMS = [
    {"name": "list", "policy": "p-list", "allocation": 0.4, "price_ratio": 1.0, "control": True},
    {"name": "p90", "policy": "p-90", "allocation": 0.3, "price_ratio": 0.9},
    {"name": "p110", "policy": "p-110", "allocation": 0.3, "price_ratio": 1.1},
]


#: enough products for the floor's held cells (controller.spec refuses fewer than one a period)
PRODUCTS = ["a", "b", "c", *(f"p{i:02d}" for i in range(37))]


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "id": "ladder",
        "products": PRODUCTS,
        "start": "2026-05-04",
        "end": "2026-06-01",
        "arms": ARMS,
        **extra,
    }


# ----------------------------------------------------------------------------- the spec
def test_allocation_adaptive_is_the_block_at_its_defaults_and_round_trips() -> None:
    spec = load_spec(_spec(allocation="adaptive"))
    assert spec.adaptive == AdaptiveAllocation()
    assert spec.adaptive.rule == "thompson" and spec.adaptive.floor == 0.05
    again = load_spec(spec.model_dump(mode="json"))
    assert again == spec
    assert spec.adaptive_metric() == "revenue"  # no unit costs


def test_a_fixed_ladder_dumps_without_the_key() -> None:
    assert "adaptive" not in load_spec(_spec()).model_dump(mode="json")


def test_metric_defaults_to_profit_with_costs() -> None:
    spec = load_spec(_spec(adaptive={"rule": "top_two"}, unit_costs={p: 1 for p in PRODUCTS}))
    assert spec.adaptive_metric() == "profit"


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"design": "crossover", "crossover": {"phase_periods": 7}}, "adaptive", "crossover"),
        ({"design": "time-bound"}, "adaptive", "product-period"),
        ({"adaptive": {"floor": 0.34}}, "adaptive.floor", "1 / the number of arms"),
        ({"adaptive": {"metric": "profit"}}, "adaptive.metric", "unit_costs"),
        ({"adaptive": {"uniform_mix": {"decay": 0.3}}}, "adaptive.uniform_mix.decay", "0.25"),
    ],
)
def test_refusals_are_one_sentence_naming_the_field(
    extra: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(_spec(adaptive={}) | extra)
    assert str(err.value).startswith(field + ":")
    assert words in str(err.value)


def test_cluster_fixed_and_the_shorthand_are_refused() -> None:
    clusters = {f"c{j}": PRODUCTS[j::20] for j in range(20)}  # 20 classes of 2
    base = _spec(adaptive={}, design="cluster", clusters=clusters)
    del base["products"]
    assert load_spec(base).adaptive is not None  # switchback: a class-period draw
    with pytest.raises(SpecError, match="fixed mode"):
        load_spec(base | {"cluster": {"mode": "fixed"}})
    shorthand = {
        "id": "two",
        "products": ["a"],
        "start": "2026-05-04",
        "end": "2026-06-01",
        "treatment_policy": "t",
        "control_policy": "c",
        "allocation": "adaptive",
    }
    with pytest.raises(SpecError, match="needs an arms: list"):
        load_spec(shorthand)


# ----------------------------------------------------------------------------- the rule
def test_two_arms_thompson_is_the_normal_cdf_of_the_standardised_gap() -> None:
    p = prob_best([10.0, 9.0], [0.6, 0.8])
    expected = _phi(1.0 / math.sqrt(0.6**2 + 0.8**2))  # Phi(1) = 0.8413
    assert p[0] == pytest.approx(expected, abs=1e-8)
    assert p.sum() == pytest.approx(1.0)


def test_three_arms_with_one_known_mean() -> None:
    # arm 2 known exactly at 0 (se 0); arms 0 and 1 N(1, 1) and N(0, 1) independent.
    # P(arm 2 best) = P(X0 < 0) P(X1 < 0) = Phi(-1) * 0.5
    p = prob_best([1.0, 0.0, 0.0], [1.0, 1.0, 0.0])
    assert p[2] == pytest.approx(_phi(-1.0) * 0.5, abs=1e-7)
    # equal arms split evenly
    q = prob_best([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert q == pytest.approx([1 / 3] * 3, abs=1e-7)


def test_covariance_form_is_seeded_and_agrees_with_the_exact_one() -> None:
    means, ses = [1.0, 0.5, 0.0], [0.5, 0.5, 0.5]
    exact = prob_best(means, ses)
    cov = np.diag(np.square(ses))
    mc = prob_best(means, cov=cov, seed=3, period=4)
    assert np.array_equal(mc, prob_best(means, cov=cov, seed=3, period=4))
    assert mc == pytest.approx(exact, abs=0.01)  # 20,000 draws: MC SE < 0.004


def test_top_two_closed_form() -> None:
    p = np.array([0.6, 0.3, 0.1])
    got = top_two(p, 0.5)
    # psi_a = p_a (b + (1 - b) sum_{i != a} p_i / (1 - p_i))
    r = p / (1 - p)
    want = [p[a] * (0.5 + 0.5 * (r.sum() - r[a])) for a in range(3)]
    assert got == pytest.approx(want, abs=1e-12)
    assert top_two(np.array([1.0, 0.0, 0.0]), 0.5) == pytest.approx([0.5, 0.25, 0.25])


def test_floor_and_mixture_by_hand() -> None:
    s = AdaptiveAllocation(floor=0.1, uniform_mix=UniformMix(start=0.4, decay=0.2))
    # a certain best arm: bandit (1, 0, 0); delta_1 = 0.4
    p = next_probabilities(s, [100.0, 0.0, 0.0], [1.0, 1.0, 1.0], step=1)
    mixed = np.array([0.4 / 3 + 0.6, 0.4 / 3, 0.4 / 3])
    assert p == pytest.approx(0.1 + 0.7 * mixed, abs=1e-9)
    assert p.min() == pytest.approx(effective_floor(s, 3, 1))
    # the uniform share decays as t^-0.2, never below the floor
    assert uniform_share(s, 32) == pytest.approx(0.4 * 32**-0.2)
    late = next_probabilities(s, [100.0, 0.0, 0.0], [1.0, 1.0, 1.0], step=10_000)
    assert late.min() >= 0.1 and late.min() < p.min()


def test_steps_follow_warmup_and_every() -> None:
    s = AdaptiveAllocation(warmup=3, every=2)
    assert update_periods(s, 10) == [3, 5, 7, 9]
    assert [adaptive_step(s, k) for k in range(8)] == [0, 0, 0, 1, 1, 2, 2, 3]


# ----------------------------------------------------------------------------- the draw
@pytest.mark.parametrize("design", ["random-days", "optimal-switchback", "cluster"])
def test_draw_at_the_allocations_is_the_design_s_own(design: str) -> None:
    products = [f"P{i:02d}" for i in range(12)]
    extra: dict[str, Any] = {"seed": 7}
    if design == "cluster":
        extra["clusters"] = {f"c{j}": products[j::4] for j in range(4)}
    else:
        extra["products"] = products
    if design == "optimal-switchback":
        extra["optimal_switchback"] = {"carryover_order": 2}
    spec_data = _spec(design=design, **extra)
    if design == "cluster":
        del spec_data["products"]
    spec = load_spec(spec_data)
    d = get_design(design)
    for period in range(8):
        mine = period_arms(spec, spec.all_products(), period, spec.allocations())
        theirs = [
            arm_index(spec, d.draw(spec, p, period, DesignContext())) for p in spec.all_products()
        ]
        assert mine.tolist() == theirs
    # other probabilities move cells only where the boundaries moved
    tilted = period_arms(spec, spec.all_products(), 0, [0.1, 0.1, 0.8])
    assert set(tilted.tolist()) <= {0, 1, 2}
