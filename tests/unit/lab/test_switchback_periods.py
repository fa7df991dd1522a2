"""The optimal switchback's HT estimate as the live worker fits it: randomisation points named
by period, at every look (points after the panel's last period are for later looks) and over
the spring-forward night (the hour that does not exist is no period of the panel)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from analysis.worker import fit_metric, metric_panels
from controller.designs import get_design
from controller.periods import is_empty
from core.ports import EstimatorPlan
from lab.compare import make_spec
from lab.config import MarketConfig
from lab.market import Market
from lab.simulate import run_spec


def _hourly(seed: int, days: int = 2):  # type: ignore[no-untyped-def]
    cfg = MarketConfig(
        n_products=30, start_date=date(2026, 3, 28), timezone="Europe/Berlin", carryover_order=2
    )
    market = Market(cfg, seed=3, demand_seed=seed)
    spec = make_spec("optimal-switchback", market, days=days, seed=seed, period=timedelta(hours=1))
    return spec, run_spec(spec, market)


@pytest.mark.parametrize("which", [0, 1])  # the design's hajek (primary) and ht
def test_the_spring_gap_hour_and_later_points_do_not_stop_the_estimate(which: int) -> None:
    spec, sim = _hourly(1)
    plan = get_design("optimal-switchback").estimators(spec)[which]
    assert plan.name == ("hajek", "ht")[which] and plan.params["point_periods"]
    df = sim.panel
    gap = [k for k in range(48) if is_empty(spec, k)]
    assert gap == [26]
    whole = fit_metric(plan, metric_panels(df), "units")
    # the live panel has no row for the hour that did not exist: the same estimate
    live = fit_metric(plan, metric_panels(df[~df["period"].isin(gap)]), "units")
    assert live.effect == pytest.approx(whole.effect, rel=1e-12)
    assert live.se == pytest.approx(whole.se, rel=1e-12)
    assert whole.n_periods == 47 - 2  # lag 2 over the 47 hours that were
    # a running look: the first ten hours, whose later points are for later looks
    early = fit_metric(plan, metric_panels(df[df["period"] < 10]), "units")
    assert np.isfinite(early.effect) and early.se > 0


def test_periods_and_positions_agree_where_every_period_is_there() -> None:
    market = Market(MarketConfig(n_products=30), seed=2)
    spec = make_spec("optimal-switchback", market, days=28, seed=4)
    panels = metric_panels(run_spec(spec, market).panel)
    for plan in get_design("optimal-switchback").estimators(spec):
        by_period = fit_metric(plan, panels, "units")
        params = {k: v for k, v in plan.params.items() if k != "point_periods"}
        by_position = fit_metric(EstimatorPlan(plan.name, params), panels, "units")
        assert by_period.effect == by_position.effect and by_period.se == by_position.se


def test_an_hourly_switchback_over_the_spring_night_covers() -> None:
    hits, runs = {"hajek": 0, "ht": 0}, 60
    for seed in range(runs):
        spec, sim = _hourly(100 + seed)
        panels = metric_panels(sim.panel)
        for plan in get_design("optimal-switchback").estimators(spec):
            lo, hi = fit_metric(plan, panels, "units").conf_int()
            hits[plan.name] += lo <= sim.metric_truth("units") <= hi
    for name, n in hits.items():  # 60 runs: a nominal 0.95 has an MC SE of 0.028
        assert n / runs >= 0.88, (name, n)
