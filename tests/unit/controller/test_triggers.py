"""TriggerTracker: undercut by >= x% sustained >= k minutes, first fire only, deterministic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.designs import DesignContext, Window, draw
from controller.periods import period_index
from controller.spec import ExperimentSpec, load_spec
from controller.triggers import TriggerTracker

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def spec(**rule: Any) -> ExperimentSpec:
    return load_spec(
        dict(
            id="trig",
            design="triggered",
            products=["a", "b", "c"],
            treatment_policy="t",
            control_policy="c",
            start=T0.isoformat(),
            end=(T0 + timedelta(days=10)).isoformat(),
            period="PT6H",
            triggered={"undercut_pct": 10, "sustained_minutes": 30, "window_periods": 4, **rule},
        )
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_fires_after_the_undercut_is_sustained() -> None:
    tr = TriggerTracker(spec())
    assert tr.observe_reference("a", 100.0, at(0)) is None
    assert tr.observe_competitor("a", "x", 91.0, at(5)) is None  # 9%: not enough
    assert tr.observe_competitor("a", "x", 90.0, at(10)) is None  # exactly 10%: starts the clock
    assert tr.advance(at(39)) == []
    fires = tr.advance(at(40))
    assert [f.product for f in fires] == ["a"]
    f = fires[0]
    assert f.fired_at == at(40) and f.undercut_since == at(10) and f.competitor == "x"
    # the window opens at the next 6-hour boundary
    assert f.period == period_index(tr.spec, at(40)) + 1 == 1
    assert tr.triggers == {"a": 1}
    # first fire only
    tr.observe_competitor("a", "x", 100.0, at(50))
    tr.observe_competitor("a", "x", 50.0, at(60))
    assert tr.advance(at(600)) == [] and tr.triggers == {"a": 1}


def test_an_interruption_restarts_the_clock() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(0))
    tr.observe_competitor("a", "x", 80.0, at(0))
    tr.observe_competitor("a", "x", 95.0, at(29))  # back up before 30 minutes
    assert tr.observe_competitor("a", "x", 85.0, at(31)) is None
    assert tr.advance(at(60)) == []
    assert tr.advance(at(61))[0].fired_at == at(61)


def test_a_late_poll_still_fires_at_the_due_instant() -> None:
    # the undercut lasted 45 minutes, then ended; nobody polled in between
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(0))
    tr.observe_competitor("a", "x", 80.0, at(0))
    fire = tr.observe_competitor("a", "x", 99.0, at(45))
    assert fire is not None and fire.fired_at == at(30)


def test_lowest_competitor_counts_and_unlisted_competitors_are_ignored() -> None:
    tr = TriggerTracker(spec(competitors=["x", "y"]))
    tr.observe_reference("a", 100.0, at(0))
    tr.observe_competitor("a", "z", 10.0, at(0))  # not in the rule
    assert tr.advance(at(100)) == []
    tr.observe_competitor("a", "x", 95.0, at(100))
    tr.observe_competitor("a", "y", 89.0, at(110))
    f = tr.advance(at(140))
    assert f and f[0].competitor == "y" and f[0].undercut_since == at(110)


def test_a_reference_price_drop_can_end_the_undercut() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(0))
    tr.observe_competitor("a", "x", 88.0, at(0))
    tr.observe_reference("a", 95.0, at(20))  # 88 is now 7.4% below
    assert tr.advance(at(200)) == []


def test_time_before_the_experiment_does_not_count() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(-120))
    tr.observe_competitor("a", "x", 50.0, at(-120))
    assert tr.advance(at(29)) == []
    assert tr.advance(at(30))[0].fired_at == at(30)


def test_stale_events_are_ignored_and_counted() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(10))
    assert tr.observe_competitor("a", "x", 50.0, at(5)) is None
    assert tr.stale == 1
    tr.advance(at(100))
    tr.observe_competitor("b", "x", 50.0, at(99))
    assert tr.stale == 2


def test_fires_after_the_end_or_without_a_window_are_dropped() -> None:
    tr = TriggerTracker(spec())
    end = tr.spec.end
    tr.observe_reference("a", 100.0, end - timedelta(hours=2))
    tr.observe_competitor("a", "x", 50.0, end - timedelta(hours=2))
    # due inside the last period: its window would open after the experiment
    assert tr.advance(end - timedelta(minutes=1)) == []
    tr.observe_reference("b", 100.0, end - timedelta(minutes=10))
    tr.observe_competitor("b", "x", 50.0, end - timedelta(minutes=10))
    assert tr.advance(end + timedelta(hours=1)) == []


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_prices_are_refused(bad: float) -> None:
    tr = TriggerTracker(spec())
    with pytest.raises(ValueError):
        tr.observe_competitor("a", "x", bad, at(0))
    with pytest.raises(ValueError):
        tr.observe_reference("a", bad, at(0))


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        TriggerTracker(spec()).observe_reference("a", 1.0, datetime(2026, 6, 1))


def test_fires_feed_the_design() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("b", 100.0, at(0))
    tr.observe_competitor("b", "x", 50.0, at(0))
    (fire,) = tr.advance(at(30))
    ctx = DesignContext(triggers=tr.triggers)
    assert draw(tr.spec, "b", fire.period - 1, ctx).window == Window.PENDING
    assert draw(tr.spec, "b", fire.period, ctx).window == Window.RANDOMISED


# ------------------------------------------------------------------ property: minute-grid oracle
EVENT = st.tuples(
    st.integers(0, 600),  # minute
    st.sampled_from(["ref", "x", "y"]),
    st.integers(70, 110),  # price
)


def oracle(events: list[tuple[int, str, int]], pct: float, k: int, horizon: int) -> int | None:
    """First minute f such that the undercut held at every minute of [f - k, f)."""
    state: dict[str, int] = {}
    by_minute: dict[int, list[tuple[str, int]]] = {}
    for m, who, price in events:
        by_minute.setdefault(m, []).append((who, price))
    run = 0
    for minute in range(horizon + 1):
        if run >= k > 0:
            return minute
        for who, price in by_minute.get(minute, []):
            state[who] = price
        comp = [v for w, v in state.items() if w != "ref"]
        held = "ref" in state and comp and (state["ref"] - min(comp)) * 100 >= pct * state["ref"]
        run = run + 1 if held else 0
        if k == 0 and held:  # the state after all events of the minute
            return minute
    return None


@settings(max_examples=80, deadline=None)
@given(
    events=st.lists(EVENT, min_size=1, max_size=25),
    pct=st.sampled_from([5, 10, 20]),
    k=st.integers(0, 120),
)
def test_fire_time_matches_a_minute_grid_oracle(
    events: list[tuple[int, str, int]], pct: int, k: int
) -> None:
    events = sorted(events, key=lambda e: e[0])
    s = spec(undercut_pct=pct, sustained_minutes=k)
    tr = TriggerTracker(s)
    fires = []
    for m, who, price in events:
        f = (
            tr.observe_reference("a", price, at(m))
            if who == "ref"
            else tr.observe_competitor("a", who, price, at(m))
        )
        fires += [f] if f else []
    fires += tr.advance(at(800))
    expected = oracle(events, pct, k, 800)
    if expected is None:
        assert fires == []
    else:
        assert len(fires) == 1 and fires[0].fired_at == at(expected)

    # deterministic, and the persisted state resumes identically
    tr2 = TriggerTracker(s)
    half = len(events) // 2
    for m, who, price in events[:half]:
        if who == "ref":
            tr2.observe_reference("a", price, at(m))
        else:
            tr2.observe_competitor("a", who, price, at(m))
    tr3 = TriggerTracker.from_state(s, json.loads(json.dumps(tr2.to_state())))
    for m, who, price in events[half:]:
        if who == "ref":
            tr3.observe_reference("a", price, at(m))
        else:
            tr3.observe_competitor("a", who, price, at(m))
    tr3.advance(at(800))
    assert tr3.fired == tr.fired


def test_events_at_one_instant_count_as_one_state() -> None:
    tr = TriggerTracker(spec())
    tr.observe_reference("a", 100.0, at(0))
    tr.observe_competitor("a", "x", 80.0, at(0))
    # a re-priced reference and a matching competitor move at the same instant: no break
    tr.observe_competitor("a", "x", 150.0, at(10))  # alone, this would end the undercut
    tr.observe_reference("a", 200.0, at(10))
    assert tr.advance(at(30))[0].undercut_since == at(0)


def test_zero_duration_rule_waits_for_the_instant_to_pass() -> None:
    tr = TriggerTracker(spec(sustained_minutes=0))
    tr.observe_reference("a", 100.0, at(0))
    assert tr.observe_competitor("a", "x", 80.0, at(5)) is None
    assert tr.advance(at(5)) == []  # another event stamped 5 could still undo it
    assert tr.observe_reference("a", 80.0, at(5)) is None  # and does
    assert tr.advance(at(6)) == []
    tr.observe_competitor("a", "x", 60.0, at(7))
    assert tr.advance(at(7)) == [] and tr.advance(at(8))[0].fired_at == at(7)


@settings(max_examples=80, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), EVENT, st.booleans()), min_size=1, max_size=40
    ),
    pct=st.sampled_from([5, 10, 20]),
    k=st.integers(0, 120),
)
def test_polling_at_any_times_fires_each_product_at_its_oracle_minute(
    events: list[tuple[str, tuple[int, str, int], bool]], pct: int, k: int
) -> None:
    """advance() keeps due times in a heap: polled between any events, for several products
    at once, each product still fires once, at the minute the grid oracle gives."""
    events = sorted(events, key=lambda e: e[1][0])
    tr = TriggerTracker(spec(undercut_pct=pct, sustained_minutes=k))
    fires = []
    for product, (m, who, price), poll in events:
        if poll:
            polled = tr.advance(at(m))  # events stamped m may still follow
            assert [f.product for f in polled] == sorted(f.product for f in polled)
            fires += polled
        f = (
            tr.observe_reference(product, price, at(m))
            if who == "ref"
            else tr.observe_competitor(product, who, price, at(m))
        )
        fires += [f] if f else []
    fires += tr.advance(at(800))
    assert len({f.product for f in fires}) == len(fires)
    got = {f.product: f.fired_at for f in fires}
    for product in "abc":
        mine = [e for p, e, _ in events if p == product]
        expected = oracle(mine, pct, k, 800) if mine else None
        assert got.get(product) == (at(expected) if expected is not None else None)


def test_a_tracker_rebuilt_from_its_state_gets_unseen_reference_prices_back() -> None:
    s = spec(sustained_minutes=0)
    tr = TriggerTracker(s)
    tr.seed_references({"a": 100.0, "b": 100.0, "zz": 100.0})  # zz is not in the experiment
    tr.observe_competitor("a", "x", 95.0, at(1))
    tr.advance(at(2))  # a watermark past the start: an event stamped at the start is stale
    # the runner persists only the products events touched (product_state): b is not there
    saved = json.loads(json.dumps({**tr.to_state(), "products": {"a": tr.product_state("a")}}))
    back = TriggerTracker.from_state(s, saved)
    back.seed_references({"a": 50.0, "b": 100.0, "zz": 100.0})  # a keeps its own state
    assert back.observe_competitor("b", "x", 80.0, at(3)) is None
    assert back.observe_competitor("a", "x", 80.0, at(3)) is None
    assert [f.product for f in back.advance(at(4))] == ["a", "b"] and back.stale == 0
