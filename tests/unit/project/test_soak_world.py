"""The soak's competitor-price source (benchmarks/soak_world.py), without a broker: what it
plans and stamps agrees with the trigger rule as the controller's own tracker applies it."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from benchmarks import soak_checks as c
from benchmarks.soak import SoakConfig, make_specs, sim_start
from benchmarks.soak_world import CUTTER, CompetitorSource
from controller.periods import period_index
from controller.settings import Settings
from controller.triggers import TriggerTracker


def _source(step: timedelta) -> tuple[CompetitorSource, list[dict[str, object]], datetime]:
    """The short soak's triggered experiment and its source, driven by a clock that moves by
    ``step`` until a day after the last undercut's end; every event it made, decoded."""
    start = sim_start(date(2026, 11, 20))
    spec = next(s for s in make_specs(SoakConfig(minutes=3.4, products=20), start) if s.triggered)
    src = CompetitorSource(Settings(), spec, seed=7, until=start + timedelta(days=2))
    end = max(u.begin + timedelta(minutes=u.minutes) for u in src.undercuts.values())
    events = []
    at = start
    while at < end + timedelta(days=1):
        events += [json.loads(payload) for payload, _ in src.due(at)]
        at += step
    return src, events, at


def test_the_source_plans_each_kind_of_undercut_and_remembers_what_it_sent():
    src, events, _ = _source(timedelta(seconds=200))
    kinds = [u.kind for u in src.undercuts.values()]
    assert (kinds.count("meets"), kinds.count("short"), kinds.count("shallow")) == (6, 3, 3)
    assert len(src.sent) == len(events) and all(u.since and u.ended for u in src.undercuts.values())
    assert all(e["product"] in src.spec.products for e in events)
    # every undercut begins 1 to 3 hours into a period (its fire, if any, long before the next)
    for u in src.undercuts.values():
        assert u.since is not None
        into = u.since - src.spec.start
        assert timedelta(hours=1) <= into % src.spec.period <= timedelta(hours=3, minutes=4)
    # a product's events are in stamp order (one key, one partition)
    for p in src.spec.products:
        stamps = [e["observed_at"] for e in events if e["product"] == p]
        assert stamps == sorted(stamps)
    assert {e["competitor"] for e in events} == {"acme", CUTTER}


def test_the_undercuts_that_meet_the_rule_are_the_ones_the_tracker_fires():
    for step in (timedelta(seconds=100), timedelta(seconds=600)):
        src, events, at = _source(step)
        spec, rule = src.spec, src.spec.triggered
        assert rule is not None
        tracker = TriggerTracker(spec)
        tracker.seed_references(rule.reference_prices)
        for e in events:
            stamp = datetime.fromisoformat(str(e["observed_at"]))
            tracker.observe_competitor(
                str(e["product"]), str(e["competitor"]), float(e["price"]), stamp
            )  # type: ignore[arg-type]
        tracker.advance(at)
        sent = {u.product: (u.depth_pct, u.since, u.last) for u in src.undercuts.values()}
        fires = c.rule_fires(sent, rule.undercut_pct, rule.sustained_minutes)  # type: ignore[arg-type]
        meets = {u.product for u in src.undercuts.values() if u.kind == "meets"}
        assert set(fires) == meets
        assert {p: f.fired_at for p, f in tracker.fired.items()} == fires
        assert tracker.triggers == {p: period_index(spec, t) + 1 for p, t in fires.items()}
