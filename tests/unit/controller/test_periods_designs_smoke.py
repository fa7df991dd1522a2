from datetime import UTC, datetime, timedelta

import pytest

from controller.designs import assign, schedule
from controller.errors import SpecError
from controller.periods import n_periods, period_bounds, period_index
from controller.spec import load_spec


def _spec(**kw):
    base = dict(
        id="exp1",
        products=["a", "b", "c"],
        treatment_policy="new",
        control_policy="old",
        start="2026-03-25T00:00:00+01:00",
        end="2026-04-01T00:00:00+02:00",
        timezone="Europe/Berlin",
        washout="PT2H",
        seed=3,
    )
    base.update(kw)
    return load_spec(base)


def test_dst_spring_day_is_one_23_hour_period():
    spec = _spec()
    # 2026-03-29 is the spring-forward day in Berlin
    k = period_index(spec, datetime(2026, 3, 29, 12, tzinfo=UTC))
    start, end = period_bounds(spec, k)
    assert end - start == timedelta(hours=23)
    assert n_periods(spec) == 7


def test_period_index_round_trips_bounds():
    spec = _spec(period="PT6H")
    for k in range(-3, 30):
        s, e = period_bounds(spec, k)
        assert period_index(spec, s) == k
        assert period_index(spec, e - timedelta(seconds=1)) == k


def test_washout_only_after_a_switch():
    spec = _spec()
    rows = schedule(spec)
    by = {(a.product, a.period): a for a in rows}
    for a in rows:
        if a.period == 0:
            assert a.blackout_until == a.period_start + timedelta(hours=2)
            continue
        prev = by[(a.product, a.period - 1)]
        assert (a.blackout_until is not None) == (prev.arm != a.arm)


def test_deterministic_given_seed():
    spec = _spec()
    assert [x.arm for x in schedule(spec)] == [x.arm for x in schedule(_spec())]
    assert assign(spec, "a", 2).arm == assign(spec, "a", 2).arm


@pytest.mark.parametrize(
    "change, field",
    [
        ({"washout": "P2D"}, "washout"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"allocation": 1.5}, "allocation"),
        ({"end": "2026-03-01T00:00:00+01:00"}, "end"),
        ({"products": []}, "products"),
        ({"period": "PT5H"}, "period"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_spec_names_the_field(change, field):
    with pytest.raises(SpecError) as ei:
        _spec(**change)
    assert ei.value.field == field
    assert str(ei.value).startswith(field)
