"""Operator freezes and "was this in blackout, and why"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.blackout import Freeze, apply_freezes, explain, load_freeze
from controller.designs import Assignment, assign, forced_control
from controller.errors import SpecError
from controller.spec import Arm, ExperimentSpec, load_spec

T0 = datetime(2026, 6, 1, tzinfo=UTC)
H = timedelta(hours=1)


def spec(**kw: Any) -> ExperimentSpec:
    base: dict[str, Any] = dict(
        id="exp",
        products=[f"p{i}" for i in range(8)],
        treatment_policy="new",
        control_policy="old",
        start=T0.isoformat(),
        end=(T0 + timedelta(days=6)).isoformat(),
        washout="PT2H",
        seed=4,
    )
    return load_spec({**base, **kw})


def treated_cell(s: ExperimentSpec, switched: bool) -> Assignment:
    """A treated cell after period 0 that did (or did not) switch from the previous period."""
    for p in s.all_products():
        for k in range(1, 6):
            a = assign(s, p, k)
            prev = assign(s, p, k - 1)
            if a.arm == Arm.TREATMENT and (prev.arm != a.arm) == switched:
                return a
    raise AssertionError("no such cell")


def freeze(start: datetime, end: datetime, **kw: Any) -> Freeze:
    return Freeze(id=kw.pop("id", "f1"), start=start, end=end, reason="stock-take", **kw)


def test_a_freeze_covering_the_period_start_publishes_control() -> None:
    s = spec()
    a = treated_cell(s, switched=False)
    f = freeze(a.period_start - H, a.period_start + 3 * H)
    b = apply_freezes(s, a, [f])
    assert b.policy == "old" and b.arm == Arm.TREATMENT
    assert b.blackout_reason == "freeze"
    # the return to the treatment policy at +3h is a switch: 2 hours of washout follow
    assert b.blackout_until == a.period_start + 5 * H
    assert b.policy_at(a.period_start + 2 * H) == "old"
    assert b.policy_at(a.period_start + 4 * H) == "new"
    e = explain(s, a, a.period_start + 4 * H, [f])
    assert e.in_blackout and e.reasons == ("washout",) and e.policy == "new"
    e = explain(s, a, a.period_start + H, [f])
    assert e.reasons == ("freeze:f1 (stock-take)",) and e.policy == "old"
    assert not explain(s, a, a.period_start + 5 * H, [f]).in_blackout


def test_a_freeze_inside_a_period_blacks_out_exactly_its_span_and_the_washout() -> None:
    s = spec()
    a = treated_cell(s, switched=False)
    f = freeze(a.period_start + 6 * H, a.period_start + 8 * H)
    b = apply_freezes(s, a, [f])
    assert b.policy == "new" and b.blackout_until is None  # nothing at the period start
    for minutes in range(0, 24 * 60, 15):
        ts = a.period_start + timedelta(minutes=minutes)
        expect = 6 * H <= ts - a.period_start < 10 * H
        assert b.in_blackout(ts) == expect, minutes
        assert b.policy_at(ts) == ("old" if 6 * H <= ts - a.period_start < 8 * H else "new")


def test_control_cells_get_no_washout_after_a_freeze() -> None:
    s = spec()
    a = next(
        assign(s, p, k)
        for p in s.all_products()
        for k in range(1, 6)
        if assign(s, p, k).arm == Arm.CONTROL and assign(s, p, k - 1).arm == Arm.CONTROL
    )
    b = apply_freezes(s, a, [freeze(a.period_start + H, a.period_start + 2 * H)])
    assert [x.reason for x in b.blackouts] == ["freeze"]


def test_a_freeze_that_ended_at_the_boundary_leaves_a_washout() -> None:
    s = spec()
    a = treated_cell(s, switched=False)
    b = apply_freezes(s, a, [freeze(a.period_start - 5 * H, a.period_start)])
    assert b.policy == "new"
    assert b.blackout_until == a.period_start + 2 * H and b.blackout_reason == "washout"


def test_freezes_for_other_experiments_do_not_apply() -> None:
    s = spec()
    a = treated_cell(s, switched=False)
    f = freeze(a.period_start, a.period_end, experiments=("other",))
    assert apply_freezes(s, a, [f]) == a
    g = freeze(a.period_start, a.period_end, experiments=("other", "exp"), id="f2")
    assert apply_freezes(s, a, [g]).policy == "old"


def test_overlapping_freezes_merge_and_both_are_named() -> None:
    s = spec()
    a = treated_cell(s, switched=False)
    fs = [
        freeze(a.period_start + H, a.period_start + 3 * H, id="f1"),
        Freeze(id="f2", start=a.period_start + 2 * H, end=a.period_start + 4 * H, reason="bug"),
    ]
    b = apply_freezes(s, a, fs)
    freezes = [x for x in b.blackouts if x.reason == "freeze"]
    assert [(x.start, x.end) for x in freezes] == [(a.period_start + H, a.period_start + 4 * H)]
    e = explain(s, a, a.period_start + 2 * H + timedelta(minutes=30), fs)
    assert e.reasons == ("freeze:f1 (stock-take)", "freeze:f2 (bug)")


def test_explain_reports_the_design_washout_and_the_window() -> None:
    s = spec()
    a = treated_cell(s, switched=True)
    e = explain(s, a, a.period_start + timedelta(minutes=119))
    assert e.in_blackout and e.reasons == ("washout",) and e.excluded
    e = explain(s, a, a.period_start + 2 * H)
    assert not e.in_blackout and not e.excluded and e.reasons == ()
    with pytest.raises(ValueError):
        explain(s, a, a.period_end)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"end": T0.isoformat()}, "end"),
        ({"start": "2026-01-01T00:00:00"}, "start"),
        ({"experiments": []}, "experiments"),
        ({"id": ""}, "id"),
        ({"until": "x"}, "until"),
    ],
)
def test_bad_freezes_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    good = {"id": "f", "start": T0.isoformat(), "end": (T0 + H).isoformat(), "reason": "r"}
    assert load_freeze(good).end == T0 + H
    with pytest.raises(SpecError) as ei:
        load_freeze({**good, **change})
    assert ei.value.field == field


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(0, 5),
    product=st.integers(0, 7),
    spans=st.lists(st.tuples(st.integers(-30, 30), st.integers(1, 30)), max_size=3),
    minute=st.integers(0, 24 * 60 - 1),
)
def test_freeze_blackout_is_exactly_the_union_of_the_freezes(
    k: int, product: int, spans: list[tuple[int, int]], minute: int
) -> None:
    s = spec()
    a = assign(s, f"p{product}", k)
    fs = [
        freeze(a.period_start + h * H, a.period_start + (h + d) * H, id=f"f{i}")
        for i, (h, d) in enumerate(spans)
    ]
    ts = a.period_start + timedelta(minutes=minute)
    e = explain(s, a, ts, fs)
    frozen = any(f.start <= ts < f.end for f in fs)
    assert any(r.startswith("freeze:") for r in e.reasons) == frozen
    assert (e.policy == "old") == (frozen or a.arm == Arm.CONTROL)
    assert e.policy == apply_freezes(s, a, fs).policy_at(ts)
    if not frozen and a.arm == Arm.CONTROL:
        # control cells: only the design's own washout can black them out
        assert e.in_blackout == a.in_blackout(ts)


def test_forced_control_overrides_freezes_and_washout_for_the_whole_period() -> None:
    s = spec()
    a = apply_freezes(s, treated_cell(s, switched=True), [freeze(T0 - H, T0 + 100 * H)])
    c = forced_control(s, a, "paused")
    for minutes in range(0, 24 * 60, 30):
        ts = a.period_start + timedelta(minutes=minutes)
        assert c.policy_at(ts) == "old" and c.in_blackout(ts)
        assert explain(s, c, ts).reasons == ("paused",)


def test_a_start_run_set_by_replace_still_counts() -> None:
    s = spec()
    a = treated_cell(s, switched=True)  # has a 2-hour washout entry
    b = replace(a, blackout_until=a.period_end, blackout_reason="stopped")
    ts = a.period_start + 5 * H
    assert b.in_blackout(ts) and explain(s, b, ts).reasons == ("stopped",)
    assert set(explain(s, b, a.period_start).reasons) == {"washout", "stopped"}
