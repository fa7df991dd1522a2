"""k-arm draws: every design draws each arm with its allocation, from one source of truth.

Statistics are checked against what the design promises, never against figures the code under
test computed: marginals against the spec's allocations (exactly where the draw can be
enumerated; elsewhere within Z = 4.5 binomial standard errors over many seeds, a false failure
having probability below 1e-5 per check), path probabilities against the frequencies of the
draws themselves, the Williams design against its defining balance.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from controller.designs import (
    DesignContext,
    assign,
    design_matrices,
    draw,
    path_probability,
    period_assignments,
    schedule,
)
from controller.designs.base import (
    arm_index,
    categorical,
    complete_split,
    cumulative,
    get_design,
    pick,
    pick_many,
)
from controller.designs.crossover import williams
from controller.errors import SpecError
from controller.periods import n_periods
from controller.spec import Arm, ExperimentSpec, load_spec

Z = 4.5
UTC = ZoneInfo("UTC")
THREE = (0.5, 0.3, 0.2)  # control first
FOUR = (0.1, 0.2, 0.3, 0.4)  # control last
CLUSTERS = {f"c{i}": [f"c{i}p{j}" for j in range(2 + i % 3)] for i in range(8)}


def binomial_ok(successes: int, n: int, p: float) -> bool:
    return abs(successes / n - p) <= Z * math.sqrt(p * (1 - p) / n)


def arm_list(alloc: tuple[float, ...], control: int) -> list[dict[str, Any]]:
    return [
        {"name": f"arm{i}", "policy": f"pol{i}", "allocation": a, "control": i == control}
        for i, a in enumerate(alloc)
    ]


def k_spec(
    design: str,
    alloc: tuple[float, ...] = THREE,
    control: int = 0,
    days: int = 12,
    seed: int = 0,
    **kw: Any,
) -> ExperimentSpec:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    base: dict[str, Any] = {
        "id": "karm",
        "design": design,
        "arms": arm_list(alloc, control),
        "start": start,
        "end": start + timedelta(days=days),
        "seed": seed,
    }
    if "clusters" not in kw:
        base["products"] = [f"p{i}" for i in range(kw.pop("n", 12))]
    return load_spec(base | kw)


DESIGNS: dict[str, dict[str, Any]] = {
    "random-days": {},
    "cluster": {"clusters": CLUSTERS},
    "cluster-fixed": {"clusters": CLUSTERS, "cluster": {"mode": "fixed"}},
    "optimal-switchback": {"optimal_switchback": {"carryover_order": 2}},
    "time-bound": {"time_bound": {"start_period": 2}},
    "triggered": {"triggered": {"undercut_pct": 5, "window_periods": 3}},
    "crossover": {"crossover": {"phase_periods": 3, "blackout_periods": 1}},
}


def design_spec(name: str, alloc: tuple[float, ...], control: int, seed: int) -> ExperimentSpec:
    kw = dict(DESIGNS[name])
    design = "cluster" if name.startswith("cluster") else name
    return k_spec(design, alloc, control, seed=seed, **kw)


def context(spec: ExperimentSpec) -> DesignContext:
    if spec.triggered is None:
        return DesignContext()
    return DesignContext(triggers={p: i % 5 for i, p in enumerate(spec.all_products())})


def indices(spec: ExperimentSpec, k: int, ctx: DesignContext) -> np.ndarray:
    """Each product's arm index in period k, from the flip's whole-period draws."""
    codes, draws = get_design(spec.design).period_draws(spec, spec.all_products(), k, ctx)
    return np.array([arm_index(spec, d) for d in draws])[codes]


def independent_draws(name: str, spec: ExperimentSpec) -> float:
    """How many independent draws make a seed's cells: a unit drawn once (complete
    randomisation within strata only lowers the variance of the pooled share) or per period
    (cluster switchback: per class; optimal switchback: per block). A class's draw weighs as
    many cells as it has products: its effective number is (sum w)^2 / sum w^2."""
    t = n_periods(spec)
    sizes = [len(m) for m in spec.clusters.values()]
    classes = sum(sizes) ** 2 / sum(w * w for w in sizes) if sizes else 0.0
    if name == "random-days":
        return len(spec.all_products()) * t
    if name == "optimal-switchback":
        return len(spec.all_products()) * (t // 2 - 2)  # m = 2: blocks of 2, the ends 4 long
    if name == "cluster":
        return classes * t
    if name == "cluster-fixed":
        return classes
    return len(spec.all_products())


# ----------------------------------------------------------------------------- the draws
@pytest.mark.parametrize("alloc", [THREE, FOUR, (0.25, 0.25, 0.25, 0.25), (0.001, 0.999)])
def test_the_categorical_draw_gives_each_arm_its_allocation_exactly(
    alloc: tuple[float, ...],
) -> None:
    # exact enumeration: u on the grid (j + 1/2) / M of U[0, 1) for M a multiple of every
    # allocation's denominator; each arm gets allocation x M grid points
    m = 10_000
    grid = (np.arange(m) + 0.5) / m
    cum = cumulative(alloc)
    got = Counter(pick(cum, float(u)) for u in grid)
    assert [got[i] for i in range(len(alloc))] == [round(a * m) for a in alloc]
    assert pick_many(cum, grid).tolist() == [pick(cum, float(u)) for u in grid]
    assert pick(cum, 0.0) == 0 and pick(cum, 1.0 - 2**-53) == len(alloc) - 1


@pytest.mark.parametrize(("alloc", "control"), [(THREE, 0), (FOUR, 3)])
def test_keyed_categorical_draws_are_uniform_over_arms(
    alloc: tuple[float, ...], control: int
) -> None:
    spec = k_spec("random-days", alloc, control)
    n = 60_000
    got = Counter(categorical(spec, f"u{i}", 0) for i in range(n))
    for i, a in enumerate(alloc):
        assert binomial_ok(got[i], n, a), (i, got[i] / n, a)


@pytest.mark.parametrize("alloc", [THREE, FOUR, (0.2,) * 5, (1 / 3,) * 3, (0.15, 0.35, 0.5)])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 23])
def test_complete_split_counts_are_within_one_of_allocation_times_n(
    alloc: tuple[float, ...], n: int
) -> None:
    strata = {"s": tuple(f"u{i}" for i in range(n)), "t": tuple(f"v{i}" for i in range(n + 1))}
    for seed in range(40):
        spec = k_spec("random-days", (0.5, 0.5), seed=seed)
        split = complete_split(spec, strata, "test", alloc)
        for units in strata.values():
            counts = Counter(split[u] for u in units)
            for g, a in enumerate(alloc):
                assert abs(counts[g] - a * len(units)) < 1, (seed, counts, alloc)


@pytest.mark.parametrize("alloc", [THREE, FOUR])
def test_complete_split_gives_every_unit_each_arm_with_its_allocation(
    alloc: tuple[float, ...],
) -> None:
    # every unit of a stratum of 7 is in arm g with probability a_g, over 3,000 seeds
    units = tuple(f"u{i}" for i in range(7))
    seeds = 3000
    base = k_spec("random-days", (0.5, 0.5))
    got: dict[str, Counter[int]] = {u: Counter() for u in units}
    for seed in range(seeds):
        split = complete_split(base.model_copy(update={"seed": seed}), {"": units}, "m", alloc)
        for u in units:
            got[u][split[u]] += 1
    for u in units:
        for g, a in enumerate(alloc):
            assert binomial_ok(got[u][g], seeds, a), (u, g, got[u][g] / seeds, a)


# ----------------------------------------------------------------------------- every design
@pytest.mark.parametrize("name", list(DESIGNS))
@pytest.mark.parametrize(("alloc", "control"), [(THREE, 0), (FOUR, 3)])
def test_each_design_draws_each_arm_with_its_allocation(
    name: str, alloc: tuple[float, ...], control: int
) -> None:
    if name == "crossover":  # a Williams design needs equal allocations
        alloc = (1 / len(alloc),) * len(alloc)
    seeds = 150
    counts = np.zeros(len(alloc))
    independent = 0.0
    for seed in range(seeds):
        spec = design_spec(name, alloc, control, seed)
        ctx = context(spec)
        for k in range(n_periods(spec)):
            idx = indices(spec, k, ctx)
            pa = period_assignments(spec, k, ctx)
            randomised = np.array([a.probability > 0 for a in pa])
            counts += np.bincount(idx[randomised], minlength=len(alloc))
        independent += independent_draws(name, spec)
    total = counts.sum()
    assert total > 0
    for i, a in enumerate(alloc):
        # the cells' arm shares: the binomial SE of the independent draws bounds their error
        assert abs(counts[i] / total - a) <= Z * math.sqrt(a * (1 - a) / independent), (
            name, i, counts[i] / total, a,
        )  # fmt: skip


@pytest.mark.parametrize("name", list(DESIGNS))
def test_scalar_and_whole_period_draws_agree_with_k_arms(name: str) -> None:
    alloc = (0.25,) * 4 if name == "crossover" else FOUR
    spec = design_spec(name, alloc, 3, seed=5)
    ctx = context(spec)
    for k in range(n_periods(spec)):
        idx = indices(spec, k, ctx)
        pa = period_assignments(spec, k, ctx)
        for i, p in enumerate(spec.all_products()):
            d = draw(spec, p, k, ctx)
            assert arm_index(spec, d) == idx[i]
            assert d.arm == (Arm.CONTROL if idx[i] == 3 else Arm.TREATMENT)
            a = assign(spec, p, k, ctx)
            assert a == pa[i] and a.policy == f"pol{idx[i]}"


@pytest.mark.parametrize("name", list(DESIGNS))
def test_path_probabilities_over_all_arms_sum_to_one(name: str) -> None:
    alloc = (1 / 3,) * 3 if name == "crossover" else THREE
    spec = design_spec(name, alloc, 0, seed=2)
    ctx = context(spec)
    for p in spec.all_products()[:5]:
        for k in range(n_periods(spec)):
            one = [path_probability(spec, p, k, 0, i, ctx) for i in range(3)]
            assert math.isclose(sum(one), 1.0, abs_tol=1e-12), (p, k, one)
            for lag in range(1, min(k, 3) + 1):
                total = sum(path_probability(spec, p, k, lag, i, ctx) for i in range(3))
                assert total <= 1.0 + 1e-12  # P(the arm stays one arm over the window)


@pytest.mark.parametrize("name", ["random-days", "optimal-switchback", "time-bound", "crossover",
                                  "cluster-fixed"])  # fmt: skip
def test_path_probabilities_match_the_frequency_of_the_draws(name: str) -> None:
    """P(arms in k-lag..k all equal arm j) against how often the draws over 1,500 seeds make
    it so (each product-window a draw; cells of one seed share draws, so the bound uses the
    number of seeds)."""
    alloc = (1 / 3,) * 3 if name == "crossover" else THREE
    seeds, lag = 1500, 2
    base = design_spec(name, alloc, 0, seed=0)
    product, windows = base.all_products()[0], [2, 3, 6, 7, 8]
    hits: Counter[tuple[int, int]] = Counter()
    for seed in range(seeds):
        spec = base.model_copy(update={"seed": seed})
        arms_of = [arm_index(spec, draw(spec, product, s)) for s in range(n_periods(spec))]
        for k in windows:
            path = set(arms_of[k - lag : k + 1])
            if len(path) == 1:
                hits[(k, path.pop())] += 1
    for k in windows:
        for j in range(3):
            p = path_probability(base, product, k, lag, j)
            assert binomial_ok(hits[(k, j)], seeds, p), (k, j, hits[(k, j)] / seeds, p)


# ----------------------------------------------------------------------------- crossover
@pytest.mark.parametrize("k", range(2, 9))
def test_the_williams_design_is_balanced_for_first_order_carryover(k: int) -> None:
    rows = williams(k)
    assert len(rows) == (2 * k if k % 2 else k)
    for row in rows:
        assert sorted(row) == list(range(k))  # each row visits every arm once
    for col in range(k):
        assert Counter(r[col] for r in rows) == Counter({a: len(rows) // k for a in range(k)})
    pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(k - 1))
    distinct = list(itertools.permutations(range(k), 2))
    assert set(pairs) == set(distinct)
    assert len(set(pairs.values())) == 1  # each ordered pair adjacent equally often
    assert pairs[distinct[0]] == (2 if k % 2 else 1)


def test_a_two_arm_williams_design_is_the_two_groups() -> None:
    assert williams(2) == ((0, 1), (1, 0))


@pytest.mark.parametrize("k", [3, 4])
def test_a_k_arm_crossover_rotates_every_product_through_every_arm(k: int) -> None:
    spec = k_spec("crossover", (1 / k,) * k, 0, days=4 * k, washout="PT2H",
                  crossover={"phase_periods": 4, "blackout_periods": 1})  # fmt: skip
    rows = set(williams(k))
    index_of = {a.policy: i for i, a in enumerate(spec.arm_list())}
    by_product: dict[str, list[int]] = {}
    for a in schedule(spec):
        by_product.setdefault(a.product, []).append(index_of[a.policy])
        first_of_phase = a.period % 4 == 0
        # the design blackout and the washout open every phase (every product changes arm)
        reasons = {b.reason for b in a.blackouts}
        assert ("phase-blackout" in reasons) == first_of_phase
        assert ("washout" in reasons) == first_of_phase
    for arms in by_product.values():
        assert tuple(arms[::4]) in rows and len(set(arms[::4])) == k


def test_a_k_arm_crossover_refuses_unequal_allocations_or_too_few_phases() -> None:
    with pytest.raises(SpecError) as info:
        k_spec("crossover", THREE, crossover={"phase_periods": 3})
    text = str(info.value)
    assert text.startswith("arms: a crossover of 3 arms needs equal allocations")
    assert "0.5, 0.3, 0.2" in text and len(text.splitlines()) == 1
    with pytest.raises(SpecError) as info:
        k_spec("crossover", (0.25,) * 4, days=10, crossover={"phase_periods": 3})
    assert str(info.value) == (
        "crossover.phase_periods: a crossover of 4 arms needs equal allocations and at least 4 "
        "phases (12 periods) in the experiment (10 periods)"
    )


# ----------------------------------------------------------------------------- washout
def test_a_switch_between_two_arms_that_are_not_control_opens_the_washout() -> None:
    spec = k_spec("random-days", THREE, 0, washout="PT3H", n=40)
    seen = 0
    for k in range(1, n_periods(spec)):
        pa = period_assignments(spec, k)
        for p, a in zip(spec.all_products(), pa, strict=True):
            before = arm_index(spec, draw(spec, p, k - 1))
            now = arm_index(spec, draw(spec, p, k))
            washed = any(b.reason == "washout" for b in a.blackouts)
            assert washed == (before != now), (p, k, before, now)
            assert assign(spec, p, k) == a
            seen += before != now and 0 not in (before, now)
    assert seen > 20  # there were switches between the two arms that are not control


@pytest.mark.parametrize("name", list(DESIGNS))
def test_spillover_is_not_identified_with_more_than_two_arms(name: str) -> None:
    alloc = (1 / 3,) * 3 if name == "crossover" else THREE
    spec = design_spec(name, alloc, 0, seed=0)
    design = get_design(spec.design)
    assert design.spillover(spec) is None
    note = design.spillover_note(spec)
    assert note is not None and "more than two arms" in note


@pytest.mark.parametrize("name", list(DESIGNS))
def test_the_design_matrices_of_k_arms_are_the_flips_draws(name: str) -> None:
    # the simulator and the planner read k arms from the design matrices: each cell's arm is
    # the one the flip assigns, ``treated`` is "not the control", the probability the flip's
    alloc = (0.25,) * 4 if name == "crossover" else FOUR
    spec = design_spec(name, alloc, 3, seed=7)
    ctx = context(spec)
    m = design_matrices(spec, context=ctx)
    seen = set()
    for k in range(n_periods(spec)):
        pa = period_assignments(spec, k, ctx)
        assert m.arm[:, k].tolist() == indices(spec, k, ctx).tolist()
        assert m.treated[:, k].tolist() == [a.index != 3 for a in pa]
        assert m.probability[:, k].tolist() == [a.probability for a in pa]
        seen |= set(m.arm[:, k][m.analysed[:, k]].tolist())
    assert len(seen) > 2  # more than two arms in the analysed cells (seed 7)
