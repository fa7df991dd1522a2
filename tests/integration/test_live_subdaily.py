"""Experiments with periods shorter than a day, live: an hourly random-periods experiment over
the spring-forward night and a four-hour optimal switchback with carryover, through real worker
processes on the embedded stack, the market simulated at their period length."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest

from controller.designs import design_matrices
from controller.periods import is_empty, n_periods
from lab.compare import make_spec
from lab.market import Market, MarketConfig
from streams.live.driver import LiveRun
from tests.integration.conftest import make_settings
from tests.integration.live import drive

pytestmark = pytest.mark.integration


def _run(
    design: str, start: date, days: int, period: timedelta, prefix: str, **cfg: Any
) -> LiveRun:
    market = Market(
        MarketConfig(
            n_products=16, n_categories=2, start_date=start, timezone="Europe/Berlin", **cfg
        ),
        seed=3,
        product_ids=[f"{prefix}{i:03d}" for i in range(16)],
    )
    spec = make_spec(design, market, days=days, seed=5, period=period)
    return LiveRun(spec.model_copy(update={"id": f"{prefix}-{design}"}), market, sales_seed=5)


def _check(run: LiveRun, used: dict[str, Any], primary: str) -> None:
    spec = run.spec
    # what a pricing system read: the controller's own schedule, period by period; the hour
    # the spring-forward night skips has no message
    expected = design_matrices(spec, list(run.market.product_ids))
    empty = [k for k in range(n_periods(spec)) if is_empty(spec, k)]
    for k in range(n_periods(spec)):
        if k in empty:
            assert not run.analysed[:, k].any()
            continue
        assert (run.arms[:, k] == expected.treated[:, k]).all(), k
    # every unit sold was counted once
    units = sum(v for key, v in used["totals"][run.id].items() if key.startswith("units:"))
    assert units == run.units_sent > 0
    # the analysis worker published the primary at the looks, ending with a finite interval
    looks = run.looks(primary)
    assert looks, f"{run.id}: {primary} never published"
    final = looks[max(looks)]
    assert math.isfinite(final["effect"]) and final["ci_low"] < final["effect"] < final["ci_high"]
    assert math.isfinite(run.truth())


async def test_an_hourly_random_periods_experiment_over_the_spring_night(stack) -> None:  # type: ignore[no-untyped-def]
    run = _run("random-days", date(2026, 3, 29), 1, timedelta(hours=1), "h1")
    assert n_periods(run.spec) == 24 and is_empty(run.spec, 2)  # 02:00 does not exist
    used = await drive(make_settings(stack), [run])
    _check(run, used, "fe")
    assert 2 not in run.looks("fe")  # no look at an hour that did not happen


async def test_a_four_hour_optimal_switchback_with_carryover(stack) -> None:  # type: ignore[no-untyped-def]
    run = _run(
        "optimal-switchback", date(2026, 6, 1), 2, timedelta(hours=4), "h4", carryover_order=1
    )
    assert n_periods(run.spec) == 12
    assert run.spec.optimal_switchback is not None
    assert run.spec.optimal_switchback.carryover_order == 1  # in periods: four hours
    used = await drive(make_settings(stack), [run])
    _check(run, used, "hajek")
    _check(run, used, "ht")
    # the primary has arm means: its relative form is published; HT's sum has none
    hajek = run.looks("hajek")
    last = hajek[max(hajek)]
    assert last["relative_effect"] == pytest.approx(last["effect"] / last["control_mean"])
    ht = run.looks("ht")
    assert ht[max(ht)]["relative_effect"] is None
