"""Property tests of the designs: determinism, allocation, crossover, blackouts, clusters, OSB."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.designs import (
    DesignContext,
    TriggerPlan,
    Window,
    arm,
    assign,
    assign_period,
    draw,
    path_probability,
    period_assignments,
    randomisation_points,
    schedule,
    trigger_plan,
    uniform,
    uniforms,
)
from controller.periods import n_periods
from controller.spec import Arm, ExperimentSpec, load_spec

FAST = settings(max_examples=15, deadline=None)
Z = 4.5  # binomial bound: a false failure has probability < 1e-5 per check


def binomial_ok(successes: int, n: int, p: float) -> bool:
    return abs(successes / n - p) <= Z * math.sqrt(p * (1 - p) / n)


BERLIN = ZoneInfo("Europe/Berlin")


def make(design: str, n_products: int = 6, days: int = 14, **kw: Any) -> ExperimentSpec:
    """A Berlin spec from 2026-03-20 over ``days`` local days (the 29th is a 23-hour day)."""
    start = datetime(2026, 3, 20, tzinfo=BERLIN)
    base: dict[str, Any] = dict(
        id="exp",
        design=design,
        products=[f"p{i}" for i in range(n_products)],
        treatment_policy="new",
        control_policy="old",
        start=start.isoformat(),
        end=(start + timedelta(days=days)).isoformat(),  # wall-clock arithmetic: local midnight
        timezone="Europe/Berlin",
        seed=1,
    )
    base.update(kw)
    if "clusters" in kw:
        base.pop("products")
    return load_spec(base)


CLUSTERS = {"c1": ["a1", "a2", "a3"], "c2": ["b1", "b2"], "c3": ["d1", "d2", "d3", "d4"]}
DESIGN_KW: dict[str, dict[str, Any]] = {
    "random-days": {},
    "time-bound": {"time_bound": {"start_period": 3}},
    "crossover": {"crossover": {"phase_periods": 3, "blackout_periods": 1}},
    "cluster": {"clusters": CLUSTERS},
    "cluster-fixed": {"clusters": CLUSTERS, "cluster": {"mode": "fixed"}},
    "optimal-switchback": {"optimal_switchback": {"carryover_order": 2}},
    "triggered": {"triggered": {"undercut_pct": 5, "window_periods": 4}},
}
TRIGGERS = DesignContext(triggers={"p0": 2, "p1": 5, "p2": 5, "p3": 12, "a1": 1, "b1": 3})


def spec_for(name: str, **kw: Any) -> ExperimentSpec:
    design = "cluster" if name.startswith("cluster") else name
    return make(design, **{**DESIGN_KW[name], **kw})


# ----------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", list(DESIGN_KW))
@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.05, 0.95))
def test_designs_are_deterministic_given_a_seed(name: str, seed: int, alloc: float) -> None:
    a = spec_for(name, seed=seed, allocation=alloc)
    b = spec_for(name, seed=seed, allocation=alloc)  # a fresh object: nothing memoised
    ra, rb = schedule(a, TRIGGERS), schedule(b, TRIGGERS)
    assert ra == rb
    # cell-by-cell recomputation, in reverse order, agrees with the bulk schedule
    for x in reversed(ra):
        assert arm(b, x.product, x.period, TRIGGERS) == (x.arm, x.probability)


@pytest.mark.parametrize("name", ["random-days", "optimal-switchback", "cluster"])
def test_different_seeds_give_different_schedules(name: str) -> None:
    arms = {tuple(a.arm for a in schedule(spec_for(name, seed=s))) for s in range(5)}
    assert len(arms) > 1


# ----------------------------------------------------------------- allocation
@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.1, 0.9))
def test_random_days_allocation_within_binomial_bound(seed: int, alloc: float) -> None:
    spec = make("random-days", n_products=40, seed=seed, allocation=alloc)
    rows = schedule(spec)
    treated = sum(a.arm == Arm.TREATMENT for a in rows)
    assert binomial_ok(treated, len(rows), alloc)
    assert all(a.probability == alloc for a in rows)


@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.1, 0.9))
def test_cluster_switchback_allocation_within_binomial_bound(seed: int, alloc: float) -> None:
    clusters = {f"c{i}": [f"c{i}-{j}" for j in range(2)] for i in range(30)}
    spec = make("cluster", clusters=clusters, seed=seed, allocation=alloc)
    draws = [arm(spec, m[0], k)[0] for m in clusters.values() for k in range(n_periods(spec))]
    assert binomial_ok(sum(d == Arm.TREATMENT for d in draws), len(draws), alloc)


@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.1, 0.9), m=st.integers(1, 3))
def test_optimal_switchback_allocation_within_binomial_bound(
    seed: int, alloc: float, m: int
) -> None:
    spec = make(
        "optimal-switchback",
        n_products=60,
        days=8,
        period="PT12H" if m != 3 else "PT8H",
        seed=seed,
        allocation=alloc,
        optimal_switchback={"carryover_order": m},
    )
    points = randomisation_points(n_periods(spec), m)
    draws = [arm(spec, p, k)[0] for p in spec.all_products() for k in points]
    assert binomial_ok(sum(d == Arm.TREATMENT for d in draws), len(draws), alloc)


@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.05, 0.95), n=st.integers(1, 30))
def test_fixed_designs_treat_the_allocated_share_of_each_stratum(
    seed: int, alloc: float, n: int
) -> None:
    # complete randomisation with randomised rounding: floor(a*n) or ceil(a*n) per stratum
    clusters = {"x": [f"x{i}" for i in range(n)], "y": [f"y{i}" for i in range(n + 3)]}
    tb = make("time-bound", clusters=clusters, seed=seed, allocation=alloc)
    xo = make(
        "crossover", clusters=clusters, seed=seed, allocation=alloc, crossover={"phase_periods": 2}
    )
    for spec, k in ((tb, n_periods(tb) - 1), (xo, 0)):
        for members in clusters.values():
            treated = sum(arm(spec, p, k)[0] == Arm.TREATMENT for p in members)
            assert math.floor(alloc * len(members)) <= treated <= math.ceil(alloc * len(members))


@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.05, 0.95), n=st.integers(1, 25))
def test_fixed_clusters_treat_the_allocated_share_of_classes(
    seed: int, alloc: float, n: int
) -> None:
    clusters = {f"c{i}": [f"c{i}-a", f"c{i}-b"] for i in range(n)}
    spec = make(
        "cluster", clusters=clusters, cluster={"mode": "fixed"}, seed=seed, allocation=alloc
    )
    treated = sum(arm(spec, m[0], 0)[0] == Arm.TREATMENT for m in clusters.values())
    assert math.floor(alloc * n) <= treated <= math.ceil(alloc * n)


@pytest.mark.parametrize("alloc", [0.3, 0.5, 0.7])
def test_randomised_rounding_gives_every_unit_probability_allocation(alloc: float) -> None:
    # 5 units, a*n not an integer: each unit's treated frequency over seeds must be a
    seeds = 1500
    counts = [0] * 5
    for seed in range(seeds):
        spec = make("time-bound", n_products=5, seed=seed, allocation=alloc)
        for i in range(5):
            counts[i] += arm(spec, f"p{i}", 0)[0] == Arm.TREATMENT
    assert all(binomial_ok(c, seeds, alloc) for c in counts), counts


def test_triggered_windows_are_treated_in_the_allocated_share() -> None:
    n = 400
    spec = make(
        "triggered", n_products=n, allocation=0.3, triggered=DESIGN_KW["triggered"]["triggered"]
    )
    ctx = DesignContext(triggers={f"p{i}": i % 10 for i in range(n)})
    treated = sum(arm(spec, f"p{i}", i % 10, ctx)[0] == Arm.TREATMENT for i in range(n))
    assert binomial_ok(treated, n, 0.3)


# ----------------------------------------------------------------- path probability
@pytest.mark.parametrize("name", list(DESIGN_KW))
@pytest.mark.parametrize("k, lag", [(0, 0), (4, 1), (6, 3), (9, 2)])
def test_path_probability_matches_the_frequency_over_seeds(name: str, k: int, lag: int) -> None:
    seeds = 400
    unit = "a1" if name.startswith("cluster") else "p0"
    if name == "triggered":
        unit = "p1"
    hits = {Arm.TREATMENT: 0, Arm.CONTROL: 0}
    probs: dict[Arm, set[float]] = {Arm.TREATMENT: set(), Arm.CONTROL: set()}
    for seed in range(seeds):
        spec = spec_for(name, seed=seed, allocation=0.6)
        path = [arm(spec, unit, s, TRIGGERS)[0] for s in range(k - lag, k + 1)]
        for target in (Arm.TREATMENT, Arm.CONTROL):
            hits[target] += all(a == target for a in path)
            probs[target].add(round(path_probability(spec, unit, k, lag, target, TRIGGERS), 12))
    for target in (Arm.TREATMENT, Arm.CONTROL):
        assert len(probs[target]) == 1  # a design quantity: the same for every seed
        p = probs[target].pop()
        if p in (0.0, 1.0):
            assert hits[target] == p * seeds
        else:
            assert binomial_ok(hits[target], seeds, p)


# ----------------------------------------------------------------- crossover
@FAST
@given(
    seed=st.integers(0, 2**31),
    phase=st.integers(1, 5),
    blackout=st.integers(0, 4),
    washout_h=st.integers(0, 23),
)
def test_crossover_phases_swap_and_blackout_covers_phase_starts(
    seed: int, phase: int, blackout: int, washout_h: int
) -> None:
    blackout = min(blackout, phase - 1)
    spec = make(
        "crossover",
        seed=seed,
        washout=timedelta(hours=washout_h),
        crossover={"phase_periods": phase, "blackout_periods": blackout},
    )
    t = n_periods(spec)
    for p in spec.all_products():
        rows = [assign(spec, p, k) for k in range(t)]
        for k in range(1, t):
            same_phase = k // phase == (k - 1) // phase
            assert (rows[k].arm == rows[k - 1].arm) == same_phase
        for a in rows:
            phase_bo = [b for b in a.blackouts if b.reason == "phase-blackout"]
            if a.period % phase < blackout:
                assert phase_bo and phase_bo[0].start == a.period_start
                assert phase_bo[0].end == a.period_end
            else:
                assert not phase_bo
    groups = {tuple(arm(spec, p, k)[0] for k in range(t)) for p in spec.all_products()}
    assert len(groups) <= 2


# ----------------------------------------------------------------- washout
@pytest.mark.parametrize("name", list(DESIGN_KW))
@FAST
@given(seed=st.integers(0, 2**31), washout_h=st.integers(1, 23))
def test_washout_covers_exactly_the_configured_time_after_each_switch(
    name: str, seed: int, washout_h: int
) -> None:
    washout = timedelta(hours=washout_h)
    spec = spec_for(name, seed=seed, washout=washout)
    rows = schedule(spec, TRIGGERS)
    by = {(a.product, a.period): a for a in rows}
    for a in rows:
        prev = by.get((a.product, a.period - 1))
        opened = prev is not None and prev.window == Window.PENDING and a.window != Window.PENDING
        switched = prev is None or prev.arm != a.arm or opened
        wash = [b for b in a.blackouts if b.reason == "washout"]
        if switched:
            assert len(wash) == 1
            # elapsed time, also on the 23-hour DST day (2026-03-29 in Berlin)
            assert wash[0].start == a.period_start
            assert wash[0].end - wash[0].start == washout
            assert a.in_blackout(a.period_start + washout - timedelta(seconds=1))
        else:
            assert not wash
        if not a.blackouts:
            assert a.blackout_until is None and not a.in_blackout(a.period_start)


def test_no_washout_configured_means_no_washout_blackout() -> None:
    spec = make("random-days")
    assert all(not a.blackouts and a.blackout_until is None for a in schedule(spec))


# ----------------------------------------------------------------- clusters
@pytest.mark.parametrize("mode", ["switchback", "fixed"])
@FAST
@given(seed=st.integers(0, 2**31), alloc=st.floats(0.05, 0.95))
def test_cluster_members_always_share_an_arm(mode: str, seed: int, alloc: float) -> None:
    spec = make("cluster", clusters=CLUSTERS, cluster={"mode": mode}, seed=seed, allocation=alloc)
    for k in range(n_periods(spec)):
        for members in CLUSTERS.values():
            assert len({arm(spec, p, k) for p in members}) == 1
    if mode == "fixed":
        for members in CLUSTERS.values():
            assert len({arm(spec, members[0], k) for k in range(n_periods(spec))}) == 1


# ----------------------------------------------------------------- optimal switchback
@pytest.mark.parametrize(
    "t, m, published_1_based",
    [
        (12, 2, [1, 5, 7, 9]),
        (20, 4, [1, 9, 13]),
        (8, 2, [1, 5]),
        (12, 3, [1, 7]),
        (5, 0, [1, 2, 3, 4, 5]),
        (28, 1, [1] + list(range(3, 28))),  # m = 1: every period but the 2nd
    ],
)
def test_optimal_switchback_points_match_the_published_construction(
    t: int, m: int, published_1_based: list[int]
) -> None:
    assert randomisation_points(t, m) == [x - 1 for x in published_1_based]


@pytest.mark.parametrize("t, m", [(10, 3), (6, 2), (0, 1)])
def test_optimal_switchback_points_refuse_lengths_the_construction_cannot_cover(
    t: int, m: int
) -> None:
    with pytest.raises(ValueError):
        randomisation_points(t, m)


@FAST
@given(seed=st.integers(0, 2**31), m=st.integers(0, 3))
def test_optimal_switchback_arms_change_only_at_randomisation_points(seed: int, m: int) -> None:
    spec = make(
        "optimal-switchback",
        n_products=12,
        period="PT6H" if m != 3 else "PT4H",
        days=8,
        seed=seed,
        optimal_switchback={"carryover_order": m},
    )
    t = n_periods(spec)
    points = set(randomisation_points(t, m))
    assert len(points) == (t if m == 0 else t // m - 2)
    for p in spec.all_products():
        arms = [arm(spec, p, k)[0] for k in range(t)]
        changes = {k for k in range(1, t) if arms[k] != arms[k - 1]}
        assert changes <= points


def test_optimal_switchback_draws_are_fresh_at_each_point() -> None:
    # independent draws: consecutive blocks agree about half the time with fair coins
    spec = make(
        "optimal-switchback",
        n_products=400,
        period="PT6H",
        days=8,
        optimal_switchback={"carryover_order": 2},
    )
    points = randomisation_points(n_periods(spec), 2)
    same = n = 0
    for p in spec.all_products():
        for a, b in zip(points, points[1:], strict=False):
            same += arm(spec, p, a)[0] == arm(spec, p, b)[0]
            n += 1
    assert binomial_ok(same, n, 0.5)


# ----------------------------------------------------------------- time-bound
def test_time_bound_is_control_before_start_and_fixed_after() -> None:
    spec = make("time-bound", n_products=10, washout="PT3H", time_bound={"start_period": 4})
    for p in spec.all_products():
        rows = [assign(spec, p, k) for k in range(n_periods(spec))]
        assert all(
            a.arm == Arm.CONTROL and a.probability == 0 and a.window == Window.PENDING
            for a in rows[:4]
        )
        assert len({a.arm for a in rows[4:]}) == 1
        assert all(a.probability == 0.5 and a.window == Window.RANDOMISED for a in rows[4:])
        # the window opening is a washout for both arms; nothing after it
        assert [a.period for a in rows if a.blackouts] == [0, 4]


# ----------------------------------------------------------------- triggered
TRIG = {"undercut_pct": 5, "window_periods": 3, "matched_control": True}


def test_triggered_window_state_around_the_trigger() -> None:
    spec = make("triggered", n_products=3, triggered={"undercut_pct": 5, "window_periods": 3})
    ctx = DesignContext(triggers={"p0": 4})
    states = [draw(spec, "p0", k, ctx) for k in range(n_periods(spec))]
    assert [d.window for d in states] == (
        [Window.PENDING] * 4 + [Window.RANDOMISED] * 3 + [Window.ENDED] * (n_periods(spec) - 7)
    )
    assert all(d.arm == Arm.CONTROL and d.probability == 0 for d in states[:4] + states[7:])
    assert len({d.arm for d in states[4:7]}) == 1 and states[4].probability == 0.5
    # never triggered: pending throughout
    assert all(draw(spec, "p1", k, ctx).window == Window.PENDING for k in range(n_periods(spec)))


@FAST
@given(
    seed=st.integers(0, 2**31),
    triggers=st.dictionaries(
        st.sampled_from(["a1", "a2", "a3", "b1", "b2", "d1", "d2", "d3", "d4"]), st.integers(0, 13)
    ),
)
def test_matched_control_is_an_untriggered_product_of_the_same_class(
    seed: int, triggers: dict[str, int]
) -> None:
    spec = make("triggered", clusters=CLUSTERS, seed=seed, triggered=TRIG)
    plan = trigger_plan(spec, triggers)
    for q, w in plan.items():
        if w.kind == Window.MATCHED:
            p = w.matched_to
            assert p is not None and plan[p].arm == Arm.TREATMENT and plan[p].start == w.start
            assert spec.class_of(p) == spec.class_of(q)
            assert triggers.get(q, 99) > w.start  # q had not triggered by then
            assert all(
                draw(spec, q, k, DesignContext(triggers)).arm == Arm.CONTROL
                for k in range(n_periods(spec))
            )
    for p, w in plan.items():
        matched = [q for q, x in plan.items() if x.matched_to == p]
        if w.kind != Window.RANDOMISED or w.arm != Arm.TREATMENT:
            assert not matched
            continue
        assert len(matched) <= 1
        if not matched:  # nobody was free: every classmate had triggered or held a window
            for q in CLUSTERS[spec.class_of(p) or ""]:
                if q != p:
                    assert triggers.get(q, 99) <= w.start or (
                        q in plan and plan[q].start <= w.start
                    )


@FAST
@given(
    seed=st.integers(0, 2**31),
    triggers=st.dictionaries(
        st.sampled_from(["a1", "a2", "a3", "b1", "b2", "d1", "d2"]), st.integers(0, 13), min_size=1
    ),
    late=st.integers(0, 13),
    who=st.sampled_from(["a1", "a2", "a3", "b1", "b2", "d1", "d2", "d3", "d4"]),
)
def test_triggered_plan_never_changes_the_past(
    seed: int, triggers: dict[str, int], late: int, who: str
) -> None:
    # live decisions are final: a trigger arriving at period `late` changes nothing before it
    if who in triggers or late < max(triggers.values()):
        return
    spec = make("triggered", clusters=CLUSTERS, seed=seed, triggered=TRIG)
    before = DesignContext(triggers)
    after = DesignContext({**triggers, who: late})
    for p in spec.all_products():
        for k in range(late):
            assert draw(spec, p, k, before) == draw(spec, p, k, after)


# live trigger plans: incremental, and equal to the plan rebuilt from all triggers
CLASSMATES = [q for members in CLUSTERS.values() for q in members]
ARRIVAL = st.tuples(
    st.sampled_from(CLASSMATES + ["zz"]),  # "zz" is not a unit
    st.integers(-1, 15),  # 14 periods: -1 and 14, 15 are outside the experiment
)


def _plan_matches(plan: TriggerPlan) -> dict[str, str]:
    return {w.matched_to: q for q, w in plan.windows.items() if w.matched_to is not None}


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    matched=st.booleans(),
    clustered=st.booleans(),
    arrivals=st.lists(ARRIVAL, max_size=25),
    cuts=st.sets(st.integers(0, 25)),
)
def test_incremental_trigger_plan_equals_the_rebuilt_plan(
    seed: int,
    matched: bool,
    clustered: bool,
    arrivals: list[tuple[str, int]],
    cuts: set[int],
) -> None:
    # arrivals in any order: late triggers of earlier periods, several per batch, a product's
    # trigger restated or changed, triggers outside the experiment and of unknown products
    if clustered:
        spec = make(
            "triggered",
            clusters=CLUSTERS,
            seed=seed,
            triggered={**TRIG, "matched_control": matched},
        )
    else:
        spec = make(
            "triggered", n_products=9, seed=seed, triggered=TRIG | {"matched_control": False}
        )
        arrivals = [(f"p{CLASSMATES.index(p) if p in CLASSMATES else 99}", t) for p, t in arrivals]
    plan = TriggerPlan(spec)
    seen: dict[str, int] = {}
    bounds = sorted({0, len(arrivals)} | {c for c in cuts if c < len(arrivals)})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        batch = dict(arrivals[lo:hi])
        seen.update(batch)
        plan.update(batch)
        assert plan.windows == trigger_plan(spec, seen)
        assert plan.matches == _plan_matches(plan)
        assert plan.triggers == seen
    assert TriggerPlan(spec, seen).windows == trigger_plan(spec, seen)


@FAST
@given(
    seed=st.integers(0, 2**31),
    steps=st.lists(st.dictionaries(st.sampled_from(CLASSMATES), st.integers(0, 13)), max_size=6),
)
def test_designs_read_the_plan_of_their_own_context(seed: int, steps: list[dict[str, int]]) -> None:
    # contexts that grow, shrink or repeat (the spec keeps the last plan and extends it)
    spec = make("triggered", clusters=CLUSTERS, seed=seed, triggered=TRIG)
    contexts = []
    triggers: dict[str, int] = {}
    for i, step in enumerate(steps):
        triggers = {**triggers, **step} if i % 3 != 2 else dict(step)
        contexts.append(DesignContext(triggers))
    for ctx in contexts[::-1] + contexts:
        ref = trigger_plan(spec, ctx.triggers)
        for q in CLASSMATES:
            w = ref.get(q)
            if w is None:
                assert draw(spec, q, 13, ctx).window == Window.PENDING
            else:
                d = draw(spec, q, w.start, ctx)
                assert (d.arm, d.window, d.matched_to) == (w.arm, w.kind, w.matched_to)
                assert draw(spec, q, w.start - 1, ctx).window == Window.PENDING


# whole periods at once: the same assignments as product by product
@settings(max_examples=60, deadline=None)
@given(
    prefix=st.lists(st.one_of(st.integers(), st.text(max_size=8)), max_size=3),
    units=st.lists(st.text(max_size=12), max_size=20),
    suffix=st.lists(st.one_of(st.integers(-5, 10**6), st.text(max_size=5)), max_size=3),
)
def test_vectorised_draws_equal_the_scalar_draws_bit_for_bit(
    prefix: list[object], units: list[str], suffix: list[object]
) -> None:
    got = uniforms(prefix, units, suffix)
    assert got.dtype == np.float64
    assert [float(x) for x in got] == [uniform(*prefix, u, *suffix) for u in units]


@pytest.mark.parametrize("name", list(DESIGN_KW))
@FAST
@given(
    seed=st.integers(0, 2**31),
    alloc=st.floats(0.05, 0.95),
    washout_h=st.sampled_from([0, 3]),
    periods=st.lists(st.integers(0, 13), min_size=1, max_size=4),
)
def test_whole_period_assignments_equal_product_by_product(
    name: str, seed: int, alloc: float, washout_h: int, periods: list[int]
) -> None:
    spec = spec_for(name, seed=seed, allocation=alloc, washout=f"PT{washout_h}H")
    for k in periods:  # in any order: the flip keeps the last periods' draws with the spec
        whole = period_assignments(spec, k, TRIGGERS)
        by_product = assign_period(spec, k, TRIGGERS)
        assert list(whole) == by_product
        assert whole[len(whole) - 1] == by_product[-1] and whole[1:3] == by_product[1:3]
        # a product-independent change applies to every product
        stamped = whole.map(lambda a: replace(a, policy=a.policy + "!"))
        assert [a.policy for a in stamped] == [a.policy + "!" for a in by_product]
        assert [a.product for a in stamped] == spec.all_products()
