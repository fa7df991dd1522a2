"""The soak's generations (benchmarks/soak.py, issue #56): each slot runs one experiment after
another over the same products, and the checks that follow them through a handover, on
made-up records and specs (no broker, no Redis)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from benchmarks import soak_checks as c
from benchmarks.soak import (
    EXPERIMENTS,
    TRIGGER_WINDOW,
    SoakConfig,
    make_specs,
    sim_start,
    spec_for,
    successor_day,
    undercuts_until,
)
from benchmarks.soak_world import CompetitorSource, SalesSource
from controller.periods import last_period, period_index
from controller.settings import Settings

BERLIN = ZoneInfo("Europe/Berlin")


def _m(exp: str, product: str, period: int, seq: int, status: str = "running") -> dict[str, object]:
    return {"experiment": exp, "product": product, "period": period, "seq": seq, "status": status}


def test_each_slot_keeps_its_products_and_gets_a_new_id_seed_and_start():
    cfg = SoakConfig(products=6, experiment_days=4)
    start = sim_start(date(2026, 11, 28))
    first = make_specs(cfg, start)
    assert len(first) == len(EXPERIMENTS)
    # the slots' lengths differ (4, 5, 6 days), so that they hand over at different times
    assert [(s.end - s.start).days for s in first[:3]] == [4, 5, 6]
    nxt = spec_for(cfg, 3, 2, date(2026, 12, 20))
    assert nxt.id == "soak3-g2-cluster-pt24h" and first[3].id == "soak3-g1-cluster-pt24h"
    assert sorted(nxt.all_products()) == sorted(first[3].all_products())
    assert nxt.start == datetime(2026, 12, 20, tzinfo=BERLIN)
    assert nxt.seed != first[3].seed
    # without generations: one experiment per slot, a week longer than the run
    whole = make_specs(SoakConfig(minutes=20, experiment_days=0), start)
    assert whole[0].id == "soak0-random-days-pt24h"
    assert whole[0].end - whole[0].start == timedelta(days=math.ceil(20 * 60 * 2016 / 86400) + 7)


def test_a_successor_starts_at_the_first_midnight_twelve_hours_ahead():
    at = datetime(2026, 12, 10, 11, 0, tzinfo=BERLIN)
    assert successor_day(at) == date(2026, 12, 11)
    assert successor_day(datetime(2026, 12, 10, 12, 0, tzinfo=BERLIN)) == date(2026, 12, 11)
    assert successor_day(datetime(2026, 12, 10, 12, 1, tzinfo=BERLIN)) == date(2026, 12, 12)
    assert successor_day(datetime(2026, 12, 10, 10, 0, tzinfo=UTC)) == date(2026, 12, 11)


def test_a_generations_undercuts_fire_and_their_windows_end_within_it():
    cfg = SoakConfig(products=20, experiment_days=3)
    spec = spec_for(cfg, 7, 2, date(2026, 12, 20))
    assert spec.triggered is not None
    until = undercuts_until(cfg, spec, spec.start)
    src = CompetitorSource(Settings(), spec, seed=3, until=until)
    for u in src.undercuts.values():
        k = period_index(spec, u.begin)
        # fires in period k, its window k + 1 .. k + TRIGGER_WINDOW: all within the spec
        assert k >= 1 and k + TRIGGER_WINDOW <= last_period(spec)
    # nothing is sent at or after the start of the last period (no holder after the end)
    assert src.due(spec.end) == [] and src.due(src.stop_at) == []
    assert src.due(src.stop_at - timedelta(minutes=1))


def test_sales_are_only_of_experiments_in_force_at_their_stamp():
    cfg = SoakConfig(products=3, experiment_days=2)
    a = spec_for(cfg, 0, 1, date(2026, 12, 7))
    b = spec_for(cfg, 0, 2, date(2026, 12, 10))
    src = SalesSource(Settings(), [a], seed=1, duplicate_share=0.0, junk_per_second=0.0)
    src.add(b)
    assert {e for e, _ in src.in_force(a.start)} == {a.id}
    assert src.in_force(a.end) == []  # between the two: no one to sell for
    assert {e for e, _ in src.in_force(b.start + timedelta(hours=1))} == {b.id}
    assert {p for _, p in src.in_force(b.start)} == set(b.all_products())
    assert src.sent == {a.id: [0, 0], b.id: [0, 0]}


def test_end_problems_want_every_product_ended_once_and_last():
    products = {"e": ["a", "b"]}
    ok = [_m("e", "a", 3, 4), _m("e", "b", 3, 4), _m("e", "a", 3, 5, "ended"),
          _m("e", "b", 3, 5, "ended"), _m("e", "b", 3, 5, "ended")]  # fmt: skip
    assert c.end_problems(ok, products, ["e"]) == []
    assert c.end_problems(ok[:2], products, ["e"]) == [
        "e: its end passed, and no 'ended' message was read"
    ]
    assert c.end_problems(ok[:3], products, ["e"]) == ["e: 1 products without an 'ended' message"]
    after = [*ok, _m("e", "a", 3, 6)]
    assert c.end_problems(after, products, ["e"]) == [
        "e: 1 products have a message after their end (first a)"
    ]
    split = [*ok[:3], _m("e", "b", 3, 6, "ended")]
    assert c.end_problems(split, products, ["e"]) == ["e: its end published under 2 seqs [5, 6]"]
    # an experiment not ended is not judged; the end is no flip
    assert c.end_problems(ok[:2], products, []) == []
    assert c.flip_problems(ok, products, {"e": [3]}) == []


def test_handover_problems_name_an_old_holders_message_after_its_successors():
    gen = {"old": (0, 1), "new": (0, 2), "other": (1, 1)}
    ok = [_m("old", "p", 5, 7, "ended"), _m("new", "p", 0, 1), _m("other", "p", 0, 1),
          _m("old", "q", 5, 7, "ended"), _m("new", "q", 0, 1)]  # fmt: skip
    assert c.handover_problems(ok, gen) == []
    late = [_m("new", "p", 0, 1), _m("old", "p", 5, 7, "ended"), _m("old", "p", 5, 7, "ended")]
    assert c.handover_problems(late, gen) == [
        "p: a message of old (generation 1) after its successor new's (generation 2)"
    ]


def test_an_experiment_ended_by_the_repair_is_not_waited_for():
    faults = [{"kind": "kill9-analysis", "began": 10.0, "repaired": 20.0}]
    received = {"a": [1.0, 25.0], "ended": [5.0]}
    assert c.resumed_after(faults, received)[0]["without"] == ["ended"]
    assert c.resumed_after(faults, received, {"ended": 15.0, "a": 300.0})[0] == {
        "kind": "kill9-analysis", "seconds": 5.0, "without": [], "experiments": 1,
    }  # fmt: skip
    # one that ends after the repair is still waited for
    assert c.resumed_after(faults, received, {"ended": 21.0})[0]["without"] == ["ended"]


def test_a_series_is_not_stale_once_its_final_look_is_out():
    hist = [(float(t), 100.0 * t) for t in range(200)]
    h = c.ClockHistory(hist)
    assert h.wall_when(5000.0) == 50.0 and h.wall_when(4999.0) == 50.0
    assert h.wall_when(1e9) == math.inf
    gone = {"e|dm": [0.0, 10.0, 20.0]}
    # stale once the clock is 3 hours past wall 20's: from wall 129 on
    assert c.stale_estimate_held(gone, h, 199) == pytest.approx(199 - 129 + 1)
    assert c.stale_estimate_held(gone, h, 199, watched_until={"e": 150.0}) == pytest.approx(
        150 - 129 + 1
    )
    assert c.stale_estimate_held(gone, h, 199, watched_until={"e": 25.0}) == 0.0
