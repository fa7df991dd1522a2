"""``pricelab simulate`` lists no period before the spec's start or after its end (issue #54
item 3): a sub-day experiment that starts mid-day starts with the hour of its start, and that
hour's market is the same hour whichever hour the experiment started."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from controller.spec import ExperimentSpec, load_spec
from lab.market import Market, MarketConfig
from lab.simulate import experiment_slots
from streams.cli import main

BERLIN = ZoneInfo("Europe/Berlin")


def _spec(start: dt.datetime, end: dt.datetime, period: str = "PT1H") -> ExperimentSpec:
    return load_spec(
        {
            "id": "mid-day",
            "design": "random-days",
            "products": [f"p{i}" for i in range(6)],
            "treatment_policy": "t",
            "control_policy": "c",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "timezone": "Europe/Berlin",
            "period": period,
            "seed": 2,
        }
    )


@pytest.mark.parametrize(
    "start, end, period, count",
    [
        # 15:00 to 03:00 the next night: twelve hours
        (dt.datetime(2026, 6, 1, 15), dt.datetime(2026, 6, 2, 3), "PT1H", 12),
        # over the spring-forward night, 21:00 to 06:00: nine wall hours, 02:00 does not exist
        (dt.datetime(2026, 3, 28, 21), dt.datetime(2026, 3, 29, 6), "PT1H", 9),
        # 09:30 to 20:00 in six-hour periods: 06:00, 12:00, 18:00
        (dt.datetime(2026, 6, 1, 9, 30), dt.datetime(2026, 6, 1, 20), "PT6H", 3),
    ],
)
def test_the_panel_and_the_sales_lie_within_the_experiment(
    tmp_path, capsys, start: dt.datetime, end: dt.datetime, period: str, count: int
) -> None:
    spec = _spec(start.replace(tzinfo=BERLIN), end.replace(tzinfo=BERLIN), period)
    path, out, events = tmp_path / "spec.json", tmp_path / "panel.csv", tmp_path / "events"
    path.write_text(spec.model_dump_json())
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--spec", str(path), "--out", str(out), "--events", str(events)])
    assert done.value.code in (0, None), capsys.readouterr().err
    panel = pd.read_csv(out)
    assert sorted(panel["period"].unique()) == list(range(count))
    starts = pd.to_datetime(panel["period_start"], utc=True)
    step = pd.Timedelta(period)
    # the first period holds start; the last starts before end
    assert starts.min() <= pd.Timestamp(spec.start) < starts.min() + step
    assert starts.max() < pd.Timestamp(spec.end)
    with (events / "sales.jsonl").open() as f:
        sold = [dt.datetime.fromisoformat(json.loads(line)["occurred_at"]) for line in f]
    assert sold  # six products over hours of a day sell something
    first, last_end = starts.min().to_pydatetime(), (starts.max() + step).to_pydatetime()
    assert all(first <= t < last_end for t in sold)


def test_an_hour_has_the_same_market_whichever_hour_the_experiment_started() -> None:
    """Period slots sit on the day's grid: hour 15 draws hour 15's count noise whether the
    experiment starts at midnight or at 15:00 (same market, same seed, nothing treated)."""
    day = dt.datetime(2026, 6, 1, tzinfo=BERLIN)
    whole = _spec(day, day + dt.timedelta(days=1))
    late = _spec(day + dt.timedelta(hours=15), day + dt.timedelta(days=1))
    products = whole.all_products()
    cfg = MarketConfig(n_products=len(products), start_date=day.date(), timezone="Europe/Berlin")
    market = Market(cfg, seed=11, product_ids=products)
    a, b = experiment_slots(whole, market), experiment_slots(late, market)
    assert [s.slot for s in b] == list(range(15, 24))
    assert [s.start for s in b] == [s.start for s in a[15:]]
    units_a = market.run_slots(np.zeros((len(products), len(a)), dtype=bool), a)
    units_b = market.run_slots(np.zeros((len(products), len(b)), dtype=bool), b)
    for x, y in zip(units_a[15:], units_b, strict=True):
        np.testing.assert_array_equal(x.units, y.units)
